//! The embedded state store: SQLite via rusqlite (bundled), the default.

use super::{EpochCommit, EpochRow, LedgerRow, Recovered, RunIdentity, StateStore};
use crate::error::StateError;

pub struct SqliteStore {
    conn: rusqlite::Connection,
    path: String,
}

impl SqliteStore {
    pub fn open(path: &str) -> Result<SqliteStore, StateError> {
        let _ = path;
        unimplemented!()
    }
}

impl StateStore for SqliteStore {
    fn begin_run(&mut self, run: &RunIdentity) -> Result<Recovered, StateError> {
        let _ = (run, &self.conn, &self.path);
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
