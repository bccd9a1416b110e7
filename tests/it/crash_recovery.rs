//! End-to-end exactly-once with the real binaries (SPEC §6). Every run is compared with one
//! uninterrupted live run on PostgreSQL (the baseline; the state tables without their times,
//! detection files without their two time columns, rejects files byte for byte), and the
//! baseline itself with the independent reference implementation (`common::reference`).
//!
//! - `kill9_*`: `mechanism-y` killed with SIGKILL at seeded random times within the
//!   baseline's duration (six PostgreSQL trials of 1–3 kills, one SQLite trial), and aimed at
//!   the commit and file-writing windows; restarted until it exits 0. After every kill the
//!   store must hold a committed prefix of the baseline (whole epochs, their ledger rows,
//!   exactly their counters).
//! - `detection_file_missing_after_commit_*`: the process dies between an epoch's commit and
//!   its detection file; the restart writes the file.
//! - `postgres_restart_*`: PostgreSQL stopped for ~1.5 s under a live run (Y reconnects and
//!   finishes), and for longer than `--pg-reconnect-timeout 2` (Y exits with a one-line
//!   "unreachable" error; a restart finishes).
//! - `postgres_frozen_*`: PostgreSQL frozen (SIGSTOP): Y warns within
//!   `--pg-statement-timeout`, resumes when thawed, gives up with the "unreachable" line when
//!   not.
//! - `backtest_*`: `--replay` on SQLite and PostgreSQL, identical times included.
//! - `second_writer_*`: a second process on the same store is refused; the first finishes.
//! - `sigterm_*`: SIGTERM exits 0 promptly; a restart finishes.
//!
//! Data: `txgen` rows (seed 7) plus one bad row every 1,900 records and one at the end, so
//! every chunk has a rejects file; X cuts 2,000-record chunks (25 chunks); thresholds are
//! scaled down so all three patterns fire (about 180 detections, four detection files).
//!
//! Kill points are classified from what the killed process left behind (see [`KillPoint`]);
//! `cargo test --test it --features test-services crash_recovery:: -- --nocapture` prints
//! them. `TXFLOW_CRASH_SEED` overrides the seed of the kill points.

// Killing and reaping child processes needs libc calls.
#![allow(unsafe_code)]

use crate::common;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use common::outputs::files_under;
use common::pg::{fresh_database_url, PgServer};
use common::process::dir_removed_at_exit;
use common::reference;
use common::streams::SplitMix64;
use common::wait::poll;
use txflow::error::StateError;
use txflow::mechanism_x::{self, XOptions};
use txflow::model::Thresholds;
use txflow::sinks::state::postgres::{PgOptions, LOCK_KEY};
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{self, EpochRow, LedgerRow};
use txgen::GenOptions;

const ROWS: u64 = 48_000;
const SEED: u64 = 7;
const CHUNK_ROWS: usize = 2_000;
/// A bad record is inserted after every this many good ones (and one at the very end).
const BAD_EVERY: usize = 1_900;
/// Scaled-down thresholds: all three patterns fire on 48,000 rows.
const THRESHOLDS: [&str; 6] = [
    "--upgrade-min-merchant-txns",
    "2000",
    "--dei-min-female-customers",
    "5",
    "--child-min-txns",
    "20",
];
/// Bound on any single `mechanism-y` run that must finish (debug build, loaded machine).
const RUN_LIMIT: Duration = Duration::from_secs(180);
const DEFAULT_CRASH_SEED: u64 = 0x7478_2026_1125;

fn thresholds() -> Thresholds {
    Thresholds {
        upgrade_min_merchant_txns: 2000,
        dei_min_female_customers: 5,
        child_min_txns: 20,
        ..Thresholds::default()
    }
}

// ---------------------------------------------------------------------------------------
// The shared fixture: data, a complete landing directory, and the baseline run.
// ---------------------------------------------------------------------------------------

struct Fixture {
    root: PathBuf,
    source: PathBuf,
    importance: PathBuf,
    /// Complete landing directory (X at full speed).
    landing: PathBuf,
    chunks: u64,
    /// `N(m)` after each epoch, counted from the chunks.
    counts_after: Vec<BTreeMap<String, i64>>,
    /// The uninterrupted live run on PostgreSQL.
    baseline: Snapshot,
    baseline_wall: Duration,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let started = Instant::now();
    let root = dir_removed_at_exit("crash");

    let data = root.join("data");
    txgen::generate(&data, &GenOptions::new(ROWS, SEED)).expect("txgen");
    let source = data.join("transactions.csv");
    let importance = data.join("CustomerImportance.csv");
    inject_bad_rows(&source);

    let landing = root.join("landing");
    let x = mechanism_x::run(&XOptions {
        chunk_rows: CHUNK_ROWS,
        interval: Duration::ZERO,
        ..XOptions::new(&source, landing.to_str().unwrap())
    })
    .expect("mechanism X");
    assert!(x.complete);
    let chunks = x.chunks_total;

    // The baseline: one uninterrupted live run on PostgreSQL, alone on the machine (its
    // duration scales the random kill times). `baseline_agrees_with_the_independent_reference`
    // checks it against the reference implementation.
    let url = fresh_database_url("baseline");
    let out = root.join("baseline-out");
    let t0 = Instant::now();
    let mut y = Proc::spawn(
        "baseline",
        y_command(&landing, &importance, &out, &url, &[]),
        &root.join("logs"),
    );
    y.expect_success(RUN_LIMIT);
    let baseline_wall = t0.elapsed();
    let baseline = Snapshot::take(&url, &out);
    baseline.check_consistent("baseline");
    let patterns: std::collections::BTreeSet<&str> =
        baseline.ledger.iter().map(|r| r.pattern.id()).collect();
    assert_eq!(patterns.len(), 3, "every pattern must fire: {patterns:?}");
    assert!(baseline.ledger.len() > 100, "want several detection files");

    // N(m) after each epoch, counted directly from the chunks: every record but the injected
    // bad ones is accepted.
    let mut counts_after = Vec::new();
    let mut running = BTreeMap::<String, i64>::new();
    for k in 0..chunks {
        let text = fs::read_to_string(landing.join(chunk_name(k))).unwrap();
        let mut bad = 0;
        for line in text.lines().skip(1) {
            if BAD_ROWS.contains(&line) {
                bad += 1;
                continue;
            }
            let merchant = line.split(',').nth(5).unwrap().trim_matches('\'');
            *running.entry(merchant.to_string()).or_default() += 1;
        }
        assert!(
            bad > 0,
            "chunk {k} has no bad row: the commit-window classification needs one per chunk"
        );
        counts_after.push(running.clone());
    }
    eprintln!(
        "[fixture] {chunks} chunks, {} detections; baseline run {baseline_wall:.2?}, fixture {:.1?}",
        baseline.ledger.len(),
        started.elapsed()
    );
    Fixture {
        root,
        source,
        importance,
        landing,
        chunks,
        counts_after,
        baseline,
        baseline_wall,
    }
}

/// The baseline every other test compares with is right: its ledger, counters, progress rows
/// and rejects files agree with the independent reference implementation.
#[test]
fn baseline_agrees_with_the_independent_reference() {
    let fx = fixture();
    let chunks: Vec<(u64, Vec<u8>)> = (0..fx.chunks)
        .map(|k| (k, fs::read(fx.landing.join(chunk_name(k))).unwrap()))
        .collect();
    let t0 = Instant::now();
    let expected = reference::expected(&chunks, &fs::read(&fx.importance).unwrap(), &thresholds());
    let baseline = &fx.baseline;
    let ledger: Vec<(u64, String, String, String)> =
        common::reference::ledger_identities(&baseline.ledger);
    let ties = expected
        .check_ledger(&ledger)
        .unwrap_or_else(|e| panic!("the baseline run's ledger disagrees with the reference:\n{e}"));
    let counts: BTreeMap<String, i64> = baseline.counts.iter().cloned().collect();
    assert_eq!(
        counts, expected.counts,
        "baseline merchant counts vs reference"
    );
    let epochs: Vec<(u64, u64, u64)> = baseline
        .epochs
        .iter()
        .map(|e| (e.epoch, e.rows_accepted, e.rows_rejected))
        .collect();
    assert_eq!(
        epochs, expected.epochs,
        "baseline progress rows vs reference"
    );
    for (k, outcome) in &expected.chunks {
        let text =
            String::from_utf8(baseline.files[&format!("rejects/{}", chunk_name(*k))].clone())
                .unwrap();
        let lines: Vec<u64> = text
            .lines()
            .skip(1)
            .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(lines, outcome.rejected_lines, "rejected lines of chunk {k}");
    }
    eprintln!(
        "[reference] {} detections agree ({ties:?}), {} rejected rows; reference took {:.1?}",
        ledger.len(),
        expected.total_rejected(),
        t0.elapsed()
    );
}

fn chunk_name(k: u64) -> String {
    format!("chunk-{k:06}.csv")
}

/// The injected bad records: bad amount, negative amount, wrong field count, exponent, empty
/// merchant.
const BAD_ROWS: [&str; 5] = [
    "12,'C1000000001','2','F','28007','M348934600','28007','es_transportation',abc,0",
    "12,'C1000000001','2','F','28007','M348934600','28007','es_transportation',-4.55,0",
    "12,'C1000000001','2','F','28007','M348934600'",
    "12,'C1000000001','2','F','28007','M348934600','28007','es_transportation',1e3,0",
    "12,'C1000000001','2','F','28007','','28007','es_transportation',4.55,0",
];

