//! Typed errors of the library. Each says what failed and where; binaries add context.
//!
//! [`Error`] is what crosses module boundaries: one of the typed errors below, or a
//! configuration, input or internal failure, optionally wrapped in context ("opening the
//! landing store s3://…"). Every error has a [`Domain`] (whose fault, so what to do) and says
//! whether retrying the same operation later may succeed ([`Error::retryable`]). The
//! binaries map an error to one line on stderr and an exit status; the library never ends
//! the process.
//!
//! # Exit status
//!
//! The status follows the domain ([`Domain::exit_code`]; sysexits.h), so that a supervisor
//! can tell a run to retry from one that needs a person:
//!
//! | status | domain | meaning | e.g. |
//! |---|---|---|---|
//! | 0 | | the stream ended, or the run was stopped (SIGINT/SIGTERM) | |
//! | 2 | usage | the command line itself is wrong (clap, or a rule between options) | `--follow --replay`, a bad `--variant` |
//! | 65 | input | the data breaks the SPEC | an inconsistent `_COMPLETE`, a committed chunk that changed |
//! | 70 | internal | a bug: a thread panicked, an invariant does not hold, an error not classified | a panicking committer |
//! | 75 | external service | a service the run depends on failed; retry once it is back | PostgreSQL unreachable, S3 failing, a lost cluster peer |
//! | 78 | configuration | what an option names cannot be used | an unknown state-store scheme, a store locked by another process or of another run, a missing importance file |
//!
//! The command line's own rules give 2 (before anything is opened); whatever the library
//! finds wrong with the values it is given gives 78. An error chain without any of the
//! library's errors is classified by [`exit_code_of_chain`]: an I/O error is the file
//! system's (75), anything else is internal (70).

use thiserror::Error;

/// Whose fault a failure is, and so what a user does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Domain {
    /// The data: a landing store, chunk or source file that breaks the SPEC.
    Input,
    /// The command line, the environment or a state store that belongs to another run.
    Configuration,
    /// A service txflow depends on: the file system, S3, PostgreSQL, a cluster peer.
    ExternalService,
    /// A bug in txflow, or a state store whose contents contradict themselves.
    Internal,
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Domain::Input => "input",
            Domain::Configuration => "configuration",
            Domain::ExternalService => "external service",
            Domain::Internal => "internal",
        })
    }
}

/// The exit status of a command line the binary rejects before running (clap's own).
pub(crate) const EXIT_USAGE: u8 = 2;

impl Domain {
    /// The process's exit status when a run fails with an error of this domain (sysexits.h:
    /// `EX_DATAERR`, `EX_CONFIG`, `EX_TEMPFAIL`, `EX_SOFTWARE`); see the module's table.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Domain::Input => 65,
            Domain::Configuration => 78,
            Domain::ExternalService => 75,
            Domain::Internal => 70,
        }
    }
}

/// The domain of `error` when it is one of the library's errors (at any level of the typed
/// errors, wrapped or not).
pub(crate) fn domain_of(error: &(dyn std::error::Error + 'static)) -> Option<Domain> {
    if let Some(e) = error.downcast_ref::<Error>() {
        return Some(e.domain());
    }
    let e = error;
    e.downcast_ref::<StoreError>()
        .map(StoreError::domain)
        .or_else(|| e.downcast_ref::<StateError>().map(StateError::domain))
        .or_else(|| e.downcast_ref::<LandingError>().map(LandingError::domain))
        .or_else(|| e.downcast_ref::<SourceError>().map(SourceError::domain))
        .or_else(|| e.downcast_ref::<ClusterError>().map(ClusterError::domain))
        .or_else(|| e.downcast_ref::<FileError>().map(FileError::domain))
}

/// The exit status of a failure given as its chain of causes, outermost first (as
/// `anyhow::Error::chain` gives it): the outermost library error decides; without one, an
/// I/O error is the file system's ([`Domain::ExternalService`]) and anything else is
/// [`Domain::Internal`] (an error nobody classified).
pub(crate) fn exit_code_of_chain<'e>(
    chain: impl IntoIterator<Item = &'e (dyn std::error::Error + 'static)>,
) -> u8 {
    let mut io = false;
    for cause in chain {
        if let Some(domain) = domain_of(cause) {
            return domain.exit_code();
        }
        io |= cause.is::<std::io::Error>();
    }
    match io {
        true => Domain::ExternalService.exit_code(),
        false => Domain::Internal.exit_code(),
    }
}

