//! Operating Mechanism Y from a service manager: logs without colour
//! codes off a terminal, `--log-format json`, `--quiet`, progress lines, every option from a
//! `TXFLOW_*` environment variable, no secret in `--help` or the logs, and no dependency
//! internals (the AWS SDK's credential-provider dump) in the log at the default level.

use crate::common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::outputs::named_tree;
use common::paths::{free_port, s};
use common::process::{ChildGuard, Finished};
use common::wait::poll;
use txflow::mechanism_x::{self, XOptions};
use txgen::GenOptions;

const Y: &str = env!("CARGO_BIN_EXE_mechanism-y");
const TIMEOUT: Duration = Duration::from_secs(120);

/// A landing directory of six chunks and the importance file, shared by a test's runs.
struct Data {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    landing: PathBuf,
    importance: PathBuf,
}

impl Data {
    fn new() -> Data {
        Data::with_rows_replaced(&[])
    }

    /// As [`Data::new`] with the source's rows at `rows` (0-based, after the header)
    /// replaced by a line no parser accepts (rejected, each in its chunk of 5,000).
    fn with_rows_replaced(rows: &[usize]) -> Data {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        txgen::generate(&data, &GenOptions::new(30_000, 7)).unwrap();
        if !rows.is_empty() {
            let source = data.join("transactions.csv");
            let text = fs::read_to_string(&source).unwrap();
            let lines: Vec<&str> = text
                .lines()
                .enumerate()
                .map(|(i, line)| match i > 0 && rows.contains(&(i - 1)) {
                    true => "not,a,transaction",
                    false => line,
                })
                .collect();
            fs::write(&source, lines.join("\n") + "\n").unwrap();
        }
        let landing = root.join("landing");
        let mut x = XOptions::new(data.join("transactions.csv"), s(&landing));
        x.interval = Duration::ZERO;
        x.chunk_rows = 5_000;
        assert_eq!(mechanism_x::run(&x).unwrap().chunks_total, 6);
        Data {
            _tmp: tmp,
            importance: data.join("CustomerImportance.csv"),
            landing,
            root,
        }
    }

    /// The flags of a replay into `ROOT/name/` (output directory and state store).
    fn replay_args(&self, name: &str) -> Vec<String> {
        let (output, state) = self.places(name);
        [
            "--landing",
            s(&self.landing),
            "--importance",
            s(&self.importance),
            "--output",
            s(&output),
            "--state",
            &state,
            "--replay",
        ]
        .map(String::from)
        .to_vec()
    }

    fn places(&self, name: &str) -> (PathBuf, String) {
        let dir = self.root.join(name);
        fs::create_dir_all(&dir).unwrap();
        let state = format!("sqlite://{}", s(&dir.join("state.db")));
        (dir.join("output"), state)
    }
}

/// `mechanism-y` with no `TXFLOW_*`, `RUST_LOG` or `NO_COLOR` from the test's environment.
fn y(args: &[String]) -> Command {
    let mut command = Command::new(Y);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("TXFLOW_") || key == "RUST_LOG" || key == "NO_COLOR" {
            command.env_remove(key);
        }
    }
    command
}

fn run(command: Command) -> Finished {
    ChildGuard::spawn(command).wait(TIMEOUT)
}

fn assert_success(run: &Finished) {
    assert!(run.status.success(), "{}", run.describe());
}

/// The run's stdout without its wall time (the one figure that differs between runs).
fn timeless(stdout: &str) -> String {
    stdout
        .lines()
        .map(|l| match l.rfind(", ") {
            Some(i) if l.ends_with(" s") => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file under `dir`, relative path → bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    named_tree(dir).into_iter().collect()
}

fn info_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(" INFO ")).collect()
}

