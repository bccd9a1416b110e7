//! The committing thread: the one place that writes the run's effects.
//!
//! Worker 0 hands each computed epoch over as an [`EpochBatch`] through a bounded channel
//! ([`QUEUE_EPOCHS`] in flight, in epoch order) and goes on computing the next one; this
//! thread owns the [`EpochWriter`] and commits the batches one by one (rejects file, one
//! state-store transaction, detection files). A slow S3 or a PostgreSQL reconnect therefore
//! no longer stops the dataflow; once the channel is full, worker 0 keeps the epoch and goes
//! on stepping (its peers need it), taking no further chunk until the epoch is handed over:
//! the back-pressure reaches the chunk feed, not worker 0's steps.
//!
//! Exactly-once does not depend on the queue: an epoch is committed only by its state-store
//! transaction, so epochs still queued when the process dies are simply not committed, and a
//! restart replays them from the landing store.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{Context, Error, Result};
use crate::runtime::batch::EpochBatch;
use crate::runtime::checkpointer::{CheckpointOptions, Note, RecordRequests};
use crate::runtime::control::RunControl;
use crate::runtime::events::{EpochCommitted, EpochReplayed, Event, Observers, Stage};
use crate::runtime::summary::RunSummary;
use crate::runtime::writer::EpochWriter;
use crate::sinks::rejects::reason_kind;
use crate::sinks::state::CheckpointRow;
use crate::time::now_ms;

/// How many computed epochs may wait for the committer: enough to ride out a slow commit,
/// few enough that a crash loses (and a restart recomputes) little.
pub(crate) const QUEUE_EPOCHS: usize = 4;

enum Job {
    Commit(EpochBatch),
    /// The stream ended: write the last file and record the end.
    Finish,
    /// A whole checkpoint (from the checkpointing thread): record it, keep the newest `keep`.
    RecordCheckpoint {
        row: CheckpointRow,
        keep: usize,
    },
    /// Worker 0 is done handing over (its queue was dropped).
    Close,
}

/// What the committer tells the checkpointing thread: each due epoch once committed, with
/// what its manifest carries, and the checkpoints it forgot once it recorded a newer one.
pub(crate) struct CheckpointNotes {
    pub options: CheckpointOptions,
    /// The epoch the run restored from: not checkpointed again.
    pub restored: Option<u64>,
    pub notes: Sender<Note>,
}

/// Epochs handed to the committer and not yet taken (`txflow_commit_queue_depth`). An epoch
/// counts once its hand-over has returned, so one worker 0 still holds (the queue full)
/// never does: the depth is at most [`QUEUE_EPOCHS`]. The committer may take an epoch
/// before its hand-over is counted, so the count may dip below zero for a moment; it is
/// shown as zero.
#[derive(Debug, Default)]
struct Waiting(AtomicIsize);

impl Waiting {
    /// An epoch is in the queue; how many wait now.
    fn handed(&self) -> usize {
        (self.0.fetch_add(1, Ordering::SeqCst) + 1).max(0) as usize
    }

    /// The committer took an epoch; how many still wait.
    fn taken(&self) -> usize {
        (self.0.fetch_sub(1, Ordering::SeqCst) - 1).max(0) as usize
    }
}

/// Worker 0's end of the channel.
pub(crate) struct CommitQueue {
    jobs: SyncSender<Job>,
    waiting: Arc<Waiting>,
}

impl CommitQueue {
    /// The channel: worker 0's end, the committer's end and the count of epochs waiting.
    fn channel() -> (CommitQueue, Receiver<Job>, Arc<Waiting>) {
        Self::channel_of(QUEUE_EPOCHS)
    }

    /// As [`CommitQueue::channel`], with room for `capacity` epochs.
    fn channel_of(capacity: usize) -> (CommitQueue, Receiver<Job>, Arc<Waiting>) {
        let (jobs, received) = sync_channel(capacity);
        let waiting = Arc::new(Waiting::default());
        let queue = CommitQueue {
            jobs,
            waiting: waiting.clone(),
        };
        (queue, received, waiting)
    }

