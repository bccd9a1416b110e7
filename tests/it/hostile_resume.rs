//! Resuming against changed inputs, ended streams and a foreign output (SPEC §6),
//! with the real `mechanism-y` binary on small generated data
//! (`txgen` 3,000 rows, 100-record chunks: 30 chunks, low thresholds so that every run
//! writes detection files):
//!
//! - the importance file edited between a stop and the restart: refused, naming the file;
//! - a committed chunk replaced before a restart after `kill -9`: refused ("append-only"),
//!   nothing more committed although more chunks wait;
//! - a replay rerun after more chunks arrived: its resolved range grew, another run;
//! - an ended stream rerun (live and replay): a no-op that says so and exits 0, tables and
//!   files untouched;
//! - an ended stream whose landing now holds more chunks: refused with one line;
//! - a detection file with other content in the output: refused, the file kept; the same
//!   content (a second backtest into the same output) is accepted;
//! - the landing spelled another way (`landing`, `./landing`, the absolute path from another
//!   directory): the same run; another directory with the same chunks: refused, named;
//! - a second Y on the same SQLite database through a symlink or a hard link: refused by
//!   the lock;
//! - PostgreSQL refusing connections, or a host that does not resolve, at start: one line
//!   within about `--pg-connect-timeout`.
//!
//! Every refusal is checked with logging off: exactly one stderr line, `error: ...`, naming
//! what the SPEC says; and the state tables (and output files) are compared before/after.

// Signalling child processes needs libc::kill.
#![allow(unsafe_code)]

use crate::common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::outputs::files_under;
use common::paths::{free_port, s};
use common::process::Finished;
use common::wait::poll;
use txflow::mechanism_x::{self, XOptions};
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{self, EpochRow, LedgerRow};
use txgen::{self, GenOptions};

const Y: &str = env!("CARGO_BIN_EXE_mechanism-y");
const ROWS: u64 = 3_000;
const SEED: u64 = 11;
const CHUNK_ROWS: usize = 100;
/// Low thresholds: about 55 detections on 3,000 rows, so two detection files.
const THRESHOLDS: [&str; 6] = [
    "--upgrade-min-merchant-txns",
    "30",
    "--dei-min-female-customers",
    "1",
    "--child-min-txns",
    "2",
];
/// Bound on any single run (debug build, loaded machine).
const LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------
// The world of one test: data, a complete landing cut by X, and what Y reads and writes.
// ---------------------------------------------------------------------------------------

