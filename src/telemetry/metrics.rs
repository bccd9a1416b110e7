//! The Prometheus metrics of a run (`txflow_` namespace, and the standard `process_` ones),
//! registered once, encoded on a scrape as OpenMetrics text by `prometheus-client`.
//!
//! Counters and histograms are updated by the committing thread once per epoch; gauges that
//! describe the present (lag, state, resident memory, queue depth) are set when a scrape
//! encodes them ([`Metrics::encode`] takes their values). Retries happen deep inside the
//! stores: the run hands each store a handle counting into this run's [`RetryCounts`].
//! Every labelled family has each label value it can be known to take from the start, at 0.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::model::Pattern;
use crate::sources::parse::{reject_label, REJECT_KINDS};
use crate::telemetry::recent::Recent;
use crate::telemetry::retries::{Label, RetryCounts};
use crate::telemetry::state::RunState;

/// A metric's label set of two labels.
type Labels2 = [(&'static str, String); 2];

/// What a scrape reads at the moment it is taken.
#[derive(Clone, Copy, Debug)]
pub struct Present {
    pub landing_edge: Option<u64>,
    pub last_committed: Option<u64>,
    pub lag_chunks: u64,
    pub lag_seconds: f64,
    pub queue_depth: u64,
    pub resident_bytes: u64,
    pub ready: bool,
    pub stalled: bool,
    pub state: RunState,
    pub failed: bool,
    /// Last-modified time of the newest chunk seen, ms since the Unix epoch.
    pub last_chunk_ms: Option<i64>,
    /// This process's last commit, ms since the Unix epoch.
    pub last_commit_ms: Option<i64>,
}

/// Every metric handle, and the registry that encodes them.
pub(crate) struct Metrics {
    registry: Registry,
    pub epochs_committed: Counter,
    pub epochs_replayed: Counter,
    pub rows_accepted: Counter,
    rows_rejected: Family<Label, Counter>,
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
    failed: Gauge,
    state: Family<Label, Gauge>,
    last_commit: Gauge<f64, AtomicU64>,
    last_chunk: Gauge<f64, AtomicU64>,
    build_info: Family<Labels2, Gauge>,
    process: ProcessMetrics,
    /// One scrape at a time sets the gauges it encodes.
    scrape: Mutex<()>,
}

/// The standard `process_` metrics (no prefix), read from `/proc/self` at each scrape.
#[derive(Default)]
struct ProcessMetrics {
    start_time: Gauge<f64, AtomicU64>,
    cpu: Counter<f64, AtomicU64>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
}

/// Histogram buckets of a duration in seconds: 1 ms to about 33 s.
fn short_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// The metrics of a run whose store retries are also recorded in `recent`.
    pub(crate) fn new(recent: &Recent) -> Metrics {
        let s3_ops: Vec<&str> = crate::objectstore::s3::op_names().collect();
        let m = Metrics {
            registry: Registry::default(),
            epochs_committed: Counter::default(),
            epochs_replayed: Counter::default(),
            rows_accepted: Counter::default(),
            rows_rejected: Family::default(),
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
            state_store_retries: RetryCounts::new(
                &[STATE_STORE_COMMIT],
                recent.clone(),
                "state store",
            ),
            s3_retries: RetryCounts::new(&s3_ops, recent.clone(), "S3"),
            landing_edge: Gauge::default(),
            last_committed: Gauge::default(),
            lag_chunks: Gauge::default(),
            lag_seconds: Gauge::default(),
            queue_depth: Gauge::default(),
            resident: Gauge::default(),
            ready: Gauge::default(),
            stalled: Gauge::default(),
            failed: Gauge::default(),
            state: Family::default(),
            last_commit: Gauge::default(),
            last_chunk: Gauge::default(),
            build_info: Family::default(),
            process: ProcessMetrics::default(),
            scrape: Mutex::new(()),
        };
        m.zeroed().register()
    }

    /// Every label value known from the start, at 0 (the build's at 1).
    fn zeroed(self) -> Metrics {
        for pattern in Pattern::ALL {
            let _ = self
                .detections
                .get_or_create(&[("pattern", pattern.id().to_string())]);
        }
        for kind in REJECT_KINDS {
            let _ = self
                .rows_rejected
                .get_or_create(&[("reason", kind.to_string())]);
        }
        for state in RunState::ALL {
            let _ = self
                .state
                .get_or_create(&[("state", state.as_str().to_string())]);
        }
        let commit = option_env!("TXFLOW_COMMIT").unwrap_or("unknown");
        self.build_info
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("commit", commit.to_string()),
            ])
            .set(1);
        self.process.start_time.set(process_start_time());
        self
    }

    /// Rejected rows of a committed epoch, by reason kind.
    pub(crate) fn rejected(&self, by_kind: &BTreeMap<String, u64>) {
        for (kind, n) in by_kind {
            self.rows_rejected
                .get_or_create(&[("reason", reject_label(kind))])
                .inc_by(*n);
        }
    }

    /// Counters of committed work and recovery.
    fn register(mut self) -> Metrics {
        self.checkpoint_last_epoch.set(-1);
        let r = self.registry.sub_registry_with_prefix("txflow");
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
            "Transaction rows rejected in committed epochs, by reason kind",
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
        let r = self.registry.sub_registry_with_prefix("txflow");
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
        let r = self.registry.sub_registry_with_prefix("txflow");
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
        self.register_state()
    }

    /// The run's state, its times and build.
    fn register_state(mut self) -> Metrics {
        let r = self.registry.sub_registry_with_prefix("txflow");
        r.register(
            "state",
            "1 for the run's state (as /api/status names it), 0 for every other",
            self.state.clone(),
        );
        r.register("failed", "1 once the run failed", self.failed.clone());
        r.register_with_unit(
            "last_commit_timestamp",
            "When this process last committed an epoch, Unix time (0: not yet)",
            Unit::Seconds,
            self.last_commit.clone(),
        );
        r.register_with_unit(
            "landing_last_chunk_timestamp",
            "Last-modified time of the newest chunk seen, Unix time (0: none yet)",
            Unit::Seconds,
            self.last_chunk.clone(),
        );
        r.register(
            "build_info",
            "The running build: its version and commit (always 1)",
            self.build_info.clone(),
        );
        self.register_standard()
    }

    /// The standard `process_` metrics, without the `txflow_` prefix.
    fn register_standard(mut self) -> Metrics {
        let (r, p) = (&mut self.registry, &self.process);
        r.register_with_unit(
            "process_start_time",
            "Start time of the process since the Unix epoch",
            Unit::Seconds,
            p.start_time.clone(),
        );
        r.register_with_unit(
            "process_cpu",
            "Total user and system CPU time spent",
            Unit::Seconds,
            p.cpu.clone(),
        );
        r.register_with_unit(
            "process_resident_memory",
            "Resident memory size",
            Unit::Bytes,
            p.resident.clone(),
        );
        r.register_with_unit(
            "process_virtual_memory",
            "Virtual memory size",
            Unit::Bytes,
            p.virtual_memory.clone(),
        );
        r.register(
            "process_open_fds",
            "Open file descriptors",
            p.open_fds.clone(),
        );
        r.register(
            "process_max_fds",
            "Maximum number of open file descriptors",
            p.max_fds.clone(),
        );
        self
    }

    /// The OpenMetrics text of every metric, with the present's gauges.
    pub(crate) fn encode(&self, present: &Present) -> String {
        let _one = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let epoch = |e: Option<u64>| e.map_or(-1, |e| e as i64);
        let unix = |ms: Option<i64>| ms.map_or(0.0, |ms| ms as f64 / 1000.0);
        self.last_commit.set(unix(present.last_commit_ms));
        self.last_chunk.set(unix(present.last_chunk_ms));
        self.failed.set(present.failed as i64);
        for state in RunState::ALL {
            let label = [("state", state.as_str().to_string())];
            self.state
                .get_or_create(&label)
                .set((state == present.state) as i64);
        }
        self.process.read();
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

/// The state store's operation on the commit path (its other operations are counted as
/// they are retried).
const STATE_STORE_COMMIT: &str = "committing an epoch";

impl ProcessMetrics {
    /// Reads the process's figures now.
    fn read(&self) {
        if let Some((cpu_ticks, _)) = stat_fields() {
            let seconds = cpu_ticks as f64 / clock_ticks() as f64;
            // A counter only grows: store the figure read (one scrape at a time).
            self.cpu.inner().store(seconds.to_bits(), Ordering::Relaxed);
        }
        if let Some((size, resident)) = statm() {
            self.virtual_memory.set(size as i64);
            self.resident.set(resident as i64);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as i64);
        }
        if let Some(max) = max_fds() {
            self.max_fds.set(max as i64);
        }
    }
}