/// Rewrites `transactions.csv` with a bad record after every `BAD_EVERY` good ones and one at
/// the end.
fn inject_bad_rows(source: &Path) {
    let text = fs::read_to_string(source).unwrap();
    let mut lines = text.lines();
    let mut out = String::with_capacity(text.len() + 4096);
    out.push_str(lines.next().unwrap());
    out.push('\n');
    let bad = BAD_ROWS;
    let mut n = 0;
    for (i, line) in lines.enumerate() {
        out.push_str(line);
        out.push('\n');
        if (i + 1) % BAD_EVERY == 0 {
            out.push_str(bad[n % bad.len()]);
            out.push('\n');
            n += 1;
        }
    }
    out.push_str(bad[n % bad.len()]);
    out.push('\n');
    fs::write(source, out).unwrap();
}

/// A fresh directory for one test.
fn test_dir(name: &str) -> PathBuf {
    let dir = fixture().root.join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

// ---------------------------------------------------------------------------------------
// Child processes.
// ---------------------------------------------------------------------------------------

/// A child process that is killed (SIGKILL) if still running when dropped.
struct Proc {
    name: String,
    child: Child,
    stderr: PathBuf,
    spawned_at: SystemTime,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, logs: &Path) -> Proc {
        fs::create_dir_all(logs).unwrap();
        let stderr = logs.join(format!("{name}.stderr"));
        let stdout = logs.join(format!("{name}.stdout"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap());
        let spawned_at = SystemTime::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            stderr,
            spawned_at,
        }
    }

    /// Polls `happened` every `poll_ms` while the process runs: `None` once it happened (the
    /// process still running), its exit status if it ended first; fails after [`RUN_LIMIT`].
    fn run_until(
        &mut self,
        what: &str,
        poll_ms: u64,
        happened: impl Fn() -> bool,
    ) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if happened() {
                return None;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            assert!(started.elapsed() < RUN_LIMIT, "{what}: never seen");
            std::thread::sleep(Duration::from_millis(poll_ms));
        }
    }

    /// Waits up to `limit`; `None` if still running.
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        poll(limit, || self.child.try_wait().expect("try_wait"))
    }

    fn expect_exit(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_for(limit) {
            Some(status) => status,
            None => panic!(
                "{} still running after {limit:?}; stderr tail:\n{}",
                self.name,
                self.tail()
            ),
        }
    }

    fn expect_success(&mut self, limit: Duration) {
        let status = self.expect_exit(limit);
        assert!(
            status.success(),
            "{} failed ({status}); stderr tail:\n{}",
            self.name,
            self.tail()
        );
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The last non-blank stderr line: where a failing run's one-line error must be.
    fn last_line(&self) -> String {
        let text = self.stderr_text();
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_owned()
    }

    fn tail(&self) -> String {
        let text = self.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Polls `condition` until it holds; fails if the process exits first or `limit` passes.
    fn wait_until(&mut self, limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
        let held = poll(limit, || {
            if condition() {
                return Some(());
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "{} exited ({status}) before {what}; stderr tail:\n{}",
                    self.name,
                    self.tail()
                );
            }
            None
        });
        assert!(held.is_some(), "no {what} after {limit:?}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn y_command(
    landing: &Path,
    importance: &Path,
    output: &Path,
    state: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mechanism-y"));
    cmd.arg("--landing")
        .arg(landing)
        .arg("--importance")
        .arg(importance)
        .arg("--output")
        .arg(output)
        .arg("--state")
        .arg(state)
        .args(THRESHOLDS)
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    cmd
}

/// `mechanism-y` on the fixture's data.
fn y(landing: &Path, output: &Path, state: &str, extra: &[&str]) -> Command {
    y_command(landing, &fixture().importance, output, state, extra)
}

/// `mechanism-x` writing the fixture's source into `landing`, one chunk per `interval_ms`
/// (resuming after the chunks already there).
fn spawn_x(name: &str, landing: &Path, interval_ms: u64, extra: &[&str], logs: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mechanism-x"));
    cmd.arg("--source")
        .arg(&fixture().source)
        .arg("--landing")
        .arg(landing)
        .args(["--chunk-rows", &CHUNK_ROWS.to_string()])
        .args(["--interval-ms", &interval_ms.to_string()])
        .args(extra)
        .env("NO_COLOR", "1");
    Proc::spawn(name, cmd, logs)
}

// ---------------------------------------------------------------------------------------
// What a run left behind.
// ---------------------------------------------------------------------------------------

fn read_options() -> PgOptions {
    PgOptions {
        reconnect_timeout: Duration::from_secs(10),
        ..PgOptions::default()
    }
}

/// Committed epochs, 0 while the store is not readable yet (not created, not migrated).
fn committed_epochs(url: &str) -> usize {
    let options = PgOptions {
        reconnect_timeout: Duration::from_secs(1),
        ..PgOptions::default()
    };
    state::open(&StateConfig::parse(url).unwrap().with_pg_options(options))
        .and_then(|mut s| s.epoch_rows())
        .map_or(0, |rows| rows.len())
}

/// The state tables and every file of the output location.
#[derive(Clone, Debug)]
struct Snapshot {
    ledger: Vec<LedgerRow>,
    counts: Vec<(String, i64)>,
    epochs: Vec<EpochRow>,
    /// Relative path → bytes, temporary files excluded.
    files: BTreeMap<String, Vec<u8>>,
    /// Left-over temporary files (`.tmp-*`) of interrupted writes.
    temp_files: Vec<String>,
}

impl Snapshot {
    fn take(url: &str, output: &Path) -> Snapshot {
        let mut store = state::open(
            &StateConfig::parse(url)
                .unwrap()
                .with_pg_options(read_options()),
        )
        .unwrap_or_else(|e| panic!("opening {url} to read it: {e}"));
        let (files, temp_files) = collect_files(output);
        Snapshot {
            ledger: store
                .ledger(txflow::sinks::state::LedgerId::Baseline)
                .expect("read ledger"),
            counts: store.merchant_counts().expect("read counts"),
            epochs: store.epoch_rows().expect("read epochs"),
            files,
            temp_files,
        }
    }

    /// The comparable text of every part, with or without the run's times.
    fn view(&self, times: bool) -> BTreeMap<String, Vec<String>> {
        let mut parts = BTreeMap::new();
        parts.insert(
            "detections table".to_string(),
            self.ledger
                .iter()
                .map(|r| {
                    let mut s = format!(
                        "seq={} epoch={} {} {} customer={:?} merchant={} file_seq={:?}",
                        r.seq,
                        r.epoch,
                        r.pattern.id(),
                        r.pattern.action(),
                        r.customer_name,
                        r.merchant_id,
                        r.file_seq
                    );
                    if times {
                        s += &format!(" y_start={} detected={}", r.y_start_time, r.detection_time);
                    }
                    s
                })
                .collect(),
        );
        parts.insert(
            "merchant_transaction_counts table".to_string(),
            self.counts
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect(),
        );
        parts.insert(
            "epochs table".to_string(),
            self.epochs
                .iter()
                .map(|e| {
                    let mut s = format!(
                        "{} {} {} {}",
                        e.epoch, e.chunk_key, e.rows_accepted, e.rows_rejected
                    );
                    if times {
                        s += &format!(" {}", e.committed_at);
                    }
                    s
                })
                .collect(),
        );
        parts.insert(
            "output file names".to_string(),
            self.files.keys().cloned().collect(),
        );
        for (name, bytes) in &self.files {
            let text = String::from_utf8_lossy(bytes);
            let lines = if name.starts_with("detections-") && !times {
                text.lines()
                    .map(|l| l.splitn(3, ',').nth(2).unwrap_or("").to_string())
                    .collect()
            } else {
                // Byte-identical: keep the exact bytes (line ends included).
                text.split_inclusive('\n').map(str::to_string).collect()
            };
            parts.insert(format!("file {name}"), lines);
        }
        parts
    }

    /// The files are exactly the ledger, 50 rows a file, every row written.
    fn check_consistent(&self, what: &str) {
        let n = self.ledger.len();
        let detection_files: Vec<&String> = self
            .files
            .keys()
            .filter(|k| k.starts_with("detections-"))
            .collect();
        assert_eq!(
            detection_files.len(),
            n.div_ceil(50),
            "{what}: detection files"
        );
        for (i, name) in detection_files.iter().enumerate() {
            assert_eq!(**name, format!("detections-{i:06}.csv"), "{what}");
            let text = String::from_utf8(self.files[*name].clone()).unwrap();
            let mut lines = text.lines();
            assert_eq!(
                lines.next(),
                Some("YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId"),
                "{what}: {name} header"
            );
            let want: Vec<String> = self.ledger[i * 50..((i + 1) * 50).min(n)]
                .iter()
                .map(|r| {
                    assert_eq!(
                        r.file_seq,
                        Some(i as u64),
                        "{what}: file_seq of seq {}",
                        r.seq
                    );
                    format!(
                        "{},{},{},{},{},{}",
                        r.y_start_time,
                        r.detection_time,
                        r.pattern.id(),
                        r.pattern.action(),
                        r.customer_name,
                        r.merchant_id
                    )
                })
                .collect();
            let got: Vec<&str> = lines.collect();
            assert_eq!(got, want, "{what}: {name} vs the ledger");
        }
    }
}

/// The files under `output` (relative path → bytes) and its temporaries (relative paths).
fn collect_files(output: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
    let mut files = BTreeMap::new();
    let mut temp_files = Vec::new();
    for path in files_under(output) {
        let rel = path.strip_prefix(output).unwrap();
        // Checkpoints are the run's working state, not its output.
        let dirs = rel.parent().map(Path::components).into_iter().flatten();
        if dirs.map(|c| c.as_os_str()).any(|d| d == "_checkpoints") {
            continue;
        }
        let name = rel.to_string_lossy().into_owned();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        {
            temp_files.push(name);
        } else {
            files.insert(name, fs::read(&path).unwrap());
        }
    }
    (files, temp_files)
}

/// Fails with the first difference between `got` and `want`.
fn assert_same(got: &Snapshot, want: &Snapshot, times: bool, what: &str) {
    let (g, w) = (got.view(times), want.view(times));
    for key in w.keys().chain(g.keys()) {
        let (gl, wl) = (
            g.get(key).map(Vec::as_slice).unwrap_or(&[]),
            w.get(key).map(Vec::as_slice).unwrap_or(&[]),
        );
        if gl == wl {
            continue;
        }
        let i = gl.iter().zip(wl).take_while(|(a, b)| a == b).count();
        panic!(
            "{what}: {key} differs from the uninterrupted run at line {i} ({} vs {} lines):\n  \
             got:  {:?}\n  want: {:?}",
            gl.len(),
            wl.len(),
            gl.get(i),
            wl.get(i)
        );
    }
    got.check_consistent(what);
}

/// What a store interrupted at an arbitrary point holds must be a committed prefix of the
/// uninterrupted run: whole epochs, their ledger rows, and the counters of exactly those
/// epochs (from the reference parser). Returns the number of committed epochs.
fn check_prefix(url: &str, what: &str) -> usize {
    let fx = fixture();
    let mut store = state::open(
        &StateConfig::parse(url)
            .unwrap()
            .with_pg_options(read_options()),
    )
    .unwrap();
    // A kill before the first start's migrations committed leaves a store with no schema:
    // nothing committed. Any other schema version is an error (never half migrated).
    let epochs = match store.epoch_rows() {
        Err(StateError::Schema { found: None, .. }) => return 0,
        other => other.unwrap(),
    };
    let n = epochs.len();
    for (got, want) in epochs.iter().zip(&fx.baseline.epochs) {
        assert_eq!(
            (
                got.epoch,
                &got.chunk_key,
                got.rows_accepted,
                got.rows_rejected
            ),
            (
                want.epoch,
                &want.chunk_key,
                want.rows_accepted,
                want.rows_rejected
            ),
            "{what}: progress rows are not a prefix of the uninterrupted run's"
        );
    }
    let ledger = store
        .ledger(txflow::sinks::state::LedgerId::Baseline)
        .unwrap();
    let want: Vec<&LedgerRow> = fx
        .baseline
        .ledger
        .iter()
        .filter(|r| r.epoch < n as u64)
        .collect();
    assert_eq!(
        ledger.len(),
        want.len(),
        "{what}: ledger rows after {n} epochs"
    );
    for (got, want) in ledger.iter().zip(want) {
        let key = |r: &LedgerRow| {
            (
                r.seq,
                r.epoch,
                r.pattern.id().to_string(),
                r.customer_name.clone(),
                r.merchant_id.clone(),
            )
        };
        assert_eq!(key(got), key(want), "{what}: ledger row");
        assert!(
            got.file_seq.is_none() || got.file_seq == want.file_seq,
            "{what}: file_seq of seq {}",
            got.seq
        );
    }
    let counts: BTreeMap<String, i64> = store.merchant_counts().unwrap().into_iter().collect();
    let want = if n == 0 {
        BTreeMap::new()
    } else {
        fx.counts_after[n - 1].clone()
    };
    assert_eq!(counts, want, "{what}: merchant counts after {n} epochs");
    n
}

// ---------------------------------------------------------------------------------------
// 1. kill -9 at seeded random points.
// ---------------------------------------------------------------------------------------

/// Where a SIGKILL landed, judged from what the process left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    /// The process committed nothing: starting up or replaying committed epochs.
    StartupOrRecovery,
    /// Between commits: computing (or waiting for) the next epoch.
    BetweenEpochs,
    /// The next epoch's rejects file was (being) written by this process but the epoch is not
    /// committed: inside `commit` (writing the rejects file, or before or during the
    /// state-store transaction).
    InCommit,
    /// The epoch committed but a due detection file was not written or not yet marked.
    AfterCommitBeforeFile,
    /// Every epoch committed: ending the stream.
    Ending,
    /// The process finished before the kill time.
    NotKilled,
}

fn classify(
    url: &str,
    output: &Path,
    before: usize,
    n: usize,
    pid: u32,
    spawned_at: SystemTime,
) -> KillPoint {
    let fx = fixture();
    let mut store = state::open(
        &StateConfig::parse(url)
            .unwrap()
            .with_pg_options(read_options()),
    )
    .unwrap();
    let ledger = match store.ledger(txflow::sinks::state::LedgerId::Baseline) {
        // Killed before the first start's migrations committed.
        Err(StateError::Schema { found: None, .. }) => return KillPoint::StartupOrRecovery,
        other => other.unwrap(),
    };
    if let Some(first) = ledger.iter().find(|r| r.file_seq.is_none()) {
        let file_start = first.seq / 50 * 50;
        if ledger.len() as u64 - file_start >= 50 {
            return KillPoint::AfterCommitBeforeFile;
        }
    }
    if n as u64 == fx.chunks {
        return KillPoint::Ending;
    }
    let rejects = output.join("rejects").join(chunk_name(n as u64));
    if fresh(&rejects, spawned_at) || being_written(&rejects, pid) {
        KillPoint::InCommit
    } else if n == before {
        KillPoint::StartupOrRecovery
    } else {
        KillPoint::BetweenEpochs
    }
}

fn crash_seed() -> u64 {
    std::env::var("TXFLOW_CRASH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_CRASH_SEED)
}

/// How a kill time is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// A random delay within the uninterrupted run's duration.
    Timed,
    /// A random delay within the first 30 % of it (many kills before the stream ends).
    Early,
    /// As soon as this process writes a checkpoint file (a shard, a manifest, or the
    /// temporary file of one): a checkpoint half written.
    CheckpointWindow,
    /// As soon as this process recorded a new checkpoint: the next start restores it.
    AfterCheckpoint,
    /// As soon as the rejects file of a random not-yet-committed chunk is (re)written by this
    /// process: the writer is inside `commit`, the state-store transaction about to run or
    /// running.
    CommitWindow,
    /// As soon as this process starts writing a random not-yet-complete detection file (its
    /// temporary file appears, or the file itself is rewritten): after the epoch's commit,
    /// before the writer records the file in the ledger.
    FileWindow,
}

/// Whether `path` was (re)written after `since`.
/// Whether any file under `dir` (at any depth) was modified after `since`.
fn fresh_file_under(dir: &Path, since: SystemTime) -> bool {
    files_under(dir).iter().any(|path| fresh(path, since))
}

fn fresh(path: &Path, since: SystemTime) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since)
}

