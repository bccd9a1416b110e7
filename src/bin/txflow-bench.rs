//! `txflow-bench`: the benchmark (not a timed test). Generates (or reuses) the default data
//! set (594,643 rows, 60 chunks) and the ×10 set (5,946,430 rows, 595 chunks), backtests them
//! with Mechanism Y on local directories and the embedded store, and measures live latency at
//! the real pace of one chunk per second.
//!
//! Each backtest runs in a child process (this binary, `child` subcommand) so that its peak
//! RSS can be read from `wait4`.
//!
//! The floor: the same chunks fetched from the landing directory (through the object store)
//! and framed, parsed and validated by the same number of threads, each taking its share as a
//! worker does — no dataflow, no commits. `total / floor` is the figure to steer by: what the
//! incremental computation and the commits cost beyond reading the input.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser, Subcommand};
use txflow::cli::{self, LogArgs};
use txflow::mechanism_x::{self, XOptions};
use txflow::mechanism_y::{self, Mode, ReplayRange, TimelyOptions, YOptions};
use txflow::model::{Amount, Fraction, Thresholds, Variant, MICROS_PER_UNIT};
use txflow::runtime::checkpointer::DEFAULT_CHECKPOINT_INTERVAL;
use txflow::sinks::state::StateConfig;
use txgen::GenOptions;

#[derive(Parser, Debug)]
#[command(name = "txflow-bench", version = txflow::cli::VERSION, after_long_help = EXAMPLES)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Where data sets and scratch runs live.
    #[arg(
        help_heading = "Inputs",
        long,
        default_value = "target/bench",
        env = "TXFLOW_DIR"
    )]
    dir: PathBuf,
    /// Data sets to backtest: `default` (594,643 rows) and/or `x10` (5,946,430 rows).
    #[arg(
        help_heading = "Inputs",
        long,
        value_delimiter = ',',
        default_value = "default,x10",
        env = "TXFLOW_SETS"
    )]
    sets: Vec<String>,
    /// Worker counts to compare.
    #[arg(
        help_heading = "Cluster",
        long,
        value_delimiter = ',',
        default_value = "1,2",
        env = "TXFLOW_WORKERS"
    )]
    workers: Vec<usize>,
    /// Runs per configuration; the median is reported.
    #[arg(
        help_heading = "Replay & variants",
        long,
        default_value_t = 3,
        env = "TXFLOW_RUNS"
    )]
    runs: usize,
    /// Chunks to publish at one per second for the live-latency measurement (0 = skip).
    #[arg(
        help_heading = "Live",
        long,
        default_value_t = 30,
        env = "TXFLOW_LIVE_CHUNKS"
    )]
    live_chunks: u64,
    /// Also compare each backtest with the same backtest plus 4 threshold variants (two of
    /// PatId1, one each of PatId2 and PatId3): wall time and peak RSS. --variants=false turns
    /// off a TXFLOW_VARIANTS set in the environment.
    #[arg(
        help_heading = "Replay & variants",
        long,
        env = "TXFLOW_VARIANTS",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    variants: bool,
    /// Also measure checkpoints (every 50 epochs, with the first worker count): a backtest's
    /// cost with and without them, their size, and a restart after epoch 130 and after the
    /// last epoch but 14, both ~30 epochs after a checkpoint (the wall time until the first
    /// new epoch is committed).
    #[arg(help_heading = "State store", long, env = "TXFLOW_CHECKPOINT_FIGURES")]
    checkpoint_figures: bool,
    #[command(flatten)]
    log: LogArgs,
}

/// `--help`'s examples, after the options.
const EXAMPLES: &str = "\
Examples:
  # Everything: both data sets, 1 and 2 workers, 3 runs each, live latency
  txflow-bench

  # The default data set once, one worker, no live measurement
  txflow-bench --sets default --workers 1 --runs 1 --live-chunks 0

  # The cost of variants and of checkpoints
  txflow-bench --sets default --variants --checkpoint-figures
