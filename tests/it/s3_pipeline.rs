//! The whole pipeline over a real S3 endpoint (s3s + s3s-fs in-process, the real aws-sdk-s3
//! client): Mechanism X writing the landing bucket, Mechanism Y reading it live (and in
//! replay), the importance file and the outputs in buckets too, with restarts, concurrency,
//! injected faults and misconfiguration.
//!
//! The data: 30,000 generated BankSim rows (plus a few bad rows) in 2,000-row chunks, with
//! thresholds scaled down so that all three patterns fire (81 detections: one full file and a
//! short one). The expectation is computed once per test binary, independently of the S3
//! code: the chunks are cut by this file (not by X), written to a local directory, and
//! backtested there; that backtest is itself checked against the independent reference
//! implementation (`common::reference`). Every S3 run must equal it, times aside.
//!
//! `live_latency_over_s3` is a measurement, run by hand in release mode:
//! `cargo test --release --test it --features test-services -- --ignored --nocapture live_latency`
//! (`TXFLOW_LATENCY_CHUNKS`, `TXFLOW_LATENCY_INTERVAL_MS`, `TXFLOW_LATENCY_POLL_MS` override
//! its defaults: 20 chunks of 10,000 rows, one a second, polls of 200 and 20 ms).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::outputs::named_tree;
use common::outputs::{timeless_ledger, TimelessLedgerRow};
use common::process::ChildGuard;
use common::s3::{Fault, FaultyProxy, S3Server, ACCESS_KEY, SECRET_KEY};
use common::streams::{chunk_mtime_ms, format_ist, unix_ms};
use common::wait::wait_until;
use txflow::mechanism_x::{self, XOptions, XSummary};
use txflow::mechanism_y::{self, Mode, ReplayRange, RunSummary, YOptions};
use txflow::model::{Amount, Fraction, Thresholds};
use txflow::objectstore::s3::S3Store;
use txflow::objectstore::{ObjectStore, S3Options};
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{EpochRow, LedgerRow};

const ROWS: u64 = 30_000;
const SEED: u64 = 1;
const CHUNK_ROWS: usize = 2_000;
/// Chunks of the data set (30,000 rows + 2 bad ones, 2,000 a chunk).
const CHUNKS: u64 = 16;
/// Bound of any one Y run in these tests (a debug build takes a few seconds).
const Y_LIMIT: Duration = Duration::from_secs(120);
/// Bound of a binary's run when it is expected to fail fast.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------
// The data set and its expected outcome (once per test binary)
// ------------------------------------------------------------------------------------------

struct Data {
    /// `transactions.csv` (generated, plus two bad rows).
    source: PathBuf,
    importance: Vec<u8>,
    /// The chunks as SPEC §3 defines them, cut by this file.
    chunks: Vec<Vec<u8>>,
    thresholds: Thresholds,
    /// The backtest of the local directory holding `chunks`.
    expected: Outcome,
}

/// The lines of `source` cut into chunks: the header plus up to `rows` records each. The
/// generator writes no quoted newlines and no blank lines, so a record is a line.
fn cut_chunks(source: &[u8], rows: usize) -> Vec<Vec<u8>> {
    let text = std::str::from_utf8(source).expect("UTF-8 source");
    let mut lines = text.split_inclusive('\n');
    let header = lines.next().expect("header");
    let records: Vec<&str> = lines.collect();
    assert!(records.iter().all(|l| l.ends_with('\n') && l.len() > 1));
    records
        .chunks(rows)
        .map(|c| {
            let mut body = header.to_string();
            c.iter().for_each(|l| body.push_str(l));
            body.into_bytes()
        })
        .collect()
}

