//! The production state store: PostgreSQL (RDS), TLS, unknown-COMMIT handling, single-writer lease.
//!
//! # Single writer
//! [`StateStore::begin_run`] takes a session-level advisory lock (`pg_try_advisory_lock`,
//! key [`LOCK_KEY`], per database) before touching anything; if another session holds it the
//! answer is [`StateError::Locked`] naming that session. The lock lives as long as the
//! session; every reconnect re-takes it before doing anything else. When the holder is our
//! own previous session that PostgreSQL has not noticed is gone yet (a network failure leaves
//! such "half-open" backends behind), it is terminated, so its transaction is finished one
//! way or the other before we look at the data.
//!
//! # Connection loss and the unknown COMMIT
//! Every method runs its work through a retry loop: a lost connection (I/O error, closed
//! socket, server shutdown or crash, "the database system is starting up"...) drops the
//! client, reconnects with exponential backoff (100 ms doubling to 2 s), re-takes the lock and
//! runs the work again, for at most [`PgOptions::reconnect_timeout`] after the first failure;
//! then [`StateError::Unavailable`]. At start, [`PgStore::connect`] is bounded by
//! [`PgOptions::connect_timeout`] instead (a refused connection, a host name that does not
//! resolve, no answer), then [`StateError::Unreachable`]: a misconfigured URL fails fast with
//! one line. Host names are resolved on a helper thread within the bound (tokio-postgres
//! bounds only the TCP connect). All methods are idempotent except
//! [`StateStore::commit_epoch`], whose COMMIT may have been applied even though its answer was
//! lost. So a commit lost *at* COMMIT is marked in doubt, and after reconnecting (and
//! re-locking: the lock is only free once the old session, and so its transaction, is over)
//! the epoch's row in `epochs` is the proof: present → it committed, done; absent → the whole
//! transaction is retried. A loss before COMMIT means the server rolled back: plain retry.
//! Any statement error inside the transaction ends the attempt before COMMIT is sent, so the
//! "COMMIT answered with ROLLBACK" trap cannot occur.
//!
//! # TLS
//! `sslmode=disable|prefer|require` in the URL (prefer is the default). rustls always
//! verifies the certificate chain and the host name, so `require` here is libpq's
//! `verify-full`; `sslmode=verify-ca` and `verify-full` are accepted as synonyms of
//! `require`. Trusted roots: [`PgOptions::ca_file`] (PEM, e.g. the RDS bundle), else libpq's
//! `sslrootcert=PATH` from the URL (stripped before the URL reaches tokio-postgres, which
//! rejects it; `sslrootcert=system` means the default), else the Mozilla roots
//! (`webpki-roots`). Client certificates (`sslcert`, `sslkey`) are not supported.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::postgres::{Client, Config, Row, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    check_schema_version, merged_deltas, record_identity, redact_url, sql_i64, sql_u64,
    EpochCommit, EpochRow, LedgerRow, Recovered, RunIdentity, StateStore, META_IDENTITY_WHERE,
    MIGRATIONS,
};
use crate::error::StateError;

/// The advisory lock key of the single-writer lease ("txflow" in ASCII).
pub const LOCK_KEY: i64 = 0x7478_666c_6f77;

/// Connect timeout per attempt unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long unacknowledged data may sit on a dead TCP connection (unless the URL says).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

const SQL_INSERT_EPOCH: &str =
    "INSERT INTO epochs (epoch, chunk_key, rows_accepted, rows_rejected, committed_at, \
     chunk_digest) SELECT $1::int8, $2::text, $3::int8, $4::int8, $5::text, $6::text \
     WHERE NOT EXISTS (SELECT 1 FROM epochs WHERE epoch >= $1::int8)";
const SQL_UPSERT_COUNTS: &str =
    "INSERT INTO merchant_transaction_counts (merchant_id, total_transactions) \
     SELECT * FROM UNNEST($1::text[], $2::int8[]) \
     ON CONFLICT (merchant_id) DO UPDATE SET total_transactions = \
     merchant_transaction_counts.total_transactions + excluded.total_transactions";
const SQL_INSERT_DETECTIONS: &str =
    "INSERT INTO detections (seq, epoch, pattern_id, action_type, customer_name, merchant_id, \
     y_start_time, detection_time, file_seq) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::int8[])";
const SQL_EPOCH_PRESENT: &str = "SELECT EXISTS (SELECT 1 FROM epochs WHERE epoch = $1)";
const SQL_LOCK_HOLDER: &str = "SELECT l.pid, COALESCE(a.backend_start::text, ''), \
     COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), 'local socket') \
     FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND ((l.classid::int8 << 32) | l.objid::int8) = $1";

pub struct PgStore {
    /// The live connection; `None` after a loss until the next reconnect.
    conn: Option<Conn>,
    config: Config,
    tls: MakeRustlsConnect,
    /// The URL for messages and logs (password redacted).
    url: String,
    options: PgOptions,
    /// The session holding the advisory lock: `Some` from `begin_run` on.
    lease: Option<Session>,
    /// A one-shot failure to simulate in the next `commit_epoch` (tests).
    fault: Option<Fault>,
}

