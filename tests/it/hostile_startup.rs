//! Start-up checks and no leftovers, with the real binaries:
//!
//! - `-w`, `-n` and `-w × -n` above their documented maxima are refused at once with one line
//!   (`-w 1000` used to allocate gigabytes of timely channels before failing); the maximum
//!   itself runs.
//! - An output directory that cannot be written fails at start, naming the directory and the
//!   OS error, before the state store is opened (it used to fail at the first epoch that
//!   wrote a file, after committing the epochs before it).
//! - Every I/O error names its path: X given a directory as its source, Y given a directory as
//!   its importance file or hostfile, a regular file as its output or X's landing.
//! - Files named by options (importance, `--variants`, hostfile) must be regular files: a FIFO
//!   or `/dev/zero` is refused at once with one line (a FIFO used to hang, `/dev/zero` to be
//!   read until memory ran out), and an importance file over 1 GiB without being read.
//! - No temporary file is left: a run starting on a local output (Y) or landing (X) removes
//!   the `.tmp-*` files of writers that are gone, keeps those of live processes, and logs the
//!   count; after a real SIGKILL of X in the middle of writing a chunk, and after a SIGKILL of
//!   Y mid-run.
//!
//! - A failed run stays visible: with `--http` the endpoint keeps answering for
//!   `--linger-on-failure` (state `failed`, the error, its domain and what to do; `/readyz`
//!   503), a stop signal ends the wait, the exit status stays the error's; the failure is
//!   recorded in the state store, and the next run's `/api/status` (`previous_error`) and
//!   `txflow-report` show it.
//!
//! Data: `txgen --rows 3000` cut by mechanism-x into 100-record chunks (30 chunks).

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::outputs::files_under;
use common::paths::s;
use common::process::{ChildGuard, Finished};
use common::wait::wait_until;
use txflow::mechanism_y::{MAX_PROCESSES, MAX_TOTAL_WORKERS, MAX_WORKERS};

const Y: &str = env!("CARGO_BIN_EXE_mechanism-y");
const X: &str = env!("CARGO_BIN_EXE_mechanism-x");
const TXGEN: &str = env!("CARGO_BIN_EXE_txgen");
/// Bound on a run that must finish (debug build, loaded machine).
const TIMEOUT: Duration = Duration::from_secs(120);
/// A refusal at start-up must come at least this fast (no data is read, no thread started).
const PROMPT: Duration = Duration::from_secs(10);

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

/// Runs `bin args` with logging at `rust_log`, bounded by [`TIMEOUT`]; also returns how long
/// it took.
fn run_logged(bin: &str, args: &[&str], rust_log: &str) -> (Finished, Duration) {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1");
    let started = Instant::now();
    let finished = ChildGuard::spawn(command).wait(TIMEOUT);
    (finished, started.elapsed())
}

/// Runs with logging off: stderr holds only what `main` prints.
fn run(bin: &str, args: &[&str]) -> (Finished, Duration) {
    run_logged(bin, args, "off")
}

/// Every `.tmp-*` file under `dir`, as paths relative to it.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = files_under(dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

/// A pid that belonged to a process which has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A live process that is none of ours: its temporary files must be kept.
struct LiveProcess(Child);

