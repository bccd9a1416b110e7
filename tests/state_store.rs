//! The two state stores (SQLite and PostgreSQL) behind `StateStore`: the same scenario on
//! both with identical results, the single-writer guard, the run identity, and PostgreSQL's
//! exactly-once behaviour under connection loss (server restart, lost COMMIT answer,
//! reconnect bound) and TLS.

// The PostgreSQL fault injection these tests use exists only with the cargo feature
// `fault-injection`; the dev-dependency of txflow on itself in Cargo.toml enables it for test
// builds. Fail the build with a clear message rather than skip the tests if it is ever off.
#[cfg(not(feature = "fault-injection"))]
compile_error!(
    "tests/state_store.rs needs txflow's cargo feature `fault-injection` (enabled for tests by \
     the `txflow = { path = \".\", features = [\"fault-injection\"] }` dev-dependency in \
     Cargo.toml): run `cargo test --features fault-injection`"
);

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::{fresh_database_url, PgServer};
use txflow::error::StateError;
use txflow::model::{DetectionKey, Pattern};
use txflow::sinks::state::postgres::{Fault, PgOptions, PgStore};
use txflow::sinks::state::sqlite::SqliteStore;
use txflow::sinks::state::{
    open, EpochCommit, EpochRow, LedgerRow, Recovered, RunIdentity, RunMode, StateConfig,
    StateStore,
};

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
                pattern_id: format!("PatId{}", seq % 3 + 1),
                action_type: ["UPGRADE", "CHILD", "DEI-NEEDED"][(seq % 3) as usize].into(),
                customer_name: format!("C{seq:05} \"quoted\", comma"),
                merchant_id: format!("M{:03}", seq % 97),
                y_start_time: "2026-01-01 00:00:00.000000".into(),
                detection_time: format!("2026-01-01 00:00:{:02}.123456", seq % 60),
                file_seq: None,
                evidence: None,
            })
            .collect(),
        variant_detections: Vec::new(),
    }
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
                pattern: Pattern::from_id(&r.pattern_id).unwrap(),
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
}

