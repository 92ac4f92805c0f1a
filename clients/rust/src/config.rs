//! What a [`Client`](crate::Client) is built with, and the rules it must meet.

use std::time::Duration;

use pglock_protocol::{arguments, ArgumentError, Lease};

/// The longest lease the server accepts (`pglock_acquire` raises `22023` above
/// it), and the longest owner label, in characters: the protocol's limits.
pub use pglock_protocol::limits::{MAX_LABEL_CHARS as MAX_OWNER_CHARS, MAX_LEASE};

/// The most slots a semaphore has (`pglock_acquire_slot` raises `22023` above it).
pub use pglock_protocol::limits::MAX_SLOTS;

/// The longest default poll interval; shorter leases poll at a tenth of the lease.
const MAX_DEFAULT_POLL: Duration = Duration::from_millis(500);

/// Settings of a [`Client`](crate::Client): who it is, the lease it asks for and how
/// often it renews it. Checked by [`ClientConfig::validate`] when the client is built.
///
/// ```
/// use std::time::Duration;
/// use pglock_client::ClientConfig;
///
/// let config = ClientConfig::new("worker-1", Duration::from_secs(20), Duration::from_secs(5))
///     .with_poll_interval(Duration::from_millis(200));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    owner: String,
    lease: Duration,
    heartbeat_period: Duration,
    poll_interval: Option<Duration>,
    call_timeout: Option<Duration>,
    statements: StatementMode,
    waits: WaitMode,
}

/// Who waits when a waiting acquire finds a lock held; see
/// [Waiting](crate#waiting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WaitMode {
    /// The server, where it can: the acquire sleeps in `pglock_acquire_wait` on
    /// a connection of its own, and gets the lock the moment it is released, in
    /// arrival order. The default. The client polls instead where the server
    /// cannot wait for it: pglock not preloaded, a pooler in transaction mode
    /// ([`StatementMode::Unnamed`]), or a client on a connection it was given
    /// ([`Client::new`](crate::Client::new)).
    #[default]
    Server,
    /// The client, always: it asks again every poll interval.
    Client,
}

/// How a [`Client`](crate::Client) sends pglock's statements to the server; see
/// [Connection poolers](crate#connection-poolers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StatementMode {
    /// Named prepared statements: each prepared once per connection, then only
    /// bound and executed, with no parsing or planning. The default: the least
    /// work for the server. A pooler must keep them for the client, as session
    /// pooling does; PgBouncer's transaction pooling does not before 1.21 (nor
    /// later with `max_prepared_statements = 0`).
    #[default]
    Prepared,
    /// Unnamed statements: each call is parsed, planned and executed in one round
    /// trip, and nothing stays on the server connection between calls, so any
    /// call may run on any server connection. For poolers in transaction mode
    /// (PgBouncer's `pool_mode = transaction`). Costs the server a parse and plan
    /// per call.
    Unnamed,
}

/// Why a [`ClientConfig`], or an argument checked before anything is sent (a
/// semaphore's slot count), was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An argument the server checks too (the owner label, the lease, a
    /// semaphore's slot count), checked by the same rule and refused with the
    /// server's message, e.g. `pglock: owner must not be empty`.
    #[error(transparent)]
    Argument(#[from] ArgumentError),
    #[error("the heartbeat period must be more than zero")]
    HeartbeatPeriodZero,
    #[error("the heartbeat period {period:?} is more than half the lease {lease:?}")]
    HeartbeatPeriodTooLong { period: Duration, lease: Duration },
    #[error("the poll interval must be more than zero")]
    PollIntervalZero,
    #[error("the call timeout must be more than zero")]
    CallTimeoutZero,
}

impl ClientConfig {
    /// A client called `owner` that takes locks for `lease` and renews each lock it
    /// holds every `heartbeat_period` (more than zero, at most half the lease).
    pub fn new(owner: impl Into<String>, lease: Duration, heartbeat_period: Duration) -> Self {
        Self {
            owner: owner.into(),
            lease,
            heartbeat_period,
            poll_interval: None,
            call_timeout: None,
            statements: StatementMode::Prepared,
            waits: WaitMode::Server,
        }
    }

