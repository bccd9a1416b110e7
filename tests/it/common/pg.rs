//! A real PostgreSQL for the tests.
//!
//! [`fresh_database_url`] gives each test its own, new database:
//! - on the server named by `TXFLOW_TEST_PG_URL` when set (a server the test script started
//!   once, as a URL: e.g. `postgres://postgres@%2Ftmp%2Fpgsock/postgres` or
//!   `postgres://postgres@127.0.0.1:5432/postgres`; the user must be allowed to `CREATE DATABASE`;
//!   the fixture connects to it without TLS and never drops the databases it creates);
//! - else on one throwaway cluster per test binary, started lazily: `initdb` into a temp
//!   directory and `postgres` on a free 127.0.0.1 port (socket in the same directory), with
//!   durability off (`fsync`, `synchronous_commit`, `full_page_writes`) since it is thrown away.
//!
//! A test that needs to stop and start its server (resilience tests) or to configure it (TLS)
//! makes its own [`PgServer`].
//!
//! Root: `initdb` and `postgres` refuse to run as root, and tests run as root in CI, so as
//! root they run as the `postgres` system user (the temp directory is chowned to it).
//!
//! Lifetime: the server must not outlive the tests. `postgres` is spawned from one long-lived
//! "keeper" thread with a parent-death signal (`PR_SET_PDEATHSIG` fires when the *thread*
//! that forked dies, so not from a short-lived test thread), which kills it if the test
//! process dies in any way; an `atexit` handler stops it (immediate shutdown) and removes the
//! temp directory on a normal exit; a [`PgServer`] dropped earlier does both itself.

// Process control (parent-death signal, signals to the server) needs libc calls.
#![allow(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use super::paths::free_port;

/// The environment variable naming an already running server.
pub const URL_ENV: &str = "TXFLOW_TEST_PG_URL";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const MISSING: &str = "PostgreSQL server binaries (initdb, postgres) not found: install the \
     postgresql package (apt-get install -y postgresql), set TXFLOW_TEST_PG_BINDIR to their \
     directory, or set TXFLOW_TEST_PG_URL to a running server";

/// A new, empty database for one test, as a `postgres://` URL.
pub fn fresh_database_url(name_hint: &str) -> String {
    enum Shared {
        External(String),
        Owned(PgServer),
    }
    static SHARED: OnceLock<Shared> = OnceLock::new();
    let shared = SHARED.get_or_init(|| match std::env::var(URL_ENV) {
        Ok(url) if !url.trim().is_empty() => {
            assert!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "{URL_ENV} must be a postgres:// URL (the state store only takes URLs), e.g. \
                 postgres://postgres@%2Ftmp%2Fpgsock/postgres or postgres://postgres@127.0.0.1:5432/postgres"
            );
            Shared::External(url.trim().to_string())
        }
        _ => Shared::Owned(PgServer::new()),
    });
    match shared {
        Shared::External(url) => {
            let name = unique_db_name(name_hint);
            create_database(url, &name);
            with_dbname(url, &name)
        }
        Shared::Owned(server) => server.fresh_database_url(name_hint),
    }
}

/// Whether the tests use an external server (`TXFLOW_TEST_PG_URL`).
pub fn external() -> bool {
    std::env::var(URL_ENV).is_ok_and(|u| !u.trim().is_empty())
}

/// A throwaway PostgreSQL cluster owned by the test process.
pub struct PgServer {
    bindir: PathBuf,
    /// The temp directory: `data/` (the cluster), the socket and `server.log`.
    dir: PathBuf,
    /// 0 until the first start.
    port: AtomicU16,
    /// Extra `-c key=value` settings.
    settings: Vec<(String, String)>,
    /// (uid, gid) to run as (the `postgres` user when we are root).
    owner: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    /// `initdb` and start.
    pub fn new() -> PgServer {
        let server = PgServer::init();
        server.start();
        server
    }