/// A simulated connection loss for tests of the recovery paths: the store's own backend is
/// terminated (`pg_terminate_backend(pg_backend_pid())`) at the given point of the next
/// `commit_epoch`, a real loss the retry logic has to see through.
#[doc(hidden)]
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

/// One PostgreSQL backend session.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    pid: i32,
    /// `pg_stat_activity.backend_start`: with the pid, identifies the session (pids recycle).
    started: String,
}

struct Conn {
    client: Client,
    session: Session,
    /// Prepared statements of this connection, by SQL text.
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    fn prepare(&mut self, sql: &'static str) -> Result<Statement, ::postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare(sql)?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }
}

/// Why one attempt failed.
enum Failure {
    /// A PostgreSQL error while doing `what`; `at_commit` = it was the answer to COMMIT.
    Pg {
        what: &'static str,
        error: ::postgres::Error,
        at_commit: bool,
    },
    /// A simulated connection loss (see [`Fault`]).
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

/// `map_err` helper: a PostgreSQL error while doing `what`.
fn pg(what: &'static str) -> impl Fn(::postgres::Error) -> Failure {
    move |error| Failure::Pg {
        what,
        error,
        at_commit: false,
    }
}

/// Whether an error means the connection is gone (or the server is restarting), so that
/// reconnecting and retrying can help; false for SQL errors, authentication and TLS failures.
fn is_connection_loss(e: &::postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08") // connection_exception
            || matches!(
                code,
                "57P01" // admin_shutdown
                | "57P02" // crash_shutdown
                | "57P03" // cannot_connect_now (starting up / shutting down)
                | "57P05" // idle_session_timeout
                | "53300" // too_many_connections
                | "25006" // read_only_sql_transaction: a failed-over primary, reconnect
                | "40001" // serialization_failure
                | "40P01" // deadlock_detected
            );
    }
    match e.source() {
        // I/O failures (connection refused, reset, timed out...), but not a TLS
        // verification failure, which tokio-rustls reports as an io::Error around rustls's,
        // nor an invalid TLS server name (InvalidInput).
        Some(source) => source.downcast_ref::<std::io::Error>().is_some_and(|io| {
            io.kind() != std::io::ErrorKind::InvalidInput
                && !io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>())
        }),
        None => e.to_string() == "timeout waiting for server",
    }
}

/// The error and its causes on one line (tokio-postgres's own `Display` omits the cause).
fn error_chain(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!(
            "{} {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            s.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            s.push_str(&format!("; hint: {hint}"));
        }
        return s;
    }
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// Bounded reconnection: exponential backoff from the first failure, up to the timeout.
struct Retry {
    timeout: Duration,
    first_failure: Option<Instant>,
    attempt: u32,
    /// The last failure's error, as reported to [`Retry::failed`].
    last_error: String,
}

impl Retry {
    fn new(timeout: Duration) -> Retry {
        Retry {
            timeout,
            first_failure: None,
            attempt: 0,
            last_error: String::new(),
        }
    }

    /// Time left before giving up.
    fn remaining(&self) -> Duration {
        match self.first_failure {
            None => self.timeout,
            Some(t) => self.timeout.saturating_sub(t.elapsed()),
        }
    }

    /// Records a failure (`error`, `locked` when the lease is held elsewhere) and waits
    /// before the next attempt, or gives up once the bound is spent.
    fn failed(
        &mut self,
        url: &str,
        what: &str,
        error: &str,
        locked: bool,
    ) -> Result<(), StateError> {
        let started = *self.first_failure.get_or_insert_with(Instant::now);
        let elapsed = started.elapsed();
        self.last_error = error.to_string();
        if elapsed >= self.timeout {
            return Err(if locked {
                StateError::Locked {
                    detail: error.to_string(),
                }
            } else {
                StateError::Unavailable {
                    seconds: elapsed.as_secs_f64().round() as u64,
                    last_error: format!("{what} on {url}: {error}"),
                }
            });
        }
        // The first retry is immediate: most losses are a single dropped connection.
        let delay = if self.attempt == 0 {
            Duration::ZERO
        } else {
            FIRST_BACKOFF
                .saturating_mul(1 << (self.attempt - 1).min(10))
                .min(MAX_BACKOFF)
        }
        .min(self.timeout - elapsed);
        self.attempt += 1;
        tracing::warn!(
            url,
            attempt = self.attempt,
            retry_in_ms = delay.as_millis() as u64,
            gives_up_in_s = (self.timeout - elapsed).as_secs(),
            "PostgreSQL state store: {what} failed ({error}); reconnecting"
        );
        std::thread::sleep(delay);
        Ok(())
    }
}

