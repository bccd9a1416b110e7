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
///
/// What only a local directory has (its path, a write probe, removal of killed writers'
/// temporary files) is no part of it: see [`as_local`](crate::objectstore::as_local).
pub trait ObjectStore: std::any::Any + Send + Sync {
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
}