// ------------------------------------------------------------------------------------------
// Colour, format, quiet
// ------------------------------------------------------------------------------------------

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let data = Data::new();
    let stderr_path = data.root.join("stderr.log");
    let mut command = y(&data.replay_args("file"));
    command
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).unwrap());
    let mut child = command.spawn().unwrap();
    let Some(status) = poll(TIMEOUT, || child.try_wait().unwrap()) else {
        let _ = child.kill();
        panic!("mechanism-y did not finish");
    };
    let stderr = fs::read(&stderr_path).unwrap();
    let text = String::from_utf8_lossy(&stderr);
    assert!(status.success(), "{text}");
    assert!(
        text.contains(" INFO epoch committed epoch=0 "),
        "the log is there, in the text format: {text}"
    );
    assert!(!stderr.contains(&0x1b), "no ESC byte in the log: {text:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let data = Data::new();
    let mut command = y(&data.replay_args("json"));
    command.args(["--log-format", "json", "--progress-interval-ms", "0"]);
    let json = run(command);
    assert_success(&json);
    let mut committed = Vec::new();
    let mut progress = 0;
    for line in json.stderr.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{}", json.describe()));
        assert!(value["timestamp"].is_string(), "{line}");
        let level = value["level"].as_str().unwrap_or_else(|| panic!("{line}"));
        assert!(["INFO", "WARN", "ERROR"].contains(&level), "{line}");
        let fields = &value["fields"];
        match fields["message"].as_str() {
            Some("epoch committed") => committed.push(fields["epoch"].as_u64().unwrap()),
            Some("progress") => {
                assert_eq!(fields["phase"], "replay", "{line}");
                assert_eq!(fields["epochs_total"], 6, "{line}");
                assert!(fields["rows_per_second"].is_u64(), "{line}");
                progress += 1;
            }
            Some(_) => {}
            None => panic!("no message: {line}"),
        }
    }
    assert_eq!(committed, (0..6).collect::<Vec<_>>(), "{}", json.describe());
    assert!(
        progress >= 1,
        "progress lines in JSON too: {}",
        json.describe()
    );

    // The same run in the text format prints the same stdout.
    let text = run(y(&data.replay_args("text")));
    assert_success(&text);
    assert_eq!(timeless(&text.stdout), timeless(&json.stdout));
}

#[test]
fn quiet_keeps_warnings_and_the_one_line_error() {
    let data = Data::new();
    let args = data.replay_args("quiet");
    let loud = run(y(&args));
    assert_success(&loud);
    assert!(!info_lines(&loud.stderr).is_empty(), "{}", loud.describe());

    // Again on the ended stream: a warning says there is nothing to do; --quiet keeps it
    // and drops the info lines, whatever RUST_LOG says.
    let mut command = y(&args);
    command
        .args(["--quiet", "--progress-interval-ms", "0"])
        .env("RUST_LOG", "info");
    let quiet = run(command);
    assert_success(&quiet);
    assert!(info_lines(&quiet.stderr).is_empty(), "{}", quiet.describe());
    assert_eq!(quiet.stderr.lines().count(), 1, "{}", quiet.describe());
    assert!(
        quiet.stderr.contains(" WARN ") && quiet.stderr.contains("already ended"),
        "{}",
        quiet.describe()
    );

    // A failure is still its one line.
    let mut args = data.replay_args("quiet-fails");
    args[1] = "/nonexistent/landing".into();
    let mut command = y(&args);
    command.arg("--quiet");
    run(command).assert_one_line_error(&["/nonexistent/landing"]);
}

// ------------------------------------------------------------------------------------------
// Progress lines
// ------------------------------------------------------------------------------------------

#[test]
fn a_replay_off_a_terminal_logs_progress_lines_at_the_interval() {
    let data = Data::new();
    let mut command = y(&data.replay_args("often"));
    command
        .env("RUST_LOG", "info")
        .env("TXFLOW_PROGRESS_INTERVAL_MS", "0");
    let often = run(command);
    assert_success(&often);
    let lines: Vec<&str> = often
        .stderr
        .lines()
        .filter(|l| l.contains(" INFO progress phase=replay "))
        .collect();
    assert!(!lines.is_empty(), "{}", often.describe());
    for line in &lines {
        assert!(line.contains(" epochs_total=6 "), "{line}");
        assert!(line.contains(" rows_per_second="), "{line}");
        assert!(line.contains(" eta_seconds="), "{line}");
    }
    // At a 0 ms interval every epoch has its line (at 1 ms, epochs committed together, as
    // the epochs in flight often are, would share one).
    assert_eq!(lines.len(), 6, "{}", often.describe());
    assert!(
        lines.last().unwrap().contains(" epochs=6 "),
        "the last epoch is reported at a 0 ms interval: {}",
        often.describe()
    );

    // At a long interval, a short run logs none.
    let mut command = y(&data.replay_args("rarely"));
    command.args(["--progress-interval-ms", "600000"]);
    command.env("RUST_LOG", "info");
    let rarely = run(command);
    assert_success(&rarely);
    assert!(
        !rarely.stderr.contains(" progress "),
        "{}",
        rarely.describe()
    );
}

