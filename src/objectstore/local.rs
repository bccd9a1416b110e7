//! A local directory as an object store. Objects are written to a temporary name and renamed,
//! so a reader never sees half an object (the atomic-arrival rule of file-based sources).
//!
//! # Temporary files
//! An object is written, fsynced, to `.tmp-<name>-<pid>-<thread>` beside its final path, then
//! renamed into place (`put`) or hard-linked there and removed (`put_if_absent`). Listings
//! skip `.tmp-` names, in every directory. A writer killed mid-write (SIGKILL, a crash) leaves
//! its temporary file behind, so every writer calls [`LocalStore::remove_stale_temporaries`] when it starts
//! (mechanism-y on its output directory, mechanism-x on its landing directory): each `.tmp-*`
//! file under the root, subdirectories included, whose writing process is gone is removed
//! and the count logged. "Gone" means `kill(pid, 0)` fails with `ESRCH`, the pid being taken
//! from the name. Kept are: the files of live processes (a concurrent writer is not
//! disturbed; a dead writer whose pid has been reused is cleaned at a later start), the files
//! of this very process (earlier threads of this run, not leftovers of a crash), and names
//! that carry no pid. The check is by pid, so it assumes the writers of a directory share
//! this host's process ids: on a network filesystem written from several hosts, a start could
//! remove a temporary file that a writer on another host is still writing; that write then
//! fails with an error naming the file, and rerunning that writer resumes.
//!
//! # Listing
//! A key is a path below the root, `/` separating directories: `rejects/chunk-000001.csv` is
//! the file `chunk-000001.csv` in the directory `rejects`. [`ObjectStore::list`] has the
//! semantics of an S3 listing without delimiter: every regular file under the prefix at any
//! depth, in ascending byte order of the key (not directory by directory: `a-b` sorts before
//! `a/b`), `start_after` exclusive, at most `limit`. It leaves out
//! - temporary files (a name starting with `.tmp-`, in any directory);
//! - symbolic links, to files and to directories alike: a listing never leaves the root
//!   through a link, and a prefix whose directory part passes through a link lists nothing
//!   (`get` and `head` of a key still open the path, links included);
//! - names that are not UTF-8 (no key can name them), and anything but regular files and
//!   directories (sockets, FIFOs, devices).
//!
//! Directories are objects only through the files in them: an empty directory lists nothing.
//! Unlike S3, a key cannot be both an object and a "directory" (`a` and `a/b`).
//!
//! [`LocalStore::check_writable`] creates the root when missing and probes it by creating
//! (and removing) a temporary file, so that an unwritable output fails at start, naming the
//! directory and the OS error, rather than at the first epoch that writes a file.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::error::StoreError;
use crate::objectstore::store::{Object, ObjectMeta, ObjectStore, PutOutcome};

/// Temporary files carry this prefix; listings skip them.
const TEMP_PREFIX: &str = ".tmp-";