/// A directory of this test binary's process under the cargo target's temp directory;
/// directories of earlier processes that no longer run are removed.
fn data_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("s3_pipeline-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    let dir = base.join(format!("s3_pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let started = Instant::now();
        let dir = data_dir();
        let gen =
            txgen::generate_with_summary(&dir.join("gen"), &txgen::GenOptions::new(ROWS, SEED))
                .unwrap();
        // Two bad rows (a negative amount, a short row), so that reject files travel too.
        let text = std::fs::read_to_string(&gen.transactions_path).unwrap();
        let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
        lines.insert(
            4_321,
            "3,'C0BAD','4','M','28007','M0BAD','28007','es_food',-1,0\n",
        );
        lines.insert(17_777, "90,'C0SHORT','4','F'\n");
        let source = dir.join("transactions.csv");
        std::fs::write(&source, lines.concat()).unwrap();
        let mut importance = std::fs::read(&gen.importance_path).unwrap();
        importance.extend_from_slice(b"'C0BAD','M0BAD',abc,'es_food',0\n");

        let chunks = cut_chunks(&std::fs::read(&source).unwrap(), CHUNK_ROWS);
        assert_eq!(chunks.len() as u64, CHUNKS);
        let thresholds = Thresholds {
            upgrade_min_merchant_txns: gen.pat1_min_transactions,
            upgrade_count_percentile: Fraction::from_millionths(900_000),
            upgrade_weight_percentile: Fraction::from_millionths(100_000),
            child_min_txns: 20,
            child_max_avg_amount: Amount::from_micros(23_000_000),
            dei_min_female_customers: gen.pat3_min_female,
        };

        // The local backtest and, meanwhile, the reference's expectation.
        let landing = dir.join("landing");
        std::fs::create_dir_all(&landing).unwrap();
        for (k, chunk) in chunks.iter().enumerate() {
            std::fs::write(landing.join(format!("chunk-{k:06}.csv")), chunk).unwrap();
        }
        std::fs::write(landing.join("_COMPLETE"), CHUNKS.to_string()).unwrap();
        let importance_path = dir.join("CustomerImportance.csv");
        std::fs::write(&importance_path, &importance).unwrap();
        let indexed: Vec<(u64, Vec<u8>)> = chunks
            .iter()
            .enumerate()
            .map(|(k, c)| (k as u64, c.clone()))
            .collect();
        let (observed, reference) = std::thread::scope(|s| {
            let reference =
                s.spawn(|| common::reference::expected(&indexed, &importance, &thresholds));
            let output = dir.join("backtest");
            let state = dir.join("backtest.db");
            let mut opts = YOptions::new(
                landing.to_str().unwrap(),
                importance_path.to_str().unwrap(),
                output.to_str().unwrap(),
                StateConfig::parse(&sqlite(&state)).unwrap(),
            );
            opts.mode = Mode::replay(ReplayRange::default());
            opts.thresholds = thresholds;
            opts.timely.workers = 2;
            let summary = run_y(&opts);
            assert!(summary.finished);
            let observed = observe(&state, &output);
            (observed, reference.join().unwrap())
        });
        check_against_reference(&observed, &reference);
        let expected = observed.outcome;
        let mut by_pattern: BTreeMap<&str, usize> = BTreeMap::new();
        for row in &expected.ledger {
            *by_pattern.entry(row.2.as_str()).or_default() += 1;
        }
        assert_eq!(by_pattern.len(), 3, "every pattern fires: {by_pattern:?}");
        assert!(expected.ledger.len() > 50, "{by_pattern:?}");
        assert!(expected
            .files
            .keys()
            .any(|k| k.starts_with("rejects/chunk-")));
        assert!(expected
            .files
            .contains_key("rejects/CustomerImportance.csv"));
        eprintln!(
            "data set: {CHUNKS} chunks, detections {by_pattern:?}, expectation ready in {:.1?}",
            started.elapsed()
        );
        Data {
            source,
            importance,
            chunks,
            thresholds,
            expected,
        }
    })
}

/// The backtest against the independent reference: ledger (SPEC order, first epochs),
/// action types, counters, per-epoch row counts, and files rendered from the ledger.
fn check_against_reference(got: &Observed, e: &common::reference::Expected) {
    let tuples: Vec<(u64, String, String, String)> =
        common::reference::ledger_identities(&got.ledger);
    if let Err(problems) = e.check_ledger(&tuples) {
        panic!("the local backtest disagrees with the reference:\n{problems}");
    }
    for r in &got.ledger {
        assert_eq!(
            r.pattern.action(),
            common::reference::action_of(r.pattern.id()),
            "{r:?}"
        );
    }
    let counts: BTreeMap<String, i64> = got.outcome.counts.iter().cloned().collect();
    assert_eq!(counts, e.counts, "merchant_transaction_counts");
    let epochs: Vec<(u64, u64, u64)> = got
        .epochs
        .iter()
        .map(|r| (r.epoch, r.rows_accepted, r.rows_rejected))
        .collect();
    assert_eq!(epochs, e.epochs, "epochs (accepted, rejected)");
    assert_eq!(e.total_rejected(), 2);
}

// ------------------------------------------------------------------------------------------
// Observing a run: the state store and the output tree
// ------------------------------------------------------------------------------------------

/// A ledger row without its times: `(seq, epoch, pattern, action, customer, merchant,
/// file_seq)`.
/// A run's results without its times: what every run of the same data must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outcome {
    ledger: Vec<TimelessLedgerRow>,
    counts: Vec<(String, i64)>,
    /// `(epoch, chunk key, accepted, rejected)`.
    epochs: Vec<(u64, String, u64, u64)>,
    /// Output objects: detection files without their two time columns; rejects whole.
    files: BTreeMap<String, String>,
}

/// A run's results, times included.
struct Observed {
    outcome: Outcome,
    ledger: Vec<LedgerRow>,
    epochs: Vec<EpochRow>,
    /// Output objects, bytes as stored.
    raw: BTreeMap<String, Vec<u8>>,
}

