//! Error behaviour of the binaries (SPEC §8: exit status 0 on success; non-zero with a
//! one-line reason on stderr otherwise) and what the line says next (clap's tips, `-h` alone,
//! `s3:` typos, a missing importance file, a busy SQLite store, PostgreSQL refusals), every
//! binary's `--help` (headings, examples) and `--version` (the commit), and bad input data, which
//! must not fail a run (SPEC §2.3): rejects files, reasons naming the column, the summary.
//! `txflow-report` reads a store without ever writing it: a foreign SQLite file is refused
//! unchanged, a store in a read-only directory is read, a newer schema refused.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::paths::s;
use common::process::{ChildGuard, Finished};
use common::reference;

const HEADER: &str =
    "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud";
const IMPORTANCE: &str = "Source,Target,Weight,typeTrans,fraud\n\
                          'C1','M1',0.5,'es_food',0\n";
const Y: &str = env!("CARGO_BIN_EXE_mechanism-y");
const X: &str = env!("CARGO_BIN_EXE_mechanism-x");
const TXGEN: &str = env!("CARGO_BIN_EXE_txgen");
const REPORT: &str = env!("CARGO_BIN_EXE_txflow-report");
const TIMEOUT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------
// Child processes, always bounded and killed on failure
// ------------------------------------------------------------------------------------------

/// Runs `bin args` with the given `RUST_LOG`, bounded by [`TIMEOUT`].
fn run_with_log(bin: &str, args: &[&str], rust_log: &str) -> Finished {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1");
    ChildGuard::spawn(command).wait(TIMEOUT)
}

/// Runs with logging off, so that stderr holds only what `main` prints.
fn run(bin: &str, args: &[&str]) -> Finished {
    run_with_log(bin, args, "off")
}

