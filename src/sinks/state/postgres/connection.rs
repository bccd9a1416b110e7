//! Connecting to PostgreSQL and staying connected: the connection parameters, one attempt
//! (host names resolved within the bound first), and the bounded retry loop every store
//! method runs its work through ([`Retry`]: exponential backoff from the first failure).

use std::collections::HashMap;
use std::error::Error as _;
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio_postgres::Config;

use super::client::{Client, ConnectError, Queries};
use super::lease::relock;
use super::store::{pg, Conn, Failure, PgDb, PgOptions, PgStore, Session};
use super::tls::{split_libpq_options, tls_connector};
use crate::error::StateError;
use crate::redact;
use crate::retry_count::Retries;
use crate::sinks::state::protocol::Store;

/// Connect timeout per attempt unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long unacknowledged data may sit on a dead TCP connection (unless the URL says).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// What a connection attempt is called in messages.
const CONNECTING: &str = "connecting";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether an error means the connection is gone (or the server is restarting), so that
/// reconnecting and retrying can help; false for SQL errors, authentication and TLS failures.
pub(super) fn is_connection_loss(e: &tokio_postgres::Error) -> bool {
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
fn error_chain(e: &tokio_postgres::Error) -> String {
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

/// What to do about a server's refusal that its message does not say: a wrong user or
/// password, a database that does not exist.
fn next_step(e: &tokio_postgres::Error) -> Option<&'static str> {
    use tokio_postgres::error::SqlState;
    let code = e.code()?;
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        Some("check the user and password in the URL")
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        Some("create it or fix the URL's database")
    } else {
        None
    }
}

/// Bounded reconnection: exponential backoff from the first failure, up to the timeout.
pub(super) struct Retry {
    timeout: Duration,
    first_failure: Option<Instant>,
    attempt: u32,
    /// The last failure's error, as reported to [`Retry::failed`].
    last_error: String,
    retries: Retries,
}

