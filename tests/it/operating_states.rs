//! The run's state, seen by an operator: for each state a real live `mechanism-y --http` is
//! put in (a missing landing, a paused producer, commits blocked by a frozen PostgreSQL, a
//! stall, a failure kept visible by `--linger-on-failure`, a restart showing the previous
//! failure), the console in headless
//! Chromium, `/readyz` and `/api/status` (and `txflow_ready`, `txflow_state`) must say the
//! same thing at the same moment. Each observation reads `/api/status` before and after the
//! page was rendered, so a state that changed in between is seen, not papered over.
//!
//! Every wait is bounded; every child process is killed when its guard drops.

#![cfg_attr(not(feature = "test-browser"), allow(dead_code, unused_imports))]

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use common::browser::{chromium_with_env, dump_dom};
use common::paths::{free_port, s};
use common::process::{dir_removed_at_exit, generated_data, YProc};
use common::wait::poll;
use serde_json::Value;
use txflow::mechanism_x::{self, XOptions};

const ROWS: u64 = 20_000;
const SEED: u64 = 11;
const CHUNK_ROWS: usize = 1_000;
/// Bound on reaching a state (debug build, shared 2-core machine).
const STATE_TIMEOUT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// The landing: chunks cut once by mechanism X, handed to a live run one at a time

/// Chunk files of the generated data, in order (cut once, shared).
fn chunks() -> &'static [PathBuf] {
    static CHUNKS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    CHUNKS.get_or_init(|| {
        let landing = dir_removed_at_exit("states-chunks");
        let data = generated_data(ROWS, SEED);
        let mut options = XOptions::new(data.join(txgen::TRANSACTIONS_FILE), s(&landing));
        options.chunk_rows = CHUNK_ROWS;
        options.interval = Duration::ZERO;
        mechanism_x::run(&options).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&landing)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        files.sort();
        assert!(files.len() >= 16, "{files:?}");
        files
    })
}

/// A scene: a run directory with an (initially empty) landing the producer fills.
struct Scene {
    dir: PathBuf,
    landing: PathBuf,
}

impl Scene {
    fn new(name: &str) -> Scene {
        let dir = dir_removed_at_exit(&format!("states-{name}"));
        let landing = dir.join("landing");
        std::fs::create_dir_all(&landing).unwrap();
        Scene { dir, landing }
    }

    /// The producer lands chunks `range` (written aside, then renamed in: never seen half
    /// written).
    fn land(&self, range: std::ops::Range<usize>) {
        for k in range {
            let chunk = &chunks()[k];
            let aside = self.dir.join("landing.tmp");
            std::fs::copy(chunk, &aside).unwrap();
            std::fs::rename(&aside, self.landing.join(chunk.file_name().unwrap())).unwrap();
        }
    }

    fn sqlite(&self) -> String {
        format!("sqlite://{}", self.dir.join("state.db").display())
    }