/// A small valid setup: a landing directory with one good chunk and `_COMPLETE`, an
/// importance file, and paths for the output and the state store.
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    landing: PathBuf,
    importance: PathBuf,
    output: PathBuf,
    state: String,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (landing, importance) = common::streams::write_one_chunk_landing(&root);
        Setup {
            landing,
            importance,
            output: root.join("output"),
            state: format!("sqlite://{}", root.join("state.db").display()),
            root,
            _tmp: tmp,
        }
    }

    /// `mechanism-y` arguments with one of them replaced: `(option, value)`.
    fn y_args(&self, replace: Option<(&str, &str)>) -> Vec<String> {
        let mut args = vec![
            ("--landing", s(&self.landing).to_string()),
            ("--importance", s(&self.importance).to_string()),
            ("--output", s(&self.output).to_string()),
            ("--state", self.state.clone()),
        ];
        if let Some((option, value)) = replace {
            let slot = args.iter_mut().find(|(o, _)| *o == option).unwrap();
            slot.1 = value.to_string();
        }
        args.into_iter()
            .flat_map(|(o, v)| [o.to_string(), v])
            .collect()
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

// ------------------------------------------------------------------------------------------
// Errors: non-zero exit, one line "error: ..." on stderr
// ------------------------------------------------------------------------------------------

#[test]
fn y_succeeds_on_the_valid_setup() {
    // The baseline the error cases below each break in one place.
    let setup = Setup::new();
    let args = setup.y_args(None);
    let ok = run(Y, &strs(&args));
    assert!(ok.status.success(), "{}", ok.describe());
    assert_eq!(ok.stderr, "", "nothing on stderr with logging off");
    assert!(
        ok.stdout.contains("1 epochs committed") && ok.stdout.contains("1 rows accepted"),
        "{}",
        ok.describe()
    );
}

#[test]
fn y_missing_importance_file() {
    let setup = Setup::new();
    let missing = setup.root.join("no-such-importance.csv");
    let args = setup.y_args(Some(("--importance", s(&missing))));
    let finished = run(Y, &strs(&args));
    // The absolute path it looked at, whatever the current directory.
    let line = finished.assert_one_line_error(&[&format!("no such file: {}", s(&missing))]);
    assert!(!line.contains("invalid location"), "{line}");
    assert_eq!(finished.status.code(), Some(78), "{}", finished.describe());
}

#[test]
fn y_importance_header_lacking_a_column() {
    let setup = Setup::new();
    let bad = setup.root.join("bad-importance.csv");
    fs::write(
        &bad,
        "Source,Target,typeTrans,fraud\n'C1','M1','es_food',0\n",
    )
    .unwrap();
    let args = setup.y_args(Some(("--importance", s(&bad))));
    run(Y, &strs(&args)).assert_one_line_error(&["bad-importance.csv", "Weight"]);
}

#[test]
fn y_invalid_state_url() {
    let setup = Setup::new();
    let args = setup.y_args(Some(("--state", "mysql://x")));
    run(Y, &strs(&args)).assert_one_line_error(&["mysql://x"]);
}

#[test]
fn y_unwritable_state_path() {
    // The state file's parent is a regular file: SQLite cannot create it.
    let setup = Setup::new();
    let file = setup.root.join("plain-file");
    fs::write(&file, "x").unwrap();
    let url = format!("sqlite://{}/state.db", file.display());
    let args = setup.y_args(Some(("--state", &url)));
    run(Y, &strs(&args)).assert_one_line_error(&["plain-file"]);
}

#[test]
fn y_invalid_landing_and_output_locations() {
    let setup = Setup::new();
    let args = setup.y_args(Some(("--landing", "gs://x")));
    run(Y, &strs(&args)).assert_one_line_error(&["gs://x"]);
    let args = setup.y_args(Some(("--output", "gs://x")));
    run(Y, &strs(&args)).assert_one_line_error(&["gs://x"]);
    let args = setup.y_args(Some(("--importance", "gs://x/CustomerImportance.csv")));
    run(Y, &strs(&args)).assert_one_line_error(&["gs://x"]);
}

#[test]
fn y_dash_h_is_the_hostfile() {
    // `-h` names timely's hostfile (not help): with two processes it is read, and a missing
    // one is a clear error.
    let setup = Setup::new();
    let hostfile = setup.root.join("no-such-hostfile");
    let mut args = setup.y_args(None);
    args.extend(["-n", "2", "-p", "0", "-h", s(&hostfile)].map(String::from));
    run(Y, &strs(&args)).assert_one_line_error(&["no-such-hostfile"]);
}

#[test]
fn x_missing_source_file() {
    let setup = Setup::new();
    let missing = setup.root.join("no-such-transactions.csv");
    let landing = setup.root.join("x-landing");
    let out = run(
        X,
        &[
            "--source",
            s(&missing),
            "--landing",
            s(&landing),
            "--interval-ms",
            "0",
        ],
    );
    out.assert_one_line_error(&["no-such-transactions.csv"]);
    assert_eq!(out.status.code(), Some(78), "{}", out.describe());
    let chunks = fs::read_dir(&landing).map(|d| d.count()).unwrap_or(0);
    assert_eq!(chunks, 0, "nothing landed");
}

#[test]
fn x_invalid_landing_location() {
    let setup = Setup::new();
    let source = setup.root.join("transactions.csv");
    fs::write(&source, format!("{HEADER}\n")).unwrap();
    run(X, &["--source", s(&source), "--landing", "gs://x"]).assert_one_line_error(&["gs://x"]);
}

#[test]
fn txgen_unwritable_location() {
    // Below a regular file: no directory can be created there, even as root.
    let setup = Setup::new();
    let file = setup.root.join("plain-file");
    fs::write(&file, "x").unwrap();
    let out_dir = file.join("data");
    run(TXGEN, &["--out", s(&out_dir), "--rows", "10"]).assert_one_line_error(&["plain-file"]);
}

#[test]
fn usage_errors_are_one_line() {
    let missing = run(Y, &["--landing", "somewhere"]);
    assert_eq!(missing.status.code(), Some(2), "{}", missing.describe());
    let lines: Vec<&str> = missing.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", missing.describe());
    assert!(lines[0].starts_with("error: "), "{}", missing.describe());
    for name in ["--importance", "--output", "--state"] {
        assert!(
            lines[0].contains(name),
            "names {name}: {}",
            missing.describe()
        );
    }
    for (bin, args) in [
        (X, &["--bogus"][..]),
        (Y, &["-w"][..]),
        (TXGEN, &["--rows", "many"][..]),
    ] {
        let f = run(bin, args);
        assert_eq!(f.status.code(), Some(2), "{}", f.describe());
        assert_eq!(f.stderr.lines().count(), 1, "{}", f.describe());
        assert!(f.stderr.starts_with("error: "), "{}", f.describe());
    }
}

/// The exit status says whose fault a failure is (the table in `txflow::error`): each
/// domain from a real invocation, with its one `error:` line.
#[test]
fn y_exit_status_follows_the_error_domain() {
    let setup = Setup::new();
    let status = |args: &[String], mentions: &[&str]| {
        let finished = run(Y, &strs(args));
        finished.assert_one_line_error(mentions);
        (finished.status.code(), finished.describe())
    };
    // Usage (2): a rule between options, checked before anything is opened.
    let mut args = setup.y_args(None);
    args.extend(["--replay", "--follow"].map(String::from));
    let (code, why) = status(&args, &["--follow", "--replay"]);
    assert_eq!(code, Some(2), "{why}");
    // Configuration (78): what an option names cannot be used.
    let args = setup.y_args(Some(("--state", "mysql://x")));
    let (code, why) = status(&args, &["mysql://x"]);
    assert_eq!(code, Some(78), "an unknown state-store scheme: {why}");
    let missing = setup.root.join("no-such-importance.csv");
    let args = setup.y_args(Some(("--importance", s(&missing))));
    let (code, why) = status(&args, &["no-such-importance.csv"]);
    assert_eq!(code, Some(78), "a missing importance file: {why}");
    // Input (65): a landing store whose `_COMPLETE` contradicts its chunks.
    let bad = setup.root.join("bad-landing");
    fs::create_dir_all(&bad).unwrap();
    fs::copy(
        setup.landing.join("chunk-000000.csv"),
        bad.join("chunk-000000.csv"),
    )
    .unwrap();
    fs::write(bad.join("_COMPLETE"), "0").unwrap();
    let args = setup.y_args(Some(("--landing", s(&bad))));
    let (code, why) = status(&args, &["_COMPLETE"]);
    assert_eq!(code, Some(65), "an inconsistent landing: {why}");
    // External service (75): a PostgreSQL server nobody listens for (port 1).
    let mut args = setup.y_args(Some(("--state", "postgres://txflow@127.0.0.1:1/txflow")));
    args.extend(["--pg-connect-timeout", "1"].map(String::from));
    let (code, why) = status(&args, &["cannot reach PostgreSQL"]);
    assert_eq!(code, Some(75), "an unreachable state store: {why}");
}

/// A state store another process holds: a configuration error (78), not a retry (75) nor a
/// bug (70), and nothing is written.
#[test]
fn y_locked_state_store_is_a_configuration_error() {
    let setup = Setup::new();
    let args = setup.y_args(None);
    let first = run(Y, &strs(&args));
    assert!(first.status.success(), "{}", first.describe());
    let db = setup.root.join("state.db");
    let holder = fs::File::open(&db).unwrap();
    holder.lock().unwrap();
    let before = fs::read(&db).unwrap();
    let locked = run(Y, &strs(&args));
    locked.assert_one_line_error(&["another mechanism-y process"]);
    assert_eq!(locked.status.code(), Some(78), "{}", locked.describe());
    assert_eq!(
        fs::read(&db).unwrap(),
        before,
        "the locked store is untouched"
    );
}

/// A panic of the committing thread (injected: test builds carry the `fault-injection`
/// feature) fails the run as an internal error (70) naming the panic, never as a success
/// with an empty summary.
#[test]
fn y_committer_panic_is_an_internal_error() {
    let setup = Setup::new();
    let args = setup.y_args(None);
    let mut command = Command::new(Y);
    command
        .args(&args)
        .env("RUST_LOG", "off")
        .env("NO_COLOR", "1")
        .env("TXFLOW_FAULT_COMMITTER_PANIC", "1");
    let finished = ChildGuard::spawn(command).wait(TIMEOUT);
    assert_eq!(finished.status.code(), Some(70), "{}", finished.describe());
    let last = finished.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains("committing thread panicked")
            && last.contains("injected fault: the committer panics"),
        "{}",
        finished.describe()
    );
    assert!(
        !finished.stdout.contains("epochs committed"),
        "no summary: {}",
        finished.describe()
    );
}

