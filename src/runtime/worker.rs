//! The worker loop: every timely worker of every process runs it.
//!
//! For each chunk the feed delivers, a worker parses its share of the records
//! ([`parse_chunk`]) and feeds them into the dataflow at time = the chunk's index; it steps
//! the dataflow while up to [`EPOCHS_IN_FLIGHT`] epochs are in flight, and retires each, in
//! order, once the dataflow has finished it. Worker 0 also gathers the epoch's outputs, checks
//! (once) that every process of a cluster runs with its options, and hands the complete
//! epoch to the committer; it never writes anything itself, and never blocks on the
//! committer: while the commit queue is full it keeps the epoch and goes on stepping (its
//! peers' progress needs its steps), taking no further chunk (the back-pressure reaches the
//! chunk feed).

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Exchange;
use timely::worker::Worker;

use crate::dataflow::aggregates::{
    pair_totals_through, release_through, Pair, PairSums, PairTrace, WeightTable,
};
use crate::dataflow::{self, Epoch, ShareReport};
use crate::error::{ClusterError, Error, Result};
use crate::model::Thresholds;
use crate::runtime::batch::{EpochBatch, Gathered};
use crate::runtime::checkpointer::{CheckpointOptions, Note, RestorePoint};
use crate::runtime::committer::CommitQueue;
use crate::runtime::identity::{check_fingerprints, Fingerprint};
use crate::runtime::RunControl;
use crate::sinks::checkpoint::format::Manifest;
use crate::sinks::checkpoint::{CheckpointStore, Loaded};
use crate::sources::landing::{chunk_key, Chunk, ChunkFeed, FeedItem};
use crate::sources::parse::parse_chunk;

/// What the workers of a process share.
pub(crate) struct WorkerShared {
    /// The importance table, broadcast: every worker joins its share with it on the way in.
    pub weights: Arc<WeightTable>,
    /// The threshold sets: the run's own (the baseline) first, then the backtest variants'.
    pub threshold_sets: Vec<Thresholds>,
    /// What every process of a cluster must agree on; checked by worker 0.
    pub fingerprint: Fingerprint,
    /// The chunk feed, started by the first worker that knows where to start it (after the
    /// restored checkpoint, if any).
    pub feed: LazyFeed,
    pub control: Arc<RunControl>,
    /// Epochs committed by an earlier run (replayed only to rebuild state).
    pub recovered: BTreeSet<Epoch>,
    /// The committer's queue, taken by worker 0 (`None` on the other processes).
    pub commits: std::sync::Mutex<Option<CommitQueue>>,
    /// Checkpoints: taking them, and what this run restores (`None` = off).
    pub checkpoints: Option<WorkerCheckpoints>,
    /// Processes of the run (they agree on the restore point through the dataflow).
    pub processes: usize,
}

/// What the workers need of checkpoints.
pub(crate) struct WorkerCheckpoints {
    pub options: CheckpointOptions,
    pub store: CheckpointStore,
    /// The checkpointing thread of this process.
    pub notes: std::sync::Mutex<Sender<Note>>,
    /// The process of worker 0: the checkpoint chosen (checked whole) at start, if any. The
    /// other processes learn the choice from worker 0 and read their shards themselves.
    pub restore: Option<Restore>,
    /// The run's checkpoint key (the other processes check the manifest with it).
    pub run: String,
}

/// One shard's pairs with their totals.
type Shard = Vec<(Pair, PairSums)>;

/// Starts the chunk feed after the restored epoch (`None`: from the start).
type FeedStart = Box<dyn FnOnce(Option<Epoch>) -> Arc<ChunkFeed> + Send>;

/// A checkpoint a run restores, read and checked by the process of worker 0.
pub(crate) struct Restore {
    pub point: RestorePoint,
    /// How long reading and checking it took.
    pub load_seconds: f64,
    pub manifest: Manifest,
    /// Each shard's pairs, taken by the worker that inserts it.
    pub shards: std::sync::Mutex<Vec<Option<Shard>>>,
}

