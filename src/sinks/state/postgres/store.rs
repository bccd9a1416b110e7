//! The PostgreSQL store's types, shared by the files that implement it: [`PgStore`] (the
//! protocol's store on a [`PgDb`]) and its [`PgOptions`], one connection (`Conn`) and its backend `Session`, why one attempt failed
//! (`Failure`) and, with the cargo feature `fault-injection`, the simulated failure a test
//! can inject (`Fault`).

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::{Config, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::client::{CallError, Client, Queries};
use crate::sinks::state::protocol::Store;

use crate::error::StateError;

/// The PostgreSQL state store ([`PgStore::connect`], or `sinks::state::open` with a
/// `StateConfig::Postgres`).
pub type PgStore = Store<PgDb>;

/// The PostgreSQL database of a [`PgStore`]: its connection, its lease and the retry loop
/// every call runs through.
pub struct PgDb {
    /// The live connection; `None` after a loss until the next reconnect.
    pub(super) conn: Option<Conn>,
    pub(super) config: Config,
    pub(super) tls: MakeRustlsConnect,
    /// The URL for messages and logs (`redact::url`).
    pub(super) url: String,
    pub(super) options: PgOptions,
    /// The session holding the advisory lock: `Some` from `begin_run` on.
    pub(super) lease: Option<Session>,
    /// Connected by [`PgStore::connect_read_only`]: read-only sessions, `begin_run` refused.
    pub(super) read_only: bool,
    /// A one-shot failure to simulate in the next `commit_epoch` (tests).
    #[cfg(feature = "fault-injection")]
    pub(super) fault: Option<Fault>,
}

/// PostgreSQL connection options beyond the URL.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// PEM file of CA certificates to trust for TLS (e.g. the RDS bundle); the Mozilla roots otherwise.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long to keep retrying a lost connection before giving up.
    pub reconnect_timeout: std::time::Duration,
    /// At start: how long to try to reach PostgreSQL (a refused connection or an unresolvable
    /// host) before failing with one line. Later reconnects use `reconnect_timeout`.
    pub connect_timeout: std::time::Duration,
    /// How long any one statement (COMMIT included) may wait for its answer before the
    /// connection counts as lost (a frozen server or network path); `reconnect_timeout`
    /// then applies.
    pub statement_timeout: std::time::Duration,
    /// Told of every retried operation (the run's telemetry).
    pub retries: crate::retry_count::Retries,
}

/// Default of [`PgOptions::statement_timeout`] (`--pg-statement-timeout`).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            ca_file: None,
            reconnect_timeout: std::time::Duration::from_secs(60),
            connect_timeout: std::time::Duration::from_secs(10),
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            retries: Default::default(),
        }
    }
}

/// One PostgreSQL backend session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Session {
    pub(super) pid: i32,
    /// `pg_stat_activity.backend_start`: with the pid, identifies the session (pids recycle).
    pub(super) started: String,
}

pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) session: Session,
    /// Prepared statements of this connection, by SQL text.
    pub(super) statements: HashMap<&'static str, Statement>,
}

impl Conn {
    pub(super) fn prepare(&mut self, sql: &'static str) -> Result<Statement, CallError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }
}

/// Why one attempt failed.
pub enum Failure {
    /// A PostgreSQL error while doing `what`; `at_commit` = it was the answer to COMMIT.
    Pg {
        what: &'static str,
        error: tokio_postgres::Error,
        at_commit: bool,
    },
    /// No answer to `what` within the statement timeout: the connection counts as lost
    /// (`at_commit`: the COMMIT's outcome is unknown).
    TimedOut {
        what: &'static str,
        waited: Duration,
        at_commit: bool,
    },
    /// A simulated connection loss (`Fault`, tests only).
    #[cfg(feature = "fault-injection")]
    Simulated { at_commit: bool },
    /// The advisory lock is held by another session.
    Held(String),
    /// No host name of the URL resolves (or resolving takes too long): retried, as a
    /// server that is not reachable yet.
    Unresolved(String),
    /// Anything else: not retried.
    State(StateError),
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure::State(e)
    }
}

/// `map_err` helper: a PostgreSQL error (or no answer in time) while doing `what`.
pub(super) fn pg<E: Into<CallError>>(what: &'static str) -> impl Fn(E) -> Failure {
    move |error| match error.into() {
        CallError::Pg(error) => Failure::Pg {
            what,
            error,
            at_commit: false,
        },
        CallError::TimedOut(waited) => Failure::TimedOut {
            what,
            waited,
            at_commit: false,
        },
    }
}

impl Failure {
    /// The same failure, as the answer to COMMIT (whose outcome it leaves unknown if the
    /// connection is gone).
    pub(super) fn at_commit(self) -> Failure {
        match self {
            Failure::Pg { what, error, .. } => Failure::Pg {
                what,
                error,
                at_commit: true,
            },
            Failure::TimedOut { what, waited, .. } => Failure::TimedOut {
                what,
                waited,
                at_commit: true,
            },
            other => other,
        }
    }
}

#[cfg(feature = "fault-injection")]
/// A simulated connection loss for tests of the recovery paths: the store's own backend is
/// terminated (`pg_terminate_backend(pg_backend_pid())`) at the given point of the next
/// `commit_epoch`, a real loss the retry logic has to see through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Inside the transaction, before COMMIT: the server rolls it back.
    LoseConnectionBeforeCommit,
    /// Right after COMMIT succeeded, reported as a loss during COMMIT: outcome unknown
    /// (it committed).
    LoseConnectionAfterCommit,
    /// Instead of sending COMMIT, reported as a loss during COMMIT: outcome unknown (it
    /// rolled back).
    LoseConnectionDuringCommit,
}
