//! Child processes in tests: always bounded in time and killed if a test fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::wait::poll;

/// Kills (and reaps) the child when dropped, unless it has been waited for.
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    /// Starts `command` with stdin closed and stdout/stderr captured.
    pub fn spawn(mut command: Command) -> ChildGuard {
        let what = format!("{command:?}");
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        ChildGuard {
            child: Some(child),
            what,
        }
    }

    /// Waits for the child (reading its pipes on threads); kills it and panics after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let child = self.child.as_mut().expect("not yet waited for");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let Some(status) = poll(timeout, || child.try_wait().unwrap()) else {
            let what = self.what.clone();
            drop(self); // kills it
            panic!("{what} did not finish within {timeout:?}");
        };
        self.child = None;
        Finished {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A finished child's status and output.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Status, stdout and the last 60 lines of stderr, for assertion messages.
    pub fn describe(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "status {:?}\n--- stdout\n{}\n--- stderr (tail)\n{}",
            self.status, self.stdout, tail
        )
    }
}

impl Finished {
    /// Asserts a failure reported as exactly one stderr line starting with `error:` (logging
    /// is off), naming every one of `mentions`. Returns the line.
    pub fn assert_one_line_error(&self, mentions: &[&str]) -> String {
        assert!(
            !self.status.success(),
            "expected a failure: {}",
            self.describe()
        );
        assert!(
            self.status.code().is_some_and(|c| c != 0),
            "expected a non-zero exit status (not a signal): {}",
            self.describe()
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr: {}",
            self.describe()
        );
        assert!(
            lines[0].starts_with("error: "),
            "the line starts with \"error: \": {}",
            self.describe()
        );
        for m in mentions {
            assert!(
                lines[0].contains(m),
                "the reason names {m:?}: {}",
                self.describe()
            );
        }
        lines[0].to_string()
    }
}

/// A child `mechanism-y` with its stdout/stderr in files (`<logs>/<name>.out`, `.err`, no
/// colour codes); killed (SIGKILL) when dropped.
pub struct YProc {
    pub name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    status: Option<ExitStatus>,
}

impl YProc {
    pub fn spawn(name: &str, args: &[String], logs: &Path) -> YProc {
        YProc::spawn_with_env(name, args, logs, &[])
    }

    /// [`YProc::spawn`] with these environment variables set (e.g. `RUST_LOG`).
    pub fn spawn_with_env(name: &str, args: &[String], logs: &Path, env: &[(&str, &str)]) -> YProc {
        let stdout = logs.join(format!("{name}.out"));
        let stderr = logs.join(format!("{name}.err"));
        let child = Command::new(env!("CARGO_BIN_EXE_mechanism-y"))
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        YProc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            status: None,
        }
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Waits (bounded) for the exit status; panics on timeout (the guard then kills it).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let status = poll(timeout, || self.try_status());
        status.unwrap_or_else(|| {
            panic!(
                "{} still running after {timeout:?}; stderr tail:\n{}",
                self.name,
                self.stderr_tail(15)
            )
        })
    }

    /// Waits for a successful exit.
    pub fn wait_ok(&mut self, timeout: Duration) {
        let status = self.wait(timeout);
        assert!(
            status.success(),
            "{} failed ({status}); stderr tail:\n{}",
            self.name,
            self.stderr_tail(15)
        );
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.status = Some(self.child.wait().unwrap());
    }

    /// Sends `signal` (SIGTERM, SIGSTOP, SIGCONT…) to the child.
    #[allow(unsafe_code)]
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({}, {signal})", self.name);
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = self.stderr_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Epochs this process (the writer) has logged as committed so far.
    pub fn epochs_committed(&self) -> usize {
        self.stderr_text().matches("epoch committed").count()
    }
}

impl Drop for YProc {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh `txflow-<name>-<pid>` directory under the system temp dir, removed when the test
/// process exits (shared fixtures live as long as the process, past any one test).
/// txgen's data set of `rows` rows from `seed` (`transactions.csv`, `CustomerImportance.csv`):
/// generated once per test process and shared, read-only, by every test asking for the same
/// one; removed at exit.
pub fn generated_data(rows: u64, seed: u64) -> PathBuf {
    static GENERATED: Mutex<BTreeMap<(u64, u64), PathBuf>> = Mutex::new(BTreeMap::new());
    let mut generated = GENERATED.lock().unwrap_or_else(PoisonError::into_inner);
    let dir = generated.entry((rows, seed)).or_insert_with(|| {
        let dir = dir_removed_at_exit(&format!("data-{rows}-{seed}"));
        txgen::generate(&dir, &txgen::GenOptions::new(rows, seed)).expect("txgen");
        dir
    });
    dir.clone()
}

pub fn dir_removed_at_exit(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("txflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    remove_at_exit(&dir);
    dir
}

/// Removes `dir` when the test process exits.
#[allow(unsafe_code)]
pub fn remove_at_exit(dir: &Path) {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    extern "C" fn cleanup() {
        if let Ok(dirs) = DIRS.lock() {
            for dir in dirs.iter() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    let mut dirs = DIRS.lock().unwrap();
    if dirs.is_empty() {
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(cleanup) };
    }
    dirs.push(dir.to_path_buf());
}
