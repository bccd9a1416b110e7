//! Command-line pieces shared by the binaries: logging, S3 and threshold options, and the
//! "one-line reason on stderr, non-zero exit" convention.
//!
//! Every option of every binary can also be given by an environment variable, `TXFLOW_` and
//! the option's name in upper snake case (`--state` → `TXFLOW_STATE`); the command line wins.
//! So a boolean option is `--name[=BOOL]`: `--name` alone is `--name=true`, and
//! `--name=false` turns off a `TXFLOW_NAME` the environment sets (clap's `ArgAction::Set`
//! with an optional value; the `=` is required, so the option never takes the next word).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, ValueEnum};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::error::{Context, Result};
use crate::model::{CountThreshold, Fraction, Thresholds};
use crate::objectstore::S3Options;
use crate::progress::{self, Console, Display};
use crate::redact;
use crate::sinks::state::postgres::DEFAULT_STATEMENT_TIMEOUT;
use crate::sinks::state::{PgOptions, StateConfig};

/// Logging and progress options, the same in every binary.
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Warnings and errors only (whatever RUST_LOG says), and no progress. --quiet=false
    /// turns off a TXFLOW_QUIET set in the environment.
    #[arg(
        long,
        env = "TXFLOW_QUIET",
        value_name = "BOOL",
        action = ArgAction::Set,
        num_args = 0..=1,
        require_equals = true,
        default_value = "false",
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub quiet: bool,
    /// Log format on stderr: text, or json (one object per line, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TXFLOW_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// When stderr is not a terminal (or with --log-format json): the least time between two
    /// progress log lines, in milliseconds.
    #[arg(long, default_value_t = progress::DEFAULT_INTERVAL.as_millis() as u64,
          env = "TXFLOW_PROGRESS_INTERVAL_MS", env = "TXFLOW_PROGRESS_INTERVAL_MS")]
    pub progress_interval_ms: u64,
}

impl Default for LogArgs {
    fn default() -> LogArgs {
        LogArgs {
            quiet: false,
            log_format: LogFormat::Text,
            progress_interval_ms: progress::DEFAULT_INTERVAL.as_millis() as u64,
        }
    }
}

/// The format of log lines.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL message field=value ...`, coloured on a terminal only.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, fields (with the message), target.
    Json,
}

/// Dependencies whose internals (e.g. the AWS SDK's credential-provider dump, logged at WARN
/// with a debug struct) stay out of the log unless RUST_LOG names them or asks for debug.
const INTERNALS: [&str; 10] = [
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk",
    "aws_sigv4",
    "aws_smithy",
    "aws_types",
    "h2",
    "hyper",
    "rustls",
];

/// Logs go to stderr: txflow's at `info`, dependencies' at `warn`; `RUST_LOG` overrides.
pub fn init_logging(log: &LogArgs) -> Console {
    init_logging_at(log, "info")
}

/// As [`init_logging`] with another default level for txflow's own logs. Also decides how
/// progress is shown: the [`Console`] to hand to the process's runs.
pub fn init_logging_at(log: &LogArgs, txflow_level: &str) -> Console {
    let terminal = std::io::stderr().is_terminal();
    let console = Console::new(if log.quiet {
        Display::Off
    } else if terminal && log.log_format == LogFormat::Text {
        Display::Terminal
    } else {
        Display::Log {
            interval: Duration::from_millis(log.progress_interval_ms),
        }
    });
    let (for_text, for_json) = (console.clone(), console.clone());
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), txflow_level);
    let quiet = log.quiet.then_some(LevelFilter::WARN);
    let text = (log.log_format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(move || for_text.stderr())
            .with_target(false)
            .with_ansi(terminal && !no_color())
    });
    let json = (log.log_format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(move || for_json.stderr())
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(quiet)
        .with(text)
        .with(json)
        .try_init();
    console
}

/// `NO_COLOR` set to anything but the empty string (no-color.org).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// `RUST_LOG` when it is set and valid, else txflow at `txflow_level` and the rest at `warn`;
/// either way with the [`INTERNALS`] off that it does not name.
fn log_filter(rust_log: Option<&str>, txflow_level: &str) -> EnvFilter {
    let directives = match rust_log.filter(|text| EnvFilter::try_new(text).is_ok()) {
        Some(text) => text.to_string(),
        None => format!("warn,txflow={txflow_level}"),
    };
    let mut all: Vec<String> = vec![directives.clone()];
    all.extend(internals_off(&directives));
    EnvFilter::new(all.join(","))
}

