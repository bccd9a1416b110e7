//! A hostile landing store (SPEC §3): what X and Y do with a landing that breaks the
//! rules, each case its own test, on small generated data (`txgen --rows 3000`, X with
//! `--chunk-rows 100`: 30 chunks and `_COMPLETE` = 30).
//!
//! - `complete_short_of_the_chunks_stops_live_y`: `_COMPLETE` = 5 with 30 chunks: live Y
//!   fails with one line, commits nothing past chunk 4, does not end the stream, writes no
//!   short file; a rerun does the same.
//! - `complete_beyond_the_chunks_warns_while_waiting`: `_COMPLETE` = 40 with 30 chunks: live Y
//!   commits the 30 and warns every `--gap-warn-secs` while it waits for chunk 30; SIGTERM
//!   stops it (exit 0) without ending the stream.
//! - `complete_that_is_not_a_count_is_refused`: live and replay Y fail with one line naming
//!   the body, before committing anything.
//! - `stray_chunk_names_are_ignored_by_replay_and_live_y`: `chunk-0000003.csv`,
//!   `chunk-18446744073709551615.csv` and other non-canonical names: one warning per name, and
//!   the same results as without them.
//! - `x_resumes_past_stray_chunk_names`: X resumes without a false gap and lands the same
//!   chunks as an undisturbed X.
//! - `replay_with_a_missing_chunk_is_refused`: a gap, `--to` or `--from` past the last chunk:
//!   refused with one line naming the first missing chunk, nothing committed.
//! - `replay_with_complete_beyond_the_chunks_is_refused`: `_COMPLETE` = 35 with 30 chunks: a
//!   replay without `--to` is refused like a gap, naming chunk 30, nothing committed; an
//!   explicit `--to` within the chunks present replays.
//! - `chunk_written_in_place_is_taken_whole`: a local chunk whose last line has no terminator
//!   yet is not taken; once the rest is appended, the whole chunk is: no row lost.
//! - `chunk_changed_after_it_was_taken_stops_y`: a chunk written in place with a pause longer
//!   than `--settle-ms` is taken truncated; once the rest is written Y stops with one line
//!   naming it ("append-only"), committing nothing after it.
//! - `live_y_on_a_missing_landing_directory_warns`: warns at once and every `--gap-warn-secs`
//!   while the directory is missing, then processes the landing once it appears.

// Process control in the tests needs libc calls.
#![allow(unsafe_code)]

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::outputs::named_tree;
use common::outputs::{timeless_epochs, timeless_ledger};
use common::paths::s;
use common::process::{ChildGuard, Finished};
use common::wait::poll;
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{EpochRow, LedgerRow};

const X: &str = env!("CARGO_BIN_EXE_mechanism-x");
const Y: &str = env!("CARGO_BIN_EXE_mechanism-y");
const TXGEN: &str = env!("CARGO_BIN_EXE_txgen");
const ROWS: u64 = 3_000;
const CHUNK_ROWS: u64 = 100;
const CHUNKS: u64 = ROWS / CHUNK_ROWS;
/// Upper bound on any single wait (a debug build on a busy machine).
const TIMEOUT: Duration = Duration::from_secs(300);
/// Low enough for all three patterns to fire on 3,000 generated rows.
const THRESHOLDS: [&str; 6] = [
    "--upgrade-min-merchant-txns",
    "30",
    "--child-min-txns",
    "3",
    "--dei-min-female-customers",
    "3",
];

fn chunk_name(k: u64) -> String {
    format!("chunk-{k:06}.csv")
}

/// Runs `bin args` to the end with `RUST_LOG=rust_log`, bounded by [`TIMEOUT`].
fn run(bin: &str, args: &[String], rust_log: &str) -> Finished {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1");
    ChildGuard::spawn(command).wait(TIMEOUT)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|a| a.to_string()).collect()
}

/// Generated data and a complete landing directory written by X.
struct Bed {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    source: PathBuf,
    importance: PathBuf,
    /// 30 chunks and `_COMPLETE` = 30, as X wrote them.
    landing: PathBuf,
}

