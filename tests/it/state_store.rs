//! The two state stores (SQLite and PostgreSQL) behind `StateWriter` and `StateReader`: the
//! same scenario on both with identical results, the single-writer guard, the run identity, and PostgreSQL's
//! exactly-once behaviour under connection loss (server restart, lost COMMIT answer,
//! reconnect bound) and TLS.

// Helpers of the tests that need a service are unused without it.
#![cfg_attr(not(feature = "test-services"), allow(dead_code, unused_imports))]

// The PostgreSQL fault injection these tests use exists only with the cargo feature
// `fault-injection`; the dev-dependency of txflow on itself in Cargo.toml enables it for test
// builds. Fail the build with a clear message rather than skip the tests if it is ever off.
#[cfg(not(feature = "fault-injection"))]
compile_error!(
    "tests/it/state_store.rs needs txflow's cargo feature `fault-injection` (enabled for tests by \
     the `txflow = { path = \".\", features = [\"fault-injection\"] }` dev-dependency in \
     Cargo.toml): run `cargo test --features fault-injection`"
);

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::{fresh_database_url, PgServer};
use common::wait::poll;
use txflow::error::StateError;
use txflow::model::{DetectionKey, Pattern};
use txflow::sinks::state::postgres::{Fault, PgOptions, PgStore};
use txflow::sinks::state::sqlite::SqliteStore;
use txflow::sinks::state::{
    open, open_read_only, EpochCommit, EpochRow, FailureRow, LedgerId, LedgerRow, Recovered,
    RunIdentity, RunMode, StateConfig, StateReader, StateWriter, VariantRecovered, VariantRows,
    VariantSpec, FAILURES_KEPT,
};
use txflow::telemetry::retries::RetryCounts;

/// Shows the stores' warnings (retries, reconnects) in a failing test's output
/// (`RUST_LOG` overrides the level).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a hang).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    init_logs();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("took longer than {limit:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
    }
}

fn live_run() -> RunIdentity {
    RunIdentity {
        mode: RunMode::Live,
        landing: "s3://bucket/landing".into(),
        from: None,
        to: None,
        thresholds: String::new(),
        importance: "s3://bucket/CustomerImportance.csv".into(),
        importance_digest: "0".repeat(64),
    }
}

fn replay_run() -> RunIdentity {
    RunIdentity {
        mode: RunMode::Replay,
        landing: "s3://bucket/landing".into(),
        from: Some(0),
        to: Some(9),
        thresholds: String::new(),
        importance: "s3://bucket/CustomerImportance.csv".into(),
        importance_digest: "0".repeat(64),
    }
}

/// Epoch `epoch`'s commit: `merchants` counter deltas and `detections` ledger rows with
/// sequence numbers from `first_seq`, all derived from the epoch number.
fn epoch_commit(epoch: u64, first_seq: u64, merchants: usize, detections: u64) -> EpochCommit {
    EpochCommit {
        progress: EpochRow {
            epoch,
            chunk_key: format!("landing/chunk-{epoch:06}.csv"),
            rows_accepted: 1000 + epoch,
            rows_rejected: epoch % 3,
            committed_at: format!("2026-01-01T00:00:{:02}.000Z", epoch % 60),
            // Epoch 1 stands for one committed before schema version 2 (no digest).
            chunk_digest: (epoch != 1).then(|| format!("{:064x}", epoch * 0x1234_5678 + 1)),
        },
        counter_deltas: (0..merchants)
            .map(|i| {
                let m = (i as u64 * 7 + epoch * 3) % 97;
                (format!("M{m:03}"), (epoch as i64 + 1) * 10 + i as i64)
            })
            .collect(),
        detections: (first_seq..first_seq + detections)
            .map(|seq| LedgerRow {
                seq,
                epoch,
                pattern: Pattern::ALL[(seq % 3) as usize],
                customer_name: format!("C{seq:05} \"quoted\", comma"),
                merchant_id: format!("M{:03}", seq % 97),
                y_start_time: "2026-01-01 00:00:00.000000".into(),
                detection_time: format!("2026-01-01 00:00:{:02}.123456", seq % 60),
                file_seq: None,
                evidence: evidence(seq),
            })
            .collect(),
        variant_detections: Vec::new(),
    }
}

/// Row `seq`'s evidence: NULL for every fourth row (as rows from before schema version 3),
/// else a JSON object with quotes, commas and non-ASCII text.
fn evidence(seq: u64) -> Option<String> {
    (seq % 4 != 1).then(|| {
        format!(
            r#"{{"customer_txns":{seq},"mean_amount":{}.25,"note":"«é» \"q\", ✓"}}"#,
            seq * 3
        )
    })
}

/// The scenario's backtest variants: thresholds as `Thresholds::describe` writes them, and
/// one with quotes and non-ASCII text (any text round-trips).
fn variant_specs() -> Vec<VariantSpec> {
    vec![
        VariantSpec {
            name: "strict".into(),
            thresholds: "PatId1 N>60000 n>=p0.9 W<=p0.1; PatId2 n>=100 avg<20; PatId3 F>100".into(),
        },
        VariantSpec {
            name: "child-min-txns.60".into(),
            thresholds: "PatId2 n>=60, \"avg\"<23 – «ü»".into(),
        },
    ]
}

/// Variant `variant`'s rows of `epoch` with sequence numbers `seqs`, derived from both (each
/// variant's customers differ from the baseline's and from each other's).
fn variant_rows(variant: &str, epoch: u64, seqs: std::ops::Range<u64>) -> VariantRows {
    VariantRows {
        variant: variant.into(),
        rows: seqs
            .map(|seq| LedgerRow {
                seq,
                epoch,
                pattern: Pattern::ALL[((seq + 1) % 3) as usize],
                customer_name: format!("{variant} C{seq:05} \"ü\", comma"),
                merchant_id: format!("M{:03}", (seq * 5) % 97),
                y_start_time: "2026-01-01 00:00:00.000000".into(),
                detection_time: format!("2026-01-01 00:01:{:02}.654321", seq % 60),
                file_seq: None,
                evidence: evidence(seq + 2),
            })
            .collect(),
    }
}

/// Each variant's whole ledger as `commits` hold it, in `specs`' order.
fn expected_variant_ledgers(commits: &[EpochCommit], specs: &[VariantSpec]) -> Vec<Vec<LedgerRow>> {
    specs
        .iter()
        .map(|spec| {
            commits
                .iter()
                .flat_map(|c| &c.variant_detections)
                .filter(|v| v.variant == spec.name)
                .flat_map(|v| v.rows.clone())
                .collect()
        })
        .collect()
}

/// What `begin_variants` should find after `commits`, computed from the commits.
fn expected_variant_recovered(
    commits: &[EpochCommit],
    specs: &[VariantSpec],
) -> Vec<VariantRecovered> {
    expected_variant_ledgers(commits, specs)
        .into_iter()
        .map(|ledger| VariantRecovered {
            emitted: ledger
                .iter()
                .map(|r| DetectionKey {
                    pattern: r.pattern,
                    merchant: (&r.merchant_id).into(),
                    customer: (&r.customer_name).into(),
                })
                .collect(),
            next_seq: ledger.len() as u64,
        })
        .collect()
}

/// The scenario's epochs: a gap (no epoch 2, as a replay range may skip missing chunks),
/// an epoch without detections, and a large one (50 merchants, 300 detections).
fn scenario_commits() -> Vec<EpochCommit> {
    let shape = [(0, 5, 4), (1, 3, 0), (3, 8, 6), (4, 50, 300), (5, 0, 2)];
    let mut next_seq = 0;
    shape
        .iter()
        .map(|&(epoch, merchants, detections)| {
            let c = epoch_commit(epoch, next_seq, merchants, detections);
            next_seq += detections;
            c
        })
        .collect()
}

/// N(m) as the sum of the deltas, computed independently of the stores.
fn expected_counts(commits: &[EpochCommit]) -> Vec<(String, i64)> {
    let mut sums = BTreeMap::<String, i64>::new();
    for c in commits {
        for (m, d) in &c.counter_deltas {
            *sums.entry(m.clone()).or_default() += d;
        }
    }
    sums.into_iter().collect()
}

fn expected_recovered(commits: &[EpochCommit], finished: bool) -> Recovered {
    let ledger: Vec<&LedgerRow> = commits.iter().flat_map(|c| &c.detections).collect();
    Recovered {
        last_epoch: commits.last().map(|c| c.progress.epoch),
        epochs: commits
            .iter()
            .map(|c| (c.progress.epoch, c.progress.chunk_digest.clone()))
            .collect(),
        emitted: ledger
            .iter()
            .map(|r| DetectionKey {
                pattern: r.pattern,
                merchant: (&r.merchant_id).into(),
                customer: (&r.customer_name).into(),
            })
            .collect(),
        next_seq: ledger.len() as u64,
        finished,
    }
}

