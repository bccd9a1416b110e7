//! End to end on local directories: generator → Mechanism X → Mechanism Y, checked against
//! the independent reference (`tests/common/reference.rs`).
//!
//! - `library_pipeline_matches_reference`: the library entry points, X on a thread
//!   concurrently with a live Y (2 workers).
//! - `binaries_pipeline_and_replay_subrange`: the same through the CLIs (`txgen`,
//!   `mechanism-x`, `mechanism-y` live and `--replay --from --to`), and a second replay with
//!   a different range on the same state store is refused.
//! - `demo_runs_and_summarizes`: `txflow-demo` end to end.
//!
//! Thresholds are scaled down so that all three patterns fire on 40,000 rows.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::outputs::{is_ist_timestamp, read_csv};
use common::paths::s;
use common::process::{generated_data, ChildGuard, Finished};
use common::reference::{self, action_of, Expected};
use common::streams::format_ist;
use txflow::mechanism_x::{self, XOptions};
use txflow::mechanism_y::{self, TimelyOptions, YOptions};
use txflow::model::Thresholds;
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{EpochRow, LedgerRow};
use txgen::GenOptions;

const ROWS: u64 = 40_000;
const SEED: u64 = 7;
const CHUNK_ROWS: usize = 2_000;
const CHUNKS: u64 = ROWS / CHUNK_ROWS as u64;
const DETECTION_HEADER: &str =
    "YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId";
/// Upper bound on any single run (a debug build takes a few seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Small enough for 40,000 generated rows: the largest merchants exceed 3,000 transactions,
/// some pairs reach 20 transactions, some merchants have more than 5 female customers.
fn thresholds() -> Thresholds {
    Thresholds {
        upgrade_min_merchant_txns: 3_000,
        child_min_txns: 20,
        dei_min_female_customers: 5,
        ..Thresholds::default()
    }
}

/// The same thresholds as `mechanism-y` options.
fn threshold_args() -> Vec<String> {
    let t = thresholds();
    [
        "--upgrade-min-merchant-txns".to_string(),
        t.upgrade_min_merchant_txns.to_string(),
        "--child-min-txns".to_string(),
        t.child_min_txns.to_string(),
        "--dei-min-female-customers".to_string(),
        t.dei_min_female_customers.to_string(),
    ]
    .into()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn mtime_ms(path: &Path) -> i64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

// ------------------------------------------------------------------------------------------
// Child processes, always bounded and killed on failure
// ------------------------------------------------------------------------------------------

/// Starts `bin args` with `RUST_LOG=warn`, capturing stdout and stderr.
fn spawn(bin: &str, args: &[String]) -> ChildGuard {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    ChildGuard::spawn(command)
}

fn run_bin(bin: &str, args: &[String]) -> Finished {
    spawn(bin, args).wait(RUN_TIMEOUT)
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|a| a.to_string()).collect()
}

/// Runs `f` on a thread and waits at most `timeout` for it.
fn bounded<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|e| panic!("{what} did not finish within {timeout:?} ({e})"))
}

// ------------------------------------------------------------------------------------------
// Reading what the pipeline left behind
// ------------------------------------------------------------------------------------------

/// The chunk objects of a landing directory, `(index, bytes, mtime ms)`, checked to be
/// numbered contiguously from 0 and to be followed by `_COMPLETE` naming their count.
fn read_landing(landing: &Path) -> Vec<(u64, Vec<u8>, i64)> {
    let mut names: Vec<String> = fs::read_dir(landing)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("chunk-"))
        .collect();
    names.sort();
    let mut chunks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(name, &format!("chunk-{i:06}.csv"), "landing chunk names");
        let path = landing.join(name);
        chunks.push((i as u64, fs::read(&path).unwrap(), mtime_ms(&path)));
    }
    let complete = fs::read_to_string(landing.join("_COMPLETE")).expect("_COMPLETE written");
    assert_eq!(complete.trim(), chunks.len().to_string(), "_COMPLETE body");
    chunks
}