#[test]
fn y_help() {
    let help = run(Y, &["--help"]);
    assert!(help.status.success(), "{}", help.describe());
    for option in [
        "--landing",
        "--importance",
        "--output",
        "--state",
        "--replay",
        "--from",
        "--to",
        "--workers",
        "--processes",
        "--process",
        "--hostfile",
        "--variant",
        "--variants",
        "--sweep",
        "--upgrade-min-merchant-txns",
        "--child-min-txns",
        "--dei-min-female-customers",
    ] {
        assert!(
            help.stdout.contains(option),
            "--help lists {option}: {}",
            help.describe()
        );
    }
    for (short, long) in [
        ("-w", "--workers"),
        ("-n", "--processes"),
        ("-p", "--process"),
        ("-h", "--hostfile"),
    ] {
        assert!(
            help.stdout.contains(&format!("{short}, {long}")),
            "--help lists {short}, {long}: {}",
            help.describe()
        );
    }
}

/// The binaries, each with the help headings it must show.
const HEADINGS: [(&str, &str, &[&str]); 6] = [
    (
        "mechanism-y",
        Y,
        &[
            "Inputs:",
            "Live:",
            "Replay & variants:",
            "Cluster:",
            "State store:",
            "S3:",
            "Thresholds:",
            "Operating:",
            "Logging:",
        ],
    ),
    ("mechanism-x", X, &["Inputs:", "Live:", "S3:", "Logging:"]),
    ("txgen", TXGEN, &["Inputs:", "Logging:"]),
    (
        "txflow-report",
        REPORT,
        &["State store:", "Inputs:", "S3:", "Logging:"],
    ),
    (
        "txflow-demo",
        env!("CARGO_BIN_EXE_txflow-demo"),
        &["Inputs:", "Live:", "Cluster:", "State store:", "Logging:"],
    ),
    (
        "txflow-bench",
        env!("CARGO_BIN_EXE_txflow-bench"),
        &["Inputs:", "Cluster:", "Logging:"],
    ),
];

#[test]
fn help_groups_options_under_headings_and_ends_with_examples() {
    for (name, bin, headings) in HEADINGS {
        let help = run(bin, &["--help"]);
        assert!(help.status.success(), "{name}: {}", help.describe());
        let lines: Vec<&str> = help.stdout.lines().collect();
        for heading in headings {
            assert!(
                lines.contains(heading),
                "{name} --help: {heading}\n{}",
                help.stdout
            );
        }
        let examples = lines.iter().position(|l| *l == "Examples:");
        let examples = examples.unwrap_or_else(|| panic!("{name}: no examples\n{}", help.stdout));
        let commands = lines[examples..]
            .iter()
            .filter(|l| l.trim_start().starts_with(&format!("{name} ")) || l.trim() == name)
            .count();
        assert!((3..=6).contains(&commands), "{name}: {commands} examples");
    }
    // Every option of mechanism-y is under a heading: none left in the catch-all group
    // but --help and --version.
    let help = run(Y, &["--help"]).stdout;
    let options = help.split("\nOptions:\n").nth(1).unwrap();
    let heading = |p: &&str| p.lines().next().is_some_and(|l| l.ends_with(':'));
    let options = options.split("\n\n").take_while(|p| !heading(p));
    let listed: Vec<&str> = options
        .flat_map(str::lines)
        .filter(|l| l.trim_start().starts_with('-'))
        .map(str::trim)
        .collect();
    assert_eq!(listed, ["--help", "-V, --version"], "{help}");
    // A field without a heading of its own takes the one before it (clap carries headings
    // over from a flattened group): the options beside a group are where they belong.
    for (option, expected) in [
        ("--ready-max-idle", "Operating:"),
        ("--linger-on-failure", "Operating:"),
        ("--http", "Operating:"),
        ("--stall-timeout", "Operating:"),
        ("--state", "State store:"),
        ("--s3-endpoint", "S3:"),
        ("--follow", "Live:"),
    ] {
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                let rest = l.trim_start().strip_prefix(option);
                rest.is_some_and(|r| r.starts_with([' ', '[', '=']))
            })
            .unwrap_or_else(|| panic!("{option} not in the help"));
        let under = lines[..at]
            .iter()
            .rev()
            .find(|l| !l.starts_with(' ') && l.ends_with(':'))
            .copied();
        assert_eq!(under, Some(expected), "the heading of {option}");
    }
}

#[test]
fn usage_errors_keep_claps_similar_argument_tip() {
    let finished = run(Y, &["--landin", "landing"]);
    finished.assert_one_line_error(&[
        "unexpected argument '--landin'",
        "tip: a similar argument exists: '--landing'",
    ]);
    assert_eq!(finished.status.code(), Some(2), "{}", finished.describe());
}

#[test]
fn y_dash_h_alone_says_where_help_and_the_hostfile_are() {
    for args in [
        &["-h"][..],
        &["-h", "--landing", "landing"],
        &["--workers", "2", "-h"],
    ] {
        let finished = run(Y, args);
        assert_usage_error(
            &finished,
            &["help is --help; the hostfile is --hostfile (-h FILE)"],
        );
    }
}

