//! Mechanism Y as a cluster of processes (`-n P -p I -h HOSTFILE`) on 127.0.0.1.
//!
//! The expected values come from a single process with one worker (itself checked against the
//! independent reference of `tests/common/reference.rs`): a cluster's backtest must reproduce
//! its ledger, tables and output bytes exactly, a live cluster its ledger minus the times.
//! Failure tests kill one process of a running cluster and check that the others exit
//! non-zero, fast, with a one-line reason, and that a restarted cluster ends exactly as an
//! uninterrupted run.
//!
//! Every wait is bounded; every child process is killed when its guard drops.

use crate::common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::outputs::{named_tree, timeless_epochs, timeless_ledger, TimelessLedgerRow};
use common::process::{dir_removed_at_exit, generated_data, YProc as Proc};
use common::wait::wait_until;
use txflow::mechanism_x::{self, XOptions};
use txflow::model::Thresholds;
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{self, EpochRow, LedgerRow};

const ROWS: u64 = 40_000;
const SEED: u64 = 7;
const CHUNK_ROWS: usize = 2_000;
/// Scaled-down thresholds so that all three patterns fire on 40,000 rows.
const THRESHOLD_ARGS: [&str; 6] = [
    "--upgrade-min-merchant-txns",
    "1000",
    "--child-min-txns",
    "15",
    "--dei-min-female-customers",
    "10",
];
/// Bound of a whole run of the pipeline (debug build, shared 2-core machine).
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// A survivor must exit this soon after a peer dies.
const FAIL_BOUND: Duration = Duration::from_secs(5);
/// Live tests: mechanism X's pace, so that the cluster is still running when a process dies.
const LIVE_INTERVAL: Duration = Duration::from_millis(100);

fn thresholds() -> Thresholds {
    Thresholds {
        upgrade_min_merchant_txns: 1000,
        child_min_txns: 15,
        dei_min_female_customers: 10,
        ..Thresholds::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A hostfile of `n` free 127.0.0.1 ports (bound to port 0 together, then released).
fn hostfile(dir: &Path, n: usize) -> PathBuf {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let text: String = listeners
        .iter()
        .map(|l| format!("127.0.0.1:{}\n", l.local_addr().unwrap().port()))
        .collect();
    drop(listeners);
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let path = dir.join(format!("hosts-{}", SEQ.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&path, text).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// Data, runs and results

/// Shared by every test: generated data, a landing store cut by X at full speed, and the
/// single-process, single-worker backtest everything is compared with.
struct Fixture {
    data: PathBuf,
    landing: PathBuf,
    baseline: Results,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = dir_removed_at_exit("cluster");

        let data = generated_data(ROWS, SEED);
        let landing = dir.join("landing");
        run_x(&data, &landing, Duration::ZERO);

        let started = Instant::now();
        let run = dir.join("baseline");
        let mut proc = Proc::spawn(
            "baseline",
            &y_args(&data, &landing, &run.join("out"), &sqlite(&run), true),
            &mk(&run),
        );
        proc.wait_ok(RUN_TIMEOUT);
        eprintln!(
            "[cluster] baseline (1 process, 1 worker) in {:?}",
            started.elapsed()
        );
        let baseline = Results::read(&sqlite(&run), &run.join("out"));
        check_against_reference(&data, &landing, &baseline);
        Fixture {
            data,
            landing,
            baseline,
        }
    })
}

fn mk(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}

fn sqlite(run: &Path) -> String {
    format!("sqlite://{}", run.join("state.db").display())
}

fn run_x(data: &Path, landing: &Path, interval: Duration) {
    let mut options = XOptions::new(
        data.join(txgen::TRANSACTIONS_FILE),
        &landing.to_string_lossy(),
    );
    options.chunk_rows = CHUNK_ROWS;
    options.interval = interval;
    mechanism_x::run(&options).unwrap();
}

/// Mechanism X on its own thread, writing a fresh landing store at `interval` per chunk.
fn spawn_x(data: &Path, landing: &Path, interval: Duration) -> JoinHandle<()> {
    let (data, landing) = (data.to_path_buf(), landing.to_path_buf());
    std::thread::spawn(move || run_x(&data, &landing, interval))
}

fn join_x(x: JoinHandle<()>) {
    wait_until("mechanism-x to finish", RUN_TIMEOUT, || x.is_finished());
    x.join().expect("mechanism-x failed");
}

fn y_args(data: &Path, landing: &Path, output: &Path, state: &str, replay: bool) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--landing".into(),
        landing.display().to_string(),
        "--importance".into(),
        data.join(txgen::IMPORTANCE_FILE).display().to_string(),
        "--output".into(),
        output.display().to_string(),
        "--state".into(),
        state.into(),
    ];
    if replay {
        args.push("--replay".into());
    }
    args.extend(THRESHOLD_ARGS.iter().map(|s| s.to_string()));
    args
}

