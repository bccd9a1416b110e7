//! Checkpoints, on a thread of their own in every process.
//!
//! At a due epoch `k` ([`CheckpointOptions::is_due`]) every worker stops feeding new chunks
//! until the dataflow has finished `k` (the only pause a checkpoint causes: epochs in flight
//! drain once per interval), reads its part of the per-pair totals from the trace, and hands
//! it over here ([`Note::Shard`]); this thread writes it as one shard. On the process of
//! worker 0 it then waits until every shard of the run exists (other processes write
//! theirs) and the committer reports epoch `k` committed with the fraud labels seen so far
//! ([`Note::Committed`]), writes the manifest, and asks the committer to record the
//! checkpoint in the state store; the committer answers with the checkpoints it forgot
//! ([`Note::Recorded`]), whose objects are removed here. So a checkpoint is recorded only
//! once whole and at a committed epoch, and older ones go only after a newer one is recorded.
//!
//! Nothing here blocks a worker or the committer: they hand data over on a channel. A
//! failure is a warning and a counter (the previous checkpoint still stands), unless
//! `--checkpoint-required`, which fails the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::dataflow::aggregates::{Pair, PairSums};
use crate::error::{Error, Result};
use crate::runtime::control::RunControl;
use crate::runtime::events::{Event, Observers};
use crate::sinks::checkpoint::format::{Labels, Manifest, ShardHeader, FORMAT_VERSION};
use crate::sinks::checkpoint::{CheckpointError, CheckpointStore};
use crate::sinks::state::CheckpointRow;
use crate::time::{format_ist, now_ms};

/// `--checkpoint-interval`, `--checkpoints`, `--checkpoints-kept`, `--checkpoint-required`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// A checkpoint after every this many epochs (at epochs `k` with `(k + 1) % interval ==
    /// 0`); 0 = never.
    pub interval: u64,
    /// Where: a directory or `s3://bucket/prefix`; `None` = `<output>/_checkpoints`.
    pub location: Option<String>,
    /// How many recorded checkpoints to keep (at least 1).
    pub kept: usize,
    /// A failed checkpoint fails the run (else: a warning and a counter).
    pub required: bool,
}

/// Default of [`CheckpointOptions::interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;
/// Default of [`CheckpointOptions::kept`].
pub const DEFAULT_CHECKPOINTS_KEPT: u64 = 2;

/// How long the process of worker 0 waits for the other processes' shards.
const SHARDS_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            interval: DEFAULT_CHECKPOINT_INTERVAL,
            location: None,
            kept: DEFAULT_CHECKPOINTS_KEPT as usize,
            required: false,
        }
    }
}

impl CheckpointOptions {
    /// Whether a checkpoint is taken at `epoch` by a run that restored `restored` (which is
    /// not checkpointed again).
    pub(crate) fn is_due(&self, epoch: u64, restored: Option<u64>) -> bool {
        self.interval > 0
            && (epoch + 1).is_multiple_of(self.interval)
            && restored.is_none_or(|r| epoch > r)
    }

    /// The checkpoint location of a run writing to `output`.
    pub fn location(&self, output: &str) -> String {
        match &self.location {
            Some(location) => location.clone(),
            None => format!("{}/_checkpoints", output.trim_end_matches('/')),
        }
    }
}

/// What a restart starts from: chosen by the process of worker 0 (the newest valid recorded
/// checkpoint) and told to every worker, so that all agree.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct RestorePoint {
    pub epoch: u64,
    /// How many shards it has (the workers of the run that wrote it).
    pub shards: usize,
    /// The manifest's digest, as recorded.
    pub digest: String,
}