/// Everything a store holds, for comparisons.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    ledger: Vec<LedgerRow>,
    counts: Vec<(String, i64)>,
    epochs: Vec<EpochRow>,
    /// Each recorded variant with its ledger.
    variants: Vec<(VariantSpec, Vec<LedgerRow>)>,
}

fn snapshot(s: &mut dyn StateWriter) -> Snapshot {
    let variants = s.variants().unwrap();
    Snapshot {
        ledger: s.ledger(LedgerId::Baseline).unwrap(),
        counts: s.merchant_counts().unwrap(),
        epochs: s.epoch_rows().unwrap(),
        variants: variants
            .into_iter()
            .map(|v| {
                let ledger = s.ledger(LedgerId::Variant(&v.name)).unwrap();
                (v, ledger)
            })
            .collect(),
    }
}

/// What the scenario observed, compared across the two stores.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    recovered: Vec<Recovered>,
    snapshot: Snapshot,
    unwritten: Vec<Option<u64>>,
    range: Vec<LedgerRow>,
}

/// The common scenario. `open` opens the store under test (a new handle each call);
/// `fresh` opens another, empty store of the same kind.
fn scenario(
    open: &dyn Fn() -> Box<dyn StateWriter>,
    fresh: &dyn Fn() -> Box<dyn StateWriter>,
) -> Observed {
    let commits = scenario_commits();
    let mut recovered = Vec::new();
    let mut unwritten = Vec::new();

    let mut s = open();
    // Writes need the single-writer guard.
    assert!(matches!(
        s.commit_epoch(&commits[0]),
        Err(StateError::Inconsistent(_))
    ));
    let r = s.begin_run(&live_run()).unwrap();
    assert_eq!(r, Recovered::default());
    recovered.push(r);
    unwritten.push(s.first_unwritten_seq(LedgerId::Baseline).unwrap());
    for c in &commits {
        s.commit_epoch(c).unwrap();
    }
    let expected_ledger: Vec<LedgerRow> =
        commits.iter().flat_map(|c| c.detections.clone()).collect();
    assert_eq!(s.ledger(LedgerId::Baseline).unwrap(), expected_ledger);
    assert_eq!(s.merchant_counts().unwrap(), expected_counts(&commits));
    assert_eq!(
        s.epoch_rows().unwrap(),
        commits
            .iter()
            .map(|c| c.progress.clone())
            .collect::<Vec<_>>()
    );

    // The ledger is written in files: [0, 3) in file 0, [3, 10) in file 1.
    unwritten.push(s.first_unwritten_seq(LedgerId::Baseline).unwrap());
    assert_eq!(unwritten[1], Some(0));
    s.mark_written(LedgerId::Baseline, 0, 0, 3).unwrap();
    unwritten.push(s.first_unwritten_seq(LedgerId::Baseline).unwrap());
    assert_eq!(unwritten[2], Some(3));
    s.mark_written(LedgerId::Baseline, 1, 3, 10).unwrap();
    s.mark_written(LedgerId::Baseline, 1, 3, 10).unwrap(); // idempotent
    unwritten.push(s.first_unwritten_seq(LedgerId::Baseline).unwrap());
    assert_eq!(unwritten[3], Some(10));
    let range = s.ledger_range(LedgerId::Baseline, 1, 5).unwrap();
    assert_eq!(
        range
            .iter()
            .map(|r| (r.seq, r.file_seq))
            .collect::<Vec<_>>(),
        vec![(1, Some(0)), (2, Some(0)), (3, Some(1)), (4, Some(1))]
    );
    assert_eq!(range[0].customer_name, expected_ledger[1].customer_name);
    assert!(s
        .ledger_range(LedgerId::Baseline, 400, 500)
        .unwrap()
        .is_empty());

    // An epoch at or below the last committed one is refused, and changes nothing.
    let before = snapshot(s.as_mut());
    let again = epoch_commit(3, 400, 2, 1);
    assert!(matches!(
        s.commit_epoch(&again),
        Err(StateError::Inconsistent(_))
    ));
    let skipped = epoch_commit(2, 400, 2, 1);
    assert!(matches!(
        s.commit_epoch(&skipped),
        Err(StateError::Inconsistent(_))
    ));
    assert_eq!(snapshot(s.as_mut()), before);

    // A second writer is refused while the first holds the store.
    let mut second = open();
    match second.begin_run(&live_run()) {
        Err(StateError::Locked { detail }) => assert!(!detail.is_empty()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(second);

    // Restart: the lock is released with the store; everything is recovered.
    drop(s);
    let mut s = open();
    let r = s.begin_run(&live_run()).unwrap();
    assert_eq!(r, expected_recovered(&commits, false));
    recovered.push(r);
    assert_eq!(snapshot(s.as_mut()), before);
    unwritten.push(s.first_unwritten_seq(LedgerId::Baseline).unwrap());

    // Continue: one more epoch, then the end of the stream.
    let last = epoch_commit(7, before.ledger.len() as u64, 4, 3);
    s.commit_epoch(&last).unwrap();
    let total = before.ledger.len() as u64 + 3;
    s.mark_written(LedgerId::Baseline, 2, 10, total).unwrap();
    unwritten.push(s.first_unwritten_seq(LedgerId::Baseline).unwrap());
    assert_eq!(unwritten.last(), Some(&None));
    s.mark_finished().unwrap();
    s.mark_finished().unwrap();
    drop(s);
    // Inspection, without the single-writer guard: the run identity and the end of the stream.
    let meta = open().run_meta().unwrap();
    assert_eq!(meta.get("run.mode").map(String::as_str), Some("live"));
    assert_eq!(meta.get("finished").map(String::as_str), Some("1"));

    let mut all = commits.clone();
    all.push(last);
    let mut s = open();
    let r = s.begin_run(&live_run()).unwrap();
    assert_eq!(r, expected_recovered(&all, true));
    recovered.push(r);
    assert_eq!(s.merchant_counts().unwrap(), expected_counts(&all));
    drop(s);

    // Another run's identity is refused: the store holds epochs.
    let mut s = open();
    match s.begin_run(&replay_run()) {
        Err(e @ StateError::DifferentRun { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("the mode was live, now replay"),
                "{message}"
            );
        }
        other => panic!("expected DifferentRun, got {other:?}"),
    }
    // An edited importance file is another run too, named as such.
    let edited = RunIdentity {
        importance_digest: "f".repeat(64),
        ..live_run()
    };
    match s.begin_run(&edited) {
        Err(e @ StateError::DifferentRun { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(
                    "the importance file s3://bucket/CustomerImportance.csv changed since this \
                     run started"
                ),
                "{message}"
            );
        }
        other => panic!("expected DifferentRun, got {other:?}"),
    }
    // ...and the refusal changed nothing: the same run still starts.
    let r = s.begin_run(&live_run()).unwrap();
    assert_eq!(r, expected_recovered(&all, true));
    let final_snapshot = snapshot(s.as_mut());
    drop(s);

    // A store without epochs takes the new identity (and forgets "finished").
    let mut f = fresh();
    f.begin_run(&live_run()).unwrap();
    f.mark_finished().unwrap();
    drop(f);
    let mut f = fresh();
    let r = f.begin_run(&replay_run()).unwrap();
    assert_eq!(r, Recovered::default());
    f.commit_epoch(&epoch_commit(0, 0, 1, 1)).unwrap();
    drop(f);
    let mut f = fresh();
    assert!(matches!(
        f.begin_run(&live_run()),
        Err(StateError::DifferentRun { .. })
    ));
    let r = f.begin_run(&replay_run()).unwrap();
    assert_eq!(r.epochs.keys().copied().collect::<Vec<_>>(), vec![0]);
    recovered.push(r);

    Observed {
        recovered,
        snapshot: final_snapshot,
        unwritten,
        range,
    }
}

fn sqlite_openers(
    dir: &Path,
) -> (
    impl Fn() -> Box<dyn StateWriter>,
    impl Fn() -> Box<dyn StateWriter>,
) {
    let main = format!("sqlite://{}", dir.join("state.db").display());
    let other = format!("sqlite://{}", dir.join("other.db").display());
    (
        move || open(&StateConfig::parse(&main).unwrap()).unwrap(),
        move || open(&StateConfig::parse(&other).unwrap()).unwrap(),
    )
}

fn pg_openers(
    hint: &str,
) -> (
    impl Fn() -> Box<dyn StateWriter>,
    impl Fn() -> Box<dyn StateWriter>,
) {
    let main = fresh_database_url(hint);
    let other = fresh_database_url(&format!("{hint}_other"));
    (
        move || open(&StateConfig::parse(&main).unwrap()).unwrap(),
        move || open(&StateConfig::parse(&other).unwrap()).unwrap(),
    )
}

#[test]
fn scenario_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (main, other) = sqlite_openers(dir.path());
    scenario(&main, &other);
}

#[cfg(feature = "test-services")]
#[test]
fn scenario_on_postgres() {
    bounded(Duration::from_secs(120), || {
        let (main, other) = pg_openers("scenario");
        scenario(&main, &other);
    });
}

#[cfg(feature = "test-services")]
#[test]
fn sqlite_and_postgres_give_identical_results() {
    bounded(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let (main, other) = sqlite_openers(dir.path());
        let on_sqlite = scenario(&main, &other);
        let (main, other) = pg_openers("identical");
        let on_postgres = scenario(&main, &other);
        assert_eq!(on_sqlite, on_postgres);
    });
}