fn sqlite(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// Reads the state store and the output tree (a local directory, or the s3s-fs directory of
/// an output bucket/prefix) of a finished run, and checks the detection files against the
/// ledger, times included.
fn observe(state: &Path, output_dir: &Path) -> Observed {
    let mut store =
        txflow::sinks::state::open(&StateConfig::parse(&sqlite(state)).unwrap()).unwrap();
    let ledger = store
        .ledger(txflow::sinks::state::LedgerId::Baseline)
        .unwrap();
    let counts = store.merchant_counts().unwrap();
    let epochs = store.epoch_rows().unwrap();
    let raw = named_tree(output_dir);

    let mut files = BTreeMap::new();
    let mut rows_in_files = Vec::new();
    for (key, bytes) in &raw {
        let text = String::from_utf8(bytes.clone()).unwrap();
        if !key.starts_with("detections-") {
            files.insert(key.clone(), text);
            continue;
        }
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId"),
            "{key}"
        );
        let mut stripped = String::new();
        for line in lines {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 6, "{key}: {line}");
            rows_in_files.push((
                key.clone(),
                fields
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<String>>(),
            ));
            stripped.push_str(&fields[2..].join(","));
            stripped.push('\n');
        }
        files.insert(key.clone(), stripped);
    }
    // Files: exactly the ledger, 50 rows a file, in sequence order, times included.
    assert_eq!(rows_in_files.len(), ledger.len(), "rows in detection files");
    for (row, (key, fields)) in ledger.iter().zip(&rows_in_files) {
        let want = format!("detections-{:06}.csv", row.seq / 50);
        assert_eq!(key, &want, "{row:?}");
        assert_eq!(row.file_seq, Some(row.seq / 50), "{row:?}");
        let expected: Vec<String> = vec![
            row.y_start_time.clone(),
            row.detection_time.clone(),
            row.pattern.id().to_string(),
            row.pattern.action().to_string(),
            row.customer_name.clone(),
            row.merchant_id.clone(),
        ];
        assert_eq!(fields, &expected, "{key}");
    }
    for (i, row) in ledger.iter().enumerate() {
        assert_eq!(row.seq, i as u64);
        assert!(
            is_ist(&row.y_start_time) && is_ist(&row.detection_time),
            "{row:?}"
        );
    }

    let outcome = Outcome {
        ledger: timeless_ledger(&ledger),
        counts,
        epochs: epochs
            .iter()
            .map(|r| {
                (
                    r.epoch,
                    r.chunk_key.clone(),
                    r.rows_accepted,
                    r.rows_rejected,
                )
            })
            .collect(),
        files,
    };
    Observed {
        outcome,
        ledger,
        epochs,
        raw,
    }
}

/// `2026-11-25T21:10:03.123+05:30`.
fn is_ist(s: &str) -> bool {
    parse_ist(s).is_some()
}

/// Milliseconds since the Unix epoch of an IST timestamp as the SPEC writes them.
fn parse_ist(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 29 || &s[23..] != "+05:30" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        s.get(r.clone())
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))?
            .parse()
            .ok()
    };
    let seps = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
    ];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let ms = unix_ms(
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
        num(20..23)?,
    );
    Some(ms - (5 * 60 + 30) * 60_000)
}

/// Checks the times of a live run: one `YStartTime`, detection times after it and in order.
fn check_live_times(got: &Observed) {
    let start = &got.ledger[0].y_start_time;
    let mut last = String::new();
    for row in &got.ledger {
        assert_eq!(&row.y_start_time, start, "one YStartTime per run");
        assert!(row.detection_time >= *start, "{row:?}");
        assert!(row.detection_time >= last, "detection times in order");
        last = row.detection_time.clone();
    }
}

// ------------------------------------------------------------------------------------------
// Running the pieces
// ------------------------------------------------------------------------------------------

/// Runs Y to its end, stopping it (and failing) if it takes longer than [`Y_LIMIT`].
fn run_y(opts: &YOptions) -> RunSummary {
    try_run_y(opts).unwrap_or_else(|e| panic!("mechanism Y failed: {e:#}"))
}

fn try_run_y(opts: &YOptions) -> anyhow::Result<RunSummary> {
    let stop = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = {
        let (stop, timed_out) = (stop.clone(), timed_out.clone());
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(Y_LIMIT) {
                timed_out.store(true, Ordering::SeqCst);
                stop.store(true, Ordering::SeqCst);
            }
        })
    };
    let result = mechanism_y::run_with_stop(opts, stop);
    let _ = done.send(());
    watchdog.join().unwrap();
    assert!(
        !timed_out.load(Ordering::SeqCst),
        "mechanism Y did not finish within {Y_LIMIT:?}"
    );
    Ok(result?)
}

fn x_options(landing: &str, s3: S3Options) -> XOptions {
    XOptions {
        source: data().source.clone(),
        landing: landing.to_string(),
        chunk_rows: CHUNK_ROWS,
        interval: Duration::ZERO,
        s3,
        max_chunks: None,
    }
}

/// Live Y options with the test thresholds and 2 workers.
fn y_options(
    landing: &str,
    importance: &str,
    output: &str,
    state: &Path,
    s3: S3Options,
) -> YOptions {
    let mut opts = YOptions::new(
        landing,
        importance,
        output,
        StateConfig::parse(&sqlite(state)).unwrap(),
    );
    opts.thresholds = data().thresholds;
    opts.timely.workers = 2;
    opts.s3 = s3;
    opts
}

/// An S3 store of `server` (for test set-up only).
fn s3_store(server: &S3Server, bucket: &str, prefix: &str) -> S3Store {
    S3Store::connect(bucket.into(), prefix.into(), &server.options()).unwrap()
}

/// Creates the buckets `landing`, `output` and `ref`, and puts the importance file at
/// `s3://ref/weights/CustomerImportance.csv` (returned).
fn set_up_buckets(server: &S3Server) -> String {
    for bucket in ["landing", "output", "ref"] {
        server.create_bucket(bucket);
    }
    s3_store(server, "ref", "weights")
        .put("CustomerImportance.csv", &data().importance)
        .unwrap();
    "s3://ref/weights/CustomerImportance.csv".to_string()
}

/// The landing objects SPEC §3 prescribes for the data set.
fn expected_landing() -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = data()
        .chunks
        .iter()
        .enumerate()
        .map(|(k, c)| (format!("chunk-{k:06}.csv"), c.clone()))
        .collect();
    out.insert("_COMPLETE".into(), CHUNKS.to_string().into_bytes());
    out
}

fn assert_landing(got: &BTreeMap<String, Vec<u8>>, what: &str) {
    let want = expected_landing();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: landing keys"
    );
    for (key, bytes) in &want {
        assert!(got[key] == *bytes, "{what}: {key} differs");
    }
}