/// `/proc/self/stat`: user + system CPU time and the start time after boot, in clock ticks.
fn stat_fields() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count from after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15, starttime 22.
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)? + field(15)?, field(22)?))
}

/// Start time of the process, Unix seconds: boot time (`/proc/stat` btime) plus its start
/// after boot; the time it is asked for where they cannot be read.
fn process_start_time() -> f64 {
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match (boot, stat_fields()) {
        (Some(boot), Some((_, start))) => boot as f64 + start as f64 / clock_ticks() as f64,
        _ => crate::time::now_ms() as f64 / 1000.0,
    }
}

/// `/proc/self/statm`: virtual and resident size in bytes.
fn statm() -> Option<(u64, u64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut pages = statm.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (size, resident) = (pages.next()??, pages.next()??);
    Some((size * page_size(), resident * page_size()))
}

/// The soft limit of open files (`/proc/self/limits`).
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[allow(unsafe_code)]
fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value; it has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// This process's resident memory in bytes (`/proc/self/statm`; 0 where there is none).
pub(crate) fn resident_bytes() -> u64 {
    statm().map_or(0, |(_, resident)| resident)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn present(state: RunState) -> Present {
        Present {
            landing_edge: None,
            last_committed: None,
            lag_chunks: 0,
            lag_seconds: 0.0,
            queue_depth: 0,
            resident_bytes: 0,
            ready: false,
            stalled: false,
            state,
            failed: false,
            last_chunk_ms: Some(1_500),
            last_commit_ms: None,
        }
    }

    #[test]
    fn every_state_pattern_and_reason_is_there_from_the_start() {
        let metrics = Metrics::new(&Recent::default());
        let text = metrics.encode(&present(RunState::Behind));
        for state in RunState::ALL {
            let want = (state == RunState::Behind) as u8;
            let line = format!("txflow_state{{state=\"{}\"}} {want}\n", state.as_str());
            assert!(text.contains(&line), "{line} in {text}");
        }
        for kind in REJECT_KINDS {
            let line = format!("txflow_rows_rejected_total{{reason=\"{kind}\"}} 0\n");
            assert!(text.contains(&line), "{line}");
        }
        assert!(text.contains("txflow_detections_total{pattern=\"PatId3\"} 0\n"));
        assert!(text.contains("txflow_s3_retries_total{op=\"put_if_absent\"} 0\n"));
        assert!(text.contains("txflow_landing_last_chunk_timestamp_seconds 1.5\n"));
        assert!(text.contains("txflow_last_commit_timestamp_seconds 0.0\n"));
        for name in [
            "process_start_time_seconds ",
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name}");
        }
        // A kind the list does not know is counted under its own label, numbers as N.
        metrics.rejected(&[("odd 12, thing".to_string(), 2)].into_iter().collect());
        let text = metrics.encode(&present(RunState::Behind));
        assert!(text.contains("txflow_rows_rejected_total{reason=\"odd N thing\"} 2\n"));
    }
}