";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// (internal) One backtest; prints a RESULT line.
    Child {
        landing: PathBuf,
        importance: PathBuf,
        scratch: PathBuf,
        workers: usize,
        /// Add the 4 benchmark variants.
        #[arg(long)]
        variants: bool,
        /// `--checkpoint-interval` (0 = none).
        #[arg(long, default_value_t = 0)]
        checkpoint_interval: u64,
        /// Stop (as SIGTERM does) once more than this many epochs are committed.
        #[arg(long)]
        stop_after: Option<usize>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Cmd::Child {
        landing,
        importance,
        scratch,
        workers,
        variants,
        checkpoint_interval,
        stop_after,
    }) = &args.command
    {
        let run = ChildRun {
            workers: *workers,
            variants: *variants,
            checkpoint_interval: *checkpoint_interval,
            stop_after: *stop_after,
        };
        return cli::exit_with(child(landing, importance, scratch, &run));
    }
    cli::init_logging_at(&args.log, "warn");
    cli::exit_with(run(&args))
}

fn rows_of(set: &str) -> anyhow::Result<u64> {
    match set {
        "default" => Ok(594_643),
        "x10" => Ok(5_946_430),
        other => anyhow::bail!("unknown data set {other:?} (expected default or x10)"),
    }
}

/// Generates and chunks a data set once; later runs reuse it.
fn prepare(dir: &Path, set: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let base = dir.join(set);
    let data = base.join("data");
    let landing = base.join("landing");
    if !landing.join("_COMPLETE").exists() {
        let rows = rows_of(set)?;
        eprintln!(
            "preparing the {set} data set ({rows} rows) in {}",
            base.display()
        );
        let _ = std::fs::remove_dir_all(&base);
        txgen::generate(&data, &GenOptions { rows, seed: 42 })
            .with_context(|| format!("generating data into {}", data.display()))?;
        let mut x = XOptions::new(data.join("transactions.csv"), path_str(&landing)?);
        x.interval = Duration::ZERO;
        mechanism_x::run(&x)?;
    }
    Ok((landing, data.join("CustomerImportance.csv")))
}

struct Measured {
    wall_s: f64,
    epoch_ms: Vec<f64>,
    peak_rss_kib: i64,
    /// Epochs an earlier run committed, replayed or restored (a restart).
    recovered: u64,
}

/// What one benchmark child runs.
#[derive(Clone, Copy, Debug, Default)]
struct ChildRun {
    workers: usize,
    variants: bool,
    checkpoint_interval: u64,
    stop_after: Option<usize>,
}

fn run(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "txflow-bench: {cpus} CPUs, release={}",
        !cfg!(debug_assertions)
    );
    println!();
    println!("| data set | rows | workers | wall (median of {}) | floor | total / floor | rows/s | epoch p50 | epoch p99 | first-10 median | last-10 median | last/first | peak RSS |", args.runs);
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for set in &args.sets {
        let rows = rows_of(set)?;
        let (landing, importance) = prepare(&args.dir, set)?;
        for &workers in &args.workers {
            let mut runs = Vec::new();
            for i in 0..args.runs {
                let scratch = args.dir.join(format!("scratch-{set}-w{workers}-{i}"));
                let _ = std::fs::remove_dir_all(&scratch);
                std::fs::create_dir_all(&scratch)
                    .with_context(|| format!("creating {}", scratch.display()))?;
                let run = ChildRun {
                    workers,
                    checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
                    ..ChildRun::default()
                };
                runs.push(spawn_child(&exe, &landing, &importance, &scratch, run)?);
                let _ = std::fs::remove_dir_all(&scratch);
            }
            runs.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
            let m = &runs[runs.len() / 2];
            let floor = floor(&landing, workers, args.runs)?;
            let mut sorted = m.epoch_ms.clone();
            sorted.sort_by(f64::total_cmp);
            let first = median(&m.epoch_ms[..10.min(m.epoch_ms.len())]);
            let last = median(&m.epoch_ms[m.epoch_ms.len().saturating_sub(10)..]);
            println!(
                "| {set} | {rows} | {workers} | {:.3} s | {floor:.3} s | {:.2} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} | {:.0} MiB |",
                m.wall_s,
                m.wall_s / floor,
                rows as f64 / m.wall_s,
                quantile(&sorted, 0.50),
                quantile(&sorted, 0.99),
                first,
                last,
                last / first,
                m.peak_rss_kib as f64 / 1024.0
            );
        }
    }
    if args.variants {
        compare_variants(args, &exe)?;
    }
    if args.checkpoint_figures {
        compare_checkpoints(args, &exe)?;
    }
    if args.live_chunks > 0 {
        live(args)?;
    }
    Ok(())
}