#[test]
fn sqlite_uses_wal_and_tracks_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
    s.begin_run(&live_run()).unwrap();
    s.commit_epoch(&epoch_commit(0, 0, 2, 2)).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // The schema went in once, tracked in schema_migrations.
    let versions: Vec<i64> = conn
        .prepare("SELECT version FROM schema_migrations")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    // A reader sees the committed epoch while the writer still holds the store.
    let n: i64 = conn
        .query_row("SELECT count(*) FROM detections", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

/// What the previous version left in a store: schema 1 only, the identity as one line, and
/// one committed epoch (run through `exec`, one statement batch per call).
fn make_legacy_store(exec: &mut dyn FnMut(&str)) {
    exec("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT)");
    exec(txflow::sinks::state::MIGRATIONS[0].1);
    exec("INSERT INTO schema_migrations VALUES (1, 'earlier')");
    exec("INSERT INTO run_meta VALUES ('run', 'live of s3://bucket/landing')");
    exec("INSERT INTO epochs VALUES (0, 'chunk-000000.csv', 10, 0, '2026-01-01T00:00:00.000Z')");
}

/// A store of the previous version is migrated (its epoch keeps a NULL digest) and, since it
/// holds epochs but no complete identity, refused as another run.
fn legacy_store_is_migrated_and_refused(s: &mut dyn StateWriter) {
    match s.begin_run(&live_run()) {
        Err(e @ StateError::DifferentRun { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("earlier version")
                    && message.contains("live of s3://bucket/landing")
                    && message.contains("a new run needs a new state store"),
                "{message}"
            );
        }
        other => panic!("expected DifferentRun, got {other:?}"),
    }
    let rows = s.epoch_rows().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].chunk_digest, None);
}

#[test]
fn sqlite_store_of_an_earlier_version_is_migrated_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    make_legacy_store(&mut |sql| conn.execute_batch(sql).unwrap());
    drop(conn);
    let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
    legacy_store_is_migrated_and_refused(&mut s);
}

#[cfg(feature = "test-services")]
#[test]
fn postgres_store_of_an_earlier_version_is_migrated_and_refused() {
    bounded(Duration::from_secs(60), || {
        let url = fresh_database_url("legacy");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        make_legacy_store(&mut |sql| client.batch_execute(sql).unwrap());
        drop(client);
        let mut s = open(&StateConfig::parse(&url).unwrap()).unwrap();
        legacy_store_is_migrated_and_refused(s.as_mut());
    });
}

/// The SQLite guard is a real `flock`, visible to other processes in both directions.
#[test]
fn sqlite_lock_excludes_other_processes() {
    assert!(
        Command::new("flock").arg("--version").output().is_ok(),
        "flock(1) is missing: install util-linux (scripts/ensure-tools.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // The lock is on the database file itself.
    let lock = path.display().to_string();
    let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
    s.begin_run(&live_run()).unwrap();
    let status = Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", "7", &lock, "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7), "another process got the lock");
    drop(s);

    // Another process holds it: we are refused, naming the file and the holder.
    let mut holder = Command::new("flock")
        .args([&lock, "sleep", "30"])
        .spawn()
        .unwrap();
    let refused = poll(Duration::from_secs(10), || {
        let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
        match s.begin_run(&live_run()) {
            Err(StateError::Locked { detail }) => Some(detail),
            Ok(_) => None, // the holder has not started yet
            other => panic!("expected Locked, got {other:?}"),
        }
    });
    let refused = refused.expect("expected Locked, the holder never took the lock");
    let holder_pid = holder.id();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        refused.contains(&lock) && refused.contains(&format!("by process {holder_pid}")),
        "{refused}"
    );
}

#[test]
fn open_rejects_bad_urls() {
    for url in [
        "mysql://h/db",
        "sqlite://",
        "postgres://h/db?sslcert=client.pem",
    ] {
        match StateConfig::parse(url).and_then(|config| open(&config)) {
            Err(StateError::BadUrl { .. }) => {}
            Err(other) => panic!("{url}: expected BadUrl, got {other}"),
            Ok(_) => panic!("{url}: expected BadUrl, got a store"),
        }
    }
}

#[test]
fn fixture_replaces_database_names() {
    use common::pg::with_dbname;
    assert_eq!(
        with_dbname("postgres://postgres@%2Ftmp%2Fpgsock/postgres", "x"),
        "postgres://postgres@%2Ftmp%2Fpgsock/x"
    );
    assert_eq!(
        with_dbname("postgres://u@h:5/db?sslmode=disable", "x"),
        "postgres://u@h:5/x?sslmode=disable"
    );
    assert_eq!(with_dbname("postgres://u@h", "x"), "postgres://u@h/x");
}

// ---------------------------------------------------------------------------------------
// Backtest variants and evidence (schema version 3)
// ---------------------------------------------------------------------------------------

/// `commit` with these variant rows added.
fn with_variants(mut commit: EpochCommit, rows: Vec<VariantRows>) -> EpochCommit {
    commit.variant_detections = rows;
    commit
}

/// The variant scenario's epochs, each `(epoch, baseline rows, strict rows, other rows)`:
/// an epoch where `strict` has an empty entry and one where the other variant has none, a
/// gap, and a large one (batched inserts).
fn variant_commits() -> Vec<EpochCommit> {
    let shape = [(0, 4, 2, 6), (1, 0, 0, 3), (3, 6, 1, 0), (4, 300, 120, 400)];
    let specs = variant_specs();
    let (mut baseline, mut strict, mut other) = (0, 0, 0);
    shape
        .iter()
        .map(|&(epoch, b, s, o)| {
            let mut rows = vec![variant_rows(&specs[0].name, epoch, strict..strict + s)];
            if o > 0 {
                rows.push(variant_rows(&specs[1].name, epoch, other..other + o));
            }
            let c = with_variants(epoch_commit(epoch, baseline, 3, b), rows);
            (baseline, strict, other) = (baseline + b, strict + s, other + o);
            c
        })
        .collect()
}

/// The first unwritten row of the baseline and of each variant.
fn unwritten_all(s: &mut dyn StateWriter, specs: &[VariantSpec]) -> Vec<Option<u64>> {
    let mut out = vec![s.first_unwritten_seq(LedgerId::Baseline).unwrap()];
    for v in specs {
        out.push(s.first_unwritten_seq(LedgerId::Variant(&v.name)).unwrap());
    }
    out
}

/// `begin_variants`' refusal, as its message.
fn variants_refused(s: &mut dyn StateWriter, requested: &[VariantSpec]) -> String {
    match s.begin_variants(requested) {
        Err(e @ StateError::DifferentRun { .. }) => e.to_string(),
        other => panic!("expected DifferentRun for {requested:?}, got {other:?}"),
    }
}

/// What the variant scenario observed, compared across the two stores.
#[derive(Debug, PartialEq, Eq)]
struct VariantObserved {
    recovered: Vec<Vec<VariantRecovered>>,
    snapshot: Snapshot,
    unwritten: Vec<Vec<Option<u64>>>,
    range: Vec<LedgerRow>,
}