/// What the thread is told.
pub(crate) enum Note {
    /// A worker's part of the state at `epoch` (`shard` = its global index).
    Shard {
        epoch: u64,
        shard: usize,
        shards: usize,
        entries: Vec<(Pair, PairSums)>,
    },
    /// The committer committed (or had committed) `epoch`: what the manifest carries.
    Committed {
        epoch: u64,
        labels: Labels,
        first_chunk_ms: Option<i64>,
    },
    /// The committer recorded a checkpoint and forgot these.
    Recorded { removed: Vec<CheckpointRow> },
    /// The run is over: checkpoints not whole yet are abandoned.
    Close,
}

/// The channel of a process's checkpointing thread.
pub(crate) fn notes_channel() -> (Sender<Note>, Receiver<Note>) {
    channel()
}

/// Asks the committer to record a whole checkpoint (`false`: the committer has ended).
pub(crate) type RecordRequests = Box<dyn Fn(CheckpointRow) -> bool + Send>;

/// What the thread needs.
pub(crate) struct CheckpointerSetup {
    pub store: CheckpointStore,
    pub options: CheckpointOptions,
    /// The run's checkpoint key.
    pub run: String,
    /// Workers of this process, and of the run.
    pub local_workers: usize,
    pub workers: usize,
    /// The process of worker 0: writes manifests and has them recorded.
    pub records: Option<RecordRequests>,
    pub control: Arc<RunControl>,
    pub observers: Observers,
}

/// The checkpointing thread of a process.
pub(crate) struct Checkpointer {
    notes: Sender<Note>,
    closing: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the thread on the receiving end of [`notes_channel`]; `notes` is a sender of it.
    pub(crate) fn start(
        setup: CheckpointerSetup,
        notes: Sender<Note>,
        received: Receiver<Note>,
    ) -> Result<Checkpointer> {
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let thread = std::thread::Builder::new()
            .name("checkpointer".into())
            .spawn(move || Writer::new(setup, flag).run(received))
            .map_err(|e| Error::internal(format!("starting the checkpointing thread: {e}")))?;
        Ok(Checkpointer {
            notes,
            closing,
            thread,
        })
    }

    /// Ends the thread: checkpoints not whole yet are abandoned (a restart does not need them).
    /// A failed checkpoint is reported as it happens; a panic of the thread is the error here.
    pub(crate) fn close(self) -> Result<()> {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.notes.send(Note::Close);
        self.thread
            .join()
            .map_err(|panic| Error::panicked("checkpointing", panic.as_ref()))
    }
}

/// A checkpoint under way on this process.
#[derive(Default)]
struct Pending {
    shards_written: usize,
    bytes: u64,
    committed: Option<(Labels, Option<i64>)>,
    started: Option<Instant>,
}

struct Writer {
    setup: CheckpointerSetup,
    closing: Arc<AtomicBool>,
    pending: BTreeMap<u64, Pending>,
}

impl Writer {
    fn new(setup: CheckpointerSetup, closing: Arc<AtomicBool>) -> Writer {
        Writer {
            setup,
            closing,
            pending: BTreeMap::new(),
        }
    }

    fn run(mut self, notes: Receiver<Note>) {
        for note in notes {
            let epoch = match note {
                Note::Shard {
                    epoch,
                    shard,
                    shards,
                    entries,
                } => {
                    self.write_shard(epoch, shard, shards, &entries);
                    epoch
                }
                Note::Committed {
                    epoch,
                    labels,
                    first_chunk_ms,
                } => {
                    self.pending.entry(epoch).or_default().committed =
                        Some((labels, first_chunk_ms));
                    epoch
                }
                Note::Recorded { removed } => {
                    self.remove(&removed);
                    continue;
                }
                Note::Close => return,
            };
            self.finish_if_ready(epoch);
        }
    }

    fn write_shard(
        &mut self,
        epoch: u64,
        shard: usize,
        shards: usize,
        entries: &[(Pair, PairSums)],
    ) {
        let pending = self.pending.entry(epoch).or_default();
        pending.started.get_or_insert_with(Instant::now);
        let header = ShardHeader {
            run: self.setup.run.clone(),
            epoch,
            shard,
            shards,
        };
        match self.setup.store.write_shard(&header, entries) {
            Ok(bytes) => {
                pending.shards_written += 1;
                pending.bytes += bytes;
            }
            Err(e) => {
                self.pending.remove(&epoch);
                self.failed(epoch, &CheckpointError::Store(e));
            }
        }
    }

