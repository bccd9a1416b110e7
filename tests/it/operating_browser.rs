//! The console page and the run report in a real browser: headless Chromium
//! (Debian's `chromium`, installed by `scripts/ensure-tools.sh`; a missing browser fails the
//! test, it never skips) loads the page and the test reads the DOM after the page's scripts
//! ran (`--dump-dom`).
//!
//! - `report_and_console_show_the_store`: a backtest (txgen, X at full speed, Y `--replay`
//!   on SQLite, a few rows rejected on purpose); `txflow-report` writes the HTML report, whose
//!   rendered DOM must show the store's committed epoch count, detections per pattern and
//!   rejected rows by reason; a name holding markup stays text. Then the console: a
//!   test-local HTTP server serves `console_page()` at `/` and `status_from_store` at
//!   `/api/status`; the page must have fetched the status and shows the same figures.
//! - `console_served_by_mechanism_y_shows_the_store`: the console as `mechanism-y --http`
//!   serves it during a live run; once the store holds every epoch the rendered page shows
//!   the store's figures.
//! - `report_errors_are_one_line`: `txflow-report` on a missing store or output.
//! - `screenshots_for_the_readme` (ignored; run by hand): `docs/console.png` during a live run
//!   of the default-sized data and `docs/report.png` of its report.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::browser::{chromium, dump_dom};
use common::paths::free_port;
use common::paths::s;
use common::process::{ChildGuard, Finished};
use serde_json::Value;
use txflow::report;
use txflow::sinks::state::{self, StateConfig};

const ROWS: u64 = 40_000;
const SEED: u64 = 7;
const CHUNK_ROWS: &str = "2000";
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Thresholds scaled down so that all three patterns fire on 40,000 rows.
const THRESHOLDS: [&str; 6] = [
    "--upgrade-min-merchant-txns",
    "3000",
    "--child-min-txns",
    "20",
    "--dei-min-female-customers",
    "5",
];

fn run_bin(bin: &str, args: &[&str]) -> Finished {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    let finished = ChildGuard::spawn(command).wait(RUN_TIMEOUT);
    assert!(finished.status.success(), "{bin}: {}", finished.describe());
    finished
}

// ------------------------------------------------------------------------------------------
// The browser
// ------------------------------------------------------------------------------------------

/// The start tag that carries `attribute` (e.g. `id="epochs-committed"`) and the text right
/// after it.
fn element<'a>(dom: &'a str, attribute: &str) -> Option<(&'a str, &'a str)> {
    let at = dom.find(attribute)?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    let text_end = end + 1 + dom[end + 1..].find('<')?;
    Some((&dom[start..=end], &dom[end + 1..text_end]))
}

/// The value of attribute `name` in a start tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// The number an element shows, read both from its `data-value` and from the text a person
/// sees (thousands separators removed); they must agree.
fn shown_number(dom: &str, attribute: &str) -> u64 {
    let (tag, text) =
        element(dom, attribute).unwrap_or_else(|| panic!("no element with {attribute} in the DOM"));
    let value: u64 = attr(tag, "data-value")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{attribute}: no numeric data-value in {tag}"));
    assert_eq!(
        text.replace(',', ""),
        value.to_string(),
        "{attribute}: the text shown and data-value differ ({tag}{text})"
    );
    value
}

// ------------------------------------------------------------------------------------------
// The store's figures, read directly
// ------------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
struct Figures {
    epochs: u64,
    by_pattern: BTreeMap<String, u64>,
    rows_rejected: u64,
}

fn store_figures(state_url: &str) -> Figures {
    let mut store = state::open(&StateConfig::parse(state_url).unwrap()).unwrap();
    let epochs = store.epoch_rows().unwrap();
    let mut by_pattern: BTreeMap<String, u64> = ["PatId1", "PatId2", "PatId3"]
        .map(|p| (p.to_string(), 0))
        .into();
    for row in store
        .ledger(txflow::sinks::state::LedgerId::Baseline)
        .unwrap()
    {
        *by_pattern
            .get_mut(row.pattern.id())
            .expect("a known pattern") += 1;
    }
    Figures {
        epochs: epochs.len() as u64,
        by_pattern,
        rows_rejected: epochs.iter().map(|e| e.rows_rejected).sum(),
    }
}

