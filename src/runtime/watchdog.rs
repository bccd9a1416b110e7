//! The stall watchdog (`--stall-timeout`): on the process hosting the committer, a thread
//! that fails the run ([`ClusterError::Stalled`], through [`RunControl::fail`]) when no epoch
//! went through the committer for the timeout while chunks were waiting (the landing edge is
//! past the last epoch taken). It never ends the process: the run returns its error at once,
//! without waiting for threads that may be stuck (on a frozen peer, a hung store call).

use std::sync::Arc;
use std::time::Duration;

use crate::error::ClusterError;
use crate::runtime::control::RunControl;
use crate::runtime::events::{Event, Observers};
use crate::sources::landing::chunk_key;

/// Where the watchdog reads how long the run went without an epoch through the committer
/// (the run's telemetry, which hears of every chunk seen and every epoch taken).
pub trait StallProbe: Send + Sync {
    /// `Some((waited, first waiting chunk, edge))` when no epoch went through the committer
    /// for `timeout` while chunks past it were seen.
    fn stalled_for(&self, timeout: Duration) -> Option<(Duration, u64, u64)>;
}

/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(200);

/// Starts the watchdog thread (nothing when `timeout` is zero); it ends with the run.
pub fn start(
    timeout: Duration,
    processes: usize,
    probe: Arc<dyn StallProbe>,
    observers: Observers,
    control: Arc<RunControl>,
) {
    if timeout.is_zero() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("stall-watchdog".into())
        .spawn(move || watch(timeout, processes, probe.as_ref(), &observers, &control));
    if let Err(e) = spawned {
        tracing::warn!("cannot start the stall watchdog: {e}");
    }
}

fn watch(
    timeout: Duration,
    processes: usize,
    probe: &dyn StallProbe,
    observers: &Observers,
    control: &RunControl,
) {
    while !control.should_stop() {
        std::thread::sleep(TICK);
        let Some((waited, first, edge)) = probe.stalled_for(timeout) else {
            continue;
        };
        let waiting = match edge > first {
            true => format!("{} … {}", chunk_key(first), chunk_key(edge)),
            false => chunk_key(first),
        };
        let hint = match processes {
            1 => "a worker, the state store or the output store may be hung; restart \
                  mechanism-y (it resumes from the last committed epoch)"
                .to_string(),
            _ => "a cluster peer may be frozen; restart every process (the cluster resumes \
                  from the last committed epoch)"
                .to_string(),
        };
        let error = ClusterError::Stalled {
            seconds: waited.as_secs(),
            waiting,
            hint,
        };
        tracing::error!("{error}");
        observers.emit(&Event::Stalled {
            reason: &error.to_string(),
        });
        control.abandon(error.into());
        return;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::runtime::events::RunObserver;

    /// Always stalled; after a few looks it asks the run to stop, so that a watchdog that
    /// kept looking would end too (and be caught logging more than once).
    struct Stuck {
        looks: AtomicUsize,
        stop: Arc<AtomicBool>,
    }

    impl StallProbe for Stuck {
        fn stalled_for(&self, _: Duration) -> Option<(Duration, u64, u64)> {
            if self.looks.fetch_add(1, Ordering::SeqCst) >= 3 {
                self.stop.store(true, Ordering::SeqCst);
            }
            Some((Duration::from_secs(3), 4, 6))
        }
    }

    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct Stalls(AtomicUsize);

    impl RunObserver for Stalls {
        fn observe(&self, event: &Event<'_>) {
            if matches!(event, Event::Stalled { .. }) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn a_stall_is_one_log_line_and_one_event() {
        let stop = Arc::new(AtomicBool::new(false));
        let probe = Stuck {
            looks: AtomicUsize::new(0),
            stop: stop.clone(),
        };
        let stalls = Arc::new(Stalls::default());
        let observers = Observers::new(vec![stalls.clone()]);
        let control = RunControl::new(stop);
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            watch(Duration::from_secs(3), 1, &probe, &observers, &control)
        });
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("ERROR") && text.contains("stalled"), "{text}");
        assert_eq!(stalls.0.load(Ordering::SeqCst), 1);
        assert!(control.failed());
    }
}
