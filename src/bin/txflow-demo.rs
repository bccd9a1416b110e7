//! `txflow-demo`: the whole pipeline on the embedded default, no server needed.
//!
//! Generates BankSim-shaped data (unless `--data` names a directory with
//! `transactions.csv` and `CustomerImportance.csv`), then runs Mechanism X and Mechanism Y
//! together on local directories with the SQLite state store, and prints what was detected
//! and where the files are. Mechanism Y serves its console (`--http`, a free loopback port by
//! default) while the demo runs; the demo prints its URL at the start and, at the end, the
//! `txflow-report` command that writes the run's report from the demo's state store.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Parser};
use txflow::cli::{self, LogArgs};
use txflow::http;
use txflow::mechanism_x::{self, XOptions};
use txflow::mechanism_y::{self, RunSummary, TimelyOptions, YOptions};
use txflow::progress::Console;
use txflow::sinks::state::StateConfig;
use txgen::GenOptions;

/// Runs generator → Mechanism X → Mechanism Y on local directories.
#[derive(Parser, Debug)]
#[command(
    name = "txflow-demo",
    version = cli::VERSION,
    after_long_help = "\
Examples:
  # Generate the default data set and run it at the SPEC's pace (one chunk a second)
  txflow-demo

  # A quick run: fewer rows, chunks as fast as possible
  txflow-demo --rows 60000 --interval-ms 0

  # Your own data, four workers, in another directory
  txflow-demo --data mydata --workers 4 --dir demo-run

  # Resume the earlier run in txflow-run/ instead of starting afresh
  txflow-demo --resume
"
)]
struct Args {
    /// Working directory for the data, landing, output and state.
    #[arg(
        help_heading = "Inputs",
        long,
        default_value = "txflow-run",
        env = "TXFLOW_DIR"
    )]
    dir: PathBuf,
    /// Use this directory's transactions.csv and CustomerImportance.csv instead of generating.
    #[arg(help_heading = "Inputs", long, env = "TXFLOW_DATA")]
    data: Option<PathBuf>,
    /// Rows to generate.
    #[arg(
        help_heading = "Inputs",
        long,
        default_value_t = 594_643,
        env = "TXFLOW_ROWS"
    )]
    rows: u64,
    /// Generator seed.
    #[arg(
        help_heading = "Inputs",
        long,
        default_value_t = 42,
        env = "TXFLOW_SEED"
    )]
    seed: u64,
    /// Milliseconds between chunks (the SPEC's pace is 1000; 0 = as fast as possible).
    #[arg(
        help_heading = "Live",
        long,
        default_value_t = 1000,
        env = "TXFLOW_INTERVAL_MS"
    )]
    interval_ms: u64,
    /// Worker threads for Mechanism Y.
    #[arg(
        help_heading = "Cluster",
        short = 'w',
        long = "workers",
        default_value_t = 2,
        env = "TXFLOW_WORKERS"
    )]
    workers: usize,
    /// Keep an earlier run's landing, output and state (resume it) instead of starting afresh.
    /// --resume=false turns off a TXFLOW_RESUME set in the environment.
    #[arg(
        help_heading = "State store",
        long,
        env = "TXFLOW_RESUME",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    resume: bool,
    /// Serve Mechanism Y's console (/, /metrics, /api/status, /healthz, /readyz) on this
    /// address while the demo runs: PORT (loopback) or HOST:PORT; port 0 = a free one;
    /// "off" = no console.
    #[arg(long, value_name = "ADDR", default_value = "0", env = "TXFLOW_HTTP")]
    http: String,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    let args = match cli::parse_args::<Args>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(e) = timely_options(&args).validate() {
        return cli::usage_failure(e);
    }
    let console = cli::init_logging(&args.log);
    cli::exit_with(run(args, &console))
}

