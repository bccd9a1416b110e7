//! The embedded state store: SQLite via rusqlite (bundled), the default. The protocol is
//! `protocol.rs`'s; this file is the database under it ([`SqliteDb`]: the connection, the
//! single-writer lock) and its transaction adapter ([`SqliteTx`]).
//!
//! - Durability: WAL journal with `synchronous=FULL`, so an epoch whose COMMIT returned survives
//!   `kill -9` and power loss; the exactly-once story depends on it.
//! - Single writer: `begin_run` takes an exclusive, non-blocking `flock` on the
//!   database file itself, so the lock belongs to the file (its inode), not to a name: a
//!   second writer reaching the same database through a symlink, a relative path, a hard
//!   link or a bind mount is refused, naming the holder's pid (read from `/proc/locks`). It
//!   is held until the store is dropped (the kernel releases it when the process dies, even
//!   on `kill -9`). `flock` locks belong to the open file description, so two stores in one
//!   process conflict as well as two processes; on Linux they are independent of the POSIX
//!   (`fcntl`) locks SQLite takes on the same file.
//! - Each epoch commits in one `BEGIN IMMEDIATE` transaction with cached prepared statements.
//! - Readers that must not write ([`SqliteStore::open_read_only`], `txflow-report`): SQLite's
//!   read-only mode, which never creates, writes or switches the file to WAL; a database
//!   without a `-wal` file (no connection has it open) is read as immutable, which creates no
//!   `-wal`/`-shm` files either and works in a read-only directory.

use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Type};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use url::Url;

use super::protocol::{ledger_row_params, Access, Db, Param, Row, Store, Tx, Value};
use super::schema::{self, sqlite as sql, Dialect};
use super::store::{LedgerRow, VariantRows};
use crate::error::StateError;

/// How long a statement waits for another connection's write lock (readers such as an
/// inspection tool can hold the database briefly).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The embedded state store ([`SqliteStore::open`], [`SqliteStore::open_read_only`]).
pub type SqliteStore = Store<SqliteDb>;

/// The SQLite database of a [`SqliteStore`]: its connection and its single-writer lock.
pub struct SqliteDb {
    /// Declared (so dropped) before `lock_file`: see there.
    conn: rusqlite::Connection,
    /// The database path as given, for messages (`:memory:` = an in-memory database).
    path: String,
    /// The database file opened by `begin_run` for the single-writer lock, kept open until
    /// the store is dropped, after its connection, even when the lock was refused: closing
    /// any descriptor of the database file drops every POSIX lock the process holds on it,
    /// SQLite's own included.
    lock_file: Option<File>,
    /// `begin_run` took the exclusive lock on `lock_file`.
    locked: bool,
    /// Opened by [`SqliteStore::open_read_only`]: `begin_run` is refused.
    read_only: bool,
    /// Read as immutable: the file as it was when opened.
    snapshot: Option<Snapshot>,
}

/// A database read as immutable (`immutable=1`: no locks, no `-wal`/`-shm`) and its file's
/// identity, size and modification time when opened. SQLite does not watch such a file, so
/// a read is refused if the file changed meanwhile (a writer started and checkpointed).
struct Snapshot {
    file: PathBuf,
    stamp: (u64, u64, u64, i64, i64),
}

impl Snapshot {
    fn of(file: PathBuf) -> std::io::Result<Snapshot> {
        let stamp = Snapshot::stamp(&file)?;
        Ok(Snapshot { file, stamp })
    }