/// Baseline alone vs baseline + the 4 benchmark variants, median wall and peak RSS of
/// `args.runs` runs each, alternating so that both see the same machine.
fn compare_variants(args: &Args, exe: &Path) -> anyhow::Result<()> {
    println!();
    println!("| data set | workers | wall: baseline | wall: + 4 variants | ratio | peak RSS: baseline | peak RSS: + 4 variants | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for set in &args.sets {
        let (landing, importance) = prepare(&args.dir, set)?;
        for &workers in &args.workers {
            let (mut alone, mut with) = (Vec::new(), Vec::new());
            for i in 0..args.runs {
                for variants in [false, true] {
                    let scratch = args.dir.join(format!("scratch-{set}-w{workers}-v{i}"));
                    let _ = std::fs::remove_dir_all(&scratch);
                    std::fs::create_dir_all(&scratch)?;
                    let run = ChildRun {
                        workers,
                        variants,
                        checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
                        ..ChildRun::default()
                    };
                    let m = spawn_child(exe, &landing, &importance, &scratch, run)?;
                    let _ = std::fs::remove_dir_all(&scratch);
                    if variants {
                        with.push(m)
                    } else {
                        alone.push(m)
                    }
                }
            }
            let wall = |m: &[Measured]| median(&m.iter().map(|m| m.wall_s).collect::<Vec<_>>());
            let rss = |m: &[Measured]| {
                median(
                    &m.iter()
                        .map(|m| m.peak_rss_kib as f64 / 1024.0)
                        .collect::<Vec<_>>(),
                )
            };
            let (wa, ww, ra, rw) = (wall(&alone), wall(&with), rss(&alone), rss(&with));
            println!(
                "| {set} | {workers} | {wa:.3} s | {ww:.3} s | {:.2} | {ra:.0} MiB | {rw:.0} MiB | {:.2} |",
                ww / wa,
                rw / ra
            );
        }
    }
    Ok(())
}

/// The benchmark's variants: two of PatId1, one of PatId2, one of PatId3.
fn bench_variants() -> Vec<Variant> {
    let base = Thresholds::default();
    let variant = |name: &str, thresholds: Thresholds| Variant {
        name: name.into(),
        thresholds,
    };
    vec![
        variant(
            "upgrade-p80",
            Thresholds {
                upgrade_count_percentile: Fraction::from_millionths(800_000),
                ..base
            },
        ),
        variant(
            "upgrade-w20-n40k",
            Thresholds {
                upgrade_weight_percentile: Fraction::from_millionths(200_000),
                upgrade_min_merchant_txns: 40_000,
                ..base
            },
        ),
        variant(
            "child-60-25",
            Thresholds {
                child_min_txns: 60,
                child_max_avg_amount: Amount::from_micros(25 * MICROS_PER_UNIT),
                ..base
            },
        ),
        variant(
            "dei-80",
            Thresholds {
                dei_min_female_customers: 80,
                ..base
            },
        ),
    ]
}

/// The parsing floor of a set at `workers` threads, median of `runs`, in seconds: every chunk
/// fetched through the object store in order, each thread parsing its share of it.
fn floor(landing: &Path, workers: usize, runs: usize) -> anyhow::Result<f64> {
    let store = txflow::objectstore::open(path_str(landing)?, &Default::default())?;
    let chunks = txflow::sources::landing::list_chunks(store.as_ref())?;
    let mut walls = Vec::new();
    for _ in 0..runs.max(1) {
        let started = std::time::Instant::now();
        let mut records = 0u64;
        for (k, _) in &chunks {
            let key = txflow::sources::landing::chunk_key(*k);
            let body = store.get(&key)?.context("chunk vanished")?.body;
            records += std::thread::scope(|s| {
                let shares: Vec<_> = (0..workers)
                    .map(|i| {
                        let (key, body) = (&key, &body);
                        s.spawn(move || {
                            txflow::sources::parse::parse_chunk(key, body, workers, i).records
                        })
                    })
                    .collect();
                shares
                    .into_iter()
                    .map(|h| h.join().unwrap_or(0))
                    .sum::<u64>()
            });
        }
        walls.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(records > 0, "the floor pass parsed no record");
    }
    Ok(median(&walls))
}