impl PgStore {
    /// Parses the URL, builds the TLS configuration and connects, retrying a server that
    /// refuses connections or a host that does not resolve for up to
    /// `options.connect_timeout`, then failing with [`StateError::Unreachable`] (later
    /// reconnects keep `options.reconnect_timeout`). The lock is taken by `begin_run`.
    pub fn connect(url: &str, options: &PgOptions) -> Result<PgStore, StateError> {
        let (clean_url, url_ca_file) = split_libpq_options(url)?;
        let redacted = redact(&clean_url);
        let mut config = Config::from_str(&clean_url).map_err(|e| StateError::BadUrl {
            url: redacted.clone(),
            reason: error_chain(&e),
        })?;
        if config.get_application_name().is_none() {
            config.application_name("txflow");
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        // Like libpq, no TLS over Unix sockets unless required (tokio-postgres would try it
        // with the default `prefer` and fail for want of a host name to verify).
        let unix_only = config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, ::postgres::config::Host::Unix(_)));
        if unix_only && config.get_ssl_mode() == ::postgres::config::SslMode::Prefer {
            config.ssl_mode(::postgres::config::SslMode::Disable);
        }
        let ca_file = options.ca_file.clone().or(url_ca_file);
        let tls = tls_connector(ca_file.as_deref())?;
        let mut store = PgStore {
            conn: None,
            config,
            tls,
            url: redacted,
            options: options.clone(),
            lease: None,
            fault: None,
        };
        let mut retry = Retry::new(options.connect_timeout);
        if let Err(e) = store.reconnect(&mut retry, "connecting") {
            return Err(match e {
                StateError::Unavailable { .. } => StateError::Unreachable {
                    url: store.url.clone(),
                    hosts: describe_hosts(&store.config),
                    seconds: options.connect_timeout.as_secs_f64(),
                    last_error: retry.last_error,
                },
                other => other,
            });
        }
        tracing::debug!(url = %store.url, "connected to the PostgreSQL state store");
        Ok(store)
    }

    /// Makes the next `commit_epoch` lose its connection at the given point (tests).
    #[doc(hidden)]
    pub fn inject_fault(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }

    /// The backend pid of the current connection, if connected (tests, diagnostics).
    #[doc(hidden)]
    pub fn backend_pid(&self) -> Option<i32> {
        self.conn.as_ref().map(|c| c.session.pid)
    }

    /// One connection attempt.
    fn open_connection(&self, remaining: Duration) -> Result<Conn, Failure> {
        let mut config = self.config.clone();
        let per_attempt = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT)
            .min(remaining.max(Duration::from_secs(1)));
        config.connect_timeout(per_attempt);
        // tokio-postgres bounds the TCP connect, not the host name lookup before it.
        check_resolvable(&config, per_attempt).map_err(Failure::Unresolved)?;
        let mut client = config.connect(self.tls.clone()).map_err(pg("connecting"))?;
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), COALESCE((SELECT backend_start::text \
                 FROM pg_stat_activity WHERE pid = pg_backend_pid()), '')",
                &[],
            )
            .map_err(pg("connecting"))?;
        Ok(Conn {
            session: Session {
                pid: row.get(0),
                started: row.get(1),
            },
            client,
            statements: HashMap::new(),
        })
    }

    /// (Re)connects, re-taking the lease if this store held it, within `retry`'s bound.
    fn reconnect(&mut self, retry: &mut Retry, what: &'static str) -> Result<(), StateError> {
        loop {
            let failure = match self.open_connection(retry.remaining()) {
                Ok(mut conn) => match &self.lease {
                    None => {
                        self.conn = Some(conn);
                        return Ok(());
                    }
                    Some(old) => match relock(&mut conn, old) {
                        Ok(()) => {
                            tracing::info!(url = %self.url, pid = conn.session.pid, "reconnected to the PostgreSQL state store and re-took the single-writer lock");
                            self.lease = Some(conn.session.clone());
                            self.conn = Some(conn);
                            return Ok(());
                        }
                        Err(f) => f,
                    },
                },
                Err(f) => f,
            };
            self.conn = None;
            self.retry_or_fail(failure, retry, what)?;
        }
    }

    /// After a failed attempt: `Ok` (having waited) if it is worth another, else the error.
    fn retry_or_fail(
        &mut self,
        failure: Failure,
        retry: &mut Retry,
        what: &'static str,
    ) -> Result<(), StateError> {
        match failure {
            Failure::Pg {
                what: step, error, ..
            } if is_connection_loss(&error) => {
                self.conn = None;
                retry.failed(&self.url, step, &error_chain(&error), false)
            }
            Failure::Pg {
                what: step, error, ..
            } => {
                let mut context = format!("{step} on {}: {}", self.url, error_chain(&error));
                if context.contains("certificate") {
                    context.push_str(
                        " (for a private CA such as RDS's, pass its PEM bundle as the CA file or sslrootcert=)",
                    );
                }
                Err(StateError::Postgres {
                    context,
                    source: error,
                })
            }
            Failure::Simulated { .. } => {
                self.conn = None;
                retry.failed(&self.url, what, "simulated connection loss", false)
            }
            Failure::Held(detail) => retry.failed(&self.url, what, &detail, true),
            Failure::Unresolved(error) => {
                self.conn = None;
                retry.failed(&self.url, what, &error, false)
            }
            Failure::State(e) => Err(e),
        }
    }

    /// Runs an idempotent piece of work, reconnecting and re-running it after a connection
    /// loss.
    fn run<T>(
        &mut self,
        what: &'static str,
        mut work: impl FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, StateError> {
        let mut retry = Retry::new(self.options.reconnect_timeout);
        loop {
            if self.conn.is_none() {
                self.reconnect(&mut retry, what)?;
            }
            let conn = self.conn.as_mut().expect("connected");
            match work(conn) {
                Ok(value) => return Ok(value),
                Err(Failure::Held(detail)) => return Err(StateError::Locked { detail }),
                Err(failure) => self.retry_or_fail(failure, &mut retry, what)?,
            }
        }
    }

    fn require_lease(&self, what: &str) -> Result<(), StateError> {
        if self.lease.is_none() {
            return Err(StateError::Inconsistent(format!(
                "{what} before begin_run took the single-writer lock"
            )));
        }
        Ok(())
    }

    fn ledger_query(
        &mut self,
        sql: &'static str,
        args: &[u64],
    ) -> Result<Vec<LedgerRow>, StateError> {
        let args = args
            .iter()
            .map(|&a| sql_i64(a, "sequence number"))
            .collect::<Result<Vec<i64>, _>>()?;
        self.run("reading the ledger", |c| {
            let st = c.prepare(sql).map_err(pg("reading the ledger"))?;
            let params: Vec<&(dyn ::postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| a as &(dyn ::postgres::types::ToSql + Sync))
                .collect();
            let rows = c
                .client
                .query(&st, &params)
                .map_err(pg("reading the ledger"))?;
            rows.iter().map(ledger_row).collect()
        })
    }
}

