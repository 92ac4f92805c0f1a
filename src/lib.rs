//! pglock: lease-based distributed locks inside PostgreSQL, fenced by record
//! version numbers.  This file only wires the modules together.
//!
//! The lease protocol itself (decisions, steps, the waiting rule, limits) is the
//! crate `pglock-protocol` in `protocol/`; this crate runs it inside the server:
//!
//! - `functions`: the SQL functions (`functions::rows`: those returning a lock's row)
//! - `store`: the protocol's store for this backend, over the table and name locks
//! - `locks_table`: `pglock.locks`, its objects, rows and heap writes
//! - `name_lock`: the per-name lock every write takes
//! - `clock`: the monotonic clock waits run by, and sleeping on the latch
//! - `shared_memory`: the region pglock reserves when preloaded, holding
//!   `counters` (operators' counters), `observed` (each lock's last write, as
//!   the server saw it) and `waiters` (the queues, and who to wake)
//! - `input`, `error`: arguments as the protocol's rules check them, and the
//!   errors (with SQLSTATEs) pglock raises
//! - `session`: the backend's role, transaction and server state
//! - `interval`: PostgreSQL intervals as the protocol's leases
//! - `sql/`: the schema and tables, the committing procedure, the monitoring view
//!   and the grants

::pgrx::pg_module_magic!(name, version);

mod clock;
mod counters;
mod error;
mod functions;
mod input;
mod interval;
mod locks_table;
mod name_lock;
mod observed;
mod session;
mod shared_memory;
mod store;
mod waiters;

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!(
    "../sql/lease_functions.sql",
    name = "lease_functions",
    requires = ["schema"]
);
pgrx::extension_sql_file!(
    "../sql/waiting.sql",
    name = "waiting",
    requires = [functions::wait::pglock::acquire_wait_step]
);
pgrx::extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires = ["schema", functions::lease::pglock::waiters]
);
pgrx::extension_sql_file!(
    "../sql/unseen_writes.sql",
    name = "unseen_writes",
    requires = ["schema", functions::lease::pglock::unseen_writes]
);
pgrx::extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod in_server_tests;

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    shared_memory::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// Preloaded, as the reference recommends: the server's queues and its
    /// observations of leases are in force.  (tests/over_connections/tests/observer.rs covers a
    /// server without.)
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pglock'"]
    }
}