impl Restore {
    pub(crate) fn new(point: RestorePoint, loaded: Loaded, load_seconds: f64) -> Restore {
        Restore {
            point,
            load_seconds,
            manifest: loaded.manifest,
            shards: std::sync::Mutex::new(loaded.shards.into_iter().map(Some).collect()),
        }
    }
}

/// The chunk feed, started once its first chunk is known.
pub(crate) struct LazyFeed {
    feed: OnceLock<Arc<ChunkFeed>>,
    start: std::sync::Mutex<Option<FeedStart>>,
}

impl LazyFeed {
    /// `start(restored)` starts the feed after the restored epoch (all chunks: `None`).
    pub(crate) fn new(
        start: impl FnOnce(Option<Epoch>) -> Arc<ChunkFeed> + Send + 'static,
    ) -> LazyFeed {
        LazyFeed {
            feed: OnceLock::new(),
            start: std::sync::Mutex::new(Some(Box::new(start))),
        }
    }

    /// The feed; the first call starts it (every worker of a process agrees on `restored`).
    pub(crate) fn get(&self, restored: Option<Epoch>) -> &Arc<ChunkFeed> {
        self.feed.get_or_init(|| {
            let start = self
                .start
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .expect("started once");
            start(restored)
        })
    }
}

/// How long an idle worker parks before polling the feed again.
const IDLE_PARK: Duration = Duration::from_millis(1);

/// How long worker 0 waits for its own stop signal when a peer stopped before an epoch.
const INCOMPLETE_EPOCH_GRACE: Duration = Duration::from_secs(3);

/// One worker's dataflow: its inputs, the probe that says when an epoch is done, and (on
/// worker 0) what the dataflow hands out.
struct Dataflow {
    inputs: dataflow::Inputs,
    reports: InputSession<Epoch, ShareReport, isize>,
    probe: ProbeHandle<Epoch>,
    gathered: Rc<RefCell<Gathered>>,
    fingerprints: Rc<RefCell<Vec<(usize, Fingerprint)>>>,
    /// The per-pair totals' trace, held only when checkpoints are taken.
    pair_trace: Option<PairTrace>,
}

/// How many epochs a worker may have fed and not yet seen complete. Overlapping a few lets
/// a worker parse chunk k+1 while its peers finish chunk k (no barrier at every epoch), and
/// lets operators take the updates of several epochs as one batch; each epoch is still
/// taken out and committed alone, in order. A live run rarely has more than one in flight:
/// the next chunk has not landed yet. Measured (`-w 2`, alternately): 3 took the default set
/// from 0.76 to 0.66 s; 5 (with the feed's prefetch at 4) 0.61 → 0.57 s and ×10 9.6 → 8.5 s
/// within 400 MiB; 8 was slower on the default set.
const EPOCHS_IN_FLIGHT: usize = 5;

/// An epoch fed into the dataflow and not yet complete.
struct InFlight {
    chunk: Arc<Chunk>,
    taken_at: Instant,
    /// The state a checkpoint restored, not a chunk.
    restored: bool,
}

/// One worker's loop state: its dataflow, the epochs in flight, and (worker 0) the
/// committer's queue and whether the cluster's fingerprints were checked.
struct EpochLoop {
    flow: Dataflow,
    in_flight: VecDeque<InFlight>,
    queue: Option<CommitQueue>,
    /// Worker 0: complete epochs the commit queue had no room for yet, oldest first. They
    /// count against [`EPOCHS_IN_FLIGHT`], so a slow committer holds the feed back.
    pending: VecDeque<EpochBatch>,
    fingerprints_checked: bool,
    /// An incomplete epoch was abandoned at a stop: no later epoch may be handed over.
    abandoned: bool,
    feed: Arc<ChunkFeed>,
    /// The restored epoch, if any (not checkpointed again).
    restored: Option<Epoch>,
    /// A due checkpoint epoch fed and not yet read from the trace: no later chunk is fed
    /// until it is.
    snapshot_due: Option<Epoch>,
    worker_index: usize,
    workers: usize,
}