/// Takes the lease on a fresh connection after a loss. If the holder is our own previous
/// session (the server has not noticed it is gone), terminates it and reports the lock as
/// held, so the caller retries shortly.
fn relock(conn: &mut Conn, old: &Session) -> Result<(), Failure> {
    if try_lock(conn)? {
        return Ok(());
    }
    let holders = conn
        .client
        .query(SQL_LOCK_HOLDER, &[&LOCK_KEY])
        .map_err(pg("looking up the lock holder"))?;
    for row in &holders {
        let holder = Session {
            pid: row.get(0),
            started: row.get(1),
        };
        if &holder == old {
            tracing::warn!(
                pid = holder.pid,
                "our previous PostgreSQL session still holds the single-writer lock; terminating it"
            );
            conn.client
                .execute("SELECT pg_terminate_backend($1)", &[&holder.pid])
                .map_err(pg("terminating our previous session"))?;
        }
    }
    Err(Failure::Held(describe_holders(&holders)))
}

/// `pg_try_advisory_lock` on the single-writer key.
fn try_lock(conn: &mut Conn) -> Result<bool, Failure> {
    conn.client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .map_err(pg("taking the single-writer lock"))?
        .try_get(0)
        .map_err(pg("taking the single-writer lock"))
}

fn describe_holders(rows: &[Row]) -> String {
    let holders: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "session pid {} (application {:?}, client {}, connected since {})",
                r.get::<_, i32>(0),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                r.get::<_, String>(1),
            )
        })
        .collect();
    if holders.is_empty() {
        format!("advisory lock {LOCK_KEY:#x} is held by another session")
    } else {
        format!(
            "advisory lock {LOCK_KEY:#x} is held by {}",
            holders.join(", ")
        )
    }
}

fn ledger_row(r: &Row) -> Result<LedgerRow, Failure> {
    let get_i64 = |i: usize| r.try_get::<_, i64>(i).map_err(pg("reading the ledger"));
    let get_str = |i: usize| r.try_get::<_, String>(i).map_err(pg("reading the ledger"));
    Ok(LedgerRow {
        seq: sql_u64(get_i64(0)?, "sequence number")?,
        epoch: sql_u64(get_i64(1)?, "epoch")?,
        pattern_id: get_str(2)?,
        action_type: get_str(3)?,
        customer_name: get_str(4)?,
        merchant_id: get_str(5)?,
        y_start_time: get_str(6)?,
        detection_time: get_str(7)?,
        file_seq: r
            .try_get::<_, Option<i64>>(8)
            .map_err(pg("reading the ledger"))?
            .map(|f| sql_u64(f, "file_seq"))
            .transpose()?,
    })
}

fn migrate(c: &mut Conn) -> Result<(), Failure> {
    let what = "applying migrations";
    c.client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version BIGINT PRIMARY KEY, applied_at TEXT)",
        )
        .map_err(pg(what))?;
    let newest: Option<i64> = c
        .client
        .query_one("SELECT max(version) FROM schema_migrations", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg(what))?;
    check_schema_version(newest)?;
    for (version, sql) in MIGRATIONS {
        let mut tx = c.client.transaction().map_err(pg(what))?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[version],
            )
            .map_err(pg(what))?
            .is_some();
        if !done {
            tx.batch_execute(sql).map_err(pg(what))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, \
                 to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))",
                &[version],
            )
            .map_err(pg(what))?;
            tracing::info!(version, "applied state store migration");
        }
        tx.commit().map_err(pg(what))?;
    }
    Ok(())
}

