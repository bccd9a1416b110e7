//! Mechanism Y: the detector (SPEC §3–§7), as a story of its runtime ([`crate::runtime`]).
//!
//! 1. Start-up ([`startup`]): options checked, landing and importance file read, chunks and
//!    clock decided; on the process hosting worker 0, output and state store opened and the
//!    run identity checked (an ended stream stays ended).
//! 2. The [`ChunkFeed`] fetches chunks in order, for every worker of this process.
//! 3. The workers ([`worker`]) turn each chunk into one epoch of the dataflow; worker 0 hands
//!    every complete epoch to the [`Committer`], a thread of its own.
//! 4. Recovery is the same path: the committer skips the epochs an earlier run committed,
//!    so their replay only rebuilds the dataflow's state.
//! 5. Throughout, the run's [`Telemetry`] is kept up to date (and served by `--http`); a
//!    stall watchdog fails the run when no epoch commits for `--stall-timeout`.
//! 6. The run ends when the stream ends, when it is stopped (SIGINT/SIGTERM: after the epoch
//!    in flight; queued epochs are committed), or at the first failure, which is returned as
//!    a typed error: the library never ends the process. A failure is recorded in the state
//!    store (the next run shows it as `previous_error`) and, with `--http`, the endpoint
//!    shows it for `--linger-on-failure` before the error is returned.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dataflow::aggregates::WeightTable;
use crate::error::Context;
use crate::error::{ClusterError, Error, Result, StateError};
use crate::http::HttpServer;
use crate::objectstore;
use crate::progress::{Console, Plan, Progress, ProgressObserver};
use crate::redact;
use crate::report;
use crate::runtime::checkpointer::{notes_channel, Checkpointer, CheckpointerSetup};
use crate::runtime::committer::{CheckpointNotes, CommitQueue, Committer};
use crate::runtime::config::timely_config;
use crate::runtime::events::{Observers, RunObserver};
use crate::runtime::identity::Fingerprint;
use crate::runtime::startup::{self, RunInputs};
use crate::runtime::worker::{run_worker, LazyFeed, Restore, WorkerCheckpoints, WorkerShared};
use crate::runtime::writer::EpochWriter;
use crate::runtime::{cluster, landing_edge};
use crate::runtime::{watchdog, RunControl};
use crate::sinks;
use crate::sinks::checkpoint::CheckpointStore;
use crate::sinks::state::{FailureRow, StateConfig};
use crate::sources::landing::{
    check_pruned_replay, ChunkFeed, FeedObserver, FeedOptions, FeedPlan,
};
use crate::telemetry::status::{PreviousError, RestoreInfo};
use crate::telemetry::tally::RunVariant;
use crate::telemetry::{Limits, Phase, RunInfo, Telemetry};
use crate::time::{format_ist, now_ms};

pub use crate::runtime::{
    default_poll_interval, Mode, ReplayRange, RunSummary, TimelyOptions, YOptions,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_GAP_WARN, DEFAULT_LINGER_ON_FAILURE, DEFAULT_SETTLE,
    DEFAULT_STALL_TIMEOUT, MAX_PROCESSES, MAX_TOTAL_WORKERS, MAX_WORKERS, MIN_POLL_INTERVAL,
};

/// Runs mechanism Y to completion (or forever with [`Mode::Live`] `forever`).
pub fn run(options: &YOptions) -> Result<RunSummary> {
    run_with_stop(options, Arc::new(AtomicBool::new(false)))
}

/// As [`run`], stopping gracefully (after the epoch in flight) once `stop` is set.
pub fn run_with_stop(options: &YOptions, stop: Arc<AtomicBool>) -> Result<RunSummary> {
    run_shown(options, stop, &Console::off())
}

