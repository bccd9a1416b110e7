//! What a run tells its operators: one [`Telemetry`] per run, a [`RunObserver`] of the
//! runtime's events (chunks seen, one [`EpochCommitted`] per epoch, checkpoints, a stall)
//! and told of start-up (recovery) by the run; read by the HTTP endpoint ([`crate::http`])
//! and the stall watchdog ([`StallProbe`]).
//!
//! | module | owns |
//! |---|---|
//! | [`metrics`] | the Prometheus metrics (`txflow_…`, `process_…`) and their encoding |
//! | [`recent`] | the ring of recent events `/api/status` lists |
//! | [`retries`] | the stores' retry counters of the run |
//! | [`state`] | the run's state: one function of the facts gathered here |
//! | [`status`] | the `/api/status` document and the per-epoch history it is written from |
//!
//! Updates are cheap: atomics, and one lock taken once per epoch or chunk, never per row.

pub mod metrics;
pub mod recent;
pub mod retries;
pub mod state;
pub mod status;
pub mod tally;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::retry_count::Retries;
use crate::runtime::events::{EpochCommitted, Event, RunObserver, Stage};
use crate::runtime::watchdog::StallProbe;
use crate::telemetry::metrics::{resident_bytes, Metrics, Present};
pub use crate::telemetry::recent::Level;
use crate::telemetry::recent::Recent;
use crate::telemetry::state::{assess, span, Assessment, Facts, Oldest, Recovering};
pub use crate::telemetry::state::{Limits, Phase, RunState};
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

/// `-1` in an atomic is "none".
fn epoch_of(v: i64) -> Option<u64> {
    (v >= 0).then_some(v as u64)
}

/// A run's figures. See the module documentation.
pub struct Telemetry {
    metrics: Metrics,
    book: Mutex<Book>,
    started: Instant,
    /// `started` in ms since the Unix epoch.
    started_ms: i64,
    live: bool,
    limits: Limits,
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
    /// Seen, uncommitted epochs: when each chunk became visible, its stage and since when.
    in_flight: Mutex<BTreeMap<u64, InFlight>>,
    /// Last-modified time of the newest chunk seen (`i64::MIN`: none).
    last_chunk_ms: AtomicI64,
    /// When this process last committed an epoch (`-1`: not yet).
    last_commit_ms: AtomicI64,
    landing: Mutex<LandingFacts>,
    recent: Recent,
    /// Counts the changes the status document shows: epochs, phases, the range, a stall.
    version: AtomicU64,
    /// The last status document built, shared by every request until it is stale.
    served: Mutex<Option<Served>>,
}

/// An epoch seen and not yet committed.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    /// When its chunk became visible (ms since the Unix epoch); `None` until the chunk is
    /// seen (a stage can be reported first).
    visible_ms: Option<i64>,
    stage: Stage,
    since: Instant,
}

impl InFlight {
    fn new(stage: Stage) -> InFlight {
        InFlight {
            visible_ms: None,
            stage,
            since: Instant::now(),
        }
    }
}