/// Waits (bounded) until `path` exists: a starting Y has opened its state store.
/// Runs Y live and, once Y follows the (empty) landing prefix (its state store exists), `x`
/// beside it; both must succeed.
fn live_y_while_x<T: Send>(
    opts: &YOptions,
    state: &Path,
    x: impl FnOnce() -> anyhow::Result<T> + Send,
) -> (RunSummary, T) {
    let (y, x) = std::thread::scope(|s| {
        let y = s.spawn(|| try_run_y(opts));
        wait_until("the state store", Duration::from_secs(60), || {
            state.exists()
        });
        let x = s.spawn(x);
        (y.join().unwrap(), x.join().unwrap())
    });
    let y = y.unwrap_or_else(|e| panic!("mechanism Y failed: {e:#}"));
    let x = x.unwrap_or_else(|e| panic!("mechanism X failed: {e:#}"));
    (y, x)
}

/// The file's modification time in milliseconds since the Unix epoch.
fn mtime_ms(path: &Path) -> i64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs `command` to its end within `limit`: (exit code, stdout, stderr).
fn run_child(command: Command, limit: Duration) -> (Option<i32>, String, String) {
    let finished = ChildGuard::spawn(command).wait(limit);
    (finished.status.code(), finished.stdout, finished.stderr)
}

