//! The single committing writer. One worker (global index 0) owns it: it receives every
//! epoch's detections, counter changes and share reports, and turns them into exactly-once
//! effects:
//!
//! 1. the epoch's rejects file is written (deterministic content, so a retry rewrites it);
//! 2. new detections (insertions not yet in the ledger — "emit once") get the next sequence
//!    numbers, and together with the counter deltas and the progress row are committed in
//!    one state-store transaction;
//! 3. every complete group of 50 ledger rows is written as a detection file and marked.
//!
//! After a crash, epochs up to the last committed one are replayed into the dataflow only to
//! rebuild its state: [`EpochWriter::is_committed`] tells the worker to skip them, and
//! [`EpochWriter::open`] rewrites any file the crash may have cut off.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use crate::dataflow::ShareReport;
use crate::model::{DetectionKey, Name, Pattern, Reject};
use crate::objectstore::ObjectStore;
use crate::sinks::detection_files::{self, ROWS_PER_FILE};
use crate::sinks::rejects;
use crate::sinks::state::{EpochCommit, EpochRow, LedgerRow, RunIdentity, StateStore};
use crate::sources::landing::Chunk;
use crate::time::{format_ist, now_ms};

/// How detection and commit times are taken (SPEC §5).
#[derive(Clone, Debug)]
pub enum Clock {
    /// Live: `YStartTime` = process start; times = the commit's wall clock.
    Live { y_start_ms: i64 },
    /// Replay: `YStartTime` = the first replayed chunk's last-modified time; times = the
    /// detection's chunk's last-modified time, so backtest output is reproducible.
    Replay { first_chunk_ms: i64 },
}

/// The changes of one epoch, gathered from the dataflow by the writer worker.
#[derive(Debug, Default)]
pub struct EpochChanges {
    /// Detection → summed diff at this epoch (+1 = starts holding).
    pub detections: BTreeMap<DetectionKey, isize>,
    /// Merchant → change of `N(m)` (Σ value·diff over the count collection's updates).
    pub counter_deltas: BTreeMap<Name, i64>,
    pub reports: Vec<ShareReport>,
}

/// What committing an epoch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommitStats {
    pub accepted: u64,
    pub rejected: u64,
    pub new_detections: u64,
    pub files_written: u64,
}

pub struct EpochWriter {
    store: Box<dyn StateStore>,
    output: Arc<dyn ObjectStore>,
    clock: Clock,
    /// Epochs committed by earlier runs.
    recovered: BTreeSet<u64>,
    emitted: HashSet<DetectionKey>,
    next_seq: u64,
    /// Ledger rows not yet in a full file, from a file boundary on.
    pending: Vec<LedgerRow>,
    finished: bool,
    pub files_written: u64,
}

impl EpochWriter {
    /// Begins the run on the state store, and rewrites every detection file that may be
    /// missing (rows without `file_seq`).
    pub fn open(
        mut store: Box<dyn StateStore>,
        output: Arc<dyn ObjectStore>,
        run: &RunIdentity,
        clock: Clock,
    ) -> anyhow::Result<EpochWriter> {
        let recovered = store.begin_run(run)?;
        let emitted = recovered
            .emitted
            .iter()
            .filter_map(|(pattern, customer, merchant)| {
                Some(DetectionKey {
                    pattern: Pattern::from_id(pattern)?,
                    merchant: merchant.into(),
                    customer: customer.into(),
                })
            })
            .collect::<HashSet<_>>();
        anyhow::ensure!(
            emitted.len() as u64 == recovered.next_seq,
            "state store ledger has {} rows but {} distinct known detections",
            recovered.next_seq,
            emitted.len()
        );
        let pending = match store.first_unwritten_seq()? {
            Some(first) => {
                let start = detection_files::file_of(first) * ROWS_PER_FILE;
                store.ledger_range(start, recovered.next_seq)?
            }
            None => Vec::new(),
        };
        let mut writer = EpochWriter {
            store,
            output,
            clock,
            recovered: recovered.epochs.iter().copied().collect(),
            emitted,
            next_seq: recovered.next_seq,
            pending,
            finished: recovered.finished,
            files_written: 0,
        };
        if let Some(last) = recovered.last_epoch {
            tracing::info!(
                last_epoch = last,
                epochs = writer.recovered.len(),
                detections = writer.next_seq,
                "resuming: committed epochs will be replayed to rebuild state, not committed again"
            );
        }
        writer.write_full_files()?;
        if writer.finished {
            writer.finish()?;
        }
        Ok(writer)
    }

    /// Whether an earlier run committed `epoch`.
    pub fn is_committed(&self, epoch: u64) -> bool {
        self.recovered.contains(&epoch)
    }

