//! One detection ledger and its files: emit-once (a detection gets a row the first epoch it
//! holds, never again), sequence numbers, and the files of 50 rows rendered from the rows.
//!
//! A run has the baseline's ledger (`detections`, files at the top of the output) and, in a
//! backtest with variants, one per variant (`variant_detections`, files under
//! `variants/<name>/`). They advance in the same state-store transaction (`runtime::writer`);
//! this type keeps one ledger's part.

use std::collections::{BTreeMap, HashSet};

use crate::error::{Error, Result, StateError};
use crate::model::{DetectionKey, Evidence};
use crate::objectstore::{ObjectStore, PutOutcome};
use crate::sinks::detection_files::{self, ROWS_PER_FILE};
use crate::sinks::state::{LedgerId, LedgerRow, StateWriter};

/// The tracing target of the lines logged once per epoch: "detection file written" here and
/// the runtime's "epoch committed". A target of their own lets the binaries' logging lower
/// them to `debug` while a progress bar or status line is shown (which says as much on one
/// line) without the runtime knowing of the display (`cli::init_logging`); off a terminal
/// they stay `info`. It starts with `txflow` so that `RUST_LOG=txflow=...` covers it.
pub(crate) const PER_EPOCH_TARGET: &str = "txflow::per_epoch";

/// Which ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerName {
    Baseline,
    Variant(String),
}

pub struct Ledger {
    name: LedgerName,
    emitted: HashSet<DetectionKey>,
    next_seq: u64,
    /// Rows not yet in a full file, from a file boundary on.
    pending: Vec<LedgerRow>,
    pub files_written: u64,
}

/// What an epoch adds to a ledger: its new detections and their rows.
pub struct NewRows {
    pub keys: Vec<DetectionKey>,
    pub rows: Vec<LedgerRow>,
}

/// The epoch's `YStartTime` and detection time, shared by every ledger (SPEC §5).
pub struct Times<'a> {
    pub epoch: u64,
    pub y_start: &'a str,
    pub now: &'a str,
}

impl Ledger {
    /// The ledger as earlier runs left it: `emitted` detections, `next_seq` rows, and the rows
    /// of any file that may be missing (from the first row without a file on).
    pub fn open(
        name: LedgerName,
        emitted: HashSet<DetectionKey>,
        next_seq: u64,
        store: &mut dyn StateWriter,
    ) -> Result<Ledger> {
        if emitted.len() as u64 != next_seq {
            return Err(StateError::Inconsistent(format!(
                "state store {} has {next_seq} rows but {} distinct known detections",
                name.describe(),
                emitted.len()
            ))
            .into());
        }
        let mut ledger = Ledger {
            name,
            emitted,
            next_seq,
            pending: Vec::new(),
            files_written: 0,
        };
        let id = ledger.name.id();
        if let Some(first) = store.first_unwritten_seq(id)? {
            let start = detection_files::file_of(first) * ROWS_PER_FILE;
            ledger.pending = store.ledger_range(id, start, next_seq)?;
        }
        Ok(ledger)
    }

    pub fn name(&self) -> &LedgerName {
        &self.name
    }

    /// Number of rows.
    pub fn len(&self) -> u64 {
        self.next_seq
    }

    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// The detections that start holding (`diff > 0`) and were never emitted, with their
    /// rows numbered from the next sequence number. BTreeMap order is (pattern, merchant,
    /// customer): the SPEC's within-epoch order.
    pub(crate) fn new_rows(
        &self,
        detections: &BTreeMap<DetectionKey, isize>,
        evidence: &BTreeMap<DetectionKey, Evidence>,
        times: &Times<'_>,
    ) -> NewRows {
        let keys: Vec<DetectionKey> = detections
            .iter()
            .filter(|(key, diff)| **diff > 0 && !self.emitted.contains(*key))
            .map(|(key, _)| key.clone())
            .collect();
        let rows = keys
            .iter()
            .enumerate()
            .map(|(i, key)| LedgerRow {
                seq: self.next_seq + i as u64,
                epoch: times.epoch,
                pattern: key.pattern,
                customer_name: key.customer.to_string(),
                merchant_id: key.merchant.to_string(),
                y_start_time: times.y_start.to_string(),
                detection_time: times.now.to_string(),
                file_seq: None,
                evidence: evidence.get(key).map(Evidence::to_json),
            })
            .collect();
        NewRows { keys, rows }
    }