    /// How often a waiting acquire asks again, and how soon a failed heartbeat is
    /// retried (at most one heartbeat period). Default: a tenth of the lease, at
    /// most 500 ms.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// A limit on each `pglock_acquire`, `pglock_get` and `pglock_release` call,
    /// past which it fails with [`Error::Timeout`](crate::Error::Timeout). Default:
    /// none. Heartbeats have their own limit (see [when a lock is lost](crate#when-a-lock-is-lost)).
    ///
    /// A call abandoned this way may still complete in the server: an abandoned
    /// acquire may have taken the lock, which then lapses after its lease.
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = Some(timeout);
        self
    }

    /// How pglock's statements are sent: [`StatementMode::Unnamed`] behind a
    /// pooler in transaction mode. Default: [`StatementMode::Prepared`].
    pub fn with_statements(mut self, mode: StatementMode) -> Self {
        self.statements = mode;
        self
    }

    /// Who waits for a lock held: [`WaitMode::Client`] to always poll from the
    /// client. Default: [`WaitMode::Server`].
    pub fn with_wait_mode(mut self, mode: WaitMode) -> Self {
        self.waits = mode;
        self
    }

    /// Checks every rule; [`Client::new`](crate::Client::new) and
    /// [`Client::connect`](crate::Client::connect) call it first.
    ///
    /// The owner and the lease meet the server's own rules (the protocol's
    /// `arguments`), refused with its messages as [`ConfigError::Argument`]:
    /// an owner of 1 to [`MAX_OWNER_CHARS`] characters without NUL, a lease
    /// of at most [`MAX_LEASE`] and, counted in whole microseconds as the
    /// server keeps it, more than zero. The rest are the client's own.
    pub fn validate(&self) -> Result<(), ConfigError> {
        arguments::label("owner", &self.owner)?;
        arguments::lease("lease", Lease::from_duration(self.lease))?;
        if self.heartbeat_period.is_zero() {
            return Err(ConfigError::HeartbeatPeriodZero);
        }
        if self.heartbeat_period > self.lease / 2 {
            return Err(ConfigError::HeartbeatPeriodTooLong {
                period: self.heartbeat_period,
                lease: self.lease,
            });
        }
        if self.poll_interval.is_some_and(|poll| poll.is_zero()) {
            return Err(ConfigError::PollIntervalZero);
        }
        if self.call_timeout.is_some_and(|timeout| timeout.is_zero()) {
            return Err(ConfigError::CallTimeoutZero);
        }
        Ok(())
    }

    /// The owner label written into every lock this client takes.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease this client asks for.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often a held lock is renewed.
    pub fn heartbeat_period(&self) -> Duration {
        self.heartbeat_period
    }

    /// The poll interval in force: the one set, or a tenth of the lease, at most 500 ms.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
            .unwrap_or_else(|| (self.lease / 10).min(MAX_DEFAULT_POLL))
    }

    /// The limit on each acquire, get and release call, if any.
    pub fn call_timeout(&self) -> Option<Duration> {
        self.call_timeout
    }

    /// How pglock's statements are sent.
    pub fn statements(&self) -> StatementMode {
        self.statements
    }

    /// Who waits for a lock held, where the server can.
    pub fn wait_mode(&self) -> WaitMode {
        self.waits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn config(lease: Duration, period: Duration) -> ClientConfig {
        ClientConfig::new("worker", lease, period)
    }

    #[test]
    fn accepts_a_period_of_half_the_lease() {
        assert_eq!(config(10 * SECOND, 5 * SECOND).validate(), Ok(()));
    }

    #[test]
    fn refuses_a_period_over_half_the_lease() {
        let period = 5 * SECOND + Duration::from_nanos(1);
        assert_eq!(
            config(10 * SECOND, period).validate(),
            Err(ConfigError::HeartbeatPeriodTooLong {
                period,
                lease: 10 * SECOND
            })
        );
    }

    #[test]
    fn refuses_zero_durations() {
        assert_eq!(
            config(SECOND, Duration::ZERO).validate(),
            Err(ConfigError::HeartbeatPeriodZero)
        );
        assert_eq!(
            config(Duration::from_nanos(999), Duration::from_nanos(1)).validate(),
            Err(ConfigError::Argument(ArgumentError::LeaseOutOfRange {
                argument: "lease",
                micros: 0
            }))
        );
        let zero_poll = config(SECOND, SECOND / 4).with_poll_interval(Duration::ZERO);
        assert_eq!(zero_poll.validate(), Err(ConfigError::PollIntervalZero));
        let zero_timeout = config(SECOND, SECOND / 4).with_call_timeout(Duration::ZERO);
        assert_eq!(zero_timeout.validate(), Err(ConfigError::CallTimeoutZero));
    }

    #[test]
    fn refuses_a_lease_over_a_day() {
        let lease = MAX_LEASE + SECOND;
        assert_eq!(
            config(lease, SECOND).validate(),
            Err(ConfigError::Argument(ArgumentError::LeaseOutOfRange {
                argument: "lease",
                micros: lease.as_micros() as i128
            }))
        );
        assert_eq!(config(MAX_LEASE, SECOND).validate(), Ok(()));
    }

    #[test]
    fn checks_the_owner_in_characters() {
        let at_limit = "é".repeat(MAX_OWNER_CHARS);
        assert_eq!(
            ClientConfig::new(at_limit, SECOND, SECOND / 4).validate(),
            Ok(())
        );
        let over = "é".repeat(MAX_OWNER_CHARS + 1);
        assert_eq!(
            ClientConfig::new(over, SECOND, SECOND / 4).validate(),
            Err(ConfigError::Argument(ArgumentError::LabelTooLong {
                argument: "owner",
                chars: MAX_OWNER_CHARS + 1
            }))
        );
        assert_eq!(
            ClientConfig::new("", SECOND, SECOND / 4).validate(),
            Err(ConfigError::Argument(ArgumentError::EmptyLabel {
                argument: "owner"
            }))
        );
        assert_eq!(
            ClientConfig::new("a\0b", SECOND, SECOND / 4).validate(),
            Err(ConfigError::Argument(ArgumentError::LabelContainsNul {
                argument: "owner"
            }))
        );
    }

    #[test]
    fn the_servers_rules_refuse_with_the_servers_messages() {
        let refused = |config: ClientConfig| config.validate().unwrap_err().to_string();
        assert_eq!(
            refused(ClientConfig::new("", SECOND, SECOND / 4)),
            "pglock: owner must not be empty"
        );
        assert_eq!(
            refused(config(MAX_LEASE + SECOND, SECOND)),
            "pglock: lease must be greater than 0 and at most 1 day, got 86401 seconds"
        );
    }

    #[test]
    fn polls_at_a_tenth_of_the_lease_up_to_half_a_second() {
        assert_eq!(config(SECOND, SECOND / 4).poll_interval(), SECOND / 10);
        assert_eq!(
            config(60 * SECOND, SECOND).poll_interval(),
            MAX_DEFAULT_POLL
        );
        let set = config(60 * SECOND, SECOND).with_poll_interval(SECOND * 2);
        assert_eq!(set.poll_interval(), SECOND * 2);
    }
}