    /// Number of ledger rows.
    pub fn detections_total(&self) -> u64 {
        self.next_seq
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Writes a rejects object (used for the importance file at start).
    pub fn write_rejects(&self, name: &str, rows: &[Reject]) -> anyhow::Result<()> {
        if !rows.is_empty() {
            self.output
                .put(&rejects::rejects_key(name), &rejects::render(rows))?;
        }
        Ok(())
    }

    /// Commits epoch `chunk.index` with its gathered changes.
    pub fn commit(&mut self, chunk: &Chunk, changes: EpochChanges) -> anyhow::Result<CommitStats> {
        let epoch = chunk.index;
        let (accepted, rejected) = changes
            .reports
            .iter()
            .fold((0, 0), |(a, r), s| (a + s.accepted, r + s.rejected));
        let mut reject_rows: Vec<Reject> = changes
            .reports
            .into_iter()
            .flat_map(|s| s.rejects)
            .collect();
        // Line order. Records separated by a lone `\r` share a line number: order those by
        // text, so that the file is the same for any number of workers and processes.
        reject_rows.sort_by(|a, b| (a.line, &a.raw, &a.reason).cmp(&(b.line, &b.raw, &b.reason)));
        self.write_rejects(&chunk.key, &reject_rows)?;

        let now = match self.clock {
            Clock::Live { .. } => format_ist(now_ms()),
            Clock::Replay { .. } => format_ist(chunk.last_modified_ms),
        };
        let y_start = match self.clock {
            Clock::Live { y_start_ms } => format_ist(y_start_ms),
            Clock::Replay { first_chunk_ms } => format_ist(first_chunk_ms),
        };
        // BTreeMap order is (pattern, merchant, customer): the SPEC's within-epoch order.
        let new: Vec<DetectionKey> = changes
            .detections
            .into_iter()
            .filter(|(key, diff)| *diff > 0 && !self.emitted.contains(key))
            .map(|(key, _)| key)
            .collect();
        let rows: Vec<LedgerRow> = new
            .iter()
            .enumerate()
            .map(|(i, key)| LedgerRow {
                seq: self.next_seq + i as u64,
                epoch,
                pattern_id: key.pattern.id().to_string(),
                action_type: key.pattern.action().to_string(),
                customer_name: key.customer.to_string(),
                merchant_id: key.merchant.to_string(),
                y_start_time: y_start.clone(),
                detection_time: now.clone(),
                file_seq: None,
            })
            .collect();
        let commit = EpochCommit {
            progress: EpochRow {
                epoch,
                chunk_key: chunk.key.clone(),
                rows_accepted: accepted,
                rows_rejected: rejected,
                committed_at: now,
            },
            counter_deltas: changes
                .counter_deltas
                .into_iter()
                .filter(|(_, d)| *d != 0)
                .map(|(m, d)| (m.to_string(), d))
                .collect(),
            detections: rows,
        };
        self.store.commit_epoch(&commit)?;
        let new_detections = commit.detections.len() as u64;
        self.next_seq += new_detections;
        self.emitted.extend(new);
        self.pending.extend(commit.detections);
        let before = self.files_written;
        self.write_full_files()?;
        Ok(CommitStats {
            accepted,
            rejected,
            new_detections,
            files_written: self.files_written - before,
        })
    }

    /// Ends the stream: writes the last, shorter file and records the end.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        self.write_full_files()?;
        if !self.pending.is_empty() {
            let rows = std::mem::take(&mut self.pending);
            self.write_file(&rows)?;
        }
        if !self.finished {
            self.store.mark_finished()?;
            self.finished = true;
        }
        Ok(())
    }

    fn write_full_files(&mut self) -> anyhow::Result<()> {
        while self.pending.len() as u64 >= ROWS_PER_FILE {
            let rest = self.pending.split_off(ROWS_PER_FILE as usize);
            let rows = std::mem::replace(&mut self.pending, rest);
            self.write_file(&rows)?;
        }
        Ok(())
    }

    fn write_file(&mut self, rows: &[LedgerRow]) -> anyhow::Result<()> {
        let first = rows[0].seq;
        let file_seq = detection_files::file_of(first);
        anyhow::ensure!(
            first == file_seq * ROWS_PER_FILE,
            "detection file {file_seq} would start at sequence {first}, not at a file boundary"
        );
        self.output.put(
            &detection_files::file_key(file_seq),
            &detection_files::render(rows),
        )?;
        self.store
            .mark_written(file_seq, first, first + rows.len() as u64)?;
        self.files_written += 1;
        tracing::info!(file = %detection_files::file_key(file_seq), rows = rows.len(), "detection file written");
        Ok(())
    }
}
