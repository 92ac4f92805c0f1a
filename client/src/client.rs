//! The client: a connection, a configuration, and what it has seen of others' locks.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

use crate::config::ClientConfig;
use crate::error::Error;
use crate::heartbeat::Timing;
use crate::observe::Observations;
use crate::options::AcquireOptions;
use crate::sql::{limited, LockInfo, Sql};

/// A pglock client: one owner label, lease and heartbeat period, on one connection.
///
/// Cheap to clone; clones share the connection and the RVN watch (what
/// [`Client::try_acquire`] remembers). Heartbeats of every lock it holds go over
/// the same connection, so keep long-running statements off it: a heartbeat
/// waiting behind them counts as a failing one.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sql: Arc<Sql>,
    config: ClientConfig,
    timing: Timing,
    seen: Mutex<Observations>,
}

impl Client {
    /// A client on an open connection (an owned `tokio_postgres::Client` or an
    /// `Arc` of one, to keep using it for other statements). Checks `config` and
    /// prepares pglock's statements, so it fails if the extension is missing.
    pub async fn new(
        pg: impl Into<Arc<tokio_postgres::Client>>,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let sql = Sql::prepare(pg.into()).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                sql: Arc::new(sql),
                timing: Timing::new(&config),
                config,
                seen: Mutex::new(Observations::new()),
            }),
        })
    }

    /// Checks `config`, connects without TLS and runs the connection on a tokio
    /// task. For TLS, connect with `tokio_postgres` yourself and use [`Client::new`].
    /// If the connection fails later, every call fails with [`Error::Database`].
    pub async fn connect(
        pg_config: &tokio_postgres::Config,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let (pg, connection) = pg_config.connect(NoTls).await?;
        tokio::spawn(async move {
            // Its error reaches every call on the client as a closed connection.
            let _ = connection.await;
        });
        Self::new(pg, config).await
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The lock `name` as the server has it, or `None` if it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<LockInfo>, Error> {
        limited(
            self.config().call_timeout(),
            "pglock_get",
            self.sql().get(name),
        )
        .await
    }

    /// Runs `work` while holding the lock `name`, acquired with
    /// [`Client::acquire`] (waiting), and releases it afterwards.
    ///
    /// `work` receives the lock's [`CancellationToken`], cancelled the moment the
    /// lock is lost; `work` always runs to completion and decides itself how to
    /// stop early (e.g. roll its transaction back).
    ///
    /// Returns `Ok(output)` only if the release succeeded: each heartbeat and the
    /// release succeed only at the RVN the previous step produced, so no one held
    /// the lock from the acquire until after `work` had finished. Otherwise the
    /// output is dropped and the error says why:
    /// * [`Error::LockLost`] if the token fired while `work` ran (then the lock is
    ///   still released if it happens to be ours, within one heartbeat period), or
    ///   if the release found the lock no longer ours;
    /// * [`Error::Database`] or [`Error::Timeout`] if the acquire or the release
    ///   failed (a lock not released lapses after its lease).
    ///
    /// In every error case `work` may or may not have had its effects; guard
    /// writes elsewhere with the lock's RVN as a fencing token if that matters.
    pub async fn with_lock<F, Fut, T>(&self, name: &str, work: F) -> Result<T, Error>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = T>,
    {
        self.with_lock_using(name, &AcquireOptions::default(), work)
            .await
    }

    /// [`Client::with_lock`], acquiring with `options`.
    pub async fn with_lock_using<F, Fut, T>(
        &self,
        name: &str,
        options: &AcquireOptions,
        work: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = T>,
    {
        let lock = self.acquire_with(name, options).await?;
        let output = work(lock.lost_token()).await;
        if let Some(reason) = lock.lost_reason() {
            let name = lock.name().to_owned();
            // The lock may still be ours (heartbeats failed, nobody took over yet):
            // releasing frees it early. Either way the outcome is the loss.
            let _ = tokio::time::timeout(self.config().heartbeat_period(), lock.release()).await;
            return Err(Error::LockLost { name, reason });
        }
        lock.release().await?;
        Ok(output)
    }

    pub(crate) fn sql(&self) -> &Arc<Sql> {
        &self.inner.sql
    }

    pub(crate) fn timing(&self) -> Timing {
        self.inner.timing
    }

    pub(crate) fn seen(&self) -> MutexGuard<'_, Observations> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