    fn stamp(file: &Path) -> std::io::Result<(u64, u64, u64, i64, i64)> {
        let m = std::fs::metadata(file)?;
        Ok((m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    }

    fn check(&self, shown: &str) -> Result<(), StateError> {
        match Snapshot::stamp(&self.file) {
            Ok(stamp) if stamp == self.stamp => Ok(()),
            _ => Err(StateError::Inconsistent(format!(
                "{shown} changed while it was read (a writer started): read it again"
            ))),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. The single-writer lock is taken by
    /// `begin_run`, so inspection tools can open a store a running process is writing.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StateError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(sqlite_err(&shown))?;
        Self::with_connection(conn, shown, None, false)
    }

    /// The store of an open connection (`snapshot`: read as an immutable file).
    fn with_connection(
        conn: Connection,
        shown: String,
        snapshot: Option<Snapshot>,
        read_only: bool,
    ) -> Result<SqliteStore, StateError> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite_err(&shown))?;
        Ok(Store::new(SqliteDb {
            conn,
            path: shown,
            lock_file: None,
            locked: false,
            read_only,
            snapshot,
        }))
    }

    /// Opens an existing database for reading only: it is never created, written or switched
    /// to WAL. Without a `-wal` file next to it (SQLite names it after the real path) no
    /// connection has it open and it is whole in its main file: it is read as immutable then,
    /// which creates no `-wal`/`-shm` files (a read-only connection could not remove them)
    /// and works in a read-only directory.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteStore, StateError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io_err = |source| StateError::Io {
            op: "opening",
            path: shown.clone(),
            source,
        };
        let real = std::fs::canonicalize(path).map_err(io_err)?;
        let mut wal = real.clone().into_os_string();
        wal.push("-wal");
        let snapshot = match Path::new(&wal).exists() {
            true => None,
            false => Some(Snapshot::of(real.clone()).map_err(io_err)?),
        };
        let mut uri = Url::from_file_path(&real).map_err(|()| StateError::BadUrl {
            url: shown.clone(),
            reason: "not a file path".into(),
        })?;
        uri.set_query(Some(match snapshot {
            Some(_) => "mode=ro&immutable=1",
            None => "mode=ro",
        }));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(uri.as_str(), flags).map_err(sqlite_err(&shown))?;
        Self::with_connection(conn, shown, snapshot, true)
    }
}

impl SqliteDb {
    /// The writer's settings: WAL, `synchronous=FULL`. Applied once the lock is held: they
    /// read the database, which creates the `-wal` and `-shm` files named after the path
    /// given, and a refused writer through another name (a hard link) must leave none.
    fn configure(&self) -> Result<(), StateError> {
        let err = sqlite_err(&self.path);
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") && self.path != ":memory:" {
            tracing::warn!(path = %self.path, journal_mode = %mode, "SQLite did not switch to WAL mode");
        }
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(&err)?;
        Ok(())
    }

    /// Takes the exclusive `flock` on the database file (non-blocking).
    fn acquire_lock(&mut self) -> Result<(), StateError> {
        if self.locked || self.path == ":memory:" {
            return Ok(());
        }
        let shown = canonical_path(Path::new(&self.path)).display().to_string();
        let io_err = |op: &'static str| {
            let path = shown.clone();
            move |source| StateError::Io { op, path, source }
        };
        let file = match self.lock_file.take() {
            Some(file) => file,
            None => File::open(&self.path).map_err(io_err("opening for its lock"))?,
        };
        let outcome = match file.try_lock() {
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => {
                let detail = match file.metadata().ok().and_then(|m| flock_holder(&m)) {
                    Some(pid) => format!("{shown} is locked by process {pid}"),
                    None => format!("{shown} is locked"),
                };
                Err(StateError::Locked { detail })
            }
            Err(TryLockError::Error(e)) => Err(io_err("locking")(e)),
        };
        self.locked = outcome.is_ok();
        self.lock_file = Some(file);
        outcome
    }
}

impl Db for SqliteDb {
    type Error = StateError;
    type Tx<'a> = SqliteTx<'a>;

    fn name(&self) -> &str {
        &self.path
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn lock(&mut self) -> Result<(), StateError> {
        self.acquire_lock()?;
        self.configure()
    }

    fn locked(&self) -> bool {
        self.locked || self.path == ":memory:"
    }

    /// Runs `work` once; a read of a snapshot is refused if the file changed meanwhile.
    fn run<T>(
        &mut self,
        _what: &'static str,
        access: Access,
        mut work: impl FnMut(&mut SqliteTx<'_>) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let path = self.path.as_str();
        let value = match access {
            Access::Autocommit => work(&mut SqliteTx {
                conn: &self.conn,
                path,
            })?,
            Access::Snapshot | Access::Transaction => {
                let behavior = match access {
                    Access::Transaction => TransactionBehavior::Immediate,
                    _ => TransactionBehavior::Deferred,
                };
                let err = sqlite_err(path);
                let tx = self
                    .conn
                    .transaction_with_behavior(behavior)
                    .map_err(&err)?;
                let value = work(&mut SqliteTx { conn: &tx, path })?;
                tx.commit().map_err(&err)?;
                value
            }
        };
        if let Some(snapshot) = &self.snapshot {
            snapshot.check(path)?;
        }
        Ok(value)
    }
}

/// The statements of a [`SqliteDb`]'s connection, in a transaction or not; each prepared
/// once per connection.
pub struct SqliteTx<'a> {
    conn: &'a Connection,
    path: &'a str,
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Int(v) => v.to_sql(),
            Param::Text(v) => v.to_sql(),
        }
    }
}

