//! The landing edge of a live run, for the operating endpoint: the chunk feed fetches at most a
//! few chunks ahead of the workers, so what it has seen says little of how far behind a run
//! is. With `--http` in live mode, this thread lists the landing every [`EVERY`] (one LIST
//! request on S3) and reports each chunk to the run's observers with its last-modified time, so that
//! the lag in chunks and in seconds is the landing's.

use std::sync::Arc;
use std::time::Duration;

use crate::objectstore::ObjectStore;
use crate::runtime::control::RunControl;
use crate::runtime::events::{Event, Observers};
use crate::sources::landing::{list_landing, NameWarnings};

/// How often the landing is listed.
const EVERY: Duration = Duration::from_secs(2);

/// Starts the thread; it ends with the run. A failed listing is only logged (at debug): the
/// feed reports landing errors. Each listing tells the observers whether the landing is there.
pub fn start(landing: Arc<dyn ObjectStore>, observers: Observers, control: Arc<RunControl>) {
    let spawned = std::thread::Builder::new()
        .name("landing-edge".into())
        .spawn(move || watch(landing.as_ref(), &observers, &control));
    if let Err(e) = spawned {
        tracing::warn!("cannot start the landing-edge thread: {e}");
    }
}

fn watch(landing: &dyn ObjectStore, observers: &Observers, control: &RunControl) {
    let mut reported: Option<u64> = None;
    let warned = NameWarnings::default();
    while !control.should_stop() {
        match list_landing(landing, &warned, observers) {
            Ok(chunks) => {
                let since = reported;
                for (index, meta) in chunks.iter().filter(|(k, _)| since < Some(*k)) {
                    observers.emit(&Event::ChunkSeen {
                        index: *index,
                        last_modified_ms: meta.last_modified_ms,
                    });
                    reported = Some(*index);
                }
            }
            Err(e) => tracing::debug!("listing the landing for its edge: {e}"),
        }
        sleep_unless_stopped(EVERY, control);
    }
}

/// Sleeps `total` in short steps, so that the thread ends soon after the run.
fn sleep_unless_stopped(total: Duration, control: &RunControl) {
    let step = Duration::from_millis(100);
    let mut slept = Duration::ZERO;
    while slept < total && !control.should_stop() {
        std::thread::sleep(step);
        slept += step;
    }
}
