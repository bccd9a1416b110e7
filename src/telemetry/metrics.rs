//! The Prometheus metrics of a run (`txflow_` namespace), registered once, encoded on a
//! scrape as OpenMetrics text by `prometheus-client`.
//!
//! Counters and histograms are updated by the committing thread once per epoch; gauges that
//! describe the present (lag, resident memory, queue depth) are set when a scrape encodes
//! them ([`Metrics::encode`] takes their values). Retries happen deep inside the stores: the
//! run hands each store a handle counting into this run's [`RetryCounts`].

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::telemetry::retries::{Label, RetryCounts};

/// What a scrape reads at the moment it is taken.
#[derive(Clone, Copy, Debug, Default)]
pub struct Present {
    pub landing_edge: Option<u64>,
    pub last_committed: Option<u64>,
    pub lag_chunks: u64,
    pub lag_seconds: f64,
    pub queue_depth: u64,
    pub resident_bytes: u64,
    pub ready: bool,
    pub stalled: bool,
}

/// Every metric handle, and the registry that encodes them.
pub(crate) struct Metrics {
    registry: Registry,
    pub epochs_committed: Counter,
    pub epochs_replayed: Counter,
    pub rows_accepted: Counter,
    pub rows_rejected: Counter,
    pub detections: Family<Label, Counter>,
    pub visible_to_commit: Histogram,
    pub compute: Histogram,
    pub commit: Histogram,
    pub recovery_seconds: Gauge<f64, AtomicU64>,
    pub checkpoint_seconds: Histogram,
    pub checkpoint_bytes: Gauge,
    pub checkpoint_last_epoch: Gauge,
    pub checkpoint_failures: Counter,
    pub state_store_retries: RetryCounts,
    pub s3_retries: RetryCounts,
    landing_edge: Gauge,
    last_committed: Gauge,
    lag_chunks: Gauge,
    lag_seconds: Gauge<f64, AtomicU64>,
    queue_depth: Gauge,
    resident: Gauge,
    ready: Gauge,
    stalled: Gauge,
}