    /// Hands an epoch to the committer; blocks while [`QUEUE_EPOCHS`] are waiting (the
    /// queue's own test: worker 0 uses [`CommitQueue::try_commit`]).
    #[cfg(test)]
    fn commit(&self, batch: EpochBatch) -> Result<()> {
        let epoch = batch.epoch;
        self.send(Job::Commit(batch))?;
        let queued = self.waiting.handed();
        tracing::debug!(epoch, queued, "epoch handed to the committer");
        Ok(())
    }

    /// Hands an epoch to the committer if the queue has room; the batch comes back
    /// (`Ok(Some)`) when [`QUEUE_EPOCHS`] are waiting. Never blocks.
    pub(crate) fn try_commit(&self, batch: EpochBatch) -> Result<Option<EpochBatch>> {
        let epoch = batch.epoch;
        match self.jobs.try_send(Job::Commit(batch)) {
            Ok(()) => {
                let queued = self.waiting.handed();
                tracing::debug!(epoch, queued, "epoch handed to the committer");
                Ok(None)
            }
            Err(TrySendError::Full(Job::Commit(batch))) => Ok(Some(batch)),
            Err(_) => Err(stopped()),
        }
    }

    /// Asks the committer to end the stream after the epochs already handed over, without
    /// blocking: `Ok(false)` while the queue is full.
    pub(crate) fn try_finish(&self) -> Result<bool> {
        match self.jobs.try_send(Job::Finish) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(TrySendError::Disconnected(_)) => Err(stopped()),
        }
    }

    #[cfg(test)]
    fn send(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| stopped())
    }

    /// How the checkpointing thread asks for a whole checkpoint to be recorded (keeping
    /// the newest `keep`); `false` once the committer has ended.
    pub(crate) fn record_requests(&self, keep: usize) -> RecordRequests {
        let jobs = self.jobs.clone();
        Box::new(move |row| jobs.send(Job::RecordCheckpoint { row, keep }).is_ok())
    }
}

/// The committer is gone: it failed (the run's failure says why) or panicked.
fn stopped() -> Error {
    Error::internal("the committing thread stopped")
}

impl Drop for CommitQueue {
    fn drop(&mut self) {
        // The checkpointing thread holds a sender too: the committer ends on this, not on
        // every sender being gone.
        let _ = self.jobs.send(Job::Close);
    }
}

/// The committing thread.
pub(crate) struct Committer {
    thread: JoinHandle<Result<(RunSummary, EpochWriter)>>,
}

impl Committer {
    /// Starts the thread with the run's writer; returns it and worker 0's queue. Every epoch
    /// it takes is reported to `observers`.
    pub(crate) fn start(
        writer: EpochWriter,
        control: Arc<RunControl>,
        observers: Observers,
        checkpoints: Option<CheckpointNotes>,
    ) -> Result<(Committer, CommitQueue)> {
        let (queue, received, waiting) = CommitQueue::channel();
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || {
                let watchers = Watchers {
                    observers,
                    checkpoints,
                };
                let commits = AssertUnwindSafe(|| {
                    #[cfg(feature = "fault-injection")]
                    injected_panic();
                    commit_all(writer, received, &waiting, &control, watchers)
                });
                // A panic fails the run at once (the workers stop taking chunks) and is
                // the thread's result.
                std::panic::catch_unwind(commits).map_err(|panic| {
                    control.fail(Error::panicked("committing", panic.as_ref()));
                    Error::panicked("committing", panic.as_ref())
                })
            })
            .map_err(|e| Error::internal(format!("starting the committing thread: {e}")))?;
        Ok((Committer { thread }, queue))
    }

    /// Waits until every handed-over epoch is committed (the queue's sender must be gone);
    /// the summary of what was committed, and the writer (for what a run does after its
    /// stream ended). A commit's failure is reported through the run's control (it stops
    /// every thread); a panic of the thread is its error here.
    pub(crate) fn join(self) -> Result<(RunSummary, EpochWriter)> {
        match self.thread.join() {
            Ok(result) => result,
            Err(panic) => Err(Error::panicked("committing", panic.as_ref())),
        }
    }
}

