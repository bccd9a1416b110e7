//! The single committing writer. The committing thread of the process hosting worker 0 owns
//! it: it receives every epoch's detections, counter changes and share reports as one batch,
//! and turns them into exactly-once effects:
//!
//! 1. the epoch's rejects file is written (deterministic content, so a retry rewrites it);
//! 2. new detections (insertions not yet in the ledger — "emit once") get the next sequence
//!    numbers, and together with the counter deltas and the progress row are committed in
//!    one state-store transaction;
//! 3. every complete group of 50 ledger rows is written as a detection file and marked.
//!
//! The writer runs on the committing thread (`runtime::committer`) and takes
//! [`EpochBatch`]es, in epoch order.
//!
//! After a crash, epochs up to the last committed one are replayed into the dataflow only to
//! rebuild its state: [`EpochWriter::replayed`] tells the committer to skip them (after checking
//! that the chunk's bytes are those the epoch was committed from), and
//! [`EpochWriter::open`] rewrites any file the crash may have cut off.
//!
//! Published detection files are never rewritten with other content: each is created only
//! if absent, and an existing one must hold exactly the bytes the ledger renders (a recovery
//! rewriting a file it had already written); anything else is refused.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result, StateError};
use crate::model::{DetectionKey, Reject};
use crate::objectstore::{ObjectStore, PutOutcome};
use crate::runtime::batch::EpochBatch;
use crate::sinks::detection_files::{self, ROWS_PER_FILE};
use crate::sinks::rejects;
use crate::sinks::state::{EpochCommit, EpochRow, LedgerRow, RunIdentity, StateStore};
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

/// What committing an epoch did.
#[derive(Debug, Default, Clone)]
pub struct CommitStats {
    pub accepted: u64,
    pub rejected: u64,
    pub new_detections: u64,
    pub files_written: u64,
    /// The epoch's new ledger rows (for the run's telemetry).
    pub new_rows: Vec<LedgerRow>,
    /// The epoch's `committed_at` as stored.
    pub committed_at: String,
}