/// Whether process `pid` is writing `path` (its temporary file exists; see the local store).
fn being_written(path: &Path, pid: u32) -> bool {
    let prefix = format!(
        ".tmp-{}-{pid}-",
        path.file_name().unwrap().to_string_lossy()
    );
    fs::read_dir(path.parent().unwrap()).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    })
}

/// One trial: a run per entry of `modes`, each killed with SIGKILL at the point the mode
/// picks (unless it finishes first), then one more run, which must exit 0. After every kill
/// the store must hold a committed prefix of the uninterrupted run; in the end everything
/// must equal it.
fn crash_trial(
    name: &str,
    url: &str,
    seed: u64,
    workers: usize,
    modes: &[Mode],
    tally: &mut Vec<KillPoint>,
) {
    crash_trial_with(name, url, seed, workers, modes, &[], tally);
}

/// [`crash_trial`] with more options for every run of `mechanism-y`.
fn crash_trial_with(
    name: &str,
    url: &str,
    seed: u64,
    workers: usize,
    modes: &[Mode],
    flags: &[&str],
    tally: &mut Vec<KillPoint>,
) -> PathBuf {
    let fx = fixture();
    let dir = test_dir(name);
    let output = dir.join("out");
    let logs = dir.join("logs");
    let workers = workers.to_string();
    let mut extra = vec!["-w", workers.as_str()];
    extra.extend_from_slice(flags);
    let mut rng = SplitMix64::new(seed);
    let files = fx.baseline.ledger.len().div_ceil(50) as u64;
    let mut points = Vec::new();
    for (attempt, mode) in modes.iter().enumerate() {
        let before = committed_epochs(url);
        // The ledger rows of the committed epochs fill this many files.
        let written = fx
            .baseline
            .ledger
            .iter()
            .filter(|r| r.epoch < before as u64)
            .count() as u64
            / 50;
        let target = match mode {
            Mode::CommitWindow if (before as u64) < fx.chunks => Some(
                output
                    .join("rejects")
                    .join(chunk_name(rng.range(before as u64, fx.chunks - 1))),
            ),
            Mode::FileWindow if written < files => Some(output.join(format!(
                "detections-{:06}.csv",
                rng.range(written, files - 1)
            ))),
            // Nothing left to aim at: a random time.
            _ => None,
        };
        let span = if *mode == Mode::Early { 0.28 } else { 0.88 };
        let fraction = 0.02 + span * rng.below(10_000) as f64 / 10_000.0;
        let mut p = Proc::spawn(
            &format!("{name}-{attempt}"),
            y(&fx.landing, &output, url, &extra),
            &logs,
        );
        let started = Instant::now();
        let since = p.spawned_at;
        let exited = match &target {
            None if *mode == Mode::AfterCheckpoint => {
                let newest = recorded_checkpoints(url).last().copied();
                p.run_until(&format!("{name}: a new checkpoint"), 20, || {
                    recorded_checkpoints(url).last().copied() > newest
                })
            }
            None if *mode == Mode::CheckpointWindow => {
                p.run_until(&format!("{name}: a checkpoint file"), 1, || {
                    fresh_file_under(&output.join("_checkpoints"), since)
                })
            }
            None => p.wait_for(fx.baseline_wall.mul_f64(fraction)),
            Some(path) => {
                let pid = p.child.id();
                let what = format!("{name}: {}", path.display());
                p.run_until(&what, 1, || {
                    fresh(path, since) || (*mode == Mode::FileWindow && being_written(path, pid))
                })
            }
        };
        let at = started.elapsed();
        let what = match &target {
            None => format!("{mode:?} {at:.2?}"),
            Some(path) => format!(
                "{mode:?} {} at {at:.2?}",
                path.file_name().unwrap().to_string_lossy()
            ),
        };
        if let Some(status) = exited {
            assert!(
                status.success(),
                "{name}: run {attempt} failed ({status}):\n{}",
                p.tail()
            );
            points.push((what, KillPoint::NotKilled, before, before));
            break;
        }
        p.kill9();
        let n = check_prefix(url, &format!("{name} after kill {attempt}"));
        let point = classify(url, &output, before, n, p.child.id(), p.spawned_at);
        points.push((what, point, before, n));
    }
    let mut last = Proc::spawn(
        &format!("{name}-final"),
        y(&fx.landing, &output, url, &extra),
        &logs,
    );
    last.expect_success(RUN_LIMIT);
    let got = Snapshot::take(url, &output);
    assert_same(&got, &fx.baseline, false, name);
    eprintln!(
        "[{name}] seed {seed:#x}, -w {workers}: {}{}",
        points
            .iter()
            .map(|(w, p, b, n)| format!("kill {w} → {p:?} (epochs {b}→{n})"))
            .collect::<Vec<_>>()
            .join(", "),
        if got.temp_files.is_empty() {
            String::new()
        } else {
            format!("; left-over temp files: {:?}", got.temp_files)
        }
    );
    tally.extend(points.iter().map(|p| p.1));
    logs
}