#[test]
fn s3_typos_in_locations_are_configuration_errors() {
    let setup = Setup::new();
    let cases = [
        ("--landing", "s3:/bank/landing", "s3://bank/landing"),
        ("--output", "s3:bank/out", "s3://bank/out"),
        ("--importance", "S3://bank/imp.csv", "s3://bank/imp.csv"),
    ];
    for (option, typo, meant) in cases {
        let args = setup.y_args(Some((option, typo)));
        let mut command = Command::new(Y);
        command
            .args(&args)
            .current_dir(&setup.root)
            .env("RUST_LOG", "off");
        let finished = ChildGuard::spawn(command).wait(TIMEOUT);
        finished.assert_one_line_error(&[typo, &format!("did you mean {meant}?")]);
        assert_eq!(finished.status.code(), Some(78), "{}", finished.describe());
    }
    let mut args = setup.y_args(None);
    args.extend(["--checkpoints", "s3:/bank/ckpt"].map(String::from));
    let finished = run(Y, &strs(&args));
    finished.assert_one_line_error(&["did you mean s3://bank/ckpt?"]);
    assert_eq!(finished.status.code(), Some(78), "{}", finished.describe());
    let source = setup.root.join("transactions.csv");
    fs::write(&source, format!("{HEADER}\n")).unwrap();
    let finished = run(X, &["--source", s(&source), "--landing", "s3:bank/landing"]);
    finished.assert_one_line_error(&["did you mean s3://bank/landing?"]);
    assert_eq!(finished.status.code(), Some(78), "{}", finished.describe());
    let local = names(&setup.root);
    assert!(
        !local.iter().any(|n| n.to_lowercase().starts_with("s3:")),
        "no local directory s3…: {local:?}"
    );
}

/// An importance object that is not in its bucket: said so, a configuration error.
#[cfg(feature = "test-services")]
#[test]
fn y_missing_importance_object() {
    use common::s3::{S3Server, ACCESS_KEY, REGION, SECRET_KEY};
    let server = S3Server::start();
    server.create_bucket("bank");
    let setup = Setup::new();
    let args = setup.y_args(Some(("--importance", "s3://bank/none.csv")));
    let mut command = Command::new(Y);
    command
        .args(&args)
        .args(["--s3-endpoint", &server.endpoint])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("RUST_LOG", "off");
    let finished = ChildGuard::spawn(command).wait(TIMEOUT);
    let line = finished.assert_one_line_error(&["no such object: s3://bank/none.csv"]);
    assert!(!line.contains("invalid location"), "{line}");
    assert_eq!(finished.status.code(), Some(78), "{}", finished.describe());
}

/// `--version` of every binary: its name, the crate's version and the commit built.
#[test]
fn version_names_the_commit() {
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for (name, bin, _) in HEADINGS {
        let version = run(bin, &["--version"]);
        assert!(version.status.success(), "{}", version.describe());
        let prefix = format!("{name} {} (", env!("CARGO_PKG_VERSION"));
        let line = version.stdout.trim_end();
        let commit = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{name}: {line:?}"));
        match &head {
            // A build outside git says so; one given TXFLOW_COMMIT shows that.
            None => assert_eq!(commit, "unknown"),
            Some(_) if std::env::var_os("TXFLOW_COMMIT").is_some() => {}
            Some(head) => {
                assert!(
                    commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{name}: {line:?}"
                );
                assert!(head.starts_with(commit), "{name}: {line:?}, HEAD {head}");
            }
        }
    }
}

