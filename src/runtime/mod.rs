//! The epoch runtime of Mechanism Y: how chunks become epochs and epochs become commits.
//!
//! | module | owns |
//! |---|---|
//! | [`options`] | what a run is given ([`YOptions`]) and what it reports ([`RunSummary`]) |
//! | [`config`] | `-w`/`-n`/`-p`/`-h`, their bounds, and timely's configuration |
//! | [`startup`] | opening and checking the landing, importance file, output and state store |
//! | [`identity`] | the run identity (SPEC §6) and the option fingerprints of a cluster |
//! | [`worker`] | the worker loop: feed → parse a share → dataflow → hand the epoch over |
//! | [`batch`] | [`EpochBatch`]: one epoch's outputs and share reports; its completeness |
//! | [`committer`] | the committing thread: batches in, rejects/ledger/files out |
//! | [`checkpointer`] | the checkpointing thread: shards in, checkpoints out; what a restart starts from |
//! | [`landing_edge`] | live runs with `--http`: the landing's edge, listed every 2 s, for the lag |
//! | [`cluster`] | starting and joining the workers, bounded, with typed failures |
//! | [`connections`] | a cluster's TCP connections: timely's handshake, logged through `tracing` |
//! | [`watchdog`] | the stall watchdog: fails the run when no epoch commits while chunks wait |
//!
//! An epoch's path: the [`ChunkFeed`](crate::sources::landing::ChunkFeed) fetches chunk k;
//! every worker parses its share and feeds it at time k (a worker may feed up to five epochs
//! before the oldest completes, so that no epoch boundary is a barrier); the dataflow's outputs
//! and the share reports are exchanged to worker 0, which takes them out as one [`EpochBatch`]
//! once the dataflow's frontier passes k, checks that every worker contributed, and queues it
//! to the [`committer`] (bounded, in order) while the workers go on with later chunks. The committer
//! skips epochs an earlier run committed (after checking their chunk digest), and commits the
//! others: rejects file, one state-store transaction, detection files.

pub mod batch;
pub mod checkpointer;
pub mod cluster;
pub mod committer;
pub mod config;
pub mod connections;
pub mod identity;
pub mod landing_edge;
pub mod options;
pub mod startup;
pub mod watchdog;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use batch::EpochBatch;
pub use config::{
    TimelyOptions, DEFAULT_CONNECT_TIMEOUT, MAX_PROCESSES, MAX_TOTAL_WORKERS, MAX_WORKERS,
};
pub use options::{
    default_poll_interval, Mode, ReplayRange, RunSummary, YOptions, DEFAULT_GAP_WARN,
    DEFAULT_SETTLE, DEFAULT_STALL_TIMEOUT, MIN_POLL_INTERVAL,
};

use crate::error::{Error, Result};

/// How the threads of a run tell each other to stop: a stop asked from outside (a signal),
/// or the first failure of a worker, the committer or the cluster.
pub struct RunControl {
    stop: Arc<AtomicBool>,
    failure: Mutex<Option<Error>>,
    failed: AtomicBool,
    /// Failed in a way that threads may never notice (a stall): do not wait for them.
    abandoned: AtomicBool,
    workers_returned: AtomicUsize,
}

impl RunControl {
    pub fn new(stop: Arc<AtomicBool>) -> RunControl {
        RunControl {
            stop,
            failure: Mutex::new(None),
            failed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            workers_returned: AtomicUsize::new(0),
        }
    }

    /// Records a failure (the first one is the run's error) and stops every thread.
    pub fn fail(&self, error: Error) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if failure.is_none() {
            *failure = Some(error);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Records a failure after which the run's threads may never return (they are stuck):
    /// the run returns without waiting for them.
    pub fn abandon(&self, error: Error) {
        self.fail(error);
        self.abandoned.store(true, Ordering::SeqCst);
    }

    /// Whether the run's threads are to be left behind ([`RunControl::abandon`]).
    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// A worker's loop returned.
    pub fn worker_returned(&self, result: Result<()>) {
        if let Err(e) = result {
            self.fail(e);
        }
        self.workers_returned.fetch_add(1, Ordering::SeqCst);
    }

    pub fn workers_returned(&self) -> usize {
        self.workers_returned.load(Ordering::SeqCst)
    }

    /// Stopped from outside.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Something failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stopped or failed: take no further chunk.
    pub fn should_stop(&self) -> bool {
        self.stopped() || self.failed()
    }

    /// The flag a stop from outside sets (the chunk feed watches it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stops the threads that outlive the workers (the chunk feed).
    pub fn stop_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The run's error, if any.
    pub fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