/// A binary with the S3 endpoint and the test environment (credentials overridable).
fn binary(name: &str, endpoint: &str, secret: &str, args: &[&str]) -> Command {
    let path = match name {
        "mechanism-x" => env!("CARGO_BIN_EXE_mechanism-x"),
        "mechanism-y" => env!("CARGO_BIN_EXE_mechanism-y"),
        _ => unreachable!(),
    };
    let mut command = Command::new(path);
    command
        .args(args)
        .args(["--s3-endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", common::s3::REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("RUST_LOG");
    command
}

// ------------------------------------------------------------------------------------------
// 1. X then Y, everything in buckets
// ------------------------------------------------------------------------------------------

#[test]
fn x_then_live_y_over_s3_equals_the_local_backtest() {
    let data = data();
    let server = S3Server::start();
    let importance = set_up_buckets(&server);
    let work = tempfile::tempdir().unwrap();

    let x = mechanism_x::run(&x_options("s3://landing/feed", server.options())).unwrap();
    assert_eq!(
        (x.chunks_total, x.chunks_written, x.complete),
        (CHUNKS, CHUNKS, true)
    );
    assert_landing(
        &named_tree(&server.root().join("landing/feed")),
        "X into S3",
    );

    let state = work.path().join("state.db");
    let opts = y_options(
        "s3://landing/feed",
        &importance,
        "s3://output/live",
        &state,
        server.options(),
    );
    assert_eq!(opts.poll_interval, Duration::from_millis(200), "S3 default");
    let summary = run_y(&opts);
    assert!(summary.finished);
    assert_eq!(summary.epochs_committed, CHUNKS);
    let got = observe(&state, &server.root().join("output/live"));
    assert_eq!(got.outcome, data.expected);
    check_live_times(&got);
}

// ------------------------------------------------------------------------------------------
// 2. X and Y at the same time
// ------------------------------------------------------------------------------------------

#[test]
fn concurrent_x_and_live_y_over_s3() {
    let data = data();
    let server = S3Server::start();
    let importance = set_up_buckets(&server);
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.db");
    let opts = y_options(
        "s3://landing/feed",
        &importance,
        "s3://output/live",
        &state,
        server.options(),
    );

    let mut xo = x_options("s3://landing/feed", server.options());
    xo.interval = Duration::from_millis(20);
    let (summary, x) = live_y_while_x(&opts, &state, move || Ok(mechanism_x::run(&xo)?));
    assert!(x.complete && summary.finished);
    assert_eq!(summary.epochs_committed, CHUNKS);
    assert_landing(&named_tree(&server.root().join("landing/feed")), "X");
    let got = observe(&state, &server.root().join("output/live"));
    assert_eq!(got.outcome, data.expected);
    check_live_times(&got);
    // Y was running before the first chunk existed.
    let y_start = parse_ist(&got.ledger[0].y_start_time).unwrap();
    let first_chunk = mtime_ms(&server.root().join("landing/feed/chunk-000000.csv"));
    assert!(y_start <= first_chunk, "{y_start} > {first_chunk}");
}

// ------------------------------------------------------------------------------------------
// 3. Restarting X
// ------------------------------------------------------------------------------------------

#[test]
fn restarted_x_writes_the_same_objects_as_an_uninterrupted_one() {
    let server = S3Server::start();
    server.create_bucket("landing");
    server.create_bucket("other");

    // Uninterrupted, into another bucket.
    let straight = mechanism_x::run(&x_options("s3://other/straight", server.options())).unwrap();
    assert!(straight.complete);

    // Interrupted after 5 chunks, then resumed.
    let mut first = x_options("s3://landing/restart", server.options());
    first.max_chunks = Some(5);
    let partial = mechanism_x::run(&first).unwrap();
    assert_eq!((partial.chunks_written, partial.complete), (5, false));
    assert_eq!(named_tree(&server.root().join("landing/restart")).len(), 5);

    // A different chunk size against the partial prefix is refused, and writes nothing.
    let mut other_size = x_options("s3://landing/restart", server.options());
    other_size.chunk_rows = CHUNK_ROWS + 1;
    let err = format!("{:#}", mechanism_x::run(&other_size).unwrap_err());
    assert!(
        err.contains("chunk-000004.csv")
            && err.contains("s3://landing/restart")
            && err.contains("--chunk-rows"),
        "unclear refusal: {err}"
    );
    assert_eq!(named_tree(&server.root().join("landing/restart")).len(), 5);

    let resumed: XSummary =
        mechanism_x::run(&x_options("s3://landing/restart", server.options())).unwrap();
    assert_eq!(
        (
            resumed.chunks_already_present,
            resumed.chunks_written,
            resumed.complete
        ),
        (5, CHUNKS - 5, true)
    );
    let restarted = named_tree(&server.root().join("landing/restart"));
    assert_eq!(restarted, named_tree(&server.root().join("other/straight")));
    assert_landing(&restarted, "restarted X");

    // Once complete, X is a no-op; a different chunk size is still refused.
    let again = mechanism_x::run(&x_options("s3://landing/restart", server.options())).unwrap();
    assert_eq!((again.chunks_written, again.complete), (0, true));
    assert!(mechanism_x::run(&other_size).is_err());
    assert_eq!(
        named_tree(&server.root().join("landing/restart")),
        restarted
    );
}

// ------------------------------------------------------------------------------------------
// 4. Injected faults
// ------------------------------------------------------------------------------------------

#[test]
fn pipeline_through_faulty_proxies_gives_the_fault_free_output() {
    let data = data();
    let server = S3Server::start();
    let importance = set_up_buckets(&server);
    let work = tempfile::tempdir().unwrap();
    // X: 500s on every 3rd request for its first run, 503 SlowDown on every 3rd for its
    // second; Y: every 4th connection reset.
    let x_first = FaultyProxy::start(&server.endpoint, 3, Fault::InternalError);
    let x_second = FaultyProxy::start(&server.endpoint, 3, Fault::SlowDown);
    let y_proxy = FaultyProxy::start(&server.endpoint, 4, Fault::Reset);

    let state = work.path().join("state.db");
    let opts = y_options(
        "s3://landing/feed",
        &importance,
        "s3://output/faulty",
        &state,
        y_proxy.options(),
    );
    let mut first = x_options("s3://landing/feed", x_first.options());
    first.max_chunks = Some(6);
    first.interval = Duration::from_millis(10);
    let second = x_options("s3://landing/feed", x_second.options());
    let (summary, (a, b)) = live_y_while_x(&opts, &state, move || {
        let a = mechanism_x::run(&first)?;
        let b = mechanism_x::run(&second)?;
        anyhow::Ok((a, b))
    });
    assert_eq!((a.chunks_written, b.chunks_written), (6, CHUNKS - 6));
    assert!(b.complete && summary.finished);
    for (name, proxy) in [("X 1st", &x_first), ("X 2nd", &x_second), ("Y", &y_proxy)] {
        eprintln!(
            "{name}: {} requests, {} failed",
            proxy.requests(),
            proxy.faults()
        );
        assert!(proxy.faults() >= 3, "{name}: too few faults injected");
    }
    assert_landing(
        &named_tree(&server.root().join("landing/feed")),
        "X through faults",
    );
    let got = observe(&state, &server.root().join("output/faulty"));
    assert_eq!(got.outcome, data.expected);
    check_live_times(&got);
}

// ------------------------------------------------------------------------------------------
// 5. Misconfiguration, from the binaries
// ------------------------------------------------------------------------------------------

/// Fails unless the binary failed fast with one error line on stderr holding `needles`.
fn assert_clear_failure(what: &str, command: Command, needles: &[&str]) {
    let started = Instant::now();
    let (code, stdout, stderr) = run_child(command, CHILD_LIMIT);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        code.is_some_and(|c| c != 0),
        "{what}: exit {code:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    // One line says what failed; anything before it is progress logging (INFO), no
    // warnings (a permanent error is not retried) and no panic.
    let (line, logs) = lines.split_last().expect("a line on stderr");
    assert!(line.starts_with("error: "), "{what}: last line: {line}");
    for log in logs {
        assert!(
            log.contains(" INFO") && !log.contains("error") && !log.contains("WARN"),
            "{what}: unexpected line on stderr: {log}\n{stderr}"
        );
    }
    for needle in needles {
        assert!(
            line.contains(needle),
            "{what}: {needle:?} missing from: {line}"
        );
    }
    assert!(!line.contains(SECRET_KEY) && !line.contains("wrong-secret"));
    assert!(!line.contains("panicked"), "{what}: {line}");
    eprintln!("{what} ({:.1?}): {line}", started.elapsed());
}

#[test]
fn missing_bucket_and_bad_credentials_fail_clearly_from_the_binaries() {
    let data = data();
    let server = S3Server::start();
    let importance = set_up_buckets(&server);
    let work = tempfile::tempdir().unwrap();
    let ep = server.endpoint.as_str();
    let source = data.source.to_str().unwrap();
    let state = sqlite(&work.path().join("state.db"));
    let x_args = |landing: &'static str| {
        vec![
            "--source",
            source,
            "--landing",
            landing,
            "--interval-ms",
            "0",
        ]
    };
    let y_args = |landing: &'static str, importance: &str, output: &'static str| {
        [
            "--landing",
            landing,
            "--importance",
            importance,
            "--output",
            output,
            "--state",
            &state,
        ]
        .map(String::from)
    };
    let y = |secret: &str, args: [String; 8]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        binary("mechanism-y", ep, secret, &args)
    };
    let missing = ["does not exist", "create it"];

    assert_clear_failure(
        "X, missing landing bucket",
        binary(
            "mechanism-x",
            ep,
            SECRET_KEY,
            &x_args("s3://no-such-landing/feed"),
        ),
        &[&missing[..], &["\"no-such-landing\""]].concat(),
    );
    assert_clear_failure(
        "X, bad credentials",
        binary(
            "mechanism-x",
            ep,
            "wrong-secret",
            &x_args("s3://landing/feed"),
        ),
        &[
            "s3://landing/feed",
            "credentials were rejected",
            "AWS_SECRET_ACCESS_KEY",
        ],
    );
    assert_clear_failure(
        "Y, missing landing bucket",
        y(
            SECRET_KEY,
            y_args("s3://no-such-landing/feed", &importance, "s3://output/o"),
        ),
        &[&missing[..], &["\"no-such-landing\""]].concat(),
    );
    assert_clear_failure(
        "Y, missing output bucket",
        y(
            SECRET_KEY,
            y_args("s3://landing/feed", &importance, "s3://no-such-output/o"),
        ),
        &[&missing[..], &["\"no-such-output\""]].concat(),
    );
    assert_clear_failure(
        "Y, missing importance bucket",
        y(
            SECRET_KEY,
            y_args(
                "s3://landing/feed",
                "s3://no-such-ref/w.csv",
                "s3://output/o",
            ),
        ),
        &[&missing[..], &["\"no-such-ref\""]].concat(),
    );
    assert_clear_failure(
        "Y, bad credentials",
        y(
            "wrong-secret",
            y_args("s3://landing/feed", &importance, "s3://output/o"),
        ),
        &[
            "s3://landing/feed",
            "credentials were rejected",
            "AWS_SECRET_ACCESS_KEY",
        ],
    );
    // Nothing was written anywhere.
    assert!(named_tree(&server.root().join("landing")).is_empty());
    assert!(named_tree(&server.root().join("output")).is_empty());
}