fn check_identity(c: &mut Conn, requested: &RunIdentity) -> Result<(), Failure> {
    let what = "checking the run identity";
    let mut tx = c.client.transaction().map_err(pg(what))?;
    let stored = tx
        .query(
            &format!("SELECT key, value FROM run_meta WHERE {META_IDENTITY_WHERE}"),
            &[],
        )
        .map_err(pg(what))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<BTreeMap<String, String>, ::postgres::Error>>()
        .map_err(pg(what))?;
    let has_epochs: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM epochs)", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg(what))?;
    if record_identity(&stored, requested, has_epochs)? {
        for (key, value) in requested.meta_entries() {
            tx.execute(
                "INSERT INTO run_meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .map_err(pg(what))?;
        }
        tx.execute("DELETE FROM run_meta WHERE key = 'finished'", &[])
            .map_err(pg(what))?;
    }
    tx.commit().map_err(pg(what))
}

fn read_recovered(c: &mut Conn) -> Result<Recovered, Failure> {
    let what = "reading the committed state";
    let mut tx = c
        .client
        .build_transaction()
        .isolation_level(::postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(pg(what))?;
    let epochs = tx
        .query("SELECT epoch, chunk_digest FROM epochs ORDER BY epoch", &[])
        .map_err(pg(what))?
        .iter()
        .map(|r| {
            Ok((
                sql_u64(r.try_get(0).map_err(pg(what))?, "epoch")?,
                r.try_get(1).map_err(pg(what))?,
            ))
        })
        .collect::<Result<BTreeMap<u64, Option<String>>, Failure>>()?;
    let emitted = tx
        .query(
            "SELECT pattern_id, customer_name, merchant_id FROM detections ORDER BY seq",
            &[],
        )
        .map_err(pg(what))?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Result<Vec<_>, ::postgres::Error>>()
        .map_err(pg(what))?;
    let max_seq: Option<i64> = tx
        .query_one("SELECT max(seq) FROM detections", &[])
        .and_then(|r| r.try_get(0))
        .map_err(pg(what))?;
    let finished = tx
        .query_opt("SELECT 1 FROM run_meta WHERE key = 'finished'", &[])
        .map_err(pg(what))?
        .is_some();
    tx.commit().map_err(pg(what))?;
    Ok(Recovered {
        last_epoch: epochs.keys().next_back().copied(),
        epochs,
        emitted,
        next_seq: match max_seq {
            Some(s) => sql_u64(s, "sequence number")? + 1,
            None => 0,
        },
        finished,
    })
}

/// One epoch's rows as the SQL parameters of the commit transaction.
struct CommitParams<'a> {
    epoch: i64,
    chunk_key: &'a str,
    rows_accepted: i64,
    rows_rejected: i64,
    committed_at: &'a str,
    chunk_digest: Option<&'a str>,
    merchants: Vec<&'a str>,
    deltas: Vec<i64>,
    seqs: Vec<i64>,
    epochs: Vec<i64>,
    pattern_ids: Vec<&'a str>,
    action_types: Vec<&'a str>,
    customers: Vec<&'a str>,
    detection_merchants: Vec<&'a str>,
    y_start_times: Vec<&'a str>,
    detection_times: Vec<&'a str>,
    file_seqs: Vec<Option<i64>>,
}