/// A row's columns as [`Value`]s (a real or a blob is a type error: no column holds one).
fn row_values(r: &rusqlite::Row<'_>, columns: usize) -> rusqlite::Result<Row> {
    let values = (0..columns).map(|i| {
        Ok(match r.get_ref(i)?.data_type() {
            Type::Null => Value::Null,
            Type::Integer => Value::Int(r.get(i)?),
            _ => Value::Text(r.get(i)?),
        })
    });
    values.collect::<rusqlite::Result<_>>().map(Row)
}

impl Tx for SqliteTx<'_> {
    type Error = StateError;
    const DIALECT: &'static Dialect = &schema::SQLITE_DIALECT;

    fn query(&mut self, query: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StateError> {
        let err = sqlite_err(self.path);
        let mut st = self.conn.prepare_cached(&sql(query)).map_err(&err)?;
        let columns = st.column_count();
        let rows = st
            .query_map(rusqlite::params_from_iter(params), |r| {
                row_values(r, columns)
            })
            .map_err(&err)?;
        rows.collect::<Result<_, _>>().map_err(&err)
    }

    fn execute(&mut self, query: &'static str, params: &[Param<'_>]) -> Result<u64, StateError> {
        let changed = self
            .conn
            .prepare_cached(&sql(query))
            .and_then(|mut st| st.execute(rusqlite::params_from_iter(params)))
            .map_err(sqlite_err(self.path))?;
        Ok(changed as u64)
    }

    fn batch(&mut self, statements: &'static str) -> Result<(), StateError> {
        self.conn
            .execute_batch(statements)
            .map_err(sqlite_err(self.path))
    }

    /// One execution per merchant and per ledger row (SQLite has no array parameters; the
    /// statements are prepared once and run in process).
    fn insert_rows(
        &mut self,
        deltas: &[(&str, i64)],
        detections: &[LedgerRow],
        variants: &[VariantRows],
    ) -> Result<(), StateError> {
        insert_rows(
            self.conn,
            deltas,
            detections,
            variants,
            sqlite_err(self.path),
        )
    }
}

/// The canonical form of a database path: the file's, symlinks resolved, if it exists; else
/// its canonical directory joined with its file name; else the path as given.
fn canonical_path(path: &Path) -> PathBuf {
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return canonical;
    }
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return path.to_path_buf();
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    std::fs::canonicalize(parent).map_or_else(|_| path.to_path_buf(), |dir| dir.join(name))
}

/// The pid holding an exclusive `flock` on the file of `meta`, from `/proc/locks` (Linux:
/// `<n>: FLOCK ADVISORY WRITE <pid> <major>:<minor>:<inode> …`, major and minor in hex).
/// The device is matched when it can be (a file system may show another device number to
/// `stat` than in `/proc/locks`); else the inode alone, if it names a single holder.
fn flock_holder(meta: &std::fs::Metadata) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let holders: Vec<(u32, bool)> = proc_locks(&locks, meta)
        .filter(|l| l.kind == "FLOCK" && l.write)
        .map(|l| (l.pid, l.same_device))
        .collect();
    single_holder(&holders)
}

/// One line of `/proc/locks` on the file of a given [`std::fs::Metadata`].
struct ProcLock<'a> {
    /// `FLOCK`, `POSIX` (SQLite's own locks) or `OFDLCK`.
    kind: &'a str,
    write: bool,
    pid: u32,
    /// The device matches too, not only the inode.
    same_device: bool,
}

/// The locks `/proc/locks` lists on the file of `meta` (waiters, `->` lines, left out).
fn proc_locks<'a>(
    locks: &'a str,
    meta: &std::fs::Metadata,
) -> impl Iterator<Item = ProcLock<'a>> + 'a {
    let dev = meta.dev();
    let device = format!("{:02x}:{:02x}", libc::major(dev), libc::minor(dev));
    let inode = meta.ino().to_string();
    locks.lines().filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, kind, _, access, pid, id, ..] = fields.as_slice() else {
            return None;
        };
        let (dev, ino) = id.rsplit_once(':')?;
        (ino == inode).then_some(())?;
        Some(ProcLock {
            kind,
            write: *access == "WRITE",
            pid: pid.parse().ok()?,
            same_device: dev == device,
        })
    })
}