// ------------------------------------------------------------------------------------------
// 6. Replay from the S3 landing
// ------------------------------------------------------------------------------------------

#[test]
fn replay_from_s3_is_byte_identical_for_any_worker_count() {
    let data = data();
    let server = S3Server::start();
    let importance = set_up_buckets(&server);
    let work = tempfile::tempdir().unwrap();
    // The chunks with known, distinct last-modified times (s3s-fs reports file mtimes).
    let landing = s3_store(&server, "landing", "hist");
    for (k, chunk) in data.chunks.iter().enumerate() {
        landing.put(&format!("chunk-{k:06}.csv"), chunk).unwrap();
        let path = server.root().join(format!("landing/hist/chunk-{k:06}.csv"));
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_millis(chunk_mtime_ms(k as u64) as u64))
            .unwrap();
    }
    landing
        .put("_COMPLETE", CHUNKS.to_string().as_bytes())
        .unwrap();

    // -w 1 in-process, -w 3 by the binary (credentials from the environment).
    let state = work.path().join("w1.db");
    let mut opts = y_options(
        "s3://landing/hist",
        &importance,
        "s3://output/w1",
        &state,
        server.options(),
    );
    opts.mode = Mode::replay(ReplayRange::default());
    opts.timely.workers = 1;
    assert!(run_y(&opts).finished);
    let w1 = &observe(&state, &server.root().join("output/w1"));

    let state = work.path().join("w3.db");
    let t = data.thresholds;
    let numbers = [
        t.upgrade_min_merchant_txns.to_string(),
        t.child_min_txns.to_string(),
        t.dei_min_female_customers.to_string(),
    ];
    let state_url = sqlite(&state);
    #[rustfmt::skip]
    let args = [
        "--landing", "s3://landing/hist", "--importance", &importance,
        "--output", "s3://output/w3", "--state", &state_url, "--replay", "-w", "3",
        "--upgrade-min-merchant-txns", &numbers[0], "--upgrade-count-percentile", "0.9",
        "--upgrade-weight-percentile", "0.1", "--child-min-txns", &numbers[1],
        "--child-max-avg-amount", "23", "--dei-min-female-customers", &numbers[2],
    ];
    let y = binary("mechanism-y", &server.endpoint, SECRET_KEY, &args);
    let (code, stdout, stderr) = run_child(y, Y_LIMIT);
    assert_eq!(code, Some(0), "mechanism-y: {stdout}\n{stderr}");
    assert!(stdout.contains("stream ended"), "{stdout}");
    let w3 = &observe(&state, &server.root().join("output/w3"));
    assert_eq!(w1.outcome, data.expected);
    assert!(
        w1.raw == w3.raw,
        "output bytes differ between -w 1 and -w 3"
    );
    assert_eq!(w1.ledger, w3.ledger);
    assert_eq!(w1.epochs, w3.epochs);

    // Times come from the chunk objects' LastModified (whole seconds on S3).
    let last_modified = |k: u64| format_ist(chunk_mtime_ms(k).div_euclid(1000) * 1000);
    for row in &w1.ledger {
        assert_eq!(row.y_start_time, last_modified(0), "{row:?}");
        assert_eq!(row.detection_time, last_modified(row.epoch), "{row:?}");
    }
    for row in &w1.epochs {
        assert_eq!(row.committed_at, last_modified(row.epoch), "{row:?}");
    }
}

