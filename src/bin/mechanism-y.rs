//! `mechanism-y`: the detector. See `txflow::mechanism_y`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use txflow::cli::{self, LogArgs, S3Args, StateArgs, VariantArgs};
use txflow::error::{ClusterError, Error};
use txflow::http;
use txflow::mechanism_y::{self, Mode, ReplayRange, TimelyOptions, YOptions};
use txflow::progress::Console;
use txflow::runtime::checkpointer::{
    CheckpointOptions, DEFAULT_CHECKPOINTS_KEPT, DEFAULT_CHECKPOINT_INTERVAL,
};
use txflow::runtime::cluster;
use txflow::thresholds::variants::{Problem, VariantOptionError};
use txflow::thresholds::{Thresholds, Variant};

/// Detects PatId1–3 over landing chunks, incrementally, exactly once.
///
/// `-h` is timely's hostfile option, so help is `--help` only.
#[derive(Parser, Debug)]
#[command(name = "mechanism-y", version = cli::VERSION, disable_help_flag = true, after_long_help = EXAMPLES)]
struct Args {
    /// Landing location: a directory or s3://bucket/prefix.
    #[arg(help_heading = "Inputs", long, env = "TXFLOW_LANDING")]
    landing: String,
    /// CustomerImportance.csv: a path or s3://bucket/key.
    #[arg(help_heading = "Inputs", long, env = "TXFLOW_IMPORTANCE")]
    importance: String,
    /// Output location for detection and reject files: a directory or s3://bucket/prefix.
    #[arg(help_heading = "Inputs", long, env = "TXFLOW_OUTPUT")]
    output: String,
    #[command(flatten)]
    state: StateArgs,
    /// Backtest the chunks present in [--from, --to] at full speed, with times taken from the
    /// landing store (reproducible output), then end the stream. --replay=false turns off a
    /// TXFLOW_REPLAY set in the environment.
    #[arg(
        help_heading = "Replay & variants",
        long,
        env = "TXFLOW_REPLAY",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    replay: bool,
    /// First chunk of the replay range (--replay only).
    #[arg(help_heading = "Replay & variants", long, env = "TXFLOW_FROM")]
    from: Option<u64>,
    /// Last chunk of the replay range (--replay only).
    #[arg(help_heading = "Replay & variants", long, env = "TXFLOW_TO")]
    to: Option<u64>,
    /// Live mode: never end the stream (_COMPLETE is still checked, but does not end it); keep
    /// following the landing store until stopped. Not with --replay. --follow=false turns off
    /// a TXFLOW_FOLLOW set in the environment.
    #[arg(
        help_heading = "Live",
        long,
        env = "TXFLOW_FOLLOW",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    follow: bool,
    /// Worker threads per process.
    #[arg(
        help_heading = "Cluster",
        short = 'w',
        long = "workers",
        default_value_t = 1,
        env = "TXFLOW_WORKERS"
    )]
    workers: usize,
    /// Number of processes in the cluster.
    #[arg(
        help_heading = "Cluster",
        short = 'n',
        long = "processes",
        default_value_t = 1,
        env = "TXFLOW_PROCESSES"
    )]
    processes: usize,
    /// This process's index in the cluster.
    #[arg(
        help_heading = "Cluster",
        short = 'p',
        long = "process",
        default_value_t = 0,
        env = "TXFLOW_PROCESS"
    )]
    process: usize,
    /// Hostfile: one host:port per process (default localhost:2101+i).
    #[arg(
        help_heading = "Cluster",
        short = 'h',
        long = "hostfile",
        env = "TXFLOW_HOSTFILE"
    )]
    hostfile: Option<PathBuf>,
    /// Cluster mode: give up (exit 78, configuration) when not every process has connected
    /// within this many seconds.
    #[arg(help_heading = "Cluster", long, default_value_t = mechanism_y::DEFAULT_CONNECT_TIMEOUT.as_secs(), env = "TXFLOW_CONNECT_TIMEOUT")]
    connect_timeout: u64,
    /// Live mode: polling interval while waiting for the next chunk, in milliseconds, at
    /// least 10 (default 10 for a local landing directory, 200 for S3).
    #[arg(
        help_heading = "Live",
        long,
        value_parser = clap::value_parser!(u64).range(MIN_POLL_MS..),
        env = "TXFLOW_POLL_MS"
    )]
    poll_ms: Option<u64>,
    /// While waiting for a chunk that must exist (a later chunk or _COMPLETE says so), or for
    /// a landing directory that does not exist yet, warn every this many seconds.
    #[arg(help_heading = "Live", long, default_value_t = mechanism_y::DEFAULT_GAP_WARN.as_secs(), env = "TXFLOW_GAP_WARN_SECS")]
    gap_warn_secs: u64,
    /// Local landing: a chunk whose last byte is not a line terminator is still being written
    /// in place; take it once its size has not changed for this many milliseconds.
    #[arg(help_heading = "Live", long, default_value_t = mechanism_y::DEFAULT_SETTLE.as_millis() as u64, env = "TXFLOW_SETTLE_MS")]
    settle_ms: u64,
    /// Serve the operating endpoint (/metrics, /api/status, /healthz, /readyz, /) on this
    /// address: PORT (loopback) or HOST:PORT; process 0 of a cluster only. Off by default.
    #[arg(
        help_heading = "Operating",
        long,
        value_name = "ADDR",
        env = "TXFLOW_HTTP"
    )]
    http: Option<String>,
    /// /readyz fails when more than this many chunks wait to be committed.
    #[arg(help_heading = "Operating", long, default_value_t = txflow::telemetry::DEFAULT_READY_MAX_LAG, env = "TXFLOW_READY_MAX_LAG")]
    ready_max_lag: u64,
    /// Live: /readyz fails when no new chunk arrived for this long (e.g. 30s, 5m, 1h; a
    /// bare number is seconds). Default: an idle landing is ready.
    #[arg(help_heading = "Operating", long, value_name = "DURATION", value_parser = parse_duration, env = "TXFLOW_READY_MAX_IDLE")]
    ready_max_idle: Option<Duration>,
    /// Fail (exit 75, external service) when no epoch commits for this many seconds while
    /// chunks wait (a frozen cluster peer, a hung store); 0 = never.
    #[arg(help_heading = "Operating", long, value_name = "SECS", default_value_t = mechanism_y::DEFAULT_STALL_TIMEOUT.as_secs(), env = "TXFLOW_STALL_TIMEOUT")]
    stall_timeout: u64,
    /// With --http: after a fatal error, keep the endpoint answering (state failed, the error
    /// and what to do) for this many seconds before exiting; SIGINT/SIGTERM ends the wait.
    /// 0 = exit at once. The exit status is the error's either way.
    #[arg(help_heading = "Operating", long, value_name = "SECS", default_value_t = mechanism_y::DEFAULT_LINGER_ON_FAILURE.as_secs(), env = "TXFLOW_LINGER_ON_FAILURE")]
    linger_on_failure: u64,
    /// Write a checkpoint of the dataflow's state after every this many epochs (at epochs
    /// k with (k + 1) % EPOCHS = 0); a restart loads the newest valid one and replays only
    /// the chunks after it. 0 = no checkpoints (neither written nor restored).
    #[arg(help_heading = "State store", long, value_name = "EPOCHS", default_value_t = DEFAULT_CHECKPOINT_INTERVAL, env = "TXFLOW_CHECKPOINT_INTERVAL")]
    checkpoint_interval: u64,
    /// Where checkpoints go: a directory or s3://bucket/prefix (a cluster's processes must
    /// all reach it). Default: <output>/_checkpoints.
    #[arg(
        help_heading = "State store",
        long,
        value_name = "LOCATION",
        env = "TXFLOW_CHECKPOINTS"
    )]
    checkpoints: Option<String>,
    /// How many recorded checkpoints to keep (older ones are removed once a newer one is
    /// recorded); at least 1.
    #[arg(help_heading = "State store", long, value_name = "N", default_value_t = DEFAULT_CHECKPOINTS_KEPT, value_parser = clap::value_parser!(u64).range(1..=1000), env = "TXFLOW_CHECKPOINTS_KEPT")]
    checkpoints_kept: u64,
    /// Fail the run when a checkpoint cannot be written (default: a warning and the
    /// txflow_checkpoint_failures_total counter; the previous checkpoint still stands).
    /// --checkpoint-required=false turns off a TXFLOW_CHECKPOINT_REQUIRED set in the
    /// environment.
    #[arg(
        help_heading = "State store",
        long,
        env = "TXFLOW_CHECKPOINT_REQUIRED",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    checkpoint_required: bool,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    thresholds: Thresholds,
    #[command(flatten)]
    variants: VariantArgs,
    #[command(flatten)]
    log: LogArgs,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help, help_heading = None::<&str>)]
    help: Option<bool>,
}