/// Checks that the chunks are the source cut into `CHUNK_ROWS`-record pieces, each with the
/// header, in order, byte for byte (the generator writes one record per line).
fn check_chunks_cut_source(source: &Path, chunks: &[(u64, Vec<u8>, i64)]) {
    let text = fs::read_to_string(source).unwrap();
    let mut lines = text.split_inclusive('\n');
    let header = lines.next().unwrap();
    let records: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    let want: Vec<String> = records
        .chunks(CHUNK_ROWS)
        .map(|piece| format!("{header}{}", piece.concat()))
        .collect();
    assert_eq!(chunks.len(), want.len(), "number of chunks");
    for ((k, bytes, _), want) in chunks.iter().zip(&want) {
        assert!(
            bytes.as_slice() == want.as_bytes(),
            "chunk {k} is not the source's records {}..{} with the header",
            *k as usize * CHUNK_ROWS,
            (*k as usize + 1) * CHUNK_ROWS
        );
    }
}

struct StateDump {
    ledger: Vec<LedgerRow>,
    counts: Vec<(String, i64)>,
    epochs: Vec<EpochRow>,
}

fn read_state(url: &str) -> StateDump {
    let mut store = txflow::sinks::state::open(&StateConfig::parse(url).unwrap())
        .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    StateDump {
        ledger: store
            .ledger(txflow::sinks::state::LedgerId::Baseline)
            .unwrap(),
        counts: store.merchant_counts().unwrap(),
        epochs: store.epoch_rows().unwrap(),
    }
}

/// How the run's times must look.
enum Times<'a> {
    /// Live: one YStartTime within `[started_ms, ended_ms]`, detection times after it.
    Live { started_ms: i64, ended_ms: i64 },
    /// Replay: from the chunk objects' mtimes, by chunk index.
    Replay { mtimes: &'a BTreeMap<u64, i64> },
}