pub struct EpochWriter {
    store: Box<dyn StateStore>,
    output: Arc<dyn ObjectStore>,
    clock: Clock,
    /// Epochs committed by earlier runs, with their chunks' digests.
    recovered: BTreeMap<u64, Option<String>>,
    /// Set once a replayed chunk differs from its committed epoch's: nothing more is
    /// committed or written by this writer.
    refused: Option<String>,
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
    ) -> Result<EpochWriter> {
        let recovered = store.begin_run(run)?;
        let emitted = recovered.emitted;
        if emitted.len() as u64 != recovered.next_seq {
            return Err(StateError::Inconsistent(format!(
                "state store ledger has {} rows but {} distinct known detections",
                recovered.next_seq,
                emitted.len()
            ))
            .into());
        }
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
            recovered: recovered.epochs.clone(),
            refused: None,
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

    /// The epochs committed by earlier runs, ascending.
    pub fn committed_epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.recovered.keys().copied()
    }

    /// For an epoch a recovery replays: `Ok(true)` when an earlier run committed it from the
    /// same chunk bytes (skip the commit), `Ok(false)` when the epoch is not committed, and
    /// [`StateError::ChunkChanged`] when the chunk's bytes differ from those the epoch was
    /// committed from; from then on the writer commits and writes nothing.
    pub fn replayed(&mut self, batch: &EpochBatch) -> Result<bool, StateError> {
        let Some(committed) = self.recovered.get(&batch.epoch) else {
            return Ok(false);
        };
        match committed {
            Some(digest) if *digest != batch.chunk_digest => {
                let error = StateError::ChunkChanged {
                    chunk: batch.chunk_key.clone(),
                    epoch: batch.epoch,
                    committed: short_digest(digest).to_string(),
                    now: short_digest(&batch.chunk_digest).to_string(),
                };
                self.refused = Some(error.to_string());
                Err(error)
            }
            _ => Ok(true),
        }
    }

    /// Refuses to change anything after a replayed chunk was found changed, or once the
    /// stream has ended.
    fn check_may_commit(&self, epoch: u64) -> Result<()> {
        if let Some(refused) = &self.refused {
            return Err(Error::input(format!(
                "not committing epoch {epoch}: {refused}"
            )));
        }
        if self.finished {
            return Err(Error::configuration(format!(
                "not committing epoch {epoch}: the stream of this state store has ended; a new \
                 run needs a new state store"
            )));
        }
        Ok(())
    }

    /// Number of ledger rows.
    pub fn detections_total(&self) -> u64 {
        self.next_seq
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Writes a rejects object (used for the importance file at start).
    pub fn write_rejects(&self, name: &str, rows: &[Reject]) -> Result<()> {
        if !rows.is_empty() {
            self.output
                .put(&rejects::rejects_key(name), &rejects::render(rows))?;
        }
        Ok(())
    }

    /// Commits an epoch: its rejects file, then one state-store transaction with its new
    /// detections, counter deltas and progress row, then any detection file it completes.
    pub fn commit(&mut self, mut batch: EpochBatch) -> Result<CommitStats> {
        let epoch = batch.epoch;
        self.check_may_commit(epoch)?;
        let (accepted, rejected) = batch.row_counts();
        let rejects = batch.take_rejects();
        self.write_rejects(&batch.chunk_key, &rejects)?;

        let (y_start, now) = self.times(&batch);
        let (new, rows) =
            self.new_rows(std::mem::take(&mut batch.detections), epoch, &y_start, &now);
        let commit = EpochCommit {
            progress: EpochRow {
                epoch,
                chunk_key: batch.chunk_key.clone(),
                rows_accepted: accepted,
                rows_rejected: rejected,
                committed_at: now,
                chunk_digest: Some(batch.chunk_digest.clone()),
            },
            counter_deltas: batch
                .counter_deltas
                .into_iter()
                .filter(|(_, d)| *d != 0)
                .map(|(m, d)| (m.to_string(), d))
                .collect(),
            detections: rows,
            variant_detections: Vec::new(),
        };
        self.store.commit_epoch(&commit)?;
        let new_detections = commit.detections.len() as u64;
        self.next_seq += new_detections;
        self.emitted.extend(new);
        let new_rows = commit.detections.clone();
        let committed_at = commit.progress.committed_at.clone();
        self.pending.extend(commit.detections);
        let before = self.files_written;
        self.write_full_files()?;
        Ok(CommitStats {
            accepted,
            rejected,
            new_detections,
            files_written: self.files_written - before,
            new_rows,
            committed_at,
        })
    }

    /// The epoch's `YStartTime` and detection time (SPEC §5).
    fn times(&self, batch: &EpochBatch) -> (String, String) {
        match self.clock {
            Clock::Live { y_start_ms } => (format_ist(y_start_ms), format_ist(now_ms())),
            Clock::Replay { first_chunk_ms } => {
                (format_ist(first_chunk_ms), format_ist(batch.visible_ms))
            }
        }
    }

    /// The detections that start holding and were never emitted, with their ledger rows
    /// numbered from the next sequence number. BTreeMap order is (pattern, merchant,
    /// customer): the SPEC's within-epoch order.
    fn new_rows(
        &self,
        detections: BTreeMap<DetectionKey, isize>,
        epoch: u64,
        y_start: &str,
        now: &str,
    ) -> (Vec<DetectionKey>, Vec<LedgerRow>) {
        let new: Vec<DetectionKey> = detections
            .into_iter()
            .filter(|(key, diff)| *diff > 0 && !self.emitted.contains(key))
            .map(|(key, _)| key)
            .collect();
        let rows = new
            .iter()
            .enumerate()
            .map(|(i, key)| LedgerRow {
                seq: self.next_seq + i as u64,
                epoch,
                pattern_id: key.pattern.id().to_string(),
                action_type: key.pattern.action().to_string(),
                customer_name: key.customer.to_string(),
                merchant_id: key.merchant.to_string(),
                y_start_time: y_start.to_string(),
                detection_time: now.to_string(),
                file_seq: None,
                evidence: None,
            })
            .collect();
        (new, rows)
    }

    /// Ends the stream: writes the last, shorter file and records the end.
    pub fn finish(&mut self) -> Result<()> {
        if let Some(refused) = &self.refused {
            return Err(Error::input(format!("not ending the stream: {refused}")));
        }
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

    /// Writes a published file that must never change once written: created if absent;
    /// an existing one must already hold `body`.
    fn publish(&self, key: &str, body: &[u8]) -> Result<()> {
        loop {
            if self.output.put_if_absent(key, body)? == PutOutcome::Created {
                return Ok(());
            }
            match self.output.get(key)? {
                Some(existing) if existing.body == body => {
                    tracing::info!(
                        file = key,
                        "detection file already written with the same content"
                    );
                    return Ok(());
                }
                Some(_) => {
                    return Err(StateError::OutputConflict {
                        output: self.output.describe(),
                        file: key.to_string(),
                    }
                    .into())
                }
                // Removed in between: create it again.
                None => continue,
            }
        }
    }

    fn write_full_files(&mut self) -> Result<()> {
        while self.pending.len() as u64 >= ROWS_PER_FILE {
            let rest = self.pending.split_off(ROWS_PER_FILE as usize);
            let rows = std::mem::replace(&mut self.pending, rest);
            self.write_file(&rows)?;
        }
        Ok(())
    }

    fn write_file(&mut self, rows: &[LedgerRow]) -> Result<()> {
        let first = rows[0].seq;
        let file_seq = detection_files::file_of(first);
        if first != file_seq * ROWS_PER_FILE {
            return Err(Error::internal(format!(
                "detection file {file_seq} would start at sequence {first}, not at a file boundary"
            )));
        }
        self.publish(
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

/// How a digest is shown in messages: its first 16 hex digits.
fn short_digest(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectstore::{self, S3Options};
    use crate::sinks::state::sqlite::SqliteStore;
    use crate::sources::landing::{chunk_digest, chunk_key, Chunk};

    fn run() -> RunIdentity {
        RunIdentity {
            mode: crate::sinks::state::RunMode::Live,
            landing: "/landing".into(),
            from: None,
            to: None,
            thresholds: String::new(),
            importance: "/CustomerImportance.csv".into(),
            importance_digest: chunk_digest(b""),
        }
    }

    /// An empty epoch of a chunk with these bytes.
    fn chunk(index: u64, body: &'static [u8]) -> EpochBatch {
        let chunk = Chunk {
            index,
            key: chunk_key(index),
            body: bytes::Bytes::from_static(body),
            last_modified_ms: 0,
            seen_at: std::time::Instant::now(),
            digest: chunk_digest(body),
        };
        EpochBatch::new(&chunk, std::time::Instant::now())
    }

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        fn new() -> Setup {
            Setup {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn output(&self) -> Arc<dyn ObjectStore> {
            let path = self.dir.path().join("out");
            objectstore::open(path.to_str().unwrap(), &S3Options::default()).unwrap()
        }

        fn store(&self) -> Box<dyn StateStore> {
            let path = self.dir.path().join("state.db");
            Box::new(SqliteStore::open(path.to_str().unwrap()).unwrap())
        }

        fn writer(&self) -> EpochWriter {
            EpochWriter::open(
                self.store(),
                self.output(),
                &run(),
                Clock::Live { y_start_ms: 0 },
            )
            .unwrap()
        }
    }

    #[test]
    fn a_replayed_chunk_with_other_bytes_is_refused_and_nothing_more_is_committed() {
        let setup = Setup::new();
        let mut w = setup.writer();
        assert!(!w.replayed(&chunk(0, b"original")).unwrap());
        w.commit(chunk(0, b"original")).unwrap();
        drop(w);

        let mut w = setup.writer();
        assert!(w.replayed(&chunk(0, b"original")).unwrap());
        assert!(!w.replayed(&chunk(1, b"next")).unwrap());
        let refused = w.replayed(&chunk(0, b"replaced")).unwrap_err();
        let message = refused.to_string();
        assert!(
            message.starts_with("chunk-000000.csv changed since epoch 0 was committed (digest ")
                && message.contains(short_digest(&chunk_digest(b"original")))
                && message.contains(short_digest(&chunk_digest(b"replaced")))
                && message.contains("the landing store must be append-only"),
            "{message}"
        );
        assert!(w.commit(chunk(1, b"next")).is_err());
        assert!(w.finish().is_err());
        drop(w);
        let mut store = setup.store();
        let rows = store.epoch_rows().unwrap();
        assert_eq!(rows.len(), 1, "nothing committed after the refusal");
        assert_eq!(rows[0].chunk_digest, Some(chunk_digest(b"original")));
    }

    #[test]
    fn an_ended_stream_commits_nothing_more() {
        let setup = Setup::new();
        let mut w = setup.writer();
        w.commit(chunk(0, b"a")).unwrap();
        w.finish().unwrap();
        drop(w);
        let mut w = setup.writer();
        assert!(w.is_finished());
        assert!(w.commit(chunk(1, b"b")).is_err());
        assert_eq!(setup.store().epoch_rows().unwrap().len(), 1);
    }

    #[test]
    fn published_files_are_never_rewritten_with_other_content() {
        let setup = Setup::new();
        let w = setup.writer();
        let output = setup.output();
        w.publish("detections-000000.csv", b"rows").unwrap();
        // The same bytes again (a recovery rewriting what it had written): fine.
        w.publish("detections-000000.csv", b"rows").unwrap();
        let refused = w
            .publish("detections-000000.csv", b"other rows")
            .unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains("already holds detections-000000.csv with other content"),
            "{message}"
        );
        let kept = output.get("detections-000000.csv").unwrap().unwrap();
        assert_eq!(&kept.body[..], b"rows");
    }
}
