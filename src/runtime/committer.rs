//! The committing thread: the one place that writes the run's effects.
//!
//! Worker 0 hands each computed epoch over as an [`EpochBatch`] through a bounded channel
//! ([`QUEUE_EPOCHS`] in flight, in epoch order) and goes on computing the next one; this
//! thread owns the [`EpochWriter`] and commits the batches one by one (rejects file, one
//! state-store transaction, detection files). A slow S3 or a PostgreSQL reconnect therefore
//! no longer stops the dataflow; once the channel is full, worker 0 waits (back-pressure).
//!
//! Exactly-once does not depend on the queue: an epoch is committed only by its state-store
//! transaction, so epochs still queued when the process dies are simply not committed, and a
//! restart replays them from the landing store.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{Context, Error, Result};
use crate::progress::{EpochSeen, Progress};
use crate::runtime::batch::EpochBatch;
use crate::runtime::checkpointer::{CheckpointOptions, Note};
use crate::runtime::options::RunSummary;
use crate::runtime::RunControl;
use crate::sinks::rejects::reason_kind;
use crate::sinks::state::CheckpointRow;
use crate::sinks::writer::EpochWriter;
use crate::telemetry::status::EpochRecord;
use crate::telemetry::Telemetry;
use crate::time::now_ms;

/// How many computed epochs may wait for the committer: enough to ride out a slow commit,
/// few enough that a crash loses (and a restart recomputes) little.
pub const QUEUE_EPOCHS: usize = 4;

pub enum Job {
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
pub struct CheckpointNotes {
    pub options: CheckpointOptions,
    /// The epoch the run restored from: not checkpointed again.
    pub restored: Option<u64>,
    pub notes: Sender<Note>,
}

/// Worker 0's end of the channel.
pub struct CommitQueue {
    jobs: SyncSender<Job>,
    queued: Arc<AtomicUsize>,
}

impl CommitQueue {
    /// Hands an epoch to the committer; blocks while [`QUEUE_EPOCHS`] are waiting.
    pub fn commit(&self, batch: EpochBatch) -> Result<()> {
        let epoch = batch.epoch;
        let queued = self.queued.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::debug!(epoch, queued, "epoch handed to the committer");
        self.send(Job::Commit(batch))
    }

    /// Asks the committer to end the stream after the epochs already handed over.
    pub fn finish(&self) -> Result<()> {
        self.send(Job::Finish)
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs
            .send(job)
            .map_err(|_| Error::internal("the committing thread stopped"))
    }

    /// Where the checkpointing thread asks for records.
    pub fn record_requests(&self) -> SyncSender<Job> {
        self.jobs.clone()
    }
}

impl Drop for CommitQueue {
    fn drop(&mut self) {
        // The checkpointing thread holds a sender too: the committer ends on this, not on
        // every sender being gone.
        let _ = self.jobs.send(Job::Close);
    }
}

/// The committing thread.
pub struct Committer {
    thread: JoinHandle<RunSummary>,
}

impl Committer {
    /// Starts the thread with the run's writer; returns it and worker 0's queue. Every epoch
    /// it takes is reported to `telemetry`.
    pub fn start(
        writer: EpochWriter,
        control: Arc<RunControl>,
        telemetry: Arc<Telemetry>,
        progress: Progress,
        checkpoints: Option<CheckpointNotes>,
    ) -> Result<(Committer, CommitQueue)> {
        let (jobs, received) = sync_channel(QUEUE_EPOCHS);
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = queued.clone();
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || {
                let observers = Observers {
                    telemetry: &telemetry,
                    progress,
                    checkpoints,
                };
                commit_all(writer, received, &counter, &control, observers)
            })
            .map_err(|e| Error::internal(format!("starting the committing thread: {e}")))?;
        Ok((Committer { thread }, CommitQueue { jobs, queued }))
    }

    /// Waits until every handed-over epoch is committed (the queue's sender must be gone);
    /// the summary of what was committed. A failure is reported through the run's control.
    pub fn join(self) -> RunSummary {
        self.thread.join().unwrap_or_else(|_| RunSummary::default())
    }
}

/// Who watches the commits: the metrics and status (`/metrics`, `/api/status`), and the
/// progress bar or log lines.
struct Observers<'t> {
    telemetry: &'t Telemetry,
    progress: Progress,
    checkpoints: Option<CheckpointNotes>,
}

impl Observers<'_> {
    /// Tells the checkpointing thread that a due epoch is committed.
    fn committed(&self, epoch: u64, writer: &EpochWriter) {
        let Some(c) = &self.checkpoints else {
            return;
        };
        if c.options.is_due(epoch) && c.restored.is_none_or(|r| epoch > r) {
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
                self.telemetry.checkpoint_failed();
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
    queued: &AtomicUsize,
    control: &RunControl,
    mut observers: Observers<'_>,
) -> RunSummary {
    let mut summary = RunSummary::default();
    for job in jobs {
        let done = match job {
            Job::Commit(batch) => {
                let telemetry = observers.telemetry;
                telemetry.queue_depth(queued.fetch_sub(1, Ordering::SeqCst) - 1);
                let seen = EpochSeen::of(&batch);
                let epoch = batch.epoch;
                commit(&mut writer, batch, &mut summary, telemetry).map(|()| {
                    observers.committed(epoch, &writer);
                    let total = writer.detections_total();
                    observers.progress.epoch(seen, &summary, total)
                })
            }
            Job::Finish => writer.finish().context("ending the stream"),
            Job::RecordCheckpoint { row, keep } => {
                observers.record(&mut writer, &row, keep);
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
    summary
}

/// Commits one batch, or skips it when an earlier run committed it (a recovery replay).
fn commit(
    writer: &mut EpochWriter,
    batch: EpochBatch,
    summary: &mut RunSummary,
    telemetry: &Telemetry,
) -> Result<()> {
    writer.observe_labels(&batch);
    if writer.replayed(&batch)? {
        summary.epochs_recovered += 1;
        telemetry.epoch_replayed(batch.epoch);
        return Ok(());
    }
    let (epoch, taken_at, visible_ms) = (batch.epoch, batch.taken_at, batch.visible_ms);
    let chunk = batch.chunk_key.clone();
    let (computed_in, rejects_by_reason) = (batch.computed_in, rejects_by_reason(&batch));
    let started = Instant::now();
    let stats = writer
        .commit(batch)
        .with_context(|| format!("committing epoch {epoch} ({chunk})"))?;
    let committed_at_ms = now_ms();
    summary.epochs_committed += 1;
    summary.rows_accepted += stats.accepted;
    summary.rows_rejected += stats.rejected;
    summary.epoch_latencies.push(taken_at.elapsed());
    summary
        .visible_to_commit_ms
        .push(committed_at_ms - visible_ms);
    tracing::info!(
        epoch,
        chunk = %chunk,
        accepted = stats.accepted,
        rejected = stats.rejected,
        new_detections = stats.new_detections,
        total_detections = writer.detections_total(),
        "epoch committed"
    );
    telemetry.epoch_committed(EpochRecord {
        epoch,
        chunk,
        rows: stats.accepted,
        rejected: stats.rejected,
        compute: computed_in,
        commit: started.elapsed(),
        visible_to_commit_ms: telemetry.is_live().then_some(committed_at_ms - visible_ms),
        committed_at: stats.committed_at,
        detections: stats.new_rows,
        rejects_by_reason,
    });
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
