//! Command-line pieces shared by the binaries: logging, S3 and variant options, and the
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
use crate::objectstore::file::{read_regular_text, MAX_VARIANTS_BYTES};
use crate::objectstore::S3Options;
use crate::progress::{self, Console, Display};
use crate::redact;
use crate::sinks::ledger::PER_EPOCH_TARGET;
use crate::sinks::state::postgres::DEFAULT_STATEMENT_TIMEOUT;
use crate::sinks::state::{PgOptions, StateConfig};
use crate::thresholds::variants::{self, Problem, ResolvedVariants, VariantOptionError};
use crate::thresholds::Thresholds;

/// Every binary's `--version`: the crate version and the commit it was built from
/// (`build.rs` sets `TXFLOW_COMMIT`; `unknown` outside a git checkout), e.g.
/// `mechanism-y 0.1.0 (3f2a1c9d8e7b)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("TXFLOW_COMMIT"), ")");

/// Logging and progress options, the same in every binary.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Logging")]
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
    let filter = log_filter(
        std::env::var("RUST_LOG").ok().as_deref(),
        txflow_level,
        console.display() == Display::Terminal,
    );
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
/// either way with the [`INTERNALS`] off that it does not name, and, while a progress bar or
/// status line is shown (`bar_shown`), the per-epoch lines lowered ([`per_epoch_lowered`]).
fn log_filter(rust_log: Option<&str>, txflow_level: &str, bar_shown: bool) -> EnvFilter {
    let directives = match rust_log.filter(|text| EnvFilter::try_new(text).is_ok()) {
        Some(text) => text.to_string(),
        None => format!("warn,txflow={txflow_level}"),
    };
    let mut all: Vec<String> = vec![directives.clone()];
    all.extend(internals_off(&directives));
    if bar_shown {
        all.extend(per_epoch_lowered(&directives));
    }
    EnvFilter::new(all.join(","))
}

/// The lines logged once per epoch ([`PER_EPOCH_TARGET`]) as if they were `debug`: a
/// directive that hides them, unless the directives that apply to their target (the most
/// specific one naming it or a prefix of it) let `debug` through or name it exactly. The
/// lines keep their `info` level and the runtime its ignorance of the display; only the
/// filter of a process that shows a bar changes (120 lines scrolling past a status line that
/// already says the same is noise; a pipe or a JSON log keeps them for its readers).
fn per_epoch_lowered(directives: &str) -> Option<String> {
    let applying = directives
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.contains('['))
        .map(|d| match d.rsplit_once('=') {
            Some((target, level)) => (target, level),
            None if d.parse::<LevelFilter>().is_ok() => ("", d),
            // A target alone lets every level through.
            None => (d, "trace"),
        })
        .filter(|(target, _)| PER_EPOCH_TARGET.starts_with(target))
        .max_by_key(|(target, _)| target.len());
    let lets_debug_through = |level: &str| {
        level
            .parse::<LevelFilter>()
            .is_ok_and(|level| level >= LevelFilter::DEBUG)
    };
    match applying {
        Some((target, level)) if target == PER_EPOCH_TARGET || lets_debug_through(level) => None,
        _ => Some(format!("{PER_EPOCH_TARGET}=warn")),
    }
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
            Err(ExitCode::from(crate::error::EXIT_USAGE))
        }
    }
}

/// Where `-h` is the hostfile (mechanism-y: timely's own spelling): `-h` with no value after
/// it, or with another option after it, is someone asking for help. One `error:` line says
/// where both are, with exit status 2, instead of clap's "a value is required".
pub fn refuse_bare_dash_h() -> Result<(), ExitCode> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match bare_dash_h(&args) {
        true => Err(usage_failure(
            "help is --help; the hostfile is --hostfile (-h FILE)",
        )),
        false => Ok(()),
    }
}

