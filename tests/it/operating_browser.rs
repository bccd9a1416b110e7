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
//! - `console_shows_each_state_truthfully`: the console on status documents written by hand
//!   per the status contract, one per run state, in a browser whose zone is not IST: badge
//!   words and colour (never green when not ready), summary, what to do, the behind /
//!   recovering / landing-missing details, the error and previous-error panels, the recent
//!   events newest first with IST times, "this run (since …)" and "all runs", a chart canvas
//!   in each chart container.
//! - `console_charts_show_values_on_hover`: a synthetic mouse move shows the time (IST) and
//!   the rates in uPlot's legend; without it the legend shows none.
//! - `console_degrades_on_an_older_document`: no `ready`, `state_detail`, events or
//!   millisecond times: the page still renders and an unknown state is not green.
//! - `console_screenshots_per_state` (ignored; run by hand): `docs/img/console-<state>.png`.
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

use common::browser::{chromium, chromium_with_env, dump_dom, dump_dom_with_env};
use common::paths::free_port;
use common::paths::s;
use common::process::{ChildGuard, Finished};
use serde_json::{json, Value};
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
        "/hover" => (
            "200 OK",
            "text/html; charset=utf-8",
            report::console_page().replacen("</body>", HOVER_SCRIPT, 1),
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

/// Added by the test server to the console page at `/hover`: once the page has rendered, a
/// synthetic mouse move over every chart, at 60 % of its width.
const HOVER_SCRIPT: &str = r#"<script>setTimeout(() => {
  for (const over of document.querySelectorAll(".u-over")) {
    const r = over.getBoundingClientRect();
    over.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + r.width * 0.6,
      clientY: r.top + r.height / 2, bubbles: true }));
  }
}, 2000);</script></body>"#;

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
        dom.matches("<canvas").count() >= 2 && dom.contains("u-legend"),
        "charts drawn (throughput and detections at least)"
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

// ------------------------------------------------------------------------------------------
// The console per run state, on status documents written by hand per the status contract
// ------------------------------------------------------------------------------------------

/// 2026-06-01T10:00:00+05:30: when the canned run started.
const STARTED_MS: i64 = 1_780_288_200_000;
/// 11:00:00 IST: when the canned document was generated.
const GENERATED_MS: i64 = STARTED_MS + 3_600_000;

/// One run state as the console must show it.
struct Case {
    state: &'static str,
    ready: bool,
    /// The badge's words and its colour class (`ok` green, `warn` amber, `bad` red).
    words: &'static str,
    class: &'static str,
    /// What the document adds to the common part.
    extra: Value,
}

fn case(state: &'static str, ready: bool, words: &'static str, class: &'static str) -> Case {
    Case {
        state,
        ready,
        words,
        class,
        extra: json!({}),
    }
}

/// A one-line summary and what to do, as a server might word them for `state`.
fn words_of(state: &str, ready: bool) -> (&'static str, &'static str) {
    match (state, ready) {
        ("up_to_date", _) => ("up to date: epoch 119 committed, 1 chunk in flight", ""),
        ("ended", _) => ("ended: every chunk committed", ""),
        ("waiting_for_input", true) => (
            "waiting for input: last chunk 31 s ago, landing listed 1 s ago",
            "",
        ),
        ("waiting_for_input", false) => (
            "waiting for input: the landing /data/landing is missing",
            "check that mechanism-x writes to /data/landing and that the path is right",
        ),
        ("behind", _) => (
            "behind: 5 chunks waiting (more than 2), oldest epoch 117 for 13 s",
            "watch the commit latency; add workers if the input rate stays above the processed rate",
        ),
        ("committing_slowly", _) => (
            "committing slowly: epoch 120 has been committing for 9 s",
            "check the state store and the output store: latency, locks, free space",
        ),
        ("recovering", _) => (
            "recovering from checkpoint: 3 of 10 epochs replayed",
            "",
        ),
        ("starting", _) => ("starting: reading the state store", ""),
        ("stalled", _) => (
            "stalled: no progress for 120 s (--stall-timeout)",
            "look at the recent events and the log; restart the run if it does not move",
        ),
        ("failed", _) => (
            "failed: the state store refused the commit",
            "start the database, then restart: the run resumes after epoch 119",
        ),
        _ => ("stopped: the run was stopped", "restart it to go on"),
    }
}