/// Checks a run's state store and output directory against the reference.
fn check_run(e: &Expected, got: &StateDump, output: &Path, times: Times<'_>) {
    // Ledger rows: sequence, action, file.
    for (i, row) in got.ledger.iter().enumerate() {
        assert_eq!(row.seq, i as u64, "ledger seq");
        assert_eq!(row.pattern.action(), action_of(row.pattern.id()), "row {i}");
        assert_eq!(row.file_seq, Some(row.seq / 50), "row {i} file_seq");
        if row.pattern.id() == reference::PAT_DEI {
            assert_eq!(row.customer_name, "", "PatId3 has an empty customerName");
        }
        // Live runs and replays alike store why each detection fired (its values are
        // checked against the reference in tests/backtest_variants.rs).
        let evidence: serde_json::Value =
            serde_json::from_str(row.evidence.as_deref().unwrap_or("null")).unwrap();
        let key = match row.pattern.id() {
            reference::PAT_DEI => "female_customers",
            _ => "customer_txns",
        };
        assert!(
            evidence[key].as_u64().is_some(),
            "row {i} evidence {evidence}"
        );
    }
    let tuples: Vec<(u64, String, String, String)> =
        common::reference::ledger_identities(&got.ledger);
    match e.check_ledger(&tuples) {
        Ok(report) => eprintln!(
            "ledger of {} matches the reference ({} of {} tie-touched detections decided as \"fails\")",
            tuples.len(),
            report.decided_other_way,
            report.tie_touched
        ),
        Err(msg) => panic!("ledger vs reference:\n{msg}"),
    }

    // Merchant counts.
    let counts: BTreeMap<String, i64> = got.counts.iter().cloned().collect();
    assert_eq!(counts.len(), got.counts.len(), "merchant rows are unique");
    assert_eq!(counts, e.counts, "merchant_transaction_counts");

    // Epoch rows.
    let epochs: Vec<(u64, u64, u64)> = got
        .epochs
        .iter()
        .map(|r| (r.epoch, r.rows_accepted, r.rows_rejected))
        .collect();
    assert_eq!(epochs, e.epochs, "epoch rows (epoch, accepted, rejected)");
    for r in &got.epochs {
        assert!(
            r.chunk_key.ends_with(&format!("chunk-{:06}.csv", r.epoch)),
            "epoch {} chunk_key {:?}",
            r.epoch,
            r.chunk_key
        );
        assert!(
            is_ist_timestamp(&r.committed_at),
            "committed_at {:?}",
            r.committed_at
        );
    }
    assert!(
        got.epochs
            .windows(2)
            .all(|w| w[0].committed_at <= w[1].committed_at),
        "committed_at non-decreasing"
    );

    // Detection files: the ledger, 50 rows a file, the last one shorter.
    let mut names: Vec<String> = fs::read_dir(output)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("detections-"))
        .collect();
    names.sort();
    let n_files = got.ledger.len().div_ceil(50);
    let want_names: Vec<String> = (0..n_files)
        .map(|i| format!("detections-{i:06}.csv"))
        .collect();
    assert_eq!(names, want_names, "detection files");
    for (i, name) in names.iter().enumerate() {
        let path = output.join(name);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next(),
            Some(DETECTION_HEADER),
            "{name}: header"
        );
        let records = read_csv(&path);
        let data = &records[1..];
        let rows = &got.ledger[i * 50..((i + 1) * 50).min(got.ledger.len())];
        if i + 1 < n_files {
            assert_eq!(data.len(), 50, "{name}: a full file");
        } else {
            assert!(
                (1..=50).contains(&data.len()),
                "{name}: {} rows",
                data.len()
            );
        }
        assert_eq!(data.len(), rows.len(), "{name}: rows");
        for (row, l) in data.iter().zip(rows) {
            let want = [
                l.y_start_time.as_str(),
                l.detection_time.as_str(),
                l.pattern.id(),
                l.pattern.action(),
                l.customer_name.as_str(),
                l.merchant_id.as_str(),
            ];
            assert_eq!(row, &want, "{name}: row of seq {}", l.seq);
        }
    }

    // Times.
    let starts: BTreeSet<&str> = got.ledger.iter().map(|l| l.y_start_time.as_str()).collect();
    assert!(starts.len() <= 1, "several YStartTimes: {starts:?}");
    for l in &got.ledger {
        assert!(
            is_ist_timestamp(&l.y_start_time) && is_ist_timestamp(&l.detection_time),
            "seq {}: times ({}, {})",
            l.seq,
            l.y_start_time,
            l.detection_time
        );
    }
    assert!(
        got.ledger
            .windows(2)
            .all(|w| w[0].detection_time <= w[1].detection_time),
        "detectionTime non-decreasing"
    );
    match times {
        Times::Live {
            started_ms,
            ended_ms,
        } => {
            // Same offset and width: the strings compare as the instants do.
            let (lo, hi) = (format_ist(started_ms - 1), format_ist(ended_ms + 1));
            for l in &got.ledger {
                assert!(
                    lo <= l.y_start_time
                        && l.y_start_time <= l.detection_time
                        && l.detection_time <= hi,
                    "seq {}: times ({}, {}) outside the run [{lo}, {hi}]",
                    l.seq,
                    l.y_start_time,
                    l.detection_time
                );
            }
            // Every detection of an epoch carries that epoch's commit time.
            let committed: BTreeMap<u64, &str> = got
                .epochs
                .iter()
                .map(|r| (r.epoch, r.committed_at.as_str()))
                .collect();
            for l in &got.ledger {
                assert_eq!(
                    Some(&l.detection_time.as_str()),
                    committed.get(&l.epoch),
                    "seq {}: detectionTime is its epoch's commit time",
                    l.seq
                );
            }
        }
        Times::Replay { mtimes } => {
            let first = *mtimes.keys().next().unwrap();
            let start = format_ist(mtimes[&first]);
            for l in &got.ledger {
                assert_eq!(l.y_start_time, start, "seq {}: YStartTime", l.seq);
                assert_eq!(
                    l.detection_time,
                    format_ist(mtimes[&l.epoch]),
                    "seq {}: detectionTime is chunk {}'s mtime",
                    l.seq,
                    l.epoch
                );
            }
        }
    }
}

/// The reference's expectation for `chunks` with the generated importance file and
/// [`thresholds`]. Two tests run the same generated stream; the (slow, debug-built) reference
/// runs once for it, the other test waiting for and reusing the result when its chunks and
/// importance bytes are identical.
fn expected_cached(chunks: &[(u64, Vec<u8>)], importance: &[u8]) -> Arc<Expected> {
    type Cached = (Vec<(u64, Vec<u8>)>, Vec<u8>, Arc<Expected>);
    static CACHE: Mutex<Vec<Cached>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, e)) = cache
        .iter()
        .find(|(c, i, _)| c.as_slice() == chunks && i.as_slice() == importance)
    {
        return e.clone();
    }
    let e = Arc::new(reference::expected(chunks, importance, &thresholds()));
    cache.push((chunks.to_vec(), importance.to_vec(), e.clone()));
    e
}