struct World {
    tmp: tempfile::TempDir,
    /// X's complete landing (every chunk and `_COMPLETE`); chunks are copied from here.
    full: PathBuf,
    /// Number of chunks in `full`.
    chunks: u64,
    /// The landing Y reads.
    landing: PathBuf,
    importance: PathBuf,
    output: PathBuf,
    state: String,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        txgen::generate(&data, &GenOptions::new(ROWS, SEED)).expect("txgen");
        let full = tmp.path().join("full-landing");
        let x = mechanism_x::run(&XOptions {
            chunk_rows: CHUNK_ROWS,
            interval: Duration::ZERO,
            ..XOptions::new(data.join("transactions.csv"), full.to_str().unwrap())
        })
        .expect("mechanism X");
        assert!(x.complete && x.chunks_total >= 20, "{x:?}");
        let landing = tmp.path().join("landing");
        fs::create_dir_all(&landing).unwrap();
        fs::create_dir_all(tmp.path().join("logs")).unwrap();
        World {
            full,
            chunks: x.chunks_total,
            landing,
            importance: data.join("CustomerImportance.csv"),
            output: tmp.path().join("out"),
            state: sqlite_url(&tmp.path().join("state.db")),
            tmp,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Puts chunks `[0, n)` into Y's landing (each by rename, whole), and `_COMPLETE` =
    /// `complete` when given.
    fn land(&self, n: u64, complete: Option<u64>) {
        for k in 0..n {
            let name = chunk_name(k);
            let target = self.landing.join(&name);
            if !target.exists() {
                let tmp = self.landing.join(format!(".incoming-{name}"));
                fs::copy(self.full.join(&name), &tmp).unwrap();
                fs::rename(&tmp, &target).unwrap();
            }
        }
        if let Some(count) = complete {
            fs::write(self.landing.join("_COMPLETE"), count.to_string()).unwrap();
        }
    }

    /// `mechanism-y` on this world, `args` added (a `--state` among them replaces the
    /// world's).
    fn y(&self, args: &[&str], rust_log: &str) -> Command {
        let mut command = Command::new(Y);
        command
            .args(["--landing", s(&self.landing)])
            .args(["--importance", s(&self.importance)])
            .args(["--output", s(&self.output)])
            .args(THRESHOLDS)
            .args(args);
        if !args.contains(&"--state") {
            command.args(["--state", &self.state]);
        }
        command.env("RUST_LOG", rust_log).env("NO_COLOR", "1");
        command
    }

    /// Runs Y to its end.
    fn run_y(&self, name: &str, args: &[&str], rust_log: &str) -> Finished {
        Running::spawn(self, name, self.y(args, rust_log)).wait(LIMIT)
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn chunk_name(k: u64) -> String {
    format!("chunk-{k:06}.csv")
}

/// A running `mechanism-y`, output to files (no pipe to fill), killed if still running
/// when dropped.
struct Running {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    name: String,
}

impl Running {
    fn spawn(world: &World, name: &str, mut command: Command) -> Running {
        let stdout = world.path(&format!("logs/{name}.out"));
        let stderr = world.path(&format!("logs/{name}.err"));
        let child = command
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Running {
            child: Some(child),
            stdout,
            stderr,
            name: name.to_string(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    fn output(&self) -> (String, String) {
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        (read(&self.stdout), read(&self.stderr))
    }

    /// Waits for the exit; kills and panics after `limit`.
    fn wait(mut self, limit: Duration) -> Finished {
        let status = poll(limit, || self.child.as_mut().unwrap().try_wait().unwrap());
        let Some(status) = status else {
            let (out, err) = self.output();
            panic!(
                "{} did not finish within {limit:?}:\n{out}\n{err}",
                self.name
            );
        };
        self.child = None;
        let (stdout, stderr) = self.output();
        Finished {
            status,
            stdout,
            stderr,
        }
    }

    /// Waits until the state store holds `n` epochs (Y keeps running).
    fn wait_for_epochs(&mut self, url: &str, n: usize) {
        let committed = poll(LIMIT, || {
            if !self.is_running() {
                let (out, err) = self.output();
                panic!(
                    "{} exited before committing {n} epochs:\n{out}\n{err}",
                    self.name
                );
            }
            (committed_epochs(url) >= n).then_some(())
        });
        assert!(
            committed.is_some(),
            "{}: {n} epochs not committed within {LIMIT:?}",
            self.name
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn assert_success(f: &Finished, what: &str) {
    assert!(f.status.success(), "{what}: {}", f.describe());
}

// ---------------------------------------------------------------------------------------
// What a run leaves behind.
// ---------------------------------------------------------------------------------------

/// The state tables (read without taking the writer's lock) and whether the stream ended.
#[derive(Debug, PartialEq)]
struct Tables {
    epochs: Vec<EpochRow>,
    ledger: Vec<LedgerRow>,
    counts: Vec<(String, i64)>,
    finished: bool,
}

impl Tables {
    fn read(url: &str) -> Tables {
        let mut store = state::open(&StateConfig::parse(url).unwrap()).unwrap();
        let path = url.strip_prefix("sqlite://").expect("a SQLite store");
        let finished = rusqlite::Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM run_meta WHERE key = 'finished')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        Tables {
            epochs: store.epoch_rows().unwrap(),
            ledger: store
                .ledger(txflow::sinks::state::LedgerId::Baseline)
                .unwrap(),
            counts: store.merchant_counts().unwrap(),
            finished,
        }
    }
}

/// The number of committed epochs; 0 while the store is not set up yet.
fn committed_epochs(url: &str) -> usize {
    let path = url.strip_prefix("sqlite://").expect("a SQLite store");
    rusqlite::Connection::open(path)
        .and_then(|c| c.query_row("SELECT count(*) FROM epochs", [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Every file under `dir` (relative path → bytes and modification time).
fn files(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let modified = fs::metadata(&path).unwrap().modified().unwrap();
            (rel, (fs::read(&path).unwrap(), modified))
        })
        .collect()
}

/// File names and bytes (times aside).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files(dir).into_iter().map(|(k, (b, _))| (k, b)).collect()
}

fn detection_files(dir: &Path) -> usize {
    files(dir)
        .keys()
        .filter(|k| k.starts_with("detections-"))
        .count()
}

/// Replaces a landing object's bytes whole (by rename), as a hostile producer would.
fn replace(path: &Path, body: &[u8]) {
    let tmp = path.with_extension("replacing");
    fs::write(&tmp, body).unwrap();
    fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------
// Changed inputs on resume
// ---------------------------------------------------------------------------------------

/// The importance file is part of the run's identity: edited between a stop (SIGTERM) and
/// the restart, the restart is refused naming the file, and commits nothing; with the
/// original file back, the run resumes and finishes.
#[test]
fn importance_file_edited_between_stop_and_restart_is_refused() {
    let w = World::new();
    w.land(10, None);
    let mut y = Running::spawn(&w, "first", w.y(&[], "warn"));
    y.wait_for_epochs(&w.state, 10);
    y.signal(libc::SIGTERM);
    assert_success(&y.wait(LIMIT), "stopped by SIGTERM");
    let before = Tables::read(&w.state);
    assert_eq!(before.epochs.len(), 10);
    let output_before = contents(&w.output);

    let original = fs::read(&w.importance).unwrap();
    let mut edited = original.clone();
    edited.extend_from_slice(b"'C999999999','M999999999',0.5,'es_food',0\n");
    fs::write(&w.importance, &edited).unwrap();
    w.land(w.chunks, Some(w.chunks));
    let refused = w.run_y("edited", &[], "off");
    let line = refused.assert_one_line_error(&[
        "different run",
        &format!("the importance file {}", s(&w.importance)),
        "changed since this run started",
        "a new run needs a new state store",
    ]);
    eprintln!("refused: {line}");
    assert_eq!(
        Tables::read(&w.state),
        before,
        "the refusal committed nothing"
    );
    assert_eq!(
        contents(&w.output),
        output_before,
        "the refusal wrote nothing"
    );

    fs::write(&w.importance, &original).unwrap();
    let resumed = w.run_y("restored", &[], "off");
    assert_success(&resumed, "the original importance file");
    let after = Tables::read(&w.state);
    assert_eq!(after.epochs.len() as u64, w.chunks);
    assert!(after.finished);
}

/// A local landing is one landing however it is spelled: a run started as `landing` from
/// the directory holding it and stopped resumes as `./landing` from there and as the absolute
/// path from another directory (as a service restarted elsewhere would be); a different
/// directory holding the same chunks is another run, refused naming both.
#[test]
fn landing_spelled_another_way_is_the_same_run() {
    let w = World::new();
    let (home, elsewhere) = (w.tmp.path().to_path_buf(), w.path("elsewhere"));
    fs::create_dir_all(&elsewhere).unwrap();
    let spelled = |cwd: &Path, landing: &str| {
        let mut command = Command::new(Y);
        command
            .current_dir(cwd)
            .args(["--landing", landing])
            .args(["--importance", s(&w.importance)])
            .args(["--output", s(&w.output)])
            .args(["--state", &w.state])
            .args(THRESHOLDS)
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1");
        command
    };
    let absolute = fs::canonicalize(&w.landing).unwrap();
    // Before: the second start was refused ("the landing was landing, now ./landing").
    for (n, (name, cwd, landing)) in [
        ("relative", &home, "landing".to_string()),
        ("dot", &home, "./landing".to_string()),
        ("absolute", &elsewhere, s(&absolute).to_string()),
    ]
    .into_iter()
    .enumerate()
    {
        let epochs = 5 * (n + 1);
        w.land(epochs as u64, None);
        let mut y = Running::spawn(&w, name, spelled(cwd, &landing));
        y.wait_for_epochs(&w.state, epochs);
        y.signal(libc::SIGTERM);
        assert_success(&y.wait(LIMIT), name);
    }
    let copy = w.path("copy");
    fs::create_dir_all(&copy).unwrap();
    for entry in fs::read_dir(&w.landing).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let before = Tables::read(&w.state);
    let refused = Running::spawn(&w, "copy", spelled(&elsewhere, "../copy")).wait(LIMIT);
    let copy = fs::canonicalize(&copy).unwrap();
    refused.assert_one_line_error(&[
        "different run",
        &format!("the landing was {}, now {}", s(&absolute), s(&copy)),
    ]);
    assert_eq!(
        Tables::read(&w.state),
        before,
        "the refusal committed nothing"
    );
}

/// A committed chunk replaced in the landing while Y was down (after `kill -9`): the
/// recovery replay refuses it ("append-only"), and nothing more is committed although the
/// landing holds 20 more chunks; the ledger, counters and progress rows are unchanged.
#[test]
fn committed_chunk_replaced_before_restart_is_refused() {
    let w = World::new();
    w.land(10, None);
    let mut y = Running::spawn(&w, "first", w.y(&[], "warn"));
    y.wait_for_epochs(&w.state, 10);
    y.signal(libc::SIGKILL);
    let killed = y.wait(LIMIT);
    assert!(!killed.status.success());
    w.land(w.chunks, Some(w.chunks));

    // Chunk 3 loses its last record: same name, other bytes.
    let chunk3 = w.landing.join(chunk_name(3));
    let text = fs::read_to_string(&chunk3).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    replace(&chunk3, format!("{}\n", lines.join("\n")).as_bytes());

    let before = Tables::read(&w.state);
    assert_eq!(before.epochs.len(), 10);
    assert!(before.epochs.iter().all(|e| e.chunk_digest.is_some()));
    let output_before = contents(&w.output);
    let refused = w.run_y("replaced", &["-w", "2"], "off");
    let line = refused.assert_one_line_error(&[
        "chunk-000003.csv changed since epoch 3 was committed",
        "the landing store must be append-only",
    ]);
    eprintln!("refused: {line}");
    assert_eq!(
        Tables::read(&w.state),
        before,
        "nothing committed after the mismatch"
    );
    assert_eq!(contents(&w.output), output_before);
}

/// A replay's range is resolved from the landing when it starts: rerun after more chunks
/// arrived, it is another run, refused naming both ranges; the store is unchanged.
#[test]
fn replay_range_grown_by_new_chunks_is_another_run() {
    let w = World::new();
    w.land(10, None);
    let first = w.run_y("replay", &["--replay"], "off");
    assert_success(&first, "replay of 10 chunks");
    let before = Tables::read(&w.state);
    assert_eq!(before.epochs.len(), 10);
    assert!(before.finished);
    let output_before = files(&w.output);

    w.land(w.chunks, Some(w.chunks));
    let refused = w.run_y("replay-again", &["--replay"], "off");
    let line = refused.assert_one_line_error(&[
        "different run",
        &format!("the replay range was [0, 9], now [0, {}]", w.chunks - 1),
        "a new run needs a new state store",
    ]);
    eprintln!("refused: {line}");
    assert_eq!(Tables::read(&w.state), before);
    assert_eq!(files(&w.output), output_before);
}

// ---------------------------------------------------------------------------------------
// Ended streams stay ended
// ---------------------------------------------------------------------------------------

/// Runs a stream to its end, then the same command again: exit 0, a message that the
/// stream already ended, a summary with nothing committed, tables and files untouched
/// (bytes and modification times).
fn ended_stream_rerun_is_a_no_op(args: &[&str]) {
    let w = World::new();
    w.land(w.chunks, Some(w.chunks));
    let first = w.run_y("first", args, "off");
    assert_success(&first, "the whole stream");
    let before = Tables::read(&w.state);
    assert!(before.finished);
    assert_eq!(before.epochs.len() as u64, w.chunks);
    assert!(
        detection_files(&w.output) >= 2,
        "the data must give detection files: {:?}",
        files(&w.output).keys()
    );
    let output_before = files(&w.output);

    std::thread::sleep(Duration::from_millis(20));
    let again = w.run_y("again", args, "warn");
    assert_success(&again, "rerunning an ended stream");
    let last = w.chunks - 1;
    assert!(
        again
            .stderr
            .contains(&format!("already ended at epoch {last}")),
        "says the stream already ended: {}",
        again.describe()
    );
    assert!(
        again.stdout.contains("0 epochs committed (0 recovered)")
            && again.stdout.contains("stream ended")
            && again
                .stdout
                .contains(&format!("{} detections in the ledger", before.ledger.len())),
        "summary: {}",
        again.describe()
    );
    assert_eq!(Tables::read(&w.state), before, "tables unchanged");
    assert_eq!(
        files(&w.output),
        output_before,
        "files unchanged, not rewritten"
    );
}

#[test]
fn ended_live_stream_rerun_is_a_no_op() {
    ended_stream_rerun_is_a_no_op(&[]);
}

#[test]
fn ended_replay_rerun_is_a_no_op() {
    ended_stream_rerun_is_a_no_op(&["--replay"]);
}

/// A live stream ended after 10 chunks (`_COMPLETE` = 10); the producer then adds 20
/// chunks and rewrites `_COMPLETE`: the rerun is refused with one line naming the end and
/// the new chunks, and commits nothing.
#[test]
fn ended_stream_with_more_chunks_in_the_landing_is_refused() {
    let w = World::new();
    w.land(10, Some(10));
    assert_success(&w.run_y("first", &[], "off"), "10 chunks");
    let before = Tables::read(&w.state);
    assert!(before.finished);
    assert_eq!(before.epochs.len(), 10);
    let output_before = files(&w.output);

    w.land(w.chunks, Some(w.chunks));
    let refused = w.run_y("grown", &[], "off");
    let line = refused.assert_one_line_error(&[
        "the stream of this state store ended at epoch 9",
        "the landing now holds more chunks (chunk-000010.csv",
        &format!("{} chunks)", w.chunks - 10),
        "a new run needs a new state store",
    ]);
    eprintln!("refused: {line}");
    assert_eq!(Tables::read(&w.state), before, "nothing committed");
    assert_eq!(files(&w.output), output_before, "nothing written");
}

// ---------------------------------------------------------------------------------------
// Published files
// ---------------------------------------------------------------------------------------

/// An output location holding a detection file with other content (another run's): Y
/// refuses to overwrite it, with one line naming the file; the file is kept.
#[test]
fn detection_file_with_other_content_is_refused() {
    let w = World::new();
    w.land(w.chunks, Some(w.chunks));
    fs::create_dir_all(&w.output).unwrap();
    let foreign = w.output.join("detections-000000.csv");
    let body = "YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId\n\
                2026-01-01T00:00:00.000+05:30,2026-01-01T00:00:01.000+05:30,PatId1,UPGRADE,\
                'C1','M1'\n";
    fs::write(&foreign, body).unwrap();
    let refused = w.run_y("foreign-output", &[], "off");
    let line = refused.assert_one_line_error(&[
        s(&w.output),
        "already holds detections-000000.csv with other content",
        "use an empty output location",
    ]);
    eprintln!("refused: {line}");
    assert_eq!(fs::read_to_string(&foreign).unwrap(), body, "the file kept");
    assert!(
        !Tables::read(&w.state).ledger.is_empty(),
        "the refusal came from writing the file"
    );
}

/// The same bytes are not "other content": a second backtest of the same landing into the
/// same output (times come from the landing, so its files are byte-identical) succeeds and
/// leaves the files as they were.
#[test]
fn detection_files_with_the_same_content_are_accepted() {
    let w = World::new();
    w.land(w.chunks, Some(w.chunks));
    assert_success(&w.run_y("first", &["--replay"], "off"), "first backtest");
    let first = contents(&w.output);
    assert!(detection_files(&w.output) >= 2);
    let other_state = sqlite_url(&w.path("second.db"));
    let second = w.run_y("second", &["--replay", "--state", &other_state], "off");
    assert_success(&second, "second backtest into the same output");
    assert_eq!(contents(&w.output), first);
    assert_eq!(
        Tables::read(&other_state).ledger.len(),
        Tables::read(&w.state).ledger.len()
    );
}

// ---------------------------------------------------------------------------------------
// Start-up checks
// ---------------------------------------------------------------------------------------

/// The SQLite lock belongs to the database file: a second Y reaching the same
/// database through a symlinked directory or a symlinked file is refused while the first
/// holds it, naming the first process; the first keeps running.
#[test]
fn sqlite_through_a_symlink_while_another_y_holds_it_is_refused() {
    let w = World::new();
    let real = w.path("real");
    fs::create_dir_all(&real).unwrap();
    let db = real.join("state.db");
    let linked_dir = w.path("linked");
    std::os::unix::fs::symlink(&real, &linked_dir).unwrap();
    let linked_file = w.path("state-link.db");
    std::os::unix::fs::symlink(&db, &linked_file).unwrap();
    let url = sqlite_url(&db);

    w.land(5, None);
    let mut first = Running::spawn(&w, "first", w.y(&["--state", &url], "warn"));
    first.wait_for_epochs(&url, 5);
    let before = Tables::read(&url);
    for (name, alias) in [
        ("via-dir", linked_dir.join("state.db")),
        ("via-file", linked_file.clone()),
    ] {
        let second = w.run_y(name, &["--state", &sqlite_url(&alias)], "off");
        second.assert_one_line_error(&["another mechanism-y", &first.pid().to_string()]);
    }
    assert!(first.is_running(), "the first process keeps running");
    assert_eq!(Tables::read(&url), before);
}

/// A hard link is another name of the same database file, and the lock belongs to the file:
/// a second Y through a hard link is refused while the first holds it, naming the first
/// process, and leaves no WAL files of its own; the first runs to the end and the store
/// holds every epoch.
#[test]
fn sqlite_through_a_hard_link_while_another_y_holds_it_is_refused() {
    let w = World::new();
    let db = w.path("state.db");
    let url = sqlite_url(&db);
    w.land(5, None);
    let mut first = Running::spawn(&w, "first", w.y(&["--state", &url], "warn"));
    first.wait_for_epochs(&url, 5);
    let link = w.path("hard.db");
    fs::hard_link(&db, &link).unwrap();
    let before = Tables::read(&url);
    let second = w.run_y("via-hard-link", &["--state", &sqlite_url(&link)], "off");
    second.assert_one_line_error(&["another mechanism-y", &first.pid().to_string()]);
    assert!(first.is_running(), "the first process keeps running");
    assert_eq!(Tables::read(&url), before);
    for file in ["hard.db-wal", "hard.db-shm"] {
        assert!(!w.path(file).exists(), "the refused Y made {file}");
    }
    w.land(w.chunks, Some(w.chunks));
    assert_success(&first.wait(LIMIT), "the first Y");
    let after = Tables::read(&url);
    assert!(after.finished, "the stream ended");
    assert_eq!(after.epochs.len() as u64, w.chunks, "every epoch committed");
}

/// Asserts that Y with `url` fails within about `--pg-connect-timeout 2`, with one line
/// naming `host`, without the password.
fn postgres_unreachable_at_start(w: &World, name: &str, url: &str, host: &str) {
    let started = Instant::now();
    let f = w.run_y(name, &["--state", url, "--pg-connect-timeout", "2"], "off");
    let took = started.elapsed();
    let line =
        f.assert_one_line_error(&["cannot reach PostgreSQL at", host, "--pg-connect-timeout"]);
    assert!(!line.contains("secret"), "the password is redacted: {line}");
    assert!(
        took < Duration::from_secs(8),
        "failed after {took:?}: {line}"
    );
    eprintln!("{name}: failed after {took:.1?}: {line}");
}

#[test]
fn postgres_refusing_connections_at_start_fails_within_the_timeout() {
    let w = World::new();
    w.land(1, Some(1));
    // A port nobody listens on.
    let port = free_port();
    let url = format!("postgres://txflow:secret@127.0.0.1:{port}/txflow");
    postgres_unreachable_at_start(&w, "refused", &url, &format!("127.0.0.1:{port}"));
}

#[test]
fn postgres_unresolvable_host_at_start_fails_within_the_timeout() {
    let w = World::new();
    w.land(1, Some(1));
    let url = "postgres://txflow:secret@nonexistent.invalid:5432/txflow";
    postgres_unreachable_at_start(&w, "unresolvable", url, "nonexistent.invalid:5432");
}
