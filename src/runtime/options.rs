//! What a run of Mechanism Y is given ([`YOptions`]).

use crate::runtime::checkpointer::CheckpointOptions;
use std::time::Duration;

use crate::model::{Thresholds, Variant};
use crate::objectstore::S3Options;
use crate::runtime::config::TimelyOptions;
use crate::sinks::state::StateConfig;
use crate::thresholds::VariantName;

/// Default of `--ready-max-lag`: `/readyz` fails when more chunks than this wait.
pub const DEFAULT_READY_MAX_LAG: u64 = 2;

/// A replay/backtest range of chunk indices, inclusive; `None` = open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayRange {
    pub from: Option<u64>,
    pub to: Option<u64>,
}

/// Live or replay, with what only that mode takes: `--follow` is live only, the range replay
/// only. Both take variants: a replay's are a backtest, a live run's are shadow variants.
#[derive(Clone, Debug, PartialEq)]
pub enum Mode {
    /// Follow the landing store, chunk by chunk as it lands; the stream ends after
    /// `_COMPLETE`'s count unless `forever` (`--follow`): then `_COMPLETE` is still checked
    /// against the chunks (an inconsistent landing fails the run) but does not end it, and Y
    /// keeps following the landing store until it is stopped. `variants` are shadow variants:
    /// computed in the same dataflow as the run's own thresholds, each with its own ledger and
    /// `<output>/variants/<name>/` files, never touching the production files.
    Live {
        forever: bool,
        variants: Vec<Variant>,
    },
    /// Replay/backtest the chunks present in `range`, then end the stream; `variants` are
    /// computed in the same pass as the run's own thresholds (the baseline), each with its own
    /// ledger and `<output>/variants/<name>/` files.
    Replay {
        range: ReplayRange,
        variants: Vec<Variant>,
    },
}

impl Mode {
    /// A replay of `range` without backtest variants.
    pub fn replay(range: ReplayRange) -> Mode {
        Mode::Replay {
            range,
            variants: Vec::new(),
        }
    }

    /// A live run without shadow variants; `forever` = `--follow`.
    pub fn live(forever: bool) -> Mode {
        Mode::Live {
            forever,
            variants: Vec::new(),
        }
    }
}

impl Default for Mode {
    /// Live, ending after `_COMPLETE`.
    fn default() -> Mode {
        Mode::live(false)
    }
}

/// Everything `mechanism-y` needs.
#[derive(Clone, Debug)]
pub struct YOptions {
    /// Landing location: a directory or `s3://bucket/prefix`.
    pub landing: String,
    /// The importance file: a path or `s3://bucket/key`.
    pub importance: String,
    /// Output location: a directory or `s3://bucket/prefix`.
    pub output: String,
    /// The state store: `sqlite://PATH` or a `postgres://` URL with its options.
    pub state: StateConfig,
    /// Live or replay (with its range and variants).
    pub mode: Mode,
    pub thresholds: Thresholds,
    pub timely: TimelyOptions,
    pub s3: S3Options,
    /// Live mode: how often to look for the next chunk while waiting; at least
    /// [`MIN_POLL_INTERVAL`] (a shorter one is taken as that).
    pub poll_interval: Duration,
    /// While waiting for a chunk that must exist (`_COMPLETE` or a later chunk says so), or
    /// for a landing directory that does not exist, warn this often.
    pub gap_warn: Duration,
    /// Local landing: a chunk whose last byte is not a line terminator is still being written;
    /// it is taken once its size has stayed the same this long.
    pub settle: Duration,
    /// `--http`: serve the operating endpoint (`/metrics`, `/api/status`, `/healthz`,
    /// `/readyz`) on this address, from process 0 only; `None` = off.
    pub http: Option<std::net::SocketAddr>,
    /// `--ready-max-lag`: `/readyz` fails when more chunks than this wait to be committed.
    pub ready_max_lag: u64,
    /// `--ready-max-idle`: live, a landing without a new chunk this long is not ready;
    /// `None` = an idle landing is ready.
    pub ready_max_idle: Option<Duration>,
    /// `--stall-timeout`: fail the run when no epoch commits this long while chunks wait
    /// (process 0); zero = never.
    pub stall_timeout: Duration,
    /// `--linger-on-failure`: after a fatal error, how long the `--http` endpoint keeps
    /// answering (state `failed`, the error and what to do) before the process ends; zero =
    /// not at all. A stop signal ends the wait.
    pub linger_on_failure: Duration,
    /// Checkpoints of the dataflow's state: how often, where, how many kept.
    pub checkpoints: CheckpointOptions,
}

