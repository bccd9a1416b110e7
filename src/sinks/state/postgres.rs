//! The production state store: PostgreSQL (RDS), TLS, unknown-COMMIT handling, single-writer lease.

use super::{EpochCommit, EpochRow, LedgerRow, Recovered, RunIdentity, StateStore};
use crate::error::StateError;

pub struct PgStore {
    client: Option<::postgres::Client>,
    url: String,
}

impl PgStore {
    pub fn connect(url: &str, options: &PgOptions) -> Result<PgStore, StateError> {
        let _ = (url, options);
        unimplemented!()
    }
}

impl StateStore for PgStore {
    fn begin_run(&mut self, run: &RunIdentity) -> Result<Recovered, StateError> {
        let _ = (run, &self.client, &self.url);
        unimplemented!()
    }
    fn commit_epoch(&mut self, commit: &EpochCommit) -> Result<(), StateError> {
        let _ = commit;
        unimplemented!()
    }
    fn ledger_range(&mut self, from_seq: u64, to_seq: u64) -> Result<Vec<LedgerRow>, StateError> {
        let _ = (from_seq, to_seq);
        unimplemented!()
    }
    fn first_unwritten_seq(&mut self) -> Result<Option<u64>, StateError> {
        unimplemented!()
    }
    fn mark_written(&mut self, file_seq: u64, from_seq: u64, to_seq: u64) -> Result<(), StateError> {
        let _ = (file_seq, from_seq, to_seq);
        unimplemented!()
    }
    fn mark_finished(&mut self) -> Result<(), StateError> {
        unimplemented!()
    }
    fn ledger(&mut self) -> Result<Vec<LedgerRow>, StateError> {
        unimplemented!()
    }
    fn merchant_counts(&mut self) -> Result<Vec<(String, i64)>, StateError> {
        unimplemented!()
    }
    fn epoch_rows(&mut self) -> Result<Vec<EpochRow>, StateError> {
        unimplemented!()
    }
}

/// PostgreSQL connection options beyond the URL.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// PEM file of CA certificates to trust for TLS (e.g. the RDS bundle); the Mozilla roots otherwise.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long to keep retrying a lost connection before giving up.
    pub reconnect_timeout: std::time::Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            ca_file: None,
            reconnect_timeout: std::time::Duration::from_secs(60),
        }
    }
}