/// What the thresholds must make of the generated data, for the checks to mean something.
fn check_coverage(e: &Expected, min_total: usize) {
    let per: BTreeMap<&str, usize> = e.detections.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.1.as_str()).or_default() += 1;
        m
    });
    eprintln!("reference detections per pattern: {per:?}");
    for p in [
        reference::PAT_UPGRADE,
        reference::PAT_CHILD,
        reference::PAT_DEI,
    ] {
        assert!(
            per.get(p).copied().unwrap_or(0) > 0,
            "no {p} detection expected"
        );
    }
    assert!(
        e.detections.len() > min_total,
        "only {} detections expected",
        e.detections.len()
    );
    let epochs: BTreeSet<u64> = e.detections.iter().map(|d| d.0).collect();
    assert!(
        epochs.len() > 3,
        "detections in only {} epochs",
        epochs.len()
    );
}

// ------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------

#[test]
fn library_pipeline_matches_reference() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = generated_data(ROWS, SEED);
    let landing = tmp.path().join("landing");
    let output = tmp.path().join("output");
    let state = format!("sqlite://{}", tmp.path().join("state.db").display());
    let source = data.join("transactions.csv");
    let importance = data.join("CustomerImportance.csv");

    // X on a thread, concurrently with a live Y.
    let mut x = XOptions::new(&source, s(&landing));
    x.chunk_rows = CHUNK_ROWS;
    x.interval = Duration::ZERO;
    let (x_tx, x_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = x_tx.send(mechanism_x::run(&x).map_err(|e| format!("{e:#}")));
    });

    let mut y = YOptions::new(
        s(&landing),
        s(&importance),
        s(&output),
        StateConfig::parse(&state).unwrap(),
    );
    y.thresholds = thresholds();
    y.timely = TimelyOptions {
        workers: 2,
        ..TimelyOptions::default()
    };
    let started_ms = now_ms();
    let summary = bounded("mechanism_y::run", RUN_TIMEOUT, move || {
        mechanism_y::run(&y).map_err(|e| format!("{e:#}"))
    })
    .expect("Y run");
    let ended_ms = now_ms();
    let xs = x_rx
        .recv_timeout(RUN_TIMEOUT)
        .expect("X finishes")
        .expect("X run");
    assert_eq!(
        (
            xs.chunks_total,
            xs.chunks_written,
            xs.rows_written,
            xs.complete
        ),
        (CHUNKS, CHUNKS, ROWS, true),
        "X summary {xs:?}"
    );
    eprintln!("pipeline ran in {:?}", t0.elapsed());

    let chunks = read_landing(&landing);
    assert_eq!(chunks.len() as u64, CHUNKS);
    check_chunks_cut_source(&source, &chunks);
    let indexed: Vec<(u64, Vec<u8>)> = chunks.iter().map(|(k, b, _)| (*k, b.clone())).collect();
    let e = expected_cached(&indexed, &fs::read(&importance).unwrap());
    check_coverage(&e, 50);
    assert_eq!(
        e.total_accepted(),
        ROWS,
        "the generator writes only good rows"
    );

    let got = read_state(&state);
    check_run(
        &e,
        &got,
        &output,
        Times::Live {
            started_ms,
            ended_ms,
        },
    );
    assert!(
        got.ledger.len().div_ceil(50) >= 2,
        "several detection files"
    );

    // The summary agrees with the state store.
    assert!(summary.finished, "{summary:?}");
    assert_eq!(summary.epochs_committed, CHUNKS, "{summary:?}");
    assert_eq!(summary.epochs_recovered, 0, "{summary:?}");
    assert_eq!(
        (summary.rows_accepted, summary.rows_rejected),
        (e.total_accepted(), e.total_rejected()),
        "{summary:?}"
    );
    assert_eq!(summary.detections_total, got.ledger.len() as u64);
    assert_eq!(summary.files_written, got.ledger.len().div_ceil(50) as u64);
    // Nothing was rejected, so no rejects file for any chunk.
    let rejects = output.join("rejects");
    if rejects.exists() {
        let chunk_rejects: Vec<_> = fs::read_dir(&rejects)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("chunk-"))
            .collect();
        assert!(chunk_rejects.is_empty(), "{chunk_rejects:?}");
    }
    eprintln!("library_pipeline_matches_reference: {:?}", t0.elapsed());
}