/// Runs one worker until the stream ends, the run is stopped, or something fails.
pub(crate) fn run_worker(worker: &mut Worker, shared: &WorkerShared) -> Result<()> {
    let queue = match worker.index() {
        0 => shared
            .commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(),
        _ => None,
    };
    let restore = agree_on_restore(worker, shared);
    let restored = restore.as_ref().map(|p| p.epoch);
    let mut epochs = EpochLoop {
        flow: build_dataflow(worker, shared),
        in_flight: VecDeque::new(),
        queue,
        pending: VecDeque::new(),
        fingerprints_checked: false,
        abandoned: false,
        feed: shared.feed.get(restored).clone(),
        restored,
        snapshot_due: None,
        worker_index: worker.index(),
        workers: worker.peers(),
    };
    if let Some(point) = restore {
        epochs.restore(worker, shared, &point)?;
    }
    let mut ended = epochs.feed(worker, shared)?;
    ended &= epochs.drain(worker, shared)?;
    let EpochLoop { flow, queue, .. } = epochs;
    drop(flow);
    if let Some(queue) = queue {
        if ended && !shared.control.failed() {
            while !queue.try_finish()? {
                worker.step_or_park(Some(IDLE_PARK));
            }
        } else {
            tracing::info!(
                "stopped before the end of the stream; a restart resumes from the last \
                 committed epoch"
            );
        }
    }
    Ok(())
}

impl EpochLoop {
    /// Inserts this worker's part of the restored checkpoint as the state at its epoch (an
    /// epoch an earlier run committed: the committer skips it).
    fn restore(
        &mut self,
        worker: &mut Worker,
        shared: &WorkerShared,
        point: &RestorePoint,
    ) -> Result<()> {
        let checkpoints = shared
            .checkpoints
            .as_ref()
            .ok_or_else(|| Error::internal("a restore point without checkpoint options"))?;
        let (index, peers) = (worker.index(), worker.peers());
        let mut totals = Vec::new();
        let mut labels = Default::default();
        match &checkpoints.restore {
            Some(restore) => {
                let mut shards = restore.shards.lock().unwrap_or_else(|p| p.into_inner());
                for shard in (index..point.shards).step_by(peers) {
                    totals.extend(shards[shard].take().unwrap_or_default());
                }
                if index == 0 {
                    labels = restore.manifest.labels.to_counts();
                }
            }
            None => {
                let store = &checkpoints.store;
                let manifest = store
                    .load_manifest(point.epoch, &point.digest, &checkpoints.run)
                    .map_err(|e| {
                        Error::external(format!("reading the restored checkpoint: {e}"))
                    })?;
                for shard in (index..point.shards).step_by(peers) {
                    totals.extend(store.load_shard(&manifest, shard).map_err(|e| {
                        Error::external(format!("reading the restored checkpoint: {e}"))
                    })?);
                }
            }
        }
        let epoch = point.epoch;
        let flow = &mut self.flow;
        flow.inputs.advance_to(epoch);
        flow.reports.advance_to(epoch);
        flow.inputs.insert_totals(totals);
        flow.reports.insert(ShareReport {
            worker: index,
            accepted: 0,
            rejected: 0,
            rejects: Vec::new(),
            labels,
        });
        flow.inputs.advance_to(epoch + 1);
        flow.reports.advance_to(epoch + 1);
        flow.inputs.flush();
        flow.reports.flush();
        let chunk = Chunk {
            index: epoch,
            key: chunk_key(epoch),
            body: bytes::Bytes::new(),
            last_modified_ms: 0,
            digest: String::new(),
        };
        self.in_flight.push_back(InFlight {
            chunk: Arc::new(chunk),
            taken_at: Instant::now(),
            restored: true,
        });
        Ok(())
    }

    /// Notes that `epoch`, just fed, is a checkpoint's: no later chunk until it is read.
    fn note_due(&mut self, shared: &WorkerShared, epoch: Epoch) {
        let due = shared.checkpoints.as_ref();
        if due.is_some_and(|c| c.options.is_due(epoch, self.restored)) {
            self.snapshot_due = Some(epoch);
        }
    }

