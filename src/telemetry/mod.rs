//! What a run tells its operators: one [`Telemetry`] per run, a [`RunObserver`] of the
//! runtime's events (chunks seen, one [`EpochCommitted`] per epoch, checkpoints, a stall)
//! and told of start-up (recovery) by the run; read by the HTTP endpoint ([`crate::http`])
//! and the stall watchdog ([`StallProbe`]).
//!
//! | module | owns |
//! |---|---|
//! | [`metrics`] | the Prometheus metrics (`txflow_…`) and their encoding |
//! | [`retries`] | the stores' retry counters of the run |
//! | [`status`] | the `/api/status` document and the per-epoch history it is written from |
//!
//! Updates are cheap: atomics, and one lock taken once per epoch or chunk, never per row.

pub mod metrics;
pub mod retries;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::retry_count::Retries;
use crate::runtime::events::{EpochCommitted, Event, RunObserver};
use crate::runtime::watchdog::StallProbe;
use crate::telemetry::metrics::{resident_bytes, Metrics, Present};
use crate::telemetry::status::{Book, PreviousError, Progress, RunFailure, MAX_STATUS_BYTES};
pub use crate::telemetry::status::{RunInfo, Status};
use crate::time::now_ms;

/// How long a served status document is reused when nothing recorded has changed (its
/// time-dependent figures, lag and throughput, are at most this old).
pub(crate) const STATUS_REFRESH: Duration = Duration::from_secs(1);

/// The encoded `/api/status` document as served, with the change it reflects.
struct Served {
    json: bytes::Bytes,
    version: u64,
    built: Instant,
}

pub use crate::runtime::options::DEFAULT_READY_MAX_LAG;

/// Where the run is (`state` of `/api/status`; `up_to_date` is `Running` with no lag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Recovering = 1,
    Running = 2,
    Ended = 3,
    Stopped = 4,
    Failed = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        [
            Phase::Starting,
            Phase::Recovering,
            Phase::Running,
            Phase::Ended,
            Phase::Stopped,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Phase::Failed)
    }
}

/// `-1` in an atomic is "none".
fn epoch_of(v: i64) -> Option<u64> {
    (v >= 0).then_some(v as u64)
}

