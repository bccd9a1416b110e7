//! Command-line pieces shared by the binaries: logging, S3 and threshold options, and the
//! "one-line reason on stderr, non-zero exit" convention.

use std::process::ExitCode;

use clap::Args;

use crate::model::{Fraction, Thresholds};
use crate::objectstore::S3Options;

/// Logs go to stderr; `RUST_LOG` overrides the default level (`info`).
pub fn init_logging() {
    init_logging_at("info")
}

/// As [`init_logging`] with another default level.
pub fn init_logging_at(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Parses the command line; a usage error is one `error:` line on stderr instead of clap's
/// multi-line usage text, as the SPEC asks of every failure, and `Err` with exit status 2.
/// `--help` and `--version` print as usual and give `Err(ExitCode::SUCCESS)`: the binary
/// returns the code from `main` (the library never ends the process).
pub fn parse_args<A: clap::Parser>() -> Result<A, ExitCode> {
    match A::try_parse() {
        Ok(args) => Ok(args),
        Err(e) if !e.use_stderr() => match e.print() {
            Ok(()) => Err(ExitCode::SUCCESS),
            Err(_) => Err(ExitCode::FAILURE),
        },
        Err(e) => {
            eprintln!("error: {} (see --help)", usage_error(&e));
            Err(ExitCode::from(2))
        }
    }
}

/// clap's first paragraph on one line: the error line, then any indented details (e.g. the
/// names of missing arguments).
fn usage_error(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let mut lines = rendered.lines().skip_while(|l| l.trim().is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let details: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let reason = first.trim_start_matches("error: ");
    if details.is_empty() {
        reason.to_string()
    } else {
        format!("{reason} {}", details.join(", "))
    }
}

/// The exit status of a binary's result: an error is printed as one `error:` line on stderr,
/// with exit status 1.
pub fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the line already
/// holds (library errors often print their source in their own message too).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// S3 client options (the standard AWS chain supplies credentials and region).
#[derive(Args, Clone, Debug, Default)]
pub struct S3Args {
    /// S3-compatible endpoint (MinIO, Ceph, ...); switches to path-style addressing.
    /// Defaults to AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL when set.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// AWS region (default: from the AWS configuration chain, else us-east-1).
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
}

impl S3Args {
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
        }
    }
}

/// Pattern thresholds (SPEC §4); the defaults are the SPEC's.
#[derive(Args, Clone, Debug)]
pub struct ThresholdArgs {
    /// PatId1: merchants with more than this many transactions qualify.
    #[arg(long, default_value_t = 50_000)]
    pub upgrade_min_merchant_txns: u64,
    /// PatId1: count percentile a customer must reach.
    #[arg(long, default_value = "0.90", value_parser = parse_fraction)]
    pub upgrade_count_percentile: Fraction,
    /// PatId1: weight percentile a customer must stay at or under.
    #[arg(long, default_value = "0.10", value_parser = parse_fraction)]
    pub upgrade_weight_percentile: Fraction,
    /// PatId2: minimum transactions of a customer at a merchant.
    #[arg(long, default_value_t = 80)]
    pub child_min_txns: u64,
    /// PatId2: the average amount must be strictly below this.
    #[arg(long, default_value = "23", value_parser = parse_amount)]
    pub child_max_avg_amount: i64,
    /// PatId3: distinct female customers must be strictly more than this.
    #[arg(long, default_value_t = 100)]
    pub dei_min_female_customers: u64,
}

impl ThresholdArgs {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            upgrade_min_merchant_txns: self.upgrade_min_merchant_txns,
            upgrade_count_percentile: self.upgrade_count_percentile,
            upgrade_weight_percentile: self.upgrade_weight_percentile,
            child_min_txns: self.child_min_txns,
            child_max_avg_amount: self.child_max_avg_amount,
            dei_min_female_customers: self.dei_min_female_customers,
        }
    }
}

fn parse_fraction(text: &str) -> Result<Fraction, String> {
    Fraction::parse(text)
        .ok_or_else(|| format!("{text:?} is not a fraction in [0, 1] with at most six decimals"))
}

fn parse_amount(text: &str) -> Result<i64, String> {
    crate::decimal::parse_decimal_micros(text)
        .ok_or_else(|| format!("{text:?} is not a non-negative decimal amount"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_skips_repeated_causes() {
        let io = std::io::Error::other("Is a directory");
        let e = anyhow::Error::new(io).context("rename x: Is a directory");
        let e = e.context("committing epoch 3");
        assert_eq!(one_line(&e), "committing epoch 3: rename x: Is a directory");
        let e = anyhow::anyhow!("first\nsecond").context("outer");
        assert_eq!(one_line(&e), "outer: first second");
    }
}