/// Variant ledgers next to the baseline's: recorded at the first start, committed with the
/// epochs, written to files independently of each other, recovered at a restart, refused
/// when a restart names other variants.
fn variant_scenario(open: &dyn Fn() -> Box<dyn StateWriter>) -> VariantObserved {
    let specs = variant_specs();
    let commits = variant_commits();
    let (mut recovered, mut unwritten) = (Vec::new(), Vec::new());
    let mut s = open();
    assert_eq!(s.begin_run(&replay_run()).unwrap(), Recovered::default());
    // Variant rows before the variants are recorded are refused, and change nothing.
    assert!(matches!(
        s.commit_epoch(&commits[0]),
        Err(StateError::Inconsistent(m)) if m.contains("begin_variants")
    ));
    assert!(s.epoch_rows().unwrap().is_empty());
    let r = s.begin_variants(&specs).unwrap();
    assert_eq!(r, vec![VariantRecovered::default(); 2]);
    recovered.push(r);
    assert_eq!(s.variants().unwrap(), specs);
    unwritten.push(unwritten_all(s.as_mut(), &specs));
    for c in &commits {
        s.commit_epoch(c).unwrap();
    }
    let expected_baseline: Vec<LedgerRow> =
        commits.iter().flat_map(|c| c.detections.clone()).collect();
    assert_eq!(s.ledger(LedgerId::Baseline).unwrap(), expected_baseline);
    let expected = expected_variant_ledgers(&commits, &specs);
    assert_eq!(expected[0].len(), 123);
    assert_eq!(expected[1].len(), 409);
    for (v, ledger) in specs.iter().zip(&expected) {
        assert_eq!(&s.ledger(LedgerId::Variant(&v.name)).unwrap(), ledger);
    }
    assert!(expected[1].iter().any(|r| r.evidence.is_none()));
    unwritten.push(unwritten_all(s.as_mut(), &specs));
    assert_eq!(unwritten[1], vec![Some(0), Some(0), Some(0)]);

    // Each ledger is written to its own files: marking one leaves the others unwritten.
    s.mark_written(LedgerId::Baseline, 0, 0, 4).unwrap();
    unwritten.push(unwritten_all(s.as_mut(), &specs));
    assert_eq!(unwritten[2], vec![Some(4), Some(0), Some(0)]);
    s.mark_written(LedgerId::Variant(&specs[0].name), 0, 0, 2)
        .unwrap();
    unwritten.push(unwritten_all(s.as_mut(), &specs));
    assert_eq!(unwritten[3], vec![Some(4), Some(2), Some(0)]);
    s.mark_written(LedgerId::Variant(&specs[1].name), 0, 0, 50)
        .unwrap();
    s.mark_written(LedgerId::Variant(&specs[1].name), 0, 0, 50)
        .unwrap(); // idempotent
    s.mark_written(LedgerId::Variant(&specs[1].name), 1, 50, 100)
        .unwrap();
    unwritten.push(unwritten_all(s.as_mut(), &specs));
    assert_eq!(unwritten[4], vec![Some(4), Some(2), Some(100)]);
    let range = s
        .ledger_range(LedgerId::Variant(&specs[1].name), 48, 52)
        .unwrap();
    assert_eq!(
        range
            .iter()
            .map(|r| (r.seq, r.file_seq))
            .collect::<Vec<_>>(),
        vec![(48, Some(0)), (49, Some(0)), (50, Some(1)), (51, Some(1))]
    );
    assert_eq!(range[0].customer_name, expected[1][48].customer_name);
    assert_eq!(range[2].evidence, expected[1][50].evidence);
    assert!(s
        .ledger_range(LedgerId::Variant(&specs[0].name), 123, u64::MAX)
        .unwrap()
        .is_empty());
    // The baseline's file numbers are untouched by the variants'.
    assert_eq!(
        s.ledger_range(LedgerId::Baseline, 0, 6)
            .unwrap()
            .iter()
            .map(|r| r.file_seq)
            .collect::<Vec<_>>(),
        vec![Some(0), Some(0), Some(0), Some(0), None, None]
    );

    // A variant the store does not record is an error for every variant method.
    let unknown = |r: Result<(), StateError>| {
        assert!(
            matches!(&r, Err(StateError::Inconsistent(m)) if m.contains("\"nope\"")),
            "{r:?}"
        )
    };
    unknown(s.ledger(LedgerId::Variant("nope")).map(drop));
    unknown(s.ledger_range(LedgerId::Variant("nope"), 0, 10).map(drop));
    unknown(s.first_unwritten_seq(LedgerId::Variant("nope")).map(drop));
    unknown(s.mark_written(LedgerId::Variant("nope"), 0, 0, 10));
    let before = snapshot(s.as_mut());

    // Restart: the same variants recover their ledgers.
    drop(s);
    let mut s = open();
    s.begin_run(&replay_run()).unwrap();
    let r = s.begin_variants(&specs).unwrap();
    assert_eq!(r, expected_variant_recovered(&commits, &specs));
    recovered.push(r);

    // Other variants are refused, naming the difference, and change nothing.
    let [strict, other] = [specs[0].clone(), specs[1].clone()];
    let m = variants_refused(s.as_mut(), &[other.clone(), strict.clone()]);
    assert!(
        m.contains("the variants were strict, child-min-txns.60, now child-min-txns.60, strict"),
        "{m}"
    );
    let renamed = VariantSpec {
        name: "loose".into(),
        ..other.clone()
    };
    let m = variants_refused(s.as_mut(), &[strict.clone(), renamed]);
    assert!(m.contains("now strict, loose"), "{m}");
    let m = variants_refused(s.as_mut(), std::slice::from_ref(&strict));
    assert!(m.contains("now strict ("), "{m}");
    let retuned = VariantSpec {
        thresholds: "PatId2 n>=70".into(),
        ..other.clone()
    };
    let m = variants_refused(s.as_mut(), &[strict.clone(), retuned]);
    assert!(
        m.contains(&format!(
            "the thresholds of variant child-min-txns.60 were {}, now PatId2 n>=70",
            other.thresholds
        )) && m.contains("a new run needs a new state store"),
        "{m}"
    );
    let m = variants_refused(s.as_mut(), &[]);
    assert!(
        m.contains("committed with variants strict, child-min-txns.60, now without"),
        "{m}"
    );
    assert_eq!(snapshot(s.as_mut()), before);
    let r = s.begin_variants(&specs).unwrap();
    assert_eq!(r, expected_variant_recovered(&commits, &specs));
    recovered.push(r);

    // Continue: one more epoch, numbered on from the recovered lengths.
    let next = with_variants(
        epoch_commit(6, expected_baseline.len() as u64, 2, 2),
        vec![
            variant_rows(&strict.name, 6, 123..125),
            variant_rows(&other.name, 6, 409..410),
        ],
    );
    s.commit_epoch(&next).unwrap();
    let mut all = commits.clone();
    all.push(next);
    for (v, ledger) in specs.iter().zip(expected_variant_ledgers(&all, &specs)) {
        let stored = s.ledger(LedgerId::Variant(&v.name)).unwrap();
        assert_eq!(stored.len(), ledger.len());
        assert_eq!(stored[stored.len() - 1], ledger[ledger.len() - 1]);
    }
    unwritten.push(unwritten_all(s.as_mut(), &specs));
    let snapshot = snapshot(s.as_mut());
    drop(s);
    let mut s = open();
    s.begin_run(&replay_run()).unwrap();
    assert_eq!(
        s.begin_variants(&specs).unwrap(),
        expected_variant_recovered(&all, &specs)
    );
    VariantObserved {
        recovered,
        snapshot,
        unwritten,
        range,
    }
}

#[test]
fn variants_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (main, _) = sqlite_openers(dir.path());
    variant_scenario(&main);
}

#[cfg(feature = "test-services")]
#[test]
fn variants_on_postgres() {
    bounded(Duration::from_secs(120), || {
        let (main, _) = pg_openers("variants");
        variant_scenario(&main);
    });
}

#[cfg(feature = "test-services")]
#[test]
fn sqlite_and_postgres_keep_identical_variant_ledgers() {
    bounded(Duration::from_secs(120), || {
        let dir = tempfile::tempdir().unwrap();
        let (main, _) = sqlite_openers(dir.path());
        let on_sqlite = variant_scenario(&main);
        let (main, _) = pg_openers("variants_identical");
        assert_eq!(on_sqlite, variant_scenario(&main));
    });
}

/// Variants need a store of their own from the first epoch on; a store without epochs takes
/// new variants (as it takes a new run identity).
fn variants_follow_the_first_committed_epoch(
    open: &dyn Fn() -> Box<dyn StateWriter>,
    fresh: &dyn Fn() -> Box<dyn StateWriter>,
) {
    let specs = variant_specs();
    // Committed without variants: variants are refused at the restart.
    let mut s = open();
    s.begin_run(&replay_run()).unwrap();
    assert_eq!(s.begin_variants(&[]).unwrap(), Vec::new());
    s.commit_epoch(&epoch_commit(0, 0, 2, 3)).unwrap();
    drop(s);
    let mut s = open();
    s.begin_run(&replay_run()).unwrap();
    let m = variants_refused(s.as_mut(), &specs);
    assert!(
        m.contains(
            "its epochs were committed without variants, now with strict, \
             child-min-txns.60"
        ),
        "{m}"
    );
    assert!(s.variants().unwrap().is_empty());
    assert_eq!(s.begin_variants(&[]).unwrap(), Vec::new());
    drop(s);

    // Recorded but nothing committed: a restart with other variants records those.
    let mut f = fresh();
    f.begin_run(&replay_run()).unwrap();
    f.begin_variants(&specs).unwrap();
    drop(f);
    let mut f = fresh();
    f.begin_run(&replay_run()).unwrap();
    let others = vec![VariantSpec {
        name: "only".into(),
        thresholds: "PatId3 F>5".into(),
    }];
    assert_eq!(
        f.begin_variants(&others).unwrap(),
        vec![VariantRecovered::default()]
    );
    assert_eq!(f.variants().unwrap(), others);
    // The replaced variants are gone: their rows are refused.
    let stale = with_variants(
        epoch_commit(0, 0, 1, 1),
        vec![variant_rows(&specs[0].name, 0, 0..1)],
    );
    assert!(matches!(
        f.commit_epoch(&stale),
        Err(StateError::Inconsistent(m)) if m.contains("\"strict\"")
    ));
    f.commit_epoch(&with_variants(
        epoch_commit(0, 0, 1, 1),
        vec![variant_rows("only", 0, 0..2)],
    ))
    .unwrap();
    drop(f);
    let mut f = fresh();
    f.begin_run(&replay_run()).unwrap();
    let m = variants_refused(f.as_mut(), &specs);
    assert!(m.contains("the variants were only, now strict"), "{m}");
    assert_eq!(f.begin_variants(&others).unwrap()[0].next_seq, 2);
}