impl<'a> CommitParams<'a> {
    fn new(c: &'a EpochCommit) -> Result<CommitParams<'a>, StateError> {
        let p = &c.progress;
        let (merchants, deltas) = merged_deltas(&c.counter_deltas)?.into_iter().unzip();
        let d = &c.detections;
        Ok(CommitParams {
            epoch: sql_i64(p.epoch, "epoch")?,
            chunk_key: &p.chunk_key,
            rows_accepted: sql_i64(p.rows_accepted, "rows_accepted")?,
            rows_rejected: sql_i64(p.rows_rejected, "rows_rejected")?,
            committed_at: &p.committed_at,
            chunk_digest: p.chunk_digest.as_deref(),
            merchants,
            deltas,
            seqs: d
                .iter()
                .map(|r| sql_i64(r.seq, "sequence number"))
                .collect::<Result<_, _>>()?,
            epochs: d
                .iter()
                .map(|r| sql_i64(r.epoch, "epoch"))
                .collect::<Result<_, _>>()?,
            pattern_ids: d.iter().map(|r| r.pattern_id.as_str()).collect(),
            action_types: d.iter().map(|r| r.action_type.as_str()).collect(),
            customers: d.iter().map(|r| r.customer_name.as_str()).collect(),
            detection_merchants: d.iter().map(|r| r.merchant_id.as_str()).collect(),
            y_start_times: d.iter().map(|r| r.y_start_time.as_str()).collect(),
            detection_times: d.iter().map(|r| r.detection_time.as_str()).collect(),
            file_seqs: d
                .iter()
                .map(|r| r.file_seq.map(|f| sql_i64(f, "file_seq")).transpose())
                .collect::<Result<_, _>>()?,
        })
    }
}

const KILL_OWN_BACKEND: &str = "SELECT pg_terminate_backend(pg_backend_pid())";

/// One attempt at the epoch transaction: 5 round trips (BEGIN, progress row, counters,
/// ledger, COMMIT), the statements prepared once per connection.
fn try_commit(c: &mut Conn, p: &CommitParams<'_>, fault: Option<Fault>) -> Result<(), Failure> {
    let what = "committing an epoch";
    let insert_epoch = c.prepare(SQL_INSERT_EPOCH).map_err(pg(what))?;
    let upsert_counts = c.prepare(SQL_UPSERT_COUNTS).map_err(pg(what))?;
    let insert_detections = c.prepare(SQL_INSERT_DETECTIONS).map_err(pg(what))?;
    let mut tx = c.client.transaction().map_err(pg(what))?;
    let inserted = tx
        .execute(
            &insert_epoch,
            &[
                &p.epoch,
                &p.chunk_key,
                &p.rows_accepted,
                &p.rows_rejected,
                &p.committed_at,
                &p.chunk_digest,
            ],
        )
        .map_err(pg("inserting the progress row"))?;
    if inserted == 0 {
        let last: Option<i64> = tx
            .query_one("SELECT max(epoch) FROM epochs", &[])
            .and_then(|r| r.try_get(0))
            .map_err(pg(what))?;
        return Err(Failure::State(StateError::Inconsistent(format!(
            "asked to commit epoch {} but epoch {} is already committed",
            p.epoch,
            last.map_or_else(|| "?".to_string(), |e| e.to_string())
        ))));
    }
    if !p.merchants.is_empty() {
        tx.execute(&upsert_counts, &[&p.merchants, &p.deltas])
            .map_err(pg("applying counter deltas"))?;
    }
    if !p.seqs.is_empty() {
        tx.execute(
            &insert_detections,
            &[
                &p.seqs,
                &p.epochs,
                &p.pattern_ids,
                &p.action_types,
                &p.customers,
                &p.detection_merchants,
                &p.y_start_times,
                &p.detection_times,
                &p.file_seqs,
            ],
        )
        .map_err(pg("inserting ledger rows"))?;
    }
    if let Some(fault @ (Fault::LoseConnectionBeforeCommit | Fault::LoseConnectionDuringCommit)) =
        fault
    {
        let at_commit = fault == Fault::LoseConnectionDuringCommit;
        return Err(match tx.batch_execute(KILL_OWN_BACKEND) {
            Err(error) if !at_commit => Failure::Pg {
                what,
                error,
                at_commit,
            },
            // (Not dead yet: dropping the transaction rolls it back, the same outcome.)
            _ => Failure::Simulated { at_commit },
        });
    }
    tx.commit().map_err(|error| Failure::Pg {
        what: "COMMIT",
        error,
        at_commit: true,
    })?;
    if fault == Some(Fault::LoseConnectionAfterCommit) {
        let _ = c.client.batch_execute(KILL_OWN_BACKEND);
        return Err(Failure::Simulated { at_commit: true });
    }
    Ok(())
}

impl StateStore for PgStore {
    fn begin_run(&mut self, run: &RunIdentity) -> Result<Recovered, StateError> {
        if self.lease.is_none() {
            // The lock comes first, so concurrent starts never race on migrations.
            let session = self.run("taking the single-writer lock", |c| {
                if try_lock(c)? {
                    return Ok(c.session.clone());
                }
                let holders = c
                    .client
                    .query(SQL_LOCK_HOLDER, &[&LOCK_KEY])
                    .map_err(pg("looking up the lock holder"))?;
                Err(Failure::Held(describe_holders(&holders)))
            })?;
            self.lease = Some(session);
        }
        self.run("applying migrations", migrate)?;
        self.run("checking the run identity", |c| check_identity(c, run))?;
        self.run("reading the committed state", read_recovered)
    }

    fn commit_epoch(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        self.require_lease("commit_epoch")?;
        let params = CommitParams::new(commit)?;
        let mut fault = self.fault.take();
        let mut retry = Retry::new(self.options.reconnect_timeout);
        // Whether an earlier attempt's COMMIT may have been applied.
        let mut in_doubt = false;
        loop {
            if self.conn.is_none() {
                self.reconnect(&mut retry, "committing an epoch")?;
            }
            let conn = self.conn.as_mut().expect("connected");
            let attempt = if in_doubt {
                // We hold the lock again, so the old session is gone and its transaction
                // settled: the progress row says whether it committed.
                let present = conn
                    .prepare(SQL_EPOCH_PRESENT)
                    .and_then(|st| conn.client.query_one(&st, &[&params.epoch]))
                    .and_then(|r| r.try_get::<_, bool>(0))
                    .map_err(pg("checking whether the epoch committed"));
                match present {
                    Ok(true) => {
                        tracing::warn!(url = %self.url, epoch = params.epoch, "the COMMIT's outcome was unknown; the epoch's progress row is in the store, so it committed");
                        return Ok(());
                    }
                    Ok(false) => {
                        tracing::warn!(url = %self.url, epoch = params.epoch, "the COMMIT's outcome was unknown; the epoch is not in the store, so it rolled back: retrying");
                        in_doubt = false;
                        try_commit(conn, &params, fault.take())
                    }
                    Err(f) => Err(f),
                }
            } else {
                try_commit(conn, &params, fault.take())
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(failure) => {
                    let lost_at_commit = match &failure {
                        Failure::Pg {
                            error, at_commit, ..
                        } => *at_commit && is_connection_loss(error),
                        Failure::Simulated { at_commit } => *at_commit,
                        _ => false,
                    };
                    in_doubt |= lost_at_commit;
                    self.retry_or_fail(failure, &mut retry, "committing an epoch")?;
                }
            }
        }
    }