/// `mechanism-y args` on a pseudo-terminal (util-linux `script`, in every Debian): what the
/// terminal showed, stdout and stderr together.
fn on_a_terminal(args: &[String], env: &[(&str, &str)]) -> String {
    let line = std::iter::once(Y.to_string())
        .chain(args.iter().cloned())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("script");
    command.args(["-qec", &line, "/dev/null"]);
    command.env("TERM", "xterm").env_remove("RUST_LOG");
    command.env_remove("NO_COLOR");
    for (key, value) in env {
        command.env(key, value);
    }
    let shown = run(command);
    assert_success(&shown);
    shown.stdout
}

#[test]
fn a_replay_on_a_terminal_shows_a_bar_and_colours_unless_no_color() {
    let data = Data::new();
    let shown = on_a_terminal(&data.replay_args("tty"), &[]);
    assert!(shown.contains("replay ["), "a bar: {shown:?}");
    assert!(shown.contains("/6 epochs · "), "epoch k of K: {shown:?}");
    assert!(shown.contains(" rows/s · ETA "), "{shown:?}");
    assert!(
        shown.contains("\x1b[32m INFO"),
        "coloured levels: {shown:?}"
    );
    assert!(shown.contains("6 epochs committed"), "{shown:?}");

    // The per-epoch lines are what the bar says already: lowered to debug while it is
    // shown, unless RUST_LOG asks for them.
    assert!(!shown.contains("epoch committed"), "{shown:?}");
    assert!(!shown.contains("detection file written"), "{shown:?}");

    let asked = [
        ("NO_COLOR", "1"),
        ("RUST_LOG", "info,txflow::per_epoch=info"),
    ];
    let shown = on_a_terminal(&data.replay_args("tty-no-color"), &asked);
    assert!(shown.contains("replay ["), "still a bar: {shown:?}");
    assert!(
        shown.contains(" INFO epoch committed epoch=5 "),
        "{shown:?}"
    );
    assert!(!shown.contains("\x1b[32m"), "no colours: {shown:?}");
    // The bar is cleared before a log line is written: what is left on the line after the
    // last carriage return is the log line alone.
    for line in shown.lines().filter(|l| l.contains(" INFO ")) {
        let last = line.trim_end_matches('\r').rsplit('\r').next().unwrap();
        let last = last.trim_start_matches("\x1b[2K");
        assert!(
            last.starts_with("20") && !last.contains("epochs ·"),
            "a log line through the bar: {line:?}"
        );
    }

    // Live mode: a status line.
    let mut args = data.replay_args("tty-live");
    args.retain(|a| a != "--replay");
    let shown = on_a_terminal(&args, &[]);
    assert!(shown.contains("live: epoch "), "{shown:?}");
    assert!(shown.contains(" committed · lag "), "{shown:?}");
    assert!(shown.contains(" detections"), "{shown:?}");

    assert!(!shown.contains("epoch committed"), "{shown:?}");

    let mut args = data.replay_args("tty-quiet");
    args.push("--quiet".into());
    let shown = on_a_terminal(&args, &[]);
    assert!(
        !shown.contains("replay [") && !shown.contains("INFO"),
        "{shown:?}"
    );
    assert!(shown.contains("6 epochs committed"), "{shown:?}");
}

#[test]
fn per_epoch_lines_are_info_without_a_bar_and_debug_with_one() {
    let data = Data::new();
    // Piped stderr: no bar, one line per epoch, as a log reader expects.
    let piped = run(y(&data.replay_args("piped")));
    assert_success(&piped);
    let committed = |text: &str| {
        text.lines()
            .filter(|l| l.contains(" INFO epoch committed epoch="))
            .count()
    };
    assert_eq!(committed(&piped.stderr), 6, "{}", piped.describe());
    assert!(
        piped.stderr.contains(" INFO detection file written "),
        "{}",
        piped.describe()
    );

    // A terminal: the bar, the start-up and end lines, no line per epoch.
    let shown = on_a_terminal(&data.replay_args("tty-epochs"), &[("NO_COLOR", "1")]);
    assert!(shown.contains("replay ["), "{shown:?}");
    assert!(
        shown.contains(" INFO importance weights loaded "),
        "{shown:?}"
    );
    assert_eq!(committed(&shown), 0, "{shown:?}");
    assert!(!shown.contains("detection file written"), "{shown:?}");

    // RUST_LOG at debug lets them through again.
    let debug = [("NO_COLOR", "1"), ("RUST_LOG", "warn,txflow=debug")];
    let shown = on_a_terminal(&data.replay_args("tty-debug"), &debug);
    assert_eq!(committed(&shown), 6, "{shown:?}");
}

