//! The operating endpoint (`mechanism-y --http`), end to end over real HTTP:
//! - a live run's `/metrics` (parsed line by line) and `/api/status` agree with the state
//!   store, and `/healthz`, `/readyz` answer as documented; every labelled family has each
//!   of its known label values from the start, and the standard `process_` metrics are there;
//! - a missing landing, and a landing silent past `--ready-max-idle`, are `waiting_for_input`
//!   and not ready on every surface;
//! - hostile clients during a backtest get their bounded answers, and the run's output and
//!   tables are byte-identical to a run without the endpoint;
//! - with a thousand idle connections and slow-loris clients open (past the connection cap,
//!   too), every `/healthz` probe answers within 100 ms;
//! - a cluster whose peer is frozen fails with the stall line within the stall timeout, and
//!   a restart ends exactly as an uninterrupted run;
//! - a secret planted in every form in the state URL, the S3 endpoint and an S3 location
//!   shows on no surface (logs, errors, `/api/status`, the console, `txflow-report`).
//!
//! Every wait is bounded; every child process is killed when its guard drops.

// Helpers of the tests that need a service or the browser are unused without them.
#![cfg_attr(
    not(all(feature = "test-services", feature = "test-browser")),
    allow(dead_code, unused_imports)
)]

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::outputs::{named_tree, timeless_epochs, timeless_ledger};
use common::paths::free_port;
use common::process::{dir_removed_at_exit, generated_data, YProc as Proc};
use common::wait::wait_until;
use prometheus_parse::{LineInfo, Scrape, Value};
use txflow::mechanism_x::{self, XOptions};
use txflow::sinks::state::{self, EpochRow, LedgerRow, StateConfig};

const ROWS: u64 = 40_000;
const SEED: u64 = 7;
/// Scaled-down thresholds so that all three patterns fire on 40,000 rows.
const THRESHOLD_ARGS: [&str; 6] = [
    "--upgrade-min-merchant-txns",
    "1000",
    "--child-min-txns",
    "15",
    "--dei-min-female-customers",
    "10",
];
/// Bound of a whole run (debug build, shared 2-core machine).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Child processes

// ---------------------------------------------------------------------------------------------
// Data

/// Generated data shared by every test (removed at exit).
struct Data {
    dir: PathBuf,
    transactions: PathBuf,
    importance: PathBuf,
}

fn data() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = dir_removed_at_exit("http");
        let data = generated_data(ROWS, SEED);
        Data {
            transactions: data.join(txgen::TRANSACTIONS_FILE),
            importance: data.join(txgen::IMPORTANCE_FILE),
            dir,
        }
    })
}

/// Mechanism X: a landing store of `chunk_rows`-row chunks, `interval` apart.
fn run_x(landing: &Path, chunk_rows: usize, interval: Duration) {
    let mut options = XOptions::new(data().transactions.clone(), &landing.to_string_lossy());
    options.chunk_rows = chunk_rows;
    options.interval = interval;
    mechanism_x::run(&options).unwrap();
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("state.db").display())
}

fn y_args(landing: &Path, run: &Path, extra: &[&str]) -> Vec<String> {
    y_args_with_state(landing, run, &sqlite(run), extra)
}

fn y_args_with_state(landing: &Path, run: &Path, state: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--landing".into(),
        landing.display().to_string(),
        "--importance".into(),
        data().importance.display().to_string(),
        "--output".into(),
        run.join("out").display().to_string(),
        "--state".into(),
        state.to_string(),
    ];
    args.extend(THRESHOLD_ARGS.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// What a run leaves behind: the state tables and the output files.
#[derive(Debug, PartialEq)]
struct Results {
    ledger: Vec<LedgerRow>,
    epochs: Vec<EpochRow>,
    counts: Vec<(String, i64)>,
    files: BTreeMap<String, Vec<u8>>,
}

fn read_results(run: &Path) -> Results {
    read_results_from(run, &sqlite(run))
}

fn read_results_from(run: &Path, state_url: &str) -> Results {
    let mut store = state::open(&StateConfig::parse(state_url).unwrap()).unwrap();
    let files = named_tree(&run.join("out"));
    Results {
        ledger: store
            .ledger(txflow::sinks::state::LedgerId::Baseline)
            .unwrap(),
        epochs: store.epoch_rows().unwrap(),
        counts: store.merchant_counts().unwrap(),
        files,
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP clients

/// A response: status, head, body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn parse_reply(bytes: &[u8]) -> Option<Reply> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// Sends `request` as is and reads until the server closes (bounded).
fn exchange(port: u16, request: &[u8]) -> Option<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(request);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    parse_reply(&bytes)
}

fn get(port: u16, path: &str) -> Option<Reply> {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

fn status_json(port: u16) -> serde_json::Value {
    let reply = get(port, "/api/status").expect("/api/status answers");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.head.contains("Content-Type: application/json"));
    serde_json::from_str(&reply.body).expect("/api/status is JSON")
}

/// `/metrics`, every line checked against the exposition grammar, then parsed: metric
/// (with its labels, `k=v` sorted) → value.
fn scrape(port: u16) -> BTreeMap<String, f64> {
    let reply = get(port, "/metrics").expect("/metrics answers");
    assert_eq!(reply.status, 200);
    assert!(reply
        .head
        .contains("Content-Type: application/openmetrics-text"));
    let lines: Vec<&str> = reply.body.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition ends with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        let ok = match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } => true,
            LineInfo::Sample { metric_name, .. } => {
                metric_name.starts_with("txflow_") || metric_name.starts_with("process_")
            }
            LineInfo::Empty | LineInfo::Ignored => {
                line.starts_with("# UNIT txflow_") || line.starts_with("# UNIT process_")
            }
        };
        assert!(ok, "not an exposition line: {line:?}");
    }
    let parsed = Scrape::parse(reply.body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut out = BTreeMap::new();
    for sample in parsed.samples {
        let value = match sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => continue,
        };
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        labels.sort();
        let key = match labels.is_empty() {
            true => sample.metric,
            false => format!("{}{{{}}}", sample.metric, labels.join(",")),
        };
        out.insert(key, value);
    }
    out
}