    /// Whether later chunks may be fed: no checkpoint is due, or the dataflow finished the
    /// due epoch and this worker's part was read and handed to the checkpointing thread.
    fn snapshot_taken(&mut self, shared: &WorkerShared) -> bool {
        let Some(epoch) = self.snapshot_due else {
            return true;
        };
        if self.flow.probe.less_than(&(epoch + 1)) {
            return false;
        }
        self.snapshot_due = None;
        let (Some(trace), Some(checkpoints)) =
            (self.flow.pair_trace.as_mut(), shared.checkpoints.as_ref())
        else {
            return true;
        };
        match pair_totals_through(trace, epoch + 1) {
            Some(entries) => {
                let note = Note::Shard {
                    epoch,
                    shard: self.worker_index,
                    shards: self.workers,
                    entries,
                };
                let notes = checkpoints.notes.lock().unwrap_or_else(|p| p.into_inner());
                let _ = notes.send(note);
            }
            None => tracing::warn!(
                epoch,
                "the state at the checkpoint's epoch could not be read; no checkpoint"
            ),
        }
        release_through(trace, epoch + 1);
        true
    }

    /// Feeds chunks into the dataflow, keeping at most [`EPOCHS_IN_FLIGHT`] epochs in flight
    /// and retiring each as it completes, until the stream ends (`true`) or the run stops.
    fn feed(&mut self, worker: &mut Worker, shared: &WorkerShared) -> Result<bool> {
        let mut position = 0u64;
        loop {
            if !self.retire(worker, shared)? || shared.control.should_stop() {
                return Ok(false);
            }
            let room = self.in_flight.len() + self.pending.len() < EPOCHS_IN_FLIGHT
                && self.snapshot_taken(shared);
            let item = match room {
                true => self
                    .feed
                    .poll(position)
                    .map_err(|e| Error::from(e).context("reading the landing store"))?,
                false => None,
            };
            match item {
                Some(FeedItem::Chunk(chunk)) => {
                    position += 1;
                    let taken_at = Instant::now();
                    feed_epoch(worker, &mut self.flow, &chunk);
                    self.note_due(shared, chunk.index);
                    self.in_flight.push_back(InFlight {
                        chunk,
                        taken_at,
                        restored: false,
                    });
                }
                Some(FeedItem::End) => return Ok(true),
                // Park between steps instead of spinning: peers' messages and the feed's
                // next poll wake the worker.
                None => {
                    worker.step_or_park(Some(IDLE_PARK));
                }
            }
        }
    }

    /// Whatever is in flight at the end (or at a stop) is finished and handed over, stepping
    /// meanwhile, unless an epoch was abandoned (`Ok(false)`): epochs are committed in order,
    /// without gaps. The complete epochs before an abandoned one are still handed over.
    fn drain(&mut self, worker: &mut Worker, shared: &WorkerShared) -> Result<bool> {
        loop {
            let whole = self.retire(worker, shared)?;
            self.hand_over_pending()?;
            // Nothing more to finish (all retired, or one abandoned) and nothing to hand over.
            if (!whole || self.in_flight.is_empty()) && self.pending.is_empty() {
                return Ok(whole);
            }
            worker.step_or_park(Some(IDLE_PARK));
        }
    }

    /// Worker 0: hands the pending epochs to the committer, oldest first, while its queue has
    /// room. Never blocks.
    fn hand_over_pending(&mut self) -> Result<()> {
        let Some(queue) = self.queue.as_ref() else {
            return Ok(());
        };
        while let Some(batch) = self.pending.pop_front() {
            if let Some(batch) = queue.try_commit(batch)? {
                self.pending.push_front(batch);
                break;
            }
        }
        Ok(())
    }