#[test]
fn sqlite_variants_follow_the_first_committed_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let (main, other) = sqlite_openers(dir.path());
    variants_follow_the_first_committed_epoch(&main, &other);
}

#[cfg(feature = "test-services")]
#[test]
fn postgres_variants_follow_the_first_committed_epoch() {
    bounded(Duration::from_secs(120), || {
        let (main, other) = pg_openers("variants_first_epoch");
        variants_follow_the_first_committed_epoch(&main, &other);
    });
}

/// A commit that fails at its last step (a variant row breaking its ledger's keys) leaves
/// nothing of the epoch: no progress row, counters, baseline or variant rows.
fn failed_commit_leaves_nothing(open: &dyn Fn() -> Box<dyn StateWriter>) {
    let specs = variant_specs();
    let mut s = open();
    s.begin_run(&live_run()).unwrap();
    s.begin_variants(&specs).unwrap();
    let first = with_variants(
        epoch_commit(0, 0, 3, 4),
        vec![
            variant_rows(&specs[0].name, 0, 0..2),
            variant_rows(&specs[1].name, 0, 0..3),
        ],
    );
    s.commit_epoch(&first).unwrap();
    let before = snapshot(s.as_mut());
    let next = |second_variant: VariantRows| {
        with_variants(
            epoch_commit(1, 4, 5, 6),
            vec![variant_rows(&specs[0].name, 1, 2..5), second_variant],
        )
    };
    // A sequence number the variant's ledger already holds.
    let reused_seq = next(variant_rows(&specs[1].name, 1, 2..4));
    // A detection the variant's ledger already holds, under a new sequence number.
    let mut repeated = variant_rows(&specs[1].name, 1, 3..5);
    repeated.rows[1] = LedgerRow {
        seq: 4,
        ..first.variant_detections[1].rows[0].clone()
    };
    // Failing before the variant rows: a baseline sequence number already in the ledger, and
    // an epoch already committed (valid variant rows with each).
    let good_variant_rows = || variant_rows(&specs[1].name, 1, 3..5);
    let mut baseline_reused = next(good_variant_rows());
    baseline_reused.detections[2].seq = 1;
    let mut epoch_again = next(good_variant_rows());
    epoch_again.progress.epoch = 0;
    for failing in [reused_seq, next(repeated), baseline_reused, epoch_again] {
        let result = s.commit_epoch(&failing);
        assert!(
            matches!(
                result,
                Err(StateError::Sqlite { .. }
                    | StateError::Postgres { .. }
                    | StateError::Inconsistent(_))
            ),
            "{result:?}"
        );
        assert_eq!(snapshot(s.as_mut()), before);
    }
    drop(s);
    let mut s = open();
    assert_eq!(
        s.begin_run(&live_run()).unwrap(),
        expected_recovered(std::slice::from_ref(&first), false)
    );
    assert_eq!(
        s.begin_variants(&specs).unwrap(),
        expected_variant_recovered(std::slice::from_ref(&first), &specs)
    );
    // The epoch goes in once it is right.
    let good = next(good_variant_rows());
    s.commit_epoch(&good).unwrap();
    assert_exactly_once(s.as_mut(), &[first, good]);
}

#[test]
fn sqlite_failed_commit_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (main, _) = sqlite_openers(dir.path());
    failed_commit_leaves_nothing(&main);
}

#[cfg(feature = "test-services")]
#[test]
fn postgres_failed_commit_leaves_nothing() {
    bounded(Duration::from_secs(60), || {
        let (main, _) = pg_openers("failed_commit");
        failed_commit_leaves_nothing(&main);
    });
}

/// A store of schema version 2 (the first two migrations only) with a run identity, two
/// epochs and ledger rows, run through `exec` (one statement batch per call).
fn make_version_2_store(exec: &mut dyn FnMut(&str)) {
    exec("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT)");
    exec(txflow::sinks::state::MIGRATIONS[0].1);
    exec(txflow::sinks::state::MIGRATIONS[1].1);
    exec("INSERT INTO schema_migrations VALUES (1, 'earlier'), (2, 'earlier')");
    exec(&format!(
        "INSERT INTO run_meta (key, value) VALUES ('run', 'live of s3://bucket/landing'), \
         ('run.mode', 'live'), ('run.landing', 's3://bucket/landing'), ('run.from', ''), \
         ('run.to', ''), ('run.thresholds', ''), \
         ('run.importance', 's3://bucket/CustomerImportance.csv'), \
         ('run.importance_digest', '{}')",
        "0".repeat(64)
    ));
    exec(&format!(
        "INSERT INTO epochs VALUES \
         (0, 'chunk-000000.csv', 10, 0, '2026-01-01T00:00:00.000Z', '{}'), \
         (1, 'chunk-000001.csv', 12, 1, '2026-01-01T00:00:01.000Z', '{}')",
        "a".repeat(64),
        "b".repeat(64)
    ));
    exec("INSERT INTO merchant_transaction_counts VALUES ('M1', 22)");
    exec(
        "INSERT INTO detections VALUES \
         (0, 0, 'PatId1', 'UPGRADE', 'C1 \"q\", é', 'M1', 't0', 't1', 0), \
         (1, 1, 'PatId3', 'DEI-NEEDED', '', 'M1', 't0', 't2', NULL)",
    );
}

/// The version-2 store's rows as this version reads them (evidence: none).
fn version_2_ledger() -> Vec<LedgerRow> {
    let row = |seq, pattern, customer: &str, time: &str, file_seq| LedgerRow {
        seq,
        epoch: seq,
        pattern,
        customer_name: customer.into(),
        merchant_id: "M1".into(),
        y_start_time: "t0".into(),
        detection_time: time.into(),
        file_seq,
        evidence: None,
    };
    vec![
        row(0, Pattern::Upgrade, "C1 \"q\", é", "t1", Some(0)),
        row(1, Pattern::DeiNeeded, "", "t2", None),
    ]
}

/// Migrated to version 3: the rows are kept and read with no evidence, the run continues
/// (with evidence from now on), and it takes no variants (its epochs were committed without).
fn version_2_store_is_migrated(s: &mut dyn StateWriter) {
    let r = s.begin_run(&live_run()).unwrap();
    assert_eq!(
        r.epochs,
        [(0, Some("a".repeat(64))), (1, Some("b".repeat(64)))].into()
    );
    assert_eq!((r.next_seq, r.emitted.len()), (2, 2));
    assert_eq!(s.ledger(LedgerId::Baseline).unwrap(), version_2_ledger());
    assert_eq!(
        s.ledger_range(LedgerId::Baseline, 1, 2).unwrap(),
        version_2_ledger()[1..]
    );
    assert_eq!(s.first_unwritten_seq(LedgerId::Baseline).unwrap(), Some(1));
    assert_eq!(s.merchant_counts().unwrap(), vec![("M1".to_string(), 22)]);
    assert_eq!(s.epoch_rows().unwrap().len(), 2);
    variants_refused(s, &variant_specs());
    assert_eq!(s.begin_variants(&[]).unwrap(), Vec::new());
    let next = epoch_commit(2, 2, 1, 3);
    s.commit_epoch(&next).unwrap();
    let mut ledger = version_2_ledger();
    ledger.extend(next.detections.clone());
    assert!(ledger[2..].iter().any(|r| r.evidence.is_some()));
    assert_eq!(s.ledger(LedgerId::Baseline).unwrap(), ledger);
}

#[test]
fn sqlite_store_of_version_2_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    make_version_2_store(&mut |sql| conn.execute_batch(sql).unwrap());
    drop(conn);
    let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
    version_2_store_is_migrated(&mut s);
    let versions: Vec<i64> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
}

#[cfg(feature = "test-services")]
#[test]
fn postgres_store_of_version_2_is_migrated() {
    bounded(Duration::from_secs(60), || {
        let url = fresh_database_url("version_2");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        make_version_2_store(&mut |sql| client.batch_execute(sql).unwrap());
        let mut s = open(&StateConfig::parse(&url).unwrap()).unwrap();
        version_2_store_is_migrated(s.as_mut());
        let versions: Vec<i64> = client
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    });
}

// ---------------------------------------------------------------------------------------
// Run failures
// ---------------------------------------------------------------------------------------

fn failure(n: i64) -> FailureRow {
    FailureRow {
        at_ms: 1_700_000_000_000 + n,
        at: format!("2023-11-15T03:43:20.{n:03}+05:30"),
        message: format!("failure {n}: \"quoted\", é; another line's worth"),
        domain: if n % 2 == 0 {
            "configuration"
        } else {
            "external service"
        }
        .into(),
        exit_code: if n % 2 == 0 { 78 } else { 75 },
    }
}

