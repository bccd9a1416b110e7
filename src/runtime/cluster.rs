//! Starting and joining the timely workers, bounded in time, with failures as typed errors.
//!
//! A single process starts its workers and joins them. A cluster (`-n` > 1) needs more,
//! because timely 0.32 has no recovery and no way to abort:
//! - its connection set-up retries forever (and prints on stdout: the connections are made
//!   by [`crate::runtime::connections`] instead, with timely's handshake, logged through
//!   `tracing`): [`start`] bounds it by `--connect-timeout`
//!   ([`ClusterError::ConnectTimeout`]) and gives up when the run is stopped meanwhile
//!   ([`ClusterError::StoppedConnecting`]);
//! - when a peer dies, the TCP receive thread panics ("timely communication error: reading
//!   data: socket closed"), which poisons the queues it shares with the local workers, whose
//!   next step panics ("MergeQueue poisoned."); a worker that *returns* an error leaves its
//!   peers waiting for it forever. So [`join`] returns the first failure of any worker or of
//!   the committer as soon as it happens ([`ClusterError::PeerLost`] for a lost connection),
//!   without waiting for threads that can never finish. The caller ends the process (the
//!   binaries return from `main`), which closes its connections and fails the peers in turn.
//!
//! The library installs no panic hook. A binary that wants one line instead of timely's
//! panic messages installs [`quiet_panic_hook`]; it also tells [`join`] which connection
//! failed first, so that the error names the lost peer.

use std::panic::PanicHookInfo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::ProcessBuilder;
use timely::communication::{AllocatorBuilder, Hooks, WorkerGuards};
use timely::CommunicationConfig;

use crate::error::{panic_message, ClusterError, Error, Result, CLUSTER_RESTART_HINT};
use crate::runtime::config::TimelyOptions;
use crate::runtime::connections::connect_all;
use crate::runtime::RunControl;

/// After this process was stopped by a signal, how long it waits for the other processes to
/// finish the dataflow (they stop too when signalled) before leaving them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often the waiting loops look at the run's state.
const POLL: Duration = Duration::from_millis(50);

// The two statics below are process-wide on purpose: they are what the panic hook — itself
// process-wide (`std::panic::set_hook`) — consults, and a process takes part in one cluster
// at a time (its timely communication is bound to the process's address in the hostfile).
// Every other piece of a run's state is the run's own.

/// Set while a cluster run is active in this process: [`quiet_panic_hook`] acts only then.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The first failure a panic of one of the run's threads reported (see [`quiet_panic_hook`]).
static FIRST_PANIC: Mutex<Option<ClusterError>> = Mutex::new(None);

