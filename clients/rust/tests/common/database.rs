//! A database of the test server's for one test alone.

use crate::common::{pg_config_for, superuser};

/// A database of the test server's for one test alone, made afresh (dropped
/// first if an earlier run left it) with pglock created in it and `settings`
/// (e.g. `track_functions = 'all'`) set for every session that connects to it:
/// for tests that read database-wide statistics. `name` is the test's own constant.
pub async fn fresh_database(name: &str, settings: &[&str]) -> String {
    let admin = superuser().await;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    for statement in [
        format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"),
        format!("CREATE DATABASE {quoted}"),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    for setting in settings {
        let statement = format!("ALTER DATABASE {quoted} SET {setting}");
        admin
            .batch_execute(&statement)
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    let (pg, connection) = pg_config_for(name, "pglock-client-tests")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the fresh database");
    tokio::spawn(connection);
    pg.batch_execute("CREATE EXTENSION pglock")
        .await
        .expect("create pglock in the fresh database");
    name.to_owned()
}
