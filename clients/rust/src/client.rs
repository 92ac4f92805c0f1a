//! The client: a connection, a configuration, and what it has seen of others' locks.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{NoTls, Socket};
use tokio_util::sync::CancellationToken;

use crate::config::{ClientConfig, StatementMode, WaitMode};
use crate::connection::{Canceller, Connection, Failure, Opener};
use crate::error::Error;
use crate::heartbeat::Timing;
use crate::observe::Observations;
use crate::options::AcquireOptions;
use crate::renewer::Renewer;
use crate::sql::{Calls, LockInfo};
use crate::waits::{Connector, Waits};

/// A pglock client: one owner label, lease and heartbeat period, on one connection.
///
/// Cheap to clone; clones share the connection, the RVN watch (what
/// [`Client::try_acquire`] remembers) and the renewer: one background task that
/// renews every lock the client holds, all in one `pglock_heartbeat_many` call
/// per heartbeat period. The task runs while the client holds a lock, also after
/// the `Client` itself is dropped, and ends with its last lock. Renewals go over
/// the same connection as every other call, so keep long-running statements off
/// it: a renewal waiting behind them counts as a failing one.
///
/// A client made with [`Client::connect`] or [`Client::connect_tls`] opens its
/// connection again when it breaks, and its locks outlive the break if a
/// heartbeat gets through in time (see [Reconnecting](crate#reconnecting)).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    renewer: Arc<Renewer>,
    config: ClientConfig,
    seen: Mutex<Observations>,
    /// Connections for waits in the server, if this client opens its own.
    waits: Option<Waits>,
}

impl Client {
    /// A client on an open connection (an owned `tokio_postgres::Client` or an
    /// `Arc` of one, to keep using it for other statements). Checks `config` and
    /// prepares pglock's statements, so it fails if the extension is missing.
    ///
    /// This connection is the client's for good: if it breaks, every call fails
    /// with [`Error::Database`] and held locks are lost by the usual rule. Use
    /// [`Client::connect`] or [`Client::connect_tls`] for a client that reconnects.
    ///
    /// A call abandoned at its time limit is cancelled with a cancel request
    /// sent without TLS (the client does not know the connection's connector):
    /// with `sslmode=require` it cannot be sent, and the statement runs on. A
    /// cancel request stops whatever the connection runs when it arrives: on a
    /// connection shared with statements of yours, one of them may fail with
    /// `57014` instead.
    pub async fn new(
        pg: impl Into<Arc<tokio_postgres::Client>>,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let connection = Connection::given(pg.into(), config.statements()).await?;
        Ok(Self::on(connection, config, None))
    }

    /// Checks `config`, connects without TLS and runs the connection on a tokio
    /// task. When the connection breaks, the client opens a new one with
    /// `pg_config` (see [Reconnecting](crate#reconnecting)); list every server
    /// of a cluster with `target_session_attrs=read-write` to follow its primary.
    pub async fn connect(
        pg_config: &tokio_postgres::Config,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        Self::connect_tls(pg_config, NoTls, config).await
    }

    /// [`Client::connect`], over TLS made by `tls` (e.g. a `postgres-native-tls`
    /// or `postgres-openssl` connector).
    pub async fn connect_tls<T>(
        pg_config: &tokio_postgres::Config,
        tls: T,
        config: ClientConfig,
    ) -> Result<Self, Error>
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        config.validate()?;
        let pg_config = pg_config.clone();
        // Every connection of the client (its own, its waiting ones) is opened,
        // and its statements cancelled, the same way: over TLS made by `tls`,
        // as the server may accept nothing else.
        let connector: Connector = Box::new(move || {
            let cancel_tls = tls.clone();
            let canceller: Canceller = Box::new(move |token| {
                let tls = cancel_tls.clone();
                Box::pin(async move { token.cancel_query(tls).await })
            });
            let (pg_config, tls) = (pg_config.clone(), tls.clone());
            let opener: Opener = Box::new(move || {
                let (pg_config, tls) = (pg_config.clone(), tls.clone());
                Box::pin(async move {
                    let (pg, connection) = pg_config.connect(tls).await?;
                    let task = tokio::spawn(async move {
                        // Its error reaches the client as a closed connection.
                        let _ = connection.await;
                    });
                    Ok((pg, Some(task.abort_handle())))
                })
            });
            (opener, canceller)
        });
        let max_backoff = Timing::new(&config).retry();
        let (opener, canceller) = connector();
        let connection = Connection::open(
            opener,
            canceller,
            max_backoff,
            config.statements(),
            Calls::Main,
        )
        .await?;
        let waits = Waits::new(connector, max_backoff);
        Ok(Self::on(connection, config, Some(waits)))
    }

    fn on(connection: Connection, config: ClientConfig, waits: Option<Waits>) -> Self {
        Self {
            inner: Arc::new(Inner {
                renewer: Arc::new(Renewer::new(Arc::new(connection), &config)),
                config,
                seen: Mutex::new(Observations::new()),
                waits,
            }),
        }
    }

    /// The connections that wait in the server, where it waits for this client.
    pub(crate) async fn server_waits(&self) -> Option<&Waits> {
        let waits = self.inner.waits.as_ref()?;
        let config = self.config();
        if config.wait_mode() == WaitMode::Client || config.statements() == StatementMode::Unnamed {
            return None;
        }
        waits.in_server().await.then_some(waits)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// How many times this client has replaced a broken connection with a new one
    /// (always 0 for a client made with [`Client::new`]).
    pub fn reconnects(&self) -> u64 {
        self.connection().reconnects()
    }

    /// The lock `name` as the server has it, or `None` if it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<LockInfo>, Error> {
        self.connection()
            .call(
                self.config().call_timeout(),
                "pglock_get",
                |sql| async move { sql.get(name).await },
            )
            .await
            .map_err(Failure::into_error)
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

    pub(crate) fn connection(&self) -> &Arc<Connection> {
        self.inner.renewer.connection()
    }

    pub(crate) fn renewer(&self) -> &Arc<Renewer> {
        &self.inner.renewer
    }

    pub(crate) fn seen(&self) -> MutexGuard<'_, Observations> {
        self.inner
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