/// Failures are recorded through a second handle while a run holds the store (the failing
/// run's own guard may be gone or never taken), read back newest first, bounded to the
/// newest [`FAILURES_KEPT`], and left by a later run. `scalar` runs a query on the database.
fn failures_are_recorded_and_bounded(
    open: &dyn Fn() -> Box<dyn StateWriter>,
    scalar: &dyn Fn(&str) -> i64,
) {
    let mut fresh = open();
    match fresh.record_failure(&failure(0)) {
        Err(StateError::Schema { found: None, .. }) => {}
        other => panic!("a store without a schema cannot record a failure: {other:?}"),
    }
    drop(fresh);
    let mut writer = open();
    writer.begin_run(&live_run()).unwrap();
    assert_eq!(writer.last_failure().unwrap(), None);
    let mut other = open();
    other.record_failure(&failure(1)).unwrap();
    assert_eq!(writer.last_failure().unwrap(), Some(failure(1)));
    let last = FAILURES_KEPT as i64 + 5;
    for n in 2..=last {
        other.record_failure(&failure(n)).unwrap();
    }
    assert_eq!(other.last_failure().unwrap(), Some(failure(last)));
    assert_eq!(
        scalar("SELECT count(*) FROM run_failures"),
        FAILURES_KEPT as i64
    );
    assert_eq!(
        scalar("SELECT min(at_ms) FROM run_failures"),
        failure(last - FAILURES_KEPT as i64 + 1).at_ms
    );
    writer.begin_variants(&[]).unwrap();
    writer.commit_epoch(&epoch_commit(0, 0, 2, 1)).unwrap();
    drop((writer, other));
    let mut again = open();
    again.begin_run(&live_run()).unwrap();
    assert_eq!(again.last_failure().unwrap(), Some(failure(last)));
}

#[test]
fn sqlite_records_run_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let url = format!("sqlite://{}", path.display());
    let scalar = |sql: &str| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap()
    };
    failures_are_recorded_and_bounded(
        &|| open(&StateConfig::parse(&url).unwrap()).unwrap(),
        &scalar,
    );
    let mut reader = open_read_only(&StateConfig::parse(&url).unwrap()).unwrap();
    let last = FAILURES_KEPT as i64 + 5;
    assert_eq!(reader.last_failure().unwrap(), Some(failure(last)));
}

#[cfg(feature = "test-services")]
#[test]
fn postgres_records_run_failures() {
    bounded(Duration::from_secs(120), || {
        let url = fresh_database_url("failures");
        let scalar = |sql: &str| {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client.query_one(sql, &[]).unwrap().get::<_, i64>(0)
        };
        failures_are_recorded_and_bounded(
            &|| open(&StateConfig::parse(&url).unwrap()).unwrap(),
            &scalar,
        );
        let mut reader = open_read_only(&StateConfig::parse(&url).unwrap()).unwrap();
        let last = FAILURES_KEPT as i64 + 5;
        assert_eq!(reader.last_failure().unwrap(), Some(failure(last)));
    });
}

/// An empty store of schema version 5 (every migration before the failures table), run
/// through `exec`.
fn make_version_5_store(exec: &mut dyn FnMut(&str)) {
    exec("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT)");
    for (version, migration) in &txflow::sinks::state::MIGRATIONS[..5] {
        exec(migration);
        exec(&format!(
            "INSERT INTO schema_migrations VALUES ({version}, 'earlier')"
        ));
    }
}

/// Version 5 records no failure and readers refuse it; the next start migrates it to 6,
/// after which failures are recorded and read (none before).
fn version_5_store_gains_failures(
    open: &dyn Fn() -> Box<dyn StateWriter>,
    read: &dyn Fn() -> Box<dyn StateReader>,
) {
    match open().record_failure(&failure(1)) {
        Err(StateError::Schema {
            found: Some(5),
            expected: 6,
        }) => {}
        other => panic!("{other:?}"),
    }
    match read().last_failure() {
        Err(StateError::Schema { found: Some(5), .. }) => {}
        other => panic!("{other:?}"),
    }
    let mut writer = open();
    writer.begin_run(&live_run()).unwrap();
    assert_eq!(writer.last_failure().unwrap(), None);
    writer.record_failure(&failure(2)).unwrap();
    drop(writer);
    assert_eq!(read().last_failure().unwrap(), Some(failure(2)));
}

#[test]
fn sqlite_store_of_version_5_is_migrated_to_record_failures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    make_version_5_store(&mut |sql| conn.execute_batch(sql).unwrap());
    drop(conn);
    let config = StateConfig::parse(&format!("sqlite://{}", path.display())).unwrap();
    version_5_store_gains_failures(&|| open(&config).unwrap(), &|| {
        open_read_only(&config).unwrap()
    });
}

#[cfg(feature = "test-services")]
#[test]
fn postgres_store_of_version_5_is_migrated_to_record_failures() {
    bounded(Duration::from_secs(60), || {
        let url = fresh_database_url("version_5");
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        make_version_5_store(&mut |sql| client.batch_execute(sql).unwrap());
        drop(client);
        let config = StateConfig::parse(&url).unwrap();
        version_5_store_gains_failures(&|| open(&config).unwrap(), &|| {
            open_read_only(&config).unwrap()
        });
    });
}

// ---------------------------------------------------------------------------------------
// PostgreSQL under failures
// ---------------------------------------------------------------------------------------

fn pg_store(url: &str, reconnect_timeout: Duration) -> PgStore {
    PgStore::connect(
        url,
        &PgOptions {
            ca_file: None,
            reconnect_timeout,
            ..PgOptions::default()
        },
    )
    .unwrap()
}