/// Histogram buckets of a duration in seconds: 1 ms to about 33 s.
fn short_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("txflow"),
            epochs_committed: Counter::default(),
            epochs_replayed: Counter::default(),
            rows_accepted: Counter::default(),
            rows_rejected: Counter::default(),
            detections: Family::default(),
            // 10 ms to about 5.5 min: a live chunk waits at least for the next poll.
            visible_to_commit: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            compute: short_buckets(),
            commit: short_buckets(),
            recovery_seconds: Gauge::default(),
            // 10 ms to about 5.5 min.
            checkpoint_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            checkpoint_bytes: Gauge::default(),
            checkpoint_last_epoch: Gauge::default(),
            checkpoint_failures: Counter::default(),
            state_store_retries: RetryCounts::default(),
            s3_retries: RetryCounts::default(),
            landing_edge: Gauge::default(),
            last_committed: Gauge::default(),
            lag_chunks: Gauge::default(),
            lag_seconds: Gauge::default(),
            queue_depth: Gauge::default(),
            resident: Gauge::default(),
            ready: Gauge::default(),
            stalled: Gauge::default(),
        };
        m.register()
    }

    /// Counters of committed work and recovery.
    fn register(mut self) -> Metrics {
        self.checkpoint_last_epoch.set(-1);
        let r = &mut self.registry;
        r.register(
            "epochs_committed",
            "Epochs committed by this process",
            self.epochs_committed.clone(),
        );
        r.register(
            "recovery_replayed_epochs",
            "Epochs an earlier run committed, replayed only to rebuild state",
            self.epochs_replayed.clone(),
        );
        r.register_with_unit(
            "recovery",
            "Time from start until every recovered epoch was replayed",
            Unit::Seconds,
            self.recovery_seconds.clone(),
        );
        r.register_with_unit(
            "checkpoint",
            "Time to write a checkpoint, from its first shard to its manifest",
            Unit::Seconds,
            self.checkpoint_seconds.clone(),
        );
        r.register_with_unit(
            "checkpoint",
            "Size of the newest checkpoint written (shards and manifest)",
            Unit::Bytes,
            self.checkpoint_bytes.clone(),
        );
        r.register(
            "checkpoint_last_epoch",
            "Epoch of the newest checkpoint written by this run (-1: none)",
            self.checkpoint_last_epoch.clone(),
        );
        r.register(
            "checkpoint_failures",
            "Checkpoints that could not be written",
            self.checkpoint_failures.clone(),
        );
        r.register(
            "rows_accepted",
            "Transaction rows accepted in committed epochs",
            self.rows_accepted.clone(),
        );
        r.register(
            "rows_rejected",
            "Transaction rows rejected in committed epochs",
            self.rows_rejected.clone(),
        );
        r.register(
            "detections",
            "New detections committed, by pattern",
            self.detections.clone(),
        );
        self.register_gauges()
    }

    /// The gauges of the present moment (set by [`Metrics::encode`]) and the histograms.
    fn register_gauges(mut self) -> Metrics {
        let r = &mut self.registry;
        let chunks = || Unit::Other("chunks".into());
        r.register(
            "landing_edge_epoch",
            "Highest chunk index seen in the landing store (-1: none yet)",
            self.landing_edge.clone(),
        );
        r.register(
            "last_committed_epoch",
            "Last committed epoch, earlier runs included (-1: none)",
            self.last_committed.clone(),
        );
        r.register_with_unit(
            "lag",
            "Chunks seen in the landing store but not committed",
            chunks(),
            self.lag_chunks.clone(),
        );
        r.register_with_unit(
            "lag",
            "Age of the oldest visible uncommitted chunk",
            Unit::Seconds,
            self.lag_seconds.clone(),
        );
        r.register_with_unit(
            "visible_to_commit",
            "Live mode: from a chunk's last-modified time to its epoch's commit",
            Unit::Seconds,
            self.visible_to_commit.clone(),
        );
        r.register_with_unit(
            "epoch_compute",
            "Worker 0: from taking a chunk to its epoch's batch being ready",
            Unit::Seconds,
            self.compute.clone(),
        );
        r.register_with_unit(
            "epoch_commit",
            "Committing thread: one epoch's commit (rejects, transaction, files)",
            Unit::Seconds,
            self.commit.clone(),
        );
        self.register_process()
    }

    /// Retries, memory, the commit queue, readiness.
    fn register_process(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "state_store_retries",
            "State-store operations retried after a transient failure, by operation",
            self.state_store_retries.family().clone(),
        );
        r.register(
            "s3_retries",
            "S3 requests retried after a transient failure, by operation",
            self.s3_retries.family().clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory of this process",
            Unit::Bytes,
            self.resident.clone(),
        );
        r.register(
            "commit_queue_depth",
            "Computed epochs waiting for the committing thread",
            self.queue_depth.clone(),
        );
        r.register("ready", "1 when /readyz answers 200", self.ready.clone());
        r.register(
            "stalled",
            "1 when no epoch was committed for --stall-timeout while chunks waited",
            self.stalled.clone(),
        );
        self
    }

    /// The OpenMetrics text of every metric, with the present's gauges.
    pub(crate) fn encode(&self, present: &Present) -> String {
        let epoch = |e: Option<u64>| e.map_or(-1, |e| e as i64);
        self.landing_edge.set(epoch(present.landing_edge));
        self.last_committed.set(epoch(present.last_committed));
        self.lag_chunks.set(present.lag_chunks as i64);
        self.lag_seconds.set(present.lag_seconds);
        self.queue_depth.set(present.queue_depth as i64);
        self.resident.set(present.resident_bytes as i64);
        self.ready.set(present.ready as i64);
        self.stalled.set(present.stalled as i64);
        let mut text = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// This process's resident memory in bytes (`/proc/self/statm`; 0 where there is none).
pub(crate) fn resident_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

#[allow(unsafe_code)]
fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}