/// Every state of the contract, and `up_to_date` with `ready: false` (never green).
fn cases() -> Vec<Case> {
    let detail = |v: Value| json!({ "state_detail": v });
    vec![
        case("up_to_date", true, "up to date", "ok"),
        case("up_to_date", false, "up to date", "warn"),
        case("ended", true, "ended", "ok"),
        case("waiting_for_input", true, "waiting for input", "warn"),
        Case {
            extra: detail(json!({ "landing_missing": true })),
            ..case("waiting_for_input", false, "waiting for input", "bad")
        },
        Case {
            extra: detail(json!({ "behind": { "chunks": 5, "oldest_waiting_epoch": 17,
                "oldest_waiting_seconds": 12.5, "stage": "committing", "stage_seconds": 3.2 } })),
            ..case("behind", false, "behind", "warn")
        },
        case("committing_slowly", false, "committing slowly", "warn"),
        Case {
            extra: detail(
                json!({ "recovering": { "source": "checkpoint", "replayed": 3,
                "to_replay": 10 } }),
            ),
            ..case("recovering", false, "recovering", "warn")
        },
        case("starting", false, "starting", "warn"),
        case("stalled", false, "stalled", "bad"),
        Case {
            extra: json!({ "error": { "message": "the state store refused the commit",
                "domain": "external service", "exit_code": 4,
                "what_to_do": "start the database, then restart" } }),
            ..case("failed", false, "failed", "bad")
        },
        case("stopped", false, "stopped", "warn"),
    ]
}

/// 20 epochs of 2,000 rows, committed every 2 s but with a 60 s pause after epoch 9, the last
/// 30 s before the document; each chunk visible 700 ms before its commit.
fn canned_history() -> Vec<Value> {
    let mut at = GENERATED_MS - 30_000 - 19 * 2_000 - 58_000;
    (0..20u64)
        .map(|epoch| {
            at += match epoch {
                0 => 0,
                10 => 60_000,
                _ => 2_000,
            };
            json!({ "epoch": epoch, "chunk": format!("chunk-{epoch:06}.csv"),
                "committed_at": "", "committed_at_ms": at, "visible_ms": at - 700,
                "rows": 2_000, "rejected": 1, "compute_ms": 30.5, "commit_ms": 12.0,
                "visible_to_commit_ms": 700, "lag_chunks": epoch % 3,
                "detections": { "PatId1": epoch % 2, "PatId2": 1, "PatId3": 0 } })
        })
        .collect()
}

/// The document of `case`: the common part, the case's state, then its additions (objects
/// merged one level deep).
fn canned_status(case: &Case) -> Value {
    let mut doc = json!({
        "generated_at_ms": GENERATED_MS,
        "state": case.state,
        "ready": case.ready,
        "state_detail": {
            "summary": words_of(case.state, case.ready).0,
            "what_to_do": Some(words_of(case.state, case.ready).1).filter(|w| !w.is_empty()),
            "last_chunk_ms": GENERATED_MS - 31_000, "since_last_chunk_seconds": 31.0,
            "landing_listed_ms": GENERATED_MS - 1_000, "landing_missing": false,
            "behind": null, "recovering": null },
        "recent_events": [
            { "at_ms": GENERATED_MS - 1_000, "at": "2026-06-01T10:59:59+05:30", "level": "error",
              "kind": "failure", "message": "state store: connection refused" },
            { "at_ms": GENERATED_MS - 30_000, "at": "2026-06-01T10:59:30+05:30", "level": "warn",
              "kind": "retry", "message": "state store: connection reset, retry 1 of 5 in 200 ms" },
            { "at_ms": GENERATED_MS - 120_000, "at": "2026-06-01T10:58:00+05:30", "level": "info",
              "kind": "recovered", "message": "recovered from checkpoint at epoch 109 in 0.4 s" } ],
        "previous_error": { "message": "chunk-000042.csv line 7: invalid amount", "domain": "input",
            "exit_code": 3, "at": "2026-06-01T09:15:00+05:30", "at_ms": STARTED_MS - 2_700_000 },
        "run": { "mode": "live", "landing": "/data/landing",
            "started_at": "2026-06-01T10:00:00.000+05:30" },
        "progress": { "epochs_committed": 20, "last_committed_epoch": 119, "landing_edge": 121,
            "lag_chunks": 2, "lag_seconds": 1.5, "rows_accepted": 40_000, "rows_rejected": 20,
            "last_commit_ms": GENERATED_MS - 30_000 },
        "throughput": { "rows_per_second": 1000.0 },
        "detections": { "total": 30, "by_pattern": { "PatId1": 10, "PatId2": 20, "PatId3": 0 } },
        "latest_detections": [],
        "rejects": { "total": 20, "by_reason": { "invalid amount": 20 } },
        "history": canned_history(),
    });
    for (key, value) in case.extra.as_object().unwrap() {
        match (doc.get_mut(key), value) {
            (Some(Value::Object(into)), Value::Object(from)) => {
                into.extend(from.iter().map(|(k, v)| (k.clone(), v.clone())))
            }
            _ => doc[key] = value.clone(),
        }
    }
    doc
}