fn report_tally(what: &str, tally: &[KillPoint]) {
    let mut counts = BTreeMap::<KillPoint, usize>::new();
    for p in tally {
        *counts.entry(*p).or_default() += 1;
    }
    eprintln!("[{what}] {} kill points: {counts:?}", tally.len());
}

/// Trials `trials` of 1–3 kills at random times (trial 5 with two workers).
fn timed_trials(trials: std::ops::Range<u64>) {
    let seed = crash_seed();
    let mut tally = Vec::new();
    for trial in trials.clone() {
        let mut rng = SplitMix64::new(seed ^ (trial << 32));
        let modes = vec![Mode::Timed; rng.range(1, 3) as usize];
        let url = fresh_database_url(&format!("crash{trial}"));
        let workers = if trial == 5 { 2 } else { 1 };
        crash_trial(
            &format!("pg-crash-{trial}"),
            &url,
            seed.wrapping_add(trial),
            workers,
            &modes,
            &mut tally,
        );
    }
    report_tally(
        &format!("postgres kill -9 at random times, trials {trials:?}"),
        &tally,
    );
}

#[test]
fn kill9_at_random_times_postgres_trials_0_to_2() {
    timed_trials(0..3);
}

#[test]
fn kill9_at_random_times_postgres_trials_3_to_5() {
    timed_trials(3..6);
}

/// Random times rarely hit the short commit and file-writing windows: aim at them.
#[test]
fn kill9_in_commit_and_file_windows_postgres() {
    let seed = crash_seed() ^ 0xc0317;
    let mut tally = Vec::new();
    for (trial, modes) in [
        vec![Mode::CommitWindow; 3],
        vec![Mode::FileWindow, Mode::FileWindow, Mode::CommitWindow],
    ]
    .iter()
    .enumerate()
    {
        let url = fresh_database_url(&format!("window{trial}"));
        crash_trial(
            &format!("pg-window-{trial}"),
            &url,
            seed.wrapping_add(trial as u64),
            1,
            modes,
            &mut tally,
        );
    }
    report_tally("postgres kill -9 in the commit/file windows", &tally);
}

#[test]
fn kill9_at_random_points_sqlite() {
    let dir = test_dir("sqlite-crash-store");
    let url = sqlite_url(&dir.join("state.db"));
    let mut tally = Vec::new();
    let modes = [
        Mode::Timed,
        Mode::CommitWindow,
        Mode::FileWindow,
        Mode::Timed,
    ];
    crash_trial(
        "sqlite-crash",
        &url,
        crash_seed() ^ 0x5117e,
        1,
        &modes,
        &mut tally,
    );
    report_tally("sqlite kill -9", &tally);
}

/// Restarts from checkpoints (one every 5 epochs, `-w 2`): kills at seeded times and in the
/// commit and file windows, with epochs in flight and checkpoints being written; after
/// every kill a committed prefix, at the end the uninterrupted run's tables and files. A kill
/// right after a checkpoint is recorded makes the next start restore it: at least one restart
/// must have restored from a checkpoint (counted from their logs).
fn checkpoint_crash_trials(name: &str, url: &str, seed: u64) {
    let modes = [
        Mode::CheckpointWindow,
        Mode::Early,
        Mode::AfterCheckpoint,
        Mode::Early,
        Mode::CheckpointWindow,
        Mode::Early,
        Mode::CommitWindow,
        Mode::CheckpointWindow,
        Mode::Early,
        Mode::FileWindow,
        Mode::Early,
        Mode::CommitWindow,
        Mode::Early,
        Mode::Early,
        Mode::CommitWindow,
        Mode::Timed,
    ];
    let mut tally = Vec::new();
    let flags = ["--checkpoint-interval", "5"];
    let logs = crash_trial_with(name, url, seed, 2, &modes, &flags, &mut tally);
    let restored = fs::read_dir(&logs)
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .filter(|log| log.contains("restoring from the checkpoint"))
        .count();
    let killed = tally.iter().filter(|p| **p != KillPoint::NotKilled).count();
    assert!(
        restored >= 1,
        "{name}: no restart restored from a checkpoint ({killed} kills)"
    );
    report_tally(&format!("{name}: {restored} restores"), &tally);
}

#[test]
fn kill9_with_checkpoints_sqlite() {
    let dir = test_dir("sqlite-checkpoint-crash-store");
    let url = sqlite_url(&dir.join("state.db"));
    checkpoint_crash_trials("sqlite-checkpoint-crash", &url, crash_seed() ^ 0xc4e0);
}

#[test]
fn kill9_with_checkpoints_postgres() {
    let url = fresh_database_url("checkpointcrash");
    checkpoint_crash_trials("pg-checkpoint-crash", &url, crash_seed() ^ 0xc4e1);
}

/// The window between an epoch's commit and its detection file is too short to hit with a
/// signal: make the file impossible to write instead (a directory in its place), so the
/// process dies right there, then check that a restart writes it from the ledger.
#[test]
fn detection_file_missing_after_commit_is_written_on_restart() {
    let fx = fixture();
    let dir = test_dir("file-blocked");
    let logs = dir.join("logs");
    let output = dir.join("out");
    let url = fresh_database_url("file_blocked");
    let blocker = output.join("detections-000001.csv");
    fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let mut yp = Proc::spawn("blocked", y(&fx.landing, &output, &url, &[]), &logs);
    let status = yp.expect_exit(RUN_LIMIT);
    assert!(!status.success(), "the file write cannot have succeeded");
    let last = yp.last_line();
    assert!(
        last.starts_with("error: ") && last.contains("detections-000001.csv"),
        "want a one-line error naming the file, got:\n{}",
        yp.tail()
    );
    let n = check_prefix(&url, "after the failed file write");
    assert_eq!(
        classify(&url, &output, 0, n, yp.child.id(), yp.spawned_at),
        KillPoint::AfterCommitBeforeFile,
        "the epoch completing file 1 must be committed with its rows unwritten"
    );
    fs::remove_dir_all(&blocker).unwrap();
    let mut yp = Proc::spawn("restart", y(&fx.landing, &output, &url, &[]), &logs);
    yp.expect_success(RUN_LIMIT);
    let got = Snapshot::take(&url, &output);
    assert_same(&got, &fx.baseline, false, "file write failure then restart");
    eprintln!("[file-blocked] died after committing {n} epochs with: {last}");
}