#[test]
fn a_chunk_with_rejected_rows_is_a_warning_naming_its_rejects_file() {
    // One bad row in chunk 0, two in chunk 3.
    let data = Data::with_rows_replaced(&[10, 15_001, 15_002]);
    for shown in [
        run(y(&data.replay_args("rejects"))).stderr,
        on_a_terminal(&data.replay_args("rejects-tty"), &[("NO_COLOR", "1")]),
    ] {
        let warnings: Vec<&str> = shown
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains("rows rejected"))
            .collect();
        assert_eq!(warnings.len(), 2, "{shown}");
        for (warning, (epoch, count)) in warnings.iter().zip([(0, 1), (3, 2)]) {
            assert!(warning.contains(&format!(" epoch={epoch} ")), "{warning}");
            assert!(
                warning.contains(&format!(" rejected={count} ")),
                "{warning}"
            );
            let file = warning
                .split(" file=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_else(|| panic!("no file: {warning}"));
            assert!(
                file.contains(&format!("rejects/chunk-00000{epoch}.csv")),
                "{warning}"
            );
            let rejected = fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(rejected.contains("not,a,transaction"), "{file}: {rejected}");
        }
    }
}

// ------------------------------------------------------------------------------------------
// Environment variables and secrets
// ------------------------------------------------------------------------------------------

#[test]
fn every_option_can_come_from_the_environment() {
    let data = Data::new();
    let thresholds = [
        ("upgrade-min-merchant-txns", "1000"),
        ("child-min-txns", "5"),
        ("child-max-avg-amount", "40"),
        ("dei-min-female-customers", "3"),
    ];
    let mut flags = data.replay_args("flags");
    flags.extend(["--workers", "2", "--to", "4"].map(String::from));
    for (name, value) in thresholds {
        flags.extend([format!("--{name}"), value.to_string()]);
    }
    let by_flags = run(y(&flags));
    assert_success(&by_flags);

    let (output, state) = data.places("env");
    let mut command = y(&[]);
    command
        .env("TXFLOW_LANDING", s(&data.landing))
        .env("TXFLOW_IMPORTANCE", s(&data.importance))
        .env("TXFLOW_OUTPUT", s(&output))
        .env("TXFLOW_STATE", &state)
        .env("TXFLOW_REPLAY", "true")
        .env("TXFLOW_TO", "4")
        .env("TXFLOW_WORKERS", "2");
    for (name, value) in thresholds {
        command.env(
            format!("TXFLOW_{}", name.replace('-', "_").to_uppercase()),
            value,
        );
    }
    let by_env = run(command);
    assert_success(&by_env);
    assert!(
        by_env.stdout.contains("5 epochs committed"),
        "{}",
        by_env.describe()
    );
    assert_eq!(timeless(&by_env.stdout), timeless(&by_flags.stdout));
    let (flag_output, _) = data.places("flags");
    let produced = files(&output);
    assert!(!produced.is_empty());
    assert_eq!(produced, files(&flag_output), "the same output bytes");

    // The command line wins over the environment.
    let mut command = y(&data.replay_args("wins"));
    command.env("TXFLOW_LANDING", "/nonexistent/landing");
    command.env("TXFLOW_WORKERS", "not-a-number");
    command.args(["--workers", "1"]);
    assert_success(&run(command));
}