/// `T=off` for each of the [`INTERNALS`] that no directive names, unless the directives'
/// default level is `debug` or `trace`.
fn internals_off(directives: &str) -> Vec<String> {
    let parts: Vec<&str> = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if parts
        .iter()
        .any(|d| d.eq_ignore_ascii_case("debug") || d.eq_ignore_ascii_case("trace"))
    {
        return Vec::new();
    }
    let named = |internal: &str| {
        parts.iter().any(|d| {
            let target = d.split(['=', '[']).next().unwrap_or("");
            !target.is_empty() && (target.starts_with(internal) || internal.starts_with(target))
        })
    };
    INTERNALS
        .iter()
        .filter(|internal| !named(internal))
        .map(|internal| format!("{internal}=off"))
        .collect()
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

/// A usage error found after parsing (a rule clap cannot state): one `error:` line, as
/// clap's, and exit status 2.
pub fn usage_failure(reason: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {reason}");
    ExitCode::from(2)
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

/// The state store and its PostgreSQL options, as mechanism-y and txflow-report take them.
#[derive(Args, Clone, Debug)]
pub struct StateArgs {
    /// State store: sqlite://PATH (embedded) or a postgres:// URL.
    #[arg(long, env = "TXFLOW_STATE", hide_env_values = true)]
    pub state: String,
    /// PEM file of CA certificates for PostgreSQL TLS (e.g. the RDS bundle).
    #[arg(long, env = "TXFLOW_PG_CA_FILE")]
    pub pg_ca_file: Option<PathBuf>,
    /// Give up when PostgreSQL stays unreachable this long (seconds).
    #[arg(long, default_value_t = 60, env = "TXFLOW_PG_RECONNECT_TIMEOUT")]
    pub pg_reconnect_timeout: u64,
    /// At start, give up when PostgreSQL cannot be reached (refused, unresolvable) within this
    /// many seconds.
    #[arg(long, default_value_t = 10, env = "TXFLOW_PG_CONNECT_TIMEOUT")]
    pub pg_connect_timeout: u64,
    /// Wait at most this many seconds for PostgreSQL to answer any one statement (COMMIT
    /// included); past it, warn and reconnect (then --pg-reconnect-timeout applies).
    #[arg(long, default_value_t = DEFAULT_STATEMENT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..), env = "TXFLOW_PG_STATEMENT_TIMEOUT")]
    pub pg_statement_timeout: u64,
}

impl StateArgs {
    /// The state store's configuration; a bad URL fails with the message opening the store
    /// gives (the password redacted).
    pub fn config(&self) -> Result<StateConfig> {
        let config = StateConfig::parse(&self.state)
            .with_context(|| format!("opening the state store {}", redact::url(&self.state)))?;
        Ok(config.with_pg_options(PgOptions {
            ca_file: self.pg_ca_file.clone(),
            reconnect_timeout: Duration::from_secs(self.pg_reconnect_timeout),
            connect_timeout: Duration::from_secs(self.pg_connect_timeout),
            statement_timeout: Duration::from_secs(self.pg_statement_timeout),
            ..PgOptions::default()
        }))
    }
}

/// S3 client options (the standard AWS chain supplies credentials and region).
#[derive(Args, Clone, Debug, Default)]
pub struct S3Args {
    /// S3-compatible endpoint (MinIO, Ceph, ...); switches to path-style addressing.
    /// Defaults to AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL when set.
    #[arg(
        long,
        value_name = "URL",
        env = "TXFLOW_S3_ENDPOINT",
        hide_env_values = true
    )]
    pub s3_endpoint: Option<String>,
    /// AWS region (default: from the AWS configuration chain, else us-east-1).
    #[arg(long, value_name = "REGION", env = "TXFLOW_S3_REGION")]
    pub s3_region: Option<String>,
}

impl S3Args {
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            ..S3Options::default()
        }
    }
}

/// Pattern thresholds (SPEC §4); the defaults are the SPEC's. The counts take any whole
/// number from 0 to 18446744073709551615 (2^64−1); one that no count can reach (2^63 or
/// more) switches its condition off, exactly ([`CountThreshold`]).
#[derive(Args, Clone, Debug)]
pub struct ThresholdArgs {
    /// PatId1: merchants with more than this many transactions qualify (0 to 2^64−1; the
    /// largest, 18446744073709551615, switches PatId1 off).
    #[arg(
        long,
        default_value_t = 50_000,
        value_parser = parse_count,
        allow_negative_numbers = true,
        env = "TXFLOW_UPGRADE_MIN_MERCHANT_TXNS"
    )]
    pub upgrade_min_merchant_txns: CountThreshold,
    /// PatId1: count percentile a customer must reach.
    #[arg(long, default_value = "0.90", value_parser = parse_fraction, env = "TXFLOW_UPGRADE_COUNT_PERCENTILE")]
    pub upgrade_count_percentile: Fraction,
    /// PatId1: weight percentile a customer must stay at or under.
    #[arg(long, default_value = "0.10", value_parser = parse_fraction, env = "TXFLOW_UPGRADE_WEIGHT_PERCENTILE")]
    pub upgrade_weight_percentile: Fraction,
    /// PatId2: minimum transactions of a customer at a merchant (0 to 2^64−1; the largest,
    /// 18446744073709551615, switches PatId2 off).
    #[arg(
        long,
        default_value_t = 80,
        value_parser = parse_count,
        allow_negative_numbers = true,
        env = "TXFLOW_CHILD_MIN_TXNS"
    )]
    pub child_min_txns: CountThreshold,
    /// PatId2: the average amount must be strictly below this.
    #[arg(long, default_value = "23", value_parser = parse_amount, env = "TXFLOW_CHILD_MAX_AVG_AMOUNT")]
    pub child_max_avg_amount: i64,
    /// PatId3: distinct female customers must be strictly more than this (0 to 2^64−1; the
    /// largest, 18446744073709551615, switches PatId3 off).
    #[arg(
        long,
        default_value_t = 100,
        value_parser = parse_count,
        allow_negative_numbers = true,
        env = "TXFLOW_DEI_MIN_FEMALE_CUSTOMERS"
    )]
    pub dei_min_female_customers: CountThreshold,
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