/// The library's error.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Landing(#[from] LandingError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    File(#[from] FileError),
    /// Options or files given at start that cannot be used.
    #[error("{0}")]
    Configuration(String),
    /// Input data that cannot be used.
    #[error("{0}")]
    Input(String),
    /// A bug: a thread that panicked, an invariant that does not hold.
    #[error("{0}")]
    Internal(String),
    /// A service this run depends on failed (a checkpoint that could not be written).
    #[error("{0}")]
    External(String),
    /// What was being done when `source` failed. Shown as `context: source`.
    #[error("{context}: {source}")]
    Context { context: String, source: Box<Error> },
}

/// The library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A configuration error (bad option, unusable file given on the command line).
    pub fn configuration(message: impl Into<String>) -> Error {
        Error::Configuration(message.into())
    }

    /// An input error (data that breaks the SPEC).
    pub fn input(message: impl Into<String>) -> Error {
        Error::Input(message.into())
    }

    /// A failure of a service the run depends on.
    pub fn external(message: impl Into<String>) -> Error {
        Error::External(message.into())
    }

    /// An internal error (a bug).
    pub fn internal(message: impl Into<String>) -> Error {
        Error::Internal(message.into())
    }

    /// Wraps the error in what was being done.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The error under any context.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            other => other,
        }
    }

    /// Whose fault it is.
    pub fn domain(&self) -> Domain {
        match self.root() {
            Error::Store(e) => e.domain(),
            Error::State(e) => e.domain(),
            Error::Landing(e) => e.domain(),
            Error::Source(e) => e.domain(),
            Error::Cluster(e) => e.domain(),
            Error::File(e) => e.domain(),
            Error::Configuration(_) => Domain::Configuration,
            Error::Input(_) => Domain::Input,
            Error::External(_) => Domain::ExternalService,
            Error::Internal(_) | Error::Context { .. } => Domain::Internal,
        }
    }

    /// An internal error for a thread of the run that panicked, naming the thread and the
    /// panic's message.
    pub fn panicked(thread: &str, payload: &(dyn std::any::Any + Send)) -> Error {
        Error::internal(format!(
            "the {thread} thread panicked: {}",
            panic_message(payload)
        ))
    }

    /// Whether the same operation may succeed later without any change by the user (a
    /// service that was down, a lock held by a process that stopped since).
    pub fn retryable(&self) -> bool {
        match self.root() {
            Error::Store(e) => e.retryable(),
            Error::State(e) => e.retryable(),
            Error::Landing(e) => e.retryable(),
            Error::Source(e) => e.retryable(),
            Error::Cluster(e) => e.retryable(),
            Error::File(e) => e.retryable(),
            _ => false,
        }
    }
}

/// `.context(...)` and `.with_context(|| ...)` on results of any typed error.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