    fn ledger_range(&mut self, from_seq: u64, to_seq: u64) -> Result<Vec<LedgerRow>, StateError> {
        const SQL: &str = "SELECT seq, epoch, pattern_id, action_type, customer_name, \
                           merchant_id, y_start_time, detection_time, file_seq FROM detections \
                           WHERE seq >= $1 AND seq < $2 ORDER BY seq";
        self.ledger_query(SQL, &[from_seq, to_seq.min(i64::MAX as u64)])
    }

    fn first_unwritten_seq(&mut self) -> Result<Option<u64>, StateError> {
        let what = "reading the ledger";
        let min = self.run(what, |c| {
            c.client
                .query_one(
                    "SELECT min(seq) FROM detections WHERE file_seq IS NULL",
                    &[],
                )
                .and_then(|r| r.try_get::<_, Option<i64>>(0))
                .map_err(pg(what))
        })?;
        min.map(|s| sql_u64(s, "sequence number")).transpose()
    }

    fn mark_written(
        &mut self,
        file_seq: u64,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<(), StateError> {
        self.require_lease("mark_written")?;
        let args = [
            sql_i64(file_seq, "file_seq")?,
            sql_i64(from_seq, "sequence number")?,
            sql_i64(to_seq.min(i64::MAX as u64), "sequence number")?,
        ];
        let what = "recording written ledger rows";
        self.run(what, |c| {
            let st = c
                .prepare("UPDATE detections SET file_seq = $1 WHERE seq >= $2 AND seq < $3")
                .map_err(pg(what))?;
            c.client
                .execute(&st, &[&args[0], &args[1], &args[2]])
                .map_err(pg(what))
        })?;
        Ok(())
    }

    fn mark_finished(&mut self) -> Result<(), StateError> {
        self.require_lease("mark_finished")?;
        let what = "recording the end of the stream";
        self.run(what, |c| {
            c.client
                .execute(
                    "INSERT INTO run_meta (key, value) VALUES ('finished', '1') \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[],
                )
                .map_err(pg(what))
        })?;
        Ok(())
    }

    fn ledger(&mut self) -> Result<Vec<LedgerRow>, StateError> {
        const SQL: &str = "SELECT seq, epoch, pattern_id, action_type, customer_name, \
                           merchant_id, y_start_time, detection_time, file_seq FROM detections \
                           ORDER BY seq";
        self.ledger_query(SQL, &[])
    }

    fn merchant_counts(&mut self) -> Result<Vec<(String, i64)>, StateError> {
        let what = "reading merchant counts";
        self.run(what, |c| {
            c.client
                .query(
                    "SELECT merchant_id, total_transactions FROM merchant_transaction_counts \
                     ORDER BY merchant_id",
                    &[],
                )
                .map_err(pg(what))?
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect::<Result<Vec<_>, ::postgres::Error>>()
                .map_err(pg(what))
        })
    }

    fn epoch_rows(&mut self) -> Result<Vec<EpochRow>, StateError> {
        let what = "reading the progress table";
        self.run(what, |c| {
            let rows = c
                .client
                .query(
                    "SELECT epoch, chunk_key, rows_accepted, rows_rejected, committed_at, \
                     chunk_digest FROM epochs ORDER BY epoch",
                    &[],
                )
                .map_err(pg(what))?;
            rows.iter()
                .map(|r| {
                    let int = |i: usize| -> Result<i64, Failure> { r.try_get(i).map_err(pg(what)) };
                    Ok(EpochRow {
                        epoch: sql_u64(int(0)?, "epoch")?,
                        chunk_key: r.try_get(1).map_err(pg(what))?,
                        rows_accepted: sql_u64(int(2)?, "rows_accepted")?,
                        rows_rejected: sql_u64(int(3)?, "rows_rejected")?,
                        committed_at: r.try_get(4).map_err(pg(what))?,
                        chunk_digest: r.try_get(5).map_err(pg(what))?,
                    })
                })
                .collect()
        })
    }
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
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            ca_file: None,
            reconnect_timeout: std::time::Duration::from_secs(60),
            connect_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Whether some TCP host of the configuration resolves within `limit` (lookups run on a
/// thread each, so a resolver that does not answer cannot hold up the start-up bound).
/// `Ok` when a host is a Unix socket or an IP address, or when any name resolves.
fn check_resolvable(config: &Config, limit: Duration) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let mut names = Vec::new();
    for host in config.get_hosts() {
        match host {
            ::postgres::config::Host::Tcp(name) if name.parse::<std::net::IpAddr>().is_err() => {
                names.push(name.clone())
            }
            _ => return Ok(()),
        }
    }
    if names.is_empty() || !config.get_hostaddrs().is_empty() {
        return Ok(());
    }
    let (tx, rx) = std::sync::mpsc::channel();
    for name in &names {
        let (tx, name) = (tx.clone(), name.clone());
        std::thread::spawn(move || {
            let outcome = (name.as_str(), 0u16)
                .to_socket_addrs()
                .map(|mut addrs| addrs.next().is_some());
            let _ = tx.send((name, outcome));
        });
    }
    drop(tx);
    let deadline = Instant::now() + limit;
    let mut errors = Vec::new();
    while errors.len() < names.len() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((_, Ok(true))) => return Ok(()),
            Ok((name, Ok(false))) => errors.push(format!("{name} has no address")),
            Ok((name, Err(e))) => errors.push(format!("resolving {name}: {e}")),
            Err(_) => {
                errors.push(format!(
                    "resolving {} took longer than {} ms",
                    names.join(", "),
                    limit.as_millis()
                ));
                break;
            }
        }
    }
    Err(errors.join("; "))
}

/// The hosts and ports of a configuration, for messages: `db.example.com:5432`.
fn describe_hosts(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match host {
                ::postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                ::postgres::config::Host::Unix(dir) => {
                    format!("{}/.s.PGSQL.{port}", dir.display())
                }
            }
        })
        .collect();
    if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(", ")
    }
}

