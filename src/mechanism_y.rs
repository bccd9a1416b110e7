//! Mechanism Y: the detector (SPEC §3–§7).
//!
//! Each process runs a [`ChunkFeed`] that fetches chunks in order; each timely worker takes
//! every chunk, parses its share of the records (record `i` goes to worker `i % peers`, so
//! the parsing is spread over every worker of every process), and feeds them into the
//! dataflow at time = chunk index. The dataflow's outputs are exchanged to worker 0, the
//! single writer, which commits each epoch once every worker's share report has arrived.
//!
//! Recovery: the writer reads the committed epochs from the state store; the workers replay
//! those chunks at full speed to rebuild the dataflow's state and the writer skips their
//! commits, then the run continues with the first uncommitted chunk.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use differential_dataflow::input::Input;
use differential_dataflow::AsCollection;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Exchange;
use timely::worker::Worker as TimelyWorker;
use timely::CommunicationConfig;

use crate::dataflow::{self, Epoch, ShareReport};
use crate::model::{Txn, Weight, WeightKey};
use crate::objectstore::{self, ObjectMeta};
use crate::sinks::state::{self, RunIdentity};
use crate::sinks::writer::{Clock, EpochChanges, EpochWriter};
use crate::sources::importance::parse_importance;
use crate::sources::landing::{list_chunks, ChunkFeed, FeedItem, FeedPlan};
use crate::sources::parse::parse_chunk;
use crate::time::now_ms;

type Worker = TimelyWorker;

use crate::model::Thresholds;
use crate::objectstore::S3Options;
use crate::sinks::state::postgres::PgOptions;

/// Timely execution options (`-w`, `-n`, `-p`, `-h`).
#[derive(Clone, Debug)]
pub struct TimelyOptions {
    pub workers: usize,
    pub processes: usize,
    pub process: usize,
    pub hostfile: Option<PathBuf>,
}

