//! `mechanism-x`: the producer. See `txflow::mechanism_x`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use txflow::cli::{self, LogArgs, S3Args};
use txflow::mechanism_x::{self, XOptions};

/// Publishes transactions.csv as chunk objects, one every interval.
#[derive(Parser, Debug)]
#[command(name = "mechanism-x", version = cli::VERSION, after_long_help = EXAMPLES)]
struct Args {
    /// The transactions CSV to publish.
    #[arg(help_heading = "Inputs", long, env = "TXFLOW_SOURCE")]
    source: PathBuf,
    /// Landing location: a directory or s3://bucket/prefix.
    #[arg(help_heading = "Inputs", long, env = "TXFLOW_LANDING")]
    landing: String,
    /// Records per chunk.
    #[arg(
        help_heading = "Live",
        long,
        default_value_t = 10_000,
        env = "TXFLOW_CHUNK_ROWS"
    )]
    chunk_rows: usize,
    /// Milliseconds between chunks; 0 = as fast as possible.
    #[arg(
        help_heading = "Live",
        long,
        default_value_t = 1000,
        env = "TXFLOW_INTERVAL_MS"
    )]
    interval_ms: u64,
    /// Stop after this many chunks without writing _COMPLETE (for demos and tests).
    #[arg(help_heading = "Live", long, env = "TXFLOW_MAX_CHUNKS")]
    max_chunks: Option<u64>,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    log: LogArgs,
}

/// `--help`'s examples, after the options.
const EXAMPLES: &str = "\
Examples:
  # One chunk of 10,000 rows a second into a local landing directory
  mechanism-x --source data/transactions.csv --landing landing

  # As fast as possible into S3, 5,000 rows a chunk
  mechanism-x --source data/transactions.csv --landing s3://bank/landing \\
      --chunk-rows 5000 --interval-ms 0

  # The first 3 chunks only, without _COMPLETE (a demo, a test)
  mechanism-x --source data/transactions.csv --landing landing --max-chunks 3
";

fn main() -> ExitCode {
    let args = match cli::parse_args::<Args>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    cli::init_logging(&args.log);
    cli::exit_with(run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let options = XOptions {
        source: args.source,
        landing: args.landing,
        chunk_rows: args.chunk_rows,
        interval: Duration::from_millis(args.interval_ms),
        s3: args.s3.options(),
        max_chunks: args.max_chunks,
    };
    let summary = mechanism_x::run(&options)?;
    println!(
        "mechanism-x: {} chunks in the landing store ({} written now, {} already there), {} rows written, {}",
        summary.chunks_total,
        summary.chunks_written,
        summary.chunks_already_present,
        summary.rows_written,
        if summary.complete { "complete" } else { "not complete" }
    );
    Ok(())
}