    /// Takes out the epochs the dataflow has completed, oldest first; on worker 0 hands
    /// each to the committer (or keeps it pending while the commit queue is full).
    /// `Ok(false)`: an incomplete epoch was abandoned at a stop.
    fn retire(&mut self, worker: &mut Worker, shared: &WorkerShared) -> Result<bool> {
        if self.abandoned {
            return Ok(false);
        }
        while let Some(oldest) = self.in_flight.front() {
            let next = oldest.chunk.index + 1;
            if self.flow.probe.less_than(&next) {
                break;
            }
            let InFlight {
                chunk,
                taken_at,
                restored,
            } = self.in_flight.pop_front().expect("a front");
            if self.snapshot_due.is_none() {
                if let Some(trace) = self.flow.pair_trace.as_mut() {
                    release_through(trace, next);
                }
            }
            if self.queue.is_none() {
                continue;
            }
            if !self.fingerprints_checked {
                check_fingerprints(&self.flow.fingerprints.borrow(), &shared.fingerprint)?;
                self.fingerprints_checked = true;
            }
            let mut batch = self
                .flow
                .gathered
                .borrow_mut()
                .take_batch(&chunk, next, taken_at);
            batch.computed_in = Some(taken_at.elapsed());
            batch.restored = restored;
            if !is_complete(worker, shared, &batch)? {
                self.abandoned = true;
                return Ok(false);
            }
            self.pending.push_back(batch);
        }
        self.hand_over_pending()?;
        Ok(true)
    }
}

/// Parses this worker's share of `chunk` into the dataflow at the chunk's epoch and
/// advances the inputs past it; the dataflow computes it as the worker steps.
fn feed_epoch(worker: &mut Worker, flow: &mut Dataflow, chunk: &Chunk) {
    let (index, peers) = (worker.index(), worker.peers());
    let epoch = chunk.index;
    flow.inputs.advance_to(epoch);
    flow.reports.advance_to(epoch);
    let parsed = parse_chunk(&chunk.key, &chunk.body, peers, index);
    if let (Some(error), 0) = (&parsed.header_error, index) {
        tracing::error!(chunk = %chunk.key, "{error}; every record of the chunk is rejected");
    }
    let report = ShareReport {
        worker: index,
        accepted: parsed.txns.len() as u64,
        rejected: parsed.rejects.len() as u64,
        rejects: parsed.rejects,
        labels: parsed.labels,
    };
    flow.inputs.insert_share(parsed.txns);
    flow.reports.insert(report);
    let next = epoch + 1;
    flow.inputs.advance_to(next);
    flow.reports.advance_to(next);
    flow.inputs.flush();
    flow.reports.flush();
}

/// Worker 0: whether an epoch may be handed to the committer. An epoch some worker did not
/// contribute to is never committed: at shutdown it is abandoned (`Ok(false)`: stop), else
/// the cluster is broken (an error). Epochs an earlier run committed need no check.
fn is_complete(worker: &mut Worker, shared: &WorkerShared, batch: &EpochBatch) -> Result<bool> {
    let peers = worker.peers();
    if batch.is_complete(peers) || shared.recovered.contains(&batch.epoch) {
        return Ok(true);
    }
    // A peer process stopped alone (or saw other chunks), or this one is stopping: wait
    // briefly for our own stop signal (a cluster is stopped by signalling every process).
    let grace = Instant::now();
    while !shared.control.should_stop() && grace.elapsed() < INCOMPLETE_EPOCH_GRACE {
        worker.step_or_park(Some(Duration::from_millis(10)));
    }
    if !shared.control.should_stop() {
        return Err(ClusterError::IncompleteEpoch {
            epoch: batch.epoch,
            chunk: batch.chunk_key.clone(),
            reported: batch.reports.len(),
            workers: peers,
        }
        .into());
    }
    tracing::warn!(
        epoch = batch.epoch,
        "epoch incomplete at shutdown; abandoned, it will be processed on restart"
    );
    Ok(false)
}