/// A run's figures. See the module documentation.
pub struct Telemetry {
    metrics: Metrics,
    book: Mutex<Book>,
    started: Instant,
    live: bool,
    ready_max_lag: u64,
    phase: AtomicU8,
    landing_edge: AtomicI64,
    last_committed: AtomicI64,
    /// The last epoch the committer took (committed or replayed).
    last_through: AtomicI64,
    /// The last epoch an earlier run committed (recovery ends when it is replayed).
    recovering_to: AtomicI64,
    /// Milliseconds after `started` of the last epoch through the committer.
    last_progress_ms: AtomicU64,
    queue_depth: AtomicU64,
    stall: Mutex<Option<String>>,
    /// Why the run failed, once it has.
    failure: Mutex<Option<RunFailure>>,
    /// Seen, uncommitted chunks → when each became visible (ms since the Unix epoch).
    visible: Mutex<BTreeMap<u64, i64>>,
    /// Counts the changes the status document shows: epochs, phases, the range, a stall.
    version: AtomicU64,
    /// The last status document built, shared by every request until it is stale.
    served: Mutex<Option<Served>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Telemetry {
    pub fn new(run: RunInfo, ready_max_lag: u64) -> Telemetry {
        Telemetry {
            metrics: Metrics::new(),
            live: run.mode.as_deref() == Some("live"),
            book: Mutex::new(Book::new(run)),
            started: Instant::now(),
            ready_max_lag,
            phase: AtomicU8::new(Phase::Starting as u8),
            landing_edge: AtomicI64::new(-1),
            last_committed: AtomicI64::new(-1),
            last_through: AtomicI64::new(-1),
            recovering_to: AtomicI64::new(-1),
            last_progress_ms: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            stall: Mutex::new(None),
            failure: Mutex::new(None),
            visible: Mutex::new(BTreeMap::new()),
            version: AtomicU64::new(0),
            served: Mutex::new(None),
        }
    }

    /// Something the status document shows changed.
    fn changed(&self) {
        self.version.fetch_add(1, Ordering::SeqCst);
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
        self.changed();
    }

    /// A replay's range, once resolved: every chunk of it is in the landing store, so its
    /// last one is the landing edge.
    pub(crate) fn set_range(&self, from: u64, to: u64) {
        self.landing_edge.fetch_max(to as i64, Ordering::SeqCst);
        lock(&self.book).run.range = Some([Some(from), Some(to)]);
        self.changed();
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Start-up is done: the workers start, replaying first the epochs in `recovered`.
    pub(crate) fn workers_starting(&self, recovered: &BTreeSet<u64>) {
        let last = recovered.last().map_or(-1, |e| *e as i64);
        self.last_committed.store(last, Ordering::SeqCst);
        self.recovering_to.store(last, Ordering::SeqCst);
        self.last_progress_ms
            .store(self.elapsed_ms(), Ordering::SeqCst);
        self.set_phase(match last {
            -1 => Phase::Running,
            _ => Phase::Recovering,
        });
    }

    /// The chunk feed fetched chunk `index`, last modified at `last_modified_ms`.
    pub(crate) fn chunk_seen(&self, index: u64, last_modified_ms: i64) {
        self.landing_edge.fetch_max(index as i64, Ordering::SeqCst);
        if epoch_of(self.last_committed.load(Ordering::SeqCst)).is_some_and(|c| index <= c) {
            return;
        }
        // A replay's chunks may be old: they count as visible once fetched.
        let visible = if self.live {
            last_modified_ms
        } else {
            now_ms()
        };
        lock(&self.visible).insert(index, visible);
    }

    /// The committing thread took an epoch out of its queue; `waiting` are left.
    pub(crate) fn queue_depth(&self, waiting: usize) {
        self.queue_depth.store(waiting as u64, Ordering::Relaxed);
    }

    fn progressed(&self, epoch: u64) {
        self.last_through.fetch_max(epoch as i64, Ordering::SeqCst);
        self.last_progress_ms
            .store(self.elapsed_ms(), Ordering::SeqCst);
    }

    /// How the start rebuilds the state: from the checkpoint of `checkpoint_epoch` (read in
    /// `load_seconds`), then `replayed_chunks` committed chunks.
    pub fn restoring(&self, restore: status::RestoreInfo) {
        lock(&self.book).restore = Some(restore);
    }

    /// A checkpoint of `epoch` was written (`bytes` in all, in `took`).
    pub(crate) fn checkpoint_written(&self, epoch: u64, bytes: u64, took: std::time::Duration) {
        self.metrics.checkpoint_seconds.observe(took.as_secs_f64());
        self.metrics.checkpoint_bytes.set(bytes as i64);
        self.metrics.checkpoint_last_epoch.set(epoch as i64);
    }

    /// A checkpoint could not be written.
    pub(crate) fn checkpoint_failed(&self) {
        self.metrics.checkpoint_failures.inc();
    }

    /// The committer skipped `epoch`: an earlier run committed it.
    pub(crate) fn epoch_replayed(&self, epoch: u64) {
        self.progressed(epoch);
        self.metrics.epochs_replayed.inc();
        lock(&self.book).epochs_recovered += 1;
        if epoch as i64 >= self.recovering_to.load(Ordering::SeqCst) {
            self.recovery_done();
        }
        self.changed();
    }

    fn recovery_done(&self) {
        let _ = self.phase.compare_exchange(
            Phase::Recovering as u8,
            Phase::Running as u8,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.metrics
            .recovery_seconds
            .set(self.started.elapsed().as_secs_f64());
    }

    /// The committer committed an epoch.
    pub(crate) fn epoch_committed(&self, record: &EpochCommitted) {
        let m = &self.metrics;
        m.epochs_committed.inc();
        m.rows_accepted.inc_by(record.rows);
        m.rows_rejected.inc_by(record.rejected);
        for row in &record.detections {
            m.detections
                .get_or_create(&[("pattern", row.pattern.id().to_string())])
                .inc();
        }
        if self.live {
            let ms = record.visible_to_commit_ms();
            m.visible_to_commit.observe(ms.max(0) as f64 / 1000.0);
        }
        if let Some(compute) = record.compute {
            m.compute.observe(compute.as_secs_f64());
        }
        m.commit.observe(record.commit.as_secs_f64());
        self.last_committed
            .fetch_max(record.epoch as i64, Ordering::SeqCst);
        self.progressed(record.epoch);
        if self.phase() == Phase::Recovering {
            self.recovery_done();
        }
        {
            let mut visible = lock(&self.visible);
            *visible = visible.split_off(&(record.epoch + 1));
        }
        lock(&self.book).add(record, self.live);
        self.changed();
    }

    /// The handle the run's S3 stores count their retries through.
    pub(crate) fn s3_retries(&self) -> Retries {
        self.metrics.s3_retries.handle()
    }

    /// The handle the run's state store counts its retries through.
    pub(crate) fn state_store_retries(&self) -> Retries {
        self.metrics.state_store_retries.handle()
    }

    /// The figures of the present moment.
    pub fn present(&self) -> Present {
        let landing_edge = epoch_of(self.landing_edge.load(Ordering::SeqCst));
        let last_committed = epoch_of(self.last_committed.load(Ordering::SeqCst));
        let lag_chunks = match (landing_edge, last_committed) {
            (Some(edge), Some(last)) => edge.saturating_sub(last),
            (Some(edge), None) => edge + 1,
            (None, _) => 0,
        };
        let oldest = lock(&self.visible).values().next().copied();
        let lag_seconds = oldest.map_or(0.0, |v| (now_ms() - v).max(0) as f64 / 1000.0);
        let mut present = Present {
            landing_edge,
            last_committed,
            lag_chunks,
            lag_seconds,
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            resident_bytes: resident_bytes(),
            ready: false,
            stalled: lock(&self.stall).is_some(),
        };
        present.ready = self.readiness_of(&present).is_ok();
        present
    }

    /// `/readyz`: `Ok` when recovery finished, the run is within `--ready-max-lag` chunks of
    /// the landing edge and not stalled; else why not, in one line.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        self.readiness_of(&self.present())
    }

    fn readiness_of(&self, present: &Present) -> Result<(), String> {
        if let Some(stall) = lock(&self.stall).as_ref() {
            return Err(stall.clone());
        }
        match self.phase() {
            Phase::Starting => return Err("starting".into()),
            Phase::Recovering => return Err("recovering: replaying committed epochs".into()),
            Phase::Failed => return Err("the run failed".into()),
            Phase::Stopped => return Err("stopped".into()),
            Phase::Running | Phase::Ended => {}
        }
        if present.lag_chunks > self.ready_max_lag {
            return Err(format!(
                "{} chunks behind the landing edge (more than {})",
                present.lag_chunks, self.ready_max_lag
            ));
        }
        Ok(())
    }

    /// The Prometheus text of `/metrics`.
    pub(crate) fn metrics_text(&self) -> String {
        self.metrics.encode(&self.present())
    }

    /// The `/api/status` document, encoded (at most [`MAX_STATUS_BYTES`]): built once per
    /// change it shows (an epoch committed or replayed, a phase, the range, a stall), or once
    /// the last is [`STATUS_REFRESH`] old, and shared by every request meanwhile. Concurrent
    /// requests wait for one build.
    pub fn status_json(&self) -> Result<bytes::Bytes, serde_json::Error> {
        let mut served = lock(&self.served);
        let version = self.version.load(Ordering::SeqCst);
        if let Some(s) = served.as_ref() {
            if s.version == version && s.built.elapsed() < STATUS_REFRESH {
                return Ok(s.json.clone());
            }
        }
        let json = bytes::Bytes::from(self.status().into_json(MAX_STATUS_BYTES)?);
        *served = Some(Served {
            json: json.clone(),
            version,
            built: Instant::now(),
        });
        Ok(json)
    }

    /// The run failed with `error`: the state is `failed`, and the status says why, whose
    /// fault it is and the exit status it ends with.
    pub fn failed(&self, error: &crate::error::Error) {
        *lock(&self.failure) = Some(RunFailure::of(error));
        // LEAD: add `self.record_event(level error, kind "failure", error's line)` here once
        // `Telemetry::record_event` is merged (the recent-events ring is another branch's).
        self.set_phase(Phase::Failed);
    }

    /// The last failure an earlier run recorded in the state store (`previous_error`).
    pub(crate) fn set_previous_error(&self, previous: Option<PreviousError>) {
        lock(&self.book).previous_error = previous;
        self.changed();
    }

    /// The `/api/status` document ([`Status::from_telemetry`]).
    pub fn status(&self) -> Status {
        Status::from_telemetry(self)
    }
}

impl Status {
    /// The status of a running process: its telemetry's figures.
    pub(crate) fn from_telemetry(telemetry: &Telemetry) -> Status {
        let t = telemetry;
        let present = t.present();
        let phase = t.phase();
        let book = lock(&t.book);
        let state = match phase {
            Phase::Running if present.lag_chunks == 0 => "up_to_date",
            Phase::Running => "running",
            Phase::Starting => "starting",
            Phase::Recovering => "recovering",
            Phase::Ended => "ended",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        };
        Status {
            run: book.run.clone(),
            state: if present.stalled { "failed" } else { state },
            progress: Progress {
                epochs_committed: book.epochs_committed,
                epochs_recovered: Some(book.epochs_recovered),
                restore: Some(book.restore.clone()),
                last_committed_epoch: present.last_committed,
                landing_edge: present.landing_edge,
                lag_chunks: Some(present.lag_chunks),
                lag_seconds: Some(present.lag_seconds),
                rows_accepted: book.rows_accepted,
                rows_rejected: book.rows_rejected,
            },
            throughput: book.throughput(t.started),
            detections: book.detections(),
            latest_detections: book.latest(),
            rejects: book.rejects(),
            history: book.history(),
            error: lock(&t.failure).clone(),
            truncated: false,
            previous_error: book.previous_error.clone(),
        }
    }
}

impl Telemetry {
    /// The stall check of the watchdog: `Some((waited, first waiting chunk, edge))` when no
    /// epoch went through the committer for `timeout` while chunks past it were seen.
    pub(crate) fn stalled_for(&self, timeout: Duration) -> Option<(Duration, u64, u64)> {
        let edge = epoch_of(self.landing_edge.load(Ordering::SeqCst))?;
        let through = self.last_through.load(Ordering::SeqCst);
        if edge as i64 <= through {
            return None;
        }
        let since = self.last_progress_ms.load(Ordering::SeqCst);
        let waited = Duration::from_millis(self.elapsed_ms().saturating_sub(since));
        (waited >= timeout).then_some((waited, (through + 1) as u64, edge))
    }

    /// Records a stall: `/readyz` fails with `reason` from now on.
    pub(crate) fn set_stalled(&self, reason: String) {
        *lock(&self.stall) = Some(reason);
        self.changed();
    }
}

impl RunObserver for Telemetry {
    fn observe(&self, event: &Event<'_>) {
        match *event {
            Event::ChunkSeen {
                index,
                last_modified_ms,
            } => self.chunk_seen(index, last_modified_ms),
            Event::QueueDepth { waiting } => self.queue_depth(waiting),
            Event::EpochCommitted(record) => self.epoch_committed(record),
            Event::EpochReplayed(replayed) => self.epoch_replayed(replayed.epoch),
            Event::CheckpointWritten { epoch, bytes, took } => {
                self.checkpoint_written(epoch, bytes, took)
            }
            Event::CheckpointFailed => self.checkpoint_failed(),
            Event::Stalled { reason } => self.set_stalled(reason.to_string()),
        }
    }
}

impl StallProbe for Telemetry {
    fn stalled_for(&self, timeout: Duration) -> Option<(Duration, u64, u64)> {
        Telemetry::stalled_for(self, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Telemetry {
        let run = RunInfo {
            mode: Some("live".into()),
            ..RunInfo::default()
        };
        Telemetry::new(run, 2)
    }

    #[test]
    fn the_status_says_how_the_state_was_rebuilt() {
        let t = live();
        assert_eq!(t.status().progress.restore, Some(None));
        let restore = status::RestoreInfo {
            source: "checkpoint",
            checkpoint_epoch: Some(99),
            load_seconds: 0.5,
            replayed_chunks: 3,
        };
        t.restoring(restore.clone());
        assert_eq!(t.status().progress.restore, Some(Some(restore)));
        let json = serde_json::to_value(t.status()).unwrap();
        assert_eq!(json["progress"]["restore"]["checkpoint_epoch"], 99);
    }

    #[test]
    fn readiness_follows_recovery_and_lag() {
        let t = live();
        assert!(t.readiness().unwrap_err().contains("starting"));
        t.workers_starting(&[0, 1].into_iter().collect());
        assert!(t.readiness().unwrap_err().contains("recovering"));
        t.chunk_seen(0, now_ms());
        t.epoch_replayed(0);
        t.chunk_seen(1, now_ms());
        t.epoch_replayed(1);
        assert_eq!(t.readiness(), Ok(()));
        for k in 2..6 {
            t.chunk_seen(k, now_ms());
        }
        assert!(t.readiness().unwrap_err().contains("4 chunks behind"));
        t.epoch_committed(&EpochCommitted {
            epoch: 2,
            ..EpochCommitted::default()
        });
        assert!(t.readiness().unwrap_err().contains("3 chunks behind"));
        t.epoch_committed(&EpochCommitted {
            epoch: 3,
            ..EpochCommitted::default()
        });
        assert_eq!(t.readiness(), Ok(()));
        assert_eq!(t.status().state, "running");
        assert_eq!(t.status().progress.epochs_recovered, Some(2));
    }

    #[test]
    fn the_status_document_is_built_once_per_change_and_shared() {
        let t = live();
        t.workers_starting(&BTreeSet::new());
        let first = t.status_json().unwrap();
        t.chunk_seen(0, now_ms());
        let again = t.status_json().unwrap();
        assert_eq!(first.as_ptr(), again.as_ptr(), "one build between commits");
        t.epoch_committed(&EpochCommitted::default());
        let committed = t.status_json().unwrap();
        assert_ne!(first.as_ptr(), committed.as_ptr(), "rebuilt after a commit");
        let value: serde_json::Value = serde_json::from_slice(&committed).unwrap();
        assert_eq!(value["progress"]["epochs_committed"], 1);
        t.set_phase(Phase::Ended);
        let ended = t.status_json().unwrap();
        let value: serde_json::Value = serde_json::from_slice(&ended).unwrap();
        assert_eq!(value["state"], "ended");
        // Time-dependent figures are at most STATUS_REFRESH old.
        std::thread::sleep(STATUS_REFRESH);
        assert_ne!(ended.as_ptr(), t.status_json().unwrap().as_ptr());
    }

    #[test]
    fn a_stall_needs_waiting_chunks_and_time() {
        let t = live();
        t.workers_starting(&BTreeSet::new());
        assert_eq!(t.stalled_for(Duration::ZERO), None);
        t.chunk_seen(0, now_ms());
        assert_eq!(t.stalled_for(Duration::from_secs(60)), None);
        let (_, first, edge) = t.stalled_for(Duration::ZERO).unwrap();
        assert_eq!((first, edge), (0, 0));
        t.epoch_committed(&EpochCommitted::default());
        assert_eq!(t.stalled_for(Duration::ZERO), None);
        t.set_stalled("stalled: test".into());
        assert_eq!(t.readiness(), Err("stalled: test".into()));
        assert_eq!(t.status().state, "failed");
    }

    #[test]
    fn a_failed_run_says_why_whose_fault_and_its_exit_status() {
        let t = live();
        assert!(t.status().error.is_none());
        let json = String::from_utf8(t.status().into_json(MAX_STATUS_BYTES).unwrap()).unwrap();
        assert!(!json.contains("\"error\""), "{json}");
        t.failed(&crate::error::Error::configuration(
            "the importance file x is missing",
        ));
        let status = t.status();
        assert_eq!(status.state, "failed");
        let failure = status.error.clone().unwrap();
        assert_eq!(failure.message, "the importance file x is missing");
        assert_eq!(
            (failure.domain.as_str(), failure.exit_code),
            ("configuration", 78)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&status.into_json(MAX_STATUS_BYTES).unwrap()).unwrap();
        assert_eq!(json["error"]["exit_code"], 78);
        assert_eq!(t.readiness(), Err("the run failed".into()));
    }
}