// ------------------------------------------------------------------------------------------
// 7. Latency (a measurement, run by hand)
// ------------------------------------------------------------------------------------------

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[test]
#[ignore = "a measurement: cargo test --release --test it --features test-services -- --ignored --nocapture live_latency"]
fn live_latency_over_s3() {
    let chunks = env_u64("TXFLOW_LATENCY_CHUNKS", 20);
    let interval = Duration::from_millis(env_u64("TXFLOW_LATENCY_INTERVAL_MS", 1000));
    let polls: Vec<u64> = match std::env::var("TXFLOW_LATENCY_POLL_MS") {
        Ok(v) => v.split(',').map(|p| p.trim().parse().unwrap()).collect(),
        Err(_) => vec![200, 20],
    };
    let work = tempfile::tempdir().unwrap();
    let gen = txgen::generate_with_summary(
        &work.path().join("gen"),
        &txgen::GenOptions::new(chunks * 10_000, 42),
    )
    .unwrap();
    let server = S3Server::start();
    for bucket in ["landing", "output", "ref"] {
        server.create_bucket(bucket);
    }
    s3_store(&server, "ref", "w")
        .put(
            "CustomerImportance.csv",
            &std::fs::read(&gen.importance_path).unwrap(),
        )
        .unwrap();

    let mut prefixes = Vec::new();
    for poll in polls {
        let state = work.path().join(format!("poll{poll}.db"));
        let prefix = format!("poll{poll}");
        let mut opts = YOptions::new(
            &format!("s3://landing/{prefix}"),
            "s3://ref/w/CustomerImportance.csv",
            &format!("s3://output/{prefix}"),
            StateConfig::parse(&sqlite(&state)).unwrap(),
        );
        opts.s3 = server.options();
        opts.timely.workers = 2;
        opts.poll_interval = Duration::from_millis(poll);
        let summary = std::thread::scope(|s| {
            let y = s.spawn(|| run_y(&opts));
            wait_until("the state store", Duration::from_secs(60), || {
                state.exists()
            });
            let xo = XOptions {
                source: gen.transactions_path.clone(),
                landing: format!("s3://landing/{prefix}"),
                chunk_rows: 10_000,
                interval,
                s3: server.options(),
                max_chunks: None,
            };
            s.spawn(move || mechanism_x::run(&xo).unwrap())
                .join()
                .unwrap();
            y.join().unwrap()
        });
        assert_eq!(summary.epochs_committed, chunks);
        // As RunSummary reports it: LastModified (whole seconds over S3) → commit.
        let mut reported = summary.visible_to_commit_ms.clone();
        reported.sort_unstable();
        // Precisely: the object's arrival (the s3s-fs file's mtime, in ms) → the epoch's
        // committed_at (the commit's wall clock, in ms).
        let mut store =
            txflow::sinks::state::open(&StateConfig::parse(&sqlite(&state)).unwrap()).unwrap();
        let mut precise: Vec<i64> = store
            .epoch_rows()
            .unwrap()
            .iter()
            .map(|row| {
                let path = server
                    .root()
                    .join(format!("landing/{prefix}/{}", row.chunk_key));
                parse_ist(&row.committed_at).unwrap() - mtime_ms(&path)
            })
            .collect();
        precise.sort_unstable();
        let mut compute: Vec<i64> = summary
            .epoch_latencies
            .iter()
            .map(|d| d.as_millis() as i64)
            .collect();
        compute.sort_unstable();
        eprintln!(
            "poll {poll} ms, {chunks} chunks of 10,000 rows every {interval:?}, -w 2:\n  \
             visible_to_commit_ms (LastModified, 1 s resolution): p50 {} p99 {} max {}\n  \
             arrival (ms mtime) -> commit:                     p50 {} p99 {} max {}\n  \
             chunk taken up -> commit (computation):            p50 {} p99 {} max {}",
            percentile(&reported, 0.5),
            percentile(&reported, 0.99),
            reported.last().unwrap(),
            percentile(&precise, 0.5),
            percentile(&precise, 0.99),
            precise.last().unwrap(),
            percentile(&compute, 0.5),
            percentile(&compute, 0.99),
            compute.last().unwrap(),
        );
        prefixes.push(prefix);
    }
    // One component of the fetch: a GET of a 10,000-row chunk through the SDK.
    let store = s3_store(&server, "landing", &prefixes[0]);
    let mut gets: Vec<i64> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let object = store.get("chunk-000001.csv").unwrap().unwrap();
            assert!(object.body.len() > 100_000);
            started.elapsed().as_millis() as i64
        })
        .collect();
    gets.sort_unstable();
    eprintln!(
        "GET of a 10,000-row chunk: p50 {} ms, max {} ms",
        percentile(&gets, 0.5),
        gets.last().unwrap()
    );
}

// ------------------------------------------------------------------------------------------
// A backtest with variants writes the same objects to S3 as to a local directory
// ------------------------------------------------------------------------------------------