/// The figures a rendered page shows.
fn page_figures(dom: &str) -> Figures {
    let by_pattern = ["PatId1", "PatId2", "PatId3"]
        .map(|p| {
            let n = shown_number(dom, &format!("data-pattern=\"{p}\""));
            (p.to_string(), n)
        })
        .into();
    Figures {
        epochs: shown_number(dom, "id=\"epochs-committed\""),
        by_pattern,
        rows_rejected: shown_number(dom, "id=\"rows-rejected\""),
    }
}

/// Rejected rows by reason as the page's table shows them.
fn page_rejects(dom: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut rest = dom;
    while let Some(at) = rest.find("<tr data-reason=\"") {
        rest = &rest[at..];
        let (tag, _) = element(rest, "data-reason=").unwrap();
        let reason = attr(tag, "data-reason").unwrap().to_string();
        let (cell, _) = element(rest, "class=\"num\"").unwrap();
        out.insert(reason, attr(cell, "data-value").unwrap().parse().unwrap());
        rest = &rest[1..];
    }
    out
}

// ------------------------------------------------------------------------------------------
// A backtest
// ------------------------------------------------------------------------------------------

struct Run {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    state_url: String,
    output: PathBuf,
}

/// Lines X cuts into chunks like any other and Y rejects: 2 × invalid amount, 1 × wrong
/// number of fields.
const BAD_LINES: [&str; 3] = [
    "1,'C1','3','F','28007','M1','28007','es_home',-3.00,0",
    "garbage,line",
    "2,'C2','3','F','28007','M1','28007','es_home',abc,0",
];

/// txgen → a few bad lines inserted → X at full speed → Y `--replay` (2 workers, SQLite).
fn backtest() -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let data = dir.join("data");
    run_bin(
        env!("CARGO_BIN_EXE_txgen"),
        &[
            "--out",
            s(&data),
            "--rows",
            &ROWS.to_string(),
            "--seed",
            &SEED.to_string(),
        ],
    );
    let source = data.join("transactions.csv");
    let text = fs::read_to_string(&source).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    for (i, bad) in BAD_LINES.iter().enumerate() {
        lines.insert(1000 + i * 7000, bad);
    }
    fs::write(&source, lines.join("\n") + "\n").unwrap();
    let landing = dir.join("landing");
    run_bin(
        env!("CARGO_BIN_EXE_mechanism-x"),
        &[
            "--source",
            s(&source),
            "--landing",
            s(&landing),
            "--chunk-rows",
            CHUNK_ROWS,
            "--interval-ms",
            "0",
        ],
    );
    let output = dir.join("out");
    let state_url = format!("sqlite://{}", dir.join("state.db").display());
    let importance = data.join("CustomerImportance.csv");
    let mut y = vec![
        "--landing",
        s(&landing),
        "--importance",
        s(&importance),
        "--output",
        s(&output),
        "--state",
        &state_url,
        "--replay",
        "-w",
        "2",
    ];
    y.extend(THRESHOLDS);
    run_bin(env!("CARGO_BIN_EXE_mechanism-y"), &y);
    Run {
        _tmp: tmp,
        dir,
        state_url,
        output,
    }
}

/// `txflow-report` on the run: the HTML and JSON files.
fn txflow_report(run: &Run, name: &str) -> (PathBuf, Value) {
    let (html, json) = (
        run.dir.join(format!("{name}.html")),
        run.dir.join(format!("{name}.json")),
    );
    run_bin(
        env!("CARGO_BIN_EXE_txflow-report"),
        &[
            "--state",
            &run.state_url,
            "--output",
            s(&run.output),
            "--html",
            s(&html),
            "--json",
            s(&json),
        ],
    );
    (
        html,
        serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap(),
    )
}

// ------------------------------------------------------------------------------------------
// A test-local status server (the real endpoint is mechanism-y --http)
// ------------------------------------------------------------------------------------------