/// The message a panic was raised with (`panic!("...")`), or a placeholder for another payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Whether an I/O failure may pass by itself.
fn io_retryable(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        Interrupted | TimedOut | WouldBlock | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Failures of an object store (local directory or S3).
#[derive(Debug, Error)]
pub enum StoreError {
    /// A local filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A permanent S3 failure (no such bucket, access denied, bad credentials...): retrying will not help.
    #[error("S3 {op} s3://{bucket}/{key}: {message}")]
    S3Permanent {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
    },
    /// A transient S3 failure that persisted through every retry.
    #[error("S3 {op} s3://{bucket}/{key} still failing after {attempts} attempts: {message}")]
    S3Exhausted {
        op: &'static str,
        bucket: String,
        key: String,
        attempts: u32,
        message: String,
    },
    /// The location string is not a directory path or an `s3://bucket/prefix` URL.
    #[error("invalid location {location:?}: {reason}")]
    BadLocation { location: String, reason: String },
}

/// A file or object named by an option that is not read (see [`FileProblem`]).
#[derive(Debug, Error)]
#[error("{path}: {problem}")]
pub struct FileError {
    pub path: String,
    #[source]
    pub problem: FileProblem,
}

impl FileError {
    pub fn domain(&self) -> Domain {
        Domain::Configuration
    }

    pub fn retryable(&self) -> bool {
        matches!(&self.problem, FileProblem::Io(e) if io_retryable(e))
    }
}

/// Why a file named by an option (the importance file, `--variants`, the hostfile) is not
/// read; shown after its path, e.g. `/tmp/p: a FIFO (named pipe), not a regular file`.
#[derive(Debug, Error)]
pub enum FileProblem {
    #[error("{0}")]
    Io(std::io::Error),
    /// What it is instead, e.g. `a FIFO (named pipe)`.
    #[error("{0}, not a regular file")]
    NotAFile(&'static str),
    /// Larger than this many bytes, the most its reader accepts.
    #[error("larger than {}, the most accepted here", size_text(*.0))]
    TooLarge(u64),
    #[error("not valid UTF-8 text")]
    NotUtf8,
}

/// `1 GiB`, `1 MiB`, `64 KiB` or `1000 bytes`.
fn size_text(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
    {
        Some((unit, name)) => format!("{} {name}", bytes / unit),
        None => format!("{bytes} bytes"),
    }
}

/// Failures of a state store (SQLite or PostgreSQL).
#[derive(Debug, Error)]
pub enum StateError {
    #[error("SQLite state store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    /// `context` holds the server's message (severity, text, SQLSTATE, detail, hint) and
    /// the next step: the client error is kept for its kind, not shown again (its `Display`
    /// repeats the server's message).
    #[error("PostgreSQL state store: {context}")]
    Postgres {
        context: String,
        error: tokio_postgres::Error,
    },
    /// Another process holds a lock SQLite needs on the database (its own POSIX locks, not
    /// the single-writer lock): `holder` is its pid and command line, when `/proc/locks`
    /// names one.
    #[error("{}", busy_message(path, holder.as_deref()))]
    Busy {
        path: String,
        holder: Option<String>,
    },
    /// The store holds epochs of a different run (SPEC §6: mode, landing, resolved replay
    /// range, thresholds or the importance file differ); each difference is named.
    #[error("the state store holds epochs of a different run: {}; a new run needs a new state store (or rerun with the inputs and options of the run that created it)", .differences.join("; "))]
    DifferentRun { differences: Vec<String> },
    /// A recovery replayed a committed epoch's chunk whose bytes changed since (SPEC §6).
    #[error("{chunk} changed since epoch {epoch} was committed (digest {now}, was {committed}): the landing store must be append-only; restore the original chunk or start a new run with a new state store")]
    ChunkChanged {
        chunk: String,
        epoch: u64,
        /// Digest recorded with the epoch (shortened).
        committed: String,
        /// Digest of the chunk's bytes now (shortened).
        now: String,
    },
    /// The store's stream ended, and the landing holds chunks it never committed (SPEC §6:
    /// an ended stream stays ended).
    #[error("the stream of this state store ended {}; the landing now holds more chunks ({chunks}): a new run needs a new state store", .last_epoch.map_or_else(|| "before its first epoch".to_string(), |e| format!("at epoch {e}")))]
    StreamEnded {
        /// The last committed epoch, if any.
        last_epoch: Option<u64>,
        /// The chunks the store never committed, e.g. `chunk-000030.csv, …: 10 chunks`.
        chunks: String,
    },
    /// A published file exists with other content than the ledger's (SPEC §6: published
    /// files are never rewritten with other content).
    #[error("output {output} already holds {file} with other content: another run's output? use an empty output location")]
    OutputConflict { output: String, file: String },
    /// Another Y process holds the store.
    #[error("another mechanism-y process is already writing to this state store ({detail}); stop it first")]
    Locked { detail: String },
    /// PostgreSQL stayed unreachable for longer than the configured bound.
    #[error("PostgreSQL unreachable for {seconds} s ({last_error}); restart mechanism-y when it is back: it resumes from the last committed epoch")]
    Unavailable { seconds: u64, last_error: String },
    /// PostgreSQL could not be reached at start (connection refused, host not resolved, no
    /// answer) within the start-up bound.
    #[error("cannot reach PostgreSQL at {hosts} ({url}) within {seconds} s at start ({last_error}); is the server running at {hosts}? (check the host name and port in the URL, or raise --pg-connect-timeout)")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        hosts: String,
        seconds: f64,
        last_error: String,
    },
    /// The state store's contents contradict what the runner expects.
    #[error("state store inconsistency: {0}")]
    Inconsistent(String),
    /// A reader found the store at another schema version than this build's: not a txflow
    /// store yet (`found: None`), older (mechanism-y migrates it at start), or newer.
    #[error("{}", schema_message(*.found, *.expected))]
    Schema { found: Option<i64>, expected: i64 },
    #[error("invalid state store URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// A file next to the store (the SQLite lock file, a TLS CA bundle) could not be used.
    #[error("state store: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub fn domain(&self) -> Domain {
        match self {
            StoreError::BadLocation { .. } => Domain::Configuration,
            _ => Domain::ExternalService,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => io_retryable(source),
            StoreError::S3Exhausted { .. } => true,
            StoreError::S3Permanent { .. } | StoreError::BadLocation { .. } => false,
        }
    }
}