/// Builds the dataflow on one worker: the pattern computation, plus the exchanges that bring
/// its outputs, the share reports and the fingerprints to worker 0.
fn build_dataflow(worker: &mut Worker, shared: &WorkerShared) -> Dataflow {
    let gathered = Rc::new(RefCell::new(Gathered::new(shared.threshold_sets.len())));
    let fingerprints: Rc<RefCell<Vec<(usize, Fingerprint)>>> = Rc::default();
    let (inputs, reports, mut fingerprint_in, probe, pair_trace) =
        worker.dataflow::<Epoch, _, _>(|scope| {
            let (inputs, outputs) =
                dataflow::Inputs::build(scope, shared.weights.clone(), &shared.threshold_sets);
            let (report_in, reports) = scope.new_collection::<ShareReport, isize>();
            let (fingerprint_in, worker_fingerprints) =
                scope.new_collection::<(usize, Fingerprint), isize>();
            let probe = ProbeHandle::new();
            let sink = fingerprints.clone();
            to_worker_0(worker_fingerprints, &probe, move |f, _, diff| {
                if diff > 0 {
                    sink.borrow_mut().push(*f);
                }
            });
            let sink = gathered.clone();
            to_worker_0(outputs.detections, &probe, move |holding, time, diff| {
                sink.borrow_mut().add_detection(time, holding, diff);
            });
            let sink = gathered.clone();
            to_worker_0(outputs.merchant_facts, &probe, move |fact, time, diff| {
                sink.borrow_mut().add_merchant_fact(time, fact, diff);
            });
            let sink = gathered.clone();
            to_worker_0(
                outputs.merchant_counts,
                &probe,
                move |(m, count), time, diff| {
                    sink.borrow_mut().add_count(time, m, count * diff as i64);
                },
            );
            let sink = gathered.clone();
            to_worker_0(reports, &probe, move |report, time, diff| {
                if diff > 0 {
                    sink.borrow_mut().add_report(time, report);
                }
            });
            (inputs, report_in, fingerprint_in, probe, outputs.pair_trace)
        });
    let pair_trace = shared.checkpoints.as_ref().map(|_| pair_trace);
    // The fingerprint enters once, at the first time; dropping the input closes it.
    let process = worker.index() / shared.fingerprint.workers;
    fingerprint_in.insert((process, shared.fingerprint));
    drop(fingerprint_in);
    Dataflow {
        inputs,
        reports,
        probe,
        gathered,
        fingerprints,
        pair_trace,
    }
}

/// Every worker learns what worker 0's process chose to restore from (`None`: a full
/// replay). A cluster's processes agree through a small dataflow of their own, which every
/// process builds whatever its options (so that the dataflows match).
fn agree_on_restore(worker: &mut Worker, shared: &WorkerShared) -> Option<RestorePoint> {
    let mine = shared
        .checkpoints
        .as_ref()
        .and_then(|c| c.restore.as_ref())
        .map(|r| r.point.clone());
    if shared.processes == 1 {
        return mine;
    }
    let heard: Rc<RefCell<Option<RestorePoint>>> = Rc::default();
    let sink = heard.clone();
    let probe = ProbeHandle::new();
    let mut input = worker.dataflow::<u64, _, _>(|scope| {
        let (input, choice) = scope.new_collection::<Option<RestorePoint>, isize>();
        choice
            .inner
            .broadcast()
            .as_collection()
            .inspect(move |(point, _, _)| *sink.borrow_mut() = point.clone())
            .probe_with(&probe);
        input
    });
    if worker.index() == 0 {
        input.insert(mine);
    }
    drop(input);
    while !probe.done() {
        worker.step_or_park(Some(IDLE_PARK));
    }
    let point = heard.borrow_mut().take();
    point
}