/// SQLite's own lock held by another program (here this test, through its own connection
/// in a write transaction): the line names the database and the process holding it.
#[test]
fn y_busy_sqlite_store_names_the_process_holding_it() {
    let setup = Setup::new();
    let args = setup.y_args(None);
    let first = run(Y, &strs(&args));
    assert!(first.status.success(), "{}", first.describe());
    let db = setup.root.join("state.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let busy = run(Y, &strs(&args));
    let shown = fs::canonicalize(&db).unwrap();
    let line = busy.assert_one_line_error(&[
        &format!("another process holds the state store {}", s(&shown)),
        &format!("process {} (", std::process::id()),
        "stop it, or use another --state",
    ]);
    let own = std::env::args().next().unwrap();
    assert!(line.contains(&own), "names the command line: {line}");
    holder.execute_batch("ROLLBACK").unwrap();
}

/// A refused connection to PostgreSQL: the server's sentence once, then what to do, and no
/// password.
#[cfg(feature = "test-services")]
#[test]
fn y_postgres_refusals_are_said_once_with_the_next_step() {
    let mut server = common::pg::PgServer::init();
    let hba = server.dir().join("hba.conf");
    fs::write(
        &hba,
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    server.give_to_server(&hba);
    server.set("hba_file", s(&hba));
    server.start();
    let mut admin = postgres::Client::connect(&server.url("postgres"), postgres::NoTls).unwrap();
    admin
        .batch_execute("CREATE ROLE alice LOGIN PASSWORD 'RightHorse'")
        .unwrap();
    let setup = Setup::new();
    let port = server.port();
    let cases = [
        (
            format!("postgres://alice:WrongStaple@127.0.0.1:{port}/postgres"),
            "password authentication failed",
            "check the user and password in the URL",
        ),
        (
            format!("postgres://postgres@127.0.0.1:{port}/no_such_db"),
            "\"no_such_db\" does not exist",
            "create it or fix the URL's database",
        ),
    ];
    for (url, sentence, next_step) in cases {
        let args = setup.y_args(Some(("--state", &url)));
        let finished = run(Y, &strs(&args));
        let line = finished.assert_one_line_error(&[sentence, next_step]);
        assert_eq!(line.matches(sentence).count(), 1, "said once: {line}");
        assert!(!line.contains("WrongStaple"), "no password: {line}");
    }
}

// ------------------------------------------------------------------------------------------
// Backtest variants: --variant, --variants FILE, --sweep
// ------------------------------------------------------------------------------------------

/// A usage error: exit status 2 and one `error:` line naming every one of `mentions`.
fn assert_usage_error(finished: &Finished, mentions: &[&str]) {
    finished.assert_one_line_error(mentions);
    assert_eq!(finished.status.code(), Some(2), "{}", finished.describe());
}

/// `mechanism-y --replay` on the setup, with `extra` arguments.
fn replay_args(setup: &Setup, extra: &[&str]) -> Vec<String> {
    let mut args = setup.y_args(None);
    args.push("--replay".into());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn y_variant_usage_errors() {
    let setup = Setup::new();
    let file = setup.root.join("variants.toml");
    fs::write(&file, "[strict]\nchild-min-txns = 100\n").unwrap();
    let sweep_33 = "dei-min-female-customers=1..33/1";
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--variant", "strict:child-min-txn=100"],
            vec![
                "--variant strict",
                "unknown key \"child-min-txn\"",
                "child-min-txns, ",
            ],
        ),
        (
            vec!["--variant", "strict:upgrade-count-percentile=1.5"],
            vec!["--variant strict", "upgrade-count-percentile", "\"1.5\""],
        ),
        (
            vec!["--variant", "baseline:child-min-txns=1"],
            vec!["--variant", "\"baseline\"", "reserved"],
        ),
        (
            vec![
                "--variants",
                s(&file),
                "--variant",
                "strict:child-min-txns=90",
            ],
            vec![
                "--variant",
                "duplicate variant name \"strict\"",
                "--variants",
            ],
        ),
        (
            vec!["--sweep", "child-min-txns=1..100/1"],
            vec!["--sweep child-min-txns=1..100/1", "at most 64"],
        ),
        (
            vec!["--sweep", "child-max-avg-amount=20..10/1"],
            vec!["--sweep", "empty range"],
        ),
        (
            vec!["--sweep", "child-min-txns=60..120/0"],
            vec!["--sweep", "step \"0\" must be positive"],
        ),
        (vec!["--sweep", sweep_33], vec!["33 variants", "at most 32"]),
    ];
    for (extra, mentions) in cases {
        let finished = run(Y, &strs(&replay_args(&setup, &extra)));
        assert_usage_error(&finished, &mentions);
    }
    // A variants file that cannot be read is what an option names, as a missing importance
    // file: a configuration error (78), not a usage error.
    let extra = ["--variants", "no-such-variants.toml"];
    let finished = run(Y, &strs(&replay_args(&setup, &extra)));
    finished.assert_one_line_error(&["--variants no-such-variants.toml", "cannot read"]);
    assert_eq!(finished.status.code(), Some(78), "{}", finished.describe());
    assert!(!setup.output.exists(), "nothing written");
}

#[test]
fn y_variant_file_errors_name_the_file_and_the_variant() {
    let setup = Setup::new();
    let file = setup.root.join("variants.toml");
    fs::write(&file, "[strict]\nchild-min-txns = 100.5\n").unwrap();
    let args = replay_args(&setup, &["--variants", s(&file)]);
    let place = format!("--variants {} [strict]", s(&file));
    assert_usage_error(
        &run(Y, &strs(&args)),
        &[&place, "child-min-txns", "\"100.5\""],
    );
    fs::write(&file, "[strict\n").unwrap();
    assert_usage_error(
        &run(Y, &strs(&args)),
        &[s(&file), "not valid TOML at line 1"],
    );
}

#[test]
fn y_accepts_variants_from_all_three_options() {
    // Accepted: the run gets past the options and replays the landing.
    let setup = Setup::new();
    let file = setup.root.join("variants.toml");
    fs::write(
        &file,
        "[strict]\nchild-min-txns = 100\nchild-max-avg-amount = 20\n\
         [loose]\nupgrade-count-percentile = 0.85\n",
    )
    .unwrap();
    let args = replay_args(
        &setup,
        &[
            "--variant",
            "few:dei-min-female-customers=1",
            "--sweep",
            "child-min-txns=90..120/10",
            "--sweep",
            "child-max-avg-amount=0.1..0.3/0.1",
        ],
    );
    let with_file = |file: &Path| {
        let mut command = Command::new(Y);
        command
            .args(&args)
            .env("TXFLOW_VARIANTS_FILE", file)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        ChildGuard::spawn(command).wait(TIMEOUT)
    };
    // The file comes from the environment: one that repeats a name is refused.
    let clashing = setup.root.join("clashing.toml");
    fs::write(&clashing, "[few]\n").unwrap();
    let refused = with_file(&clashing);
    assert_usage_error(&refused, &["duplicate variant name \"few\"", s(&clashing)]);
    let ok = with_file(&file);
    assert!(ok.status.success(), "{}", ok.describe());
    assert!(
        ok.stdout.contains("1 epochs committed"),
        "{}",
        ok.describe()
    );
    assert!(
        !ok.stderr.contains("WARN"),
        "no variant repeats another: {}",
        ok.describe()
    );
}

#[test]
fn y_variants_and_sweeps_from_the_environment_split_at_semicolons() {
    let setup = Setup::new();
    for (variable, value, mentions) in [
        (
            "TXFLOW_SWEEP",
            "child-min-txns=1..2/1;child-min-txns=2..3/1",
            ["--sweep child-min-txns=2..3/1", "\"child-min-txns-2\""],
        ),
        (
            "TXFLOW_VARIANT",
            "a:child-min-txns=1;b:child-min-txns=2;a:child-min-txns=3",
            ["--variant", "duplicate variant name \"a\""],
        ),
    ] {
        let mut command = Command::new(Y);
        command
            .args(replay_args(&setup, &[]))
            .env(variable, value)
            .env("RUST_LOG", "off");
        let refused = ChildGuard::spawn(command).wait(TIMEOUT);
        assert_usage_error(&refused, &mentions);
    }
}

#[test]
fn y_warns_of_a_variant_identical_to_the_baseline() {
    let setup = Setup::new();
    // The default --child-min-txns is 80: this variant is the baseline again.
    let args = replay_args(&setup, &["--variant", "same:child-min-txns=80"]);
    let ok = run_with_log(Y, &strs(&args), "warn");
    assert!(ok.status.success(), "{}", ok.describe());
    assert!(
        ok.stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("\"same\"") && l.contains("baseline")),
        "a warning naming the variant: {}",
        ok.describe()
    );
}

// ------------------------------------------------------------------------------------------
// Bad input data does not fail the run
// ------------------------------------------------------------------------------------------

