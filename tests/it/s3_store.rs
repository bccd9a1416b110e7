//! `S3Store` against a real S3 server (s3s + s3s-fs, in-process) with the real aws-sdk-s3:
//! round trips, listing and pagination, conditional creates, clear permanent errors, and
//! retries through injected faults.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::s3::{Fault, FaultyProxy, S3Server, ACCESS_KEY, SECRET_KEY};
use txflow::error::StoreError;
use txflow::objectstore::s3::{S3Store, S3Tuning};
use txflow::objectstore::{ObjectStore, PutOutcome, S3Options};
use txflow::telemetry::retries::RetryCounts;

/// Runs `f` on a thread and fails the test if it takes longer than `limit` (a hang).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("took longer than {limit:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the operation panicked"),
    }
}

fn store(server: &S3Server, bucket: &str, prefix: &str) -> S3Store {
    S3Store::connect(bucket.into(), prefix.into(), &server.options()).expect("connect")
}

fn keys(metas: &[txflow::objectstore::ObjectMeta]) -> Vec<String> {
    metas.iter().map(|m| m.key.clone()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Deterministic, non-repeating-looking bytes.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn assert_permanent(err: &StoreError, needle: &str) {
    match err {
        StoreError::S3Permanent { message, .. } => assert!(
            message.contains(needle),
            "message should mention {needle:?}: {err}"
        ),
        other => panic!("expected S3Permanent mentioning {needle:?}, got {other:?}"),
    }
    let text = err.to_string();
    assert!(!text.contains(SECRET_KEY), "secret in error: {text}");
}

#[test]
fn put_get_head_round_trip_including_a_large_object() {
    let server = S3Server::start();
    server.create_bucket("data");
    let store = store(&server, "data", "landing");
    store.check().unwrap();

    let before = now_ms();
    store.put("chunk-000001.csv", b"a,b,c\n1,2,3\n").unwrap();
    let object = store.get("chunk-000001.csv").unwrap().expect("object");
    assert_eq!(&object.body[..], b"a,b,c\n1,2,3\n");
    assert_eq!(object.meta.key, "chunk-000001.csv");
    assert_eq!(object.meta.size, 12);
    // LastModified has second resolution.
    assert!(
        (object.meta.last_modified_ms - before).abs() < 5_000,
        "{} vs {before}",
        object.meta.last_modified_ms
    );
    let meta = store.head("chunk-000001.csv").unwrap().expect("meta");
    assert_eq!(meta, object.meta);

    // Replacing an object.
    store.put("chunk-000001.csv", b"replaced").unwrap();
    assert_eq!(
        &store.get("chunk-000001.csv").unwrap().unwrap().body[..],
        b"replaced"
    );

    // An empty object.
    store.put("empty.csv", b"").unwrap();
    let empty = store.get("empty.csv").unwrap().unwrap();
    assert!(empty.body.is_empty());
    assert_eq!(store.head("empty.csv").unwrap().unwrap().size, 0);

    // Larger than 8 MiB (the SDK's multipart threshold elsewhere; a single PUT here).
    let big = pattern(9 * 1024 * 1024 + 123);
    store.put("big/object.bin", &big).unwrap();
    let got = store.get("big/object.bin").unwrap().unwrap();
    assert_eq!(got.meta.size, big.len() as u64);
    assert!(got.body[..] == big[..], "large object differs");
    assert_eq!(
        store.head("big/object.bin").unwrap().unwrap().size,
        big.len() as u64
    );

    // The objects sit under the prefix in the bucket.
    assert!(server
        .root()
        .join("data/landing/chunk-000001.csv")
        .is_file());
    assert!(server.root().join("data/landing/big/object.bin").is_file());
}

#[test]
fn missing_keys_are_none() {
    let server = S3Server::start();
    server.create_bucket("data");
    let store = store(&server, "data", "");
    assert!(store.get("nope.csv").unwrap().is_none());
    assert!(store.head("nope.csv").unwrap().is_none());
    assert!(store.get("dir/nope.csv").unwrap().is_none());
    store.put("dir/there.csv", b"x").unwrap();
    assert!(store.get("dir/nope.csv").unwrap().is_none());
    assert!(store.head("dir/there.csv").unwrap().is_some());
}

#[test]
fn read_object_refuses_an_object_over_its_cap() {
    let server = S3Server::start();
    server.create_bucket("data");
    store(&server, "data", "ref")
        .put("imp.csv", &[b'x'; 20])
        .unwrap();
    let read =
        |limit| txflow::objectstore::read_object("s3://data/ref/imp.csv", &server.options(), limit);
    assert_eq!(&read(20).unwrap().body[..], &[b'x'; 20]);
    assert_eq!(
        read(19).unwrap_err().to_string(),
        "s3://data/ref/imp.csv: larger than 19 bytes, the most accepted here"
    );
}

#[test]
fn list_with_prefix_start_after_and_limit() {
    let server = S3Server::start();
    server.create_bucket("data");
    let store = store(&server, "data", "in");
    for k in 1..=5 {
        store
            .put(&format!("chunk-{k:06}.csv"), format!("{k}").as_bytes())
            .unwrap();
    }
    store.put("a.csv", b"a").unwrap();
    store.put("sub/c.csv", b"ccc").unwrap();
    store.put("sub/d.csv", b"d").unwrap();

    // Every key at any depth, as the local store lists.
    let all = store.list("", None, 100).unwrap();
    assert_eq!(
        keys(&all),
        [
            "a.csv",
            "chunk-000001.csv",
            "chunk-000002.csv",
            "chunk-000003.csv",
            "chunk-000004.csv",
            "chunk-000005.csv",
            "sub/c.csv",
            "sub/d.csv"
        ]
    );
    assert_eq!(all[0].size, 1);
    assert!(all.iter().all(|m| m.last_modified_ms > 0));

    assert_eq!(
        keys(&store.list("chunk-", Some("chunk-000002.csv"), 100).unwrap()),
        ["chunk-000003.csv", "chunk-000004.csv", "chunk-000005.csv"]
    );
    assert_eq!(
        keys(&store.list("chunk-", Some("chunk-000001.csv"), 2).unwrap()),
        ["chunk-000002.csv", "chunk-000003.csv"]
    );
    assert_eq!(
        keys(&store.list("chunk-", Some("chunk-000005.csv"), 10).unwrap()),
        Vec::<String>::new()
    );
    // A start_after between keys, and one sorting before the prefix.
    assert_eq!(
        keys(&store.list("chunk-", Some("chunk-000004"), 10).unwrap()),
        ["chunk-000004.csv", "chunk-000005.csv"]
    );
    assert_eq!(store.list("chunk-", Some("a"), 10).unwrap().len(), 5);
    assert!(store.list("", None, 0).unwrap().is_empty());

    let sub = store.list("sub/", None, 100).unwrap();
    assert_eq!(keys(&sub), ["sub/c.csv", "sub/d.csv"]);
    assert_eq!(sub[0].size, 3);
    assert_eq!(
        keys(&store.list("sub/", Some("sub/c.csv"), 100).unwrap()),
        ["sub/d.csv"]
    );
    assert!(store.list("nothing-", None, 100).unwrap().is_empty());
}

#[test]
fn list_paginates_beyond_1000_keys() {
    let server = S3Server::start();
    server.create_bucket("many");
    let store = Arc::new(store(&server, "many", "p"));
    const N: usize = 1100;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in (t..N).step_by(8) {
                    store.put(&format!("k-{i:05}"), b"").unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // A key outside the listed prefix.
    store.put("other", b"x").unwrap();

    let started = Instant::now();
    let all = store.list("k-", None, 10_000).unwrap();
    let expected: Vec<String> = (0..N).map(|i| format!("k-{i:05}")).collect();
    assert_eq!(keys(&all), expected);
    eprintln!("listed {N} keys in {:?}", started.elapsed());

    // Limits across the page boundary, and continuation from start_after.
    assert_eq!(
        keys(&store.list("k-", None, 1050).unwrap()),
        expected[..1050]
    );
    assert_eq!(
        keys(&store.list("k-", None, 1000).unwrap()),
        expected[..1000]
    );
    assert_eq!(
        keys(&store.list("k-", Some("k-00099"), 1000).unwrap()),
        expected[100..1100]
    );
    assert_eq!(
        keys(&store.list("k-", Some("k-00099"), 5000).unwrap()),
        expected[100..]
    );
    assert_eq!(
        keys(&store.list("k-", Some("k-01000"), 10_000).unwrap()),
        expected[1001..]
    );
    assert_eq!(store.list("", None, 10_000).unwrap().len(), N + 1);
}

#[test]
fn keys_are_relative_to_the_prefix() {
    let server = S3Server::start();
    server.create_bucket("bkt");
    let root = store(&server, "bkt", "");
    let run = store(&server, "bkt", "run/landing");
    let sibling = store(&server, "bkt", "run/landingx");
    // Location parsing trims slashes; open() goes through it.
    let opened = txflow::objectstore::open("s3://bkt/run/landing/", &server.options()).unwrap();

    run.put("x.csv", b"x").unwrap();
    sibling.put("y.csv", b"y").unwrap();
    assert!(server.root().join("bkt/run/landing/x.csv").is_file());
    assert_eq!(&opened.get("x.csv").unwrap().unwrap().body[..], b"x");
    assert_eq!(keys(&run.list("", None, 10).unwrap()), ["x.csv"]);
    assert_eq!(keys(&opened.list("x", None, 10).unwrap()), ["x.csv"]);
    assert_eq!(keys(&sibling.list("", None, 10).unwrap()), ["y.csv"]);
    assert_eq!(
        keys(&root.list("run/landing/", None, 10).unwrap()),
        ["run/landing/x.csv"]
    );
    assert!(root.get("x.csv").unwrap().is_none());
    assert_eq!(
        &root.get("run/landing/x.csv").unwrap().unwrap().body[..],
        b"x"
    );
    assert_eq!(run.head("x.csv").unwrap().unwrap().key, "x.csv");
}

#[test]
fn put_if_absent_creates_once() {
    let server = S3Server::start();
    server.create_bucket("out");
    let store = store(&server, "out", "detections");
    assert_eq!(
        store.put_if_absent("part-000001.csv", b"first").unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store.put_if_absent("part-000001.csv", b"second").unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        &store.get("part-000001.csv").unwrap().unwrap().body[..],
        b"first"
    );
    assert_eq!(
        store.put_if_absent("part-000002.csv", b"").unwrap(),
        PutOutcome::Created
    );
}

#[test]
fn describe_shows_no_secrets() {
    let server = S3Server::start();
    server.create_bucket("data");
    let store = store(&server, "data", "landing/2026");
    assert_eq!(store.describe(), "s3://data/landing/2026");
    let root = S3Store::connect("data".into(), String::new(), &server.options()).unwrap();
    assert_eq!(root.describe(), "s3://data");
    for text in [
        store.describe(),
        format!("{store:?}"),
        root.describe(),
        format!("{root:?}"),
    ] {
        assert!(!text.contains(SECRET_KEY), "{text}");
        assert!(!text.contains(ACCESS_KEY), "{text}");
    }
}

#[test]
fn missing_bucket_is_a_clear_permanent_error() {
    let server = S3Server::start();
    let options = server.options();
    bounded(Duration::from_secs(20), move || {
        let started = Instant::now();
        let store = S3Store::connect("no-such-bucket".into(), "in".into(), &options).unwrap();
        let err = store.check().unwrap_err();
        assert_permanent(&err, "does not exist");
        assert!(err.to_string().contains("no-such-bucket"), "{err}");
        eprintln!("check: {err}");
        let err = store.get("chunk-000001.csv").unwrap_err();
        assert_permanent(&err, "does not exist");
        eprintln!("get: {err}");
        assert_permanent(&store.put("x", b"x").unwrap_err(), "does not exist");
        assert_permanent(
            &store.put_if_absent("x", b"x").unwrap_err(),
            "does not exist",
        );
        assert_permanent(&store.list("", None, 10).unwrap_err(), "does not exist");
        // HEAD responses carry no error code: a missing bucket looks like a missing key.
        assert!(store.head("x").unwrap().is_none());
        // Permanent errors are not retried.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    });
}

#[test]
fn bad_credentials_are_a_clear_permanent_error() {
    // The process's credentials are the test ones; these servers expect others.
    let unknown_key = S3Server::start_with_credentials("someoneelse", SECRET_KEY);
    let wrong_secret = S3Server::start_with_credentials(ACCESS_KEY, "anothersecret");
    for server in [&unknown_key, &wrong_secret] {
        server.create_bucket("data");
        let options = server.options();
        bounded(Duration::from_secs(20), move || {
            let started = Instant::now();
            let store = S3Store::connect("data".into(), "in".into(), &options).unwrap();
            let err = store.check().unwrap_err();
            assert_permanent(&err, "credentials");
            eprintln!("check: {err}");
            assert_permanent(&store.get("x").unwrap_err(), "credentials");
            assert_permanent(&store.put("x", b"x").unwrap_err(), "credentials");
            assert_permanent(&store.put_if_absent("x", b"x").unwrap_err(), "credentials");
            assert_permanent(&store.list("", None, 1).unwrap_err(), "credentials");
            // HEAD responses carry no error code: 403 is "not there yet" (check() catches it).
            assert!(store.head("x").unwrap().is_none());
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "{:?}",
                started.elapsed()
            );
        });
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every operation, several times, through `proxy`; returns the captured log.
fn exercise_through(
    proxy: &FaultyProxy,
    server: &S3Server,
    prefix: &str,
    retries: &RetryCounts,
) -> String {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let options = S3Options {
            retries: retries.handle(),
            ..proxy.options()
        };
        let store = S3Store::connect("data".into(), prefix.into(), &options).unwrap();
        let direct = S3Store::connect("data".into(), prefix.into(), &server.options()).unwrap();
        store.check().unwrap();
        let big = pattern(3 * 1024 * 1024 + 7);
        for round in 0..4 {
            let key = format!("chunk-{round:06}.csv");
            store
                .put(&key, format!("round {round}").as_bytes())
                .unwrap();
            assert_eq!(
                &store.get(&key).unwrap().unwrap().body[..],
                format!("round {round}").as_bytes()
            );
            assert!(store.head(&key).unwrap().is_some());
            assert!(store.get("missing.csv").unwrap().is_none());
            assert!(store.head("missing.csv").unwrap().is_none());
            let out = format!("out-{round}.csv");
            assert_eq!(
                store.put_if_absent(&out, b"o").unwrap(),
                PutOutcome::Created
            );
            assert_eq!(
                store.put_if_absent(&out, b"o").unwrap(),
                PutOutcome::AlreadyExists
            );
            assert_eq!(store.list("chunk-", None, 100).unwrap().len(), round + 1);
        }
        store.put("big.bin", &big).unwrap();
        assert!(store.get("big.bin").unwrap().unwrap().body[..] == big[..]);
        assert!(direct.get("big.bin").unwrap().unwrap().body[..] == big[..]);
    });
    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    log
}

/// S3 retries counted by `counts` (as `txflow_s3_retries_total{op}` of a run).
fn s3_retries_counted(counts: &RetryCounts) -> u64 {
    ["check", "get", "head", "put", "put_if_absent", "list"]
        .iter()
        .map(|op| counts.of(op))
        .sum()
}

#[test]
fn retries_through_injected_faults() {
    let server = S3Server::start();
    server.create_bucket("data");
    for fault in [Fault::SlowDown, Fault::InternalError, Fault::Reset] {
        let proxy = FaultyProxy::start(&server.endpoint, 3, fault);
        let started = Instant::now();
        let counts = RetryCounts::default();
        let log = exercise_through(&proxy, &server, &format!("{fault:?}"), &counts);
        // Every fault was retried, and counted where the store was told to count.
        assert!(s3_retries_counted(&counts) >= proxy.faults());
        eprintln!(
            "{fault:?}: {} requests, {} failed, {:?}",
            proxy.requests(),
            proxy.faults(),
            started.elapsed()
        );
        eprintln!(
            "  {}",
            log.lines().find(|l| l.contains("retrying")).unwrap_or("")
        );
        assert!(proxy.faults() >= 10, "{fault:?}: {}", proxy.faults());
        assert_eq!(proxy.faults(), proxy.requests() / 3);
        assert!(log.contains("retrying"), "{log}");
        assert!(log.contains("op=") && log.contains("bucket=data"), "{log}");
        assert!(log.contains("attempt=1"), "{log}");
        assert!(!log.contains(SECRET_KEY), "{log}");
        if fault == Fault::SlowDown {
            assert!(log.contains("SlowDown"), "{log}");
        }
    }
}

#[test]
fn persistent_faults_exhaust_a_bounded_retry_budget() {
    let server = S3Server::start();
    server.create_bucket("data");
    let proxy = FaultyProxy::start(&server.endpoint, 1, Fault::SlowDown);
    let tuning = S3Tuning {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        ..S3Tuning::default()
    };
    let options = proxy.options();
    let store = bounded(Duration::from_secs(20), move || {
        let store = S3Store::connect_with("data".into(), "".into(), &options, tuning).unwrap();
        let started = Instant::now();
        let err = store.put("x", b"x").unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        match &err {
            StoreError::S3Exhausted {
                attempts, message, ..
            } => {
                assert_eq!(*attempts, 4);
                assert!(message.contains("SlowDown"), "{message}");
            }
            other => panic!("expected S3Exhausted, got {other:?}"),
        }
        store
    });
    // Our retry loop is the only one: the SDK's own retries are off.
    assert_eq!(proxy.requests(), 4);
    assert_eq!(store.tuning().max_attempts, 4);
}

#[test]
fn unreachable_endpoint_fails_after_bounded_retries() {
    common::s3::init_env();
    // A port with nothing listening.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let options = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        ..S3Options::default()
    };
    let tuning = S3Tuning {
        max_attempts: 5,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(1),
        ..S3Tuning::default()
    };
    bounded(Duration::from_secs(30), move || {
        let store = S3Store::connect_with("data".into(), "in".into(), &options, tuning).unwrap();
        for op in ["check", "get", "head", "put", "list"] {
            let started = Instant::now();
            let err = match op {
                "check" => store.check().unwrap_err(),
                "get" => store.get("x").unwrap_err(),
                "head" => store.head("x").unwrap_err(),
                "put" => store.put("x", b"x").unwrap_err(),
                _ => store.list("", None, 10).unwrap_err(),
            };
            let elapsed = started.elapsed();
            eprintln!("{op}: {err} after {elapsed:?}");
            assert!(
                matches!(err, StoreError::S3Exhausted { attempts: 5, .. }),
                "{op}: {err:?}"
            );
            assert!(elapsed < Duration::from_secs(5), "{op}: {elapsed:?}");
        }
    });
}

#[test]
fn usable_from_inside_a_tokio_runtime() {
    let server = S3Server::start();
    server.create_bucket("data");
    let store = store(&server, "data", "");
    store.put("x", b"x").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = runtime.block_on(async { store.get("x").unwrap().unwrap().body });
    assert_eq!(&body[..], b"x");
}

#[test]
fn silent_server_times_out_per_attempt() {
    common::s3::init_env();
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let options = S3Options {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        ..S3Options::default()
    };
    let tuning = S3Tuning {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        read_timeout: Duration::from_millis(300),
        attempt_timeout: Duration::from_millis(800),
        ..S3Tuning::default()
    };
    bounded(Duration::from_secs(20), move || {
        let store = S3Store::connect_with("data".into(), "in".into(), &options, tuning).unwrap();
        for op in ["get", "put"] {
            let started = Instant::now();
            let err = match op {
                "get" => store.get("x").unwrap_err(),
                _ => store.put("x", b"x").unwrap_err(),
            };
            let elapsed = started.elapsed();
            eprintln!("{op}: {err} after {elapsed:?}");
            assert!(
                matches!(err, StoreError::S3Exhausted { attempts: 2, .. }),
                "{op}: {err:?}"
            );
            assert!(elapsed < Duration::from_secs(3), "{op}: {elapsed:?}");
        }
        // The whole-attempt bound applies when the SDK's read timeout is longer.
        let tuning = S3Tuning {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            read_timeout: Duration::from_secs(60),
            attempt_timeout: Duration::from_millis(400),
            ..S3Tuning::default()
        };
        let store = S3Store::connect_with("data".into(), "in".into(), &options, tuning).unwrap();
        let started = Instant::now();
        let err = store.get("x").unwrap_err();
        eprintln!("get: {err} after {:?}", started.elapsed());
        assert!(
            matches!(&err, StoreError::S3Exhausted { attempts: 2, message, .. }
                if message.contains("attempt timed out")),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    });
}