/// Epochs computed but still queued to the committing thread when the process dies are not
/// committed, and a restart computes and commits them as an uninterrupted run would. The
/// state store is reached through a proxy that delays every request, so that the workers run
/// ahead of the committer and its queue fills.
#[test]
fn kill9_while_epochs_are_queued_to_the_committer() {
    let fx = fixture();
    let dir = test_dir("queued");
    let logs = dir.join("logs");
    let output = dir.join("out");
    let url = fresh_database_url("queued");
    let proxy = DelayProxy::start(&url, Duration::from_millis(40));
    let mut cmd = y(&fx.landing, &output, &proxy.url, &[]);
    cmd.env("RUST_LOG", "info,txflow::runtime::committer=debug");
    let mut yp = Proc::spawn("queued", cmd, &logs);
    let mut queued = 0;
    yp.wait_until(RUN_LIMIT, "a commit, then three epochs queued", || {
        let text = yp_text(&logs.join("queued.stderr"));
        let Some(first_commit) = text.find("epoch committed") else {
            return false;
        };
        queued = max_queued(&text[first_commit..]);
        queued >= 3
    });
    yp.kill9();
    // Writes the proxy still holds must not reach the server while the store is read: a
    // killed process sends nothing more. (What it had sent before may still commit.)
    proxy.cut();
    std::thread::sleep(Duration::from_millis(500));
    let handed = handed_over(&yp.stderr_text());
    let n = check_prefix(&url, "after kill -9 with a full commit queue");
    assert!(
        n >= 1 && n + 2 <= handed,
        "{handed} epochs handed to the committer, {n} committed: at least two must have been \
         queued when the process died"
    );
    let mut yp = Proc::spawn("restart", y(&fx.landing, &output, &url, &[]), &logs);
    yp.expect_success(RUN_LIMIT);
    let got = Snapshot::take(&url, &output);
    assert_same(
        &got,
        &fx.baseline,
        false,
        "kill -9 with queued epochs, then restart",
    );
    eprintln!("[queued] killed with {queued} queued: {handed} handed over, {n} committed");
}

fn yp_text(path: &Path) -> String {
    strip_ansi(&fs::read_to_string(path).unwrap_or_default())
}

/// Log text without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines where worker 0 handed an epoch to the committer.
fn handed_lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .filter(|l| l.contains("epoch handed to the committer"))
        .map(strip_ansi)
}

fn handed_over(text: &str) -> usize {
    handed_lines(text).count()
}