// The threshold options' parsers; backtest variants (`crate::variant_options`) take their
// values through the same ones, so a variant accepts exactly what the option does.

/// A count threshold ([`CountThreshold`]: `u64`'s own grammar, as clap parses a `u64`
/// option); anything else, a negative number or one past the range included, is refused
/// naming the range.
pub(crate) fn parse_count(text: &str) -> Result<CountThreshold, String> {
    text.parse::<CountThreshold>().map_err(|_| {
        format!(
            "{text:?} is not a whole number from 0 to {}",
            CountThreshold::MAX
        )
    })
}

pub(crate) fn parse_fraction(text: &str) -> Result<Fraction, String> {
    Fraction::parse(text)
        .ok_or_else(|| format!("{text:?} is not a fraction in [0, 1] with at most six decimals"))
}

pub(crate) fn parse_amount(text: &str) -> Result<i64, String> {
    crate::decimal::parse_decimal_micros(text)
        .ok_or_else(|| format!("{text:?} is not a non-negative decimal amount"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internals_are_off_unless_named_or_debug() {
        let off = internals_off("info");
        assert_eq!(off.len(), INTERNALS.len());
        assert!(off.contains(&"aws_config=off".to_string()), "{off:?}");
        let off = internals_off("info,aws_smithy_runtime=debug,hyper=warn");
        assert!(!off
            .iter()
            .any(|d| d.starts_with("aws_smithy") || d.starts_with("hyper")));
        assert!(off.contains(&"aws_config=off".to_string()), "{off:?}");
        assert!(internals_off("debug").is_empty());
        assert!(internals_off("warn,TRACE").is_empty());
        let filter = log_filter(Some("info,txflow=debug"), "info").to_string();
        assert!(filter.contains("txflow=debug"), "{filter}");
        assert!(filter.contains("aws_config=off"), "{filter}");
        // An invalid RUST_LOG gives the default: txflow at its level, the rest at warn.
        let filter = log_filter(Some("=="), "info").to_string();
        assert!(
            filter.contains("txflow=info") && filter.contains("warn"),
            "{filter}"
        );
    }

    #[test]
    fn log_args_default_as_the_command_line_does() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            log: LogArgs,
        }
        let parsed = <Cli as clap::Parser>::try_parse_from(["x"]).unwrap().log;
        let default = LogArgs::default();
        assert_eq!(parsed.quiet, default.quiet);
        assert_eq!(parsed.log_format, default.log_format);
        assert_eq!(parsed.progress_interval_ms, default.progress_interval_ms);
        let parsed =
            <Cli as clap::Parser>::try_parse_from(["x", "--quiet", "--log-format", "json"]);
        let parsed = parsed.unwrap().log;
        assert!(parsed.quiet);
        assert_eq!(parsed.log_format, LogFormat::Json);
    }

    #[test]
    fn pg_statement_timeout_defaults_to_30_s_and_is_at_least_1_s() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            state: StateArgs,
        }
        let timeout = |args: &[&str]| {
            let cli = <Cli as clap::Parser>::try_parse_from(args).map_err(|e| e.kind())?;
            match cli.state.config().unwrap() {
                StateConfig::Postgres { options, .. } => Ok(options.statement_timeout),
                other => panic!("{other:?}"),
            }
        };
        let url = ["x", "--state", "postgres://u@h/db"];
        assert_eq!(timeout(&url), Ok(Duration::from_secs(30)));
        let two = [&url[..], &["--pg-statement-timeout", "2"]].concat();
        assert_eq!(timeout(&two), Ok(Duration::from_secs(2)));
        let zero = [&url[..], &["--pg-statement-timeout", "0"]].concat();
        assert_eq!(timeout(&zero), Err(clap::error::ErrorKind::ValueValidation));
    }

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
