//! Mechanism Y: the detector (SPEC §3–§7).
//!
//! Each process runs a [`ChunkFeed`] that fetches chunks in order; each timely worker takes
//! every chunk, parses its share of the records ([`parse_chunk`]: a contiguous run of lines,
//! so the parsing is spread over every worker of every process), and feeds them into the
//! dataflow at time = chunk index. The dataflow's outputs are exchanged to worker 0, the
//! single writer, which commits each epoch once every worker's share report has arrived.
//!
//! Recovery: the writer reads the committed epochs from the state store; the workers replay
//! those chunks at full speed to rebuild the dataflow's state and the writer skips their
//! commits, then the run continues with the first uncommitted chunk.
//!
//! Start-up checks, before the state store is opened: `-w`, `-n`, `-p` within their bounds
//! ([`MAX_WORKERS`], [`MAX_PROCESSES`], [`MAX_TOTAL_WORKERS`]), the hostfile read; and on the
//! writer's process the output store probed for writing (`ObjectStore::check_writable`) and
//! cleared of the temporary files of killed writers (`remove_stale_temporaries`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use differential_dataflow::input::Input;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Exchange;
use timely::worker::Worker as TimelyWorker;
use timely::CommunicationConfig;

use crate::dataflow::aggregates::WeightTable;
use crate::dataflow::{self, Epoch, ShareReport};
use crate::error::StateError;
use crate::objectstore;
use crate::sinks::state::{self, RunIdentity, RunMode, StateConfig};
use crate::sinks::writer::{Clock, EpochChanges, EpochWriter};
use crate::sources::importance::parse_importance;
use crate::sources::landing::{
    chunk_digest, chunk_key, list_chunks, resolve_replay, ChunkFeed, FeedItem, FeedOptions,
    FeedPlan,
};
use crate::sources::parse::parse_chunk;
use crate::time::now_ms;

type Worker = TimelyWorker;

use crate::model::Thresholds;
use crate::objectstore::S3Options;

/// Timely execution options (`-w`, `-n`, `-p`, `-h`).
#[derive(Clone, Debug)]
pub struct TimelyOptions {
    pub workers: usize,
    pub processes: usize,
    pub process: usize,
    pub hostfile: Option<PathBuf>,
    /// Cluster mode: give up (exit 1) when not every process has connected within this time.
    pub connect_timeout: Duration,
}

/// Default of [`TimelyOptions::connect_timeout`] (`--connect-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The most worker threads per process (`-w`).
///
/// Each worker steps every operator at every epoch, every data exchange has a channel
/// between every pair of workers, and timely's progress protocol is all-to-all, so a
/// process's memory grows with `-w × (-w × -n)` and an epoch's fixed cost with the square of
/// the workers. Measured on the release build (2 cores, a replay of 30 chunks of 100 rows):
/// `-w 1` 0.2 s and 13 MB, `-w 16` 0.7 s, `-w 64` 5 s and 60 MB, `-w 128` 26 s and 130 MB,
/// `-w 256` 114 s and 350 MB; `-w 1000` passed 3.6 GB in 2 minutes without committing an
/// epoch, and under a 4 GB address-space limit aborted ("memory allocation of 80000 bytes
/// failed"). Threads beyond the cores never help; 64 covers the cores of all but the largest
/// machines, and more are run as several processes (`-n`).
pub const MAX_WORKERS: usize = 64;

/// The most processes in a cluster (`-n`): every pair of processes holds a TCP connection,
/// and each process runs a send and a receive thread per peer. (A huge `-n` used to allocate
/// one default address per process before anything else, and ports `2101 + i` run out past
/// 63,434 processes.)
pub const MAX_PROCESSES: usize = 64;

/// The most workers in a cluster (`-w × -n`): the progress messages of an epoch grow with the
/// square of the cluster's workers, and each process's channels with `-w` times this.
pub const MAX_TOTAL_WORKERS: usize = 256;