fn metric(metrics: &BTreeMap<String, f64>, name: &str) -> f64 {
    *metrics
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from /metrics: {metrics:?}"))
}

// ---------------------------------------------------------------------------------------------
// A live run: the figures agree with the state store

#[test]
fn live_run_figures_match_the_state_store() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let x_landing = landing.clone();
    let x = std::thread::spawn(move || run_x(&x_landing, 2_000, Duration::from_millis(150)));
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut y = Proc::spawn(
        "live",
        &y_args(&landing, &run, &["--follow", "-w", "2", "--http", &addr]),
        &run,
    );
    wait_until("/healthz", RUN_TIMEOUT, || {
        get(port, "/healthz").is_some_and(|r| r.status == 200 && r.body == "ok\n")
    });
    // While it runs: every scrape parses, and the figures only grow.
    let mut seen_epochs = 0.0;
    let mut scrapes = 0;
    wait_until("20 committed epochs and /readyz 200", RUN_TIMEOUT, || {
        let m = scrape(port);
        let epochs = metric(&m, "txflow_epochs_committed_total");
        assert!(
            epochs >= seen_epochs,
            "epochs went back: {epochs} < {seen_epochs}"
        );
        seen_epochs = epochs;
        scrapes += 1;
        let status = status_json(port);
        assert!(
            [
                "waiting_for_input",
                "up_to_date",
                "behind",
                "recovering",
                "starting"
            ]
            .contains(&status["state"].as_str().unwrap()),
            "{status}"
        );
        epochs == 20.0 && get(port, "/readyz").is_some_and(|r| r.status == 200)
    });
    x.join().unwrap();
    assert!(scrapes > 1, "scraped during the run");
    let m = scrape(port);
    let status = status_json(port);
    y.signal(libc::SIGTERM);
    y.wait_ok(RUN_TIMEOUT);
    let r = read_results(&run);
    check_figures(&m, &status, &r);
}

