//! `txflow-report`: a run report from a state store (finished or still running, embedded or
//! PostgreSQL): a self-contained HTML page with the console's figures and charts for the whole
//! run, and optionally the same status as JSON for scripts; or, with `--promote NAME`, the
//! options that make a recorded variant the next run's baseline. See `txflow::report`.

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
    #[arg(
        help_heading = "Operating",
        long,
        env = "TXFLOW_HTML",
        required_unless_present = "promote"
    )]
    html: Option<PathBuf>,
    /// Instead of a report, print the threshold options that make the store's variant NAME
    /// the baseline of the next run, and a --variants file keeping the current baseline as
    /// the variant previous-baseline.
    #[arg(help_heading = "Operating", long, value_name = "NAME", env = "TXFLOW_PROMOTE",
          conflicts_with_all = ["html", "json"])]
    promote: Option<String>,
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

  # The options that make the backtest's variant strict the next run's baseline
  txflow-report --state sqlite://state.db --promote strict
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
    if let Some(name) = &args.promote {
        let promotion = report::Promotion::from_store(store.as_mut(), name)
            .with_context(|| format!("reading the state store {config}"))?;
        print!("{}", promotion.render());
        return Ok(());
    }
    let Some(html) = &args.html else {
        return Err(Error::configuration("--html is required").into());
    };
    let output = match &args.output {
        Some(location) => Some(open_output(location, &args.s3)?),
        None => None,
    };
    let mut status = report::status_from_store(store.as_mut(), output.as_deref())
        .with_context(|| format!("reading the state store {config}"))?;
    status["run"]["state"] = config.describe().into();
    write(html, report::render_report(&status).as_bytes())?;
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
        html.display()
    );
    for variant in status["variants"].as_array().into_iter().flatten() {
        println!(
            "txflow-report: {}",
            variant_line(variant, &status["run"]["thresholds"])
        );
    }
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

/// A variant of the status: its name, the thresholds it changes and its detections
/// (`variant strict (child-min-txns 100): 3 detections (PatId1 0, PatId2 3, PatId3 0)`).
fn variant_line(variant: &serde_json::Value, baseline: &serde_json::Value) -> String {
    let thresholds = variant["thresholds"].as_object().into_iter().flatten();
    let changed: Vec<String> = thresholds
        .filter(|(key, value)| baseline.get(key.as_str()) != Some(value))
        .map(|(key, value)| {
            format!(
                "{key} {}",
                value.as_str().map_or(value.to_string(), str::to_string)
            )
        })
        .collect();
    let patterns = variant["detections"]["by_pattern"]
        .as_object()
        .into_iter()
        .flatten();
    let patterns: Vec<String> = patterns.map(|(p, n)| format!("{p} {n}")).collect();
    format!(
        "variant {} ({}): {} detections ({})",
        variant["name"].as_str().unwrap_or_default(),
        match changed.is_empty() {
            true => "the baseline's thresholds".to_string(),
            false => changed.join(", "),
        },
        variant["detections"]["total"],
        patterns.join(", ")
    )
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
