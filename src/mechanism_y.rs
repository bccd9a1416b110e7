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
//! 5. The run ends when the stream ends, when it is stopped (SIGINT/SIGTERM: after the epoch
//!    in flight; queued epochs are committed), or at the first failure, which is returned as
//!    a typed error: the library never ends the process.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::dataflow::aggregates::WeightTable;
use crate::error::{ClusterError, Error, Result};
use crate::progress::{Plan, Progress};
use crate::runtime::cluster;
use crate::runtime::committer::Committer;
use crate::runtime::config::timely_config;
use crate::runtime::identity::Fingerprint;
use crate::runtime::startup::{self, RunInputs};
use crate::runtime::worker::{run_worker, WorkerShared};
use crate::runtime::RunControl;
use crate::sinks::writer::EpochWriter;
use crate::sources::landing::{ChunkFeed, FeedOptions};
use crate::time::now_ms;

pub use crate::runtime::{
    default_poll_interval, ReplayRange, RunSummary, TimelyOptions, YOptions,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_GAP_WARN, DEFAULT_SETTLE, MAX_PROCESSES, MAX_TOTAL_WORKERS,
    MAX_WORKERS,
};

/// Runs mechanism Y to completion (or forever with `follow_forever`).
pub fn run(options: &YOptions) -> Result<RunSummary> {
    run_with_stop(options, Arc::new(AtomicBool::new(false)))
}

/// As [`run`], stopping gracefully (after the epoch in flight) once `stop` is set.
pub fn run_with_stop(options: &YOptions, stop: Arc<AtomicBool>) -> Result<RunSummary> {
    let started = Instant::now();
    let t = &options.timely;
    t.validate()?;
    // Before any store is opened: a bad hostfile fails without side effects.
    let config = timely_config(t)?;
    let inputs = startup::open_inputs(options, now_ms())?;
    let writer = match t.process {
        0 => Some(startup::open_writer(options, &inputs)?),
        _ => None,
    };
    if let Some(writer) = &writer {
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
    let control = Arc::new(RunControl::new(stop));
    let result = run_workers(options, inputs, writer, &control, config);
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
    inputs: RunInputs,
    writer: Option<EpochWriter>,
    control: &Arc<RunControl>,
    config: timely::Config,
) -> Result<RunSummary> {
    let t = &options.timely;
    let recovered = writer
        .as_ref()
        .map(|w| w.committed_epochs().collect())
        .unwrap_or_default();
    let (committer, queue) = match writer {
        Some(writer) => {
            let progress = Progress::start(Plan::of(&inputs.plan, &recovered));
            let (committer, queue) = Committer::start(writer, control.clone(), progress)?;
            (Some(committer), Some(queue))
        }
        None => (None, None),
    };
    let feed_options = FeedOptions {
        poll: options.poll_interval,
        gap_warn: options.gap_warn,
        settle: options.settle,
    };
    let fingerprint = Fingerprint::of(options, &inputs.plan, &inputs.importance_bytes);
    let shared = Arc::new(WorkerShared {
        weights: Arc::new(WeightTable::new(&inputs.importance.weights)),
        thresholds: options.thresholds,
        fingerprint,
        feed: ChunkFeed::start(
            inputs.landing.clone(),
            inputs.plan,
            t.workers,
            feed_options,
            control.stop_flag(),
        ),
        control: control.clone(),
        recovered,
        commits: Mutex::new(queue),
    });
    let workers = shared.clone();
    let guards = cluster::start(config, t, control, move |worker| {
        let result = run_worker(worker, &workers);
        workers.control.worker_returned(result);
    });
    match guards {
        Ok(guards) => cluster::join(guards, t, control),
        Err(e) => control.fail(e),
    }
    // A failed cluster process leaves at once: its workers may never return (timely cannot
    // abort), and the process's end is what fails its peers.
    let summary = match committer {
        Some(committer) if t.processes == 1 || !control.failed() => committer.join(),
        _ => RunSummary::default(),
    };
    Ok(summary)
}

/// A failure of one process of a cluster: every process must be restarted.
fn in_cluster(failure: Error) -> Error {
    match failure.root() {
        Error::Cluster(
            ClusterError::PeerLost { .. }
            | ClusterError::WorkerFailed(_)
            | ClusterError::ConnectTimeout { .. }
            | ClusterError::StoppedConnecting,
        ) => failure,
        _ => ClusterError::ProcessFailed {
            source: Box::new(failure),
        }
        .into(),
    }
}