/// A chunk row in the real layout.
fn row(customer: &str, gender: &str, merchant: &str, amount: &str) -> String {
    format!("0,'{customer}','4','{gender}','28007','{merchant}','28007','es_food',{amount},0")
}

#[test]
fn bad_rows_and_a_bad_header_are_rejected_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    fs::create_dir_all(&landing).unwrap();

    // Chunk 0: good rows mixed with bad ones, each bad for a reason naming one column.
    // (line number, raw line, column the reason must name; None = good)
    let chunk0: Vec<(String, Option<&str>)> = vec![
        (row("C1", "F", "M1", "4.55"), None),
        (row("C2", "M", "M1", "-1"), Some("amount")),
        (row("", "M", "M1", "5"), Some("customer")),
        (row("C3", "X", "M1", "5"), Some("gender")),
        (row("C4", "F", "M1", "1e3"), Some("amount")),
        (row("C5", "F", "", "5"), Some("merchant")),
        (row("C6", "M", "M2", "12"), None),
        (row("C7", "F", "M2", ""), Some("amount")),
        (row("C8", "F", "M2", "0.5"), None),
    ];
    let mut text0 = format!("{HEADER}\n");
    for (line, _) in &chunk0 {
        text0.push_str(line);
        text0.push('\n');
    }
    // A row with too few fields (a field count, no column to name).
    let short_line = "0,'C9','4','F','28007','M2'";
    text0.push_str(short_line);
    text0.push('\n');
    fs::write(landing.join("chunk-000000.csv"), &text0).unwrap();

    // Chunk 1: the header lacks `gender` (renamed); every record is rejected.
    let text1 = format!(
        "{}\n{}\n{}\n{}\n",
        HEADER.replace("gender", "sex"),
        row("C1", "F", "M1", "4.55"),
        row("C2", "M", "M1", "3"),
        row("C3", "M", "M2", "3")
    );
    fs::write(landing.join("chunk-000001.csv"), &text1).unwrap();

    // Chunk 2: all good.
    let text2 = format!(
        "{HEADER}\n{}\n{}\n",
        row("C1", "F", "M1", "1"),
        row("C2", "M", "M2", "2")
    );
    fs::write(landing.join("chunk-000002.csv"), &text2).unwrap();
    fs::write(landing.join("_COMPLETE"), "3").unwrap();
    let importance = tmp.path().join("CustomerImportance.csv");
    fs::write(&importance, IMPORTANCE).unwrap();

    let output = tmp.path().join("output");
    let state = format!("sqlite://{}", tmp.path().join("state.db").display());
    let y = run_with_log(
        Y,
        &[
            "--landing",
            s(&landing),
            "--importance",
            s(&importance),
            "--output",
            s(&output),
            "--state",
            &state,
            "-w",
            "2",
        ],
        "warn",
    );
    assert!(
        y.status.success(),
        "bad data must not fail the run: {}",
        y.describe()
    );

    // The independent expectation.
    let chunks: Vec<(u64, Vec<u8>)> = [&text0, &text1, &text2]
        .iter()
        .enumerate()
        .map(|(k, t)| (k as u64, t.as_bytes().to_vec()))
        .collect();
    let e = reference::expected(
        &chunks,
        IMPORTANCE.as_bytes(),
        &txflow::model::Thresholds::default(),
    );
    assert_eq!(e.chunks[1].1.missing_column.as_deref(), Some("gender"));
    assert_eq!(e.total_rejected(), 7 + 3);

    // The summary line reports the rejected count.
    assert!(
        y.stdout.contains(&format!(
            "{} rows accepted, {} rejected",
            e.total_accepted(),
            e.total_rejected()
        )),
        "summary: {}",
        y.describe()
    );
    // A clear error naming the missing column is logged.
    assert!(
        y.stderr
            .lines()
            .any(|l| l.contains("chunk-000001.csv") && l.contains("gender")),
        "an error naming chunk-000001.csv and the column gender: {}",
        y.describe()
    );

    // Progress rows count the rejects per epoch.
    let mut store =
        txflow::sinks::state::open(&txflow::sinks::state::StateConfig::parse(&state).unwrap())
            .unwrap();
    let epochs: Vec<(u64, u64, u64)> = store
        .epoch_rows()
        .unwrap()
        .iter()
        .map(|r| (r.epoch, r.rows_accepted, r.rows_rejected))
        .collect();
    assert_eq!(epochs, e.epochs);

    // rejects/chunk-000000.csv: chunk,line,reason,raw; lines and raw text as written.
    let read = |name: &str| -> Vec<Vec<String>> {
        let path = output.join("rejects").join(name);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            text.lines().next(),
            Some("chunk,line,reason,raw"),
            "{name}: header"
        );
        csv::ReaderBuilder::new()
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    };
    let r0 = read("chunk-000000.csv");
    let lines0: Vec<u64> = r0.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(
        lines0, e.chunks[0].1.rejected_lines,
        "rejected lines of chunk 0"
    );
    let raw_lines: Vec<&str> = text0.lines().collect();
    for r in &r0 {
        assert_eq!(r.len(), 4, "{r:?}");
        assert_eq!(r[0], "chunk-000000.csv", "{r:?}");
        let line: usize = r[1].parse().unwrap();
        assert_eq!(r[3], raw_lines[line - 1], "raw text of line {line}");
        // Lines 2.. are chunk0's rows in order; the short row is last.
        match chunk0.get(line - 2) {
            Some((_, Some(column))) => assert!(
                r[2].contains(column),
                "line {line}: reason {:?} names {column}",
                r[2]
            ),
            Some((_, None)) => panic!("good line {line} rejected: {r:?}"),
            None => assert_eq!(r[3], short_line),
        }
    }

    // rejects/chunk-000001.csv: every record, each reason naming the missing column.
    let r1 = read("chunk-000001.csv");
    let lines1: Vec<u64> = r1.iter().map(|r| r[1].parse().unwrap()).collect();
    assert_eq!(lines1, vec![2, 3, 4]);
    let raw1: Vec<&str> = text1.lines().collect();
    for r in &r1 {
        assert_eq!(r[0], "chunk-000001.csv");
        assert!(r[2].contains("gender"), "reason {:?} names gender", r[2]);
        assert_eq!(r[3], raw1[r[1].parse::<usize>().unwrap() - 1]);
    }

    // No rejects file for the good chunk.
    assert!(!output.join("rejects").join("chunk-000002.csv").exists());
}