/// The name of the write probe's temporary file (before the pid and thread).
const PROBE_NAME: &str = "write-probe";

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        LocalStore { root }
    }

    /// The directory (to tell a missing directory apart from an empty one).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// A start-up check of a directory this process will write to: created when missing,
    /// then probed by creating and removing a small temporary file; an error naming the
    /// directory and the cause when it cannot be written.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        if fs::metadata(&self.root).is_ok_and(|md| !md.is_dir()) {
            // create_dir_all would say only "File exists".
            let e = std::io::Error::from_raw_os_error(libc::ENOTDIR);
            return Err(Self::io("use as a directory", &self.root, e));
        }
        fs::create_dir_all(&self.root).map_err(|e| Self::io("create directory", &self.root, e))?;
        let probe = self.root.join(temp_name(PROBE_NAME));
        let written = fs::File::create(&probe).and_then(|mut f| f.write_all(b"probe\n"));
        let removed = fs::remove_file(&probe);
        written
            .and(removed)
            .map_err(|e| Self::io("write a file in directory", &self.root, e))
    }

    /// Removes the temporary files that writers killed mid-write left under the directory
    /// (see the module's documentation); returns how many.
    pub fn remove_stale_temporaries(&self) -> Result<usize, StoreError> {
        let removed = remove_stale_temporaries(&self.root, std::process::id(), &process_is_gone)?;
        if removed > 0 {
            tracing::info!(
                "removed {removed} temporary file(s) left in {} by writers that were killed",
                self.root.display()
            );
        }
        Ok(removed)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn meta_of(key: &str, md: &fs::Metadata) -> ObjectMeta {
        let last_modified_ms = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        ObjectMeta {
            key: key.to_string(),
            size: md.len(),
            last_modified_ms,
        }
    }

    /// Writes `body` to a fresh temporary file beside `key`'s path, fsynced, and returns its path.
    fn write_temp(&self, key: &str, body: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Self::io("create directory", &dir, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(temp_name(&name));
        let mut file = fs::File::create(&tmp).map_err(|e| Self::io("create", &tmp, e))?;
        file.write_all(body)
            .and_then(|_| file.sync_all())
            .map_err(|e| Self::io("write", &tmp, e))?;
        Ok(tmp)
    }

    /// The directory holding every key that starts with `dir_part/` (the root when
    /// `dir_part` is empty), reached without following a symbolic link below the root; `None`
    /// when no listed key can start so: a component is missing, not a directory, a symbolic
    /// link, or empty, `.` or `..` (names no listed key has).
    fn listing_start(&self, dir_part: &str) -> Result<Option<PathBuf>, StoreError> {
        let mut dir = self.root.clone();
        if dir_part.is_empty() {
            return Ok(Some(dir));
        }
        for component in dir_part.split('/') {
            if matches!(component, "" | "." | "..") {
                return Ok(None);
            }
            dir.push(component);
            match fs::symlink_metadata(&dir) {
                Ok(md) if md.is_dir() => {}
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Self::io("stat", &dir, e)),
            }
        }
        Ok(Some(dir))
    }
}

/// One listing's bounds: keys under `prefix`, after `start_after`.
struct Listing<'a> {
    prefix: &'a str,
    start_after: Option<&'a str>,
}

impl Listing<'_> {
    /// Reads directory `dir` (keys `base…`): its listed files go to `out`, subdirectories
    /// that may hold listed keys to `pending`.
    fn read(
        &self,
        dir: &Path,
        base: &str,
        out: &mut Vec<ObjectMeta>,
        pending: &mut Vec<(PathBuf, String)>,
    ) -> Result<(), StoreError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            // The root is missing, or a subdirectory was removed meanwhile.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LocalStore::io("list", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| LocalStore::io("list", dir, e))?;
            // A name that is not UTF-8 is no key (S3 keys are UTF-8).
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = format!("{base}{name}");
            // `DirEntry::file_type` does not follow symbolic links: a link is neither.
            let file_type = entry
                .file_type()
                .map_err(|e| LocalStore::io("stat", &entry.path(), e))?;
            if file_type.is_dir() {
                let sub = key + "/";
                if may_hold_listed_keys(&sub, self.prefix, self.start_after) {
                    pending.push((entry.path(), sub));
                }
                continue;
            }
            if !file_type.is_file()
                || name.starts_with(TEMP_PREFIX)
                || !key.starts_with(self.prefix)
                || self.start_after.is_some_and(|s| key.as_str() <= s)
            {
                continue;
            }
            match entry.metadata() {
                Ok(md) => out.push(LocalStore::meta_of(&key, &md)),
                // Removed since the directory was read.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(LocalStore::io("stat", &entry.path(), e)),
            }
        }
        Ok(())
    }
}

impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn atomic_puts(&self) -> bool {
        false
    }

    fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let path = self.path(key);
        let body = match fs::read(&path) {
            Ok(body) => body,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io("read", &path, e)),
        };
        let md = fs::metadata(&path).map_err(|e| Self::io("stat", &path, e))?;
        Ok(Some(Object {
            meta: Self::meta_of(key, &md),
            body: body.into(),
        }))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key);
        match fs::metadata(&path) {
            Ok(md) if md.is_file() => Ok(Some(Self::meta_of(key, &md))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io("stat", &path, e)),
        }
    }

    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError> {
        let tmp = self.write_temp(key, body)?;
        let path = self.path(key);
        fs::rename(&tmp, &path).map_err(|e| Self::io("rename", &path, e))
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Self::io("remove", &path, e)),
        }
        // A directory the key's removal emptied goes too (keys, not directories, are the
        // store's content); a non-empty one stays.
        if let Some(dir) = path.parent().filter(|d| *d != self.root) {
            let _ = fs::remove_dir(dir);
        }
        Ok(())
    }

    fn put_if_absent(&self, key: &str, body: &[u8]) -> Result<PutOutcome, StoreError> {
        let tmp = self.write_temp(key, body)?;
        let path = self.path(key);
        // hard_link fails with AlreadyExists when the target exists: an atomic create-if-absent.
        let outcome = match fs::hard_link(&tmp, &path) {
            Ok(()) => Ok(PutOutcome::Created),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(Self::io("link", &path, e)),
        };
        let _ = fs::remove_file(&tmp);
        outcome
    }

    /// Every object under `prefix` at any depth (a key `a/b.csv` is the file `b.csv` in the
    /// directory `a`), in ascending byte order of the key: see [the module's
    /// listing rules](self#listing).
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Every key under `prefix` lies below the directory of the prefix's last '/'.
        let dir_part = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let Some(start) = self.listing_start(dir_part)? else {
            return Ok(Vec::new());
        };
        let base = if dir_part.is_empty() {
            String::new()
        } else {
            format!("{dir_part}/")
        };
        let mut out = Vec::new();
        let mut pending = vec![(start, base)];
        let listing = Listing {
            prefix,
            start_after,
        };
        while let Some((dir, base)) = pending.pop() {
            listing.read(&dir, &base, &mut out, &mut pending)?;
        }
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        Ok(out)
    }
}

/// Whether the directory whose keys all start with `sub` (ending in `/`) may hold a key that
/// starts with `prefix` and sorts after `start_after`. Every key below it is `sub` followed by
/// at least one byte; when `sub` sorts before `start_after` without being a prefix of it, so
/// does every such key.
fn may_hold_listed_keys(sub: &str, prefix: &str, start_after: Option<&str>) -> bool {
    let matches_prefix = sub.starts_with(prefix) || prefix.starts_with(sub);
    let all_before = start_after.is_some_and(|s| sub < s && !s.starts_with(sub));
    matches_prefix && !all_before
}

/// The temporary file name for an object named `name`, written by this thread of this process.
fn temp_name(name: &str) -> String {
    format!(
        "{TEMP_PREFIX}{name}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )
}

/// The pid of the process that wrote the temporary file `file_name`
/// (`.tmp-<name>-<pid>-<thread>`), or `None` when the name is not such a file.
fn temp_writer_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix(TEMP_PREFIX)?;
    let mut parts = rest.rsplitn(3, '-');
    let _thread = parts.next()?;
    let pid = parts.next()?;
    let _name = parts.next()?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // 0 and values beyond pid_t are no process id (kill(0, ..) or a negative pid_t would
    // address process groups).
    pid.parse::<u32>()
        .ok()
        .filter(|p| *p > 0 && *p <= libc::pid_t::MAX as u32)
}

/// Whether no process `pid` exists: `kill(pid, 0)` fails with `ESRCH`. A process of another
/// user (`EPERM`) and a zombie count as existing.
fn process_is_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, 0) };
    rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Removes, under `dir` and its subdirectories (symbolic links are not followed), every