impl Retry {
    pub(super) fn new(timeout: Duration, retries: &Retries) -> Retry {
        Retry {
            retries: retries.clone(),
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
        self.retries.retried(what);
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

/// The client configuration of a URL (libpq's TLS options already taken out), with
/// txflow's defaults for what it leaves unset.
fn client_config(clean_url: &str, redacted: &str) -> Result<Config, StateError> {
    check_single_at(clean_url, redacted)?;
    let mut config = Config::from_str(clean_url).map_err(|e| StateError::BadUrl {
        url: redacted.to_string(),
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
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    if unix_only && config.get_ssl_mode() == tokio_postgres::config::SslMode::Prefer {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    }
    Ok(config)
}

/// Refuses an authority with more than one `@`: the driver ends the user name and password
/// at the first, so the rest of an unencoded `@` in the password would be taken for the host
/// (and shown as one).
fn check_single_at(url: &str, redacted: &str) -> Result<(), StateError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    if authority.matches('@').count() > 1 {
        return Err(StateError::BadUrl {
            url: redacted.to_string(),
            reason: "the user name or password holds an unencoded '@': write it as %40".into(),
        });
    }
    Ok(())
}

impl PgStore {
    /// Parses the URL, builds the TLS configuration and connects, retrying a server that
    /// refuses connections or a host that does not resolve for up to
    /// `options.connect_timeout`, then failing with [`StateError::Unreachable`] (later
    /// reconnects keep `options.reconnect_timeout`). The lock is taken by `begin_run`.
    pub fn connect(url: &str, options: &PgOptions) -> Result<PgStore, StateError> {
        PgDb::connect_as(url, options, false).map(Store::new)
    }

    /// [`PgStore::connect`] for reading only (`txflow-report`): every session is read-only
    /// (`default_transaction_read_only`, sent at start-up so that reconnections keep it), and
    /// `begin_run` is refused.
    pub fn connect_read_only(url: &str, options: &PgOptions) -> Result<PgStore, StateError> {
        PgDb::connect_as(url, options, true).map(Store::new)
    }
}

impl PgDb {
    fn connect_as(url: &str, options: &PgOptions, read_only: bool) -> Result<PgDb, StateError> {
        let (clean_url, url_ca_file) = split_libpq_options(url)?;
        let redacted = redact::url(&clean_url);
        let mut config = client_config(&clean_url, &redacted)?;
        if read_only {
            let given = config
                .get_options()
                .map_or_else(String::new, |o| format!("{o} "));
            config.options(format!("{given}-c default_transaction_read_only=on"));
        }
        let ca_file = options.ca_file.clone().or(url_ca_file);
        let tls = tls_connector(ca_file.as_deref())?;
        let mut store = PgDb {
            conn: None,
            config,
            tls,
            url: redacted,
            options: options.clone(),
            lease: None,
            read_only,
            #[cfg(feature = "fault-injection")]
            fault: None,
        };
        let mut retry = Retry::new(options.connect_timeout, &options.retries);
        if let Err(e) = store.reconnect(&mut retry, CONNECTING) {
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

    /// One connection attempt: each TCP connect within the connect timeout, the whole
    /// attempt (TLS and authentication included) within the time `retry` has left.
    fn open_connection(&self, remaining: Duration) -> Result<Conn, Failure> {
        let mut config = self.config.clone();
        let remaining = remaining.max(Duration::from_secs(1));
        let per_attempt = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT)
            .min(remaining);
        config.connect_timeout(per_attempt);
        // tokio-postgres bounds the TCP connect, not the host name lookup before it.
        check_resolvable(&config, per_attempt).map_err(Failure::Unresolved)?;
        let bound = (per_attempt + self.options.statement_timeout).min(remaining);
        let what = CONNECTING;
        let mut client = Client::connect(
            &config,
            self.tls.clone(),
            bound,
            self.options.statement_timeout,
        )
        .map_err(|e| match e {
            ConnectError::Call(e) => pg(what)(e),
            ConnectError::Runtime(source) => Failure::State(StateError::Io {
                op: "starting the client runtime for",
                path: self.url.clone(),
                source,
            }),
        })?;
        let row = client
            .query_one(
                "SELECT pg_backend_pid(), COALESCE((SELECT backend_start::text \
                 FROM pg_stat_activity WHERE pid = pg_backend_pid()), '')",
                &[],
            )
            .map_err(pg(what))?;
        Ok(Conn {
            session: Session {
                pid: row.try_get(0).map_err(pg(what))?,
                started: row.try_get(1).map_err(pg(what))?,
            },
            client,
            statements: HashMap::new(),
        })
    }

    /// (Re)connects, re-taking the lease if this store held it, within `retry`'s bound.
    pub(super) fn reconnect(
        &mut self,
        retry: &mut Retry,
        what: &'static str,
    ) -> Result<(), StateError> {
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
    pub(super) fn retry_or_fail(
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
                if let Some(step) = next_step(&error) {
                    context.push_str("; ");
                    context.push_str(step);
                }
                Err(StateError::Postgres { context, error })
            }
            Failure::TimedOut {
                what: step, waited, ..
            } => {
                self.conn = None;
                // A connection attempt has the time left as its bound, a statement the option.
                let option = if step == CONNECTING {
                    ""
                } else {
                    " (--pg-statement-timeout)"
                };
                let error = format!(
                    "no answer within {} s{option}: the server, or the network to it, is stuck",
                    seconds(waited)
                );
                retry.failed(&self.url, step, &error, false)
            }
            #[cfg(feature = "fault-injection")]
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
    pub(super) fn retrying<T>(
        &mut self,
        what: &'static str,
        mut work: impl FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, StateError> {
        let mut retry = Retry::new(self.options.reconnect_timeout, &self.options.retries);
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
}

/// Whether some TCP host of the configuration resolves within `limit` (lookups run on a
/// thread each, so a resolver that does not answer cannot hold up the start-up bound).
/// `Ok` when a host is a Unix socket or an IP address, or when any name resolves.
fn check_resolvable(config: &Config, limit: Duration) -> Result<(), String> {
    use std::net::ToSocketAddrs;
    let mut names = Vec::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(name)
                if name.parse::<std::net::IpAddr>().is_err() =>
            {
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

/// A duration in seconds for messages: `2`, `2.5`.
fn seconds(d: Duration) -> String {
    let text = format!("{:.1}", d.as_secs_f64());
    match text.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => text,
    }
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
                tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                tokio_postgres::config::Host::Unix(dir) => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn an_unencoded_at_sign_in_the_password_is_refused_unshown() {
        for url in [
            "postgres://u:LeakMe:Tail@@h/db",
            "postgres://u:Leak@Me@h:5432/db",
        ] {
            let shown = crate::redact::url(url);
            match client_config(url, &shown) {
                Err(e @ StateError::BadUrl { .. }) => {
                    let line = e.to_string();
                    assert!(line.contains("%40") && line.contains("@h"), "{line}");
                    assert!(!line.contains("Leak") && !line.contains("Tail"), "{line}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert!(client_config("postgres://u:a%40b@h/db?application_name=x@y", "").is_ok());
    }

    #[test]
    fn backoff_gives_up_with_unavailable() {
        let mut retry = Retry::new(Duration::from_millis(150), &Retries::default());
        let start = Instant::now();
        let mut result = Ok(());
        while result.is_ok() {
            result = retry.failed("postgres://h/db", "connecting", "refused", false);
        }
        assert!(matches!(result, Err(StateError::Unavailable { .. })));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