// ------------------------------------------------------------------------------------------
// txflow-report reads, never writes
// ------------------------------------------------------------------------------------------

/// A file's bytes and modification time.
fn fingerprint(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    (
        fs::read(path).unwrap(),
        fs::metadata(path).unwrap().modified().unwrap(),
    )
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Another program's SQLite database (rollback journal): the report refuses it with one
/// line, and the file keeps its bytes and time, with no `-wal`/`-shm`/`-journal` beside it.
#[test]
fn report_refuses_a_foreign_sqlite_file_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    fs::create_dir(&dir).unwrap();
    let foreign = dir.join("app.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('a');")
        .unwrap();
    let before = fingerprint(&foreign);
    let html = tmp.path().join("r.html");
    let state = format!("sqlite://{}", foreign.display());
    let refused = run(REPORT, &["--state", &state, "--html", s(&html)]);
    refused.assert_one_line_error(&["app.db", "holds no txflow schema"]);
    assert_eq!(refused.status.code(), Some(78), "{}", refused.describe());
    assert!(fingerprint(&foreign) == before, "the foreign file changed");
    assert_eq!(names(&dir), ["app.db"]);
    assert!(!html.exists());
    // A store that does not exist: configuration too, and none is created.
    let state = format!("sqlite://{}", dir.join("none.db").display());
    let missing = run(REPORT, &["--state", &state, "--html", s(&html)]);
    missing.assert_one_line_error(&["none.db", "no such file"]);
    assert_eq!(missing.status.code(), Some(78), "{}", missing.describe());
    assert_eq!(names(&dir), ["app.db"]);
}

/// Runs `command` as the `nobody` user when we are root (root ignores file permissions).
#[allow(unsafe_code)]
fn as_unprivileged(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        command.uid(65534).gid(65534);
    }
}

/// A store in a read-only directory, itself read-only (as another user sees a service's
/// store): the report reads it and creates nothing there; a store of a newer schema version
/// beside it is refused with one line, unchanged.
#[test]
fn report_reads_a_store_in_a_read_only_directory() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let ok = run(Y, &strs(&setup.y_args(None)));
    assert!(ok.status.success(), "{}", ok.describe());
    let (root, mode) = (&setup.root, fs::Permissions::from_mode);
    let dir = root.join("ro");
    fs::create_dir(&dir).unwrap();
    fs::rename(root.join("state.db"), dir.join("state.db")).unwrap();
    fs::copy(dir.join("state.db"), dir.join("newer.db")).unwrap();
    rusqlite::Connection::open(dir.join("newer.db"))
        .unwrap()
        .execute("INSERT INTO schema_migrations VALUES (99, 'later')", [])
        .unwrap();
    // The report runs as `nobody` when we are root: from a copy it can execute, writing
    // into a directory it can write.
    let bin = root.join("txflow-report");
    fs::copy(REPORT, &bin).unwrap();
    let reports = root.join("reports");
    fs::create_dir(&reports).unwrap();
    for (path, bits) in [(root, 0o755), (&reports, 0o777), (&bin, 0o755)] {
        fs::set_permissions(path, mode(bits)).unwrap();
    }
    for file in ["state.db", "newer.db"] {
        fs::set_permissions(dir.join(file), mode(0o444)).unwrap();
    }
    fs::set_permissions(&dir, mode(0o555)).unwrap();
    let before = names(&dir);
    let newer_before = fingerprint(&dir.join("newer.db"));
    let report = |db: &str, html: &str| {
        let mut command = Command::new(&bin);
        let state = format!("sqlite://{}", dir.join(db).display());
        command
            .args(["--state", &state, "--html", s(&reports.join(html))])
            .env("RUST_LOG", "off");
        as_unprivileged(&mut command);
        ChildGuard::spawn(command).wait(TIMEOUT)
    };

    let read = report("state.db", "r.html");
    assert!(read.status.success(), "{}", read.describe());
    assert!(read.stdout.contains("1 epochs"), "{}", read.describe());
    assert!(reports.join("r.html").is_file());
    report("newer.db", "n.html").assert_one_line_error(&["schema version 99", "newer"]);
    fs::set_permissions(&dir, mode(0o755)).unwrap();
    assert_eq!(
        names(&dir),
        before,
        "the report created files beside the stores"
    );
    assert!(fingerprint(&dir.join("newer.db")) == newer_before);
}

// ------------------------------------------------------------------------------------------
// A backtest's report path, its variants in the store's report, promoting a variant
// ------------------------------------------------------------------------------------------

/// Replaces the setup's chunk with one where PatId2 flags 'C1' (10 small transactions at
/// 'M1') at `--child-min-txns` up to 10 and 'C2' (6) up to 6.
fn write_child_chunk(setup: &Setup) {
    let mut chunk = format!("{HEADER}\n");
    for (customer, count) in [("C1", 10), ("C2", 6)] {
        for _ in 0..count {
            chunk += &format!("0,'{customer}','4','F','28007','M1','28007','es_food',4.55,0\n");
        }
    }
    fs::write(setup.landing.join("chunk-000000.csv"), chunk).unwrap();
}

/// The baseline ledger and the named variants' ledgers of a store, without their times.
fn timeless_ledgers(
    state: &str,
    variants: &[&str],
) -> (
    Vec<common::outputs::TimelessLedgerRow>,
    Vec<Vec<common::outputs::TimelessLedgerRow>>,
) {
    use txflow::sinks::state::{self, LedgerId, StateConfig};
    let mut store = state::open_read_only(&StateConfig::parse(state).unwrap()).unwrap();
    let timeless = |rows: Vec<_>| common::outputs::timeless_ledger(&rows);
    let baseline = timeless(store.ledger(LedgerId::Baseline).unwrap());
    let variants = variants
        .iter()
        .map(|v| timeless(store.ledger(LedgerId::Variant(v)).unwrap()))
        .collect();
    (baseline, variants)
}