/// Serves `console_page()` at `/` and `status()` at `/api/status` on a loopback port, one
/// request per connection, until the test ends. Counts the status requests.
struct StatusServer {
    port: u16,
    status_requests: Arc<AtomicU64>,
}

impl StatusServer {
    fn start(status: impl Fn() -> Value + Send + 'static) -> StatusServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status_requests = Arc::new(AtomicU64::new(0));
        let counter = status_requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &status, &counter);
            }
        });
        StatusServer {
            port,
            status_requests,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

fn serve(
    mut stream: TcpStream,
    status: &dyn Fn() -> Value,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (code, kind, body) = match path {
        "/" => (
            "200 OK",
            "text/html; charset=utf-8",
            report::console_page().to_string(),
        ),
        "/api/status" => {
            counter.fetch_add(1, Ordering::SeqCst);
            ("200 OK", "application/json", status().to_string())
        }
        _ => ("404 Not Found", "text/plain", "not found".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {code}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// `status_from_store` on a freshly opened store (as a server of a running store would).
fn status_of(state_url: &str, output: &Path) -> Value {
    let mut store = state::open(&StateConfig::parse(state_url).unwrap()).unwrap();
    let output = txflow::objectstore::open(s(output), &Default::default()).unwrap();
    let mut status = report::status_from_store(store.as_mut(), Some(output.as_ref())).unwrap();
    status["run"]["state"] = state_url.into();
    status
}

// ------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------

#[test]
fn report_and_console_show_the_store() {
    let run = backtest();
    let expected = store_figures(&run.state_url);
    assert!(
        expected.epochs >= 20 && expected.by_pattern.values().all(|n| *n > 0),
        "the backtest should commit every chunk and fire every pattern: {expected:?}"
    );
    assert_eq!(expected.rows_rejected, BAD_LINES.len() as u64);
    let expected_reasons: BTreeMap<String, u64> = [
        ("expected 10 fields, found 2".to_string(), 1),
        ("invalid amount".to_string(), 2),
    ]
    .into();

    // The report: its JSON, then its page in the browser.
    let (html, json) = txflow_report(&run, "report");
    assert_eq!(json["progress"]["epochs_committed"], expected.epochs);
    assert_eq!(json["state"], "ended");
    assert_eq!(json["run"]["mode"], "replay");
    assert_eq!(
        serde_json::from_value::<BTreeMap<String, u64>>(json["rejects"]["by_reason"].clone())
            .unwrap(),
        expected_reasons
    );
    let dom = dump_dom(&format!("file://{}", html.display()), &[]);
    assert!(
        dom.contains("<title>txflow run report</title>"),
        "report mode"
    );
    assert_eq!(page_figures(&dom), expected, "the report page");
    assert_eq!(
        page_rejects(&dom),
        expected_reasons,
        "rejects by reason on the report page"
    );
    let (lag, text) = element(&dom, "id=\"lag\"").unwrap();
    assert_eq!((attr(lag, "data-lag-chunks"), text), (Some("0"), "ended"));
    let rows = dom.matches("<tr data-seq=").count();
    assert_eq!(
        rows,
        50.min(expected.by_pattern.values().sum::<u64>()) as usize
    );
    // Every listed detection shows why it fired: its evidence as key=value text.
    let evidence: Vec<&str> = dom
        .split("<td class=\"evidence\">")
        .skip(1)
        .map(|cell| &cell[..cell.find("</td>").unwrap()])
        .collect();
    assert_eq!(evidence.len(), rows, "an evidence cell per detection");
    assert!(
        evidence
            .iter()
            .all(|e| e.contains("_customers=") || e.contains("customer_txns=")),
        "evidence shown: {evidence:?}"
    );
    assert!(
        dom.contains("<svg") && dom.contains("<polyline") && dom.contains("<rect"),
        "charts drawn"
    );

    // A name holding markup is shown as text: no element is created from it.
    let mut hostile = json.clone();
    hostile["latest_detections"][0]["customer_name"] =
        "</script><img id=\"injected\" src=\"x\"><!--".into();
    let hostile_html = run.dir.join("hostile.html");
    fs::write(&hostile_html, report::render_report(&hostile)).unwrap();
    let dom = dump_dom(&format!("file://{}", hostile_html.display()), &[]);
    assert!(!dom.contains("<img"), "markup in a name became an element");
    assert!(
        dom.contains("&lt;/script&gt;&lt;img id=\"injected\""),
        "the name is shown as text"
    );
    assert_eq!(page_figures(&dom), expected, "the page still renders");

    // The console: the page fetches /api/status from the server that serves it.
    let (state_url, output) = (run.state_url.clone(), run.output.clone());
    let server = StatusServer::start(move || status_of(&state_url, &output));
    let dom = dump_dom(&server.url(), &["--virtual-time-budget=5000"]);
    assert!(
        server.status_requests.load(Ordering::SeqCst) >= 1,
        "the console never fetched /api/status"
    );
    assert!(
        dom.contains("<title>txflow console</title>"),
        "console mode"
    );
    assert_eq!(page_figures(&dom), expected, "the console page");
    assert_eq!(
        page_rejects(&dom),
        expected_reasons,
        "rejects by reason on the console"
    );
    let (conn, _) = element(&dom, "id=\"conn\"").unwrap();
    assert!(
        conn.contains("display: none"),
        "the last fetch failed: {conn}"
    );
}

/// The console as `mechanism-y --http` serves it: a live Y (following, so that it stays up)
/// over the backtest's landing; once its store holds every epoch, the page rendered in the
/// browser shows the store's figures, fetched from the real `/api/status`.
#[test]
fn console_served_by_mechanism_y_shows_the_store() {
    let run = backtest();
    let expected_epochs = store_figures(&run.state_url).epochs as usize;
    let state_url = format!("sqlite://{}", run.dir.join("live.db").display());
    let port = free_port();
    let mut y = Command::new(env!("CARGO_BIN_EXE_mechanism-y"));
    y.args(["--landing", s(&run.dir.join("landing"))])
        .args([
            "--importance",
            s(&run.dir.join("data/CustomerImportance.csv")),
        ])
        .args(["--output", s(&run.dir.join("live-out"))])
        .args(["--state", &state_url, "-w", "2", "--follow"])
        .args(["--http", &port.to_string()])
        .args(THRESHOLDS)
        .env("RUST_LOG", "warn");
    let y = ChildGuard::spawn(y);
    let started = std::time::Instant::now();
    while store_figures_if_any(&state_url) != Some(expected_epochs) {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "the live run never caught up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dom = dump_dom(
        &format!("http://127.0.0.1:{port}/"),
        &["--virtual-time-budget=5000"],
    );
    drop(y);
    assert!(
        dom.contains("<title>txflow console</title>"),
        "console mode"
    );
    assert_eq!(
        page_figures(&dom),
        store_figures(&state_url),
        "the console served by mechanism-y"
    );
    let (conn, _) = element(&dom, "id=\"conn\"").unwrap();
    assert!(
        conn.contains("display: none"),
        "the last fetch failed: {conn}"
    );
}

#[test]
fn report_errors_are_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let html = tmp.path().join("r.html");
    let missing = format!("sqlite://{}", tmp.path().join("none.db").display());
    let report = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_txflow-report"));
        command.args(args).env("RUST_LOG", "off");
        ChildGuard::spawn(command).wait(RUN_TIMEOUT)
    };
    report(&["--state", &missing, "--html", s(&html)])
        .assert_one_line_error(&["none.db", "no such file"]);
    assert!(
        !tmp.path().join("none.db").exists(),
        "a report never creates a store"
    );
    report(&["--state", "mysql://u:secret@h/db", "--html", s(&html)])
        .assert_one_line_error(&["mysql://u:***@h/db"]);
    fs::write(tmp.path().join("empty.db"), b"").unwrap();
    let empty = format!("sqlite://{}", tmp.path().join("empty.db").display());
    let out = tmp.path().join("no-output");
    report(&["--state", &empty, "--output", s(&out), "--html", s(&html)])
        .assert_one_line_error(&["no-output", "no such directory"]);
    let failed = report(&["--state", "sqlite://x.db"]);
    assert_eq!(
        failed.status.code(),
        Some(2),
        "usage error: {}",
        failed.describe()
    );
    assert!(!html.exists());
}

/// The landing edge (highest chunk index present) of a local landing directory.
fn landing_edge(landing: &Path) -> Option<u64> {
    fs::read_dir(landing)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("chunk-")?
                .strip_suffix(".csv")?
                .parse()
                .ok()
        })
        .max()
}

