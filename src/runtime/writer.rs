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
//! A backtest with variants keeps one ledger per threshold set (`sinks::ledger`): the
//! baseline's and each variant's advance in the same transaction. The comparison report is
//! not the writer's: once the end is recorded, the run renders it from the state store
//! ([`EpochWriter::backtest_source`]), so that rendering can never hold up a commit.
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::{Error, Result, StateError};
use crate::model::Reject;
use crate::objectstore::ObjectStore;
use crate::runtime::batch::EpochBatch;
use crate::sinks::checkpoint::format::Labels;
use crate::sinks::ledger::{Ledger, LedgerName, NewRows, Times};
use crate::sinks::rejects;
use crate::sinks::state::{
    CheckpointRow, EpochCommit, EpochRow, FailureRow, LedgerRow, RunIdentity, StateReader,
    StateWriter, VariantRows, VariantSpec,
};
use crate::time::{format_ist, now_ms};

/// BankSim's `fraud` labels of the replayed transactions, accepted rows only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FraudLabels {
    /// `(customer, merchant)` pairs with at least one transaction labelled 1.
    pub fraud_pairs: BTreeSet<(String, String)>,
    /// Transactions labelled 1, labelled 0, and with a missing or other label ("unknown").
    pub fraud_rows: u64,
    pub clean_rows: u64,
    pub unknown_rows: u64,
}

/// What the backtest report of a run with variants is rendered from once its stream ended:
/// the state store (every ledger, the epochs, the run's thresholds), the output it goes to,
/// and the labels of every epoch.
pub(crate) struct BacktestSource<'w> {
    pub store: &'w mut dyn StateReader,
    pub output: &'w dyn ObjectStore,
    pub variants: &'w [VariantSpec],
    pub labels: &'w FraudLabels,
}

/// How detection and commit times are taken (SPEC §5).
#[derive(Clone, Debug)]
pub(crate) enum Clock {
    /// Live: `YStartTime` = process start; times = the commit's wall clock.
    Live { y_start_ms: i64 },
    /// Replay: `YStartTime` = the first replayed chunk's last-modified time; times = the
    /// detection's chunk's last-modified time, so backtest output is reproducible.
    Replay { first_chunk_ms: i64 },
}

/// What committing an epoch did.
#[derive(Debug, Default, Clone)]
pub(crate) struct CommitStats {
    pub accepted: u64,
    pub rejected: u64,
    /// The epoch's new ledger rows (for the run's telemetry).
    pub new_rows: Vec<LedgerRow>,
    /// Each variant's new ledger rows (for the run's telemetry).
    pub variant_rows: Vec<VariantRows>,
    /// The epoch's `committed_at` as stored.
    pub committed_at: String,
}

pub(crate) struct EpochWriter {
    store: Box<dyn StateWriter>,
    output: Arc<dyn ObjectStore>,
    clock: Clock,
    /// Epochs committed by earlier runs, with their chunks' digests.
    recovered: BTreeMap<u64, Option<String>>,
    /// Set once a replayed chunk differs from its committed epoch's: nothing more is
    /// committed or written by this writer.
    refused: Option<String>,
    /// The baseline's ledger, then each variant's.
    ledgers: Vec<Ledger>,
    /// A backtest with variants: the variants, and the labels of every epoch (also those
    /// replayed in a recovery) for the report.
    variants: Vec<VariantSpec>,
    labels: FraudLabels,
    finished: bool,
}