/// As [`run_with_stop`], showing progress on `console` (the binary's, from its logging).
pub fn run_shown(
    options: &YOptions,
    stop: Arc<AtomicBool>,
    console: &Console,
) -> Result<RunSummary> {
    let started = Instant::now();
    let t = &options.timely;
    t.validate()?;
    options.check_variants()?;
    // Before any store is opened: a bad hostfile fails without side effects.
    let config = timely_config(t)?;
    let telemetry = Arc::new(Telemetry::new(run_info(options), Limits::of(options)));
    let options = &counting_retries(options, &telemetry);
    // Also before any store is opened: the endpoint answers (not ready) during start-up.
    let _server = match (options.http, t.process) {
        (Some(addr), 0) => Some(HttpServer::start(addr, telemetry.clone())?),
        _ => None,
    };
    let result = run_observed(
        options,
        (stop.clone(), console),
        config,
        &telemetry,
        started,
    );
    match &result {
        Ok(summary) if summary.finished => telemetry.set_phase(Phase::Ended),
        Ok(_) => telemetry.set_phase(Phase::Stopped),
        Err(e) => {
            telemetry.failed(e);
            // The failed run set `stop` to end its own threads; from here on only a signal
            // sets it (one sent while the run was ending needs sending again).
            stop.store(false, Ordering::SeqCst);
            let recorded = t.process != 0 || record_failure(&options.state, e);
            if let Some(server) = &_server {
                if linger(options.linger_on_failure, &stop, server.local_addr()) && !recorded {
                    // The store was the problem; whoever held it may have let go since.
                    store_failure(&options.state, &failure_row(e));
                }
            }
        }
    }
    result
}

/// Records the run's failure in the state store, best-effort: the error and the exit status
/// stay the run's. Not when the store itself is what failed (locked, unreachable: trying
/// would only wait for it again); a store that does not exist is not created for it.
/// Returns whether it is done with the failure (recorded, or nothing to record it in):
/// `false` only when the store itself was the problem.
fn record_failure(state: &StateConfig, error: &Error) -> bool {
    if store_unusable(error) {
        // The error line already says what is wrong with the store: no warning on top.
        tracing::info!("the failure could not be recorded in the state store {state}: it failed");
        return false;
    }
    store_failure(state, &failure_row(error));
    true
}

/// The failure as the store keeps it, timed now.
fn failure_row(error: &Error) -> FailureRow {
    let at_ms = now_ms();
    FailureRow {
        at_ms,
        at: format_ist(at_ms),
        message: error.to_string(),
        domain: error.domain().to_string(),
        exit_code: error.domain().exit_code(),
    }
}