impl TimelyOptions {
    /// Checks `-w`, `-n` and `-p` against their ranges ([`MAX_WORKERS`], [`MAX_PROCESSES`],
    /// [`MAX_TOTAL_WORKERS`]); the error is one line naming the option.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.workers >= 1, "-w must be at least 1");
        anyhow::ensure!(
            self.workers <= MAX_WORKERS,
            "-w {} is above the maximum of {MAX_WORKERS} worker threads per process",
            self.workers
        );
        anyhow::ensure!(self.processes >= 1, "-n must be at least 1");
        anyhow::ensure!(
            self.processes <= MAX_PROCESSES,
            "-n {} is above the maximum of {MAX_PROCESSES} processes",
            self.processes
        );
        anyhow::ensure!(
            self.workers * self.processes <= MAX_TOTAL_WORKERS,
            "-w {} with -n {} makes {} workers, above the maximum of {MAX_TOTAL_WORKERS} workers \
             in a cluster",
            self.workers,
            self.processes,
            self.workers * self.processes
        );
        anyhow::ensure!(
            self.process < self.processes,
            "-p {} is out of range for -n {}",
            self.process,
            self.processes
        );
        Ok(())
    }
}

impl Default for TimelyOptions {
    fn default() -> Self {
        TimelyOptions {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// A replay/backtest range of chunk indices, inclusive; `None` = open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayRange {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

/// Everything `mechanism-y` needs.
#[derive(Clone, Debug)]
pub struct YOptions {
    /// Landing location: a directory or `s3://bucket/prefix`.
    pub landing: String,
    /// The importance file: a path or `s3://bucket/key`.
    pub importance: String,
    /// Output location: a directory or `s3://bucket/prefix`.
    pub output: String,
    /// The state store: `sqlite://PATH` or a `postgres://` URL with its options.
    pub state: StateConfig,
    /// `Some` = replay/backtest mode.
    pub replay: Option<ReplayRange>,
    /// Live mode only (`--follow`): never end the stream. `_COMPLETE` is still checked against
    /// the chunks (an inconsistent landing fails the run) but does not end it; Y keeps following
    /// the landing store until it is stopped.
    pub follow_forever: bool,
    pub thresholds: Thresholds,
    pub timely: TimelyOptions,
    pub s3: S3Options,
    /// Live mode: how often to look for the next chunk while waiting.
    pub poll_interval: Duration,
    /// While waiting for a chunk that must exist (`_COMPLETE` or a later chunk says so), or
    /// for a landing directory that does not exist, warn this often.
    pub gap_warn: Duration,
    /// Local landing: a chunk whose last byte is not a line terminator is still being written;
    /// it is taken once its size has stayed the same this long.
    pub settle: Duration,
}

/// Default of [`YOptions::gap_warn`] (`--gap-warn-secs`).
pub const DEFAULT_GAP_WARN: Duration = Duration::from_secs(10);

/// Default of [`YOptions::settle`] (`--settle-ms`).
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(1000);

impl YOptions {
    /// Options with the defaults of the command line, for the given locations.
    pub fn new(landing: &str, importance: &str, output: &str, state: StateConfig) -> YOptions {
        YOptions {
            landing: landing.into(),
            importance: importance.into(),
            output: output.into(),
            state,
            replay: None,
            follow_forever: false,
            thresholds: Thresholds::default(),
            timely: TimelyOptions::default(),
            s3: S3Options::default(),
            poll_interval: default_poll_interval(landing),
            gap_warn: DEFAULT_GAP_WARN,
            settle: DEFAULT_SETTLE,
        }
    }
}

/// How often live mode looks for the next chunk: a failed local `open` is cheap, an S3 GET
/// is a billed request.
pub fn default_poll_interval(landing: &str) -> Duration {
    if landing.starts_with("s3://") {
        Duration::from_millis(200)
    } else {
        Duration::from_millis(10)
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Epochs committed by this run (not counting recovered ones).
    pub epochs_committed: u64,
    /// Epochs replayed only to rebuild state (committed by an earlier run).
    pub epochs_recovered: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// Detections in the ledger at the end.
    pub detections_total: u64,
    /// Detection files written or rewritten by this run.
    pub files_written: u64,
    /// Whether the stream ended (last short file written).
    pub finished: bool,
    pub wall: Duration,
    /// Per committed epoch: from the writer taking up the chunk to the epoch's commit.
    pub epoch_latencies: Vec<Duration>,
    /// Per committed epoch: from the chunk object's last-modified time (when it became
    /// visible) to the epoch's commit, in milliseconds (live-mode latency).
    pub visible_to_commit_ms: Vec<i64>,
}

/// Runs mechanism Y to completion (or until stopped by SIGINT/SIGTERM, or forever with
/// `follow_forever`).
pub fn run(options: &YOptions) -> anyhow::Result<RunSummary> {
    let stop = Arc::new(AtomicBool::new(false));
    run_with_stop(options, stop)
}

/// As [`run`], stopping gracefully (after the epoch in flight) once `stop` is set.
pub fn run_with_stop(options: &YOptions, stop: Arc<AtomicBool>) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    let y_start_ms = now_ms();
    let t = &options.timely;
    t.validate()?;
    // Before any store is opened: a bad hostfile fails without side effects.
    let config = timely_config(t)?;

    let landing = objectstore::open(&options.landing, &options.s3)
        .with_context(|| format!("opening the landing store {}", options.landing))?;
    landing
        .check()
        .with_context(|| format!("checking the landing store {}", options.landing))?;
    let importance_object = objectstore::read_object(&options.importance, &options.s3)
        .with_context(|| format!("reading the importance file {}", options.importance))?;
    let importance = parse_importance("CustomerImportance.csv", &importance_object.body)
        .map_err(|e| anyhow::anyhow!("importance file {}: {e}", options.importance))?;
    tracing::info!(
        weights = importance.weights.len(),
        rejected = importance.rejects.len(),
        "importance weights loaded"
    );

    // Which chunks, and which clock.
    let (plan, clock, run_identity) = match options.replay {
        Some(range) => {
            // One listing: `_COMPLETE` checked, the range refused when a chunk is missing.
            let replay = resolve_replay(landing.as_ref(), range.from, range.to)?;
            let first_chunk_ms = replay.first.last_modified_ms;
            // The range as resolved from the listing: part of the run's identity, so that
            // chunks arriving later make a rerun another run.
            let resolved = (replay.from, replay.to);
            (
                FeedPlan::Fixed(replay.indices),
                Clock::Replay { first_chunk_ms },
                RunIdentity {
                    mode: RunMode::Replay,
                    landing: options.landing.clone(),
                    from: Some(resolved.0),
                    to: Some(resolved.1),
                    thresholds: options.thresholds.describe(),
                    importance: options.importance.clone(),
                    importance_digest: chunk_digest(&importance_object.body),
                },
            )
        }
        None => (
            FeedPlan::Live {
                forever: options.follow_forever,
            },
            Clock::Live { y_start_ms },
            RunIdentity {
                mode: RunMode::Live,
                landing: options.landing.clone(),
                from: None,
                to: None,
                thresholds: options.thresholds.describe(),
                importance: options.importance.clone(),
                importance_digest: chunk_digest(&importance_object.body),
            },
        ),
    };

    // Only the process hosting worker 0 talks to the state store and writes files: the
    // other processes of a cluster never open the state store or the output store.
    let writer = if t.process == 0 {
        let output = objectstore::open(&options.output, &options.s3)
            .with_context(|| format!("opening the output store {}", options.output))?;
        output
            .check()
            .with_context(|| format!("checking the output store {}", options.output))?;
        output
            .check_writable()
            .with_context(|| format!("the output {} is not writable", options.output))?;
        output.remove_stale_temporaries().with_context(|| {
            format!(
                "removing stale temporary files from the output {}",
                options.output
            )
        })?;
        let store = state::open(&options.state)
            .with_context(|| format!("opening the state store {}", options.state))?;
        let writer = EpochWriter::open(store, output, &run_identity, clock)?;
        if writer.is_finished() {
            check_ended_stream(&writer, landing.as_ref(), &plan)?;
            // A cluster's other processes wait for this one: let the dataflow replay the
            // committed chunks to the end (the writer commits nothing more).
            if t.processes == 1 {
                return Ok(RunSummary {
                    finished: true,
                    detections_total: writer.detections_total(),
                    wall: started.elapsed(),
                    ..RunSummary::default()
                });
            }
        }
        writer.write_rejects("CustomerImportance.csv", &importance.rejects)?;
        Some(writer)
    } else {
        None
    };

    let fingerprint = Fingerprint::of(options, &plan, &importance_object.body);
    let feed = ChunkFeed::start(
        landing.clone(),
        plan,
        t.workers,
        FeedOptions {
            poll: options.poll_interval,
            gap_warn: options.gap_warn,
            settle: options.settle,
        },
        stop.clone(),
    );
    let shared = Arc::new(WorkerShared {
        writer: Mutex::new(writer),
        weights: Arc::new(WeightTable::new(&importance.weights)),
        thresholds: options.thresholds,
        fingerprint,
        feed,
        stop: stop.clone(),
        abort: AtomicBool::new(false),
        outcomes: Mutex::new(Vec::new()),
    });

    let cluster = t.processes > 1;
    let connected = if cluster {
        cluster::activate();
        Some(cluster::connect_watchdog(t, stop.clone()))
    } else {
        None
    };
    let worker_shared = shared.clone();
    let guards = timely::execute(config, move |worker| {
        let result = run_worker(worker, &worker_shared);
        if let Err(e) = &result {
            if cluster {
                // The peers cannot finish without this process: take the cluster down now
                // (they see the connection drop) rather than leave them waiting.
                cluster::fail(&format!("{e}; {}", cluster::RESTART_HINT));
            }
            worker_shared.abort.store(true, Ordering::SeqCst);
        }
        worker_shared.outcomes.lock().unwrap().push(result);
    })
    .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;
    if let Some(connected) = connected {
        let _ = connected.send(());
    }

    let joined = if cluster {
        cluster::join(guards, &shared, t.workers)
    } else {
        guards.join()
    };
    let mut summary = None;
    let mut first_error = None;
    for panic in joined.into_iter().filter_map(Result::err) {
        first_error.get_or_insert_with(|| format!("worker failed: {panic}"));
    }
    for outcome in std::mem::take(&mut *shared.outcomes.lock().unwrap()) {
        match outcome {
            Ok(Some(s)) => summary = Some(s),
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(e) = first_error {
        anyhow::bail!(e);
    }
    let mut summary = summary.unwrap_or_default();
    summary.wall = started.elapsed();
    Ok(summary)
}

/// An ended stream stays ended (SPEC §6): a store whose stream ended commits nothing more.
/// `Ok` (with a message saying so) when the landing (live: its canonical chunks; replay:
/// the resolved range) holds no chunk the store did not commit; the refusal otherwise.
fn check_ended_stream(
    writer: &EpochWriter,
    landing: &dyn objectstore::ObjectStore,
    plan: &FeedPlan,
) -> anyhow::Result<()> {
    let committed: std::collections::BTreeSet<u64> = writer.committed_epochs().collect();
    let present: Vec<u64> = match plan {
        FeedPlan::Fixed(indices) => indices.clone(),
        FeedPlan::Live { .. } => list_chunks(landing)
            .with_context(|| format!("listing the landing store {}", landing.describe()))?
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
    };
    let more: Vec<u64> = present
        .into_iter()
        .filter(|k| !committed.contains(k))
        .collect();
    let last_epoch = committed.last().copied();
    if !more.is_empty() {
        let mut names: Vec<String> = more.iter().take(3).map(|k| chunk_key(*k)).collect();
        if more.len() > 3 {
            names.push(format!("… {}", chunk_key(more[more.len() - 1])));
        }
        let chunks = format!("{}: {} chunks", names.join(", "), more.len());
        return Err(StateError::StreamEnded { last_epoch, chunks }.into());
    }
    tracing::warn!(
        "the stream of this state store already ended{}: nothing to do (a new run needs a new \
         state store)",
        last_epoch.map_or_else(String::new, |e| format!(" at epoch {e}"))
    );
    Ok(())
}

/// State shared by the worker threads of this process.
struct WorkerShared {
    /// Taken by worker 0.
    writer: Mutex<Option<EpochWriter>>,
    /// The importance table, broadcast: every worker joins its share with it on the way in.
    weights: Arc<WeightTable>,
    thresholds: Thresholds,
    /// What every process of a cluster must agree on; checked by the writer.
    fingerprint: Fingerprint,
    feed: Arc<ChunkFeed>,
    stop: Arc<AtomicBool>,
    /// Set when any local worker fails, so the others stop instead of waiting forever.
    abort: AtomicBool,
    /// Each local worker's result, pushed when its loop ends (before timely's final steps).
    outcomes: Mutex<Vec<Result<Option<RunSummary>, String>>>,
}

/// Outputs gathered on the writer worker, by epoch.
#[derive(Default)]
struct Gathered {
    epochs: BTreeMap<Epoch, EpochChanges>,
}

/// How long an idle worker parks before polling the feed again.
const IDLE_PARK: Duration = Duration::from_millis(1);

/// How long the writer waits for its own stop signal when a peer stopped before an epoch.
const INCOMPLETE_EPOCH_GRACE: Duration = Duration::from_secs(3);

fn run_worker(worker: &mut Worker, shared: &WorkerShared) -> Result<Option<RunSummary>, String> {
    let index = worker.index();
    let peers = worker.peers();
    let mut writer = if index == 0 {
        shared.writer.lock().unwrap().take()
    } else {
        None
    };
    let gathered: Rc<RefCell<Gathered>> = Rc::default();
    let fingerprints: Rc<RefCell<Vec<(usize, Fingerprint)>>> = Rc::default();
    let thresholds = shared.thresholds;

    let (mut inputs, mut report_in, fingerprint_in, probe) =
        worker.dataflow::<Epoch, _, _>(|scope| {
            let (inputs, outputs) =
                dataflow::Inputs::build(scope, shared.weights.clone(), &thresholds);
            let (report_in, reports) = scope.new_collection::<ShareReport, isize>();
            let (fingerprint_in, worker_fingerprints) =
                scope.new_collection::<(usize, Fingerprint), isize>();
            let probe = ProbeHandle::new();

            // Every worker's fingerprint goes to the writer, which checks that the processes
            // of a cluster run with the same options before it commits anything.
            let sink = fingerprints.clone();
            to_writer(worker_fingerprints, &probe, move |f, _, diff| {
                if diff > 0 {
                    sink.borrow_mut().push(*f);
                }
            });

            // Everything the writer needs is exchanged to worker 0 and gathered by epoch.
            let sink = gathered.clone();
            to_writer(outputs.detections, &probe, move |key, time, diff| {
                let mut g = sink.borrow_mut();
                let epoch = g.epochs.entry(time).or_default();
                *epoch.detections.entry(key.clone()).or_default() += diff;
            });
            let sink = gathered.clone();
            to_writer(
                outputs.merchant_counts,
                &probe,
                move |(merchant, count), time, diff| {
                    let mut g = sink.borrow_mut();
                    let epoch = g.epochs.entry(time).or_default();
                    *epoch.counter_deltas.entry(merchant.clone()).or_default() +=
                        count * diff as i64;
                },
            );
            let sink = gathered.clone();
            to_writer(reports, &probe, move |report, time, diff| {
                if diff > 0 {
                    let mut g = sink.borrow_mut();
                    g.epochs
                        .entry(time)
                        .or_default()
                        .reports
                        .push(report.clone());
                }
            });
            (inputs, report_in, fingerprint_in, probe)
        });

    // The fingerprint enters once, at the first time; dropping the input closes it.
    let mut fingerprint_in = fingerprint_in;
    fingerprint_in.insert((index / shared.fingerprint.workers, shared.fingerprint));
    drop(fingerprint_in);

    let mut summary = RunSummary::default();
    let mut ended = false;
    let mut position = 0u64;
    let mut fingerprints_checked = false;
    loop {
        // Wait for the next chunk without blocking the other workers.
        let item = loop {
            if shared.abort.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed) {
                break None;
            }
            match shared.feed.poll(position) {
                Ok(Some(item)) => break Some(item),
                Ok(None) => {
                    worker.step_or_park(Some(IDLE_PARK));
                }
                Err(e) => return Err(format!("reading the landing store: {e}")),
            }
        };
        let chunk = match item {
            Some(FeedItem::Chunk(chunk)) => chunk,
            Some(FeedItem::End) => {
                ended = true;
                break;
            }
            None => break,
        };
        position += 1;
        let taken_at = Instant::now();
        let epoch = chunk.index;
        inputs.advance_to(epoch);
        report_in.advance_to(epoch);

        let parsed = parse_chunk(&chunk.key, &chunk.body, peers, index);
        if let (Some(error), 0) = (&parsed.header_error, index) {
            tracing::error!(chunk = %chunk.key, "{error}; every record of the chunk is rejected");
        }
        let report = ShareReport {
            worker: index,
            accepted: parsed.txns.len() as u64,
            rejected: parsed.rejects.len() as u64,
            rejects: parsed.rejects,
        };
        inputs.insert_share(parsed.txns);
        report_in.insert(report);

        let next = epoch + 1;
        inputs.advance_to(next);
        report_in.advance_to(next);
        inputs.flush();
        report_in.flush();
        // Park between steps instead of spinning: peers' messages wake the worker.
        worker.step_or_park_while(Some(IDLE_PARK), || probe.less_than(&next));

        let Some(writer) = writer.as_mut() else {
            continue;
        };
        let changes = {
            let mut g = gathered.borrow_mut();
            let rest = g.epochs.split_off(&next);
            let done = std::mem::replace(&mut g.epochs, rest);
            let mut changes = EpochChanges::default();
            for (_, c) in done {
                // Only `epoch` can be here; merge defensively.
                changes.detections.extend(c.detections);
                changes.counter_deltas.extend(c.counter_deltas);
                changes.reports.extend(c.reports);
            }
            changes
        };
        if !fingerprints_checked {
            check_fingerprints(&fingerprints.borrow(), &shared.fingerprint)?;
            fingerprints_checked = true;
        }
        if writer.replayed(&chunk).map_err(|e| e.to_string())? {
            summary.epochs_recovered += 1;
            continue;
        }
        if changes.reports.len() != peers {
            // A worker stopped before contributing its share: never commit half an epoch.
            // When this process was not asked to stop, a peer process stopped alone (or saw
            // other chunks): wait briefly for our own stop signal, else fail (a cluster is
            // stopped by signalling every process).
            let grace = Instant::now();
            while !shared.stop.load(Ordering::Relaxed)
                && !shared.abort.load(Ordering::Relaxed)
                && grace.elapsed() < INCOMPLETE_EPOCH_GRACE
            {
                worker.step_or_park(Some(Duration::from_millis(10)));
            }
            if !shared.stop.load(Ordering::Relaxed) && !shared.abort.load(Ordering::Relaxed) {
                return Err(format!(
                    "epoch {epoch} ({}) is incomplete: {} of {peers} workers contributed their \
                     share; a process of the cluster stopped or sees a different set of chunks \
                     (stop a cluster by signalling every process; replay a fixed range with --to)",
                    chunk.key,
                    changes.reports.len()
                ));
            }
            tracing::warn!(
                epoch,
                "epoch incomplete at shutdown; abandoned, it will be processed on restart"
            );
            break;
        }
        let stats = writer
            .commit(&chunk, changes)
            .map_err(|e| format!("committing epoch {epoch} ({}): {e:#}", chunk.key))?;
        summary.epochs_committed += 1;
        summary.rows_accepted += stats.accepted;
        summary.rows_rejected += stats.rejected;
        summary.epoch_latencies.push(taken_at.elapsed());
        summary
            .visible_to_commit_ms
            .push(now_ms() - chunk.last_modified_ms);
        tracing::info!(
            epoch,
            chunk = %chunk.key,
            accepted = stats.accepted,
            rejected = stats.rejected,
            new_detections = stats.new_detections,
            total_detections = writer.detections_total(),
            "epoch committed"
        );
    }
    drop((inputs, report_in));

    let Some(mut writer) = writer else {
        return Ok(None);
    };
    let stopped_early = !ended;
    if ended && !shared.abort.load(Ordering::Relaxed) {
        writer
            .finish()
            .map_err(|e| format!("ending the stream: {e:#}"))?;
    }
    if stopped_early {
        tracing::info!(
            "stopped before the end of the stream; a restart resumes from the last committed epoch"
        );
    }
    summary.detections_total = writer.detections_total();
    summary.files_written = writer.files_written;
    summary.finished = writer.is_finished();
    Ok(Some(summary))
}

/// Exchanges `collection` to worker 0, the single writer, and hands it each update there.
fn to_writer<'s, D: differential_dataflow::ExchangeData>(
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

/// What every process of a cluster must agree on, as hashes: a process started with other
/// thresholds, another importance file or another replay range would silently corrupt the
/// results (each key's operators run on one worker, with that worker's options).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
struct Fingerprint {
    /// `-w`.
    workers: usize,
    /// `-n`.
    processes: usize,
    /// Thresholds, mode, replay range, `--follow`.
    settings: u64,
    /// The importance file's bytes.
    importance: u64,
    /// The chunks a replay processes (listed by each process at its start).
    chunks: u64,
}

impl Fingerprint {
    fn of(options: &YOptions, plan: &FeedPlan, importance: &[u8]) -> Fingerprint {
        let settings = format!(
            "{:?}|{:?}|{}",
            options.thresholds, options.replay, options.follow_forever
        );
        let chunks = match plan {
            FeedPlan::Live { forever } => format!("live {forever}"),
            FeedPlan::Fixed(indices) => format!("{indices:?}"),
        };
        Fingerprint {
            workers: options.timely.workers,
            processes: options.timely.processes,
            settings: fnv1a(settings.as_bytes()),
            importance: fnv1a(importance),
            chunks: fnv1a(chunks.as_bytes()),
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The writer's check that every process runs with the writer's own options.
fn check_fingerprints(got: &[(usize, Fingerprint)], own: &Fingerprint) -> Result<(), String> {
    let mut differing: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (process, theirs) in got.iter().filter(|(_, f)| f != own) {
        let what = differing.entry(*process).or_default();
        for (differs, name) in [
            (theirs.workers != own.workers, "-w"),
            (theirs.processes != own.processes, "-n"),
            (
                theirs.settings != own.settings,
                "thresholds/mode/replay range",
            ),
            (
                theirs.importance != own.importance,
                "importance file contents",
            ),
            (theirs.chunks != own.chunks, "chunks listed for the replay"),
        ] {
            if differs && !what.contains(&name) {
                what.push(name);
            }
        }
    }
    if differing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = differing
        .iter()
        .map(|(p, what)| format!("process {p} differs in {}", what.join(", ")))
        .collect();
    Err(format!(
        "the processes of the cluster run with different options ({}); start every process \
         with the same options and data (a replay while mechanism-x is still writing lists \
         different chunks: give --to)",
        list.join("; ")
    ))
}

/// Cluster mode (`-n` > 1): any failure of one process takes the whole cluster down, fast and
/// with a one-line reason, instead of leaving the others waiting forever (timely has no
/// recovery; SPEC §6 recovery is a restart of every process from the state store).
///
/// What timely 0.32 does when a peer dies: the TCP receive thread of the connection reads EOF
/// or an error and panics ("timely communication error: reading data: socket closed"); the
/// panic poisons the queues it shares with the local workers, so their next step panics too
/// ("MergeQueue poisoned."), and joining the worker guards then panics on the main thread
/// ("Send thread panic"): exit status 101 after several panic messages and backtraces. A
/// worker that *returns* an error (the writer's state store is gone) is worse: its inputs
/// close, timely keeps it stepping until the dataflow completes, and the peers go on without
/// a writer until the end of the stream (forever with `--follow`), then exit 0. So in cluster
/// mode the first panic of a timely thread, or a worker's error, prints one line and exits the
/// process with status 1; the kernel closes its sockets, which fails the peers in turn.
mod cluster {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::sync::{Arc, Once};
    use std::time::{Duration, Instant};

    use super::{TimelyOptions, WorkerShared};

    /// Appended to every cluster failure.
    pub const RESTART_HINT: &str =
        "restart every process of the cluster; it resumes from the state store";

    /// After this process was stopped by a signal, how long it waits for the other processes
    /// to finish the dataflow (they stop too when signalled) before leaving them.
    const STOP_GRACE: Duration = Duration::from_secs(5);

    /// Set while a cluster run is active in this process: the panic hook acts only then.
    static ACTIVE: AtomicBool = AtomicBool::new(false);
    /// Set by the first failure: later ones stay silent while the process exits.
    static EXITING: AtomicBool = AtomicBool::new(false);
    static HOOK: Once = Once::new();

    /// Prints `error: <message>` (one line) and exits with status 1; never returns.
    pub fn fail(message: &str) -> ! {
        if EXITING.swap(true, Ordering::SeqCst) {
            // Another thread is already exiting the process.
            loop {
                std::thread::park();
            }
        }
        eprintln!("error: {}", message.replace('\n', " "));
        std::process::exit(1)
    }

    /// Installs (once) the panic hook that turns a panic of a timely thread into [`fail`].
    pub fn activate() {
        ACTIVE.store(true, Ordering::SeqCst);
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let current = std::thread::current();
                let name = current.name().unwrap_or("");
                let ours = name.starts_with("timely:") || name == "chunk-feed";
                if !ACTIVE.load(Ordering::SeqCst) || !ours {
                    return previous(info);
                }
                if EXITING.load(Ordering::SeqCst) {
                    fail("");
                }
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                let peer = name
                    .strip_prefix("timely:send-")
                    .or_else(|| name.strip_prefix("timely:recv-"));
                let line = if message.starts_with("timely communication error")
                    || message.contains("MergeQueue poisoned")
                {
                    match peer {
                        Some(p) => format!(
                            "cluster peer lost: the connection to process {p} failed ({message}); \
                             {RESTART_HINT}"
                        ),
                        None => format!("cluster peer lost ({message}); {RESTART_HINT}"),
                    }
                } else if let Some(p) = peer {
                    // E.g. processes started with different -w: timely's framing breaks.
                    format!(
                        "cluster communication with process {p} broke ({message}); every \
                         process must run with the same -n, -w and hostfile; {RESTART_HINT}"
                    )
                } else {
                    // A bug rather than a lost peer: keep the location and backtrace.
                    previous(info);
                    format!("cluster thread {name} panicked: {message}; {RESTART_HINT}")
                };
                fail(&line)
            }));
        });
    }

    /// Bounds timely's connection set-up, which retries forever: exits with a clear error if
    /// the cluster is not connected within `--connect-timeout` (or exit 0 when stopped by a
    /// signal meanwhile). Send on the returned channel once connected.
    pub fn connect_watchdog(t: &TimelyOptions, stop: Arc<AtomicBool>) -> mpsc::Sender<()> {
        let (tx, rx) = mpsc::channel::<()>();
        let timeout = t.connect_timeout;
        let (process, processes) = (t.process, t.processes);
        let hostfile = t
            .hostfile
            .as_ref()
            .map_or("the default localhost:2101+i".to_string(), |p| {
                p.display().to_string()
            });
        std::thread::Builder::new()
            .name("cluster-connect".into())
            .spawn(move || {
                let started = Instant::now();
                loop {
                    match rx.recv_timeout(Duration::from_millis(100)) {
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                    }
                    if stop.load(Ordering::SeqCst) {
                        eprintln!(
                            "mechanism-y: stopped while waiting for the other processes of the cluster"
                        );
                        std::process::exit(0);
                    }
                    if started.elapsed() >= timeout {
                        fail(&format!(
                            "cluster start-up: process {process} of {processes} could not connect \
                             to every other process within {} s (hostfile {hostfile}); start every \
                             process with the same -n, -w and hostfile, or raise --connect-timeout",
                            timeout.as_secs()
                        ));
                    }
                }
            })
            .expect("spawn cluster-connect thread");
        tx
    }

    /// Joins the timely workers of a cluster process. Normally this returns when the dataflow
    /// completes on every process. A process stopped by a signal whose peers keep running (they
    /// were not signalled) leaves after [`STOP_GRACE`]; the peers then fail with "peer lost".
    pub fn join(
        guards: timely::communication::WorkerGuards<()>,
        shared: &WorkerShared,
        workers: usize,
    ) -> Vec<Result<(), String>> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("cluster-join".into())
            .spawn(move || {
                let _ = tx.send(guards.join());
            })
            .expect("spawn cluster-join thread");
        let mut stopped_since: Option<Instant> = None;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(results) => {
                    ACTIVE.store(false, Ordering::SeqCst);
                    return results;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return vec![Err("joining the worker threads failed".into())]
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let all_returned = shared.outcomes.lock().unwrap().len() == workers;
            if all_returned && shared.stop.load(Ordering::SeqCst) {
                let since = stopped_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= STOP_GRACE {
                    tracing::warn!(
                        "stopped, but other processes of the cluster are still running (stop a \
                         cluster by signalling every process); leaving them"
                    );
                    return Vec::new();
                }
            }
        }
    }
}

/// Builds timely's configuration from our own parsed options (timely's `-h` would clash with `--help`).
fn timely_config(t: &TimelyOptions) -> anyhow::Result<timely::Config> {
    let communication = if t.processes > 1 {
        let addresses = match &t.hostfile {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the hostfile {}", path.display()))?;
                let hosts: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .take(t.processes)
                    .collect();
                anyhow::ensure!(
                    hosts.len() == t.processes,
                    "hostfile {} lists {} addresses but -n is {}",
                    path.display(),
                    hosts.len(),
                    t.processes
                );
                hosts
            }
            None => (0..t.processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect(),
        };
        CommunicationConfig::Cluster {
            threads: t.workers,
            process: t.process,
            addresses,
            report: false,
            zerocopy: false,
        }
    } else if t.workers > 1 {
        CommunicationConfig::Process(t.workers)
    } else {
        CommunicationConfig::Thread
    };
    Ok(timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    })
}