impl Default for TimelyOptions {
    fn default() -> Self {
        TimelyOptions {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
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
    /// `sqlite://PATH` or a `postgres://` URL.
    pub state: String,
    /// `Some` = replay/backtest mode.
    pub replay: Option<ReplayRange>,
    /// Live mode only: keep following after `_COMPLETE` is absent forever (never end the stream).
    pub follow_forever: bool,
    pub thresholds: Thresholds,
    pub timely: TimelyOptions,
    pub s3: S3Options,
    pub pg: PgOptions,
    /// Live mode: how often to look for the next chunk while waiting.
    pub poll_interval: Duration,
}

impl YOptions {
    /// Options with the defaults of the command line, for the given locations.
    pub fn new(landing: &str, importance: &str, output: &str, state: &str) -> YOptions {
        YOptions {
            landing: landing.into(),
            importance: importance.into(),
            output: output.into(),
            state: state.into(),
            replay: None,
            follow_forever: false,
            thresholds: Thresholds::default(),
            timely: TimelyOptions::default(),
            s3: S3Options::default(),
            pg: PgOptions::default(),
            poll_interval: default_poll_interval(landing),
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
    anyhow::ensure!(t.workers >= 1, "-w must be at least 1");
    anyhow::ensure!(t.processes >= 1, "-n must be at least 1");
    anyhow::ensure!(
        t.process < t.processes,
        "-p {} is out of range for -n {}",
        t.process,
        t.processes
    );

    let landing = objectstore::open(&options.landing, &options.s3)
        .with_context(|| format!("opening the landing store {}", options.landing))?;
    landing
        .check()
        .with_context(|| format!("checking the landing store {}", options.landing))?;
    let output = objectstore::open(&options.output, &options.s3)
        .with_context(|| format!("opening the output store {}", options.output))?;
    output
        .check()
        .with_context(|| format!("checking the output store {}", options.output))?;

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
            let chunks: Vec<(u64, ObjectMeta)> = list_chunks(landing.as_ref())?
                .into_iter()
                .filter(|(k, _)| {
                    range.from.is_none_or(|f| *k >= f) && range.to.is_none_or(|to| *k <= to)
                })
                .collect();
            anyhow::ensure!(
                !chunks.is_empty(),
                "no chunks in {} within the replay range [{}, {}]",
                landing.describe(),
                range.from.map_or("first".into(), |v| v.to_string()),
                range.to.map_or("last".into(), |v| v.to_string()),
            );
            let first_chunk_ms = chunks[0].1.last_modified_ms;
            (
                FeedPlan::Fixed(chunks.iter().map(|(k, _)| *k).collect()),
                Clock::Replay { first_chunk_ms },
                RunIdentity {
                    mode: "replay".into(),
                    landing: options.landing.clone(),
                    from: range.from,
                    to: range.to,
                },
            )
        }
        None => (
            FeedPlan::Live {
                forever: options.follow_forever,
            },
            Clock::Live { y_start_ms },
            RunIdentity {
                mode: "live".into(),
                landing: options.landing.clone(),
                from: None,
                to: None,
            },
        ),
    };

    // Only the process hosting worker 0 talks to the state store and writes files.
    let writer = if t.process == 0 {
        let store = state::open(&options.state, &options.pg).with_context(|| {
            format!(
                "opening the state store {}",
                state::redact_url(&options.state)
            )
        })?;
        let writer = EpochWriter::open(store, output.clone(), &run_identity, clock)?;
        writer.write_rejects("CustomerImportance.csv", &importance.rejects)?;
        Some(writer)
    } else {
        None
    };

    let feed = ChunkFeed::start(
        landing.clone(),
        plan,
        t.workers,
        options.poll_interval,
        stop.clone(),
    );
    let shared = Arc::new(WorkerShared {
        writer: Mutex::new(writer),
        weights: importance.weights,
        thresholds: options.thresholds,
        feed,
        stop: stop.clone(),
        abort: AtomicBool::new(false),
    });

    let config = timely_config(t)?;
    let worker_shared = shared.clone();
    let guards = timely::execute(config, move |worker| {
        let result = run_worker(worker, &worker_shared);
        if result.is_err() {
            worker_shared.abort.store(true, Ordering::SeqCst);
        }
        result
    })
    .map_err(|e| anyhow::anyhow!("starting timely workers: {e}"))?;

    let mut summary = None;
    let mut first_error = None;
    for result in guards.join() {
        match result {
            Ok(Ok(Some(s))) => summary = Some(s),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(panic) => {
                first_error.get_or_insert_with(|| format!("worker failed: {panic}"));
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

/// State shared by the worker threads of this process.
struct WorkerShared {
    /// Taken by worker 0.
    writer: Mutex<Option<EpochWriter>>,
    weights: Vec<(WeightKey, Weight)>,
    thresholds: Thresholds,
    feed: Arc<ChunkFeed>,
    stop: Arc<AtomicBool>,
    /// Set when any local worker fails, so the others stop instead of waiting forever.
    abort: AtomicBool,
}

/// Outputs gathered on the writer worker, by epoch.
#[derive(Default)]
struct Gathered {
    epochs: BTreeMap<Epoch, EpochChanges>,
}

/// How long an idle worker parks before polling the feed again.
const IDLE_PARK: Duration = Duration::from_millis(1);

fn run_worker(worker: &mut Worker, shared: &WorkerShared) -> Result<Option<RunSummary>, String> {
    let index = worker.index();
    let peers = worker.peers();
    let mut writer = if index == 0 {
        shared.writer.lock().unwrap().take()
    } else {
        None
    };
    let gathered: Rc<RefCell<Gathered>> = Rc::default();
    let thresholds = shared.thresholds;

    let (mut txn_in, mut weight_in, mut report_in, probe) =
        worker.dataflow::<Epoch, _, _>(|scope| {
            let (txn_in, txns) = scope.new_collection::<Txn, isize>();
            let (weight_in, weights) = scope.new_collection::<(WeightKey, Weight), isize>();
            let (report_in, reports) = scope.new_collection::<ShareReport, isize>();
            let outputs = dataflow::detect(txns, weights, &thresholds);
            let probe = ProbeHandle::new();

            // Everything the writer needs is exchanged to worker 0 and gathered by epoch.
            let sink = gathered.clone();
            outputs
                .detections
                .inner
                .exchange(|_| 0)
                .as_collection()
                .inspect_batch(move |_, updates| {
                    let mut g = sink.borrow_mut();
                    for (key, time, diff) in updates {
                        *g.epochs
                            .entry(*time)
                            .or_default()
                            .detections
                            .entry(key.clone())
                            .or_default() += diff;
                    }
                })
                .probe_with(&probe);
            let sink = gathered.clone();
            outputs
                .merchant_counts
                .inner
                .exchange(|_| 0)
                .as_collection()
                .inspect_batch(move |_, updates| {
                    let mut g = sink.borrow_mut();
                    for ((merchant, count), time, diff) in updates {
                        *g.epochs
                            .entry(*time)
                            .or_default()
                            .counter_deltas
                            .entry(merchant.clone())
                            .or_default() += count * *diff as i64;
                    }
                })
                .probe_with(&probe);
            let sink = gathered.clone();
            reports
                .inner
                .exchange(|_| 0)
                .as_collection()
                .inspect_batch(move |_, updates| {
                    let mut g = sink.borrow_mut();
                    for (report, time, diff) in updates {
                        if *diff > 0 {
                            g.epochs
                                .entry(*time)
                                .or_default()
                                .reports
                                .push(report.clone());
                        }
                    }
                })
                .probe_with(&probe);
            (txn_in, weight_in, report_in, probe)
        });

    // The importance weights enter once, at the first time, spread over the workers.
    for (i, (key, weight)) in shared.weights.iter().enumerate() {
        if i % peers == index {
            weight_in.insert((key.clone(), *weight));
        }
    }

    let mut summary = RunSummary::default();
    let mut ended = false;
    let mut position = 0u64;
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
        txn_in.advance_to(epoch);
        weight_in.advance_to(epoch);
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
        for txn in parsed.txns {
            txn_in.insert(txn);
        }
        report_in.insert(report);

        let next = epoch + 1;
        txn_in.advance_to(next);
        weight_in.advance_to(next);
        report_in.advance_to(next);
        txn_in.flush();
        weight_in.flush();
        report_in.flush();
        worker.step_while(|| probe.less_than(&next));

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
        if writer.is_committed(epoch) {
            summary.epochs_recovered += 1;
            continue;
        }
        if changes.reports.len() != peers {
            // A worker stopped before contributing its share: never commit half an epoch.
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
    drop((txn_in, weight_in, report_in));

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