/// Test builds only: with `TXFLOW_FAULT_COMMITTER_PANIC` set, the committing thread panics
/// as it starts, as a bug in it would (the run must fail with the panic's message).
#[cfg(feature = "fault-injection")]
fn injected_panic() {
    if std::env::var_os("TXFLOW_FAULT_COMMITTER_PANIC").is_some() {
        panic!("injected fault: the committer panics");
    }
}

/// Who watches the commits: the run's observers (metrics, status, progress) and the
/// checkpointing thread.
struct Watchers {
    observers: Observers,
    checkpoints: Option<CheckpointNotes>,
}

impl Watchers {
    /// Tells the checkpointing thread that a due epoch is committed.
    fn committed(&self, epoch: u64, writer: &EpochWriter) {
        let Some(c) = &self.checkpoints else {
            return;
        };
        if c.options.is_due(epoch, c.restored) {
            let _ = c.notes.send(Note::Committed {
                epoch,
                labels: writer.checkpoint_labels(),
                first_chunk_ms: writer.first_chunk_ms(),
            });
        }
    }

    /// Records a whole checkpoint; the checkpoints forgotten go back for removal. A failure
    /// is a warning: the previous checkpoint still stands.
    fn record(&self, writer: &mut EpochWriter, row: &CheckpointRow, keep: usize) {
        match writer.record_checkpoint(row, keep) {
            Ok(removed) => {
                if let Some(c) = &self.checkpoints {
                    let _ = c.notes.send(Note::Recorded { removed });
                }
            }
            Err(e) => {
                self.observers.emit(&Event::CheckpointFailed);
                tracing::warn!(epoch = row.epoch, "recording a checkpoint failed: {e}");
            }
        }
    }
}

/// The thread's loop: commits the batches in order until the queue closes or a commit fails
/// (then the run is failed and nothing more is committed).
fn commit_all(
    mut writer: EpochWriter,
    jobs: Receiver<Job>,
    waiting: &Waiting,
    control: &RunControl,
    watchers: Watchers,
) -> (RunSummary, EpochWriter) {
    let mut summary = RunSummary::default();
    for job in jobs {
        let done = match job {
            Job::Commit(batch) => {
                let observers = &watchers.observers;
                observers.emit(&Event::QueueDepth {
                    waiting: waiting.taken(),
                });
                let epoch = batch.epoch;
                observers.emit(&Event::EpochStage {
                    epoch,
                    stage: Stage::Committing,
                });
                commit(&mut writer, batch, &mut summary, observers)
                    .map(|()| watchers.committed(epoch, &writer))
            }
            Job::Finish => writer.finish().context("ending the stream"),
            Job::RecordCheckpoint { row, keep } => {
                watchers.record(&mut writer, &row, keep);
                Ok(())
            }
            Job::Close => break,
        };
        if let Err(e) = done {
            control.fail(e);
            break;
        }
    }
    summary.detections_total = writer.detections_total();
    summary.files_written = writer.files_written();
    summary.finished = writer.is_finished();
    (summary, writer)
}

/// Commits one batch, or skips it when an earlier run committed it (a recovery replay).
fn commit(
    writer: &mut EpochWriter,
    batch: EpochBatch,
    summary: &mut RunSummary,
    observers: &Observers,
) -> Result<()> {
    writer.observe_labels(&batch);
    let (epoch, taken_at, visible_ms) = (batch.epoch, batch.taken_at, batch.visible_ms);
    if writer.replayed(&batch)? {
        let (accepted, rejected) = batch.row_counts();
        let replayed = EpochReplayed {
            epoch,
            rows: accepted + rejected,
            visible_ms,
            detections_total: writer.detections_total(),
        };
        replayed.emit(summary, observers);
        return Ok(());
    }
    let chunk = batch.chunk_key.clone();
    let (computed_in, rejects_by_reason) = (batch.computed_in, rejects_by_reason(&batch));
    let started = Instant::now();
    let stats = writer
        .commit(batch)
        .with_context(|| format!("committing epoch {epoch} ({chunk})"))?;
    let committed = EpochCommitted {
        epoch,
        chunk,
        rows: stats.accepted,
        rejected: stats.rejected,
        compute: computed_in,
        commit: started.elapsed(),
        latency: taken_at.elapsed(),
        visible_ms,
        committed_at_ms: now_ms(),
        committed_at: stats.committed_at,
        detections: stats.new_rows,
        variant_detections: stats.variant_rows,
        detections_total: writer.detections_total(),
        rejects_by_reason,
    };
    committed.emit(summary, observers);
    Ok(())
}

