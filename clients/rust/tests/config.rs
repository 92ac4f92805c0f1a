//! Configuration is checked before anything is sent; the server's own checks come
//! back as database errors with their SQLSTATE, reading as the server wrote them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{client, client_with, ms, pg_config, pg_config_for, superuser, unique};
use pglock_client::{
    ArgumentError, Client, ClientConfig, ConfigError, Error, StatementMode, MAX_LEASE,
};
use tokio_postgres::error::SqlState;

/// A server that does not exist: a config error must come before any connecting.
fn nowhere() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path("/nonexistent-pglock-socket-folder")
        .port(1)
        .user("nobody");
    config
}

#[tokio::test]
async fn connect_refuses_bad_configurations_before_connecting() {
    let second = Duration::from_secs(1);
    let cases = [
        (
            ClientConfig::new("w", second, ms(501)),
            ConfigError::HeartbeatPeriodTooLong {
                period: ms(501),
                lease: second,
            },
        ),
        (
            ClientConfig::new("w", second, Duration::ZERO),
            ConfigError::HeartbeatPeriodZero,
        ),
        (
            ClientConfig::new("w", Duration::ZERO, Duration::ZERO),
            ConfigError::Argument(ArgumentError::LeaseOutOfRange {
                argument: "lease",
                micros: 0,
            }),
        ),
        (
            ClientConfig::new("w", MAX_LEASE + second, second),
            ConfigError::Argument(ArgumentError::LeaseOutOfRange {
                argument: "lease",
                micros: (MAX_LEASE + second).as_micros() as i128,
            }),
        ),
        (
            ClientConfig::new("", second, ms(100)),
            ConfigError::Argument(ArgumentError::EmptyLabel { argument: "owner" }),
        ),
        (
            ClientConfig::new("x".repeat(256), second, ms(100)),
            ConfigError::Argument(ArgumentError::LabelTooLong {
                argument: "owner",
                chars: 256,
            }),
        ),
        (
            ClientConfig::new("w", second, ms(100)).with_poll_interval(Duration::ZERO),
            ConfigError::PollIntervalZero,
        ),
        (
            ClientConfig::new("w", second, ms(100)).with_call_timeout(Duration::ZERO),
            ConfigError::CallTimeoutZero,
        ),
    ];
    for (config, expected) in cases {
        match Client::connect(&nowhere(), config.clone()).await {
            Err(Error::Config(error)) => assert_eq!(error, expected, "{config:?}"),
            other => panic!("{config:?}: expected {expected:?}, got {other:?}"),
        }
    }
    // A valid configuration gets as far as connecting.
    let valid = ClientConfig::new("w", second, ms(500));
    assert!(matches!(
        Client::connect(&nowhere(), valid).await,
        Err(Error::Database(_))
    ));
}

#[tokio::test]
async fn new_checks_the_configuration_and_the_extension() {
    let (pg, connection) = pg_config("config-test")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let bad = ClientConfig::new("w", ms(100), ms(60));
    assert!(matches!(
        Client::new(pg, bad).await,
        Err(Error::Config(ConfigError::HeartbeatPeriodTooLong { .. }))
    ));

    // The database `postgres` of the test server has no pglock: refused in
    // either statement mode.
    for mode in [StatementMode::Prepared, StatementMode::Unnamed] {
        let (pg, connection) = pg_config_for("postgres", "config-test")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let config = ClientConfig::new("w", ms(1_000), ms(250)).with_statements(mode);
        let error = Client::new(pg, config)
            .await
            .expect_err("pglock is not installed there");
        assert_eq!(error.code(), Some(&SqlState::UNDEFINED_FUNCTION), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("database error: ERROR 42883: function pglock_"),
            "{mode:?}: {error}"
        );
    }
}

#[tokio::test]
async fn the_servers_checks_come_back_with_their_sqlstate_and_message() {
    for mode in [StatementMode::Prepared, StatementMode::Unnamed] {
        let config = ClientConfig::new(unique("w"), ms(1_000), ms(250)).with_statements(mode);
        let client = client_with(config).await;
        let error = client.try_acquire("").await.expect_err("an empty name");
        assert_eq!(
            error.code(),
            Some(&SqlState::INVALID_PARAMETER_VALUE),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "database error: ERROR 22023: pglock: name must not be empty"
        );
        let error = client.get(&"n".repeat(256)).await.expect_err("a long name");
        assert_eq!(
            error.code(),
            Some(&SqlState::STRING_DATA_RIGHT_TRUNCATION),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "database error: ERROR 22001: pglock: name is 256 characters long; the limit is 255"
        );
    }
}

/// A release refused by the server reads with the server's detail and hint; a
/// failed connection with its cause.
#[tokio::test]
async fn errors_read_with_the_servers_detail_and_hint_and_a_connections_cause() {
    let client = client(&unique("w"), ms(20_000), ms(5_000)).await;
    let name = unique("other-role");
    let lock = client.acquire(&name).await.unwrap();
    // Behind the client's back, the lock becomes another role's.
    superuser()
        .await
        .execute(
            "UPDATE pglock.locks SET holder_role = 'pg_monitor'::regrole WHERE name = $1",
            &[&name],
        )
        .await
        .expect("hand the lock to pg_monitor");
    let error = lock.release().await.expect_err("another role's lock");
    assert_eq!(error.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let db = error.as_db_error().expect("the server's error");
    assert_eq!(
        error.to_string(),
        format!(
            "database error: ERROR 42501: {} (DETAIL: The lock was taken by role \"pg_monitor\". \
             HINT: Only the role that acquired a lock may heartbeat, fence or release it.)",
            db.message()
        )
    );
    superuser()
        .await
        .execute("SELECT pglock_force_release($1)", &[&name])
        .await
        .expect("clean up");

    let error = Client::connect(&nowhere(), ClientConfig::new("w", ms(1_000), ms(250)))
        .await
        .expect_err("no server there");
    assert_eq!(error.code(), None);
    assert!(error.as_db_error().is_none());
    let text = error.to_string();
    assert!(
        text.starts_with("database error: error connecting to server: ")
            && text.contains("No such file or directory"),
        "{text}"
    );
}

/// A connection that lost the client's statements (here `DEALLOCATE ALL` run
/// on it behind the client's back; behind a pooler in transaction mode, a call
/// sent to another server connection) fails the next call with an error that
/// says so and names the setting for poolers.
#[tokio::test]
async fn a_connection_without_the_clients_statements_says_what_to_set() {
    let (pg, connection) = pg_config("config-test")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let pg = Arc::new(pg);
    let config = ClientConfig::new(unique("w"), ms(1_000), ms(250));
    let client = Client::new(Arc::clone(&pg), config).await.unwrap();
    pg.batch_execute("DEALLOCATE ALL").await.unwrap();
    let error = client
        .get(&unique("deallocated"))
        .await
        .expect_err("its statement is gone");
    assert!(matches!(error, Error::StatementsNotKept(_)), "{error:?}");
    assert_eq!(error.code(), Some(&SqlState::INVALID_SQL_STATEMENT_NAME));
    let db = error.as_db_error().expect("the server's error");
    assert_eq!(
        error.to_string(),
        format!(
            "database error: ERROR 26000: {} (this connection does not keep the client's \
             prepared statements, as behind a pooler in transaction mode such as PgBouncer \
             with pool_mode = transaction: configure the client with \
             ClientConfig::with_statements(StatementMode::Unnamed))",
            db.message()
        )
    );
}
