//! How the threads of a run tell each other to stop ([`RunControl`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
    pub(crate) fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// A worker's loop returned.
    pub(crate) fn worker_returned(&self, result: Result<()>) {
        if let Err(e) = result {
            self.fail(e);
        }
        self.workers_returned.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn workers_returned(&self) -> usize {
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
    pub(crate) fn should_stop(&self) -> bool {
        self.stopped() || self.failed()
    }

    /// The flag a stop from outside sets (the chunk feed watches it).
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Stops the threads that outlive the workers (the chunk feed).
    pub(crate) fn stop_all(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The run's error, if any.
    pub(crate) fn take_failure(&self) -> Option<Error> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
