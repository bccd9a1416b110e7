//! The [`ObjectStore`] trait, the seam every object moves through, and its object types.

use crate::error::StoreError;

/// Metadata of a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the store root.
    pub key: String,
    pub size: u64,
    /// Last-modified time, milliseconds since the Unix epoch (file mtime, or S3 `LastModified`).
    pub last_modified_ms: i64,
}

/// An object's bytes and metadata.
#[derive(Clone, Debug)]
pub struct Object {
    pub meta: ObjectMeta,
    pub body: bytes::Bytes,
}

/// Result of a conditional create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    AlreadyExists,
}

/// A flat key/value object store. Objects written through it are atomic (a reader sees
/// either no object or the whole of it); objects written by other producers are atomic only
/// where [`ObjectStore::atomic_puts`] says so.
pub trait ObjectStore: Send + Sync {
    /// Human-readable root, e.g. `/data/landing` or `s3://bucket/prefix`. Never contains secrets.
    fn describe(&self) -> String;

    /// The object at `key`, or `None` when it does not exist (yet).
    fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;

    /// Metadata of `key`, or `None` when it does not exist (yet).
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;

    /// Writes `key` whole, replacing any previous object.
    fn put(&self, key: &str, body: &[u8]) -> Result<(), StoreError>;

    /// Removes `key`; a key that does not exist is no error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Writes `key` only when no object exists there.
    fn put_if_absent(&self, key: &str, body: &[u8]) -> Result<PutOutcome, StoreError>;

    /// Objects whose key starts with `prefix` and sorts strictly after `start_after`, in
    /// ascending byte order of the key, at most `limit` of them. As an S3 listing without
    /// delimiter: keys at any depth (`list("", ..)` returns `a.csv` and `sub/c.csv`), and a
    /// prefix is bytes, not a directory (`list("sub", ..)` also returns `subx.csv`).
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StoreError>;

    /// A start-up health check (bucket exists, credentials work); a clear error otherwise.
    fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether every object is atomic whoever wrote it (S3: an object appears whole). A local
    /// directory is not: this crate writes a temporary name and renames it, but another
    /// producer may write a file in place, and a reader can then see it half-written.
    fn atomic_puts(&self) -> bool {
        false
    }

    /// The local directory behind the store, if it is one (to tell a missing directory apart
    /// from an empty one).
    fn local_dir(&self) -> Option<&std::path::Path> {
        None
    }

    /// A start-up check of a store this process will write to: an error naming the location
    /// and the cause when it cannot be written. A local directory is created when missing and
    /// probed by creating and removing a small temporary file in it. S3 has no write probe
    /// that leaves nothing behind: there [`check`](ObjectStore::check) (bucket, credentials)
    /// is all, and a missing write permission shows at the first write.
    fn check_writable(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Removes the temporary files that writers killed mid-write left in the store (a local
    /// directory: see [`local`]); returns how many. S3 writes leave none.
    fn remove_stale_temporaries(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}