/// `-h` last, or followed by an option (a word starting with `-`), before any `--`.
fn bare_dash_h(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&std::ffi::OsStr> = args
        .iter()
        .map(|a| a.as_os_str())
        .take_while(|a| *a != "--")
        .collect();
    args.iter().enumerate().any(|(i, arg)| {
        *arg == "-h"
            && args
                .get(i + 1)
                .is_none_or(|next| next.as_encoded_bytes().starts_with(b"-"))
    })
}

/// A usage error found after parsing (a rule clap cannot state): one `error:` line, as
/// clap's, and exit status 2.
pub fn usage_failure(reason: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {reason}");
    ExitCode::from(crate::error::EXIT_USAGE)
}

/// clap's first paragraph on one line: the error line, then any indented details (e.g. the
/// names of missing arguments), then clap's tips ("a similar argument exists: '--landing'"),
/// each after a `;`.
fn usage_error(e: &clap::Error) -> String {
    let rendered = e.to_string();
    let mut lines = rendered.lines().skip_while(|l| l.trim().is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let details: Vec<&str> = lines
        .by_ref()
        .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let reason = first.trim_start_matches("error: ");
    let mut line = if details.is_empty() {
        reason.to_string()
    } else {
        format!("{reason} {}", details.join(", "))
    };
    // The tips stand in their own paragraph, before the usage line.
    for tip in lines
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| l.starts_with("tip:"))
    {
        line.push_str("; ");
        line.push_str(tip);
    }
    line
}

/// The exit status of a binary's result: an error is printed as one `error:` line on stderr,
/// with the exit status of its domain (the table in [`crate::error`]).
pub fn exit_with(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(crate::error::exit_code_of_chain(e.chain()))
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
#[command(next_help_heading = "State store")]
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
#[command(next_help_heading = "S3")]
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

/// The variant options of `mechanism-y`, a replay's backtest variants or a live run's shadow
/// variants (`crate::thresholds::variants`): the file is read here, its text parsed there.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Replay & variants")]
pub struct VariantArgs {
    /// Threshold variant (repeatable), live or replay: a replay backtests it, a live run runs
    /// it in shadow beside production. NAME:KEY=VALUE[,KEY=VALUE...], KEY a threshold option
    /// without `--`, e.g. strict:child-min-txns=100,child-max-avg-amount=20; keys it does not
    /// set keep the run's own thresholds (the baseline). Its ledger and files go to
    /// <output>/variants/NAME/, never to the production files. At most 32 variants in all, names unique; one with the
    /// thresholds of the baseline or of another variant runs, with a warning. In the
    /// environment, several are separated by ';'.
    #[arg(
        long = "variant",
        value_name = "NAME:KEY=VALUE,...",
        value_delimiter = ';',
        env = "TXFLOW_VARIANT"
    )]
    pub variant: Vec<String>,
    /// Threshold variants from a TOML file, live or replay (as --variant): one table per variant, its name
    /// the table's, e.g. [strict] then child-min-txns = 100; values are numbers or strings.
    #[arg(long = "variants", value_name = "FILE", env = "TXFLOW_VARIANTS_FILE")]
    pub variants_file: Option<PathBuf>,
    /// One threshold variant per value (repeatable), live or replay (as --variant): KEY=FROM..TO/STEP, both
    /// ends included, each named KEY-VALUE: child-min-txns=60..120/20 gives child-min-txns-60,
    /// -80, -100 and -120. Decimals step exactly; at most 64 values. In the environment,
    /// several are separated by ';'.
    #[arg(
        long = "sweep",
        value_name = "KEY=FROM..TO/STEP",
        value_delimiter = ';',
        env = "TXFLOW_SWEEP"
    )]
    pub sweep: Vec<String>,
}