fn store_failure(state: &StateConfig, failure: &FailureRow) {
    let recorded =
        sinks::state::open_existing(state).and_then(|mut store| store.record_failure(failure));
    match recorded {
        Ok(()) => tracing::debug!("the failure was recorded in the state store {state}"),
        // No store yet (the run failed before its first start created it): nothing to keep.
        Err(StateError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(StateError::Schema { found: None, .. }) => {}
        Err(e) => {
            tracing::warn!("the failure could not be recorded in the state store {state}: {e}")
        }
    }
}

/// Whether `error` is the state store being unusable: held by another process or
/// connection, or out of reach.
fn store_unusable(error: &Error) -> bool {
    match error.root() {
        // A cluster's process 0 failing on its store: the store is still the problem.
        Error::Cluster(ClusterError::ProcessFailed { source }) => store_unusable(source),
        Error::State(
            StateError::Locked { .. }
            | StateError::Unreachable { .. }
            | StateError::Unavailable { .. },
        ) => true,
        Error::State(e) => sinks::state::sqlite::is_busy(e),
        _ => false,
    }
}

/// After a fatal error: the endpoint keeps answering (state `failed`, the error and what to
/// do) for `wait`, or until `stop` is set, so that the failure is seen, not only a refused
/// connection. The process's end stays the caller's.
/// Returns whether it waited at all.
fn linger(wait: Duration, stop: &AtomicBool, addr: std::net::SocketAddr) -> bool {
    if wait.is_zero() {
        return false;
    }
    tracing::warn!(
        "the run failed; the operating endpoint http://{addr} stays up for {} s to show why \
         (--linger-on-failure; SIGINT/SIGTERM ends the wait)",
        wait.as_secs_f64()
    );
    let until = Instant::now() + wait;
    while !stop.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    true
}

/// Shows the last failure an earlier run recorded in the store as `previous_error`.
fn show_previous_error(writer: &mut EpochWriter, telemetry: &Telemetry) {
    match writer.last_failure() {
        Ok(failure) => telemetry.set_previous_error(failure.map(PreviousError::from)),
        Err(e) => tracing::warn!("reading the last run failure from the state store: {e}"),
    }
}

/// The options with the run's retry counters handed to every store the run opens.
fn counting_retries(options: &YOptions, telemetry: &Telemetry) -> YOptions {
    let mut options = options.clone();
    options.s3.retries = telemetry.s3_retries();
    if let StateConfig::Postgres { options: pg, .. } = &mut options.state {
        pg.retries = telemetry.state_store_retries();
    }
    options
}

/// What `/api/status` says of the run's options.
fn run_info(options: &YOptions) -> RunInfo {
    RunInfo {
        mode: Some(
            match options.replay_range() {
                Some(_) => "replay",
                None => "live",
            }
            .into(),
        ),
        landing: Some(redact::url(&options.landing)),
        output: Some(redact::url(&options.output)),
        state: Some(options.state.describe()),
        range: options.replay_range().map(|r| [r.from, r.to]),
        thresholds: serde_json::to_value(options.thresholds).unwrap_or_default(),
        variants: options
            .variants()
            .iter()
            .map(|v| RunVariant {
                name: v.name.clone(),
                thresholds: serde_json::to_value(v.thresholds).unwrap_or_default(),
            })
            .collect(),
        workers: Some(options.timely.workers),
        processes: Some(options.timely.processes),
        process: Some(options.timely.process),
        started_at: Some(format_ist(now_ms())),
    }
}

/// The run, reporting to `telemetry`.
fn run_observed(
    options: &YOptions,
    (stop, console): (Arc<AtomicBool>, &Console),
    config: timely::Config,
    telemetry: &Arc<Telemetry>,
    started: Instant,
) -> Result<RunSummary> {
    let t = &options.timely;
    let inputs = startup::open_inputs(options, now_ms())?;
    if let FeedPlan::Fixed(indices) = &inputs.plan {
        if let (Some(from), Some(to)) = (indices.first(), indices.last()) {
            telemetry.set_range(*from, *to);
        }
    }
    let mut writer = match t.process {
        0 => Some(startup::open_writer(options, &inputs)?),
        _ => None,
    };
    if let Some(writer) = writer.as_mut() {
        show_previous_error(writer, telemetry);
        if writer.is_finished() {
            startup::check_ended_stream(writer, inputs.landing.as_ref(), &inputs.plan)?;
            // A cluster's other processes wait for this one: let the dataflow replay the
            // committed chunks to the end (the committer commits nothing more).
            if t.processes == 1 {
                return Ok(ended_summary(writer, started));
            }
        }
        writer.write_rejects("CustomerImportance.csv", &inputs.importance.rejects)?;
    }
    let checkpoints = open_checkpoints(options)?;
    let restore = match (writer.as_mut(), &checkpoints) {
        (Some(writer), Some(store)) => startup::choose_restore(writer, store, &inputs.identity)?,
        _ => None,
    };
    if let Some(writer) = writer.as_mut() {
        let restored = restore.as_ref().map(|r| r.point.epoch);
        if let Some(replay) = &inputs.replay {
            check_pruned_replay(inputs.landing.as_ref(), replay, restored)?;
            // Its first chunk removed: the replay's clock starts where the checkpoint says.
            let start = restore.as_ref().and_then(|r| r.manifest.first_chunk_ms);
            if let (None, Some(ms)) = (&replay.first, start) {
                writer.set_replay_start(ms);
            }
        }
        startup::check_replay_needs(writer, inputs.landing.as_ref(), restored)?;
        let replayed = writer
            .committed_epochs()
            .filter(|e| restored.is_none_or(|r| *e > r))
            .count() as u64;
        if writer.committed_epochs().next().is_some() {
            telemetry.restoring(RestoreInfo {
                source: if restored.is_some() {
                    "checkpoint"
                } else {
                    "full replay"
                },
                checkpoint_epoch: restored,
                load_seconds: restore.as_ref().map_or(0.0, |r| r.load_seconds),
                replayed_chunks: replayed,
            });
        }
    }
    let control = Arc::new(RunControl::new(stop));
    let run = Run {
        inputs,
        writer,
        checkpoints: checkpoints.map(|store| (store, restore)),
        console: console.clone(),
    };
    let result = run_workers(options, run, &control, config, telemetry);
    control.stop_all();
    let mut summary = result?;
    if let Some(failure) = control.take_failure() {
        return Err(match t.processes {
            1 => failure,
            _ => in_cluster(failure),
        });
    }
    summary.wall = started.elapsed();
    Ok(summary)
}

/// The checkpoint location, opened on every process (each writes its workers' shards);
/// `None` when checkpoints are off.
fn open_checkpoints(options: &YOptions) -> Result<Option<CheckpointStore>> {
    if options.checkpoints.interval == 0 {
        return Ok(None);
    }
    let location = options.checkpoints.location(&options.output);
    let shown = redact::url(&location);
    let store = objectstore::open(&location, &options.s3)
        .with_context(|| format!("opening the checkpoint location {shown}"))?;
    if let Some(dir) = objectstore::as_local(store.as_ref()).filter(|_| options.timely.process == 0)
    {
        dir.remove_stale_temporaries().with_context(|| {
            format!("removing stale temporary files from the checkpoint location {shown}")
        })?;
    }
    Ok(Some(CheckpointStore::new(store)))
}

/// What a run starts with: its inputs, the writer (process 0), and the checkpoint location
/// with the checkpoint to restore (process 0 chooses).
struct Run {
    inputs: RunInputs,
    writer: Option<EpochWriter>,
    checkpoints: Option<(CheckpointStore, Option<Restore>)>,
    /// Where progress is shown.
    console: Console,
}

/// The run of a store whose stream already ended: nothing to do.
fn ended_summary(writer: &EpochWriter, started: Instant) -> RunSummary {
    RunSummary {
        finished: true,
        detections_total: writer.detections_total(),
        wall: started.elapsed(),
        ..RunSummary::default()
    }
}

/// Feed → workers → committer, until the stream ends, the run stops or something fails (the
/// failure is then in `control`). The summary is the committer's (empty on other processes).
fn run_workers(
    options: &YOptions,
    run: Run,
    control: &Arc<RunControl>,
    config: timely::Config,
    telemetry: &Arc<Telemetry>,
) -> Result<RunSummary> {
    let t = &options.timely;
    let Run {
        inputs,
        writer,
        checkpoints,
        console,
    } = run;
    let recovered = writer
        .as_ref()
        .map(|w| w.committed_epochs().collect())
        .unwrap_or_default();
    let restored = checkpoints
        .as_ref()
        .and_then(|(_, r)| r.as_ref())
        .map(|r| r.point.epoch);
    telemetry.workers_starting(&recovered, restored);
    let (notes, received) = notes_channel();
    let observers = Observers::new(vec![telemetry.clone() as Arc<dyn RunObserver>]);
    let (committer, queue) = match writer {
        Some(writer) => {
            let notes = checkpoints.as_ref().map(|_| CheckpointNotes {
                options: options.checkpoints.clone(),
                restored,
                notes: notes.clone(),
            });
            let progress = Progress::start(Plan::of(&inputs.plan, &recovered), &console);
            let (committer, queue) =
                start_committing(options, writer, progress, notes, telemetry, control)?;
            (Some(committer), Some(queue))
        }
        None => (None, None),
    };
    if options.http.is_some() && options.replay_range().is_none() && t.process == 0 {
        landing_edge::start(inputs.landing.clone(), observers.clone(), control.clone());
    }
    let checkpointer = match &checkpoints {
        Some((store, _)) => Some(Checkpointer::start(
            CheckpointerSetup {
                store: store.clone(),
                options: options.checkpoints.clone(),
                run: inputs.identity.checkpoint_key(),
                local_workers: t.workers,
                workers: t.workers * t.processes,
                records: queue
                    .as_ref()
                    .map(|q| q.record_requests(options.checkpoints.kept)),
                control: control.clone(),
                observers: observers.clone(),
            },
            notes.clone(),
            received,
        )?),
        None => None,
    };
    let worker_checkpoints = checkpoints.map(|(store, restore)| WorkerCheckpoints {
        options: options.checkpoints.clone(),
        run: inputs.identity.checkpoint_key(),
        store,
        notes: Mutex::new(notes),
        restore,
    });
    let shared = worker_shared(options, inputs, recovered, queue, control, observers);
    let shared = Arc::new(WorkerShared {
        checkpoints: worker_checkpoints,
        ..shared
    });
    let guards = cluster::start(config, t, control, move |worker| {
        worker_thread(worker, &shared)
    });
    match guards {
        Ok(guards) => cluster::join(guards, t, control),
        Err(e) => control.fail(e),
    }
    join_threads(committer, checkpointer, t, control)
}

/// A timely worker's thread: its loop's result goes to the run's control. A panic is
/// recorded with its message (joining the thread tells only that it panicked), and goes on.
fn worker_thread(worker: &mut timely::worker::Worker, shared: &WorkerShared) {
    let index = worker.index();
    match std::panic::catch_unwind(AssertUnwindSafe(|| run_worker(worker, shared))) {
        Ok(result) => shared.control.worker_returned(result),
        Err(panic) => {
            let thread = format!("timely worker {index}");
            shared
                .control
                .fail(Error::panicked(&thread, panic.as_ref()));
            std::panic::resume_unwind(panic);
        }
    }
}

/// Once the workers are joined: the committer's summary, or the panic of the committer or
/// the checkpointer.
fn join_threads(
    committer: Option<Committer>,
    checkpointer: Option<Checkpointer>,
    t: &TimelyOptions,
    control: &RunControl,
) -> Result<RunSummary> {
    // A failed cluster process leaves at once: its workers may never return (timely cannot
    // abort), and the process's end is what fails its peers.
    let joined = match committer {
        Some(committer) if (t.processes == 1 || !control.failed()) && !control.abandoned() => {
            Some(committer.join())
        }
        _ => None,
    };
    let closed = checkpointer.map_or(Ok(()), Checkpointer::close);
    // A panicked committer's error comes first: worker 0's failure to hand over to it
    // (already in `control`) only follows from it.
    let joined = joined.transpose()?;
    closed?;
    after_commits(joined)
}

/// The committing thread, its observers the telemetry and the progress (only the committing
/// thread holds the progress: the bar leaves with it), and its stall watchdog.
fn start_committing(
    options: &YOptions,
    writer: EpochWriter,
    progress: Progress,
    notes: Option<CheckpointNotes>,
    telemetry: &Arc<Telemetry>,
    control: &Arc<RunControl>,
) -> Result<(Committer, CommitQueue)> {
    let observer: Arc<dyn RunObserver> = telemetry.clone();
    let progress = Arc::new(ProgressObserver::new(progress));
    let committing = Observers::new(vec![observer.clone(), progress]);
    let (committer, queue) = Committer::start(writer, control.clone(), committing, notes)?;
    watchdog::start(
        options.stall_timeout,
        options.timely.processes,
        telemetry.clone(),
        Observers::new(vec![observer]),
        control.clone(),
    );
    Ok((committer, queue))
}

/// The committer's summary (empty when it did not end) and, for a backtest with variants
/// whose stream ended, its report: rendered from the store after the end is recorded,
/// outside the commit path, so that a failing report cannot hold up the stream's end.
fn after_commits(joined: Option<(RunSummary, EpochWriter)>) -> Result<RunSummary> {
    let Some((mut summary, mut writer)) = joined else {
        return Ok(RunSummary::default());
    };
    if let Some(source) = writer.backtest_source() {
        let page = format!(
            "{}/{}",
            source.output.describe(),
            report::backtest::HTML_KEY
        );
        report::backtest::write_from(source).context("writing the backtest report")?;
        summary.report = Some(page);
    }
    Ok(summary)
}

/// What the workers of this process share: the importance table, the chunk feed (started
/// by the first worker, after the restored checkpoint if any), the epochs an earlier run
/// committed and, for worker 0, the committer's queue.
fn worker_shared(
    options: &YOptions,
    inputs: RunInputs,
    recovered: std::collections::BTreeSet<u64>,
    queue: Option<CommitQueue>,
    control: &Arc<RunControl>,
    observers: Observers,
) -> WorkerShared {
    let fingerprint = Fingerprint::of(options, &inputs.plan, &inputs.importance_bytes);
    let feed_options = FeedOptions {
        poll: options.poll_interval.max(MIN_POLL_INTERVAL),
        gap_warn: options.gap_warn,
        settle: options.settle,
        first: 0,
    };
    let (landing, plan, workers) = (inputs.landing, inputs.plan, options.timely.workers);
    let stop = control.stop_flag();
    let observer: Option<Arc<dyn FeedObserver>> = Some(Arc::new(observers));
    let feed = LazyFeed::new(move |restored| {
        let first = restored.map_or(0, |r| r + 1);
        let plan = match restored {
            Some(epoch) => plan.after(epoch),
            None => plan,
        };
        let options = FeedOptions {
            first,
            ..feed_options
        };
        ChunkFeed::start_observed(landing, plan, workers, options, stop, observer)
    });
    WorkerShared {
        weights: Arc::new(WeightTable::new(&inputs.importance.weights)),
        threshold_sets: std::iter::once(options.thresholds)
            .chain(options.variants().iter().map(|v| v.thresholds))
            .collect(),
        fingerprint,
        feed,
        control: control.clone(),
        recovered,
        commits: Mutex::new(queue),
        checkpoints: None,
        processes: options.timely.processes,
    }
}

/// A failure of one process of a cluster: every process must be restarted.
fn in_cluster(failure: Error) -> Error {
    match failure.root() {
        Error::Cluster(
            ClusterError::PeerLost { .. }
            | ClusterError::WorkerFailed(_)
            | ClusterError::ConnectTimeout { .. }
            | ClusterError::Stalled { .. }
            | ClusterError::StoppedConnecting,
        ) => failure,
        _ => ClusterError::ProcessFailed {
            source: Box::new(failure),
        }
        .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::state::{RunIdentity, RunMode};

    fn locked() -> Error {
        StateError::Locked {
            detail: "state.db is locked by process 7".into(),
        }
        .into()
    }

    #[test]
    fn what_to_do_follows_the_error_then_its_domain_and_a_locked_state_store_is_not_written() {
        use crate::telemetry::status::what_to_do;
        let unreachable: Error = StateError::Unreachable {
            url: "postgres://u@h/db".into(),
            hosts: "h:5432".into(),
            seconds: 10.0,
            last_error: "refused".into(),
        }
        .into();
        let input = Error::input("chunk-000003.csv: _COMPLETE says 2 chunks").context("reading");
        assert!(what_to_do(&locked()).starts_with("stop the other mechanism-y process"));
        assert!(what_to_do(&unreachable).contains("PostgreSQL server is running"));
        assert!(what_to_do(&input).starts_with("see the rejects and the landing"));
        assert!(what_to_do(&Error::internal("x")).starts_with("a bug in txflow"));
        assert!(store_unusable(&locked()) && store_unusable(&unreachable));
        assert!(!store_unusable(&input));
    }

    #[test]
    fn a_failure_is_recorded_only_in_a_state_store_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = StateConfig::Embedded { path: path.clone() };
        let error = Error::input("a chunk breaks the SPEC").context("reading chunk-000001.csv");
        record_failure(&state, &error);
        assert!(!path.exists(), "no store is created to record a failure");
        let mut writer = sinks::state::open(&state).unwrap();
        writer
            .begin_run(&RunIdentity {
                mode: RunMode::Live,
                landing: "landing".into(),
                from: None,
                to: None,
                thresholds: String::new(),
                importance: "importance".into(),
                importance_digest: "0".repeat(64),
            })
            .unwrap();
        // Recorded while the run's writer still holds the store (no guard needed).
        record_failure(&state, &error);
        let last = writer.last_failure().unwrap().unwrap();
        assert_eq!(
            (last.message.as_str(), last.domain.as_str(), last.exit_code),
            (
                "reading chunk-000001.csv: a chunk breaks the SPEC",
                "input",
                65
            )
        );
        assert!(last.at.ends_with("+05:30"), "{}", last.at);
        // The store being the problem: not tried, nothing more recorded.
        record_failure(&state, &locked());
        assert_eq!(writer.last_failure().unwrap(), Some(last));
    }

    #[test]
    fn the_linger_ends_at_its_time_or_at_a_stop() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        linger(Duration::from_millis(300), &stop, addr);
        assert!(started.elapsed() >= Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
        let started = Instant::now();
        linger(Duration::from_secs(600), &stop, addr);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