/// The final figures against the state store's tables.
fn check_figures(m: &BTreeMap<String, f64>, status: &serde_json::Value, r: &Results) {
    let accepted: u64 = r.epochs.iter().map(|e| e.rows_accepted).sum();
    let rejected: u64 = r.epochs.iter().map(|e| e.rows_rejected).sum();
    assert_eq!(r.epochs.len(), 20);
    assert_eq!(metric(m, "txflow_epochs_committed_total"), 20.0);
    assert_eq!(metric(m, "txflow_rows_accepted_total"), accepted as f64);
    let by_reason: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("txflow_rows_rejected_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(by_reason, rejected as f64);
    assert_eq!(metric(m, "txflow_last_committed_epoch"), 19.0);
    assert_eq!(metric(m, "txflow_landing_edge_epoch"), 19.0);
    assert_eq!(metric(m, "txflow_lag_chunks"), 0.0);
    assert_eq!(metric(m, "txflow_ready"), 1.0);
    assert_eq!(
        metric(m, "txflow_epoch_commit_seconds"),
        20.0,
        "one observation per epoch"
    );
    assert_eq!(metric(m, "txflow_epoch_compute_seconds"), 20.0);
    assert_eq!(metric(m, "txflow_visible_to_commit_seconds"), 20.0);
    assert!(metric(m, "txflow_process_resident_memory_bytes") > 1e6);
    let p = &status["progress"];
    assert_eq!(p["epochs_committed"], 20);
    assert_eq!(p["rows_accepted"], accepted);
    assert_eq!(p["rows_rejected"], rejected);
    assert_eq!(p["last_committed_epoch"], 19);
    // Following the landing with every chunk committed: up to date while its newest chunk
    // is recent (10 s), then waiting for the next; ready either way.
    let quiet = status["state_detail"]["since_last_chunk_seconds"]
        .as_f64()
        .unwrap();
    let expected = match quiet <= 10.0 {
        true => "up_to_date",
        false => "waiting_for_input",
    };
    assert_eq!(status["state"], expected, "last chunk {quiet} s ago");
    assert_eq!(status["ready"], true);
    assert_eq!(status["state_detail"]["landing_missing"], false);
    assert_eq!(status["run"]["mode"], "live");
    check_new_families(m, status);
    let mut by_pattern: BTreeMap<String, u64> = BTreeMap::new();
    for row in &r.ledger {
        *by_pattern.entry(row.pattern.id().to_string()).or_default() += 1;
    }
    assert_eq!(by_pattern.len(), 3, "every pattern fires: {by_pattern:?}");
    for (pattern, n) in &by_pattern {
        let name = format!("txflow_detections_total{{pattern={pattern}}}");
        assert_eq!(metric(m, &name), *n as f64, "{name}");
        assert_eq!(status["detections"]["by_pattern"][pattern], *n);
    }
    assert_eq!(status["detections"]["total"], r.ledger.len());
    let latest = status["latest_detections"].as_array().unwrap();
    assert_eq!(latest.len(), r.ledger.len().min(50));
    for (got, want) in latest.iter().zip(r.ledger.iter().rev()) {
        assert_eq!(got["seq"], want.seq);
        assert_eq!(got["pattern_id"], want.pattern.id());
        assert_eq!(got["customer_name"], want.customer_name.as_str());
        assert_eq!(got["detection_time"], want.detection_time.as_str());
    }
    let history = status["history"].as_array().unwrap();
    assert_eq!(history.len(), 20);
    for (h, e) in history.iter().zip(&r.epochs) {
        assert_eq!(h["epoch"], e.epoch);
        assert_eq!(h["chunk"], e.chunk_key.as_str());
        assert_eq!(h["rows"], e.rows_accepted);
        assert_eq!(h["committed_at"], e.committed_at.as_str());
        assert!(h["visible_to_commit_ms"].as_i64().is_some(), "{h}");
        let in_epoch = r.ledger.iter().filter(|l| l.epoch == e.epoch).count() as u64;
        let detections: u64 = ["PatId1", "PatId2", "PatId3"]
            .iter()
            .map(|p| h["detections"][p].as_u64().unwrap())
            .sum();
        assert_eq!(detections, in_epoch, "detections of epoch {}", e.epoch);
    }
}

/// The reason kinds a transactions chunk's rejects can have (digits as `N`).
const REJECT_KINDS: [&str; 16] = [
    "expected N fields found N",
    "missing customer",
    "missing merchant",
    "missing category",
    "missing amount",
    "name too long",
    "invalid customer",
    "invalid merchant",
    "invalid category",
    "invalid gender",
    "invalid amount",
    "unbalanced quote",
    "chunk header lacks required column",
    "chunk header lacks required columns",
    "chunk header has duplicate column",
    "chunk header has duplicate columns",
];

const STATES: [&str; 10] = [
    "failed",
    "stalled",
    "starting",
    "recovering",
    "ended",
    "stopped",
    "committing_slowly",
    "behind",
    "waiting_for_input",
    "up_to_date",
];

/// The state, build, time and process families, and the label values known from the start.
fn check_new_families(m: &BTreeMap<String, f64>, status: &serde_json::Value) {
    let state = status["state"].as_str().unwrap();
    for s in STATES {
        let want = if s == state { 1.0 } else { 0.0 };
        assert_eq!(
            metric(m, &format!("txflow_state{{state={s}}}")),
            want,
            "{s}"
        );
    }
    assert_eq!(metric(m, "txflow_failed"), 0.0);
    for kind in REJECT_KINDS {
        metric(m, &format!("txflow_rows_rejected_total{{reason={kind}}}"));
    }
    for pattern in ["PatId1", "PatId2", "PatId3"] {
        metric(m, &format!("txflow_detections_total{{pattern={pattern}}}"));
    }
    for op in ["get", "put", "list", "head"] {
        assert_eq!(
            metric(m, &format!("txflow_s3_retries_total{{op={op}}}")),
            0.0
        );
    }
    let build: Vec<(&String, &f64)> = m
        .iter()
        .filter(|(k, _)| k.starts_with("txflow_build_info{"))
        .collect();
    assert_eq!(build.len(), 1, "{build:?}");
    assert!(build[0]
        .0
        .contains(&format!("version={}", env!("CARGO_PKG_VERSION"))));
    assert_eq!(*build[0].1, 1.0);
    let now = txflow::time::now_ms() as f64 / 1000.0;
    let last_commit = metric(m, "txflow_last_commit_timestamp_seconds");
    assert!(
        now - 300.0 < last_commit && last_commit <= now,
        "{last_commit}"
    );
    assert_eq!(
        status["progress"]["last_commit_ms"].as_f64().unwrap() / 1000.0,
        last_commit
    );
    let last_chunk = metric(m, "txflow_landing_last_chunk_timestamp_seconds");
    assert!(
        now - 300.0 < last_chunk && last_chunk <= last_commit,
        "{last_chunk}"
    );
    let started = metric(m, "process_start_time_seconds");
    assert!(
        now - 600.0 < started && started < last_chunk + 60.0,
        "{started}"
    );
    assert!(metric(m, "process_cpu_seconds_total") > 0.0);
    let resident = metric(m, "process_resident_memory_bytes");
    assert!(resident > 1e6 && metric(m, "process_virtual_memory_bytes") >= resident);
    let open = metric(m, "process_open_fds");
    assert!(
        open >= 3.0 && metric(m, "process_max_fds") >= open,
        "{open}"
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting for input: a missing landing, an idle one

/// `/api/status`, `/readyz` and `/metrics` in turn: (readyz status and body, status,
/// metrics); `None` before the endpoint answers.
type Surfaces = ((u16, String), serde_json::Value, BTreeMap<String, f64>);

fn surfaces(port: u16) -> Option<Surfaces> {
    // The status first: it may be up to a second old, the others are of the moment.
    get(port, "/healthz")?;
    let status = status_json(port);
    let ready = get(port, "/readyz")?;
    Some(((ready.status, ready.body), status, scrape(port)))
}

#[test]
fn a_missing_landing_is_waited_for_and_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("no-such-landing");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut y = Proc::spawn("missing", &y_args(&landing, &run, &["--http", &addr]), &run);
    let mut seen = None;
    wait_until("the landing reported missing", RUN_TIMEOUT, || {
        let found = get(port, "/api/status")
            .is_some_and(|r| r.status == 200 && r.body.contains("\"landing_missing\":true"));
        if found {
            seen = surfaces(port);
        }
        seen.is_some()
    });
    let ((code, body), status, m) = seen.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("waiting for input: the landing directory ")
            && body.contains("does not exist"),
        "{body}"
    );
    assert_eq!(status["state"], "waiting_for_input", "{status}");
    assert_eq!(status["ready"], false);
    let detail = &status["state_detail"];
    assert_eq!(detail["landing_missing"], true);
    assert_eq!(detail["summary"].as_str().unwrap(), body.trim_end());
    assert!(detail["what_to_do"].as_str().unwrap().contains("--landing"));
    let events = status["recent_events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["kind"] == "landing_missing"),
        "{events:?}"
    );
    assert_eq!(metric(&m, "txflow_ready"), 0.0);
    assert_eq!(metric(&m, "txflow_state{state=waiting_for_input}"), 1.0);
    assert_eq!(metric(&m, "txflow_state{state=up_to_date}"), 0.0);
    y.signal(libc::SIGTERM);
    y.wait_ok(RUN_TIMEOUT);
}

/// With `--ready-max-idle 1s`, a landing whose chunks are all committed and that has no new
/// one is not ready about a second after its last chunk; a new chunk makes it ready again.
#[test]
fn a_landing_silent_past_ready_max_idle_is_not_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let mut options = XOptions::new(data().transactions.clone(), &landing.to_string_lossy());
    options.chunk_rows = 2_000;
    options.interval = Duration::ZERO;
    options.max_chunks = Some(3);
    mechanism_x::run(&options).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let extra = ["--http", &addr, "--ready-max-idle", "1s"];
    let mut y = Proc::spawn("idle", &y_args(&landing, &run, &extra), &run);
    let mut seen = None;
    wait_until("3 epochs committed and not ready", RUN_TIMEOUT, || {
        seen = surfaces(port)
            .filter(|s| s.1["progress"]["epochs_committed"] == 3 && s.1["ready"] == false);
        seen.is_some()
    });
    let ((code, body), status, m) = seen.unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.starts_with("waiting for input: last chunk ")
            && body.contains("more than --ready-max-idle 1 s"),
        "{body}"
    );
    assert_eq!(status["state"], "waiting_for_input");
    assert_eq!(status["ready"], false);
    let detail = &status["state_detail"];
    assert_eq!(detail["landing_missing"], false);
    assert!(
        detail["since_last_chunk_seconds"].as_f64().unwrap() > 1.0,
        "{detail}"
    );
    assert_eq!(metric(&m, "txflow_ready"), 0.0);
    assert_eq!(metric(&m, "txflow_state{state=waiting_for_input}"), 1.0);
    // A new chunk: committed, and ready while it is less than a second old.
    let next = std::fs::read(landing.join("chunk-000000.csv")).unwrap();
    std::fs::write(landing.join("chunk-000003.csv"), next).unwrap();
    wait_until("ready after a new chunk", Duration::from_secs(30), || {
        get(port, "/readyz").is_some_and(|r| r.status == 200)
    });
    y.signal(libc::SIGTERM);
    y.wait_ok(RUN_TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// No surface shows a secret

/// The secrets planted below, one marker per form.
const SECRETS: [&str; 9] = [
    "UserinfoLeak",
    "QueryLeak",
    "AtLeak",
    "TailLeak",
    "CaseLeak",
    "ApiKeyLeak",
    "EndpointLeak",
    "TokenLeak",
    "LocationLeak",
];

fn assert_no_secret(surface: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{surface} shows {secret}:\n{text}");
    }
}