/// The holder on the same device, else the one pid all holders share.
fn single_holder(holders: &[(u32, bool)]) -> Option<u32> {
    let exact = holders.iter().find(|(_, same)| *same).map(|h| h.0);
    exact.or_else(|| match holders {
        [(pid, _), rest @ ..] if rest.iter().all(|h| h.0 == *pid) => Some(*pid),
        _ => None,
    })
}

/// Whether `error` is SQLite's "database is locked": another connection held the write lock
/// past the busy timeout.
pub(crate) fn is_busy(error: &StateError) -> bool {
    match error {
        StateError::Busy { .. } => true,
        StateError::Sqlite { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ),
        _ => false,
    }
}

/// Another process's SQLite (POSIX) lock on the database at `path` or its `-wal`/`-shm`
/// files, a write lock first: `<pid> <command line>`, secrets in URLs redacted.
fn posix_holder(path: &str) -> Option<String> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let own = std::process::id();
    let mut holders: Vec<(bool, u32, bool)> = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{path}{suffix}")).ok())
        .flat_map(|meta| {
            proc_locks(&locks, &meta)
                .filter(|l| l.kind != "FLOCK" && l.pid != own && l.pid > 0)
                .map(|l| (l.write, l.pid, l.same_device))
                .collect::<Vec<_>>()
        })
        .collect();
    holders.sort_by_key(|(write, _, _)| !write);
    let writers: Vec<(u32, bool)> = holders
        .iter()
        .filter(|h| h.0 == holders[0].0)
        .map(|h| (h.1, h.2))
        .collect();
    let pid = single_holder(&writers)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| shown_word(&String::from_utf8_lossy(w)))
        .collect();
    // Enough to tell the program; a long script or argument list is cut.
    let mut command = words.join(" ").replace(['\n', '\r'], " ");
    if let Some((cut, _)) = command.char_indices().nth(160) {
        command.truncate(cut);
        command.push('…');
    }
    Some(match command.is_empty() {
        true => format!("process {pid}"),
        false => format!("process {pid} ({command})"),
    })
}

/// A word of a command line as it may be shown: a URL's secrets redacted, also in
/// `--option=URL`.
fn shown_word(word: &str) -> String {
    match word.split_once('=') {
        Some((option, value)) if option.starts_with('-') => {
            format!("{option}={}", crate::redact::url(value))
        }
        _ => crate::redact::url(word),
    }
}

/// A SQLite error as the store's; `database is locked` names the process holding it.
fn sqlite_err(path: &str) -> impl Fn(rusqlite::Error) -> StateError {
    let path = path.to_string();
    move |source| match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StateError::Busy {
                holder: posix_holder(&path),
                path: canonical_path(Path::new(&path)).display().to_string(),
            }
        }
        _ => StateError::Sqlite {
            path: path.clone(),
            source,
        },
    }
}

