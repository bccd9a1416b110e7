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
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::error::{Context, Error, Result};
use crate::progress::{EpochSeen, Progress};
use crate::runtime::batch::EpochBatch;
use crate::runtime::options::RunSummary;
use crate::runtime::RunControl;
use crate::sinks::rejects::reason_kind;
use crate::sinks::writer::EpochWriter;
use crate::telemetry::status::EpochRecord;
use crate::telemetry::Telemetry;
use crate::time::now_ms;

/// How many computed epochs may wait for the committer: enough to ride out a slow commit,
/// few enough that a crash loses (and a restart recomputes) little.
pub const QUEUE_EPOCHS: usize = 4;

enum Job {
    Commit(EpochBatch),
    /// The stream ended: write the last file and record the end.
    Finish,
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
                commit(&mut writer, batch, &mut summary, telemetry).map(|()| {
                    let total = writer.detections_total();
                    observers.progress.epoch(seen, &summary, total)
                })
            }
            Job::Finish => writer.finish().context("ending the stream"),
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