/// `url` with a password in its userinfo and, when given, query parameters appended.
fn planted(url: &str, password: Option<&str>, query: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(password).unwrap();
    if !query.is_empty() {
        url.set_query(Some(query));
    }
    url.to_string()
}

/// Runs `bin` with `args` and debug logs; returns (status ok, stdout + stderr).
fn run_logged(bin: &str, args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(bin);
    command
        .args(args)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1");
    let done = common::process::ChildGuard::spawn(command).wait(RUN_TIMEOUT);
    (
        done.status.success(),
        format!("{}\n{}", done.stdout, done.stderr),
    )
}

/// A secret in every form this project knows — the userinfo password, `?password=`,
/// `?PassWord=`, an unknown `?api_key=`, a password holding an unencoded `@`, an S3 endpoint
/// with credentials and a token, an `s3://` location with credentials — never shows on any
/// surface: `mechanism-y`'s stdout and stderr at debug level (a run, and each refusal,
/// PostgreSQL unreachable included), `/api/status`, the console page (as served and as a
/// browser renders it), and `txflow-report`'s HTML, JSON and output. Where a surface names
/// the store, it names it redacted.
#[cfg(all(feature = "test-services", feature = "test-browser"))]
#[test]
fn no_surface_shows_a_secret() {
    let base = common::pg::fresh_database_url("secrets");
    let state = planted(&base, Some("UserinfoLeak"), "password=QueryLeak");
    let shown = planted(&base, Some("***"), "password=***");
    let tmp = tempfile::tempdir().unwrap();
    let (landing, run) = (tmp.path().join("landing"), tmp.path().join("run"));
    std::fs::create_dir_all(&run).unwrap();
    run_x(&landing, 10_000, Duration::ZERO);

    // A live run on the store, with the endpoint.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = y_args_with_state(&landing, &run, &state, &["--follow", "--http", &addr]);
    let mut y = Proc::spawn_with_env("secrets", &args, &run, &[("RUST_LOG", "debug")]);
    wait_until("4 committed epochs", RUN_TIMEOUT, || {
        get(port, "/api/status")
            .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
            .is_some_and(|s| s["progress"]["epochs_committed"] == 4)
    });
    let status = status_json(port);
    assert_eq!(status["run"]["state"], shown.as_str());
    let console = get(port, "/").expect("the console answers");
    assert_eq!(console.status, 200);
    let dom =
        common::browser::dump_dom(&format!("http://{addr}/"), &["--virtual-time-budget=5000"]);
    assert!(dom.contains("postgres://postgres:***@"), "{dom}");
    y.signal(libc::SIGTERM);
    y.wait_ok(RUN_TIMEOUT);
    for (surface, text) in [
        ("/api/status", status.to_string()),
        ("the console page", console.body),
        ("the rendered console", dom),
        ("mechanism-y's stdout", y.stdout_text()),
        ("mechanism-y's stderr", y.stderr_text()),
    ] {
        assert_no_secret(surface, &text);
    }

    // The report of that store.
    let (html, json) = (run.join("report.html"), run.join("report.json"));
    let report = env!("CARGO_BIN_EXE_txflow-report");
    let (html_arg, json_arg) = (html.display().to_string(), json.display().to_string());
    let (ok, output) = run_logged(
        report,
        &["--state", &state, "--html", &html_arg, "--json", &json_arg],
    );
    assert!(ok, "{output}");
    assert_no_secret("txflow-report's output", &output);
    let json_text = std::fs::read_to_string(&json).unwrap();
    assert!(json_text.contains(&shown), "{json_text}");
    assert_no_secret("the JSON report", &json_text);
    assert_no_secret("the HTML report", &std::fs::read_to_string(&html).unwrap());

    // Refusals: PostgreSQL unreachable, URLs the driver refuses, S3 credentials.
    // A loopback port nothing listens on.
    let closed_port = free_port();
    let closed = format!("postgres://postgres@127.0.0.1:{closed_port}/db");
    let (importance, output) = (
        data().importance.display().to_string(),
        run.join("out2").display().to_string(),
    );
    for url in [
        planted(&closed, Some("UserinfoLeak"), "password=QueryLeak"),
        format!("postgres://u:AtLeak:TailLeak@@127.0.0.1:{closed_port}/db"),
        planted(&closed, None, "sslmode=disable&PassWord=CaseLeak"),
        planted(&closed, None, "api_key=ApiKeyLeak"),
    ] {
        for bin in [env!("CARGO_BIN_EXE_mechanism-y"), report] {
            let mut args = vec!["--state", &url, "--pg-connect-timeout", "1"];
            match bin == report {
                true => args.extend(["--html", &html_arg]),
                false => args.extend([
                    "--landing",
                    landing.to_str().unwrap(),
                    "--importance",
                    &importance,
                    "--output",
                    &output,
                ]),
            }
            let (ok, text) = run_logged(bin, &args);
            assert!(
                !ok && (text.contains(":***@") || text.contains("=***")),
                "{text}"
            );
            assert_no_secret(&format!("{bin} on {}", url.replace("Leak", "")), &text);
        }
    }
    let store = format!("sqlite://{}", run.join("s3.db").display());
    for s3 in [
        [
            "--landing",
            "s3://AKIA:LocationLeak@bucket/landing",
            "--s3-endpoint",
            "http://127.0.0.1:1",
        ],
        [
            "--landing",
            "s3://bucket/landing",
            "--s3-endpoint",
            "http://AKIA:EndpointLeak@127.0.0.1:1/?X-Amz-Security-Token=TokenLeak",
        ],
    ] {
        let mut args = vec![
            "--state",
            &store,
            "--importance",
            &importance,
            "--output",
            &output,
        ];
        args.extend(s3);
        let (ok, text) = run_logged(env!("CARGO_BIN_EXE_mechanism-y"), &args);
        assert!(!ok && text.contains(":***@"), "{text}");
        assert_no_secret("mechanism-y on S3", &text);
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile clients during a backtest

/// The chunk of [`held_landing`] whose last line has no terminator.
const HELD_CHUNK: &str = "chunk-000002.csv";

/// How long a backtest with the endpoint waits at [`HELD_CHUNK`]: longer than the hostile
/// clients take (`--settle-ms`).
const HOLD_MS: &str = "15000";

/// A landing whose [`HELD_CHUNK`] lacks its final line terminator: a backtest takes it once
/// its size has stayed the same for `--settle-ms`, which keeps the run going, mid-stream, as
/// long as the hostile clients need, whatever the machine's speed. (The chunk's records are
/// the same either way.)
fn held_landing() -> &'static PathBuf {
    static LANDING: OnceLock<PathBuf> = OnceLock::new();
    LANDING.get_or_init(|| {
        let landing = data().dir.join("landing-held");
        run_x(&landing, 2_000, Duration::ZERO);
        let chunk = landing.join(HELD_CHUNK);
        let mut bytes = std::fs::read(&chunk).unwrap();
        assert_eq!(bytes.pop(), Some(b'\n'));
        std::fs::write(&chunk, bytes).unwrap();
        landing
    })
}

#[test]
fn hostile_clients_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (plain, served) = (tmp.path().join("plain"), tmp.path().join("served"));
    for dir in [&plain, &served] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut y = Proc::spawn(
        "plain",
        &y_args(
            held_landing(),
            &plain,
            &["--replay", "-w", "2", "--settle-ms", "10"],
        ),
        &plain,
    );
    y.wait_ok(RUN_TIMEOUT);
    let expected = read_results(&plain);

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = y_args(
        held_landing(),
        &served,
        &[
            "--replay",
            "-w",
            "2",
            "--settle-ms",
            HOLD_MS,
            "--http",
            &addr,
        ],
    );
    let mut y = Proc::spawn("served", &args, &served);
    wait_until("/healthz", RUN_TIMEOUT, || {
        get(port, "/healthz").is_some_and(|r| r.status == 200)
    });
    let started = Instant::now();
    hostile_requests(port);
    slow_and_idle_clients(port);
    eprintln!("[http] hostile clients done in {:?}", started.elapsed());
    assert!(
        y.try_status().is_none(),
        "the backtest ended before the hostile clients were done: make it longer"
    );
    y.wait_ok(RUN_TIMEOUT);
    eprintln!(
        "[http] the served backtest ended {:?} after them",
        started.elapsed()
    );
    let got = read_results(&served);
    assert_eq!(
        got.files.keys().collect::<Vec<_>>(),
        expected.files.keys().collect::<Vec<_>>()
    );
    assert!(
        got == expected,
        "the run with --http differs from the run without"
    );
}