/// What the listings of the landing found.
#[derive(Debug, Default)]
struct LandingFacts {
    /// The last successful listing.
    listed_ms: Option<i64>,
    /// Why the last listing found no landing, or failed.
    missing: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Telemetry {
    /// The telemetry of a run given `run`, its state judged against `limits`.
    pub fn new(run: RunInfo, limits: Limits) -> Telemetry {
        let recent = Recent::default();
        Telemetry {
            metrics: Metrics::new(&recent),
            live: run.mode.as_deref() == Some("live"),
            book: Mutex::new(Book::new(run)),
            started: Instant::now(),
            started_ms: now_ms(),
            limits,
            phase: AtomicU8::new(Phase::Starting as u8),
            landing_edge: AtomicI64::new(-1),
            last_committed: AtomicI64::new(-1),
            last_through: AtomicI64::new(-1),
            recovering_to: AtomicI64::new(-1),
            last_progress_ms: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            stall: Mutex::new(None),
            failure: Mutex::new(None),
            in_flight: Mutex::new(BTreeMap::new()),
            last_chunk_ms: AtomicI64::new(i64::MIN),
            last_commit_ms: AtomicI64::new(-1),
            landing: Mutex::new(LandingFacts::default()),
            recent,
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
    /// `restored`: the epoch of the checkpoint the state was loaded from; the epochs up to it
    /// are not replayed, so when it covers every committed epoch there is nothing to recover.
    pub(crate) fn workers_starting(&self, recovered: &BTreeSet<u64>, restored: Option<u64>) {
        let last = recovered.last().map_or(-1, |e| *e as i64);
        self.last_committed.store(last, Ordering::SeqCst);
        self.recovering_to.store(last, Ordering::SeqCst);
        self.last_progress_ms
            .store(self.elapsed_ms(), Ordering::SeqCst);
        if last == -1 {
            return self.set_phase(Phase::Running);
        }
        self.set_phase(Phase::Recovering);
        if restored.is_some_and(|r| r as i64 >= last) {
            self.recovery_done();
            self.changed();
        }
    }

    /// The chunk feed fetched chunk `index`, last modified at `last_modified_ms`.
    pub(crate) fn chunk_seen(&self, index: u64, last_modified_ms: i64) {
        self.landing_edge.fetch_max(index as i64, Ordering::SeqCst);
        self.last_chunk_ms
            .fetch_max(last_modified_ms, Ordering::SeqCst);
        if self.committed(index) {
            return;
        }
        // A replay's chunks may be old: they count as visible once fetched.
        let visible = if self.live {
            last_modified_ms
        } else {
            now_ms()
        };
        lock(&self.in_flight)
            .entry(index)
            .or_insert_with(|| InFlight::new(Stage::Fetching))
            .visible_ms = Some(visible);
    }

    fn committed(&self, epoch: u64) -> bool {
        epoch_of(self.last_committed.load(Ordering::SeqCst)).is_some_and(|c| epoch <= c)
    }

    /// Epoch `epoch` entered `stage` (an earlier stage reported late is ignored).
    pub(crate) fn epoch_stage(&self, epoch: u64, stage: Stage) {
        if self.committed(epoch) {
            return;
        }
        let mut in_flight = lock(&self.in_flight);
        let entry = in_flight
            .entry(epoch)
            .or_insert_with(|| InFlight::new(stage));
        if entry.stage < stage {
            (entry.stage, entry.since) = (stage, Instant::now());
        }
    }

    /// A listing of the landing: `missing` is why there is none, `None` when it was listed.
    /// The change either way is a recent event.
    pub(crate) fn landing_listed(&self, missing: Option<&str>) {
        let mut landing = lock(&self.landing);
        match missing {
            None => {
                landing.listed_ms = Some(now_ms());
                if landing.missing.take().is_some() {
                    let message = "the landing is there again: listed".to_string();
                    self.recent.record(Level::Info, "landing_back", message);
                }
            }
            Some(why) => {
                if landing.missing.as_deref() != Some(why) {
                    self.recent
                        .record(Level::Warn, "landing_missing", why.to_string());
                    landing.missing = Some(why.to_string());
                }
            }
        }
        drop(landing);
        self.changed();
    }

    /// The feed has waited `waited` for `chunk`, which must exist (`why`).
    pub(crate) fn chunk_waited(&self, chunk: &str, waited: Duration, why: &str) {
        let message = format!(
            "waiting {} for {chunk}, which must exist: {why}",
            span(waited.as_secs_f64())
        );
        self.record_event(Level::Warn, "chunk_waited", message);
    }

    /// Adds an event to the recent events `/api/status` lists.
    pub(crate) fn record_event(&self, level: Level, kind: &'static str, message: String) {
        self.recent.record(level, kind, message);
        self.changed();
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
        let was_recovering = self
            .phase
            .compare_exchange(
                Phase::Recovering as u8,
                Phase::Running as u8,
                Ordering::SeqCst,
                Ordering::SeqCst,
            )
            .is_ok();
        let seconds = self.started.elapsed().as_secs_f64();
        self.metrics.recovery_seconds.set(seconds);
        if was_recovering {
            let replayed = lock(&self.book).epochs_recovered;
            let message = format!(
                "recovery done: {replayed} committed epochs replayed, {} after the start",
                span(seconds)
            );
            self.record_event(Level::Info, "recovered", message);
        }
    }

    /// The committer committed an epoch.
    pub(crate) fn epoch_committed(&self, record: &EpochCommitted) {
        let m = &self.metrics;
        m.epochs_committed.inc();
        m.rows_accepted.inc_by(record.rows);
        m.rejected(&record.rejects_by_reason);
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
        self.last_commit_ms
            .store(record.committed_at_ms, Ordering::SeqCst);
        {
            let mut in_flight = lock(&self.in_flight);
            *in_flight = in_flight.split_off(&(record.epoch + 1));
        }
        self.committed_events(record);
        let lag = self.present_lag();
        lock(&self.book).add(record, self.live, lag);
        self.changed();
    }

    /// The recent events of a committed epoch: its rejects, a slow commit.
    fn committed_events(&self, record: &EpochCommitted) {
        if record.rejected > 0 {
            let message = format!(
                "{} rows rejected in {} (epoch {})",
                record.rejected, record.chunk, record.epoch
            );
            self.recent.record(Level::Warn, "rejects", message);
        }
        let slow = self.limits.commit_slow();
        if record.commit > slow {
            let message = format!(
                "epoch {} took {} to commit (slow past {})",
                record.epoch,
                span(record.commit.as_secs_f64()),
                span(slow.as_secs_f64())
            );
            self.recent.record(Level::Warn, "commit_slow", message);
        }
    }

    /// The handle the run's S3 stores count their retries through.
    pub(crate) fn s3_retries(&self) -> Retries {
        self.metrics.s3_retries.handle()
    }

    /// The handle the run's state store counts its retries through.
    pub(crate) fn state_store_retries(&self) -> Retries {
        self.metrics.state_store_retries.handle()
    }

    /// Chunks seen and not committed.
    fn present_lag(&self) -> u64 {
        let landing_edge = epoch_of(self.landing_edge.load(Ordering::SeqCst));
        let last_committed = epoch_of(self.last_committed.load(Ordering::SeqCst));
        match (landing_edge, last_committed) {
            (Some(edge), Some(last)) => edge.saturating_sub(last),
            (Some(edge), None) => edge + 1,
            (None, _) => 0,
        }
    }

    /// The figures of the present moment, with the run's state.
    pub fn present(&self) -> Present {
        self.present_assessed().0
    }

    fn present_assessed(&self) -> (Present, Assessment) {
        let now = now_ms();
        let oldest = self.first_visible(0);
        let lag_seconds = oldest.map_or(0.0, |v| (now - v).max(0) as f64 / 1000.0);
        let last_chunk_ms =
            Some(self.last_chunk_ms.load(Ordering::SeqCst)).filter(|&v| v != i64::MIN);
        let last_commit_ms = Some(self.last_commit_ms.load(Ordering::SeqCst)).filter(|&v| v >= 0);
        let mut present = Present {
            landing_edge: epoch_of(self.landing_edge.load(Ordering::SeqCst)),
            last_committed: epoch_of(self.last_committed.load(Ordering::SeqCst)),
            lag_chunks: self.present_lag(),
            lag_seconds,
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            resident_bytes: resident_bytes(),
            ready: false,
            stalled: lock(&self.stall).is_some(),
            state: RunState::Starting,
            failed: self.phase() == Phase::Failed,
            last_chunk_ms,
            last_commit_ms,
        };
        let assessment = assess(&self.facts(&present, now));
        (present.ready, present.state) = (assessment.ready, assessment.state);
        (present, assessment)
    }

    /// What the state is judged from, at `now`.
    fn facts(&self, present: &Present, now: i64) -> Facts {
        let (landing_listed_ms, landing_missing) = {
            let landing = lock(&self.landing);
            (landing.listed_ms, landing.missing.clone())
        };
        Facts {
            phase: self.phase(),
            failure: lock(&self.failure).as_ref().map(|f| f.message.clone()),
            stall: lock(&self.stall).clone(),
            live: self.live,
            now_ms: now,
            started_ms: self.started_ms,
            lag_chunks: present.lag_chunks,
            oldest: self.oldest(present, now),
            last_chunk_ms: present.last_chunk_ms,
            landing_listed_ms,
            landing_missing,
            recovering: self.recovering(),
            last_committed: present.last_committed,
            limits: self.limits,
        }
    }

    /// The oldest epoch seen and not committed: how long since its chunk became visible, its
    /// stage and since when (fetching since seen, when no stage was reported).
    fn oldest(&self, present: &Present, now: i64) -> Option<Oldest> {
        if present.lag_chunks == 0 {
            return None;
        }
        let epoch = present.last_committed.map_or(0, |c| c + 1);
        let visible = self.first_visible(epoch);
        let waiting_seconds = visible.map_or(0.0, |v| (now - v).max(0) as f64 / 1000.0);
        let staged = lock(&self.in_flight)
            .range(epoch..)
            .next()
            .map(|(k, f)| (*k, f.stage, f.since.elapsed().as_secs_f64()));
        let (epoch, stage, stage_seconds) =
            staged.unwrap_or((epoch, Stage::Fetching, waiting_seconds));
        Some(Oldest {
            epoch,
            waiting_seconds,
            stage,
            stage_seconds,
        })
    }

    /// When the first epoch from `epoch` on whose chunk was seen became visible.
    fn first_visible(&self, epoch: u64) -> Option<i64> {
        lock(&self.in_flight)
            .range(epoch..)
            .find_map(|(_, f)| f.visible_ms)
    }

    /// A recovery's progress: epochs replayed of those to replay.
    fn recovering(&self) -> Option<Recovering> {
        let book = lock(&self.book);
        let to = epoch_of(self.recovering_to.load(Ordering::SeqCst))?;
        let (source, to_replay) = match &book.restore {
            Some(r) => (r.source, r.replayed_chunks),
            None => ("full replay", to + 1),
        };
        Some(Recovering {
            source,
            replayed: book.epochs_recovered,
            to_replay,
        })
    }

    /// The run's state, whether it is ready, and why.
    pub fn assessment(&self) -> Assessment {
        self.present_assessed().1
    }

    /// `/readyz`: `Ok` with the state's summary when the run is ready, else `Err` with it.
    pub(crate) fn readiness(&self) -> Result<String, String> {
        let assessment = self.assessment();
        match assessment.ready {
            true => Ok(assessment.detail.summary),
            false => Err(assessment.detail.summary),
        }
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
        self.record_event(Level::Error, "failure", error.to_string());
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
        let (present, assessment) = t.present_assessed();
        let book = lock(&t.book);
        Status {
            generated_at_ms: Some(now_ms()),
            run: book.run.clone(),
            state: assessment.state.as_str(),
            ready: Some(assessment.ready),
            state_detail: Some(assessment.detail),
            recent_events: Some(t.recent.newest_first()),
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
                last_commit_ms: Some(present.last_commit_ms),
            },
            throughput: book.throughput(t.started),
            detections: book.detections(),
            latest_detections: book.latest(),
            rejects: book.rejects(),
            history: book.history(),
            error: lock(&t.failure).clone(),
            truncated: false,
            previous_error: book.previous_error.clone(),
            variants: book.variant_volumes(),
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

    /// Records a stall: the state is `stalled` from now on, and `/readyz` fails with
    /// `reason`.
    pub(crate) fn set_stalled(&self, reason: String) {
        *lock(&self.stall) = Some(reason.clone());
        self.record_event(Level::Error, "stall", reason);
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
            Event::EpochStage { epoch, stage } => self.epoch_stage(epoch, stage),
            Event::LandingListed { missing } => self.landing_listed(missing),
            Event::ChunkWaited { chunk, waited, why } => self.chunk_waited(chunk, waited, why),
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
        Telemetry::new(run, Limits::default())
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
    fn a_checkpoint_covering_every_committed_epoch_leaves_nothing_to_recover() {
        let t = live();
        t.workers_starting(&[0, 1, 2].into_iter().collect(), Some(2));
        assert_ne!(t.status().state, "recovering");
        let t = live();
        t.workers_starting(&[0, 1, 2].into_iter().collect(), Some(1));
        assert_eq!(t.status().state, "recovering");
    }

    #[test]
    fn readiness_follows_recovery_and_lag() {
        let t = live();
        assert!(t.readiness().unwrap_err().contains("starting"));
        t.workers_starting(&[0, 1].into_iter().collect(), None);
        assert!(t.readiness().unwrap_err().contains("recovering"));
        t.chunk_seen(0, now_ms());
        t.epoch_replayed(0);
        t.chunk_seen(1, now_ms());
        t.epoch_replayed(1);
        // Its last chunk just arrived: up to date (waiting for input once quiet).
        assert!(t.readiness().unwrap().starts_with("up to date"));
        assert_eq!(t.status().state, "up_to_date");
        for k in 2..6 {
            t.chunk_seen(k, now_ms());
        }
        let behind = t.readiness().unwrap_err();
        assert!(
            behind.starts_with("behind: 4 chunks not committed"),
            "{behind}"
        );
        t.epoch_committed(&EpochCommitted {
            epoch: 2,
            ..EpochCommitted::default()
        });
        assert!(t.readiness().unwrap_err().contains("behind: 3 chunks"));
        t.epoch_committed(&EpochCommitted {
            epoch: 3,
            ..EpochCommitted::default()
        });
        let in_flight = t.readiness().unwrap();
        assert!(
            in_flight.starts_with("up to date: 2 chunks in flight"),
            "{in_flight}"
        );
        assert_eq!(t.status().state, "up_to_date");
        assert_eq!(t.present().state, RunState::UpToDate);
        assert_eq!(t.status().progress.epochs_recovered, Some(2));
    }

    #[test]
    fn the_status_document_is_built_once_per_change_and_shared() {
        let t = live();
        t.workers_starting(&BTreeSet::new(), None);
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
        t.workers_starting(&BTreeSet::new(), None);
        assert_eq!(t.stalled_for(Duration::ZERO), None);
        t.chunk_seen(0, now_ms());
        assert_eq!(t.stalled_for(Duration::from_secs(60)), None);
        let (_, first, edge) = t.stalled_for(Duration::ZERO).unwrap();
        assert_eq!((first, edge), (0, 0));
        t.epoch_committed(&EpochCommitted::default());
        assert_eq!(t.stalled_for(Duration::ZERO), None);
        t.set_stalled("stalled: test".into());
        assert_eq!(t.readiness(), Err("stalled: test".into()));
        let status = t.status();
        assert_eq!((status.state, status.ready), ("stalled", Some(false)));
        let events = status.recent_events.unwrap();
        assert_eq!((events[0].kind, events[0].level), ("stall", "error"));
        assert_eq!(t.present().state, RunState::Stalled);
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
        assert_eq!(
            t.readiness(),
            Err("failed: the importance file x is missing".into())
        );
        assert!(t.present().failed);
    }

    fn committed(epoch: u64, rejected: u64, commit: Duration) -> EpochCommitted {
        EpochCommitted {
            epoch,
            chunk: crate::sources::landing::chunk_key(epoch),
            rejected,
            commit,
            visible_ms: 1_000,
            committed_at_ms: 5_000,
            ..EpochCommitted::default()
        }
    }

    #[test]
    fn the_oldest_in_flight_epoch_has_the_latest_stage_reported() {
        let t = live();
        t.workers_starting(&BTreeSet::new(), None);
        for k in 0..3 {
            t.chunk_seen(k, now_ms());
        }
        let stage_of = |t: &Telemetry| {
            let behind = t.assessment().detail.behind.unwrap();
            (behind.oldest_waiting_epoch, behind.stage, behind.chunks)
        };
        assert_eq!(stage_of(&t), (0, "fetching", 3));
        t.epoch_stage(0, Stage::Computing);
        t.epoch_stage(1, Stage::Computing);
        assert_eq!(stage_of(&t), (0, "computing", 3));
        t.epoch_stage(0, Stage::Committing);
        // A stage reported late does not go back.
        t.epoch_stage(0, Stage::Fetching);
        assert_eq!(stage_of(&t), (0, "committing", 3));
        t.epoch_committed(&committed(0, 0, Duration::ZERO));
        assert_eq!(stage_of(&t), (1, "computing", 2));
        // Committed epochs have no stage any more.
        t.epoch_stage(0, Stage::Committing);
        assert_eq!(stage_of(&t), (1, "computing", 2));
    }

    #[test]
    fn a_missing_landing_is_waited_for_and_its_return_is_an_event() {
        let t = live();
        t.workers_starting(&BTreeSet::new(), None);
        t.landing_listed(Some("the landing directory /x does not exist"));
        t.landing_listed(Some("the landing directory /x does not exist"));
        let a = t.assessment();
        assert_eq!((a.state, a.ready), (RunState::WaitingForInput, false));
        assert!(a.detail.landing_missing && a.detail.landing_listed_ms.is_none());
        assert!(!t.present().ready);
        t.landing_listed(None);
        let a = t.assessment();
        assert_eq!((a.state, a.ready), (RunState::WaitingForInput, true));
        assert!(!a.detail.landing_missing && a.detail.landing_listed_ms.is_some());
        let kinds: Vec<&str> = t.recent.newest_first().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["landing_back", "landing_missing"]);
    }

    #[test]
    fn an_idle_landing_is_not_ready_past_ready_max_idle() {
        let run = RunInfo {
            mode: Some("live".into()),
            ..RunInfo::default()
        };
        let limits = Limits {
            ready_max_idle: Some(Duration::from_secs(30)),
            ..Limits::default()
        };
        let t = Telemetry::new(run, limits);
        t.workers_starting(&BTreeSet::new(), None);
        t.chunk_seen(0, now_ms() - 31_000);
        t.epoch_committed(&committed(0, 0, Duration::ZERO));
        let a = t.assessment();
        assert_eq!((a.state, a.ready), (RunState::WaitingForInput, false));
        assert!(
            a.detail.summary.contains("--ready-max-idle 30 s"),
            "{}",
            a.detail.summary
        );
        t.chunk_seen(1, now_ms());
        t.epoch_committed(&committed(1, 0, Duration::ZERO));
        assert!(t.assessment().ready);
    }

    #[test]
    fn rejects_slow_commits_waits_and_recovery_are_recent_events_newest_first() {
        let t = live();
        t.workers_starting(&[0].into_iter().collect(), None);
        t.chunk_seen(0, now_ms());
        t.epoch_replayed(0);
        t.epoch_committed(&committed(1, 3, Duration::from_secs(80)));
        t.chunk_waited(
            "chunk-000003.csv",
            Duration::from_secs(20),
            "chunk-000004.csv exists",
        );
        t.record_event(Level::Error, "failure", "the state store is gone".into());
        let json = serde_json::to_value(t.status()).unwrap();
        let events = json["recent_events"].as_array().unwrap();
        let got: Vec<(&str, &str, &str)> = events
            .iter()
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap();
                (text("kind"), text("level"), text("message"))
            })
            .collect();
        assert_eq!(
            got,
            [
                ("failure", "error", "the state store is gone"),
                (
                    "chunk_waited",
                    "warn",
                    "waiting 20 s for chunk-000003.csv, which must exist: chunk-000004.csv exists"
                ),
                (
                    "commit_slow",
                    "warn",
                    "epoch 1 took 80 s to commit (slow past 75 s)"
                ),
                (
                    "rejects",
                    "warn",
                    "3 rows rejected in chunk-000001.csv (epoch 1)"
                ),
                (
                    "recovered",
                    "info",
                    "recovery done: 1 committed epochs replayed, 0 s after the start"
                ),
            ]
        );
        assert!(events[0]["at"].as_str().unwrap().ends_with("+05:30"));
    }

    #[test]
    fn the_status_has_its_time_readiness_and_each_epochs_commit_and_lag() {
        let t = live();
        t.workers_starting(&BTreeSet::new(), None);
        for k in 0..3 {
            t.chunk_seen(k, 1_000);
        }
        t.epoch_committed(&committed(0, 0, Duration::ZERO));
        let before = now_ms();
        let json = serde_json::to_value(t.status()).unwrap();
        assert!(json["generated_at_ms"].as_i64().unwrap() >= before);
        assert_eq!(json["ready"], true);
        assert_eq!(json["state"], "up_to_date");
        assert_eq!(json["progress"]["last_commit_ms"], 5_000);
        let entry = &json["history"][0];
        assert_eq!(
            (
                &entry["committed_at_ms"],
                &entry["visible_ms"],
                &entry["lag_chunks"]
            ),
            (&5_000.into(), &1_000.into(), &2.into())
        );
        let detail = &json["state_detail"];
        assert_eq!(detail["last_chunk_ms"], 1_000);
        assert_eq!(detail["behind"]["chunks"], 2);
        assert_eq!(detail["landing_missing"], false);
        assert!(detail["what_to_do"].is_string());
        assert!(json["previous_error"].is_null());
    }
}
