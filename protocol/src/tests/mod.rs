//! The protocol's tests, against an in-memory store and a simulated clock: no
//! PostgreSQL needed, `cargo test -p pglock-protocol` runs them in a second.

mod fence;
mod handover;
mod heartbeat_many;
mod memory;
mod requests;
mod semaphore;
mod steps;
mod waiting;