    /// `initdb` only: [`PgServer::set`] settings, then [`PgServer::start`].
    pub fn init() -> PgServer {
        let bindir = find_bindir();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "txflow-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create PostgreSQL temp dir");
        register_dir(&dir);
        let owner = server_user();
        let server = PgServer {
            bindir,
            dir,
            port: AtomicU16::new(0),
            settings: Vec::new(),
            owner,
            child: Mutex::new(None),
        };
        server.give_to_server(&server.dir);
        let started = Instant::now();
        let output = server
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(server.data_dir())
            .output()
            .unwrap_or_else(|e| panic!("running initdb: {e}; {MISSING}"));
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("[pg fixture] initdb in {:?}", started.elapsed());
        server
    }

    /// Adds a `-c key=value` server setting (before [`PgServer::start`]).
    pub fn set(&mut self, key: &str, value: &str) {
        self.settings.push((key.to_string(), value.to_string()));
    }

    /// The temp directory (readable by the server).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// Makes a file or directory of ours usable by the server process (chown when root).
    pub fn give_to_server(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
        if path.is_dir() {
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        }
    }

    /// The URL of database `db` (TCP, user `postgres`, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port())
    }

    /// A new, empty database on this server.
    pub fn fresh_database_url(&self, name_hint: &str) -> String {
        let name = unique_db_name(name_hint);
        create_database(&self.url("postgres"), &name);
        self.url(&name)
    }

    /// Starts the server (first start: on a free port; later: on the same one) and waits
    /// until it accepts connections.
    pub fn start(&self) {
        let first = self.port() == 0;
        for attempt in 0.. {
            let port = if first { free_port() } else { self.port() };
            match self.try_start(port) {
                Ok(()) => {
                    self.port.store(port, Ordering::SeqCst);
                    return;
                }
                Err(log) if first && attempt < 5 && log.contains("could not") => {
                    eprintln!("[pg fixture] port {port} unusable, retrying: {log}");
                }
                Err(log) => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
    }

    fn try_start(&self, port: u16) -> Result<(), String> {
        let log_path = self.dir.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open server.log");
        self.give_to_server(&log_path);
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-p", &port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .args(["-c", "shared_buffers=16MB"]);
        for (k, v) in &self.settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    libc::_exit(1); // the test process is already gone
                }
                Ok(())
            });
        }
        let log_offset = std::fs::metadata(&log_path).map_or(0, |m| m.len());
        let mut child = on_keeper_thread(move || cmd.spawn())
            .unwrap_or_else(|e| panic!("spawning postgres: {e}; {MISSING}"));
        register_pid(child.id());
        let started = Instant::now();
        let url =
            format!("host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=5");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                unregister_pid(child.id());
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let log = log.get(log_offset as usize..).unwrap_or(&log).to_string();
                return Err(format!("postgres exited ({status}) on port {port}:\n{log}"));
            }
            if postgres::Client::connect(&url, postgres::NoTls).is_ok() {
                eprintln!(
                    "[pg fixture] postgres ready on port {port} in {:?}",
                    started.elapsed()
                );
                *self.child.lock().unwrap() = Some(child);
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                unregister_pid(child.id());
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("PostgreSQL not ready after {READY_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (fast shutdown: sessions are terminated) and waits for it to exit.
    pub fn stop(&self) {
        self.stop_with(libc::SIGINT);
    }

    fn stop_with(&self, signal: libc::c_int) {
        let Some(mut child) = self.child.lock().unwrap().take() else {
            return;
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        unregister_pid(child.id());
    }

    /// Freezes the server as a stopped host would be: SIGSTOP to the postmaster and every
    /// backend. Connections stay open and the kernel still accepts packets, but nothing
    /// answers. [`PgServer::thaw`] (or dropping the server) resumes it.
    pub fn freeze(&self) {
        self.signal_all(libc::SIGSTOP);
    }

    /// Resumes a frozen server (SIGCONT to the postmaster and every backend).
    pub fn thaw(&self) {
        self.signal_all(libc::SIGCONT);
    }

    /// Sends `signal` to the postmaster, then to each of its children (the backends).
    fn signal_all(&self, signal: libc::c_int) {
        let Some(postmaster) = self.child.lock().unwrap().as_ref().map(|c| c.id()) else {
            return;
        };
        // SAFETY: signalling our own child and its children.
        unsafe { libc::kill(postmaster as libc::pid_t, signal) };
        for pid in children_of(postmaster) {
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(program));
        cmd.current_dir(&self.dir).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }
}

impl Default for PgServer {
    fn default() -> Self {
        PgServer::new()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // A frozen server handles no signal but SIGCONT (and SIGKILL).
        self.thaw();
        self.stop_with(libc::SIGQUIT);
        let _ = std::fs::remove_dir_all(&self.dir);
        DIRS.lock().unwrap().retain(|d| d != &self.dir);
    }
}

/// Runs `f` on the process-long keeper thread (so children spawned there keep their
/// parent-death signal armed until the process exits).
fn on_keeper_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    type Job = Box<dyn FnOnce() + Send>;
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pg-fixture-keeper".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawn keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap()
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .expect("keeper thread alive");
    rx.recv().expect("keeper thread answered")
}

static PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn register_pid(pid: u32) {
    install_atexit();
    PIDS.lock().unwrap().push(pid);
}

fn unregister_pid(pid: u32) {
    PIDS.lock().unwrap().retain(|p| *p != pid);
}

fn register_dir(dir: &Path) {
    install_atexit();
    DIRS.lock().unwrap().push(dir.to_path_buf());
}

fn install_atexit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        extern "C" fn cleanup() {
            let pids = PIDS.lock().map(|p| p.clone()).unwrap_or_default();
            for &pid in &pids {
                // SAFETY: signalling and reaping our own children.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGQUIT) };
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            for &pid in &pids {
                loop {
                    let mut status = 0;
                    let r =
                        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
                    if r != 0 {
                        break; // exited (or not our child any more)
                    }
                    if Instant::now() > deadline {
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let dirs = DIRS.lock().map(|d| d.clone()).unwrap_or_default();
            for dir in dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(cleanup) };
    });
}

/// The processes whose parent is `parent` (from `/proc/PID/stat`).
fn children_of(parent: u32) -> Vec<u32> {
    let parent = parent.to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let after_comm = &stat[stat.rfind(')')? + 1..];
            let ppid = after_comm.split_whitespace().nth(1)?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}

/// The directory holding `initdb` and `postgres`.
fn find_bindir() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(dir) = std::env::var("TXFLOW_TEST_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        assert!(
            has_server(&dir),
            "TXFLOW_TEST_PG_BINDIR={}: {MISSING}",
            dir.display()
        );
        return dir;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return dir;
        }
    }
    // Debian/Ubuntu: /usr/lib/postgresql/<major>/bin; the newest major wins.
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_server(&bin).then_some((major, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, dir)) = candidates.pop() {
        return dir;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                return dir;
            }
        }
    }
    panic!("{MISSING}");
}

/// The user to run the server as: the `postgres` system user when we are root.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: plain libc calls; getpwnam's result is read before any other call.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root, and initdb/postgres refuse root, but there is no `postgres` \
             system user to run them as: {MISSING}"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn unique_db_name(hint: &str) -> String {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let hint: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    format!(
        "t_{hint}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

fn create_database(admin_url: &str, name: &str) {
    let mut client = postgres::Client::connect(admin_url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test server to create a database: {e:?}"));
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
}

/// `url` (a `postgres://` URL) with its database replaced by `db`.
pub fn with_dbname(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    match query {
        Some(q) => format!("{scheme}://{authority}/{db}?{q}"),
        None => format!("{scheme}://{authority}/{db}"),
    }
}