/// Default of [`YOptions::gap_warn`] (`--gap-warn-secs`).
pub const DEFAULT_GAP_WARN: Duration = Duration::from_secs(10);

/// Default of [`YOptions::stall_timeout`] (`--stall-timeout`): long enough for any epoch
/// and for a PostgreSQL reconnect (`--pg-reconnect-timeout` 60 s), short enough that a frozen
/// cluster peer does not go unnoticed.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// Default of [`YOptions::linger_on_failure`] (`--linger-on-failure`): long enough for a
/// scrape or a person to see why the run failed.
pub const DEFAULT_LINGER_ON_FAILURE: Duration = Duration::from_secs(30);

/// Default of [`YOptions::settle`] (`--settle-ms`).
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(1000);

impl YOptions {
    /// Options with the defaults of the command line, for the given locations.
    pub fn new(landing: &str, importance: &str, output: &str, state: StateConfig) -> YOptions {
        YOptions {
            landing: landing.into(),
            importance: importance.into(),
            output: output.into(),
            state,
            mode: Mode::default(),
            thresholds: Thresholds::default(),
            timely: TimelyOptions::default(),
            s3: S3Options::default(),
            poll_interval: default_poll_interval(landing),
            gap_warn: DEFAULT_GAP_WARN,
            settle: DEFAULT_SETTLE,
            http: None,
            ready_max_lag: DEFAULT_READY_MAX_LAG,
            ready_max_idle: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            linger_on_failure: DEFAULT_LINGER_ON_FAILURE,
            checkpoints: CheckpointOptions::default(),
        }
    }
}

impl YOptions {
    /// The replay range; `None` in live mode.
    pub(crate) fn replay_range(&self) -> Option<ReplayRange> {
        match &self.mode {
            Mode::Replay { range, .. } => Some(*range),
            Mode::Live { .. } => None,
        }
    }

    /// Live mode with `--follow`: the stream never ends.
    pub(crate) fn follow_forever(&self) -> bool {
        matches!(self.mode, Mode::Live { forever: true, .. })
    }

    /// The variants: a replay's backtest variants, a live run's shadow variants.
    pub fn variants(&self) -> &[Variant] {
        match &self.mode {
            Mode::Replay { variants, .. } | Mode::Live { variants, .. } => variants,
        }
    }

    /// Variants have distinct valid names (they name folders).
    pub(crate) fn check_variants(&self) -> crate::error::Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for variant in self.variants() {
            VariantName::parse(&variant.name).map_err(|why| {
                crate::error::Error::configuration(format!(
                    "invalid variant name {:?}: {why}",
                    variant.name
                ))
            })?;
            // Case-insensitively: names become folder names.
            if !names.insert(variant.name.to_ascii_lowercase()) {
                return Err(crate::error::Error::configuration(format!(
                    "two variants are named {:?}; names must be distinct",
                    variant.name
                )));
            }
        }
        Ok(())
    }
}

/// The shortest [`YOptions::poll_interval`] (`--poll-ms`): polling an idle landing store
/// faster would spin a core (and, on S3, bill a GET each time) for no gain in latency that
/// a 1-second chunk pace could show.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How often live mode looks for the next chunk: a failed local `open` is cheap, an S3 GET
/// is a billed request.
pub fn default_poll_interval(landing: &str) -> Duration {
    if landing.starts_with("s3://") {
        Duration::from_millis(200)
    } else {
        MIN_POLL_INTERVAL
    }
}