#[test]
fn binaries_pipeline_and_replay_subrange() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    let (data, landing) = (p("data"), p("landing"));

    // txgen: the same bytes as the library generator for the same (rows, seed).
    let gen = run_bin(
        env!("CARGO_BIN_EXE_txgen"),
        &args(&[
            "--out",
            s(&data),
            "--rows",
            &ROWS.to_string(),
            "--seed",
            &SEED.to_string(),
        ]),
    );
    assert!(gen.status.success(), "txgen: {}", gen.describe());
    let lib_data = p("lib-data");
    txgen::generate(
        &lib_data,
        &GenOptions {
            rows: ROWS,
            seed: SEED,
        },
    )
    .unwrap();
    for file in ["transactions.csv", "CustomerImportance.csv"] {
        assert!(
            fs::read(data.join(file)).unwrap() == fs::read(lib_data.join(file)).unwrap(),
            "txgen's {file} differs from txgen::generate's"
        );
    }
    let source = data.join("transactions.csv");
    let importance = data.join("CustomerImportance.csv");

    // Live Y started first, then X: Y follows the landing directory until _COMPLETE.
    let (out_live, state_live) = (
        p("out-live"),
        format!("sqlite://{}", p("live.db").display()),
    );
    let mut y_args = args(&[
        "--landing",
        s(&landing),
        "--importance",
        s(&importance),
        "--output",
        s(&out_live),
        "--state",
        &state_live,
        "-w",
        "2",
    ]);
    y_args.extend(threshold_args());
    let started_ms = now_ms();
    let y = spawn(env!("CARGO_BIN_EXE_mechanism-y"), &y_args);
    let x = run_bin(
        env!("CARGO_BIN_EXE_mechanism-x"),
        &args(&[
            "--source",
            s(&source),
            "--landing",
            s(&landing),
            "--chunk-rows",
            &CHUNK_ROWS.to_string(),
            "--interval-ms",
            "0",
        ]),
    );
    assert!(x.status.success(), "mechanism-x: {}", x.describe());
    assert!(
        x.stdout.contains(&format!("{CHUNKS} chunks")) && x.stdout.contains("complete"),
        "mechanism-x summary: {}",
        x.stdout
    );
    let y = y.wait(RUN_TIMEOUT);
    let ended_ms = now_ms();
    assert!(y.status.success(), "mechanism-y live: {}", y.describe());

    let chunks = read_landing(&landing);
    check_chunks_cut_source(&source, &chunks);
    let importance_bytes = fs::read(&importance).unwrap();
    let all: Vec<(u64, Vec<u8>)> = chunks.iter().map(|(k, b, _)| (*k, b.clone())).collect();
    let e_all = expected_cached(&all, &importance_bytes);
    check_coverage(&e_all, 50);
    let live = read_state(&state_live);
    check_run(
        &e_all,
        &live,
        &out_live,
        Times::Live {
            started_ms,
            ended_ms,
        },
    );
    assert!(
        y.stdout.contains(&format!("{CHUNKS} epochs committed"))
            && y.stdout
                .contains(&format!("{} detections", live.ledger.len()))
            && y.stdout.contains("0 rejected"),
        "mechanism-y summary: {}",
        y.stdout
    );
    eprintln!("binaries: live run checked at {:?}", t0.elapsed());

    // Replay of the sub-range [K, K2]: state starts empty at K, epochs numbered by chunk.
    let (from, to) = (5u64, 14u64);
    let (out_replay, state_replay) = (
        p("out-replay"),
        format!("sqlite://{}", p("replay.db").display()),
    );
    let mut r_args = args(&[
        "--landing",
        s(&landing),
        "--importance",
        s(&importance),
        "--output",
        s(&out_replay),
        "--state",
        &state_replay,
        "-w",
        "2",
        "--replay",
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
    ]);
    r_args.extend(threshold_args());
    let r = run_bin(env!("CARGO_BIN_EXE_mechanism-y"), &r_args);
    assert!(r.status.success(), "mechanism-y replay: {}", r.describe());
    let sub: Vec<(u64, Vec<u8>)> = all
        .iter()
        .filter(|(k, _)| (from..=to).contains(k))
        .cloned()
        .collect();
    let e_sub = reference::expected(&sub, &importance_bytes, &thresholds());
    check_coverage(&e_sub, 20);
    assert_eq!(e_sub.epochs.first().map(|e| e.0), Some(from));
    assert_eq!(e_sub.epochs.last().map(|e| e.0), Some(to));
    let mtimes: BTreeMap<u64, i64> = chunks
        .iter()
        .filter(|(k, _, _)| (from..=to).contains(k))
        .map(|(k, _, ms)| (*k, *ms))
        .collect();
    let replayed = read_state(&state_replay);
    check_run(
        &e_sub,
        &replayed,
        &out_replay,
        Times::Replay { mtimes: &mtimes },
    );
    // The sub-range really started empty: its counts differ from the whole stream's.
    assert_ne!(e_sub.counts, e_all.counts);
    assert!(
        r.stdout
            .contains(&format!("{} epochs committed", to - from + 1)),
        "replay summary: {}",
        r.stdout
    );

    // A second replay with a different range on the same state store is refused, clearly,
    // and leaves the store as it was.
    let mut again = r_args.clone();
    let i = again.iter().position(|a| a == "--from").unwrap();
    again[i + 1] = "3".into();
    let i = again.iter().position(|a| a == "--output").unwrap();
    again[i + 1] = s(&p("out-refused")).into();
    let refused = run_bin(env!("CARGO_BIN_EXE_mechanism-y"), &again);
    assert!(!refused.status.success(), "{}", refused.describe());
    let last = refused.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error:") && last.contains("different run"),
        "refusal message: {}",
        refused.describe()
    );
    let after = read_state(&state_replay);
    assert_eq!(
        after.epochs, replayed.epochs,
        "refused replay left the epochs"
    );
    assert_eq!(
        after.ledger, replayed.ledger,
        "refused replay left the ledger"
    );
    assert_eq!(
        after.counts, replayed.counts,
        "refused replay left the counts"
    );
    let refused_files = p("out-refused")
        .read_dir()
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("detections-"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(refused_files, 0, "the refused replay wrote detection files");
    eprintln!("binaries_pipeline_and_replay_subrange: {:?}", t0.elapsed());
}