impl LiveProcess {
    fn start() -> LiveProcess {
        LiveProcess(Command::new("sleep").arg("600").spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The name `LocalStore` gives the temporary file of `name` written by `pid`.
fn temp_name(name: &str, pid: u32) -> String {
    format!(".tmp-{name}-{pid}-ThreadId(2)")
}

/// A generated data set with a complete landing of 30 chunks.
struct Data {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    source: PathBuf,
    importance: PathBuf,
    landing: PathBuf,
}

impl Data {
    /// Generates the data; X lands `max_chunks` chunks (all of them, with `_COMPLETE`, when
    /// `None`).
    fn new(max_chunks: Option<u64>) -> Data {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        let (f, _) = run(TXGEN, &["--out", s(&data), "--rows", "3000", "--seed", "5"]);
        assert!(f.status.success(), "txgen: {}", f.describe());
        let d = Data {
            source: data.join("transactions.csv"),
            importance: data.join("CustomerImportance.csv"),
            landing: root.join("landing"),
            root,
            _tmp: tmp,
        };
        d.land(max_chunks);
        d
    }

    fn land(&self, max_chunks: Option<u64>) {
        let mut args = vec![
            "--source".to_string(),
            s(&self.source).into(),
            "--landing".into(),
            s(&self.landing).into(),
            "--chunk-rows".into(),
            "100".into(),
            "--interval-ms".into(),
            "0".into(),
        ];
        if let Some(n) = max_chunks {
            args.extend(["--max-chunks".into(), n.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (f, _) = run(X, &args);
        assert!(f.status.success(), "mechanism-x: {}", f.describe());
    }

    fn state(&self, name: &str) -> String {
        format!("sqlite://{}", self.root.join(name).display())
    }

    /// `mechanism-y` arguments on this data's landing, low thresholds, plus `extra`.
    fn y_args(&self, output: &Path, state: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--landing",
            s(&self.landing),
            "--importance",
            s(&self.importance),
            "--output",
            s(output),
            "--state",
            state,
            "--upgrade-min-merchant-txns",
            "200",
            "--child-min-txns",
            "10",
            "--dei-min-female-customers",
            "2",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A tiny setup for option checks: one chunk and `_COMPLETE`.
struct Tiny {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    landing: PathBuf,
    importance: PathBuf,
}

impl Tiny {
    fn new() -> Tiny {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let (landing, importance) = common::streams::write_one_chunk_landing(&root);
        Tiny {
            _tmp: tmp,
            root,
            landing,
            importance,
        }
    }

    fn y_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--landing",
            s(&self.landing),
            "--importance",
            s(&self.importance),
            "--output",
            s(&self.root.join("output")),
            "--state",
            &format!("sqlite://{}", self.root.join("state.db").display()),
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    }

    /// Asserts that nothing was started: no state store, no output directory.
    fn assert_untouched(&self) {
        assert!(
            !self.root.join("state.db").exists(),
            "no state store opened"
        );
        assert!(!self.root.join("output").exists(), "no output created");
    }
}

// ------------------------------------------------------------------------------------------
// -w, -n and -w × -n have documented maxima
// ------------------------------------------------------------------------------------------

#[test]
fn w_1000_is_refused_at_once_with_one_line() {
    let t = Tiny::new();
    let (f, took) = run(Y, &strs(&t.y_args(&["-w", "1000"])));
    let max = MAX_WORKERS.to_string();
    f.assert_one_line_error(&["-w 1000", "maximum", &max]);
    assert!(took < PROMPT, "refused within {PROMPT:?}, took {took:?}");
    t.assert_untouched();
}

#[test]
fn w_just_above_the_maximum_and_huge_values_are_refused() {
    let t = Tiny::new();
    let above = (MAX_WORKERS + 1).to_string();
    let (f, _) = run(Y, &strs(&t.y_args(&["-w", &above])));
    f.assert_one_line_error(&[&format!("-w {above}")]);
    // usize::MAX: no overflow, no allocation attempt.
    let huge = usize::MAX.to_string();
    let (f, took) = run(Y, &strs(&t.y_args(&["-w", &huge])));
    f.assert_one_line_error(&[&format!("-w {huge}")]);
    assert!(took < PROMPT, "took {took:?}");
    t.assert_untouched();
}

#[test]
fn n_above_the_maximum_is_refused_at_once() {
    // Without a bound, -n 1000 -p 0 waited a minute for 999 peers, and a huge -n allocated
    // one default address per process before anything else.
    let t = Tiny::new();
    let above = (MAX_PROCESSES + 1).to_string();
    for n in [above.as_str(), "1000", "18446744073709551615"] {
        let (f, took) = run(Y, &strs(&t.y_args(&["-n", n, "-p", "0"])));
        f.assert_one_line_error(&[&format!("-n {n}"), "maximum"]);
        assert!(took < PROMPT, "-n {n}: took {took:?}");
    }
    t.assert_untouched();
}

#[test]
fn w_times_n_above_the_maximum_is_refused() {
    let t = Tiny::new();
    // Each within its own bound, the product above the cluster's.
    let w = MAX_WORKERS;
    let n = MAX_TOTAL_WORKERS / MAX_WORKERS + 1;
    assert!(
        n <= MAX_PROCESSES,
        "the test needs -n {n} within its own bound"
    );
    let (w, n) = (w.to_string(), n.to_string());
    let (f, took) = run(Y, &strs(&t.y_args(&["-w", &w, "-n", &n, "-p", "0"])));
    f.assert_one_line_error(&[&MAX_TOTAL_WORKERS.to_string(), "maximum"]);
    assert!(took < PROMPT, "took {took:?}");
    t.assert_untouched();
}

#[test]
fn the_maximum_number_of_workers_runs() {
    let t = Tiny::new();
    let max = MAX_WORKERS.to_string();
    let (f, _) = run(Y, &strs(&t.y_args(&["-w", &max, "--replay"])));
    assert!(f.status.success(), "{}", f.describe());
    assert!(
        f.stdout.contains("1 epochs committed") && f.stdout.contains("1 rows accepted"),
        "{}",
        f.describe()
    );
}

// ------------------------------------------------------------------------------------------
// The output must be writable: probed at start
// ------------------------------------------------------------------------------------------

/// An existing directory in which creating a file fails even for root (tests run as root
/// here, and root ignores permission bits, so `chmod 0555` proves nothing): a directory made
/// immutable with `chattr +i` (ext4, xfs, btrfs; needs CAP_LINUX_IMMUTABLE), else sysfs's
/// `/sys/kernel`, where no file can be created by anyone. Either is verified before use.
struct ReadOnlyDir {
    path: PathBuf,
    immutable: bool,
}

impl ReadOnlyDir {
    fn new(parent: &Path) -> ReadOnlyDir {
        let dir = parent.join("read-only-output");
        fs::create_dir(&dir).unwrap();
        let chattr = |flag: &str| {
            Command::new("chattr")
                .arg(flag)
                .arg(&dir)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if chattr("+i") {
            let guard = ReadOnlyDir {
                path: dir.clone(),
                immutable: true,
            };
            if fs::write(dir.join("probe"), "x").is_err() {
                return guard;
            }
            drop(guard);
        }
        let sys = PathBuf::from("/sys/kernel");
        assert!(
            sys.is_dir() && fs::write(sys.join("txflow-probe"), "x").is_err(),
            "no read-only directory available: chattr +i failed and /sys/kernel is not sysfs"
        );
        ReadOnlyDir {
            path: sys,
            immutable: false,
        }
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.immutable {
            let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
        }
    }
}

#[test]
fn read_only_output_fails_at_start_naming_it() {
    let d = Data::new(None);
    let read_only = ReadOnlyDir::new(&d.root);
    let state = d.state("state.db");
    let (f, took) = run(Y, &strs(&d.y_args(&read_only.path, &state, &["--replay"])));
    let line = f.assert_one_line_error(&[s(&read_only.path), "not writable", "os error"]);
    assert!(
        took < PROMPT,
        "failed within {PROMPT:?}, took {took:?}: {line}"
    );
    // Before any epoch: the state store was not even opened.
    assert!(
        !d.root.join("state.db").exists(),
        "no state store created: {line}"
    );
}

#[test]
fn output_below_a_regular_file_fails_at_start_naming_it() {
    let d = Data::new(None);
    let file = d.root.join("plain-file");
    fs::write(&file, "x").unwrap();
    let output = file.join("output");
    let state = d.state("state.db");
    let (f, took) = run(Y, &strs(&d.y_args(&output, &state, &[])));
    f.assert_one_line_error(&[s(&output), "os error"]);
    assert!(took < PROMPT, "took {took:?}");
    assert!(!d.root.join("state.db").exists(), "no state store created");
}

#[test]
fn output_that_is_a_regular_file_fails_naming_it() {
    let t = Tiny::new();
    let output = t.root.join("output-file");
    fs::write(&output, "x").unwrap();
    let mut args = t.y_args(&[]);
    let at = args.iter().position(|a| a == "--output").unwrap();
    args[at + 1] = s(&output).into();
    let (f, _) = run(Y, &strs(&args));
    f.assert_one_line_error(&[s(&output), "Not a directory"]);
    assert!(!t.root.join("state.db").exists(), "no state store created");
}

#[test]
fn output_directory_is_created_when_missing() {
    let t = Tiny::new();
    let (f, _) = run(Y, &strs(&t.y_args(&["--replay"])));
    assert!(f.status.success(), "{}", f.describe());
    assert!(t.root.join("output").is_dir());
    assert_eq!(temporaries(&t.root.join("output")), Vec::<String>::new());
}

// ------------------------------------------------------------------------------------------
// Every I/O error names its path
// ------------------------------------------------------------------------------------------

#[test]
fn x_with_a_directory_as_source_names_it() {
    let t = Tiny::new();
    let source = t.root.join("a-directory.csv");
    fs::create_dir(&source).unwrap();
    let landing = t.root.join("x-landing");
    let (f, _) = run(
        X,
        &[
            "--source",
            s(&source),
            "--landing",
            s(&landing),
            "--interval-ms",
            "0",
        ],
    );
    f.assert_one_line_error(&[s(&source), "directory"]);
    assert!(
        !landing.exists(),
        "a wrong source leaves the landing untouched"
    );
}

#[test]
fn x_with_a_regular_file_as_landing_names_it() {
    let t = Tiny::new();
    let source = t.root.join("transactions.csv");
    fs::write(&source, "step,amount\n1,2\n").unwrap();
    let landing = t.root.join("landing-file");
    fs::write(&landing, "x").unwrap();
    let (f, _) = run(
        X,
        &[
            "--source",
            s(&source),
            "--landing",
            s(&landing),
            "--interval-ms",
            "0",
        ],
    );
    f.assert_one_line_error(&[s(&landing), "Not a directory"]);
}

#[test]
fn y_with_a_directory_as_importance_file_names_it() {
    let t = Tiny::new();
    let importance = t.root.join("importance-dir");
    fs::create_dir(&importance).unwrap();
    let mut args = t.y_args(&[]);
    let at = args.iter().position(|a| a == "--importance").unwrap();
    args[at + 1] = s(&importance).into();
    let (f, _) = run(Y, &strs(&args));
    f.assert_one_line_error(&[s(&importance), "a directory, not a regular file"]);
}

#[test]
fn y_with_a_directory_as_hostfile_names_it() {
    let t = Tiny::new();
    let hostfile = t.root.join("hostfile-dir");
    fs::create_dir(&hostfile).unwrap();
    let (f, took) = run(
        Y,
        &strs(&t.y_args(&["-n", "2", "-p", "0", "-h", s(&hostfile)])),
    );
    f.assert_one_line_error(&[s(&hostfile), "a directory, not a regular file"]);
    assert!(took < PROMPT, "took {took:?}");
    t.assert_untouched();
}

// ------------------------------------------------------------------------------------------
// Files named by options are regular files of a bounded size
// ------------------------------------------------------------------------------------------

/// Runs Y with `args`, bounded by [`PROMPT`] and by a 4 GiB address space (so a build that
/// reads `/dev/zero` fails instead of exhausting the machine); also returns how long it took.
fn run_bounded(args: &[String]) -> (Finished, Duration) {
    let mut command = Command::new("sh");
    command
        .args(["-c", "ulimit -v 4194304 && exec \"$0\" \"$@\"", Y])
        .args(args)
        .env("RUST_LOG", "off")
        .env("NO_COLOR", "1");
    let started = Instant::now();
    let finished = ChildGuard::spawn(command).wait(PROMPT);
    (finished, started.elapsed())
}

/// `args` with the value of `option` replaced by `value`.
fn with_value(mut args: Vec<String>, option: &str, value: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == option).unwrap();
    args[at + 1] = value.to_string();
    args
}

#[test]
fn y_refuses_a_fifo_or_a_device_as_importance_variants_or_hostfile_at_once() {
    let t = Tiny::new();
    let fifo = t.root.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (file, kind) in [
        (s(&fifo), "a FIFO (named pipe), not a regular file"),
        ("/dev/zero", "a character device, not a regular file"),
    ] {
        let cases = [
            (
                "--importance",
                with_value(t.y_args(&[]), "--importance", file),
            ),
            ("--variants", t.y_args(&["--replay", "--variants", file])),
            ("--hostfile", t.y_args(&["-n", "2", "-p", "0", "-h", file])),
        ];
        for (option, args) in cases {
            let (f, took) = run_bounded(&args);
            let line = f.assert_one_line_error(&[file, kind]);
            assert!(took < PROMPT, "{option} {file}: took {took:?}: {line}");
        }
    }
}

#[test]
fn y_refuses_an_importance_file_over_1_gib_without_reading_it() {
    let t = Tiny::new();
    // Sparse: 1 GiB and one byte of file, no disk space.
    let big = t.root.join("big.csv");
    fs::File::create(&big)
        .unwrap()
        .set_len((1 << 30) + 1)
        .unwrap();
    let (f, took) = run_bounded(&with_value(t.y_args(&[]), "--importance", s(&big)));
    f.assert_one_line_error(&[s(&big), "larger than 1 GiB"]);
    assert!(took < PROMPT, "took {took:?}");
}

// ------------------------------------------------------------------------------------------
// No temporary file left behind
// ------------------------------------------------------------------------------------------

/// A process writing its stdout and stderr to files (readable while it runs).
struct Proc {
    child: Child,
    stderr: PathBuf,
}

impl Proc {
    fn spawn(bin: &str, args: &[&str], dir: &Path, name: &str) -> Proc {
        let stderr = dir.join(format!("{name}.stderr"));
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join(format!("{name}.stdout"))).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Proc { child, stderr }
    }

    fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL, then reap (a zombie would still count as a live pid).
    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The count N in the start-up clean-up's log line "removed N temporary file(s) left in
/// ..." (0 when not logged).
fn logged_removed(stderr: &str) -> usize {
    stderr
        .lines()
        .filter_map(|l| l.split(" removed ").nth(1))
        .filter_map(|rest| rest.split_once(" temporary file(s) left in "))
        .filter_map(|(n, _)| n.parse::<usize>().ok())
        .sum()
}

#[test]
fn y_restart_after_sigkill_removes_the_dead_runs_temporaries() {
    // Y follows a landing of 10 chunks (no _COMPLETE yet) and is killed with SIGKILL after
    // committing them. A kill in the middle of a file write leaves `.tmp-<name>-<pid>-...`
    // beside the file; such a window is too short to hit reliably, so the files that kill
    // would leave are planted, named with the killed process's real pid (now gone), in the
    // output and its rejects/ subdirectory. A live process's temporary file is kept.
    let d = Data::new(Some(10));
    let output = d.root.join("output");
    let state = d.state("state.db");
    let args = d.y_args(&output, &state, &[]);
    let mut first = Proc::spawn(Y, &strs(&args), &d.root, "y1");
    wait_until("10 epochs committed", TIMEOUT, || {
        first.stderr_text().matches("epoch committed").count() >= 10
    });
    let killed = first.child.id();
    first.kill9();

    let live = LiveProcess::start();
    let planted_dead = [
        temp_name("detections-000001.csv", killed),
        format!("rejects/{}", temp_name("chunk-000009.csv", killed)),
    ];
    let planted_live = temp_name("detections-000002.csv", live.pid());
    fs::create_dir_all(output.join("rejects")).unwrap();
    for name in planted_dead.iter().chain([&planted_live]) {
        fs::write(output.join(name), "half a file").unwrap();
    }

    d.land(None); // the rest of the chunks and _COMPLETE
    let (f, _) = run_logged(Y, &strs(&args), "info");
    assert!(f.status.success(), "{}", f.describe());
    assert!(f.stdout.contains("stream ended"), "{}", f.describe());
    assert_eq!(
        temporaries(&output),
        vec![planted_live.clone()],
        "only the live process's temporary file is left"
    );
    assert_eq!(logged_removed(&f.stderr), 2, "{}", f.describe());
    assert_eq!(temporaries(&d.landing), Vec::<String>::new());
}

#[test]
fn x_restart_after_sigkill_mid_write_removes_its_temporary() {
    // A real leftover: X is killed with SIGKILL while it writes (and fsyncs) a 15 MB chunk to
    // its temporary file. The restart removes it, lands the chunk and leaves no temporary.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let source = root.join("transactions.csv");
    let mut text = String::from(
        "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\n",
    );
    for i in 0..150_000 {
        text.push_str(&format!(
            "{},'C{}','4','F','28007','M{}','28007','es_food',{}.55,0\n",
            i / 1000,
            i % 97,
            i % 13,
            i % 50
        ));
    }
    fs::write(&source, &text).unwrap();
    let x_args = |landing: &Path| {
        [
            "--source",
            s(&source),
            "--landing",
            s(landing),
            "--chunk-rows",
            "200000",
            "--interval-ms",
            "0",
        ]
        .map(String::from)
    };
    let mut caught = None;
    for attempt in 0..5 {
        let landing = root.join(format!("landing-{attempt}"));
        let args = x_args(&landing);
        let mut x = Proc::spawn(X, &strs(&args), root, &format!("x-{attempt}"));
        let pid = x.child.id();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if !temporaries(&landing).is_empty() {
                x.kill9();
                break;
            }
            if x.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if !temporaries(&landing).is_empty() {
            caught = Some((landing, pid));
            break;
        }
    }
    let (landing, killed) = caught.expect("X was killed while its temporary file existed");
    let args = x_args(&landing);
    let left = temporaries(&landing);
    assert_eq!(left.len(), 1, "{left:?}");
    // Normally the chunk's (`.tmp-chunk-000000.csv-<pid>-...`), `_COMPLETE`'s if the chunk
    // was faster than the polling.
    assert!(left[0].contains(&format!("-{killed}-")), "{left:?}");

    let (f, _) = run_logged(X, &strs(&args), "info");
    assert!(f.status.success(), "{}", f.describe());
    assert_eq!(
        temporaries(&landing),
        Vec::<String>::new(),
        "no temporary left"
    );
    assert_eq!(logged_removed(&f.stderr), 1, "{}", f.describe());
    assert_eq!(
        fs::read(landing.join("chunk-000000.csv")).unwrap(),
        text.as_bytes(),
        "the chunk landed whole"
    );
    assert_eq!(fs::read_to_string(landing.join("_COMPLETE")).unwrap(), "1");
}

#[test]
fn y_keeps_a_live_writers_temporary_and_removes_a_dead_ones() {
    let d = Data::new(None);
    let output = d.root.join("output");
    fs::create_dir_all(output.join("rejects")).unwrap();
    let live = LiveProcess::start();
    let dead = dead_pid();
    let live_file = format!("rejects/{}", temp_name("chunk-000001.csv", live.pid()));
    let dead_file = temp_name("detections-000003.csv", dead);
    fs::write(output.join(&live_file), "being written").unwrap();
    fs::write(output.join(&dead_file), "left by a crash").unwrap();
    let state = d.state("state.db");
    let (f, _) = run_logged(Y, &strs(&d.y_args(&output, &state, &["--replay"])), "info");
    assert!(f.status.success(), "{}", f.describe());
    assert_eq!(temporaries(&output), vec![live_file]);
    assert_eq!(logged_removed(&f.stderr), 1, "{}", f.describe());
}

#[test]
fn x_keeps_a_live_writers_temporary_and_removes_a_dead_ones() {
    let d = Data::new(Some(3));
    let live = LiveProcess::start();
    let dead = dead_pid();
    let live_file = temp_name("chunk-000007.csv", live.pid());
    let dead_file = temp_name("chunk-000003.csv", dead);
    fs::write(d.landing.join(&live_file), "being written").unwrap();
    fs::write(d.landing.join(&dead_file), "left by a crash").unwrap();
    let args = [
        "--source",
        s(&d.source),
        "--landing",
        s(&d.landing),
        "--chunk-rows",
        "100",
        "--interval-ms",
        "0",
    ];
    let (f, _) = run_logged(X, &args, "info");
    assert!(f.status.success(), "{}", f.describe());
    assert!(f.stdout.contains("30 chunks"), "{}", f.describe());
    assert_eq!(temporaries(&d.landing), vec![live_file]);
    assert_eq!(logged_removed(&f.stderr), 1, "{}", f.describe());
}

// ------------------------------------------------------------------------------------------
// A failed run stays visible: the endpoint lingers, the store records it
// ------------------------------------------------------------------------------------------

const REPORT: &str = env!("CARGO_BIN_EXE_txflow-report");

/// `GET path` on the loopback port: the status code and the body (`None`: no answer).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `/api/status` once it answers and `accept` holds of it (bounded by [`TIMEOUT`]).
fn status_when(port: u16, accept: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let found = common::wait::poll(TIMEOUT, || {
        let (code, body) = http_get(port, "/api/status")?;
        let status: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && accept(&status)).then_some(status)
    });
    found.expect("/api/status never showed what was awaited")
}

/// A landing of one chunk and no `_COMPLETE`: a live run on it waits for more until stopped.
fn open_landing() -> Tiny {
    let t = Tiny::new();
    fs::remove_file(t.landing.join("_COMPLETE")).unwrap();
    t
}

/// Runs Y on `t` with `--http` until its first epoch is committed, then stops it (SIGTERM).
fn commit_one_epoch_and_stop(t: &Tiny, name: &str) {
    let port = common::paths::free_port();
    let args = t.y_args(&["--http", &port.to_string()]);
    let mut y = common::process::YProc::spawn(name, &args, &t.root);
    let status = status_when(port, |s| s["progress"]["epochs_committed"] == 1);
    assert!(status["previous_error"].is_null(), "{status}");
    y.signal(libc::SIGTERM);
    y.wait_ok(TIMEOUT);
}

#[test]
fn a_failed_run_keeps_its_endpoint_for_the_linger_then_exits_with_its_code() {
    let t = open_landing();
    commit_one_epoch_and_stop(&t, "first");
    // Another writer holds the store's lock: the run fails at start (configuration, 78).
    let held = fs::File::open(t.root.join("state.db")).unwrap();
    held.try_lock().unwrap();
    let port = common::paths::free_port();
    let linger = Duration::from_secs(4);
    let args = t.y_args(&["--http", &port.to_string(), "--linger-on-failure", "4"]);
    let started = Instant::now();
    let mut y = common::process::YProc::spawn("locked", &args, &t.root);
    let status = status_when(port, |s| s["state"] == "failed");
    let error = &status["error"];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("another mechanism-y process is already writing to this state store"),
        "{error}"
    );
    assert_eq!(error["domain"], "configuration");
    assert_eq!(error["exit_code"], 78);
    assert!(
        error["what_to_do"]
            .as_str()
            .unwrap()
            .starts_with("stop the other mechanism-y process"),
        "{error}"
    );
    let (code, body) = http_get(port, "/readyz").expect("/readyz answers while lingering");
    assert_eq!(code, 503, "{body}");
    assert_eq!(y.try_status(), None, "still up during the linger");
    let exit = y.wait(TIMEOUT);
    let took = started.elapsed();
    assert_eq!(exit.code(), Some(78), "{}", y.stderr_tail(5));
    assert!(
        took >= linger && took < linger + PROMPT,
        "exited after {took:?}"
    );
    let stderr = y.stderr_text();
    assert!(stderr.contains("stays up for 4 s"), "{stderr}");
    // The store was the problem: the failure is not recorded, and it says so.
    assert!(stderr.contains("could not be recorded"), "{stderr}");
    assert!(
        http_get(port, "/api/status").is_none(),
        "the endpoint is gone"
    );

    // --linger-on-failure 0: the same failure exits at once.
    let args = t.y_args(&["--http", &port.to_string(), "--linger-on-failure", "0"]);
    let (f, took) = run(Y, &strs(&args));
    assert_eq!(f.status.code(), Some(78), "{}", f.describe());
    assert!(took < PROMPT, "took {took:?}");
    drop(held);
}

#[test]
fn a_stop_signal_ends_the_linger() {
    let t = open_landing();
    commit_one_epoch_and_stop(&t, "first");
    let held = fs::File::open(t.root.join("state.db")).unwrap();
    held.try_lock().unwrap();
    let port = common::paths::free_port();
    let args = t.y_args(&["--http", &port.to_string(), "--linger-on-failure", "600"]);
    let mut y = common::process::YProc::spawn("locked", &args, &t.root);
    status_when(port, |s| s["state"] == "failed");
    let signalled = Instant::now();
    y.signal(libc::SIGTERM);
    let exit = y.wait(TIMEOUT);
    assert!(signalled.elapsed() < PROMPT, "{:?}", signalled.elapsed());
    assert_eq!(exit.code(), Some(78), "the exit status stays the error's");
    drop(held);
}

#[test]
fn the_next_run_and_txflow_report_show_the_previous_error() {
    let t = open_landing();
    commit_one_epoch_and_stop(&t, "first");
    // Other thresholds on the same store: refused as another run, and recorded.
    let before_ms = txflow::time::now_ms();
    // Without --http there is nothing to linger for.
    let args = t.y_args(&["--child-min-txns", "7"]);
    let (f, took) = run(Y, &strs(&args));
    assert_eq!(f.status.code(), Some(78), "{}", f.describe());
    assert!(took < PROMPT, "took {took:?}");
    let after_ms = txflow::time::now_ms();

    let port = common::paths::free_port();
    let args = t.y_args(&["--http", &port.to_string()]);
    let mut y = common::process::YProc::spawn("next", &args, &t.root);
    let status = status_when(port, |s| !s["previous_error"].is_null());
    let previous = &status["previous_error"];
    assert!(
        previous["message"]
            .as_str()
            .unwrap()
            .contains("the state store holds epochs of a different run"),
        "{previous}"
    );
    assert_eq!(previous["domain"], "configuration");
    assert_eq!(previous["exit_code"], 78);
    let at_ms = previous["at_ms"].as_i64().unwrap();
    assert!((before_ms..=after_ms).contains(&at_ms), "{previous}");
    assert!(
        previous["at"].as_str().unwrap().ends_with("+05:30"),
        "{previous}"
    );
    assert!(
        status.get("error").is_none(),
        "this run has not failed: {status}"
    );
    y.signal(libc::SIGTERM);
    y.wait_ok(TIMEOUT);

    // A later successful start leaves it: txflow-report still shows it.
    let (html, json) = (t.root.join("report.html"), t.root.join("report.json"));
    let state = format!("sqlite://{}", t.root.join("state.db").display());
    let (f, _) = run(
        REPORT,
        &["--state", &state, "--html", s(&html), "--json", s(&json)],
    );
    assert!(f.status.success(), "{}", f.describe());
    assert!(
        f.stdout.contains("the last run failure")
            && f.stdout.contains("configuration, exit 78")
            && f.stdout.contains("holds epochs of a different run"),
        "{}",
        f.stdout
    );
    let report: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["previous_error"], *previous);
}