    /// A live, following mechanism-y on `landing` with the endpoint on `port`.
    fn start(&self, name: &str, landing: &Path, state: &str, port: u16, extra: &[&str]) -> YProc {
        let data = generated_data(ROWS, SEED);
        let mut args: Vec<String> = [
            "--landing",
            s(landing),
            "--importance",
            s(&data.join(txgen::IMPORTANCE_FILE)),
            "--output",
            s(&self.dir.join("out")),
            "--state",
            state,
            "--follow",
            "--poll-ms",
            "100",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(["--http".to_string(), port.to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        YProc::spawn_with_env(name, &args, &self.dir, &[("RUST_LOG", "warn")])
    }
}

// ---------------------------------------------------------------------------------------------
// What each surface says

/// One HTTP GET: status and body (`None` when nothing answers).
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn status(port: u16) -> Option<Value> {
    let (code, body) = get(port, "/api/status")?;
    assert_eq!(code, 200, "{body}");
    Some(serde_json::from_str(&body).expect("/api/status is JSON"))
}

/// Waits (bounded) until `/api/status` says `state`; returns the document.
fn wait_for_state(port: u16, state: &str, y: &mut YProc) -> Value {
    let seen = poll(STATE_TIMEOUT, || {
        assert!(
            y.try_status().is_none() || state == "failed",
            "{} exited before reaching {state}: {}",
            y.name,
            y.stderr_tail(10)
        );
        status(port).filter(|s| s["state"] == state)
    });
    seen.unwrap_or_else(|| {
        panic!(
            "never in state {state:?}; last: {:?}; stderr:\n{}",
            status(port).map(|s| s["state"].clone()),
            y.stderr_tail(10)
        )
    })
}

/// The value of a sample line `name` (exact, labels included) in `/metrics`.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The badge's text and class as the browser rendered them.
fn badge(dom: &str) -> (String, String) {
    let at = dom.find("id=\"state-badge\"").expect("a state badge");
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    let tag = &dom[start..=end];
    let class = tag
        .split_once("class=\"")
        .map_or("", |(_, rest)| rest.split('"').next().unwrap())
        .to_string();
    let text_end = end + 1 + dom[end + 1..].find('<').unwrap();
    (dom[end + 1..text_end].trim().to_string(), class)
}

/// With `TXFLOW_TEST_SCREENSHOTS=DIR`, the console of each observed state is also saved as
/// `DIR/console-<shot>.png` (docs/operations.md shows them).
fn screenshot(port: u16, shot: &str) {
    let Some(dir) = std::env::var_os("TXFLOW_TEST_SCREENSHOTS") else {
        return;
    };
    let png = Path::new(&dir).join(format!("console-{shot}.png"));
    chromium_with_env(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,760",
            "--virtual-time-budget=4000",
        ],
        &format!("http://127.0.0.1:{port}/"),
        &[("TZ", "Asia/Kolkata")],
    );
}

/// Every surface says `state` (and the same readiness) at one moment: `/api/status` before
/// and after the page was rendered, the badge, `/readyz`, `txflow_ready` and `txflow_state`.
/// Returns the status document and the rendered page (also a screenshot named `shot`, see
/// [`screenshot`]).
fn surfaces_agree(port: u16, state: &str, shot: &str) -> (Value, String) {
    let before = status(port).expect("/api/status answers");
    let dom = dump_dom(
        &format!("http://127.0.0.1:{port}/"),
        &["--virtual-time-budget=4000"],
    );
    screenshot(port, shot);
    let (readyz, reason) = get(port, "/readyz").expect("/readyz answers");
    let (_, metrics) = get(port, "/metrics").expect("/metrics answers");
    let after = status(port).expect("/api/status answers");
    for doc in [&before, &after] {
        assert_eq!(doc["state"], state, "the state changed while observed");
    }
    let ready = after["ready"].as_bool().expect("ready is a boolean");
    let (text, class) = badge(&dom);
    assert_eq!(text, state.replace('_', " "), "the badge says the state");
    let green = ["up_to_date", "ended"].contains(&state) && ready;
    assert_eq!(
        class.split_whitespace().any(|c| c == "ok"),
        green,
        "the badge is green exactly when the run is up to date and ready: {class}"
    );
    assert_eq!(readyz == 200, ready, "/readyz {readyz} {reason}");
    let summary = after["state_detail"]["summary"].as_str().unwrap();
    assert!(
        reason.contains(summary.split(':').next().unwrap()),
        "/readyz says why: {reason:?} vs {summary:?}"
    );
    assert_eq!(sample(&metrics, "txflow_ready"), Some(ready as u8 as f64));
    let one = format!("txflow_state{{state=\"{state}\"}}");
    assert_eq!(sample(&metrics, &one), Some(1.0), "{one}");
    (after, dom)
}

// ---------------------------------------------------------------------------------------------
// The states

#[cfg(feature = "test-browser")]
#[test]
fn a_missing_landing_is_waiting_for_input_and_not_ready_everywhere() {
    let scene = Scene::new("missing");
    let port = free_port();
    let nowhere = scene.dir.join("no-such-landing");
    let mut y = scene.start("missing", &nowhere, &scene.sqlite(), port, &[]);
    wait_for_state(port, "waiting_for_input", &mut y);
    let (status, dom) = surfaces_agree(
        port,
        "waiting_for_input",
        "waiting_for_input-landing-missing",
    );
    assert_eq!(status["ready"], false);
    assert_eq!(status["state_detail"]["landing_missing"], true);
    assert!(dom.contains("id=\"state-summary\""));
}

#[cfg(feature = "test-browser")]
#[test]
fn a_paused_producer_is_waiting_for_input_then_up_to_date_when_it_resumes() {
    let scene = Scene::new("paused");
    scene.land(0..3);
    let port = free_port();
    let mut y = scene.start(
        "paused",
        &scene.landing.clone(),
        &scene.sqlite(),
        port,
        &["--ready-max-idle", "3s"],
    );
    let waiting = wait_for_state(port, "waiting_for_input", &mut y);
    assert_eq!(waiting["progress"]["last_committed_epoch"], 2);
    let (idle, _) = surfaces_agree(port, "waiting_for_input", "waiting_for_input-idle");
    assert_eq!(idle["ready"], false, "silent past --ready-max-idle");
    let idle = idle["state_detail"]["since_last_chunk_seconds"]
        .as_f64()
        .unwrap();
    assert!(idle >= 3.0, "{idle}");
    // The producer resumes: ready again (within --ready-max-idle of the new chunk).
    scene.land(3..4);
    let ready = poll(STATE_TIMEOUT, || {
        status(port).filter(|s| s["progress"]["last_committed_epoch"] == 3 && s["ready"] == true)
    });
    let ready = ready.expect("ready again once a chunk arrived");
    assert_eq!(ready["state"], "up_to_date");
}

#[cfg(all(feature = "test-browser", feature = "test-services"))]
#[test]
fn blocked_commits_are_committing_slowly_then_stalled_while_the_failed_run_lingers() {
    let pg = common::pg::PgServer::new();
    let scene = Scene::new("blocked");
    scene.land(0..2);
    let port = free_port();
    let state = pg.fresh_database_url("states_blocked");
    let mut y = scene.start(
        "blocked",
        &scene.landing.clone(),
        &state,
        port,
        &["--stall-timeout", "40", "--linger-on-failure", "60"],
    );
    poll(STATE_TIMEOUT, || {
        status(port).filter(|s| s["progress"]["last_committed_epoch"] == 1)
    })
    .expect("the first chunks commit");
    // The store stops answering mid-run: the next commit cannot finish.
    pg.freeze();
    scene.land(2..3);
    let slow = wait_for_state(port, "committing_slowly", &mut y);
    assert_eq!(
        slow["state_detail"]["behind"]["stage"], "committing",
        "{slow}"
    );
    surfaces_agree(port, "committing_slowly", "committing_slowly");
    // The watchdog fires; the run fails on the stall and lingers, still saying `stalled`, with
    // the error beside it.
    wait_for_state(port, "stalled", &mut y);
    let stalled = poll(STATE_TIMEOUT, || {
        status(port).filter(|s| s["error"]["message"].is_string())
    })
    .expect("the run fails on the stall");
    assert!(
        stalled["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{stalled}"
    );
    let (stalled, dom) = surfaces_agree(port, "stalled", "stalled");
    let exit_code = stalled["error"]["exit_code"].as_u64().unwrap();
    assert!(dom.contains("id=\"error-panel\""));
    assert!(stalled["error"]["what_to_do"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    pg.thaw();
    y.signal(libc::SIGTERM);
    let exit = y.wait(Duration::from_secs(30));
    assert_eq!(
        exit.code(),
        Some(exit_code as i32),
        "the error's exit status"
    );
}

#[cfg(feature = "test-browser")]
#[test]
fn a_failure_lingers_then_a_restart_recovers_and_shows_the_previous_error() {
    let scene = Scene::new("restart");
    scene.land(0..3);
    let port = free_port();
    let state = scene.sqlite();
    let mut first = scene.start(
        "first",
        &scene.landing.clone(),
        &state,
        port,
        &["--linger-on-failure", "60"],
    );
    poll(STATE_TIMEOUT, || {
        status(port).filter(|s| s["progress"]["last_committed_epoch"] == 2)
    })
    .expect("the first chunks commit");
    // Another process holds the state store: the next commit fails after SQLite's busy
    // timeout, and the run fails.
    let db = scene.dir.join("state.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    scene.land(3..4);
    wait_for_state(port, "failed", &mut first);
    let (failed, dom) = surfaces_agree(port, "failed", "failed");
    let message = failed["error"]["message"].as_str().unwrap().to_string();
    assert!(dom.contains("id=\"error-panel\""));
    assert!(
        first.try_status().is_none(),
        "still serving while it lingers"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    first.signal(libc::SIGTERM);
    let exit = first.wait(Duration::from_secs(30));
    assert_eq!(
        exit.code().map(|c| c as u64),
        failed["error"]["exit_code"].as_u64(),
        "the error's exit status"
    );
    // The restart: recovers the committed epochs and, with the producer landing a chunk
    // every half second, is up to date; it shows the earlier run's failure.
    let port = free_port();
    // A few chunks in flight are normal at this pace on a loaded machine: still up to date.
    let second = scene.start(
        "second",
        &scene.landing.clone(),
        &state,
        port,
        &["--ready-max-lag", "5"],
    );
    let producer = std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            for k in 4..chunks().len() {
                scene.land(k..k + 1);
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let up = poll(STATE_TIMEOUT, || {
            status(port).filter(|s| {
                s["progress"]["last_committed_epoch"].as_u64() >= Some(5)
                    && s["state"] == "up_to_date"
            })
        });
        assert!(up.is_some(), "{}", second.stderr_tail(10));
        let seen = surfaces_agree(port, "up_to_date", "up_to_date-previous-error");
        producer.join().unwrap();
        seen
    });
    let (up, dom) = producer;
    assert_eq!(up["previous_error"]["message"], message.as_str());
    assert!(dom.contains("id=\"previous-error\""));
    assert!(
        up["progress"]["restore"].is_object(),
        "rebuilt at start: {up}"
    );
}
