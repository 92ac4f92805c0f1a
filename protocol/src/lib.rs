//! The pglock lease protocol as plain Rust, with no PostgreSQL in it.
//!
//! - [`lock`]: a lock as stored, and who claims or holds one
//! - [`decide`]: the decisions (create, take over or refuse; which data a write
//!   keeps; why a caller does not hold a lock)
//! - [`store`]: what the protocol needs from where locks are kept
//! - [`steps`]: acquire, heartbeat, release, release-all, an operator's forced
//!   release, a fence and heartbeats of many locks over a [`Store`]
//! - [`waiting`]: the caller's half: when a holder's RVN has stood still long
//!   enough to take its lock over, and the waiting acquire built on it
//! - [`semaphore`]: at most so many holders of one name, each holding a slot
//! - [`limits`]: what the server accepts, so a client can check first
//!
//! The extension implements [`Store`] over SPI on `pglock.locks`; the Rust client
//! uses the waiting rule and the limits.  The tests here run the steps against an
//! in-memory store, races and stale snapshots included.

pub mod decide;
pub mod error;
pub mod limits;
pub mod lock;
pub mod semaphore;
pub mod steps;
pub mod store;
pub mod waiting;

#[cfg(test)]
mod tests;

pub use error::{NotHeldReason, ProtocolError};
pub use lock::{Claim, DataChange, Holder, Lease, Lock, Released, RoleId, Timestamp};
pub use steps::{AcquireOutcome, AcquireRequest, FenceRequest, HeartbeatRequest, ReleaseRequest};
pub use store::{Fencing, Fields, Store};
pub use waiting::{Clock, Watch};