/// A cluster of `n` processes with `w` workers each. Process 0 gets `state` and `output`;
/// the others get a state store and an output location of their own that must never be
/// created (they neither open the state store nor write files): see [`Cluster::check_peers`].
struct Cluster {
    procs: Vec<Proc>,
    dir: PathBuf,
}

struct ClusterSpec<'a> {
    n: usize,
    w: usize,
    landing: &'a Path,
    output: &'a Path,
    state: &'a str,
    replay: bool,
    extra: &'a [&'a str],
}

impl Cluster {
    fn start(spec: &ClusterSpec, dir: &Path, name: &str) -> Cluster {
        Cluster::start_ordered(spec, dir, name, &(0..spec.n).collect::<Vec<_>>(), |_| {})
    }

    /// Starts the processes in `order`, calling `between(i)` after starting the `i`-th.
    fn start_ordered(
        spec: &ClusterSpec,
        dir: &Path,
        name: &str,
        order: &[usize],
        mut between: impl FnMut(&Proc),
    ) -> Cluster {
        let f = fixture();
        let dir = mk(&dir.join(name));
        let hosts = hostfile(&dir, spec.n);
        let mut procs: Vec<Option<Proc>> = (0..spec.n).map(|_| None).collect();
        for &p in order {
            let (output, state) = if p == 0 {
                (spec.output.to_path_buf(), spec.state.to_string())
            } else {
                (
                    dir.join(format!("peer{p}-out")),
                    sqlite(&dir.join(format!("peer{p}"))),
                )
            };
            let mut args = y_args(&f.data, spec.landing, &output, &state, spec.replay);
            for (flag, value) in [("-n", spec.n), ("-p", p), ("-w", spec.w)] {
                args.push(flag.into());
                args.push(value.to_string());
            }
            args.push("-h".into());
            args.push(hosts.display().to_string());
            args.extend(spec.extra.iter().map(|s| s.to_string()));
            let proc = Proc::spawn(&format!("{name}-p{p}"), &args, &dir);
            between(&proc);
            procs[p] = Some(proc);
        }
        Cluster {
            procs: procs.into_iter().flatten().collect(),
            dir,
        }
    }

    fn wait_ok(&mut self) {
        for proc in &mut self.procs {
            proc.wait_ok(RUN_TIMEOUT);
        }
        self.check_peers();
    }

    /// The non-zero processes never opened a state store nor an output location.
    fn check_peers(&self) {
        for p in 1..self.procs.len() {
            for path in [
                self.dir.join(format!("peer{p}-out")),
                self.dir.join(format!("peer{p}")).join("state.db"),
            ] {
                assert!(
                    !path.exists(),
                    "process {p} created {} (only process 0 may open the state and output stores)",
                    path.display()
                );
            }
        }
    }
}

/// What a run leaves behind: the state tables and the output files.
#[derive(Debug)]
struct Results {
    ledger: Vec<LedgerRow>,
    epochs: Vec<EpochRow>,
    counts: Vec<(String, i64)>,
    files: BTreeMap<String, Vec<u8>>,
}

impl Results {
    fn read(state_url: &str, output: &Path) -> Results {
        let mut store = state::open(&StateConfig::parse(state_url).unwrap()).unwrap();
        let files = named_tree(output);
        Results {
            ledger: store
                .ledger(txflow::sinks::state::LedgerId::Baseline)
                .unwrap(),
            epochs: store.epoch_rows().unwrap(),
            counts: store.merchant_counts().unwrap(),
            files,
        }
    }

    /// Everything except the times (live runs): the ledger without `y_start_time` and
    /// `detection_time`, the progress rows without `committed_at`, and the detection files
    /// without their first two columns.
    fn without_times(&self) -> TimelessResults {
        TimelessResults {
            ledger: timeless_ledger(&self.ledger),
            epochs: timeless_epochs(&self.epochs),
            counts: self.counts.clone(),
            files: self
                .files
                .iter()
                .map(|(name, bytes)| {
                    let text = String::from_utf8_lossy(bytes);
                    let body = if name.starts_with("detections-") {
                        text.lines()
                            .map(|l| l.splitn(3, ',').nth(2).unwrap_or("").to_string() + "\n")
                            .collect()
                    } else {
                        text.into_owned()
                    };
                    (name.clone(), body)
                })
                .collect(),
        }
    }

