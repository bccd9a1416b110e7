//! A local directory as an object store. Objects are written to a temporary name and renamed,
//! so a reader never sees half an object (the atomic-arrival rule of file-based sources).

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{Object, ObjectMeta, ObjectStore, PutOutcome};
use crate::error::StoreError;

/// Temporary files carry this prefix; listings skip them.
const TEMP_PREFIX: &str = ".tmp-";

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        LocalStore { root }
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

    fn meta_of(key: &str, md: &fs::Metadata) -> ObjectMeta {
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
        let tmp = dir.join(format!(
            "{TEMP_PREFIX}{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut file = fs::File::create(&tmp).map_err(|e| Self::io("create", &tmp, e))?;
        file.write_all(body)
            .and_then(|_| file.sync_all())
            .map_err(|e| Self::io("write", &tmp, e))?;
        Ok(tmp)
    }
}

impl ObjectStore for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn atomic_puts(&self) -> bool {
        false
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.root)
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

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError> {
        // Keys may contain '/': list the directory of the prefix's last separator.
        let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let dir = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("list", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Self::io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TEMP_PREFIX) {
                continue;
            }
            let key = if dir_part.is_empty() {
                name
            } else {
                format!("{dir_part}/{name}")
            };
            if !key.starts_with(prefix) || start_after.is_some_and(|s| key.as_str() <= s) {
                continue;
            }
            let md = entry
                .metadata()
                .map_err(|e| Self::io("stat", &entry.path(), e))?;
            if md.is_file() {
                out.push(Self::meta_of(&key, &md));
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.truncate(limit);
        Ok(out)
    }
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
        assert_eq!(keys, ["a.csv", "b.csv"]);
        let keys: Vec<_> = store
            .list("", Some("a.csv"), 100)
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["b.csv"]);
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
        assert_eq!(store.list("", None, 100).unwrap().len(), 3);
    }
}