/// The one line for a SQLite database another process holds.
fn busy_message(path: &str, holder: Option<&str>) -> String {
    match holder {
        Some(holder) => format!(
            "another process holds the state store {path}: {holder} (stop it, or use another --state)"
        ),
        None => format!(
            "another process holds the state store {path} (stop it, or use another --state)"
        ),
    }
}

/// The one line a reader of a store at another schema version gets.
fn schema_message(found: Option<i64>, expected: i64) -> String {
    match found {
        None => "the state store holds no txflow schema (no run has started on it yet, or it \
                 is another program's database)"
            .to_string(),
        Some(v) if v < expected => format!(
            "the state store has schema version {v}, older than this build's {expected}: \
             start mechanism-y on it once (it migrates the store at start), then read it again"
        ),
        Some(v) => format!(
            "the state store has schema version {v}, newer than this build's {expected}; use a \
             newer build"
        ),
    }
}

impl StateError {
    pub fn domain(&self) -> Domain {
        match self {
            StateError::Sqlite { .. }
            | StateError::Busy { .. }
            | StateError::Postgres { .. }
            | StateError::Unavailable { .. }
            | StateError::Unreachable { .. }
            | StateError::Io { .. } => Domain::ExternalService,
            StateError::DifferentRun { .. }
            | StateError::StreamEnded { .. }
            | StateError::OutputConflict { .. }
            | StateError::Locked { .. }
            | StateError::BadUrl { .. }
            | StateError::Schema { .. } => Domain::Configuration,
            StateError::ChunkChanged { .. } => Domain::Input,
            StateError::Inconsistent(_) => Domain::Internal,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            StateError::Unavailable { .. }
            | StateError::Unreachable { .. }
            | StateError::Locked { .. } => true,
            StateError::Postgres { error, .. } => error.is_closed(),
            StateError::Io { source, .. } => io_retryable(source),
            _ => false,
        }
    }
}

