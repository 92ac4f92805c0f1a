//! How to acquire a lock: the data to store and how long to wait.

use std::time::Duration;

/// How to acquire: the data to store and how long to wait.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcquireOptions {
    pub(crate) data: Option<Vec<u8>>,
    pub(crate) replace_data: bool,
    pub(crate) wait_at_most: Option<Duration>,
}

impl AcquireOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Data to store in the lock when it is acquired. Without it the lock keeps the
    /// data it has (e.g. from a keeping release), unless [`Self::replace_data`].
    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.data = Some(data.into());
        self
    }

    /// Store the data given, even none (clearing the lock's data).
    pub fn replace_data(mut self, replace: bool) -> Self {
        self.replace_data = replace;
        self
    }

    /// Give up a waiting acquire after `limit` with [`Error::Timeout`](crate::Error::Timeout); the last try
    /// is made at the limit. `try_acquire` ignores it. Default: wait forever.
    ///
    /// A call in flight at the limit gets one heartbeat period more for its
    /// answer (never more than [`ClientConfig::with_call_timeout`](crate::ClientConfig::with_call_timeout)),
    /// then is abandoned, also on a connection that went silent: the acquire
    /// ends by `limit` plus a period. An abandoned call may still have taken the
    /// lock in the server; it lapses after its lease.
    pub fn wait_at_most(mut self, limit: Duration) -> Self {
        self.wait_at_most = Some(limit);
        self
    }
}