/// Every object of a backtest with variants — the baseline's and the variants' detection
/// files (`variants/<name>/…`), rejects and the comparison report — is the same in an S3
/// output bucket as in a local directory.
#[test]
fn backtest_with_variants_writes_the_same_objects_to_s3_as_locally() {
    let server = S3Server::start();
    let importance = set_up_buckets(&server);
    let work = tempfile::tempdir().unwrap();
    mechanism_x::run(&x_options("s3://landing/feed", server.options())).unwrap();
    let variants = vec![
        txflow::model::Variant {
            name: "child-loose".into(),
            thresholds: Thresholds {
                child_min_txns: data().thresholds.child_min_txns / 2,
                ..data().thresholds
            },
        },
        txflow::model::Variant {
            name: "upgrade-p50".into(),
            thresholds: Thresholds {
                upgrade_count_percentile: Fraction::from_millionths(500_000),
                ..data().thresholds
            },
        },
    ];
    let local_out = work.path().join("local-out");
    let outputs = [
        ("s3://output/variants", work.path().join("s3.db")),
        (local_out.to_str().unwrap(), work.path().join("local.db")),
    ];
    for (output, state) in &outputs {
        let mut opts = y_options(
            "s3://landing/feed",
            &importance,
            output,
            state,
            server.options(),
        );
        opts.mode = Mode::Replay {
            range: ReplayRange::default(),
            variants: variants.clone(),
        };
        assert!(run_y(&opts).finished, "{output}");
    }
    let in_s3 = named_tree(&server.root().join("output/variants"));
    let local = named_tree(&local_out);
    assert_eq!(
        in_s3.keys().collect::<Vec<_>>(),
        local.keys().collect::<Vec<_>>()
    );
    assert!(in_s3 == local, "the objects' bytes differ");
    for v in &variants {
        let prefix = format!("variants/{}/detections-", v.name);
        assert!(in_s3.keys().any(|k| k.starts_with(&prefix)), "{prefix}…");
    }
    assert!(in_s3.contains_key("backtest-report.html") && in_s3.contains_key("variants.csv"));
}

// ------------------------------------------------------------------------------------------
// 8. Checkpoints on S3
// ------------------------------------------------------------------------------------------

/// A backtest writes its checkpoints to S3 through a proxy that fails every 5th request (the
/// store retries); stopped after two are recorded, the newest is damaged (a shard removed:
/// a checkpoint whose objects are partly gone), and a restart on other worker counts falls
/// back to the older one and ends with the reference's outcome and the uninterrupted
/// replay's bytes.
#[test]
fn checkpoints_on_s3_restore_and_fall_back() {
    let data = data();
    let server = S3Server::start();
    let importance = set_up_buckets(&server);
    let work = tempfile::tempdir().unwrap();
    let landing = s3_store(&server, "landing", "ck");
    for (k, chunk) in data.chunks.iter().enumerate() {
        landing.put(&format!("chunk-{k:06}.csv"), chunk).unwrap();
    }
    landing
        .put("_COMPLETE", CHUNKS.to_string().as_bytes())
        .unwrap();
    let state = work.path().join("state.db");
    let proxy = FaultyProxy::start(&server.endpoint, 5, Fault::InternalError);
    let mut opts = y_options(
        "s3://landing/ck",
        &importance,
        "s3://output/ck",
        &state,
        proxy.options(),
    );
    opts.mode = Mode::replay(ReplayRange::default());
    opts.checkpoints.interval = 3;
    opts.checkpoints.location = Some("s3://output/ck-checkpoints".into());

    // The first run, stopped once two checkpoints are recorded.
    let recorded = |state: &Path| -> Vec<u64> {
        txflow::sinks::state::open(&StateConfig::parse(&sqlite(state)).unwrap())
            .and_then(|mut s| s.checkpoints())
            .map(|rows| rows.iter().map(|r| r.epoch).collect())
            .unwrap_or_default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let first = {
        let (opts, stop) = (opts.clone(), stop.clone());
        std::thread::spawn(move || mechanism_y::run_with_stop(&opts, stop))
    };
    let started = Instant::now();
    while recorded(&state).len() < 2 {
        assert!(!first.is_finished(), "the run ended before two checkpoints");
        assert!(started.elapsed() < Y_LIMIT, "no two checkpoints");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    let summary = first.join().unwrap().expect("the first run");
    assert!(!summary.finished, "stopped before the end");
    let committed = summary.epochs_committed;
    assert!(proxy.faults() > 0, "no fault was injected");
    let checkpoints = recorded(&state);
    let (older, newest) = (checkpoints[0], checkpoints[1]);
    let objects = s3_store(&server, "output", "ck-checkpoints");
    let shard = format!("epoch-{newest:012}/shard-0001-of-0002.bin");
    assert!(objects.head(&shard).unwrap().is_some(), "{shard}");
    objects.delete(&shard).unwrap();

    // The restart: -w 3, straight to the server; it restores the older checkpoint.
    opts.s3 = server.options();
    opts.timely.workers = 3;
    let summary = run_y(&opts);
    assert!(summary.finished);
    // The restored epoch, then the committed ones after it.
    assert_eq!(
        summary.epochs_recovered,
        committed - older,
        "recovered epochs of {committed} committed (checkpoints {older}, {newest})"
    );
    let got = observe(&state, &server.root().join("output/ck"));
    assert_eq!(got.outcome, data.expected);

    // The uninterrupted replay's bytes.
    let plain_state = work.path().join("plain.db");
    let mut plain = y_options(
        "s3://landing/ck",
        &importance,
        "s3://output/plain",
        &plain_state,
        server.options(),
    );
    plain.mode = Mode::replay(ReplayRange::default());
    plain.checkpoints.interval = 0;
    assert!(run_y(&plain).finished);
    let want = observe(&plain_state, &server.root().join("output/plain"));
    assert!(
        got.raw == want.raw,
        "output bytes differ from the uninterrupted replay"
    );
    assert_eq!(got.ledger, want.ledger);
    assert_eq!(got.epochs, want.epochs);
}