impl Bed {
    fn new() -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        let gen = run(
            TXGEN,
            &strings(&[
                "--out",
                s(&data),
                "--rows",
                &ROWS.to_string(),
                "--seed",
                "11",
            ]),
            "off",
        );
        assert!(gen.status.success(), "txgen: {}", gen.describe());
        let bed = Bed {
            source: data.join("transactions.csv"),
            importance: data.join("CustomerImportance.csv"),
            landing: root.join("landing"),
            root,
            _tmp: tmp,
        };
        let x = bed.x(&bed.landing, &[], "off");
        assert!(x.status.success(), "mechanism-x: {}", x.describe());
        let names = chunk_files(&bed.landing);
        assert_eq!(names.len() as u64, CHUNKS, "{names:?}");
        assert_eq!(
            fs::read_to_string(bed.landing.join("_COMPLETE")).unwrap(),
            CHUNKS.to_string()
        );
        bed
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Runs mechanism-x from the bed's source into `landing`.
    fn x(&self, landing: &Path, extra: &[&str], rust_log: &str) -> Finished {
        let mut args = strings(&[
            "--source",
            s(&self.source),
            "--landing",
            s(landing),
            "--chunk-rows",
            &CHUNK_ROWS.to_string(),
            "--interval-ms",
            "0",
        ]);
        args.extend(strings(extra));
        run(X, &args, rust_log)
    }

    /// The state store URL of the run called `name`.
    fn state(&self, name: &str) -> String {
        format!("sqlite://{}", self.path(&format!("{name}.db")).display())
    }

    /// The output directory of the run called `name`.
    fn output(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}-out"))
    }

    /// mechanism-y arguments for the run called `name` on `landing`.
    fn y_args(&self, landing: &Path, name: &str, extra: &[&str]) -> Vec<String> {
        let mut args = strings(&[
            "--landing",
            s(landing),
            "--importance",
            s(&self.importance),
            "--output",
            s(&self.output(name)),
            "--state",
            &self.state(name),
        ]);
        args.extend(strings(&THRESHOLDS));
        args.extend(strings(extra));
        args
    }

    /// The committed epochs of the run called `name` (none when its store was never created).
    fn epochs(&self, name: &str) -> Vec<EpochRow> {
        if !self.path(&format!("{name}.db")).exists() {
            return Vec::new();
        }
        let mut store = txflow::sinks::state::open(&StateConfig::parse(&self.state(name)).unwrap())
            .unwrap_or_else(|e| panic!("opening the state of {name}: {e}"));
        store.epoch_rows().unwrap()
    }

    fn ledger(&self, name: &str) -> Vec<LedgerRow> {
        let mut store = txflow::sinks::state::open(&StateConfig::parse(&self.state(name)).unwrap())
            .unwrap_or_else(|e| panic!("opening the state of {name}: {e}"));
        store
            .ledger(txflow::sinks::state::LedgerId::Baseline)
            .unwrap()
    }

    /// Whether the run called `name` ended its stream (the `finished` mark of `run_meta`).
    fn ended(&self, name: &str) -> bool {
        let path = self.path(&format!("{name}.db"));
        if !path.exists() {
            return false;
        }
        let db = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row(
            "SELECT count(*) FROM run_meta WHERE key = 'finished'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
            > 0
    }

    /// Copies the bed's landing into a new directory `name` (only `chunks`, and `_COMPLETE`
    /// when `complete`), each file written to a temporary name and renamed.
    fn landing_copy(&self, name: &str, chunks: std::ops::Range<u64>, complete: bool) -> PathBuf {
        let dir = self.path(name);
        fs::create_dir_all(&dir).unwrap();
        for k in chunks {
            let bytes = fs::read(self.landing.join(chunk_name(k))).unwrap();
            put(&dir, &chunk_name(k), &bytes);
        }
        if complete {
            put(&dir, "_COMPLETE", CHUNKS.to_string().as_bytes());
        }
        dir
    }
}

/// Writes `dir/name` atomically (temporary name, then rename).
fn put(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".test-tmp-{name}"));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// The canonical chunk files of a landing directory, by name.
fn chunk_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let digits = name.strip_prefix("chunk-")?.strip_suffix(".csv")?;
            (digits.len() == 6).then(|| (name, fs::read(e.path()).unwrap()))
        })
        .collect()
}

/// The number before `words` in a summary line (`3000 rows accepted`).
fn summary_number(stdout: &str, words: &str) -> u64 {
    let at = stdout
        .find(words)
        .unwrap_or_else(|| panic!("no {words:?} in {stdout:?}"));
    stdout[..at]
        .split_whitespace()
        .last()
        .and_then(|n| n.trim_start_matches('(').parse().ok())
        .unwrap_or_else(|| panic!("no number before {words:?} in {stdout:?}"))
}

