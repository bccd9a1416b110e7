//! The status document ([`Status`]): `/api/status` and the console build it from the run's
//! telemetry ([`Status::from_telemetry`](crate::telemetry::Telemetry::status)), `txflow-report`
//! from a state store (`Status::from_store`, in [`crate::report::status`]); what a source does
//! not know is `null`. The telemetry's [`Book`] keeps run totals, detections and rejects by
//! kind, the newest detections and the last [`HISTORY_EPOCHS`] epochs; each
//! [`EpochCommitted`] of the run adds one epoch.
//!
//! What the document quotes from the input is bounded, so that its size (and the memory of
//! the requests reading it) depends on the options, not on the data: each name is cut to
//! [`MAX_QUOTED_NAME`] bytes ([`quoted`]) as the book takes it, and the encoded document to
//! [`MAX_STATUS_BYTES`] ([`Status::into_json`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{ClusterError, Domain, Error, StateError};
use crate::runtime::events::EpochCommitted;
use crate::sinks::state::{sqlite, FailureRow, LedgerRow};
use crate::telemetry::recent::RecentEvent;
use crate::telemetry::state::StateDetail;
pub use crate::telemetry::tally::Detections;
use crate::telemetry::tally::{zero_patterns, RunVariant, Tally, VariantVolume, Variants};
use crate::time::now_ms;

/// Epochs the history keeps.
pub(crate) const HISTORY_EPOCHS: usize = 1000;

/// A ledger row's stored evidence as JSON (`None` when absent or not JSON).
pub(crate) fn evidence_json(evidence: Option<&str>) -> Option<serde_json::Value> {
    evidence.and_then(|text| serde_json::from_str(text).ok())
}

/// Detections `latest_detections` lists.
pub(crate) const LATEST_DETECTIONS: usize = 50;

/// The most bytes of a name (customer, merchant) the document quotes; a longer one is cut
/// and ends with `…`.
pub(crate) const MAX_QUOTED_NAME: usize = 256;

/// The most bytes of the encoded document: past it the oldest of the latest detections, then
/// the oldest epochs of the history, are left out (and `truncated` is `true`).
pub(crate) const MAX_STATUS_BYTES: usize = 1 << 20;

/// `name` as the document quotes it: whole up to [`MAX_QUOTED_NAME`] bytes, else cut at a
/// character boundary and ended with `…`, [`MAX_QUOTED_NAME`] bytes at most in all.
pub fn quoted(name: &str) -> String {
    if name.len() <= MAX_QUOTED_NAME {
        return name.to_string();
    }
    const ELLIPSIS: char = '…';
    let mut end = MAX_QUOTED_NAME - ELLIPSIS.len_utf8();
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = name[..end].to_string();
    cut.push(ELLIPSIS);
    cut
}

/// Window of the throughput figures.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What the run was given (`run` of the document).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunInfo {
    /// `live` or `replay`.
    pub mode: Option<String>,
    pub landing: Option<String>,
    pub output: Option<String>,
    /// The state store, any password redacted.
    pub state: Option<String>,
    /// `[from, to]` of a replay (resolved once the landing was listed); `null` live.
    pub range: Option<[Option<u64>; 2]>,
    pub thresholds: serde_json::Value,
    /// The variants the run computes beside its own thresholds (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<RunVariant>,
    pub workers: Option<usize>,
    pub processes: Option<usize>,
    pub process: Option<usize>,
    pub started_at: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub epochs_committed: u64,
    pub epochs_recovered: Option<u64>,
    /// How the start rebuilt its state (`null` when nothing was committed before); absent
    /// where it is not known (a store's status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<Option<RestoreInfo>>,
    pub last_committed_epoch: Option<u64>,
    pub landing_edge: Option<u64>,
    pub lag_chunks: Option<u64>,
    pub lag_seconds: Option<f64>,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// When this process last committed an epoch (`null`: not yet); absent where it is not
    /// known (a store's status).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_commit_ms: Option<Option<i64>>,
}