/// `--help`'s examples, after the options.
const EXAMPLES: &str = "\
Examples:
  # Live: follow a local landing directory, embedded state, the console on port 8080
  mechanism-y --landing landing --importance data/CustomerImportance.csv --output out \\
      --state sqlite://state.db --follow --http 8080

  # Backtest chunks 0 to 99 on S3 and PostgreSQL, with a stricter PatId2 variant
  mechanism-y --landing s3://bank/landing --importance s3://bank/CustomerImportance.csv \\
      --output s3://bank/backtest --state postgres://txflow@db.internal/txflow \\
      --replay --from 0 --to 99 --variant strict:child-min-txns=100

  # A threshold sweep: one variant per value
  mechanism-y --landing landing --importance data/CustomerImportance.csv --output sweep \\
      --state sqlite://sweep.db --replay --sweep child-min-txns=60..120/20

  # Process 0 of a two-process cluster, two workers each (process 1 runs with -p 1)
  mechanism-y --landing s3://bank/landing --importance s3://bank/CustomerImportance.csv \\
      --output s3://bank/out --state postgres://txflow@db.internal/txflow \\
      -w 2 -n 2 -p 0 -h hosts.txt
";

/// `--poll-ms`'s floor: [`mechanism_y::MIN_POLL_INTERVAL`].
const MIN_POLL_MS: u64 = mechanism_y::MIN_POLL_INTERVAL.as_millis() as u64;

