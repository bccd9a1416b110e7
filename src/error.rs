//! Typed errors of the library. Each says what failed and where; binaries add context.

use thiserror::Error;

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

/// Failures of a state store (SQLite or PostgreSQL).
#[derive(Debug, Error)]
pub enum StateError {
    #[error("SQLite state store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("PostgreSQL state store: {context}: {source}")]
    Postgres {
        context: String,
        #[source]
        source: postgres::Error,
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
    #[error("cannot reach PostgreSQL at {hosts} ({url}) within {seconds} s at start ({last_error}); check that the server is running and that the host name and port are right, or raise --pg-connect-timeout")]
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