/// Failures of the landing store: its I/O, or contents that contradict SPEC §3.
#[derive(Debug, Error)]
pub enum LandingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `_COMPLETE` is not a count, or a chunk exists at or past its count.
    #[error(
        "inconsistent landing {location}: {detail}; fix the landing store (it is append-only) \
         and restart"
    )]
    Inconsistent { location: String, detail: String },
    /// A replay range that cannot be replayed whole.
    #[error("replay of {location} refused before committing anything: {detail}")]
    Replay { location: String, detail: String },
    /// The thread fetching the chunks panicked (a bug), with the panic's message.
    #[error("the chunk-feed thread panicked: {0}")]
    Panicked(String),
}

impl LandingError {
    pub fn domain(&self) -> Domain {
        match self {
            LandingError::Store(e) => e.domain(),
            LandingError::Inconsistent { .. } | LandingError::Replay { .. } => Domain::Input,
            LandingError::Panicked(_) => Domain::Internal,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            LandingError::Store(e) => e.retryable(),
            _ => false,
        }
    }
}

/// Why a source file cannot be cut into chunks (Mechanism X).
#[derive(Debug, Error)]
pub enum SourceError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the source has no line break after its header (expected LF, CRLF or CR line endings)"
    )]
    NoLineBreak,
}

impl SourceError {
    pub fn domain(&self) -> Domain {
        use std::io::ErrorKind::{NotFound, PermissionDenied};
        match self {
            // The file `--source` names cannot be opened: as any file an option names.
            SourceError::Io(e) if matches!(e.kind(), NotFound | PermissionDenied) => {
                Domain::Configuration
            }
            SourceError::Io(_) => Domain::ExternalService,
            SourceError::NoLineBreak => Domain::Input,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            SourceError::Io(e) => io_retryable(e),
            SourceError::NoLineBreak => false,
        }
    }
}

/// Appended to every cluster failure.
pub(crate) const CLUSTER_RESTART_HINT: &str =
    "restart every process of the cluster; it resumes from the state store";

/// Failures of a cluster of processes (`-n` > 1) or of this process's worker threads.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// Not every process connected within `--connect-timeout`.
    #[error("cluster start-up: process {process} of {processes} could not connect to every other process within {seconds} s (hostfile {hostfile}); start every process with the same -n, -w and hostfile, or raise --connect-timeout")]
    ConnectTimeout {
        process: usize,
        processes: usize,
        seconds: u64,
        hostfile: String,
    },
    /// Stopped by a signal before the cluster was connected.
    #[error("stopped while waiting for the other processes of the cluster")]
    StoppedConnecting,
    /// A connection to another process failed.
    #[error("cluster peer lost: {detail}; {CLUSTER_RESTART_HINT}")]
    PeerLost { detail: String },
    /// The processes run with different options or data.
    #[error("the processes of the cluster run with different options ({differences}); start every process with the same options and data (a replay while mechanism-x is still writing lists different chunks: give --to)")]
    DifferentOptions { differences: String },
    /// An epoch lacks the share of some worker.
    #[error("epoch {epoch} ({chunk}) is incomplete: {reported} of {workers} workers contributed their share; a process of the cluster stopped or sees a different set of chunks (stop a cluster by signalling every process; replay a fixed range with --to)")]
    IncompleteEpoch {
        epoch: u64,
        chunk: String,
        reported: usize,
        workers: usize,
    },
    /// No epoch was committed for `--stall-timeout` while chunks waited.
    #[error("stalled: no epoch committed for {seconds} s while {waiting} waited; {hint}")]
    Stalled {
        seconds: u64,
        /// The chunks waiting, e.g. `chunk-000012.csv … chunk-000015.csv`.
        waiting: String,
        /// What may be frozen and what to do.
        hint: String,
    },
    /// A worker thread panicked (a bug).
    #[error("{0}")]
    WorkerFailed(String),
    /// This process of a cluster failed: the others cannot go on without it.
    #[error("{source}; {CLUSTER_RESTART_HINT}")]
    ProcessFailed { source: Box<Error> },
}