#[test]
fn demo_runs_and_summarizes() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // A chunk every 700 ms: the console has a few seconds to be seen while the demo runs.
    let port = common::paths::free_port();
    let demo_args = [
        "--dir",
        s(&dir),
        "--rows",
        "30000",
        "--interval-ms",
        "700",
        "--http",
        &port.to_string(),
    ];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some((200, page)) = common::http::get(port, "/") {
                    return Some(page);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            None
        })
    };
    let demo = run_bin(env!("CARGO_BIN_EXE_txflow-demo"), &args(&demo_args));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(demo.status.success(), "txflow-demo: {}", demo.describe());
    assert!(
        demo.stdout
            .contains(&format!("console: http://127.0.0.1:{port}/")),
        "the console's URL at the start: {}",
        demo.stdout
    );
    let page = seen
        .join()
        .unwrap()
        .expect("the console answered / during the demo");
    assert!(page.contains("<html"), "{page}");
    // The last line is the command that writes the run's report: it works as printed.
    let last = demo.stdout.lines().last().unwrap_or_default();
    let command = last
        .strip_prefix("run report: txflow-report ")
        .unwrap_or_else(|| panic!("no txflow-report command last: {}", demo.stdout));
    let report = run_bin(
        env!("CARGO_BIN_EXE_txflow-report"),
        &args(&command.split_whitespace().collect::<Vec<_>>()),
    );
    assert!(report.status.success(), "{last}: {}", report.describe());
    assert!(dir.join("report.html").is_file(), "{last}");
    let output = dir.join("output");
    assert!(
        demo.stdout
            .contains(&format!("{}/detections-*.csv", output.display())),
        "summary names the detection files: {}",
        demo.stdout
    );
    assert!(
        demo.stdout.contains("30000 rows accepted"),
        "summary: {}",
        demo.stdout
    );
    // The per-pattern counts it prints add up to the rows of the detection files.
    let printed: usize = demo
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("PatId"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "detections").unwrap();
            words[i - 1].parse::<usize>().unwrap()
        })
        .sum();
    assert_eq!(
        demo.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("PatId"))
            .count(),
        3,
        "one line per pattern: {}",
        demo.stdout
    );
    let mut in_files = 0;
    for entry in fs::read_dir(&output).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("detections-")
        {
            in_files += read_csv(&path).len() - 1;
        }
    }
    assert_eq!(printed, in_files, "printed counts vs detection files");
    // The demo's landing holds its whole source, in 10,000-row chunks.
    let chunks = read_landing(&dir.join("landing"));
    assert_eq!(chunks.len(), 3);
    assert!(dir.join("state.db").exists());
    eprintln!("demo_runs_and_summarizes: {:?}", t0.elapsed());
}