/// The batch's rejected rows by reason kind (rejects are few; this is not a per-row path
/// of accepted data).
fn rejects_by_reason(batch: &EpochBatch) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for reject in batch.reports.iter().flat_map(|r| &r.rejects) {
        *kinds
            .entry(reason_kind(&reject.reason).to_string())
            .or_default() += 1;
    }
    kinds
}

/// A queue without a committing thread, for tests of worker 0's side.
#[cfg(test)]
pub(crate) mod unattended {
    use std::sync::mpsc::Receiver;
    use std::time::Duration;

    use super::{CommitQueue, Job};

    /// What worker 0 handed over, in order.
    #[derive(Debug, PartialEq)]
    pub(crate) enum Handed {
        /// An epoch, with how long it took from being fed to being taken out of the dataflow.
        Commit {
            epoch: u64,
            computed_in: Option<Duration>,
        },
        Finish,
        Close,
    }

    /// The committer's end of the queue.
    pub(crate) struct QueueEnd(Receiver<Job>);

    impl QueueEnd {
        /// The next job, waiting up to `timeout`.
        pub(crate) fn next(&self, timeout: Duration) -> Option<Handed> {
            Some(match self.0.recv_timeout(timeout).ok()? {
                Job::Commit(batch) => Handed::Commit {
                    epoch: batch.epoch,
                    computed_in: batch.computed_in,
                },
                Job::Finish => Handed::Finish,
                Job::RecordCheckpoint { .. } | Job::Close => Handed::Close,
            })
        }
    }

    /// A queue with room for `capacity` epochs, and its other end.
    pub(crate) fn queue(capacity: usize) -> (CommitQueue, QueueEnd) {
        let (queue, received, _) = CommitQueue::channel_of(capacity);
        (queue, QueueEnd(received))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn batch(epoch: u64) -> EpochBatch {
        EpochBatch {
            epoch,
            chunk_key: format!("chunk-{epoch:06}.csv"),
            chunk_digest: String::new(),
            visible_ms: 0,
            taken_at: Instant::now(),
            computed_in: None,
            sets: Vec::new(),
            counter_deltas: BTreeMap::new(),
            reports: Vec::new(),
            restored: false,
        }
    }

    /// The depth the committer reports when it takes an epoch counts the epochs in the queue
    /// only, not one worker 0 is still blocked handing over: at most [`QUEUE_EPOCHS`].
    #[test]
    fn the_depth_never_counts_an_epoch_still_being_handed_over() {
        let (queue, jobs, waiting) = CommitQueue::channel();
        for epoch in 0..QUEUE_EPOCHS as u64 {
            queue.commit(batch(epoch)).unwrap();
        }
        // The committer takes epoch 0 but has not counted it yet; meanwhile worker 0 fills
        // the free place and blocks on the next epoch, the queue full.
        let first = jobs.recv().unwrap();
        queue.commit(batch(4)).unwrap();
        let (blocked_meanwhile, depth, later) = std::thread::scope(|scope| {
            let blocked = scope.spawn(|| queue.commit(batch(5)));
            std::thread::sleep(Duration::from_millis(100));
            let blocked_meanwhile = !blocked.is_finished();
            let depth = waiting.taken();
            // Taking epoch 1 unblocks worker 0 (and the test, whatever it found).
            drop(first);
            let _second = jobs.recv().unwrap();
            blocked.join().unwrap().unwrap();
            (blocked_meanwhile, depth, waiting.taken())
        });
        assert!(blocked_meanwhile, "the queue was full");
        assert_eq!(depth, QUEUE_EPOCHS, "epochs 1 to 4 wait, epoch 5 is not in");
        assert_eq!(later, QUEUE_EPOCHS, "epochs 2 to 5 wait");
    }
}
