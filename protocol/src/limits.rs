//! What the server accepts, shared by the extension (which enforces it) and the
//! client (which checks its configuration against it before sending anything).

use std::time::Duration;

/// Longest lock name or owner label, in characters.
pub const MAX_LABEL_CHARS: usize = 255;

/// Largest `data` payload a lock may carry, in bytes (1 MiB).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Longest lease (one day; a month counts as 30 days).
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);

/// Most locks one `pglock_heartbeat_many` call renews.
pub const MAX_HEARTBEAT_MANY: usize = 10_000;

/// Most slots a semaphore has.
pub const MAX_SLOTS: u32 = 1000;

/// Longest semaphore name, in characters: its slots' names add `#` and up to four
/// digits (`#1000`) and must still be lock names.
pub const MAX_SEMAPHORE_NAME_CHARS: usize = MAX_LABEL_CHARS - 5;
