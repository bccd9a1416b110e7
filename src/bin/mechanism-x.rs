//! `mechanism-x`: the producer. See `txflow::mechanism_x`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use txflow::cli::{self, LogArgs, S3Args};
use txflow::mechanism_x::{self, XOptions};

/// Publishes transactions.csv as chunk objects, one every interval.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The transactions CSV to publish.
    #[arg(long, env = "TXFLOW_SOURCE")]
    source: PathBuf,
    /// Landing location: a directory or s3://bucket/prefix.
    #[arg(long, env = "TXFLOW_LANDING")]
    landing: String,
    /// Records per chunk.
    #[arg(long, default_value_t = 10_000, env = "TXFLOW_CHUNK_ROWS")]
    chunk_rows: usize,
    /// Milliseconds between chunks; 0 = as fast as possible.
    #[arg(long, default_value_t = 1000, env = "TXFLOW_INTERVAL_MS")]
    interval_ms: u64,
    /// Stop after this many chunks without writing _COMPLETE (for demos and tests).
    #[arg(long, env = "TXFLOW_MAX_CHUNKS")]
    max_chunks: Option<u64>,
    #[command(flatten)]
    s3: S3Args,
    #[command(flatten)]
    log: LogArgs,
}

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