fn snapshot(s: &mut dyn StateStore) -> Snapshot {
    Snapshot {
        ledger: s.ledger().unwrap(),
        counts: s.merchant_counts().unwrap(),
        epochs: s.epoch_rows().unwrap(),
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
    open: &dyn Fn() -> Box<dyn StateStore>,
    fresh: &dyn Fn() -> Box<dyn StateStore>,
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
    unwritten.push(s.first_unwritten_seq().unwrap());
    for c in &commits {
        s.commit_epoch(c).unwrap();
    }
    let expected_ledger: Vec<LedgerRow> =
        commits.iter().flat_map(|c| c.detections.clone()).collect();
    assert_eq!(s.ledger().unwrap(), expected_ledger);
    assert_eq!(s.merchant_counts().unwrap(), expected_counts(&commits));
    assert_eq!(
        s.epoch_rows().unwrap(),
        commits
            .iter()
            .map(|c| c.progress.clone())
            .collect::<Vec<_>>()
    );

    // The ledger is written in files: [0, 3) in file 0, [3, 10) in file 1.
    unwritten.push(s.first_unwritten_seq().unwrap());
    assert_eq!(unwritten[1], Some(0));
    s.mark_written(0, 0, 3).unwrap();
    unwritten.push(s.first_unwritten_seq().unwrap());
    assert_eq!(unwritten[2], Some(3));
    s.mark_written(1, 3, 10).unwrap();
    s.mark_written(1, 3, 10).unwrap(); // idempotent
    unwritten.push(s.first_unwritten_seq().unwrap());
    assert_eq!(unwritten[3], Some(10));
    let range = s.ledger_range(1, 5).unwrap();
    assert_eq!(
        range
            .iter()
            .map(|r| (r.seq, r.file_seq))
            .collect::<Vec<_>>(),
        vec![(1, Some(0)), (2, Some(0)), (3, Some(1)), (4, Some(1))]
    );
    assert_eq!(range[0].customer_name, expected_ledger[1].customer_name);
    assert!(s.ledger_range(400, 500).unwrap().is_empty());

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
    unwritten.push(s.first_unwritten_seq().unwrap());

    // Continue: one more epoch, then the end of the stream.
    let last = epoch_commit(7, before.ledger.len() as u64, 4, 3);
    s.commit_epoch(&last).unwrap();
    let total = before.ledger.len() as u64 + 3;
    s.mark_written(2, 10, total).unwrap();
    unwritten.push(s.first_unwritten_seq().unwrap());
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
    impl Fn() -> Box<dyn StateStore>,
    impl Fn() -> Box<dyn StateStore>,
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
    impl Fn() -> Box<dyn StateStore>,
    impl Fn() -> Box<dyn StateStore>,
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

#[test]
fn scenario_on_postgres() {
    bounded(Duration::from_secs(120), || {
        let (main, other) = pg_openers("scenario");
        scenario(&main, &other);
    });
}

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
    assert_eq!(versions, vec![1, 2]);
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
fn legacy_store_is_migrated_and_refused(s: &mut dyn StateStore) {
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
    let lock = format!("{}.lock", path.display());
    let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
    s.begin_run(&live_run()).unwrap();
    let status = Command::new("flock")
        .args(["--nonblock", "--conflict-exit-code", "7", &lock, "true"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7), "another process got the lock");
    drop(s);

    // Another process holds it: we are refused, naming the lock file.
    let mut holder = Command::new("flock")
        .args([&lock, "sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
        match s.begin_run(&live_run()) {
            Err(StateError::Locked { detail }) => break detail,
            Ok(_) if Instant::now() < deadline => {
                drop(s); // the holder has not started yet
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    };
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(refused.contains(".lock"), "{refused}");
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
fn assert_exactly_once(s: &mut dyn StateStore, commits: &[EpochCommit]) {
    assert_eq!(s.merchant_counts().unwrap(), expected_counts(commits));
    assert_eq!(
        s.ledger().unwrap(),
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
}

/// Commits epoch 0, injects `fault` into the commit of epoch 1, and checks both epochs are in
/// the store exactly once. Returns the store (reconnected) for further checks.
fn commit_through_fault(db: &str, fault: Fault) -> (String, PgStore, i32) {
    let url = fresh_database_url(db);
    let mut s = pg_store(&url, Duration::from_secs(20));
    s.begin_run(&live_run()).unwrap();
    let commits = [epoch_commit(0, 0, 5, 4), epoch_commit(1, 4, 6, 5)];
    s.commit_epoch(&commits[0]).unwrap();
    let pid_before = s.backend_pid().unwrap();
    s.inject_fault(fault);
    s.commit_epoch(&commits[1]).unwrap();
    assert_exactly_once(&mut s, &commits);
    (url, s, pid_before)
}

/// A COMMIT whose answer is lost (the connection dies right after it was applied) is found
/// committed by re-reading the progress row after reconnecting: not applied twice.
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
#[test]
fn postgres_lost_commit_that_rolled_back_is_retried() {
    bounded(Duration::from_secs(60), || {
        commit_through_fault("lost_commit_rolled_back", Fault::LoseConnectionDuringCommit);
    });
}

/// State-store retries counted so far by `txflow_state_store_retries_total` (process-wide).
fn state_retries_counted() -> u64 {
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("r", "", txflow::telemetry::retries::state_store().clone());
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .filter(|l| l.starts_with("r_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A connection lost inside the transaction, before COMMIT: rolled back, retried once (and
/// counted by the retry metric).
#[test]
fn postgres_connection_lost_before_commit_is_retried() {
    bounded(Duration::from_secs(60), || {
        let counted = state_retries_counted();
        commit_through_fault("lost_before_commit", Fault::LoseConnectionBeforeCommit);
        assert!(state_retries_counted() > counted, "the retry was counted");
    });
}

/// Every method survives its session being killed between calls.
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
        let commits = [epoch_commit(0, 0, 5, 4), epoch_commit(1, 4, 6, 5)];
        kill(&s);
        s.commit_epoch(&commits[0]).unwrap();
        kill(&s);
        s.mark_written(0, 0, 2).unwrap();
        kill(&s);
        assert_eq!(s.first_unwritten_seq().unwrap(), Some(2));
        kill(&s);
        assert_eq!(s.ledger_range(0, 2).unwrap().len(), 2);
        kill(&s);
        s.commit_epoch(&commits[1]).unwrap();
        kill(&s);
        s.mark_finished().unwrap();
        kill(&s);
        let mut expected = commits.to_vec();
        expected[0].detections[0].file_seq = Some(0);
        expected[0].detections[1].file_seq = Some(0);
        assert_exactly_once(&mut s, &expected);
        kill(&s);
        let r = s.begin_run(&live_run()).unwrap();
        assert_eq!(r, expected_recovered(&commits, true));
    });
}

/// The lease lost while disconnected (another writer took it) is not silently shared:
/// the old writer gets `Locked`, not a second writer's access.
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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match second.begin_run(&live_run()) {
                Ok(_) => break,
                Err(StateError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                other => panic!("second writer: {other:?}"),
            }
        }
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

/// `sslmode=require` against a server without TLS: a clear error at once, no retrying.
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