/// A child process whose stderr goes to a file that the test can watch while it runs; killed
/// if still running when dropped.
struct Running {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn spawn(bin: &str, args: &[String], rust_log: &str, logs: &Path) -> Running {
        fs::create_dir_all(logs).unwrap();
        let (stdout, stderr) = (logs.join("stdout"), logs.join("stderr"));
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        Running {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Polls stderr until `condition` holds; panics if the process exits first or after
    /// [`TIMEOUT`].
    fn wait_until(&mut self, what: &str, condition: impl Fn(&str) -> bool) {
        let held = poll(TIMEOUT, || {
            if condition(&self.stderr()) {
                return Some(());
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "exited ({status}) before {what}; stderr:\n{}",
                    self.stderr()
                );
            }
            None
        });
        assert!(
            held.is_some(),
            "no {what} within {TIMEOUT:?}; stderr:\n{}",
            self.stderr()
        );
    }

    fn sigterm(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
    }

    /// Waits for the exit (bounded): status, stdout, stderr.
    fn finish(mut self) -> (ExitStatus, String, String) {
        let status = poll(TIMEOUT, || self.child.try_wait().unwrap());
        let status = status.unwrap_or_else(|| {
            panic!(
                "still running after {TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            )
        });
        let stdout = fs::read_to_string(&self.stdout).unwrap_or_default();
        (status, stdout, self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The time of day of a log line (`2026-12-02T03:39:23.553436Z ...`), in seconds.
fn log_time(line: &str) -> f64 {
    let t = line.find('T').expect("a timestamped log line");
    let hms = &line[t + 1..];
    let end = hms.find('Z').expect("a UTC timestamp");
    let parts: Vec<f64> = hms[..end]
        .split(':')
        .map(|p| p.parse().expect("HH:MM:SS.ffffff"))
        .collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

// ------------------------------------------------------------------------------------------
// _COMPLETE
// ------------------------------------------------------------------------------------------

#[test]
fn complete_short_of_the_chunks_stops_live_y() {
    let bed = Bed::new();
    fs::write(bed.landing.join("_COMPLETE"), "5").unwrap();
    // Before: Y ended the stream after 5 chunks (exit 0), ignoring 25; each restart with a
    // chunk put back committed one more epoch and rewrote a published file.
    for attempt in 0..2 {
        let y = run(Y, &bed.y_args(&bed.landing, "live", &[]), "off");
        y.assert_one_line_error(&[
            "inconsistent landing",
            s(&bed.landing),
            "_COMPLETE says 5 chunks but chunk-000005.csv exists",
            "append-only",
        ]);
        let epochs = bed.epochs("live");
        assert!(
            epochs.iter().all(|e| e.epoch < 5),
            "attempt {attempt}: committed past chunk 4: {:?}",
            timeless_epochs(&epochs)
        );
        assert!(!bed.ended("live"), "attempt {attempt}: the stream ended");
        // No short file: a detection file is written short only when the stream ends.
        for (name, bytes) in named_tree(&bed.output("live")) {
            if name.starts_with("detections-") {
                let rows = bytes.iter().filter(|&&b| b == b'\n').count() - 1;
                assert_eq!(rows, 50, "attempt {attempt}: short file {name}");
            }
        }
    }
}

#[test]
fn complete_beyond_the_chunks_warns_while_waiting() {
    let bed = Bed::new();
    fs::write(bed.landing.join("_COMPLETE"), "40").unwrap();
    // Before: Y waited forever for chunk 30 without a word.
    let mut y = Running::spawn(
        Y,
        &bed.y_args(&bed.landing, "live", &["--gap-warn-secs", "1"]),
        "warn",
        &bed.path("logs"),
    );
    let warning = "waiting for chunk-000030.csv: _COMPLETE says 40 chunks";
    y.wait_until("two waiting warnings", |e| e.matches(warning).count() >= 2);
    let first = Instant::now();
    y.wait_until("a third waiting warning", |e| {
        e.matches(warning).count() >= 3
    });
    // Roughly every second, not in a burst.
    assert!(first.elapsed() >= Duration::from_millis(500));
    y.sigterm();
    let (status, stdout, stderr) = y.finish();
    assert!(status.success(), "SIGTERM exits 0: {status}\n{stderr}");
    assert!(stdout.contains("30 epochs committed"), "{stdout}");
    assert!(stdout.contains("stream not ended"), "{stdout}");
    assert_eq!(bed.epochs("live").len() as u64, CHUNKS);
    assert!(!bed.ended("live"));
}

#[test]
fn complete_that_is_not_a_count_is_refused() {
    let bed = Bed::new();
    fs::write(bed.landing.join("_COMPLETE"), "thirty\n").unwrap();
    let live = run(
        Y,
        &bed.y_args(&bed.landing, "live", &["--settle-ms", "200"]),
        "off",
    );
    live.assert_one_line_error(&["inconsistent landing", "thirty", "not a chunk count"]);
    assert_eq!(bed.epochs("live"), Vec::new(), "live committed epochs");
    assert!(!bed.ended("live"));
    let replay = run(Y, &bed.y_args(&bed.landing, "replay", &["--replay"]), "off");
    replay.assert_one_line_error(&["inconsistent landing", "thirty", "not a chunk count"]);
    assert_eq!(bed.epochs("replay"), Vec::new(), "replay committed epochs");
}

// ------------------------------------------------------------------------------------------
// Chunk names
// ------------------------------------------------------------------------------------------

/// Names that are not chunks, with the bytes of a real chunk (which would change the
/// results if they were taken).
const STRAYS: [(&str, u64); 5] = [
    ("chunk-0000003.csv", 7),
    ("chunk-18446744073709551615.csv", 0),
    ("chunk-1000000000000.csv", 1),
    ("chunk-42.csv", 2),
    ("chunk-0000030.csv", 5),
];

fn add_strays(bed: &Bed, dir: &Path) {
    for (name, copy_of) in STRAYS {
        let bytes = fs::read(bed.landing.join(chunk_name(copy_of))).unwrap();
        put(dir, name, &bytes);
    }
}

/// One warning per stray name.
fn assert_warned_once_each(stderr: &str) {
    for (name, _) in STRAYS {
        let warning = format!("ignoring \"{name}\": not a chunk");
        assert_eq!(
            stderr.matches(&warning).count(),
            1,
            "one warning for {name}:\n{stderr}"
        );
    }
}

#[test]
fn stray_chunk_names_are_ignored_by_replay_and_live_y() {
    let bed = Bed::new();
    let clean = run(Y, &bed.y_args(&bed.landing, "clean", &["--replay"]), "warn");
    assert!(clean.status.success(), "{}", clean.describe());
    assert!(!clean.stderr.contains("ignoring"), "{}", clean.describe());

    add_strays(&bed, &bed.landing);
    // Before: replay panicked ("assertion failed: self.handle.time().less_equal(&time)").
    let stray = run(Y, &bed.y_args(&bed.landing, "stray", &["--replay"]), "warn");
    assert!(stray.status.success(), "{}", stray.describe());
    assert_warned_once_each(&stray.stderr);
    assert_eq!(
        timeless_epochs(&bed.epochs("stray")),
        timeless_epochs(&bed.epochs("clean"))
    );
    // Replay times come from the chunks' mtimes: everything is identical.
    assert_eq!(bed.ledger("stray"), bed.ledger("clean"));
    assert!(
        named_tree(&bed.output("stray")) == named_tree(&bed.output("clean")),
        "replay outputs differ"
    );
    assert_eq!(
        summary_number(&stray.stdout, "epochs committed"),
        CHUNKS,
        "{}",
        stray.stdout
    );

    let live = run(Y, &bed.y_args(&bed.landing, "live", &["-w", "2"]), "warn");
    assert!(live.status.success(), "{}", live.describe());
    assert_warned_once_each(&live.stderr);
    assert_eq!(
        timeless_epochs(&bed.epochs("live")),
        timeless_epochs(&bed.epochs("clean"))
    );
    assert_eq!(
        timeless_ledger(&bed.ledger("live")),
        timeless_ledger(&bed.ledger("clean"))
    );
    assert!(bed.ended("live"));
}

#[test]
fn x_resumes_past_stray_chunk_names() {
    let bed = Bed::new();
    let landing = bed.path("resumed");
    let first = bed.x(&landing, &["--max-chunks", "10"], "off");
    assert!(first.status.success(), "{}", first.describe());
    add_strays(&bed, &landing);
    // Before: "landing store ... has a gap: chunk chunk-000004.csv is missing but
    // chunk-000003.csv exists".
    let resumed = bed.x(&landing, &[], "warn");
    assert!(resumed.status.success(), "{}", resumed.describe());
    assert!(
        resumed.stdout.contains("20 written now, 10 already there"),
        "{}",
        resumed.describe()
    );
    assert_warned_once_each(&resumed.stderr);
    assert!(
        chunk_files(&landing) == chunk_files(&bed.landing),
        "the resumed landing differs from an undisturbed X's"
    );
    assert_eq!(
        fs::read_to_string(landing.join("_COMPLETE")).unwrap(),
        CHUNKS.to_string()
    );
}

// ------------------------------------------------------------------------------------------
// Replay ranges
// ------------------------------------------------------------------------------------------

#[test]
fn replay_with_a_missing_chunk_is_refused() {
    let bed = Bed::new();
    fs::remove_file(bed.landing.join(chunk_name(3))).unwrap();
    // Before: the replay skipped chunk 3 silently.
    for (name, range, missing) in [
        ("all", &[][..], 3),
        ("gap", &["--from", "1", "--to", "5"][..], 3),
        ("to-past", &["--from", "4", "--to", "40"][..], 30),
        ("from-past", &["--from", "35"][..], 35),
    ] {
        let mut extra = vec!["--replay"];
        extra.extend(range);
        let y = run(Y, &bed.y_args(&bed.landing, name, &extra), "off");
        y.assert_one_line_error(&[&chunk_name(missing), "missing"]);
        assert_eq!(bed.epochs(name), Vec::new(), "{name}: committed epochs");
    }
    // A range without the gap is fine.
    let ok = run(
        Y,
        &bed.y_args(
            &bed.landing,
            "ok",
            &["--replay", "--from", "4", "--to", "29"],
        ),
        "off",
    );
    assert!(ok.status.success(), "{}", ok.describe());
    assert_eq!(bed.epochs("ok").len(), 26);
}

#[test]
fn replay_with_complete_beyond_the_chunks_is_refused() {
    let bed = Bed::new();
    fs::write(bed.landing.join("_COMPLETE"), "35").unwrap();
    // Before: the replay took the 30 chunks present, ended the stream and exited 0.
    for (name, range) in [("all", &[][..]), ("from", &["--from", "10"][..])] {
        let mut extra = vec!["--replay"];
        extra.extend(range);
        let y = run(Y, &bed.y_args(&bed.landing, name, &extra), "off");
        y.assert_one_line_error(&[&chunk_name(30), "missing", "_COMPLETE says 35 chunks"]);
        assert_eq!(bed.epochs(name), Vec::new(), "{name}: committed epochs");
    }
    // An explicit range of chunks that are all there is whole.
    let extra = ["--replay", "--from", "20", "--to", "29"];
    let ok = run(Y, &bed.y_args(&bed.landing, "to", &extra), "off");
    assert!(ok.status.success(), "{}", ok.describe());
    assert_eq!(bed.epochs("to").len(), 10);
}

// ------------------------------------------------------------------------------------------
// Whole chunks
// ------------------------------------------------------------------------------------------

#[test]
fn chunk_written_in_place_is_taken_whole() {
    let bed = Bed::new();
    let landing = bed.landing_copy("in-place", 0..5, false);
    let mut y = Running::spawn(
        Y,
        &bed.y_args(&landing, "live", &["--settle-ms", "4000"]),
        "info",
        &bed.path("logs"),
    );
    y.wait_until("chunk 4 committed", |e| {
        e.lines()
            .any(|l| l.contains("epoch committed") && l.contains(&chunk_name(4)))
    });
    // Chunk 5 written in place: first up to the middle of a line, no terminator at the end.
    let bytes = fs::read(bed.landing.join(chunk_name(5))).unwrap();
    let middle = bytes.len() / 2;
    let line_end = middle + bytes[middle..].iter().position(|&b| b == b'\n').unwrap();
    let cut = line_end - 3;
    assert_ne!(bytes[cut - 1], b'\n');
    let path = landing.join(chunk_name(5));
    let mut file = fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut file, &bytes[..cut]).unwrap();
    std::io::Write::flush(&mut file).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !y.stderr().contains(&chunk_name(5)),
        "half of chunk 5 was taken:\n{}",
        y.stderr()
    );
    std::io::Write::write_all(&mut file, &bytes[cut..]).unwrap();
    drop(file);
    for k in 6..CHUNKS {
        let bytes = fs::read(bed.landing.join(chunk_name(k))).unwrap();
        put(&landing, &chunk_name(k), &bytes);
    }
    put(&landing, "_COMPLETE", CHUNKS.to_string().as_bytes());
    let (status, stdout, stderr) = y.finish();
    assert!(status.success(), "{status}\n{stderr}");

    // No row lost: Y saw every record of the source.
    let source = fs::read(&bed.source).unwrap();
    let records = source.iter().filter(|&&b| b == b'\n').count() as u64 - 1;
    assert_eq!(records, ROWS);
    let seen = summary_number(&stdout, "rows accepted") + summary_number(&stdout, "rejected");
    assert_eq!(seen, records, "{stdout}");
    let epochs = bed.epochs("live");
    let epoch5 = epochs.iter().find(|e| e.epoch == 5).expect("epoch 5");
    assert_eq!(epoch5.rows_accepted + epoch5.rows_rejected, CHUNK_ROWS);
    assert_eq!(epochs.len() as u64, CHUNKS);
}

#[test]
fn chunk_changed_after_it_was_taken_stops_y() {
    let bed = Bed::new();
    let landing = bed.landing_copy("changed", 0..5, false);
    let mut y = Running::spawn(
        Y,
        &bed.y_args(&landing, "live", &["--settle-ms", "300"]),
        "info",
        &bed.path("logs"),
    );
    y.wait_until("chunk 4 committed", |e| {
        e.lines()
            .any(|l| l.contains("epoch committed") && l.contains(&chunk_name(4)))
    });
    // Chunk 5 written in place, pausing mid-line longer than the settle time: taken
    // truncated. Then the rest, and every later chunk with _COMPLETE.
    let bytes = fs::read(bed.landing.join(chunk_name(5))).unwrap();
    let cut = bytes.len() / 2;
    assert_ne!(bytes[cut - 1], b'\n');
    let path = landing.join(chunk_name(5));
    let mut file = fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut file, &bytes[..cut]).unwrap();
    y.wait_until("the half chunk taken", |e| {
        e.contains("chunk-000005.csv does not end with a line terminator")
    });
    std::thread::sleep(Duration::from_millis(200));
    std::io::Write::write_all(&mut file, &bytes[cut..]).unwrap();
    drop(file);
    for k in 6..CHUNKS {
        let bytes = fs::read(bed.landing.join(chunk_name(k))).unwrap();
        put(&landing, &chunk_name(k), &bytes);
    }
    put(&landing, "_COMPLETE", CHUNKS.to_string().as_bytes());
    // Before: Y committed the truncated chunk 5 and every later one, and exited 0.
    let (status, _, stderr) = y.finish();
    assert!(!status.success(), "Y must stop: {status}\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ")
            && last.contains("chunk-000005.csv changed after it was taken")
            && last.contains("append-only"),
        "{stderr}"
    );
    let committed = bed.epochs("live");
    assert!(
        committed.iter().all(|e| e.epoch <= 5),
        "committed past the changed chunk: {:?}",
        committed.iter().map(|e| e.epoch).collect::<Vec<_>>()
    );
    assert!(!bed.ended("live"));
}

// ------------------------------------------------------------------------------------------
// A missing landing directory
// ------------------------------------------------------------------------------------------

#[test]
fn live_y_on_a_missing_landing_directory_warns() {
    let bed = Bed::new();
    let landing = bed.path("no-such-landing");
    // Before: live Y waited forever in silence.
    let mut y = Running::spawn(
        Y,
        &bed.y_args(&landing, "live", &["--gap-warn-secs", "10"]),
        "info",
        &bed.path("logs"),
    );
    let warning = format!("landing directory {} does not exist", landing.display());
    y.wait_until("two warnings", |e| e.matches(&warning).count() >= 2);
    let stderr = y.stderr();
    // At once: the first warning comes before a first period has passed since the start-up
    // (the importance file is read just before the feed starts).
    let start = stderr
        .lines()
        .find(|l| l.contains("importance weights loaded"))
        .map(log_time)
        .expect("the start-up line");
    let warnings: Vec<f64> = stderr
        .lines()
        .filter(|l| l.contains(&warning))
        .map(log_time)
        .collect();
    assert!(
        warnings[0] - start < 7.0,
        "the first warning came {} s after start-up:\n{stderr}",
        warnings[0] - start
    );
    assert!(
        warnings[1] - warnings[0] >= 9.0,
        "warned again after {} s, not every 10 s:\n{stderr}",
        warnings[1] - warnings[0]
    );
    // The directory appears: Y goes on.
    let x = bed.x(&landing, &[], "off");
    assert!(x.status.success(), "{}", x.describe());
    let (status, stdout, stderr) = y.finish();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stdout.contains("30 epochs committed"), "{stdout}");
}
