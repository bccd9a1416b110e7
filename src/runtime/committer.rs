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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Context, Error, Result};
use crate::progress::{EpochSeen, Progress};
use crate::runtime::batch::EpochBatch;
use crate::runtime::options::RunSummary;
use crate::runtime::RunControl;
use crate::sinks::writer::EpochWriter;
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
    /// Starts the thread with the run's writer; returns it and worker 0's queue.
    pub fn start(
        writer: EpochWriter,
        control: Arc<RunControl>,
        progress: Progress,
    ) -> Result<(Committer, CommitQueue)> {
        let (jobs, received) = sync_channel(QUEUE_EPOCHS);
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = queued.clone();
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || commit_all(writer, received, &counter, &control, progress))
            .map_err(|e| Error::internal(format!("starting the committing thread: {e}")))?;
        Ok((Committer { thread }, CommitQueue { jobs, queued }))
    }

    /// Waits until every handed-over epoch is committed (the queue's sender must be gone);
    /// the summary of what was committed. A failure is reported through the run's control.
    pub fn join(self) -> RunSummary {
        self.thread.join().unwrap_or_else(|_| RunSummary::default())
    }
}

/// The thread's loop: commits the batches in order until the queue closes or a commit fails
/// (then the run is failed and nothing more is committed).
fn commit_all(
    mut writer: EpochWriter,
    jobs: Receiver<Job>,
    queued: &AtomicUsize,
    control: &RunControl,
    mut progress: Progress,
) -> RunSummary {
    let mut summary = RunSummary::default();
    for job in jobs {
        let done = match job {
            Job::Commit(batch) => {
                queued.fetch_sub(1, Ordering::SeqCst);
                let seen = EpochSeen::of(&batch);
                commit(&mut writer, batch, &mut summary)
                    .map(|()| progress.epoch(seen, &summary, writer.detections_total()))
            }
            Job::Finish => writer.finish().context("ending the stream"),
        };
        if let Err(e) = done {
            control.fail(e);
            break;
        }
    }
    summary.detections_total = writer.detections_total();
    summary.files_written = writer.files_written;
    summary.finished = writer.is_finished();
    summary
}

/// Commits one batch, or skips it when an earlier run committed it (a recovery replay).
fn commit(writer: &mut EpochWriter, batch: EpochBatch, summary: &mut RunSummary) -> Result<()> {
    if writer.replayed(&batch)? {
        summary.epochs_recovered += 1;
        return Ok(());
    }
    let (epoch, taken_at, visible_ms) = (batch.epoch, batch.taken_at, batch.visible_ms);
    let chunk = batch.chunk_key.clone();
    let stats = writer
        .commit(batch)
        .with_context(|| format!("committing epoch {epoch} ({chunk})"))?;
    summary.epochs_committed += 1;
    summary.rows_accepted += stats.accepted;
    summary.rows_rejected += stats.rejected;
    summary.epoch_latencies.push(taken_at.elapsed());
    summary.visible_to_commit_ms.push(now_ms() - visible_ms);
    tracing::info!(
        epoch,
        chunk = %chunk,
        accepted = stats.accepted,
        rejected = stats.rejected,
        new_detections = stats.new_detections,
        total_detections = writer.detections_total(),
        "epoch committed"
    );
    Ok(())
}
