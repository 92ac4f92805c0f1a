//! Configuration is checked before anything is sent; the server's own checks come
//! back as database errors with their SQLSTATE.

mod common;

use std::time::Duration;

use common::{client, ms, pg_config, pg_config_for, unique};
use pglock_client::{Client, ClientConfig, ConfigError, Error, MAX_LEASE};
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
            ConfigError::LeaseTooShort,
        ),
        (
            ClientConfig::new("w", MAX_LEASE + second, second),
            ConfigError::LeaseTooLong(MAX_LEASE + second),
        ),
        (
            ClientConfig::new("", second, ms(100)),
            ConfigError::EmptyOwner,
        ),
        (
            ClientConfig::new("x".repeat(256), second, ms(100)),
            ConfigError::OwnerTooLong(256),
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

    // The database `postgres` of the test server has no pglock.
    let (pg, connection) = pg_config_for("postgres", "config-test")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let error = Client::new(pg, ClientConfig::new("w", ms(1_000), ms(250)))
        .await
        .expect_err("pglock is not installed there");
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_FUNCTION), "{error}");
}

#[tokio::test]
async fn the_servers_checks_come_back_with_their_sqlstate() {
    let client = client(&unique("w"), ms(1_000), ms(250)).await;
    let error = client.try_acquire("").await.expect_err("an empty name");
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_PARAMETER_VALUE),
        "{error}"
    );
    let error = client.get(&"n".repeat(256)).await.expect_err("a long name");
    assert_eq!(
        error.code(),
        Some(&SqlState::STRING_DATA_RIGHT_TRUNCATION),
        "{error}"
    );
}