/// Exchanges `collection` to worker 0 and hands it each update there.
fn to_worker_0<'s, D: differential_dataflow::ExchangeData>(
    collection: VecCollection<'s, Epoch, D>,
    probe: &ProbeHandle<Epoch>,
    mut sink: impl FnMut(&D, Epoch, isize) + 'static,
) {
    collection
        .inner
        .exchange(|_| 0)
        .as_collection()
        .inspect_batch(move |_, updates| {
            for (data, time, diff) in updates {
                sink(data, *time, *diff);
            }
        })
        .probe_with(probe);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use super::*;
    use crate::objectstore::{self, S3Options};
    use crate::runtime::committer::unattended::{self, Handed};
    use crate::runtime::options::{Mode, ReplayRange, YOptions};
    use crate::sinks::state::StateConfig;
    use crate::sources::landing::{FeedOptions, FeedPlan};

    const CHUNKS: u64 = 8;
    /// How long the committer takes nothing.
    const HOLD: Duration = Duration::from_millis(1500);

    /// With a queue of one epoch and a committer that takes nothing for a while, worker 0 does
    /// not block on the hand-over: it keeps stepping, so the epochs already fed are computed
    /// (and taken out) meanwhile, not once the committer takes again; and every epoch still
    /// reaches the committer, in order, then the end of the stream.
    #[test]
    fn worker_0_keeps_stepping_while_the_committer_is_slow() {
        let tmp = tempfile::tempdir().unwrap();
        let landing = tmp.path().join("landing");
        std::fs::create_dir_all(&landing).unwrap();
        for index in 0..CHUNKS {
            let body = format!(
                "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\n\
                 {index},'C1','4','F','28007','M1','28007','es_food',4.55,0\n"
            );
            std::fs::write(landing.join(chunk_key(index)), body).unwrap();
        }
        std::fs::write(landing.join("_COMPLETE"), CHUNKS.to_string()).unwrap();
        let store = objectstore::open(landing.to_str().unwrap(), &S3Options::default()).unwrap();
        let plan = FeedPlan::Fixed((0..CHUNKS).collect());
        let mut options = YOptions::new(
            landing.to_str().unwrap(),
            "importance.csv",
            "output",
            StateConfig::Embedded {
                path: tmp.path().join("state.db"),
            },
        );
        options.mode = Mode::replay(ReplayRange::default());
        options.timely.workers = 2;
        let stop = Arc::new(AtomicBool::new(false));
        let feed_options = FeedOptions {
            poll: Duration::from_millis(10),
            gap_warn: Duration::from_secs(60),
            settle: Duration::ZERO,
            first: 0,
        };
        let feed = ChunkFeed::start(store, plan.clone(), 2, feed_options, stop.clone());
        // The first chunks fetched before the workers start: worker 0 feeds several epochs
        // before its first step.
        std::thread::sleep(Duration::from_millis(300));
        let (queue, handed) = unattended::queue(1);
        let shared = Arc::new(WorkerShared {
            weights: Arc::new(WeightTable::new(&[])),
            threshold_sets: vec![Thresholds::default()],
            fingerprint: Fingerprint::of(&options, &plan, b""),
            feed: LazyFeed::new(move |_| feed),
            control: Arc::new(RunControl::new(stop)),
            recovered: BTreeSet::new(),
            commits: Mutex::new(Some(queue)),
            checkpoints: None,
            processes: 1,
        });
        let control = shared.control.clone();
        let guards = timely::execute(timely::Config::process(2), move |worker| {
            let result = run_worker(worker, &shared);
            shared.control.worker_returned(result);
        })
        .unwrap();
        std::thread::sleep(HOLD);
        let mut got = Vec::new();
        while let Some(job) = handed.next(Duration::from_secs(30)) {
            let last = matches!(job, Handed::Finish | Handed::Close);
            got.push(job);
            if last {
                break;
            }
        }
        for result in guards.join() {
            result.unwrap();
        }
        assert!(control.take_failure().is_none());
        let epochs: Vec<u64> = got
            .iter()
            .filter_map(|job| match job {
                Handed::Commit { epoch, .. } => Some(*epoch),
                _ => None,
            })
            .collect();
        assert_eq!(epochs, (0..CHUNKS).collect::<Vec<_>>(), "{got:?}");
        assert_eq!(got.last(), Some(&Handed::Finish), "{got:?}");
        for job in &got {
            if let Handed::Commit { computed_in, .. } = job {
                let computed_in = computed_in.expect("measured");
                assert!(
                    computed_in < HOLD / 2,
                    "an epoch waited for the committer to be taken out: {got:?}"
                );
            }
        }
    }
}