/// A replay of the child chunk under `--child-min-txns 5` with the variant
/// `strict:child-min-txns=8`.
fn strict_variant_replay() -> (Setup, Finished) {
    let setup = Setup::new();
    write_child_chunk(&setup);
    let variant = [
        "--child-min-txns",
        "5",
        "--variant",
        "strict:child-min-txns=8",
    ];
    let finished = run(Y, &strs(&replay_args(&setup, &variant)));
    (setup, finished)
}

#[test]
fn report_promotes_a_variant_to_the_next_runs_baseline() {
    let (setup, first) = strict_variant_replay();
    assert!(first.status.success(), "{}", first.describe());
    let (baseline, variants) = timeless_ledgers(&setup.state, &["strict"]);
    let strict = &variants[0];
    assert_eq!(
        (baseline.len(), strict.len()),
        (2, 1),
        "{baseline:?} {strict:?}"
    );

    let promoted = run(REPORT, &["--state", &setup.state, "--promote", "strict"]);
    assert!(promoted.status.success(), "{}", promoted.describe());
    let (options, toml) = promoted.stdout.split_once('\n').unwrap();
    assert_eq!(
        options,
        "--upgrade-min-merchant-txns 50000 --upgrade-count-percentile 0.9 \
         --upgrade-weight-percentile 0.1 --child-min-txns 8 --child-max-avg-amount 23 \
         --dei-min-female-customers 100"
    );
    // The file reads, by the reader of --variants, as the old baseline's thresholds.
    let read = txflow::thresholds::variants::resolve(
        &txflow::model::Thresholds::default(),
        Some(("promoted.toml", toml)),
        &[],
        &[],
    )
    .unwrap();
    let old = txflow::model::Thresholds {
        child_min_txns: 5,
        ..Default::default()
    };
    let names: Vec<_> = read
        .variants
        .iter()
        .map(|v| (v.name.as_str(), v.thresholds))
        .collect();
    assert_eq!(names, [("previous-baseline", old)]);

    // The next run: the variant is its baseline, the old baseline its shadow.
    let file = setup.root.join("promoted.toml");
    fs::write(&file, toml).unwrap();
    let next_state = format!("sqlite://{}", setup.root.join("next.db").display());
    let mut next = setup.y_args(Some(("--state", &next_state)));
    let next_output = setup.root.join("next-output");
    let slot = next.iter().position(|a| a == "--output").unwrap() + 1;
    next[slot] = s(&next_output).to_string();
    next.extend(["--replay".to_string(), "--variants".into(), s(&file).into()]);
    next.extend(options.split(' ').map(str::to_string));
    let second = run(Y, &strs(&next));
    assert!(second.status.success(), "{}", second.describe());
    let (next_baseline, next_variants) = timeless_ledgers(&next_state, &["previous-baseline"]);
    assert_eq!(&next_baseline, strict);
    assert_eq!(next_variants[0], baseline);

    let unknown = run(REPORT, &["--state", &setup.state, "--promote", "lenient"]);
    unknown.assert_one_line_error(&["--promote lenient", "no such variant", "variants: strict)"]);
    assert_eq!(unknown.status.code(), Some(78), "{}", unknown.describe());
}

#[test]
fn a_backtests_last_line_names_its_report_and_the_stores_report_lists_its_variants() {
    let (setup, replay) = strict_variant_replay();
    assert!(replay.status.success(), "{}", replay.describe());
    // The last line of the run names the HTML page (logs off: nothing follows on stderr).
    let last = replay.stdout.lines().last().unwrap();
    let page = last
        .strip_prefix("mechanism-y: report: ")
        .and_then(|rest| rest.strip_suffix(" (and .json)"))
        .unwrap_or_else(|| panic!("{}", replay.describe()));
    assert_eq!(Path::new(page), setup.output.join("backtest-report.html"));
    assert!(Path::new(page).is_file());
    assert!(setup.output.join("backtest-report.json").is_file());
    let logged = replay
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    assert_eq!(logged, 0, "stdout ends the run: {}", replay.describe());

    let (html, json) = (setup.root.join("r.html"), setup.root.join("r.json"));
    let report = run(
        REPORT,
        &[
            "--state",
            &setup.state,
            "--html",
            s(&html),
            "--json",
            s(&json),
        ],
    );
    assert!(report.status.success(), "{}", report.describe());
    assert!(
        report.stdout.contains(
            "txflow-report: variant strict (child-min-txns 8): 1 detections \
             (PatId1 0, PatId2 1, PatId3 0)\n"
        ),
        "{}",
        report.describe()
    );
    let status: serde_json::Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    let variants = status["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 1, "{status:#}");
    assert_eq!(variants[0]["name"], "strict");
    assert_eq!(variants[0]["thresholds"]["child-min-txns"], 8);
    assert_eq!(variants[0]["thresholds"]["child-max-avg-amount"], "23");
    assert_eq!(variants[0]["detections"]["total"], 1);
    assert_eq!(variants[0]["detections"]["by_pattern"]["PatId2"], 1);
    assert_eq!(status["detections"]["total"], 2);
    // The page lists the variant with what it changes and its detections.
    #[cfg(feature = "test-browser")]
    {
        let dom = common::browser::dump_dom(&format!("file://{}", html.display()), &[]);
        let row = dom
            .split("data-variant=\"strict\"")
            .nth(1)
            .unwrap_or_default();
        let row = &row[..row.find("</tr>").unwrap_or(0)];
        assert!(row.contains(">child-min-txns=8<"), "{row}");
        let counts = ["1", "0", "1", "0"].map(|n| format!("data-value=\"{n}\""));
        let mut rest = row;
        for count in &counts {
            let at = rest
                .find(count.as_str())
                .unwrap_or_else(|| panic!("{count} in {row}"));
            rest = &rest[at + count.len()..];
        }
    }
}