/// Each `--option` of a `--help` text (but `--help` and `--version`) and the text of its entry.
fn options_of(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    // The examples after the options hold command lines, not options.
    for line in help.lines().take_while(|l| *l != "Examples:") {
        let trimmed = line.trim_start();
        let starts =
            line.starts_with("  ") && (trimmed.starts_with("--") || trimmed.starts_with('-'));
        // `--name <VALUE>`, `-w, --workers <W>`, a boolean's `--name[=<BOOL>]`.
        let long = trimmed.split([' ', ',', '[']).find(|w| w.starts_with("--"));
        match long {
            Some(long) if starts && line.len() - trimmed.len() <= 6 => {
                options.push((long.trim_start_matches("--").to_string(), String::new()));
            }
            _ => {
                if let Some((_, text)) = options.last_mut() {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    options.retain(|(name, _)| name != "help" && name != "version");
    options
}

#[test]
fn every_option_of_every_binary_has_its_environment_variable() {
    let binaries = [
        Y,
        env!("CARGO_BIN_EXE_mechanism-x"),
        env!("CARGO_BIN_EXE_txgen"),
        env!("CARGO_BIN_EXE_txflow-demo"),
        env!("CARGO_BIN_EXE_txflow-bench"),
        env!("CARGO_BIN_EXE_txflow-report"),
    ];
    for binary in binaries {
        let mut command = Command::new(binary);
        command.arg("--help");
        let help = run(command);
        assert_success(&help);
        let options = options_of(&help.stdout);
        assert!(options.len() >= 5, "{binary}: {options:?}");
        assert!(
            options.iter().any(|(name, _)| name == "log-format"),
            "{binary}"
        );
        for (name, text) in options {
            let variable = format!("[env: TXFLOW_{}", name.replace('-', "_").to_uppercase());
            assert!(
                text.contains(&variable),
                "{binary} --{name}: no {variable}]: {text}"
            );
        }
    }
}

#[test]
fn a_secret_in_the_environment_is_never_printed() {
    const SECRET: &str = "pw-Sekr1t-42";
    let data = Data::new();
    let closed = free_port();
    let url = format!("postgres://txflow:{SECRET}@127.0.0.1:{closed}/txflow");

    let mut command = y(&["--help".to_string()]);
    command.env("TXFLOW_STATE", &url);
    command.env("TXFLOW_LANDING", s(&data.landing));
    let help = run(command);
    assert_success(&help);
    assert!(help.stdout.contains("TXFLOW_STATE"), "{}", help.stdout);
    assert!(
        help.stdout
            .contains(&format!("TXFLOW_LANDING={}", s(&data.landing))),
        "other values are shown: {}",
        help.stdout
    );
    assert!(!help.stdout.contains(SECRET), "{}", help.stdout);

    let (output, _) = data.places("secret");
    let mut command = y(&[]);
    command
        .env("TXFLOW_LANDING", s(&data.landing))
        .env("TXFLOW_IMPORTANCE", s(&data.importance))
        .env("TXFLOW_OUTPUT", s(&output))
        .env("TXFLOW_STATE", &url)
        .env("TXFLOW_PG_CONNECT_TIMEOUT", "1")
        .env("RUST_LOG", "debug");
    let failed = run(command);
    assert!(!failed.status.success(), "{}", failed.describe());
    let last = failed.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("127.0.0.1"),
        "{}",
        failed.describe()
    );
    assert!(
        failed.stderr.contains("postgres://txflow:***@127.0.0.1"),
        "the URL is named, redacted: {}",
        failed.describe()
    );
    assert!(!failed.stderr.contains(SECRET), "{}", failed.describe());
    assert!(!failed.stdout.contains(SECRET), "{}", failed.describe());
}

// ------------------------------------------------------------------------------------------
// Dependency internals
// ------------------------------------------------------------------------------------------

/// `mechanism-y` on an S3 landing at a closed loopback port with no credentials anywhere;
/// the instance-metadata service (the last link of the AWS credential chain) is pointed at a
/// closed loopback port too, so that nothing leaves the machine.
fn y_without_credentials(root: &Path) -> Command {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let output = root.join("output");
    let state = format!("sqlite://{}", s(&root.join("state.db")));
    let args = [
        "--landing",
        "s3://landing/feed",
        "--importance",
        "s3://landing/CustomerImportance.csv",
        "--output",
        s(&output),
        "--state",
        &state,
        "--s3-endpoint",
        &closed,
    ];
    let mut command = y(&args.map(String::from));
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_EC2_METADATA_DISABLED",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ] {
        command.env_remove(key);
    }
    command
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed);
    command
}

#[test]
fn the_aws_sdk_credential_dump_stays_out_of_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    // The SDK logs its dump at WARN (seen when its targets are let through).
    let mut command = y_without_credentials(tmp.path());
    command.env("RUST_LOG", "info,aws_config=warn");
    let dumped = run(command);
    assert!(
        dumped.stderr.contains(" WARN ") && dumped.stderr.contains("FailedToLoadToken {"),
        "the scenario makes the SDK dump its internals: {}",
        dumped.describe()
    );

    // By default, and with RUST_LOG=info, only our one-line error.
    for rust_log in [None, Some("info")] {
        let mut command = y_without_credentials(tmp.path());
        if let Some(level) = rust_log {
            command.env("RUST_LOG", level);
        }
        let failed = run(command);
        let line = failed.assert_one_line_error(&["no usable AWS credentials", "s3://landing"]);
        for dump in [
            "FailedToLoadToken",
            "CredentialsNotLoaded",
            " { ",
            "ProviderError(",
        ] {
            assert!(!line.contains(dump), "{dump:?} in {line}");
        }
    }
}