fn insert_rows(
    tx: &Connection,
    deltas: &[(&str, i64)],
    detections: &[LedgerRow],
    variant_detections: &[VariantRows],
    err: impl Fn(rusqlite::Error) -> StateError,
) -> Result<(), StateError> {
    let mut upsert = tx
        .prepare_cached(&sql(schema::SQLITE_UPSERT_COUNT))
        .map_err(&err)?;
    for (merchant, delta) in deltas {
        upsert.execute(params![merchant, delta]).map_err(&err)?;
    }
    let mut insert = tx
        .prepare_cached(&sql(schema::SQLITE_INSERT_DETECTION))
        .map_err(&err)?;
    for d in detections {
        insert.execute(ledger_row_params(d)?).map_err(&err)?;
    }
    let mut insert = tx
        .prepare_cached(&sql(schema::SQLITE_INSERT_VARIANT_DETECTION))
        .map_err(&err)?;
    for VariantRows { variant, rows } in variant_detections {
        for d in rows {
            let mut params = vec![Param::from(variant.as_str())];
            params.extend(ledger_row_params(d)?);
            insert
                .execute(rusqlite::params_from_iter(&params))
                .map_err(&err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::state::identity::{RunIdentity, RunMode};
    use crate::sinks::state::schema::MIGRATIONS;
    use crate::sinks::state::store::{
        EpochCommit, EpochRow, LedgerId, LedgerRow, Recovered, StateReader, StateWriter,
    };

    fn run() -> RunIdentity {
        RunIdentity {
            mode: RunMode::Live,
            landing: "/tmp/landing".into(),
            from: None,
            to: None,
            thresholds: String::new(),
            importance: "/tmp/CustomerImportance.csv".into(),
            importance_digest: "0".repeat(64),
        }
    }

    fn commit(epoch: u64, seqs: std::ops::Range<u64>) -> EpochCommit {
        EpochCommit {
            progress: EpochRow {
                epoch,
                chunk_key: format!("chunk-{epoch:06}.csv"),
                rows_accepted: 10,
                rows_rejected: 1,
                committed_at: "2026-01-01T00:00:00Z".into(),
                chunk_digest: Some(format!("{epoch:064}")),
            },
            counter_deltas: vec![("m1".into(), 3), ("m2".into(), 4)],
            detections: seqs
                .map(|seq| LedgerRow {
                    seq,
                    epoch,
                    pattern: crate::model::Pattern::Upgrade,
                    customer_name: format!("c{seq}"),
                    merchant_id: "m1".into(),
                    y_start_time: "t0".into(),
                    detection_time: "t1".into(),
                    file_seq: None,
                    evidence: None,
                })
                .collect(),
            variant_detections: Vec::new(),
        }
    }

    #[test]
    fn commits_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let path = path.to_str().unwrap();
        {
            let mut s = SqliteStore::open(path).unwrap();
            assert_eq!(s.begin_run(&run()).unwrap(), Recovered::default());
            s.commit_epoch(&commit(0, 0..2)).unwrap();
            s.commit_epoch(&commit(2, 2..3)).unwrap();
            assert!(matches!(
                s.commit_epoch(&commit(1, 3..4)),
                Err(StateError::Inconsistent(_))
            ));
            s.mark_written(LedgerId::Baseline, 0, 0, 2).unwrap();
            assert_eq!(s.first_unwritten_seq(LedgerId::Baseline).unwrap(), Some(2));
            assert_eq!(
                s.merchant_counts().unwrap(),
                vec![("m1".to_string(), 6), ("m2".to_string(), 8)]
            );
        }
        let mut s = SqliteStore::open(path).unwrap();
        let r = s.begin_run(&run()).unwrap();
        assert_eq!(
            r.epochs,
            [
                (0, Some(format!("{:064}", 0))),
                (2, Some(format!("{:064}", 2)))
            ]
            .into()
        );
        assert_eq!(r.last_epoch, Some(2));
        assert_eq!(r.next_seq, 3);
        assert_eq!(r.emitted.len(), 3);
        assert!(!r.finished);
    }

    #[test]
    fn an_unknown_pattern_in_the_ledger_is_an_inconsistency() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut s = SqliteStore::open(&path).unwrap();
            s.begin_run(&run()).unwrap();
            s.commit_epoch(&commit(0, 0..2)).unwrap();
        }
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE detections SET pattern_id = 'PatId7' WHERE seq = 1",
                [],
            )
            .unwrap();
        let refused = SqliteStore::open(&path).unwrap().begin_run(&run());
        assert!(
            matches!(&refused, Err(StateError::Inconsistent(m)) if m.contains("PatId7")),
            "{refused:?}"
        );
    }

    /// A ledger row's action must be its pattern's: the typed row cannot hold another.
    #[test]
    fn a_ledger_row_with_another_patterns_action_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut s = SqliteStore::open(&path).unwrap();
        s.begin_run(&run()).unwrap();
        s.commit_epoch(&commit(0, 0..2)).unwrap();
        assert_eq!(
            s.ledger(LedgerId::Baseline).unwrap(),
            commit(0, 0..2).detections
        );
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE detections SET action_type = 'CHILD' WHERE seq = 1",
                [],
            )
            .unwrap();
        let refused = s.ledger(LedgerId::Baseline);
        assert!(
            matches!(&refused, Err(StateError::Inconsistent(m)) if m.contains("\"CHILD\"")),
            "{refused:?}"
        );
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let path = path.to_str().unwrap();
        SqliteStore::open(path).unwrap().begin_run(&run()).unwrap();
        Connection::open(path)
            .unwrap()
            .execute("INSERT INTO schema_migrations VALUES (99, 'later')", [])
            .unwrap();
        let refused = SqliteStore::open(path).unwrap().begin_run(&run());
        assert!(matches!(refused, Err(StateError::Inconsistent(m)) if m.contains("99")));
    }

    #[test]
    fn the_lock_is_taken_on_the_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let path = real.join("state.db");
        let mut first = SqliteStore::open(path.to_str().unwrap()).unwrap();
        first.begin_run(&run()).unwrap();
        // The same database through a symlinked directory, and through a symlinked file.
        let linked_dir = dir.path().join("linked");
        std::os::unix::fs::symlink(&real, &linked_dir).unwrap();
        let linked_file = dir.path().join("state-link.db");
        std::os::unix::fs::symlink(&path, &linked_file).unwrap();
        let lock = path.canonicalize().unwrap().display().to_string();
        for alias in [linked_dir.join("state.db"), linked_file] {
            let mut second = SqliteStore::open(alias.to_str().unwrap()).unwrap();
            match second.begin_run(&run()) {
                Err(StateError::Locked { detail }) => assert!(detail.contains(&lock), "{detail}"),
                other => panic!("{}: expected Locked, got {other:?}", alias.display()),
            }
        }
        drop(first);
        assert_eq!(
            canonical_path(&dir.path().join("linked/new.db")),
            real.canonicalize().unwrap().join("new.db")
        );
    }

    /// A hard link is another name of the same file: a second writer through it is refused,
    /// naming the holder (here this process: `flock` conflicts across open file descriptions).
    #[test]
    fn the_lock_holds_through_a_hard_link() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut first = SqliteStore::open(&path).unwrap();
        first.begin_run(&run()).unwrap();
        let link = dir.path().join("hard.db");
        std::fs::hard_link(&path, &link).unwrap();
        let mut second = SqliteStore::open(&link).unwrap();
        match second.begin_run(&run()) {
            Err(StateError::Locked { detail }) => assert!(
                detail.contains("hard.db")
                    && detail.contains(&format!("by process {}", std::process::id())),
                "{detail}"
            ),
            other => panic!("expected Locked, got {other:?}"),
        }
        for file in ["hard.db-wal", "hard.db-shm"] {
            assert!(
                !dir.path().join(file).exists(),
                "the refused writer made {file}"
            );
        }
        // Refused, it wrote nothing: the first store commits on.
        first.commit_epoch(&commit(0, 0..1)).unwrap();
        drop((second, first));
        // Once the holder is gone, the link is a writer like any name.
        let mut third = SqliteStore::open(&link).unwrap();
        assert_eq!(third.begin_run(&run()).unwrap().last_epoch, Some(0));
    }

    /// A store at version 1 whose `detections` already has the column migration 3 adds: the
    /// migrations to 2 and 3 fail together, so the store stays at 1 (never between).
    #[test]
    fn pending_migrations_apply_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(schema::CREATE_SCHEMA_MIGRATIONS)
                .unwrap();
            conn.execute_batch(MIGRATIONS[0].1).unwrap();
            conn.execute("INSERT INTO schema_migrations VALUES (1, 'then')", [])
                .unwrap();
            conn.execute("ALTER TABLE detections ADD COLUMN evidence TEXT", [])
                .unwrap();
        }
        let failed = SqliteStore::open(&path).unwrap().begin_run(&run());
        assert!(failed.is_err(), "{failed:?}");
        let newest: i64 = Connection::open(&path)
            .unwrap()
            .query_row(schema::NEWEST_MIGRATION, [], |r| r.get(0))
            .unwrap();
        assert_eq!(newest, 1, "a failed migration left the store half migrated");
    }

    /// Readers name the schema version instead of failing on a missing column or table.
    #[test]
    fn readers_refuse_another_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.db");
        let got = SqliteStore::open(&fresh)
            .unwrap()
            .ledger(LedgerId::Baseline);
        assert!(
            matches!(&got, Err(StateError::Schema { found: None, .. })),
            "{got:?}"
        );
        let older = dir.path().join("older.db");
        {
            let conn = Connection::open(&older).unwrap();
            conn.execute_batch(schema::CREATE_SCHEMA_MIGRATIONS)
                .unwrap();
            conn.execute_batch(MIGRATIONS[0].1).unwrap();
            conn.execute_batch(MIGRATIONS[1].1).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (1, 'a'), (2, 'b')",
                [],
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(&older).unwrap();
        let got = store.ledger(LedgerId::Baseline);
        match &got {
            Err(e @ StateError::Schema { found: Some(2), .. }) => {
                let line = e.to_string();
                assert!(line.contains("version 2") && !line.contains('\n'), "{line}");
            }
            other => panic!("{other:?}"),
        }
        assert!(store.epoch_rows().is_err() && store.run_meta().is_err());
        // Starting a run migrates it; then it reads.
        store.begin_run(&run()).unwrap();
        assert_eq!(store.ledger(LedgerId::Baseline).unwrap(), Vec::new());
    }

    /// The files in `dir`, by name.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A store committed and closed by a writer (its WAL checkpointed and removed).
    fn closed_store(path: &Path, epochs: u64) {
        let mut s = SqliteStore::open(path).unwrap();
        s.begin_run(&run()).unwrap();
        let from = s.epoch_rows().unwrap().len() as u64;
        for epoch in from..from + epochs {
            s.commit_epoch(&commit(epoch, epoch * 10..epoch * 10 + 1))
                .unwrap();
        }
    }

    /// Read-only: a missing file is not created; a foreign SQLite file is refused with its
    /// bytes and time unchanged; a store is read without `-wal`/`-shm` files appearing, and
    /// no run begins on it (nor does it take the writer's lock).
    #[test]
    fn read_only_opens_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        assert!(SqliteStore::open_read_only(&missing).is_err());
        assert!(!missing.exists());

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        let before = (
            std::fs::read(&foreign).unwrap(),
            std::fs::metadata(&foreign).unwrap().modified().unwrap(),
        );
        let refused = SqliteStore::open_read_only(&foreign).unwrap().run_meta();
        assert!(
            matches!(refused, Err(StateError::Schema { found: None, .. })),
            "{refused:?}"
        );
        let after = (
            std::fs::read(&foreign).unwrap(),
            std::fs::metadata(&foreign).unwrap().modified().unwrap(),
        );
        assert!(after == before, "the foreign file changed");
        assert_eq!(names(dir.path()), ["foreign.db"]);

        let path = dir.path().join("state.db");
        closed_store(&path, 2);
        let mut reader = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(reader.epoch_rows().unwrap().len(), 2);
        assert_eq!(reader.ledger(LedgerId::Baseline).unwrap().len(), 2);
        let refused = reader.begin_run(&run());
        assert!(
            matches!(&refused, Err(StateError::Inconsistent(m)) if m.contains("read-only")),
            "{refused:?}"
        );
        assert_eq!(names(dir.path()), ["foreign.db", "state.db"]);
        let mut writer = SqliteStore::open(&path).unwrap();
        writer.begin_run(&run()).unwrap();
    }

    /// A store nobody has open is read as a snapshot: once a writer changed the file, a read
    /// is refused (SQLite does not watch an immutable file), and a new reader sees the change.
    #[test]
    fn a_snapshot_whose_file_changed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        closed_store(&path, 1);
        let mut reader = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(reader.epoch_rows().unwrap().len(), 1);
        closed_store(&path, 1);
        let refused = reader.epoch_rows();
        assert!(
            matches!(&refused, Err(StateError::Inconsistent(m)) if m.contains("changed while")),
            "{refused:?}"
        );
        let mut again = SqliteStore::open_read_only(&path).unwrap();
        assert_eq!(again.epoch_rows().unwrap().len(), 2);
    }

    /// A store a writer has open (its `-wal` exists) is read through the WAL, with locking:
    /// the reader sees each commit.
    #[test]
    fn a_store_being_written_is_read_through_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut writer = SqliteStore::open(&path).unwrap();
        writer.begin_run(&run()).unwrap();
        writer.commit_epoch(&commit(0, 0..1)).unwrap();
        let mut reader = SqliteStore::open_read_only(&path).unwrap();
        assert!(reader.db.snapshot.is_none());
        assert_eq!(reader.epoch_rows().unwrap().len(), 1);
        writer.commit_epoch(&commit(1, 1..2)).unwrap();
        assert_eq!(reader.epoch_rows().unwrap().len(), 2);
    }

    #[test]
    fn writes_need_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut s = SqliteStore::open(path.to_str().unwrap()).unwrap();
        assert!(matches!(
            s.commit_epoch(&commit(0, 0..1)),
            Err(StateError::Inconsistent(_))
        ));
    }
}
