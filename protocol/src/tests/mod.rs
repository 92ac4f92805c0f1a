//! The protocol's tests, against an in-memory store and a simulated clock: no
//! PostgreSQL needed, `cargo test -p pglock-protocol` runs them in a second.

mod memory;
mod steps;
mod waiting;