/// What this run's start rebuilt its state from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RestoreInfo {
    /// `checkpoint` or `full replay`.
    pub source: &'static str,
    /// The restored checkpoint's epoch.
    pub checkpoint_epoch: Option<u64>,
    /// Reading and checking the checkpoint.
    pub load_seconds: f64,
    /// Committed chunks replayed after it (all of them, without a checkpoint).
    pub replayed_chunks: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub rows_per_second: Option<f64>,
    pub epochs_per_second: Option<f64>,
}

impl Throughput {
    /// `rows` and `epochs` over `seconds`.
    pub fn rate(rows: u64, epochs: u64, seconds: f64) -> Throughput {
        Throughput {
            rows_per_second: Some(rows as f64 / seconds),
            epochs_per_second: Some(epochs as f64 / seconds),
        }
    }

    /// Not known (a replay's store: its times are the chunks', not the run's).
    pub fn unknown() -> Throughput {
        Throughput {
            rows_per_second: None,
            epochs_per_second: None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LatestDetection {
    pub seq: u64,
    pub epoch: u64,
    pub pattern_id: String,
    pub action_type: String,
    pub customer_name: String,
    pub merchant_id: String,
    pub detection_time: String,
    /// Why it fired (the ledger row's evidence JSON), `null` when the row has none.
    pub evidence: Option<serde_json::Value>,
}

impl LatestDetection {
    /// A ledger row, its names as `name` quotes them.
    pub fn of(row: &LedgerRow, name: impl Fn(&str) -> String) -> LatestDetection {
        LatestDetection {
            seq: row.seq,
            epoch: row.epoch,
            pattern_id: row.pattern.id().to_string(),
            action_type: row.pattern.action().to_string(),
            customer_name: name(&row.customer_name),
            merchant_id: name(&row.merchant_id),
            detection_time: row.detection_time.clone(),
            evidence: evidence_json(row.evidence.as_deref()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Rejects {
    pub total: u64,
    /// `null` where not known (a store's status without its output).
    pub by_reason: Option<BTreeMap<String, u64>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HistoryEntry {
    pub epoch: u64,
    pub chunk: String,
    pub committed_at: String,
    pub rows: u64,
    pub rejected: u64,
    pub compute_ms: Option<f64>,
    pub commit_ms: Option<f64>,
    pub visible_to_commit_ms: Option<i64>,
    pub detections: BTreeMap<String, u64>,
    /// The rest is absent where it is not known (a store's status). When it was committed,
    /// in ms since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_at_ms: Option<i64>,
    /// When its chunk became visible (live only: `null` in a replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visible_ms: Option<Option<i64>>,
    /// Chunks seen and not committed right after this commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_chunks: Option<u64>,
}

/// A failed run's error: its one line, its domain (`input`, `configuration`, `external
/// service`, `internal`), the exit status the process ends with (docs/operations.md) and
/// what to do about it.
#[derive(Clone, Debug, Serialize)]
pub struct RunFailure {
    pub message: String,
    pub domain: String,
    pub exit_code: u8,
    pub what_to_do: String,
}

impl RunFailure {
    pub(crate) fn of(error: &Error) -> RunFailure {
        RunFailure {
            message: error.to_string(),
            domain: error.domain().to_string(),
            exit_code: error.domain().exit_code(),
            what_to_do: what_to_do(error).to_string(),
        }
    }
}

/// One line on what to do about `error`: by its domain, more specific where the error
/// says more.
pub(crate) fn what_to_do(error: &Error) -> &'static str {
    match error.root() {
        Error::State(StateError::Locked { .. }) => {
            "stop the other mechanism-y process writing to this state store (the message names \
             it), or give this run its own store; then start this one again"
        }
        Error::State(e) if sqlite::is_busy(e) => {
            "another program holds the SQLite state store's write lock (an open transaction): \
             end it, then start mechanism-y again; it resumes from the last committed epoch"
        }
        Error::State(StateError::Unreachable { .. } | StateError::Unavailable { .. }) => {
            "check that the PostgreSQL server is running and that the --state URL (host, port, \
             database) is right; then start mechanism-y again: it resumes from the last \
             committed epoch"
        }
        Error::State(
            StateError::DifferentRun { .. }
            | StateError::StreamEnded { .. }
            | StateError::OutputConflict { .. },
        ) => {
            "give the new run a new state store and output, or rerun with the inputs and \
             options of the run that created them"
        }
        Error::Cluster(ClusterError::Stalled { .. }) => crate::telemetry::state::TO_DO_STALLED,
        _ => match error.domain() {
            Domain::Input => {
                "see the rejects and the landing: fix or restore the chunk or file the message \
                 names, then start mechanism-y again"
            }
            Domain::Configuration => {
                "fix the option or file the message names, then start mechanism-y again"
            }
            Domain::ExternalService => {
                "check the service the message names (file system, S3, PostgreSQL, a cluster \
                 peer); start mechanism-y again once it is back: it resumes from the last \
                 committed epoch"
            }
            Domain::Internal => {
                "a bug in txflow: keep the log and the state store and report it; starting \
                 again resumes from the last committed epoch"
            }
        },
    }
}

/// The last failure an earlier run recorded in the state store (`previous_error`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PreviousError {
    pub message: String,
    pub domain: String,
    pub exit_code: u8,
    /// IST RFC 3339.
    pub at: String,
    pub at_ms: i64,
}

impl From<FailureRow> for PreviousError {
    fn from(f: FailureRow) -> PreviousError {
        PreviousError {
            message: f.message,
            domain: f.domain,
            exit_code: f.exit_code,
            at: f.at,
            at_ms: f.at_ms,
        }
    }
}

/// The `/api/status` document.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The rest of the run's own status is absent from a store's. When the document was
    /// built (the server's clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_at_ms: Option<i64>,
    pub run: RunInfo,
    pub state: &'static str,
    /// Whether `/readyz` answers 200.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Why the run is in its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_detail: Option<StateDetail>,
    /// Newest first, at most [`RECENT_EVENTS`](crate::telemetry::recent::RECENT_EVENTS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recent_events: Option<Vec<RecentEvent>>,
    pub progress: Progress,
    pub throughput: Throughput,
    pub detections: Detections,
    pub latest_detections: Vec<LatestDetection>,
    pub rejects: Rejects,
    pub history: Vec<HistoryEntry>,
    /// Why the run failed (present only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunFailure>,
    /// Detections or epochs were left out to keep the document within [`MAX_STATUS_BYTES`]
    /// (present only then).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The last failure an earlier run recorded in the state store, if any.
    pub previous_error: Option<PreviousError>,
    /// Each variant's alert volume in this run (absent without variants; a store's status
    /// lists its variants in its own way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<VariantVolume>>,
}

impl Status {
    /// The document as JSON of at most `cap` bytes: past it, the older half of the latest
    /// detections is left out, again until they fit or none is left, then likewise the older
    /// half of the history.
    pub(crate) fn into_json(mut self, cap: usize) -> Result<Vec<u8>, serde_json::Error> {
        loop {
            let bytes = serde_json::to_vec(&self)?;
            if bytes.len() <= cap {
                return Ok(bytes);
            }
            if !self.latest_detections.is_empty() {
                self.latest_detections
                    .truncate(self.latest_detections.len() / 2);
            } else if !self.history.is_empty() {
                self.history.drain(..self.history.len().div_ceil(2));
            } else {
                return Ok(bytes);
            }
            self.truncated = true;
        }
    }
}

/// The run's totals and recent epochs, kept by the committing thread.
#[derive(Debug)]
pub(crate) struct Book {
    pub run: RunInfo,
    pub epochs_committed: u64,
    pub epochs_recovered: u64,
    pub restore: Option<RestoreInfo>,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    by_pattern: BTreeMap<String, u64>,
    latest: VecDeque<LatestDetection>,
    by_reason: BTreeMap<String, u64>,
    /// The last failure an earlier run recorded (read at start-up).
    pub previous_error: Option<PreviousError>,
    /// Oldest first, with when each was committed (for the throughput).
    history: VecDeque<(Instant, HistoryEntry)>,
    /// The baseline's detections of the last hour.
    hour: Tally,
    variants: Variants,
}

impl Book {
    pub(crate) fn new(run: RunInfo) -> Book {
        Book {
            variants: Variants::of(&run.variants),
            hour: Tally::default(),
            run,
            epochs_committed: 0,
            epochs_recovered: 0,
            restore: None,
            rows_accepted: 0,
            rows_rejected: 0,
            by_pattern: zero_patterns(),
            latest: VecDeque::new(),
            by_reason: BTreeMap::new(),
            history: VecDeque::new(),
            previous_error: None,
        }
    }

    /// Adds a committed epoch, after which `lag_chunks` were seen and not committed; `live`:
    /// its visible→commit latency is measured (a replay's chunks are old).
    pub(crate) fn add(&mut self, record: &EpochCommitted, live: bool, lag_chunks: u64) {
        self.epochs_committed += 1;
        self.rows_accepted += record.rows;
        self.rows_rejected += record.rejected;
        let mut detections = zero_patterns();
        for row in &record.detections {
            *detections.entry(row.pattern.id().to_string()).or_default() += 1;
            *self
                .by_pattern
                .entry(row.pattern.id().to_string())
                .or_default() += 1;
        }
        let skip = record.detections.len().saturating_sub(LATEST_DETECTIONS);
        for row in record.detections.iter().skip(skip) {
            self.latest.push_front(LatestDetection::of(row, quoted));
        }
        self.latest.truncate(LATEST_DETECTIONS);
        for (kind, n) in &record.rejects_by_reason {
            *self.by_reason.entry(kind.clone()).or_default() += n;
        }
        self.hour.add(&record.detections, record.committed_at_ms);
        for v in &record.variant_detections {
            self.variants
                .add(&v.variant, &v.rows, record.committed_at_ms);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let entry = HistoryEntry {
            epoch: record.epoch,
            chunk: record.chunk.clone(),
            committed_at: record.committed_at.clone(),
            rows: record.rows,
            rejected: record.rejected,
            compute_ms: record.compute.map(ms),
            commit_ms: Some(ms(record.commit)),
            visible_to_commit_ms: live.then(|| record.visible_to_commit_ms()),
            detections,
            committed_at_ms: Some(record.committed_at_ms),
            visible_ms: Some(live.then_some(record.visible_ms)),
            lag_chunks: Some(lag_chunks),
        };
        if self.history.len() == HISTORY_EPOCHS {
            self.history.pop_front();
        }
        self.history.push_back((Instant::now(), entry));
    }

    pub(crate) fn detections(&self) -> Detections {
        Detections {
            total: self.by_pattern.values().sum(),
            by_pattern: self.by_pattern.clone(),
            last_hour: Some(self.hour.last_hour(now_ms())),
        }
    }

    /// The variants' volumes (`None` without variants).
    pub(crate) fn variant_volumes(&self) -> Option<Vec<VariantVolume>> {
        self.variants.volumes(now_ms())
    }

    pub(crate) fn rejects(&self) -> Rejects {
        Rejects {
            total: self.by_reason.values().sum(),
            by_reason: Some(self.by_reason.clone()),
        }
    }

    pub(crate) fn latest(&self) -> Vec<LatestDetection> {
        self.latest.iter().cloned().collect()
    }

    pub(crate) fn history(&self) -> Vec<HistoryEntry> {
        self.history.iter().map(|(_, e)| e.clone()).collect()
    }

    /// Rows and epochs per second over the last [`RATE_WINDOW`] (or since `started`).
    pub(crate) fn throughput(&self, started: Instant) -> Throughput {
        let window = started
            .elapsed()
            .clamp(Duration::from_millis(1), RATE_WINDOW);
        let recent = self
            .history
            .iter()
            .rev()
            .take_while(|(at, _)| at.elapsed() <= window);
        let (rows, epochs) = recent.fold((0u64, 0u64), |(r, e), (_, h)| (r + h.rows, e + 1));
        Throughput::rate(rows, epochs, window.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, epoch: u64) -> LedgerRow {
        LedgerRow {
            seq,
            epoch,
            pattern: crate::model::Pattern::Child,
            customer_name: format!("c{seq}"),
            merchant_id: "m".into(),
            y_start_time: String::new(),
            detection_time: String::new(),
            file_seq: None,
            evidence: None,
        }
    }

    #[test]
    fn names_are_quoted_up_to_256_bytes() {
        assert_eq!(quoted("C1093826151"), "C1093826151");
        let exact = "x".repeat(MAX_QUOTED_NAME);
        assert_eq!(quoted(&exact), exact);
        let long = quoted(&"y".repeat(1 << 20));
        assert_eq!(long.len(), MAX_QUOTED_NAME);
        assert_eq!(long, format!("{}…", "y".repeat(MAX_QUOTED_NAME - 3)));
        // Cut at a character boundary: 'é' is two bytes.
        let accented = quoted(&"é".repeat(200));
        assert!(accented.len() <= MAX_QUOTED_NAME && accented.ends_with('…'));
        assert_eq!(accented, format!("{}…", "é".repeat(126)));
    }

    #[test]
    fn huge_names_leave_the_document_small_and_a_cap_leaves_out_the_oldest() {
        let telemetry = crate::telemetry::Telemetry::new(
            RunInfo::default(),
            crate::telemetry::Limits::default(),
        );
        for epoch in 0..20 {
            let mut detection = row(epoch, epoch);
            detection.customer_name = format!("{epoch}{}", "C".repeat(1 << 20));
            detection.merchant_id = "M".repeat(1 << 20);
            telemetry.epoch_committed(&EpochCommitted {
                epoch,
                detections: vec![detection],
                ..EpochCommitted::default()
            });
        }
        let json = telemetry.status().into_json(MAX_STATUS_BYTES).unwrap();
        assert!(
            json.len() < 20 * 2 * MAX_QUOTED_NAME + 12 * 1024,
            "{}",
            json.len()
        );
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["latest_detections"].as_array().unwrap().len(), 20);
        assert_eq!(value["latest_detections"][0]["seq"], 19);
        assert!(value.get("truncated").is_none());
        // Under a smaller cap: the newest detections and epochs stay, and it says so.
        let json = telemetry.status().into_json(8 * 1024).unwrap();
        assert!(json.len() <= 8 * 1024, "{}", json.len());
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let latest = value["latest_detections"].as_array().unwrap();
        assert!(!latest.is_empty() && latest.len() < 20, "{}", latest.len());
        assert_eq!(latest[0]["seq"], 19);
        assert_eq!(value["truncated"], true);
    }

    #[test]
    fn the_history_keeps_the_last_epochs_and_the_newest_detections_first() {
        let mut book = Book::new(RunInfo::default());
        for epoch in 0..(HISTORY_EPOCHS as u64 + 5) {
            book.add(
                &EpochCommitted {
                    epoch,
                    rows: 2,
                    detections: vec![row(epoch, epoch)],
                    ..EpochCommitted::default()
                },
                true,
                0,
            );
        }
        let latest = book.latest();
        assert_eq!(latest.len(), LATEST_DETECTIONS);
        assert_eq!(latest[0].seq, HISTORY_EPOCHS as u64 + 4);
        // One epoch of more detections than are listed: its newest first.
        let epoch = HISTORY_EPOCHS as u64 + 5;
        book.add(
            &EpochCommitted {
                epoch,
                detections: (0..60).map(|i| row(10_000 + i, epoch)).collect(),
                ..EpochCommitted::default()
            },
            true,
            0,
        );
        let seqs: Vec<u64> = book.latest().iter().map(|d| d.seq).collect();
        assert_eq!(seqs, (10_010..10_060).rev().collect::<Vec<_>>());
        let history = book.history();
        assert_eq!(history.len(), HISTORY_EPOCHS);
        assert_eq!(history[0].epoch, 6);
        assert_eq!(history[HISTORY_EPOCHS - 1].detections["PatId2"], 60);
        assert_eq!(
            book.detections().by_pattern["PatId2"],
            HISTORY_EPOCHS as u64 + 65
        );
        assert_eq!(book.detections().by_pattern["PatId1"], 0);
    }
}