impl ClusterError {
    pub fn domain(&self) -> Domain {
        match self {
            ClusterError::ProcessFailed { source } => source.domain(),
            ClusterError::ConnectTimeout { .. }
            | ClusterError::StoppedConnecting
            | ClusterError::DifferentOptions { .. }
            | ClusterError::IncompleteEpoch { .. } => Domain::Configuration,
            ClusterError::PeerLost { .. } | ClusterError::Stalled { .. } => Domain::ExternalService,
            ClusterError::WorkerFailed(_) => Domain::Internal,
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            ClusterError::ProcessFailed { source } => source.retryable(),
            other => matches!(
                other,
                ClusterError::ConnectTimeout { .. }
                    | ClusterError::PeerLost { .. }
                    | ClusterError::Stalled { .. }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_domain_has_its_sysexits_status() {
        let codes = [
            (Error::input("x"), 65),
            (Error::configuration("x"), 78),
            (Error::external("x"), 75),
            (Error::internal("x"), 70),
        ];
        for (error, code) in codes {
            assert_eq!(error.domain().exit_code(), code, "{:?}", error.domain());
            assert_eq!(error.context("doing it").domain().exit_code(), code);
        }
        assert_eq!(EXIT_USAGE, 2);
    }

    /// The binaries' chain: the outermost library error decides, under any context of theirs;
    /// without one, an I/O error is the file system's and anything else a bug.
    #[test]
    fn a_chain_is_classified_by_its_library_error() {
        let locked = StateError::Locked {
            detail: "held".into(),
        };
        let wrapped = anyhow::Error::from(Error::from(locked).context("opening the store"))
            .context("starting mechanism-y");
        assert_eq!(exit_code_of_chain(wrapped.chain()), 78);
        // A typed error not wrapped in `Error`.
        let bare = anyhow::Error::from(StoreError::S3Exhausted {
            op: "GET",
            bucket: "b".into(),
            key: "k".into(),
            attempts: 3,
            message: "slow down".into(),
        })
        .context("reading");
        assert_eq!(exit_code_of_chain(bare.chain()), 75);
        let io = anyhow::Error::from(std::io::Error::other("disk full")).context("writing x");
        assert_eq!(exit_code_of_chain(io.chain()), 75);
        let unclassified = anyhow::anyhow!("child printed no RESULT line");
        assert_eq!(exit_code_of_chain(unclassified.chain()), 70);
        let panicked = Error::panicked("committing", &"boom");
        assert_eq!(panicked.domain().exit_code(), 70);
        assert_eq!(panicked.to_string(), "the committing thread panicked: boom");
    }

    #[test]
    fn context_keeps_the_domain_and_retry_hint_of_the_cause() {
        let cause = StateError::Unavailable {
            seconds: 60,
            last_error: "connection refused".into(),
        };
        let e = Error::from(cause).context("committing epoch 3");
        assert_eq!(e.domain(), Domain::ExternalService);
        assert!(e.retryable());
        assert!(e
            .to_string()
            .starts_with("committing epoch 3: PostgreSQL unreachable for 60 s"));
        let bad = Error::from(StoreError::BadLocation {
            location: "ftp://x".into(),
            reason: "unknown scheme".into(),
        });
        assert_eq!(bad.domain(), Domain::Configuration);
        assert!(!bad.retryable());
        let changed: Result<()> = Err(StateError::ChunkChanged {
            chunk: "chunk-000001.csv".into(),
            epoch: 1,
            committed: "aa".into(),
            now: "bb".into(),
        })
        .context("replaying");
        let changed = changed.unwrap_err();
        assert_eq!(changed.domain(), Domain::Input);
        assert!(!changed.retryable());
    }
}