/// The largest `queued=N` of the hand-over lines.
fn max_queued(text: &str) -> usize {
    handed_lines(text)
        .filter_map(|l| {
            let rest = &l[l.find("queued=")? + "queued=".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

/// A TCP proxy to the PostgreSQL server of `url` that holds every client write back by
/// `delay` before passing it on; once cut, it drops what it holds and passes nothing more.
struct DelayProxy {
    url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DelayProxy {
    fn start(url: &str, delay: Duration) -> DelayProxy {
        let rest = url.split("127.0.0.1:").nth(1).expect("a 127.0.0.1 URL");
        let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let upstream = format!("127.0.0.1:{port}");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cutting = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (up, down) = (cutting.clone(), cutting.clone());
                std::thread::spawn(move || pump(client, server, delay, &up));
                std::thread::spawn(move || pump(s2, c2, Duration::ZERO, &down));
            }
        });
        DelayProxy {
            url: url.replacen(
                &format!("127.0.0.1:{port}"),
                &format!("127.0.0.1:{local}"),
                1,
            ),
            cut,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    delay: Duration,
    cut: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                std::thread::sleep(delay);
                if cut.load(std::sync::atomic::Ordering::SeqCst) || to.write_all(&buf[..n]).is_err()
                {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

// ---------------------------------------------------------------------------------------
// 2. PostgreSQL restarted under a live run; down longer than the reconnect bound.
// ---------------------------------------------------------------------------------------

#[test]
fn postgres_restart_mid_run_and_outage_beyond_the_bound() {
    let fx = fixture();
    let dir = test_dir("pg-restart");
    let logs = dir.join("logs");
    let server = PgServer::new();

    // A short outage while Y follows X: Y reconnects and finishes.
    let url = server.fresh_database_url("restart");
    let landing = dir.join("landing");
    let mut x = spawn_x("x", &landing, 100, &[], &logs);
    let output = dir.join("out-short");
    let mut yp = Proc::spawn("short-outage", y(&landing, &output, &url, &[]), &logs);
    yp.wait_until(Duration::from_secs(60), "5 committed epochs", || {
        committed_epochs(&url) >= 5
    });
    let stopped = Instant::now();
    server.stop();
    std::thread::sleep(Duration::from_millis(1500));
    server.start();
    let down = stopped.elapsed();
    yp.expect_success(RUN_LIMIT);
    x.expect_success(Duration::from_secs(60));
    let text = yp.stderr_text();
    assert!(
        text.contains("reconnect"),
        "Y never noticed the outage:\n{}",
        yp.tail()
    );
    let got = Snapshot::take(&url, &output);
    assert_same(&got, &fx.baseline, false, "PostgreSQL restarted mid-run");

    // Down longer than --pg-reconnect-timeout: a clear one-line failure, then a restart
    // (once PostgreSQL is back) finishes with the same results.
    let url = server.fresh_database_url("outage");
    let output = dir.join("out-long");
    let extra = ["--pg-reconnect-timeout", "2"];
    let mut yp = Proc::spawn("long-outage", y(&fx.landing, &output, &url, &extra), &logs);
    yp.wait_until(Duration::from_secs(60), "5 committed epochs", || {
        committed_epochs(&url) >= 5
    });
    let stopped = Instant::now();
    server.stop();
    let status = yp.expect_exit(Duration::from_secs(60));
    let gave_up = stopped.elapsed();
    assert!(!status.success(), "Y must fail while PostgreSQL is down");
    let text = yp.stderr_text();
    let last = yp.last_line();
    assert!(
        last.starts_with("error: ") && last.contains("unreachable"),
        "want a one-line 'unreachable' error last, got:\n{}",
        yp.tail()
    );
    assert!(
        !text.contains("panicked") && !text.contains("stack backtrace"),
        "a panic:\n{text}"
    );
    assert!(
        gave_up >= Duration::from_secs(2),
        "gave up after {gave_up:?}, before the 2 s bound"
    );
    server.start();
    let mut yp = Proc::spawn("after-outage", y(&fx.landing, &output, &url, &extra), &logs);
    yp.expect_success(RUN_LIMIT);
    let got = Snapshot::take(&url, &output);
    assert_same(&got, &fx.baseline, false, "restart after a long outage");
    eprintln!(
        "[pg-restart] short outage {down:.2?}: resumed; long outage: gave up after {gave_up:.2?} \
         with: {last}"
    );
}

/// Waits up to `limit` for `text` in the process's stderr; how long it took.
fn wait_for_stderr(p: &Proc, text: &str, since: Instant, limit: Duration) -> Duration {
    let left = limit.saturating_sub(since.elapsed());
    let seen = poll(left, || {
        p.stderr_text().contains(text).then(|| since.elapsed())
    });
    seen.unwrap_or_else(|| {
        panic!(
            "no {text:?} on {}'s stderr within {limit:?}:\n{}",
            p.name,
            p.tail()
        )
    })
}

/// PostgreSQL frozen (SIGSTOP on the postmaster and every backend: connections stay open,
/// nothing answers) under a run with `--pg-statement-timeout 2 --pg-reconnect-timeout 3`:
/// Y warns within the statement timeout, naming what it waited for. Thawed then, within the
/// reconnect bound, Y resumes and finishes like the baseline; frozen for good, Y exits with
/// the one-line "unreachable" error after the statement timeout plus the reconnect timeout,
/// and a restart once the server is back finishes like the baseline.
#[test]
fn postgres_frozen_mid_run_warns_then_resumes_or_gives_up() {
    let fx = fixture();
    let dir = test_dir("pg-frozen");
    let logs = dir.join("logs");
    let server = PgServer::new();
    let extra = ["--pg-statement-timeout", "2", "--pg-reconnect-timeout", "3"];
    let warning = "no answer within 2 s (--pg-statement-timeout)";
    // The warning's bound: the statement timeout, plus room for a loaded machine.
    let warn_limit = Duration::from_secs(2 + 4);

    let url = server.fresh_database_url("frozen_thawed");
    let output = dir.join("out-thawed");
    let mut yp = Proc::spawn(
        "frozen-thawed",
        y(&fx.landing, &output, &url, &extra),
        &logs,
    );
    yp.wait_until(Duration::from_secs(60), "5 committed epochs", || {
        committed_epochs(&url) >= 5
    });
    server.freeze();
    let warned = wait_for_stderr(&yp, warning, Instant::now(), warn_limit);
    server.thaw();
    yp.expect_success(RUN_LIMIT);
    let got = Snapshot::take(&url, &output);
    assert_same(
        &got,
        &fx.baseline,
        false,
        "PostgreSQL frozen and thawed mid-run",
    );

    let url = server.fresh_database_url("frozen_for_good");
    let output = dir.join("out-frozen");
    let mut yp = Proc::spawn("frozen", y(&fx.landing, &output, &url, &extra), &logs);
    yp.wait_until(Duration::from_secs(60), "5 committed epochs", || {
        committed_epochs(&url) >= 5
    });
    server.freeze();
    let frozen = Instant::now();
    wait_for_stderr(&yp, warning, frozen, warn_limit);
    let status = yp.expect_exit(Duration::from_secs(30));
    let gave_up = frozen.elapsed();
    server.thaw();
    assert!(!status.success(), "Y must fail while PostgreSQL is frozen");
    let last = yp.last_line();
    assert!(
        last.starts_with("error: ") && last.contains("unreachable"),
        "want a one-line 'unreachable' error last, got:\n{}",
        yp.tail()
    );
    assert!(
        gave_up >= Duration::from_secs(3) && gave_up < Duration::from_secs(2 + 3 + 8),
        "gave up after {gave_up:?}"
    );
    let mut yp = Proc::spawn("after-frozen", y(&fx.landing, &output, &url, &extra), &logs);
    yp.expect_success(RUN_LIMIT);
    let got = Snapshot::take(&url, &output);
    assert_same(&got, &fx.baseline, false, "restart after a frozen server");
    eprintln!("[pg-frozen] warned after {warned:.2?}; frozen for good: gave up after {gave_up:.2?} with: {last}");
}

// ---------------------------------------------------------------------------------------
// 3. Backtests on both stores: identical, times included.
// ---------------------------------------------------------------------------------------

#[test]
fn backtest_is_identical_on_sqlite_and_postgres() {
    let fx = fixture();
    let dir = test_dir("backtest");
    let logs = dir.join("logs");
    let pg_url = fresh_database_url("backtest");
    let lite_url = sqlite_url(&dir.join("state.db"));
    let mut pg = Proc::spawn(
        "replay-pg",
        y(&fx.landing, &dir.join("out-pg"), &pg_url, &["--replay"]),
        &logs,
    );
    let mut lite = Proc::spawn(
        "replay-sqlite",
        y(
            &fx.landing,
            &dir.join("out-sqlite"),
            &lite_url,
            &["--replay"],
        ),
        &logs,
    );
    pg.expect_success(RUN_LIMIT);
    lite.expect_success(RUN_LIMIT);
    let pg = Snapshot::take(&pg_url, &dir.join("out-pg"));
    let lite = Snapshot::take(&lite_url, &dir.join("out-sqlite"));
    assert_same(&pg, &lite, true, "PostgreSQL vs SQLite backtest");
    assert_same(&pg, &fx.baseline, false, "backtest vs live run");
    // Backtest times come from the landing store: chunk 0's mtime starts the run.
    let first_mtime = fs::metadata(fx.landing.join(chunk_name(0)))
        .unwrap()
        .modified()
        .unwrap();
    let ms = first_mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(pg.ledger[0].y_start_time, common::streams::format_ist(ms));
}

// ---------------------------------------------------------------------------------------
// 4. Two processes on one store.
// ---------------------------------------------------------------------------------------

fn second_writer_is_refused(name: &str, url: &str) {
    let fx = fixture();
    let dir = test_dir(name);
    let logs = dir.join("logs");
    let output = dir.join("out");
    let landing = dir.join("landing");
    // The first process follows a landing store that stops at 10 chunks for now, so it is
    // certainly still running (waiting) when the second one starts.
    let mut x = spawn_x("x-first-10", &landing, 0, &["--max-chunks", "10"], &logs);
    x.expect_success(Duration::from_secs(60));
    let mut first = Proc::spawn("first", y(&landing, &output, url, &[]), &logs);
    first.wait_until(Duration::from_secs(60), "10 committed epochs", || {
        committed_epochs(url) >= 10
    });
    // Same store, same output location: the mistake an operator would make.
    let mut second = Proc::spawn("second", y(&landing, &output, url, &[]), &logs);
    let status = second.expect_exit(Duration::from_secs(60));
    assert!(!status.success(), "{name}: the second process must fail");
    let text = second.stderr_text();
    let last = second.last_line();
    assert!(
        last.starts_with("error: ") && last.contains("another mechanism-y"),
        "{name}: want a one-line 'another mechanism-y' error, got:\n{text}"
    );
    if url.starts_with("sqlite://") {
        let pid = first.child.id().to_string();
        assert!(
            last.contains(&pid),
            "{name}: the message should name process {pid}: {last}"
        );
    }
    assert!(
        last.matches("session pid").count() <= 1,
        "{name}: the message names sessions that do not hold this store: {last}"
    );
    assert!(
        first.wait_for(Duration::ZERO).is_none(),
        "{name}: the first process must still be running"
    );
    // The rest of the stream: the first process finishes it.
    let mut x = spawn_x("x-rest", &landing, 0, &[], &logs);
    x.expect_success(Duration::from_secs(60));
    first.expect_success(RUN_LIMIT);
    let got = Snapshot::take(url, &output);
    assert_same(&got, &fx.baseline, false, name);
    eprintln!("[{name}] second process refused with: {last}");
}

#[test]
fn second_writer_is_refused_postgres() {
    // The lease is per database: a holder of the same key in another database of the same
    // server must neither block the run nor appear in the message.
    let other = fresh_database_url("other_db");
    let mut client = postgres::Client::connect(&other, postgres::NoTls).unwrap();
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .unwrap()
        .get(0);
    assert!(locked);
    second_writer_is_refused("two-writers-pg", &fresh_database_url("two_writers"));
    drop(client);
}

#[test]
fn second_writer_is_refused_sqlite() {
    let dir = test_dir("two-writers-sqlite-store");
    second_writer_is_refused("two-writers-sqlite", &sqlite_url(&dir.join("state.db")));
}

// ---------------------------------------------------------------------------------------
// 5. SIGTERM during a live run.
// ---------------------------------------------------------------------------------------

#[test]
fn sigterm_stops_promptly_and_a_restart_completes() {
    let fx = fixture();
    let dir = test_dir("sigterm");
    let logs = dir.join("logs");
    let url = fresh_database_url("sigterm");
    let landing = dir.join("landing");
    let output = dir.join("out");
    let mut x = spawn_x("x", &landing, 100, &[], &logs);
    let mut yp = Proc::spawn("y", y(&landing, &output, &url, &["-w", "2"]), &logs);
    yp.wait_until(Duration::from_secs(60), "3 committed epochs", || {
        committed_epochs(&url) >= 3
    });
    let sent = Instant::now();
    yp.signal(libc::SIGTERM);
    let status = yp.expect_exit(Duration::from_secs(20));
    let took = sent.elapsed();
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}:\n{}",
        yp.tail()
    );
    let n = check_prefix(&url, "after SIGTERM");
    assert!(
        (n as u64) < fx.chunks,
        "the run ended before SIGTERM took effect"
    );
    let mut yp = Proc::spawn("y-restart", y(&landing, &output, &url, &["-w", "2"]), &logs);
    yp.expect_success(RUN_LIMIT);
    x.expect_success(Duration::from_secs(60));
    let got = Snapshot::take(&url, &output);
    assert_same(&got, &fx.baseline, false, "SIGTERM then restart");
    eprintln!("[sigterm] exited 0 in {took:.2?} with {n} epochs committed; restart completed");
}

// ---------------------------------------------------------------------------------------
// 6. A backtest with variants: killed and restarted, identical to an uninterrupted one.
// ---------------------------------------------------------------------------------------

/// Two variants of the fixture's thresholds (PatId2 stricter; PatId1 and PatId3 looser).
const VARIANTS: [&str; 5] = [
    "--replay",
    "--variant",
    "strict:child-min-txns=30,child-max-avg-amount=20",
    "--variant",
    "wide:upgrade-count-percentile=0.8,dei-min-female-customers=3",
];

/// Every ledger (baseline and variants, times and evidence included) and every output file.
fn backtest_outcome(url: &str, output: &Path) -> (Vec<Vec<LedgerRow>>, BTreeMap<PathBuf, Vec<u8>>) {
    let config = StateConfig::parse(url).unwrap();
    let mut store = state::open(&config).unwrap();
    let mut ledgers = vec![store
        .ledger(txflow::sinks::state::LedgerId::Baseline)
        .unwrap()];
    for name in ["strict", "wide"] {
        ledgers.push(
            store
                .ledger(txflow::sinks::state::LedgerId::Variant(name))
                .unwrap(),
        );
    }
    (ledgers, common::outputs::tree(output))
}

#[test]
fn kill9_during_a_backtest_with_variants_then_restart_is_identical() {
    let fx = fixture();
    let dir = test_dir("variants-crash");
    let logs = dir.join("logs");
    let whole_url = fresh_database_url("variants_whole");
    let whole_out = dir.join("out-whole");
    let mut yp = Proc::spawn(
        "variants-whole",
        y(&fx.landing, &whole_out, &whole_url, &VARIANTS),
        &logs,
    );
    yp.expect_success(RUN_LIMIT);
    let want = backtest_outcome(&whole_url, &whole_out);
    assert!(
        want.0.iter().all(|l| !l.is_empty()),
        "every ledger has detections"
    );
    assert!(want.1.contains_key(Path::new("backtest-report.html")));

    let url = fresh_database_url("variants_killed");
    let output = dir.join("out-killed");
    let mut rng = SplitMix64::new(crash_seed() ^ 0x7a41);
    let (mut kills, mut cut_short) = (0, 0);
    for attempt in 0..2 {
        let at = rng.range(2 + attempt * 8, 10 + attempt * 8) as usize;
        let mut yp = Proc::spawn(
            "variants-killed",
            y(&fx.landing, &output, &url, &VARIANTS),
            &logs,
        );
        yp.wait_until(RUN_LIMIT, "committed epochs", || {
            committed_epochs(&url) >= at
        });
        yp.kill9();
        kills += 1;
        let committed = check_prefix(&url, "after a kill during a backtest with variants");
        cut_short += usize::from((committed as u64) < fx.chunks);
    }
    assert!(
        cut_short > 0,
        "no kill landed before the end of the backtest"
    );
    let mut yp = Proc::spawn(
        "variants-restart",
        y(&fx.landing, &output, &url, &VARIANTS),
        &logs,
    );
    yp.expect_success(RUN_LIMIT);
    let got = backtest_outcome(&url, &output);
    assert_eq!(got.0, want.0, "ledgers after {kills} kills");
    let names = |t: &BTreeMap<PathBuf, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&got.1),
        names(&want.1),
        "output files after {kills} kills"
    );
    for (path, bytes) in &want.1 {
        assert!(
            got.1[path] == *bytes,
            "{} differs after {kills} kills",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// Checkpoints: restores on other worker counts, damaged checkpoints, pruned landings.
// ---------------------------------------------------------------------------------------

/// A store and output left by `mechanism-y -w 2 --checkpoint-interval 5` killed once two
/// checkpoints are recorded and at least two epochs after the newest are committed.
struct Crashed {
    dir: PathBuf,
    landing: PathBuf,
    /// The recorded checkpoints' epochs, oldest first.
    checkpoints: Vec<u64>,
    committed: usize,
}

const CHECKPOINT_FLAGS: [&str; 2] = ["--checkpoint-interval", "5"];

fn recorded_checkpoints(url: &str) -> Vec<u64> {
    state::open(&StateConfig::parse(url).unwrap())
        .and_then(|mut s| s.checkpoints())
        .map(|rows| rows.iter().map(|r| r.epoch).collect())
        .unwrap_or_default()
}

/// `mechanism-y -w 2 --checkpoint-interval 5` on a copy of the fixture's landing in `dir`
/// (its own: the landing is part of the run's identity), killed once two checkpoints are
/// recorded and at least two epochs after the newest are committed.
fn crash_after_checkpoints(dir: &Path) -> Crashed {
    let fx = fixture();
    let landing = dir.join("landing");
    copy_dir(&fx.landing, &landing);
    let url = sqlite_url(&dir.join("state.db"));
    let mut extra = vec!["-w", "2"];
    extra.extend(CHECKPOINT_FLAGS);
    let mut p = Proc::spawn("crash", y(&landing, &dir.join("out"), &url, &extra), dir);
    let started = Instant::now();
    let (checkpoints, committed) = loop {
        let (recorded, committed) = (recorded_checkpoints(&url), committed_epochs(&url));
        if recorded.len() >= 2 && committed as u64 >= recorded[recorded.len() - 1] + 3 {
            p.kill9();
            break (recorded_checkpoints(&url), committed_epochs(&url));
        }
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "Y ended before the kill:\n{}",
            p.tail()
        );
        assert!(started.elapsed() < RUN_LIMIT, "no two checkpoints");
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        committed < fx.chunks as usize,
        "killed after the last epoch"
    );
    Crashed {
        dir: dir.to_path_buf(),
        landing,
        checkpoints,
        committed,
    }
}

fn crashed_after_checkpoints() -> &'static Crashed {
    static CRASHED: OnceLock<Crashed> = OnceLock::new();
    CRASHED.get_or_init(|| crash_after_checkpoints(&test_dir("checkpointed-crash")))
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// A copy of the crashed run's store and output, to restart in its own way.
fn crashed_copy(name: &str) -> (PathBuf, String, &'static Crashed) {
    let crashed = crashed_after_checkpoints();
    let dir = test_dir(name);
    for part in ["out", "state.db", "state.db-wal", "state.db-shm"] {
        let from = crashed.dir.join(part);
        if from.is_dir() {
            copy_dir(&from, &dir.join(part));
        } else if from.exists() {
            fs::copy(&from, dir.join(part)).unwrap();
        }
    }
    let url = sqlite_url(&dir.join("state.db"));
    (dir, url, crashed)
}

fn checkpoint_dir(dir: &Path, epoch: u64) -> PathBuf {
    dir.join("out/_checkpoints")
        .join(format!("epoch-{epoch:012}"))
}

/// Restarts Y with `extra` to the end; its log. The result must be the uninterrupted run's.
fn restart_to_the_end(name: &str, dir: &Path, landing: &Path, url: &str, extra: &[&str]) -> String {
    let mut all = extra.to_vec();
    all.extend(CHECKPOINT_FLAGS);
    let mut p = Proc::spawn(name, y(landing, &dir.join("out"), url, &all), dir);
    p.expect_success(RUN_LIMIT);
    assert_same(
        &Snapshot::take(url, &dir.join("out")),
        &fixture().baseline,
        false,
        name,
    );
    p.stderr_text()
}

fn restored_epoch(log: &str) -> Option<u64> {
    let line = log
        .lines()
        .find(|l| l.contains("restoring from the checkpoint"))?;
    let at = line.find(" epoch=")? + " epoch=".len();
    line[at..].split(' ').next()?.parse().ok()
}

/// A checkpoint written by 2 workers restores on 1, on 3, and on a cluster of 2 processes.
#[test]
fn a_checkpoint_restores_on_any_number_of_workers_and_processes() {
    let fx = fixture();
    for workers in ["1", "3"] {
        let name = format!("checkpoint-restore-w{workers}");
        let (dir, url, crashed) = crashed_copy(&name);
        let log = restart_to_the_end(&name, &dir, &crashed.landing, &url, &["-w", workers]);
        assert_eq!(
            restored_epoch(&log),
            crashed.checkpoints.last().copied(),
            "{name}"
        );
    }
    let (dir, url, crashed) = crashed_copy("checkpoint-restore-n2");
    let hosts = dir.join("hosts");
    let ports: Vec<u16> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect::<Vec<_>>()
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    fs::write(
        &hosts,
        ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let hosts = hosts.to_str().unwrap();
    let mut procs: Vec<Proc> = (0..2)
        .map(|p| {
            let p = p.to_string();
            let mut extra = vec!["-n", "2", "-p", p.as_str(), "-w", "1", "-h", hosts];
            extra.extend(CHECKPOINT_FLAGS);
            Proc::spawn(
                &format!("n2-p{p}"),
                y(&crashed.landing, &dir.join("out"), &url, &extra),
                &dir,
            )
        })
        .collect();
    for p in &mut procs {
        p.expect_success(RUN_LIMIT);
    }
    assert_same(
        &Snapshot::take(&url, &dir.join("out")),
        &fx.baseline,
        false,
        "-n 2",
    );
    assert_eq!(
        restored_epoch(&procs[0].stderr_text()),
        crashed.checkpoints.last().copied(),
        "-n 2"
    );
}

/// Each kind of damage to the newest checkpoint is warned about, naming it, and the older
/// one is used; with both damaged, the full replay. The result is the same every time.
#[test]
fn a_damaged_checkpoint_falls_back_to_an_older_one_or_the_full_replay() {
    type Damage = fn(&Path);
    let damages: [(&str, Damage, &str); 5] = [
        (
            "truncated",
            |d| {
                let bytes = fs::read(d.join("shard-0000-of-0002.bin")).unwrap();
                fs::write(d.join("shard-0000-of-0002.bin"), &bytes[..bytes.len() / 2]).unwrap();
            },
            "shard-0000-of-0002.bin",
        ),
        (
            "flipped",
            |d| {
                let mut bytes = fs::read(d.join("shard-0001-of-0002.bin")).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x01;
                fs::write(d.join("shard-0001-of-0002.bin"), bytes).unwrap();
            },
            "digest mismatch",
        ),
        (
            "no-manifest",
            |d| fs::remove_file(d.join("MANIFEST.json")).unwrap(),
            "MANIFEST.json is missing",
        ),
        (
            "other-run",
            |d| {
                let text = fs::read_to_string(d.join("MANIFEST.json")).unwrap();
                let at = text.find("\"run\": \"").unwrap() + 8;
                let other = format!("{}{}{}", &text[..at], "0".repeat(64), &text[at + 64..]);
                fs::write(d.join("MANIFEST.json"), other).unwrap();
            },
            "does not match the digest recorded",
        ),
        (
            "future-format",
            |d| {
                let mut bytes = fs::read(d.join("shard-0000-of-0002.bin")).unwrap();
                bytes[8..12].copy_from_slice(&9u32.to_le_bytes());
                fs::write(d.join("shard-0000-of-0002.bin"), bytes).unwrap();
            },
            "format version 9",
        ),
    ];
    for (what, damage, named) in damages {
        let name = format!("checkpoint-damage-{what}");
        let (dir, url, crashed) = crashed_copy(&name);
        let (older, newest) = match crashed.checkpoints[..] {
            [.., older, newest] => (older, newest),
            _ => unreachable!("two checkpoints"),
        };
        damage(&checkpoint_dir(&dir, newest));
        let log = restart_to_the_end(&name, &dir, &crashed.landing, &url, &["-w", "2"]);
        let warning = log
            .lines()
            .find(|l| l.contains("is not usable"))
            .unwrap_or_else(|| panic!("{name}: no warning:\n{log}"));
        assert!(
            warning.contains(&format!("epoch-{newest:012}")) && warning.contains(named),
            "{name}: {warning}"
        );
        assert_eq!(restored_epoch(&log), Some(older), "{name}");
    }
    // Both damaged: the full replay.
    let (dir, url, crashed) = crashed_copy("checkpoint-damage-all");
    for epoch in &crashed.checkpoints {
        fs::remove_file(checkpoint_dir(&dir, *epoch).join("MANIFEST.json")).unwrap();
    }
    let log = restart_to_the_end("checkpoint-damage-all", &dir, &crashed.landing, &url, &[]);
    assert_eq!(restored_epoch(&log), None);
    assert_eq!(
        log.matches("is not usable").count(),
        crashed.checkpoints.len()
    );
}

/// A landing whose chunks at or before the newest checkpoint were removed resumes from it;
/// a restart that needs a removed chunk is refused in one line naming it (and commits
/// nothing).
#[test]
fn a_pruned_landing_resumes_from_the_checkpoint() {
    let dir = test_dir("checkpoint-pruned");
    let crashed = crash_after_checkpoints(&dir);
    let url = sqlite_url(&dir.join("state.db"));
    let newest = *crashed.checkpoints.last().unwrap();
    let landing = &crashed.landing;
    for k in 0..=newest {
        fs::remove_file(landing.join(chunk_name(k))).unwrap();
    }
    let refused = |name: &str, missing: u64| {
        let mut all = vec!["-w", "1"];
        all.extend(CHECKPOINT_FLAGS);
        let mut p = Proc::spawn(name, y(landing, &dir.join("out"), &url, &all), &dir);
        let status = p.expect_exit(RUN_LIMIT);
        assert!(
            !status.success(),
            "{name}: a restart without chunk {missing} succeeded"
        );
        let last = p
            .stderr_text()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        assert!(
            last.contains(&format!("{} is missing", chunk_name(missing))),
            "{name}: {last}"
        );
        assert_eq!(
            committed_epochs(&url),
            crashed.committed,
            "{name}: it committed"
        );
    };
    // A committed chunk after the checkpoint is needed even with the checkpoint.
    let after = landing.join(chunk_name(newest + 1));
    let kept = fs::read(&after).unwrap();
    fs::remove_file(&after).unwrap();
    refused("pruned-after", newest + 1);
    fs::write(&after, kept).unwrap();
    // No usable checkpoint: the full replay needs chunk 0.
    let manifests: Vec<(PathBuf, Vec<u8>)> = crashed
        .checkpoints
        .iter()
        .map(|e| {
            let path = checkpoint_dir(&dir, *e).join("MANIFEST.json");
            let bytes = fs::read(&path).unwrap();
            fs::remove_file(&path).unwrap();
            (path, bytes)
        })
        .collect();
    refused("pruned-fallback", 0);
    for (path, bytes) in manifests {
        fs::write(path, bytes).unwrap();
    }
    // With its checkpoint, the pruned landing resumes and ends as the uninterrupted run.
    let log = restart_to_the_end("checkpoint-pruned", &dir, landing, &url, &[]);
    assert_eq!(restored_epoch(&log), Some(newest));
}

/// The cost of a restart is bounded by the checkpoint interval, whatever the stream's age:
/// a replay of 600 small chunks, checkpointed every 50 epochs, stopped after epoch 100 and
/// after epoch 500; each restart replays at most 50 committed chunks (counted from its
/// summary, not timed), and the end agrees with the independent reference.
#[test]
fn a_restart_replays_at_most_the_checkpoint_interval() {
    let fx = fixture();
    let dir = test_dir("checkpoint-cost");
    let landing = dir.join("landing");
    let x = mechanism_x::run(&XOptions {
        chunk_rows: 80,
        interval: Duration::ZERO,
        ..XOptions::new(&fx.source, landing.to_str().unwrap())
    })
    .expect("mechanism X");
    assert!(x.chunks_total >= 501, "{} chunks", x.chunks_total);
    let url = sqlite_url(&dir.join("state.db"));
    let extra = ["--replay", "-w", "2", "--checkpoint-interval", "50"];
    let recovered_of = |p: &Proc| -> u64 {
        let text = fs::read_to_string(p.stderr.with_extension("stdout")).unwrap();
        let at = text.find(" recovered)").expect("a summary line");
        let open = text[..at].rfind('(').unwrap();
        text[open + 1..at].parse().unwrap()
    };
    for (run, stop_after) in [(0, Some(100usize)), (1, Some(500)), (2, None)] {
        let mut p = Proc::spawn(
            &format!("cost-{run}"),
            y(&landing, &dir.join("out"), &url, &extra),
            &dir,
        );
        if let Some(n) = stop_after {
            let started = Instant::now();
            while committed_epochs(&url) <= n {
                assert!(
                    p.child.try_wait().unwrap().is_none(),
                    "ended early:\n{}",
                    p.tail()
                );
                assert!(started.elapsed() < RUN_LIMIT, "epoch {n} never committed");
                std::thread::sleep(Duration::from_millis(5));
            }
            p.signal(libc::SIGTERM);
        }
        p.expect_success(RUN_LIMIT);
        if run > 0 {
            let recovered = recovered_of(&p);
            // The restored epoch, then at most the interval's committed chunks.
            assert!(
                (1..=51).contains(&recovered),
                "run {run} replayed {} committed chunks after its checkpoint",
                recovered.saturating_sub(1)
            );
            assert!(
                restored_epoch(&p.stderr_text()).is_some(),
                "run {run} did not restore"
            );
        }
    }
    let chunks: Vec<(u64, Vec<u8>)> = (0..x.chunks_total)
        .map(|k| (k, fs::read(landing.join(chunk_name(k))).unwrap()))
        .collect();
    let expected = reference::expected(&chunks, &fs::read(&fx.importance).unwrap(), &thresholds());
    let got = Snapshot::take(&url, &dir.join("out"));
    expected
        .check_ledger(&reference::ledger_identities(&got.ledger))
        .unwrap_or_else(|e| panic!("the restarted run disagrees with the reference:\n{e}"));
    let counts: BTreeMap<String, i64> = got.counts.iter().cloned().collect();
    assert_eq!(counts, expected.counts);
    assert_eq!(got.epochs.len() as u64, x.chunks_total);
}

/// A backtest killed after two checkpoints, its landing pruned through the newest, resumes
/// from it and writes the uninterrupted backtest's bytes, times included (the first chunk's
/// time comes from the checkpoint); without a usable checkpoint it is refused, naming the
/// first chunk it needs.
#[test]
fn a_pruned_backtest_resumes_byte_for_byte() {
    let fx = fixture();
    let dir = test_dir("checkpoint-pruned-replay");
    let landing = dir.join("landing");
    copy_dir(&fx.landing, &landing);
    let mut flags = vec!["--replay", "-w", "2"];
    flags.extend(CHECKPOINT_FLAGS);
    // The uninterrupted backtest of the same landing (its chunks' times are the copy's).
    let plain_url = sqlite_url(&dir.join("plain.db"));
    let mut p = Proc::spawn(
        "plain",
        y(&landing, &dir.join("plain"), &plain_url, &flags),
        &dir,
    );
    p.expect_success(RUN_LIMIT);
    let plain = Snapshot::take(&plain_url, &dir.join("plain"));

    let url = sqlite_url(&dir.join("state.db"));
    let out = dir.join("out");
    let mut p = Proc::spawn("crash", y(&landing, &out, &url, &flags), &dir);
    let started = Instant::now();
    while recorded_checkpoints(&url).len() < 2 {
        assert!(
            p.child.try_wait().unwrap().is_none(),
            "ended early:\n{}",
            p.tail()
        );
        assert!(started.elapsed() < RUN_LIMIT, "no two checkpoints");
        std::thread::sleep(Duration::from_millis(2));
    }
    p.kill9();
    let checkpoints = recorded_checkpoints(&url);
    let newest = *checkpoints.last().unwrap();
    for k in 0..=newest {
        fs::remove_file(landing.join(chunk_name(k))).unwrap();
    }
    // Without its checkpoints the backtest cannot go on: refused, naming chunk 0.
    let hidden: Vec<(PathBuf, Vec<u8>)> = checkpoints
        .iter()
        .map(|e| {
            let path = out
                .join("_checkpoints")
                .join(format!("epoch-{e:012}"))
                .join("MANIFEST.json");
            let bytes = fs::read(&path).unwrap();
            fs::remove_file(&path).unwrap();
            (path, bytes)
        })
        .collect();
    let mut p = Proc::spawn("refused", y(&landing, &out, &url, &flags), &dir);
    assert!(
        !p.expect_exit(RUN_LIMIT).success(),
        "resumed without its chunks"
    );
    let last = p
        .stderr_text()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(last.contains(&format!("needs {}", chunk_name(0))), "{last}");
    for (path, bytes) in hidden {
        fs::write(path, bytes).unwrap();
    }
    let mut p = Proc::spawn("resumed", y(&landing, &out, &url, &flags), &dir);
    p.expect_success(RUN_LIMIT);
    assert_eq!(restored_epoch(&p.stderr_text()), Some(newest));
    assert_same(&Snapshot::take(&url, &out), &plain, true, "pruned backtest");
}
