//! What a run reports when it returns ([`RunSummary`]).

use std::time::Duration;

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// Epochs committed by this run (not counting recovered ones).
    pub epochs_committed: u64,
    /// Epochs replayed only to rebuild state (committed by an earlier run).
    pub epochs_recovered: u64,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    /// Detections in the ledger at the end.
    pub detections_total: u64,
    /// Detection files written or rewritten by this run.
    pub files_written: u64,
    /// Whether the stream ended (last short file written).
    pub finished: bool,
    pub wall: Duration,
    /// Per committed epoch: from the writer taking up the chunk to the epoch's commit.
    pub epoch_latencies: Vec<Duration>,
    /// Per committed epoch: from the chunk object's last-modified time (when it became
    /// visible) to the epoch's commit, in milliseconds (live-mode latency).
    pub visible_to_commit_ms: Vec<i64>,
    /// The backtest report's HTML page, when this run wrote one: its output location and
    /// key (`<output>/backtest-report.html`, the JSON beside it).
    pub report: Option<String>,
}