impl VariantArgs {
    /// The variants of a run whose own thresholds are `baseline`: a replay's backtest
    /// variants or a live run's shadow variants. Reads `--variants FILE` (a regular file of at
    /// most [`MAX_VARIANTS_BYTES`]).
    pub fn resolve(
        &self,
        baseline: &Thresholds,
    ) -> std::result::Result<ResolvedVariants, VariantOptionError> {
        if self.variants_file.is_none() && self.variant.is_empty() && self.sweep.is_empty() {
            return Ok(ResolvedVariants::default());
        }
        let file = match &self.variants_file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = read_regular_text(path, MAX_VARIANTS_BYTES).map_err(|e| {
                    VariantOptionError::Invalid {
                        place: format!("--variants {shown}"),
                        problem: Problem::Unreadable(e.to_string()),
                    }
                })?;
                Some((shown, text))
            }
            None => None,
        };
        let file = file
            .as_ref()
            .map(|(shown, text)| (shown.as_str(), text.as_str()));
        variants::resolve(baseline, file, &self.variant, &self.sweep)
    }
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
        let filter = log_filter(Some("info,txflow=debug"), "info", false).to_string();
        assert!(filter.contains("txflow=debug"), "{filter}");
        assert!(filter.contains("aws_config=off"), "{filter}");
        // An invalid RUST_LOG gives the default: txflow at its level, the rest at warn.
        let filter = log_filter(Some("=="), "info", false).to_string();
        assert!(
            filter.contains("txflow=info") && filter.contains("warn"),
            "{filter}"
        );
    }

    #[test]
    fn per_epoch_lines_are_debug_while_a_bar_is_shown() {
        let hidden = Some("txflow::per_epoch=warn".to_string());
        for directives in [
            "warn,txflow=info",
            "info",
            "txflow=warn",
            "debug,txflow=info",
        ] {
            assert_eq!(per_epoch_lowered(directives), hidden, "{directives}");
        }
        for directives in [
            "warn,txflow=debug",
            "trace",
            "info,txflow",
            "txflow::per_epoch=info",
            "warn,txflow::per_epoch=info,txflow=info",
        ] {
            assert_eq!(per_epoch_lowered(directives), None, "{directives}");
        }
        let shown = log_filter(None, "info", true).to_string();
        assert!(shown.contains("txflow::per_epoch=warn"), "{shown}");
        let piped = log_filter(None, "info", false).to_string();
        assert!(!piped.contains("per_epoch"), "{piped}");
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
    fn variants_need_a_readable_file_live_or_replay() {
        let baseline = Thresholds::default();
        let sweep = VariantArgs {
            sweep: vec!["child-min-txns=1..2/1".into()],
            ..VariantArgs::default()
        };
        assert_eq!(sweep.resolve(&baseline).unwrap().variants.len(), 2);
        let missing = VariantArgs {
            variants_file: Some(PathBuf::from("/nonexistent/variants.toml")),
            ..VariantArgs::default()
        };
        match missing.resolve(&baseline) {
            Err(VariantOptionError::Invalid { place, problem }) => {
                assert_eq!(place, "--variants /nonexistent/variants.toml");
                assert!(matches!(problem, Problem::Unreadable(_)), "{problem:?}");
            }
            other => panic!("{other:?}"),
        }
        let none = VariantArgs::default();
        assert_eq!(none.resolve(&baseline), Ok(ResolvedVariants::default()));
    }

    #[test]
    fn a_bare_dash_h_is_told_apart_from_the_hostfile() {
        let bare = |args: &[&str]| {
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            bare_dash_h(&args)
        };
        assert!(bare(&["-h"]));
        assert!(bare(&["--landing", "l", "-h"]));
        assert!(bare(&["-h", "--landing", "l"]));
        assert!(!bare(&["-h", "hosts.txt", "--landing", "l"]));
        assert!(!bare(&["--hostfile", "hosts.txt"]));
        assert!(!bare(&["--", "-h"]));
    }

    #[test]
    fn usage_errors_keep_clap_tips() {
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[arg(long)]
            landing: Option<String>,
        }
        let e = <Cli as clap::Parser>::try_parse_from(["x", "--landin", "l"]).unwrap_err();
        let line = usage_error(&e);
        assert!(
            line.starts_with("unexpected argument '--landin' found; tip:")
                && line.contains("'--landing'")
                && !line.contains('\n'),
            "{line}"
        );
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