    /// Takes in rows the state store committed.
    pub fn committed(&mut self, new: NewRows) {
        self.next_seq += new.rows.len() as u64;
        self.emitted.extend(new.keys);
        self.pending.extend(new.rows);
    }

    /// Writes every complete file of pending rows.
    pub(crate) fn write_full_files(
        &mut self,
        store: &mut dyn StateWriter,
        output: &dyn ObjectStore,
    ) -> Result<()> {
        while self.pending.len() as u64 >= ROWS_PER_FILE {
            let rest = self.pending.split_off(ROWS_PER_FILE as usize);
            let rows = std::mem::replace(&mut self.pending, rest);
            self.write_file(store, output, &rows)?;
        }
        Ok(())
    }

    /// Ends the ledger: every full file, then the last, shorter one.
    pub(crate) fn write_last_files(
        &mut self,
        store: &mut dyn StateWriter,
        output: &dyn ObjectStore,
    ) -> Result<()> {
        self.write_full_files(store, output)?;
        if !self.pending.is_empty() {
            let rows = std::mem::take(&mut self.pending);
            self.write_file(store, output, &rows)?;
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        store: &mut dyn StateWriter,
        output: &dyn ObjectStore,
        rows: &[LedgerRow],
    ) -> Result<()> {
        let first = rows[0].seq;
        let file_seq = detection_files::file_of(first);
        if first != file_seq * ROWS_PER_FILE {
            return Err(Error::internal(format!(
                "detection file {file_seq} would start at sequence {first}, not at a file boundary"
            )));
        }
        let key = self.file_key(file_seq);
        publish(output, &key, &detection_files::render(rows))?;
        store.mark_written(self.name.id(), file_seq, first, first + rows.len() as u64)?;
        self.files_written += 1;
        tracing::info!(target: PER_EPOCH_TARGET, file = %key, rows = rows.len(), "detection file written");
        Ok(())
    }

    /// The file's key under the output location.
    pub(crate) fn file_key(&self, file_seq: u64) -> String {
        match &self.name {
            LedgerName::Baseline => detection_files::file_key(file_seq),
            LedgerName::Variant(name) => {
                format!("variants/{name}/{}", detection_files::file_key(file_seq))
            }
        }
    }
}

impl LedgerName {
    /// The ledger as the state store addresses it.
    pub fn id(&self) -> LedgerId<'_> {
        match self {
            LedgerName::Baseline => LedgerId::Baseline,
            LedgerName::Variant(name) => LedgerId::Variant(name),
        }
    }

    fn describe(&self) -> String {
        match self {
            LedgerName::Baseline => "ledger".into(),
            LedgerName::Variant(name) => format!("ledger of variant {name}"),
        }
    }
}

/// Writes a published file that must never change once written: created if absent; an
/// existing one must already hold `body`.
pub fn publish(output: &dyn ObjectStore, key: &str, body: &[u8]) -> Result<()> {
    loop {
        if output.put_if_absent(key, body)? == PutOutcome::Created {
            return Ok(());
        }
        match output.get(key)? {
            Some(existing) if existing.body == body => {
                tracing::info!(
                    file = key,
                    "detection file already written with the same content"
                );
                return Ok(());
            }
            Some(_) => {
                return Err(StateError::OutputConflict {
                    output: output.describe(),
                    file: key.to_string(),
                }
                .into())
            }
            // Removed in between: create it again.
            None => continue,
        }
    }
}
