//! The pglock lease protocol as plain Rust, with no PostgreSQL in it.
//!
//! - [`lock`]: a lock as stored, and who claims or holds one
//! - [`decide`]: the decisions (create, take over or refuse; which data a write
//!   keeps; why a caller does not hold a lock)
//! - [`store`]: what the protocol needs from where locks are kept
//! - [`steps`]: acquire, heartbeat, release, release-all, an operator's forced
//!   release, a fence and heartbeats of many locks over a [`Store`]
//! - [`waiting`]: the one waiting loop, as a state machine the server and the
//!   client drive: when a holder's RVN has stood still long enough to take its
//!   lock over, when to try again, when to give up
//! - [`semaphore`]: at most so many holders of one name, each holding a slot,
//!   named as [`slot_names`] says
//! - [`limits`], [`arguments`]: what the server accepts, and the rule of each
//!   argument, written once for the server and the clients
//!
//! The extension implements [`Store`] over `pglock.locks` and its shared memory
//! (what the server observed, its queues of waiters); the Rust client drives the
//! waiting machine where the server cannot wait for it, and checks the limits.  The tests here run the steps against an
//! in-memory store, races and stale snapshots included.

pub mod arguments;
pub mod decide;
pub mod error;
pub mod limits;
pub mod lock;
pub mod semaphore;
pub mod slot_names;
pub mod steps;
pub mod store;
pub mod waiting;

#[cfg(test)]
mod tests;

pub use arguments::ArgumentError;
pub use error::{NotHeldReason, ProtocolError};
pub use lock::{Claim, DataChange, Heir, Holder, Lease, Lock, Recorded, Released, RoleId};
pub use steps::{AcquireOutcome, AcquireRequest, FenceRequest, HeartbeatRequest, ReleaseRequest};
pub use store::{Fencing, Fields, Queue, Store};
pub use waiting::{Clock, Next, Seen, Wait, Watch};
