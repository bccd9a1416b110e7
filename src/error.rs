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
    /// The store holds a different run's epochs (SPEC §8: a replay must refuse it).
    #[error("the state store already holds epochs of a different run ({existing}); this run is {requested}. Use a fresh state store, or the same options as the run that created it")]
    DifferentRun { existing: String, requested: String },
    /// Another Y process holds the store.
    #[error("another mechanism-y process is already writing to this state store ({detail}); stop it first")]
    Locked { detail: String },
    /// PostgreSQL stayed unreachable for longer than the configured bound.
    #[error("PostgreSQL unreachable for {seconds} s ({last_error}); restart mechanism-y when it is back: it resumes from the last committed epoch")]
    Unavailable { seconds: u64, last_error: String },
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
