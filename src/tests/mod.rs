//! Tests that run inside PostgreSQL (`#[pg_test]`), one file per SQL function.
//! Each file's tests sit in a `#[pg_schema] mod tests`, the schema `cargo pgrx test`
//! calls them in; each test runs in a transaction that is rolled back.

mod acquire;