fn spawn_child(
    exe: &Path,
    landing: &Path,
    importance: &Path,
    scratch: &Path,
    run: ChildRun,
) -> anyhow::Result<Measured> {
    let child = Command::new(exe)
        .arg("child")
        .args([landing, importance, scratch])
        .arg(run.workers.to_string())
        .args(run.variants.then_some("--variants"))
        .args([
            "--checkpoint-interval",
            &run.checkpoint_interval.to_string(),
        ])
        .args(
            run.stop_after
                .iter()
                .flat_map(|n| ["--stop-after".to_string(), n.to_string()]),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.context("child stdout")?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut text)?;
    // wait4 reports the child's own peak RSS (std's wait does not).
    let mut status = 0;
    // SAFETY: plain FFI call with valid pointers; the child is ours and not yet reaped, and
    // an all-zero rusage is a valid value of that plain C struct.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    #[allow(unsafe_code)]
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    anyhow::ensure!(reaped == pid, "wait4 failed");
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "benchmark child failed (status {status})"
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("child printed no RESULT line")?;
    let mut wall_s = 0.0;
    let mut epoch_ms = Vec::new();
    let mut recovered = 0;
    for field in line.split_whitespace() {
        if let Some(v) = field.strip_prefix("wall_s=") {
            wall_s = v.parse()?;
        } else if let Some(v) = field.strip_prefix("epoch_ms=") {
            epoch_ms = v
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()?;
        } else if let Some(v) = field.strip_prefix("recovered=") {
            recovered = v.parse()?;
        }
    }
    Ok(Measured {
        wall_s,
        epoch_ms,
        peak_rss_kib: usage.ru_maxrss,
        recovered,
    })
}

/// One backtest, end to end (importance parsing, chunk parsing, dataflow, commits, files),
/// or its part up to `stop_after` committed epochs.
fn child(landing: &Path, importance: &Path, scratch: &Path, run: &ChildRun) -> anyhow::Result<()> {
    let state = scratch.join("state.db");
    let mut y = YOptions::new(
        path_str(landing)?,
        path_str(importance)?,
        path_str(&scratch.join("output"))?,
        StateConfig::Embedded {
            path: state.clone(),
        },
    );
    y.mode = Mode::Replay {
        range: ReplayRange::default(),
        variants: match run.variants {
            true => bench_variants(),
            false => Vec::new(),
        },
    };
    y.timely = TimelyOptions {
        workers: run.workers,
        ..TimelyOptions::default()
    };
    y.checkpoints.interval = run.checkpoint_interval;
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(n) = run.stop_after {
        let (stop, state) = (stop.clone(), state.clone());
        std::thread::spawn(move || stop_after(n, &state, &stop));
    }
    let summary = mechanism_y::run_with_stop(&y, stop)?;
    let epochs: Vec<String> = summary
        .epoch_latencies
        .iter()
        .map(|d| format!("{:.3}", d.as_secs_f64() * 1e3))
        .collect();
    println!(
        "RESULT wall_s={:.4} epoch_ms={} recovered={}",
        summary.wall.as_secs_f64(),
        epochs.join(","),
        summary.epochs_recovered
    );
    Ok(())
}