fn hostile_requests(port: u16) {
    let reply = exchange(port, b"GARBAGE\r\n\r\n").expect("an answer");
    assert_eq!(reply.status, 400);
    let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 100 * 1024));
    big.extend(b"\r\n\r\n");
    let reply = exchange(port, &big).expect("an answer");
    assert_eq!(reply.status, 431);
    let reply = get(port, "/../../etc/passwd").expect("an answer");
    assert_eq!(reply.status, 404);
    assert!(!reply.body.contains("root:"));
    let reply = get(port, "/metrics/../../../etc/passwd").expect("an answer");
    assert_eq!(reply.status, 404);
    let reply = exchange(
        port,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .unwrap();
    assert_eq!(reply.status, 405);
    assert!(reply.head.contains("Allow: GET, HEAD"));
    let reply = exchange(port, b"HEAD /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, ""));
    assert!(reply.head.contains("Connection: close"));
}

/// A byte-a-second client gets 408 after the request timeout; 40 idle connections are all
/// held (far below the cap) while `/healthz` answers, then closed after the timeout with
/// nothing sent.
fn slow_and_idle_clients(port: u16) {
    let slow = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(900)))
            .unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            let mut buf = [0u8; 256];
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend(&buf[..n]),
                Err(_) => {}
            }
            if !got.is_empty() {
                break;
            }
        }
        (parse_reply(&got).map(|r| r.status), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let reply = get(port, "/healthz").expect("/healthz answers among idle clients");
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
    assert_eq!(
        still_open(&idle),
        40,
        "idle connections are held until the timeout"
    );
    // They are closed after the request timeout (5 s), with nothing sent.
    for mut stream in idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(8)))
            .unwrap();
        let n = stream.read(&mut [0u8; 16]).expect("closed, not timed out");
        assert_eq!(n, 0, "an idle connection gets nothing but its close");
    }
    let closed = opened.elapsed();
    assert!(
        closed > Duration::from_secs(4) && closed < Duration::from_secs(8),
        "idle connections closed {closed:?} after opening"
    );
    let (status, waited) = slow.join().unwrap();
    assert_eq!(status, Some(408), "the slow client is cut off ({waited:?})");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    let reply = get(port, "/healthz").expect("/healthz answers again");
    assert_eq!(reply.status, 200);
}