    fn assert_identical(&self, expected: &Results, what: &str) {
        assert_eq!(
            self.ledger.len(),
            expected.ledger.len(),
            "{what}: ledger length"
        );
        for (got, want) in self.ledger.iter().zip(&expected.ledger) {
            assert_eq!(got, want, "{what}: ledger row");
        }
        assert_eq!(self.epochs, expected.epochs, "{what}: epochs table");
        assert_eq!(self.counts, expected.counts, "{what}: merchant counts");
        assert_eq!(
            self.files.keys().collect::<Vec<_>>(),
            expected.files.keys().collect::<Vec<_>>(),
            "{what}: output files"
        );
        for (name, bytes) in &self.files {
            assert!(bytes == &expected.files[name], "{what}: {name} differs");
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct TimelessResults {
    ledger: Vec<TimelessLedgerRow>,
    epochs: Vec<(u64, String, u64, u64)>,
    counts: Vec<(String, i64)>,
    files: BTreeMap<String, String>,
}

fn assert_same_without_times(got: &Results, expected: &Results, what: &str) {
    let (got, expected) = (got.without_times(), expected.without_times());
    assert_eq!(got.ledger, expected.ledger, "{what}: ledger (times aside)");
    assert_eq!(got.epochs, expected.epochs, "{what}: epochs (times aside)");
    assert_eq!(got.counts, expected.counts, "{what}: merchant counts");
    assert_eq!(
        got.files, expected.files,
        "{what}: output files (times aside)"
    );
}

/// The baseline is itself checked against the independent reference, and must exercise all
/// three patterns with more than 50 detections.
fn check_against_reference(data: &Path, landing: &Path, baseline: &Results) {
    let mut chunks = Vec::new();
    for (name, index) in std::fs::read_dir(landing)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            let k = n
                .strip_prefix("chunk-")?
                .strip_suffix(".csv")?
                .parse()
                .ok()?;
            Some((n, k))
        })
    {
        chunks.push((index, std::fs::read(landing.join(name)).unwrap()));
    }
    chunks.sort();
    let importance = std::fs::read(data.join(txgen::IMPORTANCE_FILE)).unwrap();
    let expected = common::reference::expected(&chunks, &importance, &thresholds());
    let got: Vec<(u64, String, String, String)> =
        common::reference::ledger_identities(&baseline.ledger);
    if let Err(problems) = expected.check_ledger(&got) {
        panic!("the single-process baseline disagrees with the reference: {problems}");
    }
    let per_pattern = |p: &str| got.iter().filter(|d| d.1 == p).count();
    for pattern in ["PatId1", "PatId2", "PatId3"] {
        assert!(per_pattern(pattern) > 0, "{pattern} never fires: {got:?}");
    }
    assert!(got.len() > 50, "only {} detections", got.len());
    assert_eq!(baseline.epochs.len(), chunks.len());
}

/// `(N recovered)` from process 0's summary line.
fn recovered_epochs(proc: &Proc) -> u64 {
    let out = proc.stdout_text();
    let line = out
        .lines()
        .rfind(|l| l.starts_with("mechanism-y:"))
        .unwrap_or_else(|| panic!("no summary line in {}: {out}", proc.name));
    let at = line
        .find(" recovered)")
        .expect("summary has a recovered count");
    let digits = line[..at].rsplit('(').next().unwrap();
    digits.parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Backtests: byte-identical to one process with one worker

fn backtest(n: usize, w: usize) {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let run = mk(&tmp.path().join("run"));
    let started = Instant::now();
    let mut cluster = Cluster::start(
        &ClusterSpec {
            n,
            w,
            landing: &f.landing,
            output: &run.join("out"),
            state: &sqlite(&run),
            replay: true,
            extra: &[],
        },
        tmp.path(),
        "backtest",
    );
    cluster.wait_ok();
    eprintln!(
        "[cluster] backtest on {n} processes x {w} workers in {:?}",
        started.elapsed()
    );
    let got = Results::read(&sqlite(&run), &run.join("out"));
    got.assert_identical(&f.baseline, &format!("{n} processes x {w} workers"));
}

#[test]
fn backtest_on_two_processes_with_two_workers_is_byte_identical() {
    backtest(2, 2);
}

#[test]
fn backtest_on_three_processes_is_byte_identical() {
    backtest(3, 1);
}

/// A backtest with variants on a cluster (2 processes × 1 worker) equals the same backtest
/// in one process (2 workers): every ledger, the baseline's and the variants', and every
/// file, the variants' and the comparison report included.
#[test]
fn backtest_with_variants_on_two_processes_equals_one_process() {
    let f = fixture();
    let variants = [
        "--variant",
        "strict:child-min-txns=20,child-max-avg-amount=20",
        "--variant",
        "wide:upgrade-count-percentile=0.5,dei-min-female-customers=5",
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut outcomes = Vec::new();
    for (n, w) in [(1, 2), (2, 1)] {
        let run = mk(&tmp.path().join(format!("run-{n}x{w}")));
        let mut cluster = Cluster::start(
            &ClusterSpec {
                n,
                w,
                landing: &f.landing,
                output: &run.join("out"),
                state: &sqlite(&run),
                replay: true,
                extra: &variants,
            },
            tmp.path(),
            &format!("variants-{n}x{w}"),
        );
        cluster.wait_ok();
        let results = Results::read(&sqlite(&run), &run.join("out"));
        let mut store = state::open(&StateConfig::parse(&sqlite(&run)).unwrap()).unwrap();
        let ledgers: Vec<Vec<LedgerRow>> = ["strict", "wide"]
            .iter()
            .map(|v| {
                store
                    .ledger(txflow::sinks::state::LedgerId::Variant(v))
                    .unwrap()
            })
            .collect();
        assert!(
            ledgers.iter().all(|l| !l.is_empty()),
            "{n}x{w}: variant detections"
        );
        assert!(results.files.contains_key("backtest-report.html"));
        outcomes.push((results, ledgers));
    }
    let (cluster, cluster_ledgers) = outcomes.pop().unwrap();
    let (single, single_ledgers) = outcomes.pop().unwrap();
    cluster.assert_identical(&single, "2 processes x 1 worker with variants");
    assert_eq!(cluster_ledgers, single_ledgers, "variant ledgers");
}

// ---------------------------------------------------------------------------------------------
// Live mode

/// A live cluster following X; process 1 starts first and waits (timely retries connecting)
/// until process 0 comes up.
#[test]
fn live_cluster_matches_single_process_and_waits_for_late_peers() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = mk(&tmp.path().join("run"));
    let x = spawn_x(&f.data, &landing, Duration::from_millis(20));
    let mut cluster = Cluster::start_ordered(
        &ClusterSpec {
            n: 2,
            w: 1,
            landing: &landing,
            output: &run.join("out"),
            state: &sqlite(&run),
            replay: false,
            extra: &[],
        },
        tmp.path(),
        "live",
        &[1, 0],
        |proc| {
            if proc.name.ends_with("-p1") {
                // Process 0 is not up yet: process 1 retries (and logs it).
                wait_until("process 1 to retry connecting", RUN_TIMEOUT, || {
                    proc.stderr_text().contains("retrying")
                });
            }
        },
    );
    cluster.wait_ok();
    join_x(x);
    let got = Results::read(&sqlite(&run), &run.join("out"));
    assert_same_without_times(&got, &f.baseline, "live cluster");
}

// ---------------------------------------------------------------------------------------------
// Failures: one process dies, the cluster goes down, a restart recovers

/// Kills process `victim` of a live 3-process cluster after a few committed epochs, checks
/// that the survivors fail fast and clearly, then restarts the whole cluster.
fn kill_one_process(victim: usize) {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = mk(&tmp.path().join("run"));
    let x = spawn_x(&f.data, &landing, LIVE_INTERVAL);
    let spec = ClusterSpec {
        n: 3,
        w: 1,
        landing: &landing,
        output: &run.join("out"),
        state: &sqlite(&run),
        replay: false,
        extra: &[],
    };
    let mut cluster = Cluster::start(&spec, tmp.path(), "first");
    wait_until("3 committed epochs", RUN_TIMEOUT, || {
        cluster.procs[0].epochs_committed() >= 3
    });
    for proc in &mut cluster.procs {
        assert!(proc.try_status().is_none(), "{} ended too early", proc.name);
    }
    cluster.procs[victim].kill9();
    let killed = Instant::now();
    for (p, proc) in cluster.procs.iter_mut().enumerate() {
        if p == victim {
            continue;
        }
        let status = proc.wait(FAIL_BOUND);
        assert!(
            !status.success(),
            "{} exited 0 after losing a peer",
            proc.name
        );
        let stderr = proc.stderr_text();
        // The one-line reason and any ERROR log line (an INFO line may quote an OS error,
        // "connection refused", from connecting while a peer was not up yet).
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("error") || l.contains(" ERROR "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{}: one error line expected:\n{stderr}",
            proc.name
        );
        assert!(
            errors[0].starts_with("error: cluster peer lost")
                && errors[0].contains("restart every process of the cluster"),
            "{}: {}",
            proc.name,
            errors[0]
        );
        assert!(!stderr.contains("panicked"), "{}: {stderr}", proc.name);
    }
    eprintln!(
        "[cluster] survivors of process {victim} exited within {:?}",
        killed.elapsed()
    );

    let mut restarted = Cluster::start(&spec, tmp.path(), "restarted");
    restarted.wait_ok();
    join_x(x);
    assert!(recovered_epochs(&restarted.procs[0]) >= 3);
    let got = Results::read(&sqlite(&run), &run.join("out"));
    assert_same_without_times(&got, &f.baseline, "restarted cluster");
}

#[test]
fn killed_peer_takes_the_cluster_down_and_a_restart_recovers() {
    kill_one_process(1);
}

#[test]
fn killed_writer_process_takes_the_cluster_down_and_a_restart_recovers() {
    kill_one_process(0);
}

/// The writer (process 0) fails with an error, PostgreSQL being unreachable: the whole
/// cluster goes down; after PostgreSQL is back, a restarted cluster ends as an uninterrupted
/// run.
#[cfg(feature = "test-services")]
#[test]
fn writer_error_takes_the_cluster_down() {
    let f = fixture();
    let pg = common::pg::PgServer::new();
    let url = pg.fresh_database_url("cluster_writer");
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = mk(&tmp.path().join("run"));
    let x = spawn_x(&f.data, &landing, LIVE_INTERVAL);
    let spec = ClusterSpec {
        n: 2,
        w: 1,
        landing: &landing,
        output: &run.join("out"),
        state: &url,
        replay: false,
        extra: &["--pg-reconnect-timeout", "1"],
    };
    let mut cluster = Cluster::start(&spec, tmp.path(), "first");
    wait_until("3 committed epochs", RUN_TIMEOUT, || {
        cluster.procs[0].epochs_committed() >= 3
    });
    pg.stop();
    let stopped = Instant::now();
    let writer_status = cluster.procs[0].wait(FAIL_BOUND + Duration::from_secs(5));
    assert!(!writer_status.success());
    let writer_error = cluster.procs[0].stderr_tail(1);
    assert!(
        writer_error.starts_with("error: ")
            && writer_error.contains("PostgreSQL")
            && writer_error.contains("restart every process of the cluster"),
        "{writer_error}"
    );
    let peer_status = cluster.procs[1].wait(FAIL_BOUND);
    assert!(!peer_status.success());
    let peer_error = cluster.procs[1].stderr_tail(1);
    assert!(
        peer_error.starts_with("error: cluster peer lost"),
        "{peer_error}"
    );
    eprintln!(
        "[cluster] down {:?} after PostgreSQL stopped",
        stopped.elapsed()
    );

    pg.start();
    let mut restarted = Cluster::start(&spec, tmp.path(), "restarted");
    restarted.wait_ok();
    join_x(x);
    let got = Results::read(&url, &run.join("out"));
    assert_same_without_times(&got, &f.baseline, "restarted cluster on PostgreSQL");
}

// ---------------------------------------------------------------------------------------------
// Start-up and configuration

/// timely retries connecting forever; `--connect-timeout` bounds it.
#[test]
fn startup_gives_up_when_a_peer_never_comes() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let run = mk(&tmp.path().join("run"));
    let spec = ClusterSpec {
        n: 2,
        w: 1,
        landing: &f.landing,
        output: &run.join("out"),
        state: &sqlite(&run),
        replay: true,
        extra: &["--connect-timeout", "2"],
    };
    // Only process 1 (which connects to 0) and, separately, only process 0 (which waits).
    for alone in [1usize, 0] {
        let started = Instant::now();
        let mut cluster = Cluster::start_ordered(
            &spec,
            tmp.path(),
            &format!("alone{alone}"),
            &[alone],
            |_| {},
        );
        let proc = &mut cluster.procs[0];
        let status = proc.wait(Duration::from_secs(20));
        assert!(!status.success());
        let error = proc.stderr_tail(1);
        assert!(
            error.starts_with("error: cluster start-up: process") && error.contains("within 2 s"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

/// While the processes connect, one retries (a process below it is not up yet) and one waits
/// (a process above it is not up yet): log lines on stderr, in the log's format and silenced
/// by `--quiet`, never text on stdout. stdout holds process 0's summary line only.
#[test]
fn connecting_is_logged_not_printed() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let run = mk(&tmp.path().join("run"));
    let hosts = hostfile(tmp.path(), 3);
    let mut procs = BTreeMap::new();
    // Process 2 first: it retries connecting to 0; then 0, which waits for 1; then 1.
    for (p, pause) in [(2usize, 1000), (0, 1500), (1, 0)] {
        let (output, state) = if p == 0 {
            (run.join("out"), sqlite(&run))
        } else {
            let peer = tmp.path().join(format!("peer{p}"));
            (peer.join("out"), sqlite(&peer))
        };
        let mut args = y_args(&f.data, &f.landing, &output, &state, true);
        let hosts = hosts.display().to_string();
        args.extend(["-n", "3", "-p", &p.to_string(), "-h", &hosts].map(String::from));
        let logging: &[&str] = if p == 2 {
            &["--quiet"]
        } else {
            &["--log-format", "json"]
        };
        args.extend(logging.iter().map(|a| a.to_string()));
        procs.insert(p, Proc::spawn(&format!("connect-p{p}"), &args, tmp.path()));
        std::thread::sleep(Duration::from_millis(pause));
    }
    for proc in procs.values_mut() {
        proc.wait_ok(RUN_TIMEOUT);
    }
    let summary = procs[&0].stdout_text();
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(summary.starts_with("mechanism-y: "), "{summary}");
    for p in [1, 2] {
        assert_eq!(procs[&p].stdout_text(), "", "process {p}'s stdout");
    }
    for p in [0, 1] {
        for line in procs[&p].stderr_text().lines() {
            let parsed = serde_json::from_str::<serde_json::Value>(line);
            assert!(parsed.is_ok(), "process {p}: not a JSON line: {line}");
        }
    }
    let waited = procs[&0].stderr_text();
    assert!(
        waited.contains("waiting for cluster processes 1 to connect"),
        "process 0 logs its wait: {waited}"
    );
    assert_eq!(procs[&2].stderr_text(), "", "--quiet: no retry lines");
}

/// Processes started with different options are refused by the writer before any commit.
#[test]
fn processes_with_different_options_are_refused() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let run = mk(&tmp.path().join("run"));
    let hosts = hostfile(tmp.path(), 2);
    let mut procs = Vec::new();
    for p in 0..2usize {
        let (output, state) = if p == 0 {
            (run.join("out"), sqlite(&run))
        } else {
            (
                tmp.path().join("peer-out"),
                sqlite(&tmp.path().join("peer")),
            )
        };
        let mut args = y_args(&f.data, &f.landing, &output, &state, true);
        if p == 1 {
            args.extend(["--upgrade-count-percentile".to_string(), "0.8".to_string()]);
        }
        let hosts = hosts.display().to_string();
        args.extend(["-n", "2", "-p", &p.to_string(), "-h", &hosts].map(String::from));
        procs.push(Proc::spawn(&format!("mismatch-p{p}"), &args, tmp.path()));
    }
    for proc in &mut procs {
        assert!(!proc.wait(RUN_TIMEOUT).success(), "{} exited 0", proc.name);
    }
    let error = procs[0].stderr_tail(1);
    assert!(
        error.starts_with("error: the processes of the cluster run with different options")
            && error.contains("process 1 differs in thresholds"),
        "{error}"
    );
    assert!(
        procs[1]
            .stderr_tail(1)
            .starts_with("error: cluster peer lost"),
        "{}",
        procs[1].stderr_tail(1)
    );
    let mut store = state::open(&StateConfig::parse(&sqlite(&run)).unwrap()).unwrap();
    assert!(
        store.epoch_rows().unwrap().is_empty(),
        "nothing may be committed"
    );
}