/// The visible text of the element carrying `attribute`, up to the end of its section (tags
/// removed, whitespace collapsed).
fn section_text(dom: &str, attribute: &str) -> String {
    let at = dom
        .find(attribute)
        .unwrap_or_else(|| panic!("no {attribute} in the DOM"));
    let start = at + dom[at..].find('>').unwrap() + 1;
    let end = start + dom[start..].find("</section>").unwrap_or(dom.len() - start);
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The DOM of the console served with `status`, in a browser whose own zone is not IST.
fn console_dom(status: Value, path: &str) -> String {
    let server = StatusServer::start(move || status.clone());
    let url = format!("{}{}", server.url(), path.trim_start_matches('/'));
    let dom = dump_dom_with_env(
        &url,
        &["--virtual-time-budget=4000", "--window-size=1280,1000"],
        &[("TZ", "America/New_York")],
    );
    assert!(server.status_requests.load(Ordering::SeqCst) >= 1);
    dom
}

fn assert_case(dom: &str, case: &Case) {
    let what = format!("{} (ready {})", case.state, case.ready);
    let (badge, text) = element(dom, "id=\"state-badge\"").unwrap();
    assert_eq!(text, case.words, "{what}: badge text");
    let classes = attr(badge, "class").unwrap();
    assert!(
        classes.split(' ').any(|c| c == case.class),
        "{what}: badge {classes}"
    );
    assert!(
        case.ready || !classes.split(' ').any(|c| c == "ok"),
        "{what}: green while not ready"
    );
    let (summary, what_to_do) = words_of(case.state, case.ready);
    assert_eq!(element(dom, "id=\"state-summary\"").unwrap().1, summary);
    let shown = element(dom, "id=\"what-to-do\"").unwrap().1;
    if what_to_do.is_empty() {
        assert_eq!(shown, "", "{what}: what to do, when there is nothing to do");
    } else {
        assert_eq!(shown, format!("What to do: {what_to_do}"));
    }
    let (error_panel, _) = element(dom, "id=\"error-panel\"").unwrap();
    assert_eq!(
        error_panel.contains(" hidden"),
        case.state != "failed",
        "{what}: {error_panel}"
    );
    let (previous, _) = element(dom, "id=\"previous-error\"").unwrap();
    assert!(!previous.contains(" hidden"), "{what}: {previous}");
    assert_eq!(
        section_text(dom, "id=\"previous-error\""),
        "Last failure of an earlier run chunk-000042.csv line 7: invalid amount at 2026-06-01 09:15:00 IST \
         domain input exit code 3"
    );
    // Newest first, level-coloured, IST times (the browser's own zone is New York).
    let events: Vec<(&str, &str)> = dom
        .match_indices("<li class=\"")
        .map(|(i, _)| {
            let (tag, _) = element(&dom[i..], "data-level=").unwrap();
            let (_, time) = element(&dom[i..], "class=\"t\"").unwrap();
            (attr(tag, "data-level").unwrap(), time)
        })
        .collect();
    assert_eq!(
        events,
        [
            ("error", "10:59:59 IST"),
            ("warn", "10:59:30 IST"),
            ("info", "10:58:00 IST")
        ],
        "{what}: recent events"
    );
    assert!(section_text(dom, "id=\"recent-events\"")
        .starts_with("10:59:59 IST failure state store: connection refused"));
    assert_eq!(
        element(dom, "id=\"this-run-label\"").unwrap().1,
        "this run (since 10:00:00 IST)"
    );
    assert_eq!(element(dom, "id=\"all-runs-label\"").unwrap().1, "all runs");
    assert!(element(dom, "id=\"clock\"").unwrap().1.ends_with(" IST"));
    for chart in [
        "chart-rate",
        "chart-latency",
        "chart-lag",
        "chart-detections",
    ] {
        let at = dom.find(&format!("id=\"{chart}\"")).unwrap();
        let end = at + dom[at..].find("</section>").unwrap();
        assert!(
            dom[at..end].contains("<canvas"),
            "{what}: no canvas in #{chart}"
        );
    }
}

#[test]
fn console_shows_each_state_truthfully() {
    for case in cases() {
        let dom = console_dom(canned_status(&case), "/");
        assert_case(&dom, &case);
        let panel = section_text(&dom, "id=\"state-panel\"");
        match case.state {
            "behind" => assert!(
                panel.contains(
                    "waiting 5 chunks oldest waiting epoch 17, 13 s stage committing for 3.2 s"
                ),
                "{panel}"
            ),
            "recovering" => assert!(
                panel.contains("recovering from checkpoint: 3 of 10 epochs replayed"),
                "{panel}"
            ),
            "waiting_for_input" if !case.ready => {
                assert!(panel.contains("landing missing"), "{panel}")
            }
            "failed" => assert_eq!(
                section_text(&dom, "id=\"error-panel\""),
                "The run failed the state store refused the commit domain external service \
                 exit code 4 what to do start the database, then restart"
            ),
            _ => {}
        }
        // The ages tick from generated_at_ms: the last chunk is at least 31 s old.
        if case.state == "up_to_date" {
            let (_, since) = element(&dom, "id=\"since-last-chunk\"").unwrap();
            let seconds: f64 = since.trim_end_matches(" s ago").parse().unwrap();
            assert!((31.0..40.0).contains(&seconds), "{since}");
        }
    }
}

/// A synthetic mouse move over the charts shows the values under the cursor in uPlot's
/// legend: the time (IST) and the rates; without it the legend shows none.
#[test]
fn console_charts_show_values_on_hover() {
    let case = case("up_to_date", true, "up to date", "ok");
    let legend = |dom: &str| -> Vec<String> {
        let at = dom.find("id=\"chart-rate\"").unwrap();
        let end = at + dom[at..].find("</section>").unwrap();
        dom[at..end]
            .split("class=\"u-value\"")
            .skip(1)
            .map(|rest| {
                let text = &rest[rest.find('>').unwrap() + 1..];
                text[..text.find('<').unwrap()].to_string()
            })
            .collect()
    };
    let still = legend(&console_dom(canned_status(&case), "/"));
    assert!(
        still.iter().all(|v| v == "–"),
        "no hover, yet values: {still:?}"
    );
    let hovered = legend(&console_dom(canned_status(&case), "/hover"));
    assert_eq!(hovered.len(), 3, "{hovered:?}");
    assert!(
        hovered[0].starts_with("10:5") && hovered[0].len() == 8,
        "the time under the cursor, IST: {hovered:?}"
    );
    assert!(
        hovered[1..].iter().any(|v| v.parse::<f64>().is_ok()),
        "a rate under the cursor: {hovered:?}"
    );
}

/// A document from an older server (no ready, no state_detail, no events, no commit times in
/// ms): the page still renders, and an unknown state is never green.
#[test]
fn console_degrades_on_an_older_document() {
    let mut doc = canned_status(&case("up_to_date", true, "", ""));
    let obj = doc.as_object_mut().unwrap();
    for key in [
        "ready",
        "state_detail",
        "recent_events",
        "previous_error",
        "generated_at_ms",
    ] {
        obj.remove(key);
    }
    doc["state"] = "running".into();
    for entry in doc["history"].as_array_mut().unwrap() {
        let ms = entry["committed_at_ms"].as_i64().unwrap();
        entry["committed_at"] = chrono_free_rfc3339(ms).into();
        let e = entry.as_object_mut().unwrap();
        e.remove("committed_at_ms");
        e.remove("visible_ms");
        e.remove("lag_chunks");
    }
    let dom = console_dom(doc, "/");
    let (badge, text) = element(&dom, "id=\"state-badge\"").unwrap();
    assert_eq!(text, "running");
    assert!(attr(badge, "class").unwrap().contains("warn"), "{badge}");
    assert_eq!(page_figures(&dom).epochs, 20);
    assert_eq!(
        element(&dom, "id=\"recent-events-note\"").unwrap().1,
        "not reported here"
    );
    let at = dom.find("id=\"chart-rate\"").unwrap();
    assert!(
        dom[at..at + dom[at..].find("</section>").unwrap()].contains("<canvas"),
        "the processed rate charts by the RFC 3339 commit times"
    );
    let (previous, _) = element(&dom, "id=\"previous-error\"").unwrap();
    assert!(previous.contains(" hidden"));
}

/// `ms` as RFC 3339 in UTC (the form older servers wrote `committed_at` in).
fn chrono_free_rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // 2026-06-01 is day 20605 since 1970-01-01; the canned times all fall on it.
    assert_eq!(days, 20_605);
    format!(
        "2026-06-01T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Screenshots of the console per state for docs/operations.md: `docs/img/console-<state>.png`
/// (1280 wide) of the canned documents above. Run by hand:
/// `cargo test --test it --features test-browser -- --ignored console_screenshots`.
#[test]
#[ignore = "writes docs/img/*.png; run by hand"]
fn console_screenshots_per_state() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/img");
    fs::create_dir_all(&dir).unwrap();
    for case in cases() {
        let name = match (case.state, case.ready) {
            ("up_to_date", false) => continue,
            ("waiting_for_input", false) => "waiting_for_input-landing-missing".to_string(),
            (state, _) => state.to_string(),
        };
        let status = canned_status(&case);
        let server = StatusServer::start(move || status.clone());
        let png = dir.join(format!("console-{name}.png"));
        let shot = format!("--screenshot={}", png.display());
        chromium_with_env(
            &[
                &shot,
                "--window-size=1280,760",
                "--virtual-time-budget=4000",
            ],
            &server.url(),
            &[("TZ", "Asia/Kolkata")],
        );
        let size = fs::metadata(&png).unwrap().len();
        assert!(size < 300_000, "{}: {size} bytes", png.display());
    }
}
