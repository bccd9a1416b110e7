//! The landing store is append-only (SPEC §3): a chunk's bytes never change once written. A
//! producer that writes a chunk in place and pauses longer than the settle time breaks that:
//! the feed takes the chunk truncated. So the chunk feed looks at each chunk it took once
//! more, by size and modification time (one stat, or a HEAD on S3): right before the next
//! chunk is delivered, before the stream ends, and — on a store whose objects are not atomic —
//! every [`IDLE_RECHECK`] while it is the newest chunk taken. A change is an inconsistent
//! landing: the feed delivers nothing more and the run stops, naming the chunk. A chunk that
//! is gone is not a change (retention may remove chunks once a checkpoint covers them).

use std::time::{Duration, Instant};

use crate::error::LandingError;
use crate::objectstore::{Object, ObjectStore};

/// How often the newest chunk taken is looked at while the feed waits (non-atomic stores).
pub(crate) const IDLE_RECHECK: Duration = Duration::from_millis(100);

/// A taken chunk as it was when taken.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Taken {
    key: String,
    /// The bytes taken (a local read and the stat after it may see different sizes).
    size: u64,
    last_modified_ms: i64,
}

/// The newest chunk the feed took, and when it was last looked at.
#[derive(Debug)]
pub(crate) struct AppendOnly {
    newest: Option<Taken>,
    checked_at: Instant,
    /// Whether the store's objects are atomic (S3): no looking while idle.
    atomic: bool,
}

impl AppendOnly {
    pub(crate) fn new(store: &dyn ObjectStore) -> AppendOnly {
        AppendOnly {
            newest: None,
            checked_at: Instant::now(),
            atomic: store.atomic_puts(),
        }
    }

    /// Before `object` (chunk `key`) is delivered: the chunk taken before it is looked at
    /// one last time; then `key` is the newest.
    pub(crate) fn taking(
        &mut self,
        store: &dyn ObjectStore,
        key: &str,
        object: &Object,
    ) -> Result<(), LandingError> {
        self.check(store)?;
        self.newest = Some(Taken {
            key: key.to_string(),
            size: object.body.len() as u64,
            last_modified_ms: object.meta.last_modified_ms,
        });
        Ok(())
    }

    /// While the feed waits: the newest chunk, at most every [`IDLE_RECHECK`].
    pub(crate) fn idle(&mut self, store: &dyn ObjectStore) -> Result<(), LandingError> {
        if self.atomic || self.checked_at.elapsed() < IDLE_RECHECK {
            return Ok(());
        }
        self.check(store)
    }

    /// Before the end of the stream is delivered.
    pub(crate) fn ending(&mut self, store: &dyn ObjectStore) -> Result<(), LandingError> {
        self.check(store)
    }

    fn check(&mut self, store: &dyn ObjectStore) -> Result<(), LandingError> {
        self.checked_at = Instant::now();
        let Some(taken) = &self.newest else {
            return Ok(());
        };
        let Some(now) = store.head(&taken.key)? else {
            return Ok(());
        };
        let what = if now.size != taken.size {
            format!("{} bytes when taken, now {}", taken.size, now.size)
        } else if now.last_modified_ms != taken.last_modified_ms {
            format!(
                "modified again ({} ms after it was taken)",
                now.last_modified_ms - taken.last_modified_ms
            )
        } else {
            return Ok(());
        };
        Err(LandingError::Inconsistent {
            location: store.describe(),
            detail: format!(
                "{} changed after it was taken ({what}): a chunk's bytes never change once \
                 written; a producer writing chunks in place must not pause longer than \
                 --settle-ms (write another name and rename it)",
                taken.key
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectstore::local::LocalStore;

    fn taken(store: &dyn ObjectStore, key: &str) -> Object {
        store.get(key).unwrap().unwrap()
    }

    /// Writes `body` to `key` in place (no rename), with a later modification time.
    fn write_in_place(dir: &std::path::Path, key: &str, body: &[u8]) {
        let path = dir.join(key);
        std::fs::write(&path, body).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
    }

    #[test]
    fn a_taken_chunk_that_changes_stops_the_feed_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        store.put("chunk-000000.csv", b"h\na\n").unwrap();
        store.put("chunk-000001.csv", b"h\nb\n").unwrap();
        let mut watch = AppendOnly::new(&store);
        watch
            .taking(
                &store,
                "chunk-000000.csv",
                &taken(&store, "chunk-000000.csv"),
            )
            .unwrap();
        // Unchanged: delivered, then idle, then the end, all quiet.
        let next = taken(&store, "chunk-000001.csv");
        watch.taking(&store, "chunk-000001.csv", &next).unwrap();
        std::thread::sleep(IDLE_RECHECK);
        watch.idle(&store).unwrap();
        watch.ending(&store).unwrap();

        // The rest of chunk 1 appended in place: seen while idle.
        write_in_place(dir.path(), "chunk-000001.csv", b"h\nb\nc\n");
        std::thread::sleep(IDLE_RECHECK);
        let e = watch.idle(&store).unwrap_err().to_string();
        assert!(
            e.contains("chunk-000001.csv changed after it was taken (4 bytes when taken, now 6)"),
            "{e}"
        );
        assert!(e.starts_with("inconsistent landing"), "{e}");
        // And before the next chunk or the end, however soon.
        store.put("chunk-000002.csv", b"h\nd\n").unwrap();
        let next = taken(&store, "chunk-000002.csv");
        assert!(watch.taking(&store, "chunk-000002.csv", &next).is_err());
        assert!(watch.ending(&store).is_err());
    }

    #[test]
    fn same_size_rewritten_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().to_path_buf());
        store.put("chunk-000000.csv", b"h\na\n").unwrap();
        let mut watch = AppendOnly::new(&store);
        let object = taken(&store, "chunk-000000.csv");
        watch.taking(&store, "chunk-000000.csv", &object).unwrap();
        // Removed (retention): not a change.
        std::fs::remove_file(dir.path().join("chunk-000000.csv")).unwrap();
        watch.ending(&store).unwrap();
        // Rewritten with other bytes of the same size: its modification time says so.
        write_in_place(dir.path(), "chunk-000000.csv", b"h\nz\n");
        let e = watch.ending(&store).unwrap_err().to_string();
        assert!(
            e.contains("chunk-000000.csv changed after it was taken (modified again"),
            "{e}"
        );
    }
}