impl EpochWriter {
    /// Begins the run on the state store (with its backtest `variants`, none for a plain
    /// run), and rewrites every detection file that may be missing (rows without `file_seq`).
    pub(crate) fn open(
        mut store: Box<dyn StateWriter>,
        output: Arc<dyn ObjectStore>,
        run: &RunIdentity,
        clock: Clock,
        variants: &[VariantSpec],
    ) -> Result<EpochWriter> {
        let recovered = store.begin_run(run)?;
        let recovered_variants = store.begin_variants(variants)?;
        let mut ledgers = vec![Ledger::open(
            LedgerName::Baseline,
            recovered.emitted,
            recovered.next_seq,
            store.as_mut(),
        )?];
        for (spec, state) in variants.iter().zip(recovered_variants) {
            let name = LedgerName::Variant(spec.name.clone());
            ledgers.push(Ledger::open(
                name,
                state.emitted,
                state.next_seq,
                store.as_mut(),
            )?);
        }
        let mut writer = EpochWriter {
            store,
            output,
            clock,
            recovered: recovered.epochs.clone(),
            refused: None,
            ledgers,
            variants: variants.to_vec(),
            labels: FraudLabels::default(),
            finished: recovered.finished,
        };
        if let Some(last) = recovered.last_epoch {
            tracing::info!(
                last_epoch = last,
                epochs = writer.recovered.len(),
                detections = writer.detections_total(),
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
    pub(crate) fn committed_epochs(&self) -> impl Iterator<Item = u64> + '_ {
        self.recovered.keys().copied()
    }

    /// For an epoch a recovery replays: `Ok(true)` when an earlier run committed it from the
    /// same chunk bytes (skip the commit), `Ok(false)` when the epoch is not committed, and
    /// [`StateError::ChunkChanged`] when the chunk's bytes differ from those the epoch was
    /// committed from; from then on the writer commits and writes nothing.
    pub(crate) fn replayed(&mut self, batch: &EpochBatch) -> Result<bool, StateError> {
        let Some(committed) = self.recovered.get(&batch.epoch) else {
            return Ok(false);
        };
        // The state a checkpoint restored: no chunk was read, there are no bytes to check.
        if batch.restored {
            return Ok(true);
        }
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

    /// Number of rows of the baseline's ledger.
    pub(crate) fn detections_total(&self) -> u64 {
        self.ledgers[0].len()
    }

    /// Detection files written by this writer, the baseline's.
    pub(crate) fn files_written(&self) -> u64 {
        self.ledgers[0].files_written
    }

    /// Takes in the fraud labels of an epoch's rows (every epoch, committed now or replayed
    /// in a recovery), for the backtest report of a run with variants.
    pub(crate) fn observe_labels(&mut self, batch: &EpochBatch) {
        if self.variants.is_empty() {
            return;
        }
        for share in &batch.reports {
            let labels = &share.labels;
            self.labels.fraud_rows += labels.fraud;
            self.labels.clean_rows += labels.clean;
            self.labels.unknown_rows += labels.unknown;
            let pairs = labels.fraud_pairs.iter();
            let pairs = pairs.map(|(c, m)| (c.to_string(), m.to_string()));
            self.labels.fraud_pairs.extend(pairs);
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// The fraud labels seen so far, as a checkpoint carries them (the backtest report of a
    /// run with variants counts every epoch, also those a restart does not replay).
    pub(crate) fn checkpoint_labels(&self) -> Labels {
        if self.variants.is_empty() {
            return Labels::default();
        }
        Labels {
            fraud_pairs: self.labels.fraud_pairs.iter().cloned().collect(),
            fraud: self.labels.fraud_rows,
            clean: self.labels.clean_rows,
            unknown: self.labels.unknown_rows,
        }
    }

    /// A replay whose first chunk was removed: its `YStartTime` source, from the checkpoint
    /// restored.
    pub(crate) fn set_replay_start(&mut self, first_chunk_ms: i64) {
        if let Clock::Replay { .. } = self.clock {
            self.clock = Clock::Replay { first_chunk_ms };
        }
    }

    /// A replay's `YStartTime` source, which a checkpoint carries.
    pub(crate) fn first_chunk_ms(&self) -> Option<i64> {
        match self.clock {
            Clock::Replay { first_chunk_ms } => Some(first_chunk_ms),
            Clock::Live { .. } => None,
        }
    }

    /// Records a whole checkpoint; the ones forgotten (all but the newest `keep`).
    pub(crate) fn record_checkpoint(
        &mut self,
        row: &CheckpointRow,
        keep: usize,
    ) -> Result<Vec<CheckpointRow>, StateError> {
        self.store.record_checkpoint(row, keep)
    }

    /// The recorded checkpoints, oldest first.
    pub(crate) fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>, StateError> {
        self.store.checkpoints()
    }

    /// The last failure an earlier run recorded in the store.
    pub(crate) fn last_failure(&mut self) -> Result<Option<FailureRow>, StateError> {
        self.store.last_failure()
    }

    /// Writes a rejects object (used for the importance file at start).
    pub(crate) fn write_rejects(&self, name: &str, rows: &[Reject]) -> Result<()> {
        if !rows.is_empty() {
            self.output
                .put(&rejects::rejects_key(name), &rejects::render(rows))?;
        }
        Ok(())
    }

    /// Commits an epoch: its rejects file, then one state-store transaction with its new
    /// detections (every ledger's), counter deltas and progress row, then any detection file
    /// it completes.
    pub(crate) fn commit(&mut self, mut batch: EpochBatch) -> Result<CommitStats> {
        let epoch = batch.epoch;
        self.check_may_commit(epoch)?;
        let (accepted, rejected) = batch.row_counts();
        let rejects = batch.take_rejects();
        self.write_rejects(&batch.chunk_key, &rejects)?;
        let rejects_written = rejects.len();

        let (y_start, now) = self.times(&batch);
        let times = Times {
            epoch,
            y_start: &y_start,
            now: &now,
        };
        let new: Vec<NewRows> = self
            .ledgers
            .iter()
            .zip(&batch.sets)
            .map(|(ledger, set)| ledger.new_rows(&set.detections, &set.evidence, &times))
            .collect();
        let commit = EpochCommit {
            progress: EpochRow {
                epoch,
                chunk_key: batch.chunk_key.clone(),
                rows_accepted: accepted,
                rows_rejected: rejected,
                committed_at: now.clone(),
                chunk_digest: Some(batch.chunk_digest.clone()),
            },
            counter_deltas: std::mem::take(&mut batch.counter_deltas)
                .into_iter()
                .filter(|(_, d)| *d != 0)
                .map(|(m, d)| (m.to_string(), d))
                .collect(),
            detections: new.first().map(|n| n.rows.clone()).unwrap_or_default(),
            variant_detections: self.variant_rows(&new),
        };
        self.store.commit_epoch(&commit)?;
        // After the commit: once per epoch, however often a failed commit is retried. A
        // warning, so that it shows on a terminal where the per-epoch lines do not.
        if rejects_written > 0 {
            tracing::warn!(
                epoch,
                rejected = rejects_written,
                file = %format!("{}/{}", self.output.describe(), rejects::rejects_key(&batch.chunk_key)),
                "rows rejected: see the rejects file for each row and its reason"
            );
        }
        for (ledger, rows) in self.ledgers.iter_mut().zip(new) {
            ledger.committed(rows);
        }
        self.write_full_files()?;
        Ok(CommitStats {
            accepted,
            rejected,
            new_rows: commit.detections,
            variant_rows: commit.variant_detections,
            committed_at: now,
        })
    }

    /// The variants' new rows of an epoch, as the state store takes them.
    fn variant_rows(&self, new: &[NewRows]) -> Vec<VariantRows> {
        self.variants
            .iter()
            .zip(new.iter().skip(1))
            .map(|(spec, rows)| VariantRows {
                variant: spec.name.clone(),
                rows: rows.rows.clone(),
            })
            .collect()
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

    /// Ends the stream: writes every ledger's last, shorter file, then records the end.
    pub(crate) fn finish(&mut self) -> Result<()> {
        if let Some(refused) = &self.refused {
            return Err(Error::input(format!("not ending the stream: {refused}")));
        }
        for ledger in &mut self.ledgers {
            ledger.write_last_files(self.store.as_mut(), self.output.as_ref())?;
        }
        if !self.finished {
            self.store.mark_finished()?;
            self.finished = true;
        }
        Ok(())
    }

    /// A backtest with variants whose stream ended: what its report is rendered from.
    pub(crate) fn backtest_source(&mut self) -> Option<BacktestSource<'_>> {
        if self.variants.is_empty() || !self.finished {
            return None;
        }
        Some(BacktestSource {
            store: self.store.as_mut(),
            output: self.output.as_ref(),
            variants: &self.variants,
            labels: &self.labels,
        })
    }

    fn write_full_files(&mut self) -> Result<()> {
        for ledger in &mut self.ledgers {
            ledger.write_full_files(self.store.as_mut(), self.output.as_ref())?;
        }
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
    use crate::sinks::ledger::publish;
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
            digest: chunk_digest(body),
        };
        EpochBatch::new(&chunk, std::time::Instant::now(), 1)
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

        fn store(&self) -> Box<dyn StateWriter> {
            let path = self.dir.path().join("state.db");
            Box::new(SqliteStore::open(path.to_str().unwrap()).unwrap())
        }

        fn writer(&self) -> EpochWriter {
            EpochWriter::open(
                self.store(),
                self.output(),
                &run(),
                Clock::Live { y_start_ms: 0 },
                &[],
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
        let output = setup.output();
        let publish = |body: &[u8]| publish(output.as_ref(), "detections-000000.csv", body);
        publish(b"rows").unwrap();
        // The same bytes again (a recovery rewriting what it had written): fine.
        publish(b"rows").unwrap();
        let refused = publish(b"other rows").unwrap_err();
        let message = refused.to_string();
        assert!(
            message.contains("already holds detections-000000.csv with other content"),
            "{message}"
        );
        let kept = output.get("detections-000000.csv").unwrap().unwrap();
        assert_eq!(&kept.body[..], b"rows");
    }
}