/// Screenshots for the README, of the default-sized demo data (594,643 rows, default
/// thresholds): `docs/console.png` while a live Y (2 workers) follows X, served by Y's own
/// endpoint (`--http`), and `docs/report.png` of
/// the finished run's report. Run by hand:
/// `cargo test --test it --features test-browser -- --ignored screenshots`.
#[test]
#[ignore = "writes docs/*.png; run by hand"]
fn screenshots_for_the_readme() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    fs::create_dir_all(&docs).unwrap();
    let data = dir.join("data");
    run_bin(env!("CARGO_BIN_EXE_txgen"), &["--out", s(&data)]);
    let (landing, output) = (dir.join("landing"), dir.join("out"));
    let state_url = format!("sqlite://{}", dir.join("state.db").display());
    let importance = data.join("CustomerImportance.csv");
    let port = free_port();
    let mut y = Command::new(env!("CARGO_BIN_EXE_mechanism-y"));
    y.args([
        "--landing",
        s(&landing),
        "--importance",
        s(&importance),
        "--output",
        s(&output),
    ])
    .args(["--state", &state_url, "-w", "2"])
    .args(["--http", &port.to_string()])
    .env("RUST_LOG", "warn");
    let y = ChildGuard::spawn(y);
    let mut x = Command::new(env!("CARGO_BIN_EXE_mechanism-x"));
    x.args([
        "--source",
        s(&data.join("transactions.csv")),
        "--landing",
        s(&landing),
    ])
    .args(["--interval-ms", "250"])
    .env("RUST_LOG", "warn");
    let x = ChildGuard::spawn(x);

    // Half-way through the chunks (a store that already committed some).
    while landing_edge(&landing).unwrap_or(0) < 30
        || store_figures_if_any(&state_url).is_none_or(|epochs| epochs < 10)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let console = docs.join("console.png");
    let shot = format!("--screenshot={}", console.display());
    chromium(
        &[
            &shot,
            "--window-size=1280,1000",
            "--virtual-time-budget=3000",
        ],
        &format!("http://127.0.0.1:{port}/"),
    );
    let x = x.wait(RUN_TIMEOUT);
    assert!(x.status.success(), "mechanism-x: {}", x.describe());
    let y = y.wait(RUN_TIMEOUT);
    assert!(y.status.success(), "mechanism-y: {}", y.describe());

    let html = dir.join("report.html");
    run_bin(
        env!("CARGO_BIN_EXE_txflow-report"),
        &[
            "--state",
            &state_url,
            "--output",
            s(&output),
            "--html",
            s(&html),
        ],
    );
    let report_png = docs.join("report.png");
    let shot = format!("--screenshot={}", report_png.display());
    chromium(
        &[&shot, "--window-size=1280,1000"],
        &format!("file://{}", html.display()),
    );
    for png in [console, report_png] {
        let size = fs::metadata(&png).unwrap().len();
        assert!(size < 300_000, "{}: {size} bytes", png.display());
        eprintln!("{}: {size} bytes", png.display());
    }
}

/// The number of committed epochs, once the store exists and has its tables.
fn store_figures_if_any(state_url: &str) -> Option<usize> {
    // Opening creates the file: wait for Y to create it.
    Path::new(state_url.strip_prefix("sqlite://")?)
        .is_file()
        .then_some(())?;
    let mut store = state::open(&StateConfig::parse(state_url).ok()?).ok()?;
    store.epoch_rows().ok().map(|rows| rows.len())
}