/// How many of `streams` the server has not closed (looked at without waiting).
fn still_open(streams: &[TcpStream]) -> usize {
    streams.iter().filter(|s| is_open(s)).count()
}

fn is_open(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let open = match stream.read(&mut [0u8; 16]) {
        Ok(0) => false,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        other => panic!("an idle connection got {other:?}"),
    };
    stream.set_nonblocking(false).unwrap();
    open
}

// ---------------------------------------------------------------------------------------------
// Probes among a thousand idle and slow clients

/// Idle connections held open against the endpoint.
const IDLE: usize = 1_000;
/// Slow-loris clients: each sends a byte of its request head every [`SLOW_EVERY`].
const SLOW: usize = 20;
const SLOW_EVERY: Duration = Duration::from_millis(300);
/// The bound of one probe: a property of the endpoint (probes never queue behind other
/// clients), not a speed figure.
const PROBE_BOUND: Duration = Duration::from_millis(100);

/// Raises the soft limit of open files to at least `needed` if the hard limit allows;
/// returns the soft limit then in force.
fn raise_fd_limit(needed: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct given, which outlives
    // the calls.
    #[allow(unsafe_code)]
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            limit.rlim_cur = needed.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    limit.rlim_cur
}

/// `count` slow-loris clients on `addr`, each sending its head a byte at a time until `stop`.
fn slow_loris(
    addr: std::net::SocketAddr,
    count: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..count)
        .map(|_| {
            let stop = stop.clone();
            let mut stream = TcpStream::connect(addr).unwrap();
            std::thread::spawn(move || {
                for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n\r\n" {
                    if stop.load(std::sync::atomic::Ordering::SeqCst)
                        || stream.write_all(&[*byte]).is_err()
                    {
                        return;
                    }
                    std::thread::sleep(SLOW_EVERY);
                }
            })
        })
        .collect()
}