/// Starts the workers: `timely::execute` with `body` on each. In a cluster, connecting to the
/// other processes is bounded by `--connect-timeout` and by a stop of the run.
pub fn start<F>(
    config: timely::Config,
    t: &TimelyOptions,
    control: &RunControl,
    body: F,
) -> Result<WorkerGuards<()>>
where
    F: Fn(&mut timely::worker::Worker) + Send + Sync + 'static,
{
    if t.processes == 1 {
        return timely::execute(config, body)
            .map_err(|e| Error::internal(format!("starting timely workers: {e}")));
    }
    ACTIVE.store(true, Ordering::SeqCst);
    *FIRST_PANIC.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cluster-connect".into())
        .spawn(move || {
            let _ = tx.send(execute_cluster(config, body));
        })
        .map_err(|e| Error::internal(format!("starting the cluster connection: {e}")))?;
    let started = Instant::now();
    loop {
        match rx.recv_timeout(POLL) {
            Ok(started) => {
                return started
                    .map_err(|e| Error::internal(format!("starting timely workers: {e}")))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::internal(
                    "starting timely workers: the thread failed",
                ))
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if control.stopped() {
            return Err(ClusterError::StoppedConnecting.into());
        }
        if started.elapsed() >= t.connect_timeout {
            return Err(connect_timeout(t).into());
        }
    }
}

/// `timely::execute` for a cluster, over connections made by [`connect_all`] (which logs
/// through `tracing`; timely's own connection set-up prints on stdout).
fn execute_cluster<F>(
    config: timely::Config,
    body: F,
) -> std::result::Result<WorkerGuards<()>, String>
where
    F: Fn(&mut timely::worker::Worker) + Send + Sync + 'static,
{
    let CommunicationConfig::Cluster {
        threads,
        process,
        addresses,
        zerocopy: false,
        ..
    } = config.communication
    else {
        return timely::execute(config, body);
    };
    let networking = |e: std::io::Error| format!("failed to initialize networking: {e}");
    let sockets = connect_all(&addresses, process).map_err(networking)?;
    let hooks = Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(threads, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, sockets, process, threads, hooks)
            .map_err(networking)?;
    let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
    timely::execute::execute_from(builders, Box::new(guard), config.worker, body)
}

fn connect_timeout(t: &TimelyOptions) -> ClusterError {
    let hostfile = t
        .hostfile
        .as_ref()
        .map_or("the default localhost:2101+i".to_string(), |p| {
            p.display().to_string()
        });
    ClusterError::ConnectTimeout {
        process: t.process,
        processes: t.processes,
        seconds: t.connect_timeout.as_secs(),
        hostfile,
    }
}

/// Joins the workers. A single process waits for all of them (unless the run is abandoned,
/// [`RunControl::abandon`]: a stall). A cluster process returns as
/// soon as any worker, the committer or a connection failed (the failure is then in
/// `control`); a process stopped by a signal whose peers keep running (they were not
/// signalled) leaves after [`STOP_GRACE`]. A worker that panicked is a failure.
pub fn join(guards: WorkerGuards<()>, t: &TimelyOptions, control: &RunControl) {
    if t.processes == 1 {
        return join_local(guards, control);
    }
    let (tx, rx) = mpsc::channel();
    // Joining may panic when a connection thread did ("Send thread panic"): in a thread of its
    // own, that is only a closed channel.
    let joiner = std::thread::Builder::new()
        .name("cluster-join".into())
        .spawn(move || {
            let _ = tx.send(guards.join());
        });
    if joiner.is_err() {
        control.fail(Error::internal("starting the cluster-join thread failed"));
        return;
    }
    wait_for_cluster(&rx, t, control);
}

/// A single process: waits for every worker, unless the run is abandoned (a stall) first.
fn join_local(guards: WorkerGuards<()>, control: &RunControl) {
    let (tx, rx) = mpsc::channel();
    let joiner = std::thread::Builder::new()
        .name("workers-join".into())
        .spawn(move || {
            let _ = tx.send(guards.join());
        });
    if joiner.is_err() {
        control.fail(Error::internal("starting the workers-join thread failed"));
        return;
    }
    loop {
        match rx.recv_timeout(POLL) {
            Ok(results) => {
                // The join's text of a panic is only `Any { .. }`; the worker recorded the
                // message itself (the first failure is the run's error).
                if results.iter().any(|r| r.is_err()) {
                    let failure = ClusterError::WorkerFailed("a worker thread panicked".into());
                    control.fail(failure.into());
                }
                return;
            }
            Err(RecvTimeoutError::Disconnected) => {
                control.fail(Error::internal("joining the workers failed"));
                return;
            }
            Err(RecvTimeoutError::Timeout) if control.abandoned() => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

fn wait_for_cluster(
    rx: &mpsc::Receiver<Vec<std::result::Result<(), String>>>,
    t: &TimelyOptions,
    control: &RunControl,
) {
    let mut stopped_since: Option<Instant> = None;
    loop {
        take_recorded_panic(control);
        if control.failed() {
            return;
        }
        let joined = match rx.recv_timeout(POLL) {
            Ok(results) => results.into_iter().find_map(|r| r.err()),
            Err(RecvTimeoutError::Disconnected) => {
                Some("a connection thread of the cluster failed".into())
            }
            Err(RecvTimeoutError::Timeout) => {
                if stopped_long_enough(&mut stopped_since, t, control) {
                    return;
                }
                continue;
            }
        };
        // The panic that made the join fail, when recorded, says more than the join does.
        take_recorded_panic(control);
        if let Some(detail) = joined {
            control.fail(ClusterError::PeerLost { detail }.into());
        }
        // Every worker ended: the run's failures, if any, are in `control`.
        ACTIVE.store(false, Ordering::SeqCst);
        return;
    }
}

fn take_recorded_panic(control: &RunControl) {
    if let Some(failure) = FIRST_PANIC.lock().unwrap_or_else(|p| p.into_inner()).take() {
        control.fail(failure.into());
    }
}

/// Whether this process, stopped by a signal, has waited [`STOP_GRACE`] for peers that keep
/// running after all of its own workers returned.
fn stopped_long_enough(
    since: &mut Option<Instant>,
    t: &TimelyOptions,
    control: &RunControl,
) -> bool {
    if !control.stopped() || control.workers_returned() < t.workers {
        return false;
    }
    if since.get_or_insert_with(Instant::now).elapsed() < STOP_GRACE {
        return false;
    }
    tracing::warn!(
        "stopped, but other processes of the cluster are still running (stop a cluster by \
         signalling every process); leaving them"
    );
    true
}

fn is_connection_failure(message: &str) -> bool {
    message.starts_with("timely communication error") || message.contains("MergeQueue poisoned")
}

/// A panic hook for binaries: while a cluster run is active, a panic of one of the run's
/// threads prints nothing, is recorded for [`join`], which turns it into the run's one-line
/// error, and parks the thread for good (the process is about to end); any other panic goes
/// to `previous`. A panic that is not timely's reaction to a lost
/// connection (a bug) also goes to `previous`, to keep its location and backtrace.
pub fn quiet_panic_hook(
    previous: Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync>,
) -> Box<dyn Fn(&PanicHookInfo<'_>) + Send + Sync> {
    Box::new(move |info| {
        let current = std::thread::current();
        let name = current.name().unwrap_or("");
        let ours = name.starts_with("timely:")
            || ["chunk-feed", "committer", "cluster-join", "cluster-connect"].contains(&name);
        if !ACTIVE.load(Ordering::SeqCst) || !ours {
            return previous(info);
        }
        let message = panic_message(info.payload());
        // Joining panics only when a connection thread did ("Send thread panic").
        let message = match name {
            "cluster-join" => format!("timely communication error: {message}"),
            _ => message,
        };
        let peer = name
            .strip_prefix("timely:send-")
            .or_else(|| name.strip_prefix("timely:recv-"));
        let lost = |detail| ClusterError::PeerLost { detail };
        let failure = match (is_connection_failure(&message), peer) {
            (true, Some(p)) => lost(format!("the connection to process {p} failed ({message})")),
            (true, None) => lost(message),
            (false, Some(p)) => lost(format!(
                "communication with process {p} broke ({message}); every process must run \
                 with the same -n, -w and hostfile"
            )),
            (false, None) => {
                previous(info);
                ClusterError::WorkerFailed(format!(
                    "cluster thread {name} panicked: {message}; {CLUSTER_RESTART_HINT}"
                ))
            }
        };
        FIRST_PANIC
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(failure);
        // Unwinding a timely thread over a poisoned queue panics again in a destructor, which
        // aborts the process before the run can report why. [`join`] reports the failure and
        // the process ends; until then this thread waits.
        loop {
            std::thread::park();
        }
    })
}
