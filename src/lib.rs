//! pglock: lease-based distributed locks inside PostgreSQL, fenced by record
//! version numbers.  This file only wires the modules together.
//!
//! - `protocol`: the lease protocol and its decisions
//! - `waiting`: the waiting acquire (the caller's half of the protocol)
//! - `store`: `pglock.locks` through SPI
//! - `functions`: the SQL functions
//! - `counters`: operators' counters in shared memory, when preloaded
//! - `input`, `error`: argument checks and the errors (with SQLSTATEs) they raise
//! - `sql/`: the schema, table and grants the extension installs

::pgrx::pg_module_magic!(name, version);

mod counters;
mod error;
mod functions;
mod input;
mod protocol;
mod store;
mod waiting;

pgrx::extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!(
    "../sql/waiting.sql",
    name = "waiting",
    requires = [functions::wait::pglock::acquire_wait_step]
);
pgrx::extension_sql_file!(
    "../sql/monitoring.sql",
    name = "monitoring",
    requires = ["schema"]
);
pgrx::extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    counters::init();
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