/// Ten `/healthz` probes, 50 ms apart: each latency (connect to close).
fn probe_healthz(port: u16) -> Vec<Duration> {
    (0..10)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            let started = Instant::now();
            let reply = get(port, "/healthz").expect("/healthz answers");
            let took = started.elapsed();
            assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
            took
        })
        .collect()
}

fn assert_probes_bounded(what: &str, latencies: &[Duration]) {
    eprintln!("[http] /healthz {what}: {latencies:?}");
    for took in latencies {
        assert!(
            *took <= PROBE_BOUND,
            "/healthz {what} took {took:?}: {latencies:?}"
        );
    }
}

/// With a thousand idle connections and slow-loris clients open, every `/healthz` probe
/// answers within 100 ms; past the connection cap, the oldest clients still waiting for their
/// head are closed to make room, and probes still answer.
#[test]
fn probes_answer_among_a_thousand_idle_and_slow_clients() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use txflow::http::{HttpServer, MAX_CONNECTIONS};
    use txflow::telemetry::{Limits, RunInfo, Telemetry};

    let extra = 200;
    // Both ends of every connection are in this process; the endpoint uses at most a
    // quarter of the limit.
    let needed = 4 * (MAX_CONNECTIONS + extra) as u64 + 256;
    let limit = raise_fd_limit(needed);
    assert!(
        limit >= needed,
        "open-file limit {limit} < {needed} (ulimit -n)"
    );
    let run = RunInfo {
        mode: Some("live".into()),
        workers: Some(1),
        processes: Some(1),
        process: Some(0),
        ..RunInfo::default()
    };
    let limits = Limits {
        ready_max_lag: 0,
        ..Limits::default()
    };
    let telemetry = Arc::new(Telemetry::new(run, limits));
    let server = HttpServer::start("127.0.0.1:0".parse().unwrap(), telemetry).unwrap();
    let addr = server.local_addr();
    let opening = Instant::now();
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let slow = slow_loris(addr, SLOW, &stop);
    let opened = opening.elapsed();
    eprintln!("[http] {IDLE} idle and {SLOW} slow clients connected in {opened:?}");
    // The checks below must end before the first connections' head timeout (5 s).
    assert!(
        opened < Duration::from_secs(2),
        "connecting took {opened:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        still_open(&idle),
        IDLE,
        "below the cap every idle client is held"
    );
    let latencies = probe_healthz(addr.port());
    assert_probes_bounded(
        &format!("with {IDLE} idle and {SLOW} slow clients"),
        &latencies,
    );

    // Past the cap: the oldest waiting clients (the first idle ones) make room.
    let newer: Vec<TcpStream> = (0..extra)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let latencies = probe_healthz(addr.port());
    assert_probes_bounded(&format!("past the cap of {MAX_CONNECTIONS}"), &latencies);
    let closed = idle.iter().take_while(|s| !is_open(s)).count();
    assert!(
        closed >= IDLE + SLOW + extra - MAX_CONNECTIONS,
        "{closed} of the oldest idle clients closed"
    );
    assert_eq!(
        still_open(&idle[closed..]),
        IDLE - closed,
        "the oldest go first"
    );
    assert_eq!(still_open(&newer), extra, "the newest are held");
    stop.store(true, Ordering::SeqCst);
    for thread in slow {
        thread.join().unwrap();
    }
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// Stall: a frozen cluster peer