/// Commits `commits` and checks the store holds each exactly once.
fn assert_exactly_once(s: &mut dyn StateWriter, commits: &[EpochCommit]) {
    assert_eq!(s.merchant_counts().unwrap(), expected_counts(commits));
    assert_eq!(
        s.ledger(LedgerId::Baseline).unwrap(),
        commits
            .iter()
            .flat_map(|c| c.detections.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        s.epoch_rows().unwrap(),
        commits
            .iter()
            .map(|c| c.progress.clone())
            .collect::<Vec<_>>()
    );
    let variants = s.variants().unwrap();
    for (v, ledger) in variants
        .iter()
        .zip(expected_variant_ledgers(commits, &variants))
    {
        assert_eq!(
            s.ledger(LedgerId::Variant(&v.name)).unwrap(),
            ledger,
            "{}",
            v.name
        );
    }
}

/// Commits epoch 0, injects `fault` into the commit of epoch 1, and checks both epochs are in
/// the store exactly once, the variants' rows included (a lost attempt leaves none of them,
/// an applied one is not repeated). Returns the store (reconnected) for further checks.
fn commit_through_fault(db: &str, fault: Fault) -> (String, PgStore, i32) {
    commit_through_fault_counted(db, fault, &RetryCounts::default())
}

/// As [`commit_through_fault`], the store counting its retries into `retries`.
fn commit_through_fault_counted(
    db: &str,
    fault: Fault,
    retries: &RetryCounts,
) -> (String, PgStore, i32) {
    let url = fresh_database_url(db);
    let options = PgOptions {
        reconnect_timeout: Duration::from_secs(20),
        retries: retries.handle(),
        ..PgOptions::default()
    };
    let mut s = PgStore::connect(&url, &options).unwrap();
    s.begin_run(&live_run()).unwrap();
    let specs = variant_specs();
    s.begin_variants(&specs).unwrap();
    let commits = [
        with_variants(
            epoch_commit(0, 0, 5, 4),
            vec![
                variant_rows(&specs[0].name, 0, 0..3),
                variant_rows(&specs[1].name, 0, 0..2),
            ],
        ),
        with_variants(
            epoch_commit(1, 4, 6, 5),
            vec![
                variant_rows(&specs[0].name, 1, 3..5),
                variant_rows(&specs[1].name, 1, 2..9),
            ],
        ),
    ];
    s.commit_epoch(&commits[0]).unwrap();
    let pid_before = s.backend_pid().unwrap();
    s.inject_fault(fault);
    s.commit_epoch(&commits[1]).unwrap();
    assert_exactly_once(&mut s, &commits);
    (url, s, pid_before)
}

/// A COMMIT whose answer is lost (the connection dies right after it was applied) is found
/// committed by re-reading the progress row after reconnecting: not applied twice.
#[cfg(feature = "test-services")]
#[test]
fn postgres_lost_commit_answer_is_resolved_by_the_progress_row() {
    bounded(Duration::from_secs(60), || {
        let (url, s, pid_before) =
            commit_through_fault("lost_commit", Fault::LoseConnectionAfterCommit);
        assert_ne!(s.backend_pid().unwrap(), pid_before, "reconnected");
        // The lease came back with the new session.
        let mut other = pg_store(&url, Duration::from_secs(20));
        assert!(matches!(
            other.begin_run(&live_run()),
            Err(StateError::Locked { .. })
        ));
    });
}

/// A connection lost while COMMIT was on its way, the server never got it: in doubt, the
/// progress row is absent after reconnecting, so the whole transaction is retried.
#[cfg(feature = "test-services")]
#[test]
fn postgres_lost_commit_that_rolled_back_is_retried() {
    bounded(Duration::from_secs(60), || {
        commit_through_fault("lost_commit_rolled_back", Fault::LoseConnectionDuringCommit);
    });
}

/// State-store retries counted by `counts` (as `txflow_state_store_retries_total` of a run).
fn state_retries_counted(counts: &RetryCounts) -> u64 {
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("r", "", counts.family().clone());
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with("r_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A connection lost inside the transaction, before COMMIT: rolled back, retried once (and
/// counted by the retry metric).
#[cfg(feature = "test-services")]
#[test]
fn postgres_connection_lost_before_commit_is_retried() {
    bounded(Duration::from_secs(60), || {
        let counts = RetryCounts::default();
        commit_through_fault_counted(
            "lost_before_commit",
            Fault::LoseConnectionBeforeCommit,
            &counts,
        );
        assert!(state_retries_counted(&counts) > 0, "the retry was counted");
    });
}

/// A store opened read-only (`txflow-report`) reads PostgreSQL in read-only sessions, also
/// after its session was killed and it reconnected, and never begins a run.
#[cfg(feature = "test-services")]
#[test]
fn postgres_read_only_store_reads_in_read_only_sessions() {
    bounded(Duration::from_secs(60), || {
        let url = fresh_database_url("read_only");
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut writer = pg_store(&url, Duration::from_secs(20));
        writer.begin_run(&live_run()).unwrap();
        writer.commit_epoch(&epoch_commit(0, 0, 5, 4)).unwrap();
        let options = PgOptions {
            reconnect_timeout: Duration::from_secs(20),
            ..PgOptions::default()
        };
        let mut reader = PgStore::connect_read_only(&url, &options).unwrap();
        let read_only = "default_transaction_read_only";
        assert_eq!(reader.session_setting(read_only).unwrap(), "on");
        assert_eq!(
            reader.ledger(LedgerId::Baseline).unwrap(),
            writer.ledger(LedgerId::Baseline).unwrap()
        );
        let pid = reader.backend_pid().expect("connected");
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        assert_eq!(reader.session_setting(read_only).unwrap(), "on");
        assert_ne!(reader.backend_pid(), Some(pid), "reconnected");
        assert_eq!(reader.epoch_rows().unwrap(), writer.epoch_rows().unwrap());
        let refused = reader.begin_run(&live_run());
        assert!(
            matches!(&refused, Err(StateError::Inconsistent(m)) if m.contains("read-only")),
            "{refused:?}"
        );
        // The writer's session is not read-only.
        assert_eq!(writer.session_setting(read_only).unwrap(), "off");
    });
}

/// Every method survives its session being killed between calls.
#[cfg(feature = "test-services")]
#[test]
fn postgres_methods_reconnect_after_session_killed() {
    bounded(Duration::from_secs(60), || {
        let url = fresh_database_url("killed_session");
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut s = pg_store(&url, Duration::from_secs(20));
        let mut kill = |s: &PgStore| {
            let pid = s.backend_pid().expect("connected");
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .unwrap();
        };
        s.begin_run(&live_run()).unwrap();
        let specs = variant_specs();
        let strict = specs[0].name.as_str();
        kill(&s);
        s.begin_variants(&specs).unwrap();
        let commits = [
            with_variants(
                epoch_commit(0, 0, 5, 4),
                vec![variant_rows(strict, 0, 0..3)],
            ),
            with_variants(
                epoch_commit(1, 4, 6, 5),
                vec![variant_rows(strict, 1, 3..4)],
            ),
        ];
        kill(&s);
        s.commit_epoch(&commits[0]).unwrap();
        kill(&s);
        s.mark_written(LedgerId::Baseline, 0, 0, 2).unwrap();
        kill(&s);
        assert_eq!(s.first_unwritten_seq(LedgerId::Baseline).unwrap(), Some(2));
        kill(&s);
        assert_eq!(s.ledger_range(LedgerId::Baseline, 0, 2).unwrap().len(), 2);
        kill(&s);
        s.mark_written(LedgerId::Variant(strict), 0, 0, 1).unwrap();
        kill(&s);
        assert_eq!(
            s.first_unwritten_seq(LedgerId::Variant(strict)).unwrap(),
            Some(1)
        );
        kill(&s);
        assert_eq!(
            s.ledger_range(LedgerId::Variant(strict), 0, 2)
                .unwrap()
                .len(),
            2
        );
        kill(&s);
        assert_eq!(s.variants().unwrap(), specs);
        kill(&s);
        s.commit_epoch(&commits[1]).unwrap();
        kill(&s);
        s.mark_finished().unwrap();
        kill(&s);
        let mut expected = commits.to_vec();
        expected[0].detections[0].file_seq = Some(0);
        expected[0].detections[1].file_seq = Some(0);
        expected[0].variant_detections[0].rows[0].file_seq = Some(0);
        assert_exactly_once(&mut s, &expected);
        kill(&s);
        let r = s.begin_run(&live_run()).unwrap();
        assert_eq!(r, expected_recovered(&commits, true));
        kill(&s);
        assert_eq!(
            s.begin_variants(&specs).unwrap(),
            expected_variant_recovered(&commits, &specs)
        );
    });
}

/// The lease lost while disconnected (another writer took it) is not silently shared:
/// the old writer gets `Locked`, not a second writer's access.
#[cfg(feature = "test-services")]
#[test]
fn postgres_lease_taken_over_while_disconnected_is_locked() {
    bounded(Duration::from_secs(60), || {
        let url = fresh_database_url("lease_takeover");
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let mut first = pg_store(&url, Duration::from_secs(2));
        first.begin_run(&live_run()).unwrap();
        first.commit_epoch(&epoch_commit(0, 0, 2, 2)).unwrap();
        let pid = first.backend_pid().unwrap();
        admin
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
        // The backend is gone once its lock is free: take it with a second writer.
        let mut second = pg_store(&url, Duration::from_secs(20));
        let taken = poll(Duration::from_secs(10), || {
            match second.begin_run(&live_run()) {
                Ok(_) => Some(()),
                Err(StateError::Locked { .. }) => None,
                other => panic!("second writer: {other:?}"),
            }
        });
        assert!(taken.is_some(), "second writer: still locked after 10 s");
        let started = Instant::now();
        match first.commit_epoch(&epoch_commit(1, 2, 2, 2)) {
            Err(StateError::Locked { detail }) => assert!(detail.contains("pid"), "{detail}"),
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(8));
        assert_eq!(second.epoch_rows().unwrap().len(), 1);
    });
}

/// The server restarts in the middle of a run: the next commit waits for it, reconnects,
/// re-takes the lease and commits exactly once.
#[cfg(feature = "test-services")]
#[test]
fn postgres_commit_survives_server_restart() {
    bounded(Duration::from_secs(120), || {
        let server = Arc::new(PgServer::new());
        let url = server.fresh_database_url("restart");
        let mut s = pg_store(&url, Duration::from_secs(30));
        s.begin_run(&live_run()).unwrap();
        let commits = [epoch_commit(0, 0, 5, 4), epoch_commit(1, 4, 50, 300)];
        s.commit_epoch(&commits[0]).unwrap();

        server.stop();
        let restarter = {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                server.start();
            })
        };
        let started = Instant::now();
        s.commit_epoch(&commits[1]).unwrap();
        let waited = started.elapsed();
        restarter.join().unwrap();
        assert!(waited >= Duration::from_millis(900), "waited {waited:?}");
        assert_exactly_once(&mut s, &commits);
        drop(s);

        let mut s = pg_store(&url, Duration::from_secs(30));
        assert_eq!(
            s.begin_run(&live_run()).unwrap(),
            expected_recovered(&commits, false)
        );
    });
}

/// A server that stays down: `Unavailable` once `reconnect_timeout` is spent, both for a
/// running store and for a new connection; the store works again once the server is back.
#[cfg(feature = "test-services")]
#[test]
fn postgres_unavailable_after_reconnect_timeout() {
    bounded(Duration::from_secs(120), || {
        let server = PgServer::new();
        let url = server.fresh_database_url("unavailable");
        let timeout = Duration::from_secs(2);
        let mut s = pg_store(&url, timeout);
        s.begin_run(&live_run()).unwrap();
        s.commit_epoch(&epoch_commit(0, 0, 2, 2)).unwrap();
        server.stop();

        let started = Instant::now();
        match s.commit_epoch(&epoch_commit(1, 2, 2, 2)) {
            Err(StateError::Unavailable {
                seconds,
                last_error,
            }) => {
                assert_eq!(seconds, 2);
                assert!(last_error.contains("127.0.0.1"), "{last_error}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
            "gave up after {waited:?}"
        );

        // A new connection is bounded by the start-up timeout instead, with its own message.
        let started = Instant::now();
        let connect = PgStore::connect(
            &url,
            &PgOptions {
                ca_file: None,
                reconnect_timeout: Duration::from_secs(60),
                connect_timeout: timeout,
                ..PgOptions::default()
            },
        );
        match connect {
            Err(e @ StateError::Unreachable { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains("cannot reach PostgreSQL at 127.0.0.1:")
                        && message.contains("at start"),
                    "{message}"
                );
            }
            Err(other) => panic!("expected Unreachable, got {other}"),
            Ok(_) => panic!("connected to a stopped server"),
        }
        assert!(started.elapsed() < Duration::from_secs(6));

        server.start();
        s.commit_epoch(&epoch_commit(1, 2, 2, 2)).unwrap();
        assert_eq!(s.epoch_rows().unwrap().len(), 2);
    });
}

fn pg_store_with(url: &str, statement_timeout: Duration, reconnect_timeout: Duration) -> PgStore {
    let options = PgOptions {
        statement_timeout,
        reconnect_timeout,
        ..PgOptions::default()
    };
    PgStore::connect(url, &options).unwrap()
}

/// A frozen server (SIGSTOP: its connections stay open, its kernel still takes packets,
/// nothing answers): a statement is given up after the statement timeout. Thawed within the
/// reconnect bound, the commit goes through on a new session, exactly once; frozen for good,
/// the store gives up with `Unavailable` after the statement timeout plus the reconnect
/// timeout; thawed, it works again.
#[cfg(feature = "test-services")]
#[test]
fn postgres_frozen_server_is_given_up_after_the_statement_timeout() {
    bounded(Duration::from_secs(90), || {
        let server = Arc::new(PgServer::new());
        let url = server.fresh_database_url("frozen");
        let (statement, reconnect) = (Duration::from_secs(1), Duration::from_secs(3));
        let mut s = pg_store_with(&url, statement, reconnect);
        s.begin_run(&live_run()).unwrap();
        let commits = [
            epoch_commit(0, 0, 5, 4),
            epoch_commit(1, 4, 50, 30),
            epoch_commit(2, 34, 5, 3),
        ];
        s.commit_epoch(&commits[0]).unwrap();
        let pid_before = s.backend_pid().unwrap();

        server.freeze();
        let thawer = {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(2));
                server.thaw();
            })
        };
        s.commit_epoch(&commits[1]).unwrap();
        thawer.join().unwrap();
        assert_ne!(
            s.backend_pid().unwrap(),
            pid_before,
            "the frozen session was given up for a new one"
        );

        server.freeze();
        let started = Instant::now();
        match s.commit_epoch(&commits[2]) {
            Err(StateError::Unavailable { last_error, .. }) => {
                assert!(last_error.contains("no answer within"), "{last_error}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= reconnect && waited < statement + reconnect + Duration::from_secs(4),
            "gave up after {waited:?}"
        );

        server.thaw();
        s.commit_epoch(&commits[2]).unwrap();
        assert_exactly_once(&mut s, &commits);
    });
}

/// A TCP proxy to a server that, once armed, stops passing the server's answers on the
/// first connection that sends COMMIT: the COMMIT is applied, its answer never arrives (a
/// network path gone silent). The silenced connection stays open.
struct CommitAnswerSink {
    port: u16,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl CommitAnswerSink {
    fn start(upstream: u16) -> CommitAnswerSink {
        use std::sync::atomic::AtomicBool;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let armed_ = Arc::clone(&armed);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let silenced = Arc::new(AtomicBool::new(false));
                let (c, s) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (armed, silenced_) = (Arc::clone(&armed_), Arc::clone(&silenced));
                std::thread::spawn(move || {
                    pump(client, server, |bytes| {
                        let commit = bytes.windows(6).any(|w| w == b"COMMIT");
                        if commit && armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                            silenced_.store(true, std::sync::atomic::Ordering::SeqCst);
                        }
                        true
                    })
                });
                std::thread::spawn(move || {
                    pump(s, c, |_| {
                        !silenced.load(std::sync::atomic::Ordering::SeqCst)
                    })
                });
            }
        });
        CommitAnswerSink { port, armed }
    }

    fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, each read passed on only if `pass` says so.
fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    mut pass: impl FnMut(&[u8]) -> bool,
) {
    use std::io::{Read, Write};
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if pass(&buf[..n]) && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A COMMIT whose answer never comes is given up after the statement timeout and is in
/// doubt: once reconnected (and the silent session ended), the progress row shows it was
/// applied, so it is not applied again.
#[cfg(feature = "test-services")]
#[test]
fn postgres_commit_without_an_answer_is_settled_by_the_progress_row() {
    bounded(Duration::from_secs(60), || {
        let server = PgServer::new();
        let url = server.fresh_database_url("silent_commit");
        let proxy = CommitAnswerSink::start(server.port());
        let url = url.replace(
            &format!(":{}/", server.port()),
            &format!(":{}/", proxy.port),
        );
        let mut s = pg_store_with(&url, Duration::from_secs(1), Duration::from_secs(20));
        s.begin_run(&live_run()).unwrap();
        let commits = [epoch_commit(0, 0, 5, 4), epoch_commit(1, 4, 50, 30)];
        s.commit_epoch(&commits[0]).unwrap();
        let pid_before = s.backend_pid().unwrap();
        proxy.arm();
        let started = Instant::now();
        s.commit_epoch(&commits[1]).unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "the COMMIT's answer was withheld, yet the commit returned at once"
        );
        assert_ne!(s.backend_pid().unwrap(), pid_before, "reconnected");
        assert_exactly_once(&mut s, &commits);
    });
}

/// `sslmode=require` against a server without TLS: a clear error at once, no retrying.
#[cfg(feature = "test-services")]
#[test]
fn postgres_require_tls_without_server_tls_is_a_clear_error() {
    bounded(Duration::from_secs(60), || {
        let url = fresh_database_url("no_tls");
        let started = Instant::now();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}sslmode=require");
        match open(&StateConfig::parse(&url).unwrap()) {
            Err(e @ StateError::Postgres { .. }) => {
                let msg = e.to_string();
                eprintln!("{msg}");
                assert!(msg.contains("TLS"), "{msg}");
            }
            Err(other) => panic!("expected a PostgreSQL TLS error, got {other}"),
            Ok(_) => panic!("connected without TLS"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}

/// TLS against a server with a private CA (made with openssl(1), which the test script installs):
/// trusted through `ca_file` or libpq's `sslrootcert=`; refused at once with the default
/// roots.
#[cfg(feature = "test-services")]
#[test]
fn postgres_tls_with_private_ca() {
    assert!(
        Command::new("openssl").arg("version").output().is_ok(),
        "openssl(1) is missing: install openssl (scripts/ensure-tools.sh does)"
    );
    bounded(Duration::from_secs(120), || {
        let mut server = PgServer::init();
        let dir = server.dir().to_path_buf();
        let (ca, cert, key) = (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        );
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=txflow test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.pem",
        ]);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        server.give_to_server(&key);
        server.give_to_server(&cert);
        server.set("ssl", "on");
        server.set("ssl_cert_file", cert.to_str().unwrap());
        server.set("ssl_key_file", key.to_str().unwrap());
        server.start();

        let db = server
            .fresh_database_url("tls")
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let url = format!(
            "postgres://postgres@localhost:{}/{db}?sslmode=require",
            server.port()
        );
        let with_ca = PgOptions {
            ca_file: Some(ca.clone()),
            reconnect_timeout: Duration::from_secs(10),
            ..PgOptions::default()
        };
        let mut s = PgStore::connect(&url, &with_ca).unwrap();
        s.begin_run(&live_run()).unwrap();
        s.commit_epoch(&epoch_commit(0, 0, 2, 2)).unwrap();
        // The session really is encrypted.
        let mut admin = postgres::Client::connect(&server.url(&db), postgres::NoTls).unwrap();
        let pid = s.backend_pid().unwrap();
        let ssl: bool = admin
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", &[&pid])
            .unwrap()
            .get(0);
        assert!(ssl, "the store's session uses TLS");
        drop(s);

        // libpq's sslrootcert= and verify-full in the URL work the same.
        let libpq_url = format!(
            "postgres://postgres@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
            server.port(),
            ca.display()
        );
        let mut s = PgStore::connect(&libpq_url, &PgOptions::default()).unwrap();
        let epochs = s.begin_run(&live_run()).unwrap().epochs;
        assert_eq!(epochs.keys().copied().collect::<Vec<_>>(), vec![0]);
        drop(s);

        // Default roots: the certificate is not trusted; refused without retrying.
        let started = Instant::now();
        match PgStore::connect(&url, &PgOptions::default()) {
            Err(e @ StateError::Postgres { .. }) => {
                let msg = e.to_string();
                eprintln!("{msg}");
                assert!(msg.contains("TLS") || msg.contains("certificate"), "{msg}");
            }
            Err(other) => panic!("expected a TLS error, got {other}"),
            Ok(_) => panic!("an untrusted certificate was accepted"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    });
}
