//! `txflow-report`: a run report from a state store (finished or still running, embedded or
//! PostgreSQL): a self-contained HTML page with the console's figures and charts for the whole
//! run, and optionally the same status as JSON for scripts. See `txflow::report`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use txflow::cli::{self, LogArgs, S3Args, StateArgs};
use txflow::error::Error;
use txflow::objectstore::{self, Location};
use txflow::report;
use txflow::sinks::state::{self, StateConfig};

/// Writes a run report (HTML, and JSON with --json) from a state store.
#[derive(Parser, Debug)]
#[command(name = "txflow-report", version = cli::VERSION, after_long_help = EXAMPLES)]
struct Args {
    #[command(flatten)]
    state: StateArgs,
    /// The run's output location (a directory or s3://bucket/prefix): rejected rows are
    /// counted by reason from its rejects/ files.
    #[arg(help_heading = "Inputs", long, env = "TXFLOW_OUTPUT")]
    output: Option<String>,
    /// Where to write the HTML report.
    #[arg(help_heading = "Operating", long, env = "TXFLOW_HTML")]
    html: PathBuf,
    /// Where to write the status as JSON (the shape of the console's /api/status).
    #[arg(help_heading = "Operating", long, env = "TXFLOW_JSON")]
    json: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    log: LogArgs,
}

/// `--help`'s examples, after the options.
const EXAMPLES: &str = "\
Examples:
  # The report of an embedded store, with rejects counted from the run's output
  txflow-report --state sqlite://state.db --output out --html report.html

  # A PostgreSQL store, and the status as JSON for a script
  txflow-report --state postgres://txflow@db.internal/txflow --html report.html \\
      --json status.json

  # Rejects from an S3 output
  txflow-report --state sqlite://state.db --output s3://bank/out --html report.html
";

fn main() -> ExitCode {
    let args = match cli::parse_args::<Args>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    cli::init_logging_at(&args.log, "warn");
    cli::exit_with(run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = args.state.config()?;
    if let StateConfig::Embedded { path } = &config {
        if !path.is_file() {
            let missing = format!("opening the state store {config}: no such file");
            return Err(Error::configuration(missing).into());
        }
    }
    // Read-only: a report never writes to what it reads.
    let mut store = state::open_read_only(&config)
        .with_context(|| format!("opening the state store {config}"))?;
    let output = match &args.output {
        Some(location) => Some(open_output(location, &args.s3)?),
        None => None,
    };
    let mut status = report::status_from_store(store.as_mut(), output.as_deref())
        .with_context(|| format!("reading the state store {config}"))?;
    status["run"]["state"] = config.describe().into();
    write(&args.html, report::render_report(&status).as_bytes())?;
    if let Some(json) = &args.json {
        let mut text = serde_json::to_string_pretty(&status)?;
        text.push('\n');
        write(json, text.as_bytes())?;
    }
    println!(
        "txflow-report: {} epochs, {} detections, stream {}: {}",
        status["progress"]["epochs_committed"],
        status["detections"]["total"],
        if status["state"] == "ended" {
            "ended"
        } else {
            "not ended"
        },
        args.html.display()
    );
    let failure = &status["previous_error"];
    if !failure.is_null() {
        let text = |key: &str| failure[key].as_str().unwrap_or_default().to_string();
        println!(
            "txflow-report: the last run failure, at {} ({}, exit {}): {}",
            text("at"),
            text("domain"),
            failure["exit_code"],
            text("message")
        );
    }
    Ok(())
}

/// The output store; a local directory must exist (a report never creates one).
fn open_output(
    location: &str,
    s3: &S3Args,
) -> anyhow::Result<std::sync::Arc<dyn objectstore::ObjectStore>> {
    let context = || format!("opening the output location {location}");
    if let Location::Local(dir) = Location::parse(location).with_context(context)? {
        if !dir.is_dir() {
            let missing = format!("opening the output location {location}: no such directory");
            return Err(Error::configuration(missing).into());
        }
    }
    objectstore::open(location, &s3.options()).with_context(context)
}

fn write(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))
}