fn hostfile(dir: &Path) -> PathBuf {
    let path = dir.join("hosts");
    std::fs::write(
        &path,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    path
}

fn cluster(landing: &Path, run: &Path, name: &str, extra: &[&str]) -> Vec<Proc> {
    let dir = run.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let hosts = hostfile(&dir);
    (0..2)
        .map(|p| {
            let target = if p == 0 {
                run.to_path_buf()
            } else {
                dir.join("peer")
            };
            let mut args = y_args(landing, &target, extra);
            let p_text = p.to_string();
            args.extend(
                ["-n", "2", "-p", &p_text, "-h", hosts.to_str().unwrap()]
                    .iter()
                    .map(|s| s.to_string()),
            );
            Proc::spawn(&format!("{name}-p{p}"), &args, &dir)
        })
        .collect()
}

#[test]
fn a_frozen_peer_is_a_stall_and_a_restart_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let x_landing = landing.clone();
    let x = std::thread::spawn(move || run_x(&x_landing, 2_000, Duration::from_millis(200)));
    let mut procs = cluster(&landing, &run, "first", &["--stall-timeout", "3"]);
    wait_until("3 committed epochs", RUN_TIMEOUT, || {
        procs[0].epochs_committed() >= 3
    });
    procs[1].signal(libc::SIGSTOP);
    let frozen = Instant::now();
    let status = procs[0].wait(Duration::from_secs(15));
    let waited = frozen.elapsed();
    assert!(!status.success(), "process 0 exited 0 with a frozen peer");
    assert!(
        waited < Duration::from_secs(10),
        "stall noticed after {waited:?}"
    );
    let stderr = procs[0].stderr_text();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: stalled: no epoch committed for 3 s while chunk-")
            && last.contains("a cluster peer may be frozen"),
        "{last}"
    );
    procs[1].signal(libc::SIGCONT);
    procs[1].signal(libc::SIGKILL);
    let _ = procs[1].wait(Duration::from_secs(10));
    x.join().unwrap();

    let mut restarted = cluster(&landing, &run, "restarted", &[]);
    for proc in &mut restarted {
        proc.wait_ok(RUN_TIMEOUT);
    }
    let got = read_results(&run);
    let expected = same_as_a_backtest(tmp.path(), &landing, &got);
    assert_eq!(
        got.files.keys().collect::<Vec<_>>(),
        expected.files.keys().collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// Stall: a hung state store (a single process)

/// A single process whose state-store commit hangs (the epochs table locked by another
/// session) fails with the stall line within the stall timeout, its workers and committer
/// left behind; once the lock is gone a restart ends as an uninterrupted run.
#[cfg(feature = "test-services")]
#[test]
fn a_hung_state_store_is_a_stall_and_a_restart_resumes() {
    let url = common::pg::fresh_database_url("stall");
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let x_landing = landing.clone();
    let x = std::thread::spawn(move || run_x(&x_landing, 2_000, Duration::from_millis(150)));
    let args = y_args_with_state(&landing, &run, &url, &["--stall-timeout", "2"]);
    let mut y = Proc::spawn("hung", &args, &run);
    wait_until("2 committed epochs", RUN_TIMEOUT, || {
        y.epochs_committed() >= 2
    });
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut lock = admin.transaction().unwrap();
    lock.batch_execute("LOCK TABLE epochs IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let locked = Instant::now();
    let status = y.wait(Duration::from_secs(20));
    let waited = locked.elapsed();
    assert!(!status.success(), "exited 0 with a hung state store");
    assert!(
        waited < Duration::from_secs(10),
        "stall noticed after {waited:?}"
    );
    let stderr = y.stderr_text();
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: stalled: no epoch committed for 2 s while chunk-")
            && last.contains("the state store"),
        "{last}"
    );
    lock.rollback().unwrap();
    x.join().unwrap();

    let mut y = Proc::spawn("resumed", &args, &run);
    y.wait_ok(RUN_TIMEOUT);
    let got = read_results_from(&run, &url);
    same_as_a_backtest(tmp.path(), &landing, &got);
}

/// The lag is the landing's, not the feed's: with the commits held (the counters table locked
/// from another session; start-up does not read it), a live run over a landing of 20 chunks
/// reports the landing's last chunk as its edge and lags by all of the uncommitted chunks,
/// although its chunk feed and commit queue run only a few ahead; `/readyz` says so.
#[cfg(feature = "test-services")]
#[test]
fn the_lag_is_the_landings_while_commits_are_held() {
    let url = common::pg::fresh_database_url("edge");
    let tmp = tempfile::tempdir().unwrap();
    let landing = tmp.path().join("landing");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    run_x(&landing, 2_000, Duration::ZERO);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let extra = ["--stall-timeout", "0", "--http", &addr];
    let mut y = Proc::spawn(
        "held",
        &y_args_with_state(&landing, &run, &url, &extra),
        &run,
    );
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    wait_until("the counters table", RUN_TIMEOUT, || {
        admin
            .query_one(
                "SELECT to_regclass('merchant_transaction_counts') IS NOT NULL",
                &[],
            )
            .is_ok_and(|row| row.get::<_, bool>(0))
    });
    let mut lock = admin.transaction().unwrap();
    lock.batch_execute("LOCK TABLE merchant_transaction_counts IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut last = BTreeMap::new();
    // The edge is listed every 2 s.
    wait_until(
        "the landing's last chunk as the edge",
        Duration::from_secs(15),
        || {
            last = scrape(port);
            metric(&last, "txflow_landing_edge_epoch") == 19.0
        },
    );
    // Held early: the feed (2 ahead) and the commit queue (4) alone would put the edge
    // within 8 of the last commit.
    let committed = metric(&last, "txflow_last_committed_epoch");
    assert!(committed <= 10.0, "commits were held: {committed}");
    assert_eq!(metric(&last, "txflow_lag_chunks"), 19.0 - committed);
    let ready = get(port, "/readyz").expect("/readyz answers");
    assert_eq!(ready.status, 503, "{}", ready.body);
    lock.rollback().unwrap();
    y.wait_ok(RUN_TIMEOUT);
    assert_eq!(read_results_from(&run, &url).epochs.len(), 20);
}

/// A backtest of `landing` (in `dir/baseline`): `got`, times aside, must equal it. Returns it.
fn same_as_a_backtest(dir: &Path, landing: &Path, got: &Results) -> Results {
    let baseline = dir.join("baseline");
    std::fs::create_dir_all(&baseline).unwrap();
    let mut y = Proc::spawn(
        "baseline",
        &y_args(landing, &baseline, &["--replay"]),
        &baseline,
    );
    y.wait_ok(RUN_TIMEOUT);
    let expected = read_results(&baseline);
    assert_eq!(
        timeless_ledger(&got.ledger),
        timeless_ledger(&expected.ledger)
    );
    assert_eq!(
        timeless_epochs(&got.epochs),
        timeless_epochs(&expected.epochs)
    );
    assert_eq!(got.counts, expected.counts);
    expected
}