    /// Once this process's shards of `epoch` are written (and, on the process of worker 0,
    /// the epoch is committed): the manifest and the record.
    fn finish_if_ready(&mut self, epoch: u64) {
        let Some(pending) = self.pending.get(&epoch) else {
            return;
        };
        let local_done = pending.shards_written == self.setup.local_workers;
        let writes_manifest = self.setup.records.is_some();
        if !local_done || (writes_manifest && pending.committed.is_none()) {
            return;
        }
        let pending = self.pending.remove(&epoch).expect("present");
        if writes_manifest {
            if let Err(e) = self.finish(epoch, pending) {
                self.failed(epoch, &e);
            }
        }
    }

    fn finish(&mut self, epoch: u64, pending: Pending) -> Result<(), CheckpointError> {
        let store = &self.setup.store;
        let closing = self.closing.clone();
        let stopped = move || closing.load(Ordering::SeqCst);
        let shards = store.wait_for_shards(
            epoch,
            self.setup.workers,
            SHARDS_TIMEOUT,
            Duration::from_millis(20),
            stopped,
        )?;
        let (labels, first_chunk_ms) = pending.committed.unwrap_or_default();
        let shard_bytes: u64 = shards.iter().map(|s| s.bytes).sum();
        let manifest = Manifest {
            format: FORMAT_VERSION,
            run: self.setup.run.clone(),
            epoch,
            shards,
            labels,
            first_chunk_ms,
        };
        let (manifest_bytes, digest) = store.write_manifest(&manifest)?;
        let row = CheckpointRow {
            epoch,
            location: store.manifest_location(epoch),
            bytes: shard_bytes + manifest_bytes,
            digest,
            format_version: FORMAT_VERSION,
            created_at: format_ist(now_ms()),
        };
        let took = pending.started.map_or(Duration::ZERO, |s| s.elapsed());
        tracing::info!(
            epoch,
            bytes = row.bytes,
            seconds = took.as_secs_f64(),
            location = %row.location,
            "checkpoint written"
        );
        self.setup.observers.emit(&Event::CheckpointWritten {
            epoch,
            bytes: row.bytes,
            took,
        });
        if let Some(record) = &self.setup.records {
            // `false`: the committer has ended (the run is stopping), the checkpoint stays
            // unrecorded.
            let _ = record(row);
        }
        Ok(())
    }

    fn remove(&self, removed: &[CheckpointRow]) {
        for row in removed {
            if let Err(e) = self.setup.store.remove(row.epoch) {
                tracing::warn!(epoch = row.epoch, "removing an old checkpoint failed: {e}");
            }
        }
    }

    fn failed(&self, epoch: u64, error: &CheckpointError) {
        self.setup.observers.emit(&Event::CheckpointFailed);
        let line = format!(
            "checkpoint of epoch {epoch} to {} failed: {error}",
            self.setup.store.describe()
        );
        if self.setup.options.required {
            self.setup
                .control
                .fail(Error::external(format!("{line} (--checkpoint-required)")));
        } else {
            tracing::warn!("{line}; the previous checkpoint still stands");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_every_interval_after_the_restored_epoch() {
        let every = |interval| CheckpointOptions {
            interval,
            ..CheckpointOptions::default()
        };
        let due: Vec<u64> = (0..300).filter(|e| every(100).is_due(*e, None)).collect();
        assert_eq!(due, [99, 199, 299]);
        assert!(!every(100).is_due(99, Some(99)), "the restored epoch again");
        assert!(every(100).is_due(199, Some(99)));
        assert!((0..1000).all(|e| !every(0).is_due(e, None)), "0 = never");
    }
}