fn run(args: Args, console: &Console) -> anyhow::Result<()> {
    let dir = &args.dir;
    let (landing, output, state_db) = (
        dir.join("landing"),
        dir.join("output"),
        dir.join("state.db"),
    );
    if !args.resume {
        clean(&landing, &output, &state_db)?;
    }
    let data = data_dir(&args)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let source = data.join("transactions.csv");
    let importance = data.join("CustomerImportance.csv");

    let mut x = XOptions::new(&source, path_str(&landing)?);
    x.interval = Duration::from_millis(args.interval_ms);
    println!(
        "Mechanism X: {} → {} (one chunk of {} rows every {} ms)",
        source.display(),
        landing.display(),
        x.chunk_rows,
        args.interval_ms
    );
    let producer = std::thread::spawn(move || mechanism_x::run(&x));

    let mut y = YOptions::new(
        path_str(&landing)?,
        path_str(&importance)?,
        path_str(&output)?,
        StateConfig::Embedded {
            path: state_db.to_path_buf(),
        },
    );
    y.timely = timely_options(&args);
    y.http = console_addr(&args.http)?;
    println!(
        "Mechanism Y: live on {} with {} workers",
        landing.display(),
        args.workers
    );
    if let Some(addr) = y.http {
        println!("console: http://{addr}/ (while the demo runs)");
    }
    let summary = mechanism_y::run_shown(&y, Default::default(), console)?;
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("Mechanism X panicked"))??;
    report(&y, &summary, &output, &state_db)?;
    println!(
        "run report: txflow-report --state {} --output {} --html {}",
        shell_word(&format!("sqlite://{}", state_db.display())),
        shell_word(&output.display().to_string()),
        shell_word(&dir.join("report.html").display().to_string())
    );
    Ok(())
}

/// Where the console is served: `--http` parsed, with port 0 replaced by a port free now
/// (the URL is printed before Mechanism Y binds it); `None` for "off".
fn console_addr(text: &str) -> anyhow::Result<Option<SocketAddr>> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let addr = http::parse_addr(text)?;
    if addr.port() != 0 {
        return Ok(Some(addr));
    }
    let free = TcpListener::bind(addr)
        .and_then(|listener| listener.local_addr())
        .with_context(|| format!("finding a free port on {}", addr.ip()))?;
    Ok(Some(free))
}

/// `text` as one word for a POSIX shell: as it is when it holds only characters no shell
/// treats specially, else in single quotes.
fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-:+=,@%".contains(c);
    match !text.is_empty() && text.chars().all(plain) {
        true => text.to_string(),
        false => format!("'{}'", text.replace('\'', "'\\''")),
    }
}

fn timely_options(args: &Args) -> TimelyOptions {
    TimelyOptions {
        workers: args.workers,
        ..TimelyOptions::default()
    }
}

/// Removes an earlier run's landing, output and state.
fn clean(landing: &Path, output: &Path, state_db: &Path) -> anyhow::Result<()> {
    for path in [landing, output] {
        if path.exists() {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("cleaning {}", path.display()))?;
        }
    }
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", state_db.display()));
    }
    Ok(())
}

/// The directory of the input files: `--data`, else `DIR/data`, generated unless present.
fn data_dir(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(data) = &args.data {
        return Ok(data.clone());
    }
    let data = args.dir.join("data");
    if !data.join("transactions.csv").exists() {
        println!(
            "generating {} rows (seed {}) into {}",
            args.rows,
            args.seed,
            data.display()
        );
        txgen::generate(
            &data,
            &GenOptions {
                rows: args.rows,
                seed: args.seed,
            },
        )
        .with_context(|| format!("generating data into {}", data.display()))?;
    }
    Ok(data)
}

/// Prints what was detected and where the files are.
fn report(
    y: &YOptions,
    summary: &RunSummary,
    output: &Path,
    state_db: &Path,
) -> anyhow::Result<()> {
    let mut store = txflow::sinks::state::open(&y.state)?;
    let ledger = store.ledger(txflow::sinks::state::LedgerId::Baseline)?;
    println!();
    println!(
        "done in {:.1} s: {} epochs, {} rows accepted, {} rejected",
        summary.wall.as_secs_f64(),
        summary.epochs_committed + summary.epochs_recovered,
        summary.rows_accepted,
        summary.rows_rejected
    );
    for pattern in txflow::model::Pattern::ALL {
        let n = ledger.iter().filter(|r| r.pattern == pattern).count();
        println!("  {} {:<10} {n} detections", pattern.id(), pattern.action());
    }
    println!(
        "detection files (50 per file): {}/detections-*.csv",
        output.display()
    );
    println!(
        "rejected rows:                 {}/rejects/",
        output.display()
    );
    println!("state store (SQLite):          {}", state_db.display());
    Ok(())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}