/// temporary file whose writer is neither `own_pid` nor alive according to `is_gone`.
/// Returns how many were removed; a missing `dir` has none.
fn remove_stale_temporaries(
    dir: &Path,
    own_pid: u32,
    is_gone: &dyn Fn(u32) -> bool,
) -> Result<usize, StoreError> {
    let io = LocalStore::io;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("list", dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io("list", dir, e))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io("stat", &path, e))?;
        if file_type.is_dir() {
            removed += remove_stale_temporaries(&path, own_pid, is_gone)?;
            continue;
        }
        if !file_type.is_file() {
            continue;
        }
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_writer_pid) else {
            continue;
        };
        if pid == own_pid || !is_gone(pid) {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::debug!(file = %path.display(), pid, "removed a stale temporary file");
                removed += 1;
            }
            // Another starting writer removed it first.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove the stale temporary file", &path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_and_conditional_create() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("root"));
        assert!(store.get("a.csv").unwrap().is_none());
        assert!(store.head("a.csv").unwrap().is_none());
        store.put("a.csv", b"one").unwrap();
        store.put("b.csv", b"two").unwrap();
        store.put("sub/c.csv", b"three").unwrap();
        assert_eq!(&store.get("a.csv").unwrap().unwrap().body[..], b"one");
        assert_eq!(store.head("b.csv").unwrap().unwrap().size, 3);
        let keys: Vec<_> = store
            .list("", None, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        // Every key at any depth (this test asserted the old one-directory listing before).
        assert_eq!(keys, ["a.csv", "b.csv", "sub/c.csv"]);
        let keys: Vec<_> = store
            .list("", Some("a.csv"), 100)
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["b.csv", "sub/c.csv"]);
        let keys: Vec<_> = store
            .list("sub/", None, 100)
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["sub/c.csv"]);
        assert_eq!(
            store.put_if_absent("a.csv", b"other").unwrap(),
            PutOutcome::AlreadyExists
        );
        assert_eq!(&store.get("a.csv").unwrap().unwrap().body[..], b"one");
        assert_eq!(
            store.put_if_absent("d.csv", b"four").unwrap(),
            PutOutcome::Created
        );
        // No temporary files are left behind.
        assert_eq!(store.list("", None, 100).unwrap().len(), 4);
    }

    fn listed(store: &LocalStore, prefix: &str, start_after: Option<&str>) -> Vec<String> {
        store
            .list(prefix, start_after, 1000)
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect()
    }

    #[test]
    fn listing_follows_no_symbolic_link_and_stays_below_the_root() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let store = LocalStore::new(root.clone());
        store.put("in/a.csv", b"a").unwrap();
        store.put("b.csv", b"b").unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(elsewhere.join("deep")).unwrap();
        fs::write(elsewhere.join("x.csv"), b"x").unwrap();
        fs::write(elsewhere.join("deep/y.csv"), b"y").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("linked-dir")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("x.csv"), root.join("linked.csv")).unwrap();
        std::os::unix::fs::symlink(root.join("in"), root.join("in/loop")).unwrap();
        // A FIFO is no object either.
        let fifo = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo");

        assert_eq!(listed(&store, "", None), ["b.csv", "in/a.csv"]);
        assert_eq!(listed(&store, "in/", None), ["in/a.csv"]);
        // Through a link, `..`, `.` or an empty component: nothing.
        for prefix in [
            "linked-dir/",
            "linked-dir/deep/",
            "in/loop/",
            "../",
            "../elsewhere/",
            "./",
            "in/../",
            "in//",
            "/",
            "/in/",
        ] {
            assert!(listed(&store, prefix, None).is_empty(), "{prefix}");
        }
        // A prefix below a file, and below a missing directory.
        assert!(listed(&store, "b.csv/", None).is_empty());
        assert!(listed(&store, "missing/x", None).is_empty());
        // get still reads through a link (it opens the path).
        assert_eq!(&store.get("linked.csv").unwrap().unwrap().body[..], b"x");
        // A missing root lists nothing.
        let missing = LocalStore::new(dir.path().join("missing"));
        assert!(listed(&missing, "", None).is_empty());
    }

    #[test]
    fn listing_skips_names_that_are_not_utf8_and_empty_directories() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        store.put("a/ok.csv", b"1").unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"bad-\xff.csv");
        fs::write(dir.path().join("a").join(bad), b"2").unwrap();
        fs::create_dir_all(dir.path().join("empty/deeper")).unwrap();
        assert_eq!(listed(&store, "", None), ["a/ok.csv"]);
    }

    #[test]
    fn directories_are_pruned_only_when_no_key_below_can_be_listed() {
        // Prefix: the directory's keys start with the prefix, or the prefix goes below it.
        assert!(may_hold_listed_keys("chunk-x/", "chunk-", None));
        assert!(may_hold_listed_keys("a/", "", None));
        assert!(!may_hold_listed_keys("rejects/", "chunk-", None));
        // Start-after: below a directory sorting before it, every key sorts before it.
        assert!(!may_hold_listed_keys("a/", "", Some("b")));
        assert!(!may_hold_listed_keys("a/", "", Some("a0")));
        assert!(may_hold_listed_keys("a/", "", Some("a/x")));
        assert!(may_hold_listed_keys("a/", "", Some("a/")));
        assert!(may_hold_listed_keys("a/", "", Some("a")));
        assert!(may_hold_listed_keys("a/", "", Some("a-")));
        // Checked against a listing: every key is found from every start_after.
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let all = ["a", "a-b", "a.c/d", "a/b", "a/b/c", "a0", "b/a/a"];
        for key in ["a-b", "a.c/d", "a/b/c", "a0", "b/a/a"] {
            store.put(key, key.as_bytes()).unwrap();
        }
        let stored: Vec<&str> = all
            .iter()
            .copied()
            .filter(|k| *k != "a" && *k != "a/b")
            .collect();
        assert_eq!(listed(&store, "", None), stored);
        for after in all {
            let want: Vec<&str> = stored.iter().copied().filter(|k| *k > after).collect();
            assert_eq!(listed(&store, "", Some(after)), want, "after {after}");
        }
    }

    #[test]
    fn temporary_names_carry_the_writer_pid() {
        assert_eq!(
            temp_writer_pid(&temp_name("chunk-000001.csv")),
            Some(std::process::id())
        );
        assert_eq!(temp_writer_pid(&temp_name("")), Some(std::process::id()));
        assert_eq!(
            temp_writer_pid(".tmp-rejects-x.csv-4242-ThreadId(7)"),
            Some(4242)
        );
        for not_ours in [
            "chunk-000001.csv",
            ".tmp-",
            ".tmp-name",
            ".tmp-name-ThreadId(1)",
            ".tmp-name-12a-ThreadId(1)",
            ".tmp-name--ThreadId(1)",
            ".tmp-name-+12-ThreadId(1)",
            // 0 and values beyond pid_t would address process groups in kill().
            ".tmp-name-0-ThreadId(1)",
            ".tmp-name-2147483648-ThreadId(1)",
            ".tmp-name-99999999999999999999-ThreadId(1)",
        ] {
            assert_eq!(temp_writer_pid(not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn liveness_by_kill_zero() {
        assert!(
            !process_is_gone(std::process::id()),
            "this process is alive"
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(process_is_gone(pid), "a reaped child is gone");
        // Above any pid_max (at most 2^22): never a process.
        assert!(process_is_gone(libc::pid_t::MAX as u32));
        // Not a valid pid: never "gone" (kill would address a process group).
        assert!(!process_is_gone(0));
        assert!(!process_is_gone(u32::MAX));
    }

    #[test]
    fn removes_only_the_temporaries_of_gone_writers() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        let own = 1000;
        let (dead, live) = (2000, 3000);
        let files = [
            // (path, removed)
            (
                format!(".tmp-detections-000001.csv-{dead}-ThreadId(2)"),
                true,
            ),
            (
                format!("rejects/.tmp-chunk-000003.csv-{dead}-ThreadId(9)"),
                true,
            ),
            (format!("a/b/.tmp-x-{dead}-ThreadId(1)"), true),
            (format!(".tmp-chunk-000002.csv-{live}-ThreadId(2)"), false),
            (
                format!("rejects/.tmp-chunk-000004.csv-{own}-ThreadId(5)"),
                false,
            ),
            (".tmp-no-pid-here".to_string(), false),
            (format!("chunk-{dead}-ThreadId(2)"), false),
            ("detections-000001.csv".to_string(), false),
        ];
        for (path, _) in &files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"x").unwrap();
        }
        // A directory named like a temporary file is not removed; a symbolic link to a
        // directory is not followed.
        fs::create_dir_all(root.join(format!(".tmp-dir-{dead}-ThreadId(1)"))).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(&elsewhere).unwrap();
        let outside = elsewhere.join(format!(".tmp-y-{dead}-ThreadId(1)"));
        fs::write(&outside, b"x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("link")).unwrap();

        let is_gone = |pid: u32| pid == dead;
        let removed = remove_stale_temporaries(&root, own, &is_gone).unwrap();
        assert_eq!(removed, files.iter().filter(|(_, r)| *r).count());
        for (path, was_removed) in &files {
            assert_eq!(!root.join(path).exists(), *was_removed, "{path}");
        }
        assert!(root.join(format!(".tmp-dir-{dead}-ThreadId(1)")).is_dir());
        assert!(outside.exists(), "symbolic links are not followed");
        // Idempotent; a missing directory has nothing to remove.
        assert_eq!(remove_stale_temporaries(&root, own, &is_gone).unwrap(), 0);
        let missing = dir.path().join("missing");
        assert_eq!(
            remove_stale_temporaries(&missing, own, &is_gone).unwrap(),
            0
        );
    }

    #[test]
    fn store_removes_temporaries_of_dead_processes_and_keeps_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        let mut live = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let dead_file = dir
            .path()
            .join(format!(".tmp-a.csv-{dead_pid}-ThreadId(1)"));
        let live_file = dir
            .path()
            .join(format!(".tmp-b.csv-{}-ThreadId(1)", live.id()));
        let own_file = dir.path().join(temp_name("c.csv"));
        for f in [&dead_file, &live_file, &own_file] {
            fs::write(f, b"x").unwrap();
        }
        let removed = store.remove_stale_temporaries();
        live.kill().unwrap();
        live.wait().unwrap();
        assert_eq!(removed.unwrap(), 1);
        assert!(!dead_file.exists());
        assert!(live_file.exists() && own_file.exists());
    }

    #[test]
    fn write_probe_creates_the_directory_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("new").join("out");
        let store = LocalStore::new(root.clone());
        store.check_writable().unwrap();
        assert!(root.is_dir());
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            0,
            "no probe file left"
        );
    }

    #[test]
    fn write_probe_fails_naming_the_directory() {
        // Below a regular file nothing can be created, even as root.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        fs::write(&file, b"x").unwrap();
        let root = file.join("out");
        let err = LocalStore::new(root.clone())
            .check_writable()
            .unwrap_err()
            .to_string();
        assert!(err.contains(&root.display().to_string()), "{err}");
        assert!(err.contains("os error"), "{err}");
        // An existing path that is a file, not a directory.
        let err = LocalStore::new(file.clone())
            .check_writable()
            .unwrap_err()
            .to_string();
        assert!(err.contains(&file.display().to_string()), "{err}");
        assert!(err.contains("Not a directory"), "{err}");
    }
}