/// Sets `stop` once the store at `state` holds more than `n` committed epochs.
fn stop_after(n: usize, state: &Path, stop: &AtomicBool) {
    let config = StateConfig::Embedded {
        path: state.to_path_buf(),
    };
    loop {
        let committed = txflow::sinks::state::open(&config)
            .and_then(|mut s| s.epoch_rows())
            .map_or(0, |rows| rows.len());
        if committed > n {
            stop.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checkpoints every 50 epochs: a backtest's wall time with and without them (alternately),
/// their size, and restarts after epoch 100 and after the last epoch but 14: the restart's
/// wall time until its first new epoch is committed, against the whole backtest's.
fn compare_checkpoints(args: &Args, exe: &Path) -> anyhow::Result<()> {
    const INTERVAL: u64 = 50;
    let workers = args.workers.first().copied().unwrap_or(2);
    println!();
    println!("| data set | workers | wall: no checkpoints | wall: every {INTERVAL} | ratio | checkpoint size | restart after | epochs rebuilt (restored or replayed) | restart wall | restart / backtest |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for set in &args.sets {
        let (landing, importance) = prepare(&args.dir, set)?;
        let chunks = (rows_of(set)?).div_ceil(10_000) as usize;
        let scratch = args.dir.join(format!("scratch-{set}-ck"));
        let fresh = || -> anyhow::Result<()> {
            let _ = std::fs::remove_dir_all(&scratch);
            std::fs::create_dir_all(&scratch)?;
            Ok(())
        };
        let base = ChildRun {
            workers,
            ..ChildRun::default()
        };
        let (mut plain, mut with) = (Vec::new(), Vec::new());
        let mut size = 0;
        for _ in 0..args.runs {
            for interval in [0, INTERVAL] {
                fresh()?;
                let run = ChildRun {
                    checkpoint_interval: interval,
                    ..base
                };
                let m = spawn_child(exe, &landing, &importance, &scratch, run)?;
                match interval {
                    0 => plain.push(m.wall_s),
                    _ => {
                        with.push(m.wall_s);
                        size = newest_checkpoint_bytes(&scratch)?;
                    }
                }
            }
        }
        let (wp, wc) = (median(&plain), median(&with));
        // Both restarts about 30 epochs after a checkpoint (epochs 99 and the last but 45).
        for after in [130.min(chunks / 3), chunks.saturating_sub(15)] {
            fresh()?;
            let run = ChildRun {
                checkpoint_interval: INTERVAL,
                stop_after: Some(after),
                ..base
            };
            spawn_child(exe, &landing, &importance, &scratch, run)?;
            let committed = committed_epochs(&scratch)?;
            let restart = ChildRun {
                stop_after: Some(committed),
                ..run
            };
            let m = spawn_child(exe, &landing, &importance, &scratch, restart)?;
            println!(
                "| {set} | {workers} | {wp:.3} s | {wc:.3} s | {:.3} | {:.1} MB | epoch {} | {} | {:.3} s | {:.3} |",
                wc / wp,
                size as f64 / 1e6,
                committed - 1,
                m.recovered,
                m.wall_s,
                m.wall_s / wc
            );
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

fn committed_epochs(scratch: &Path) -> anyhow::Result<usize> {
    let config = StateConfig::Embedded {
        path: scratch.join("state.db"),
    };
    Ok(txflow::sinks::state::open(&config)?.epoch_rows()?.len())
}

fn newest_checkpoint_bytes(scratch: &Path) -> anyhow::Result<u64> {
    let config = StateConfig::Embedded {
        path: scratch.join("state.db"),
    };
    let rows = txflow::sinks::state::open(&config)?.checkpoints()?;
    Ok(rows.last().map_or(0, |r| r.bytes))
}

/// Live mode at the real pace: X publishes one chunk per second, Y follows; latency is from
/// the chunk object's last-modified time to its epoch's commit.
/// How long after Y the live measurement starts X.
const LIVE_PRODUCER_DELAY: Duration = Duration::from_secs(1);

fn live(args: &Args) -> anyhow::Result<()> {
    let (landing_full, importance) = prepare(&args.dir, "default")?;
    let base = args.dir.join("live");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    // A source of exactly `live_chunks` chunks, cut from the default set's chunks.
    let source = base.join("transactions.csv");
    let mut text = Vec::new();
    for k in 0..args.live_chunks {
        let path = landing_full.join(txflow::sources::landing::chunk_key(k));
        let chunk = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let body = if k == 0 {
            &chunk[..]
        } else {
            let header_end = chunk.iter().position(|b| *b == b'\n').map_or(0, |p| p + 1);
            &chunk[header_end..]
        };
        text.extend_from_slice(body);
    }
    std::fs::write(&source, text).with_context(|| format!("writing {}", source.display()))?;
    let landing = base.join("landing");
    let mut x = XOptions::new(&source, path_str(&landing)?);
    x.interval = Duration::from_secs(1);
    // Y is running when the first chunk lands (as in production): X starts a second after
    // Y, so that no chunk's latency includes Y's start-up (opening the stores, reading the
    // importance file).
    let producer = std::thread::spawn(move || {
        std::thread::sleep(LIVE_PRODUCER_DELAY);
        mechanism_x::run(&x)
    });
    let mut y = YOptions::new(
        path_str(&landing)?,
        path_str(&importance)?,
        path_str(&base.join("output"))?,
        StateConfig::Embedded {
            path: base.join("state.db"),
        },
    );
    y.timely.workers = 2;
    let summary = mechanism_y::run(&y)?;
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("producer panicked"))??;
    let mut ms: Vec<f64> = summary
        .visible_to_commit_ms
        .iter()
        .map(|v| *v as f64)
        .collect();
    ms.sort_by(f64::total_cmp);
    println!();
    println!(
        "live (1 chunk/s, {} chunks of 10,000 rows, -w 2, poll {} ms): visible → committed p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms.len(),
        y.poll_interval.as_millis(),
        quantile(&ms, 0.5),
        quantile(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0)
    );
    Ok(())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}