fn main() -> ExitCode {
    // A cluster's lost connection becomes the run's one-line error, not panic messages.
    std::panic::set_hook(cluster::quiet_panic_hook(std::panic::take_hook()));
    if let Err(code) = cli::refuse_bare_dash_h() {
        return code;
    }
    let args = match cli::parse_args::<Args>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(reason) = check_usage(&args) {
        return cli::usage_failure(reason);
    }
    let console = cli::init_logging(&args.log);
    let variants = match variants(&args) {
        Ok(variants) => variants,
        // A `--variants` file that cannot be read is what an option names, not how it is
        // written: a configuration error, as any other file that cannot be used.
        Err(
            e @ VariantOptionError::Invalid {
                problem: Problem::Unreadable(_),
                ..
            },
        ) => return cli::exit_with(Err(Error::configuration(e.to_string()).into())),
        Err(e) => return cli::usage_failure(e),
    };
    cli::exit_with(run(args, variants, &console))
}

/// The usage rules clap cannot state: those on a boolean's value rather than its presence
/// (`--follow=false --replay` is fine), and the ranges of the timely options.
fn check_usage(args: &Args) -> Result<(), String> {
    if args.follow && args.replay {
        return Err("--follow cannot be used with --replay (a backtest ends its stream)".into());
    }
    for (option, given) in [("--from", args.from), ("--to", args.to)] {
        if given.is_some() && !args.replay {
            return Err(format!(
                "{option} needs --replay (it bounds the replay range)"
            ));
        }
    }
    args.timely().validate().map_err(|e| e.to_string())
}

impl Args {
    fn timely(&self) -> TimelyOptions {
        TimelyOptions {
            workers: self.workers,
            processes: self.processes,
            process: self.process,
            hostfile: self.hostfile.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout),
        }
    }
}

/// The backtest variants of `--variants`, `--variant` and `--sweep`; a variant that repeats
/// the baseline or another variant is allowed, with a warning.
fn variants(args: &Args) -> Result<Vec<Variant>, VariantOptionError> {
    let resolved = args.variants.resolve(&args.thresholds)?;
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    Ok(resolved.variants)
}

fn run(args: Args, variants: Vec<Variant>, console: &Console) -> anyhow::Result<()> {
    let poll_interval = args
        .poll_ms
        .map(Duration::from_millis)
        .unwrap_or_else(|| mechanism_y::default_poll_interval(&args.landing));
    let state = args.state.config()?;
    let timely = args.timely();
    let options = YOptions {
        landing: args.landing,
        importance: args.importance,
        output: args.output,
        state,
        mode: match args.replay {
            true => Mode::Replay {
                range: ReplayRange {
                    from: args.from,
                    to: args.to,
                },
                variants,
            },
            false => Mode::Live {
                forever: args.follow,
                variants,
            },
        },
        thresholds: args.thresholds,
        timely,
        s3: args.s3.options(),
        poll_interval,
        gap_warn: Duration::from_secs(args.gap_warn_secs),
        settle: Duration::from_millis(args.settle_ms),
        http: args.http.as_deref().map(http::parse_addr).transpose()?,
        ready_max_lag: args.ready_max_lag,
        ready_max_idle: args.ready_max_idle,
        stall_timeout: Duration::from_secs(args.stall_timeout),
        linger_on_failure: Duration::from_secs(args.linger_on_failure),
        checkpoints: CheckpointOptions {
            interval: args.checkpoint_interval,
            location: args.checkpoints,
            kept: args.checkpoints_kept as usize,
            required: args.checkpoint_required,
        },
    };
    // SIGINT/SIGTERM: finish or abandon the epoch in flight, then exit 0; a restart resumes.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let summary = match mechanism_y::run_shown(&options, stop, console) {
        Err(e) if matches!(e.root(), Error::Cluster(ClusterError::StoppedConnecting)) => {
            eprintln!("mechanism-y: {e}");
            return Ok(());
        }
        result => result?,
    };
    if options.timely.process == 0 {
        println!(
            "mechanism-y: {} epochs committed ({} recovered), {} rows accepted, {} rejected, \
             {} detections in the ledger, {} files written, stream {}, {:.3} s",
            summary.epochs_committed,
            summary.epochs_recovered,
            summary.rows_accepted,
            summary.rows_rejected,
            summary.detections_total,
            summary.files_written,
            if summary.finished {
                "ended"
            } else {
                "not ended"
            },
            summary.wall.as_secs_f64()
        );
        // Last, so that the report is the one thing a reader of the run's end looks for.
        if let Some(page) = &summary.report {
            println!("mechanism-y: report: {page} (and .json)");
        }
    }
    Ok(())
}

/// A duration: a number with `ms`, `s`, `m` or `h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 5m, 1h)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
        )),
    }
}