/// `redact_url`, plus a `password=` query parameter.
fn redact(url: &str) -> String {
    let url = redact_url(url);
    match url.split_once('?') {
        None => url,
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

/// Takes libpq's TLS options that tokio-postgres rejects out of a URL: `sslrootcert=PATH`
/// becomes the CA file, `sslmode=verify-ca|verify-full` becomes `require` (rustls always
/// verifies chain and host name). Client-certificate options are refused.
fn split_libpq_options(url: &str) -> Result<(String, Option<PathBuf>), StateError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    if !url.contains("://") {
        return Ok((url.to_string(), None));
    }
    let mut kept = Vec::new();
    let mut ca_file = None;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        match key {
            "sslrootcert" => {
                let path = percent_decode(value);
                if path != "system" {
                    ca_file = Some(PathBuf::from(path));
                }
            }
            "sslmode" if matches!(value, "verify-ca" | "verify-full") => {
                kept.push("sslmode=require".to_string())
            }
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(StateError::BadUrl {
                    url: redact(url),
                    reason: format!("{key}: TLS client certificates are not supported"),
                })
            }
            _ => kept.push(kv.to_string()),
        }
    }
    let clean = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((clean, ca_file))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls connector: roots from the CA file, else the Mozilla roots; ring provider.
fn tls_connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StateError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let io_err = |source| StateError::Io {
                op: "reading TLS CA certificates from",
                path: path.display().to_string(),
                source,
            };
            let pem = std::fs::read(path).map_err(io_err)?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(io_err)?;
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(io_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no usable PEM certificate found",
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StateError::Inconsistent(format!("TLS configuration: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_libpq_tls_options() {
        let (url, ca) = split_libpq_options(
            "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Frds.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:pw@h/db?sslmode=require&application_name=x"
        );
        assert_eq!(ca, Some(PathBuf::from("/etc/rds.pem")));
        let (url, ca) = split_libpq_options("postgres://h/db?sslrootcert=system").unwrap();
        assert_eq!((url.as_str(), ca), ("postgres://h/db", None));
        assert!(split_libpq_options("postgres://h/db?sslcert=a.pem").is_err());
        assert_eq!(
            split_libpq_options("postgres://h/db").unwrap().0,
            "postgres://h/db"
        );
    }

    #[test]
    fn redacts_query_passwords() {
        assert_eq!(
            redact("postgres://u:pw@h/db?password=x&sslmode=require"),
            "postgres://u:***@h/db?password=***&sslmode=require"
        );
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("%2Ftmp%2Fa b%"), "/tmp/a b%");
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn builds_tls_config_with_default_roots() {
        assert!(tls_connector(None).is_ok());
        let missing = tls_connector(Some(Path::new("/nonexistent/ca.pem")));
        assert!(matches!(missing, Err(StateError::Io { .. })));
    }

    #[test]
    fn host_names_are_resolved_within_the_bound() {
        let config = |url: &str| Config::from_str(url).unwrap();
        let limit = Duration::from_secs(5);
        let missing = check_resolvable(&config("postgres://u@nonexistent.invalid/db"), limit);
        assert!(
            missing
                .as_ref()
                .is_err_and(|e| e.contains("resolving nonexistent.invalid")),
            "{missing:?}"
        );
        for ok in [
            "postgres://u@127.0.0.1:1/db",
            "postgres://u@localhost/db",
            "postgres://u@%2Ftmp/db",
            "host=nonexistent.invalid,localhost user=u",
        ] {
            assert_eq!(check_resolvable(&config(ok), limit), Ok(()), "{ok}");
        }
        assert_eq!(
            describe_hosts(&config("postgres://u@db.example:6432,other/db")),
            "db.example:6432, other:5432"
        );
    }

    #[test]
    fn backoff_gives_up_with_unavailable() {
        let mut retry = Retry::new(Duration::from_millis(150));
        let start = Instant::now();
        let mut result = Ok(());
        while result.is_ok() {
            result = retry.failed("postgres://h/db", "connecting", "refused", false);
        }
        assert!(matches!(result, Err(StateError::Unavailable { .. })));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
