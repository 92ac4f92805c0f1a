//! Waiting in the server: a waiting acquire sleeps in `pglock_acquire_wait` (or
//! `pglock_acquire_slot`) on a connection of its own, so the server hands it the
//! lock the moment it is released, in arrival order, and the client's renewals
//! go on over the client's connection meanwhile.
//!
//! Only a client that opens its connections itself ([`Client::connect`]) has
//! them, and only where the server wakes its waiters: pglock preloaded, and no
//! pooler in transaction mode between (a waiting call would hold one of its few
//! server connections; [`StatementMode::Unnamed`] says there is one).  Elsewhere
//! the client polls, as [`WaitMode::Client`] asks.
//!
//! [`Client::connect`]: crate::Client::connect
//! [`StatementMode::Unnamed`]: crate::StatementMode::Unnamed
//! [`WaitMode::Client`]: crate::WaitMode::Client

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;

use crate::config::StatementMode;
use crate::connection::{Canceller, Connection, Failure, Opener};
use crate::error::Error;
use crate::sql::{Calls, Sql};

/// Makes the opener and canceller of one more connection like the client's.
pub(crate) type Connector = Box<dyn Fn() -> (Opener, Canceller) + Send + Sync>;

/// Idle waiting connections kept for the next waits.
const IDLE_KEPT: usize = 4;

/// The waiting connections of one client.
pub(crate) struct Waits {
    connector: Connector,
    max_backoff: Duration,
    idle: Mutex<Vec<Connection>>,
    /// Whether this server waits for us, once a connection could ask.
    in_server: OnceCell<bool>,
}

impl std::fmt::Debug for Waits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waits")
            .field("in_server", &self.in_server.get())
            .finish_non_exhaustive()
    }
}

impl Waits {
    pub fn new(connector: Connector, max_backoff: Duration) -> Waits {
        Waits {
            connector,
            max_backoff,
            idle: Mutex::new(Vec::new()),
            in_server: OnceCell::new(),
        }
    }

    /// Whether waits go to the server: asked once, on the first wait.  A server
    /// that cannot be reached now says nothing yet: this wait polls, and the
    /// next one asks again.
    pub async fn in_server(&self) -> bool {
        if let Some(known) = self.in_server.get() {
            return *known;
        }
        let connection = match self.connection().await {
            Ok(connection) => connection,
            // The extension predates waits in the server (no pglock_preloaded).
            Err(error) if error.code() == Some(&SqlState::UNDEFINED_FUNCTION) => {
                let _ = self.in_server.set(false);
                return false;
            }
            Err(_) => return false,
        };
        let asked = connection
            .call(None, "pglock_preloaded", |sql| async move {
                sql.preloaded().await
            })
            .await;
        self.give_back(connection);
        match asked {
            Ok(preloaded) => {
                let _ = self.in_server.set(preloaded);
                preloaded
            }
            Err(_) => false,
        }
    }

    /// Run `call` on a waiting connection of its own, limited to `limit`.
    pub async fn call<T, F, Fut>(
        &self,
        limit: Option<Duration>,
        operation: &'static str,
        call: F,
    ) -> Result<T, Error>
    where
        F: FnOnce(std::sync::Arc<Sql>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let connection = self.connection().await?;
        let outcome = connection.call(limit, operation, call).await;
        // A connection whose call broke it reconnects on its next call.
        self.give_back(connection);
        outcome.map_err(Failure::into_error)
    }

    async fn connection(&self) -> Result<Connection, Error> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(connection) = idle {
            return Ok(connection);
        }
        let (opener, canceller) = (self.connector)();
        Connection::open(
            opener,
            canceller,
            self.max_backoff,
            StatementMode::Prepared,
            Calls::Waits,
        )
        .await
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE_KEPT {
            idle.push(connection);
        }
    }
}
