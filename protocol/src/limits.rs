//! What the server accepts, shared by the extension (which enforces it) and the
//! client (which checks its configuration against it before sending anything).

use std::time::Duration;

/// Longest lock name or owner label, in characters.
pub const MAX_LABEL_CHARS: usize = 255;

/// Largest `data` payload a lock may carry, in bytes (1 MiB).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Longest lease (one day; a month counts as 30 days).
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
