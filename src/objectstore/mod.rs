//! The object-store seam: landing chunks, the importance file, detection and reject files all
//! move through [`ObjectStore`], implemented by a local directory ([`local`]) and S3 ([`s3`]).
//!
//! Keys are relative to the store's root (a directory, or an `s3://bucket/prefix`), use `/`
//! as separator, and never start with `/`. Calls are blocking: callers that must not block
//! (timely workers) go through the prefetching reader in `sources::landing`.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | locations (`dir` or `s3://bucket/prefix`), opening a store |
//! | `store.rs` | the [`ObjectStore`] trait (S3 semantics: listing at any depth, in byte order) and its object types |
//! | `local.rs` | a local directory: temporary name + rename, create-if-absent by hard link, write probe, removal of killed writers' temporaries |
//! | `s3.rs` | S3 and compatible servers: the SDK client, retries with backoff, conditional puts, start-up checks |
//! | `file.rs` | files named by an option (importance, variants, hostfile): regular files only, size caps |

pub mod file;
pub mod local;
pub mod s3;
pub mod store;

pub use s3::S3Options;
pub use store::{Object, ObjectMeta, ObjectStore, PutOutcome};

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, FileError, FileProblem, StoreError};
use crate::redact;

/// A parsed location: a local directory or an S3 bucket and prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(std::path::PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses `s3://bucket/prefix` or a local path. Credentials in an `s3://` location
    /// (`s3://key:secret@bucket`) are refused: they would be shown wherever the location is.
    pub fn parse(text: &str) -> Result<Location, StoreError> {
        let bad = |reason: &str| StoreError::BadLocation {
            location: redact::url(text),
            reason: reason.into(),
        };
        if let Some(fixed) = s3_typo(text) {
            return Err(bad(&format!(
                "did you mean {}? (a local path that starts with s3: is written ./s3:…)",
                redact::url(&fixed)
            )));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("missing bucket name (expected s3://bucket/prefix)"));
            }
            if bucket.contains('@') {
                return Err(bad(
                    "an s3:// location takes no credentials: give them through the AWS \
                     configuration chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, \
                     an instance role)",
                ));
            }
            Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            })
        } else if text.contains("://") {
            Err(bad("only local paths and s3:// URLs are supported"))
        } else if text.is_empty() {
            Err(bad("empty location"))
        } else {
            Ok(Location::Local(text.into()))
        }
    }

    /// Splits a location naming a single object (`s3://bucket/dir/key` or `dir/file`) into
    /// the location of its parent and the object's key.
    pub(crate) fn parse_object(text: &str) -> Result<(Location, String), StoreError> {
        let bad = |reason: &str| StoreError::BadLocation {
            location: redact::url(text),
            reason: reason.to_string(),
        };
        match Location::parse(text)? {
            Location::S3 { bucket, prefix } => {
                let (dir, key) = match prefix.rsplit_once('/') {
                    Some((dir, key)) => (dir.to_string(), key.to_string()),
                    None => (String::new(), prefix.clone()),
                };
                if key.is_empty() {
                    return Err(bad("expected s3://bucket/key naming an object"));
                }
                Ok((
                    Location::S3 {
                        bucket,
                        prefix: dir,
                    },
                    key,
                ))
            }
            Location::Local(path) => {
                let key = path
                    .file_name()
                    .ok_or_else(|| bad("expected a file path"))?
                    .to_string_lossy()
                    .into_owned();
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => ".".into(),
                };
                Ok((Location::Local(dir), key))
            }
        }
    }
}

/// The `s3://` URL a location was probably meant to be when it starts with `s3:` in any case
/// but is not spelled `s3://` (`s3:/bucket/x`, `s3:bucket/x`, `S3://bucket/x`): taken as
/// written, it would be a local directory named `s3:`.
fn s3_typo(text: &str) -> Option<String> {
    let scheme = text.get(..3)?;
    if !scheme.eq_ignore_ascii_case("s3:") || text.starts_with("s3://") {
        return None;
    }
    Some(format!(
        "s3://{}",
        text[3..].trim_start_matches(['/', '\\'])
    ))
}

/// A location in one spelling, so that `L300`, `./L300` and `/srv/L300` name the same
/// landing (the run identity records it): a local path made absolute, with symbolic links,
/// `.` and `..` resolved as far as it exists (a part that does not exist yet is appended as
/// written, less its `.` components); anything else as given.
pub(crate) fn canonical_location(text: &str) -> String {
    match Location::parse(text) {
        Ok(Location::Local(path)) => canonical_path(&path).display().to_string(),
        _ => text.to_string(),
    }
}

/// `path` absolute and resolved as far as it exists (see [`canonical_location`]).
fn canonical_path(path: &std::path::Path) -> std::path::PathBuf {
    let Ok(absolute) = std::path::absolute(path) else {
        return path.to_path_buf();
    };
    let mut existing = absolute.as_path();
    let mut missing = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            return missing.iter().rev().fold(real, |p, name| p.join(name));
        }
        // (A `..` in the missing part ends the walk: what it leaves cannot be resolved.)
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Opens the store for `location` (a directory path or `s3://bucket/prefix`).
pub fn open(location: &str, s3: &S3Options) -> Result<Arc<dyn ObjectStore>, StoreError> {
    open_location(&Location::parse(location)?, s3)
}

/// Opens the store for an already parsed location.
pub(crate) fn open_location(
    location: &Location,
    s3: &S3Options,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    match location {
        Location::Local(dir) => Ok(Arc::new(local::LocalStore::new(dir.clone()))),
        Location::S3 { bucket, prefix } => Ok(Arc::new(s3::S3Store::connect(
            bucket.clone(),
            prefix.clone(),
            s3,
        )?)),
    }
}

/// The local directory store behind `store`, if it is one: the one route to what only a
/// directory has (its path, a write probe, removal of killed writers' temporary files; see
/// [`local::LocalStore`]). S3 has none of these: its start-up check is
/// [`ObjectStore::check`], and its writes leave nothing behind.
pub fn as_local(store: &dyn ObjectStore) -> Option<&local::LocalStore> {
    (store as &dyn std::any::Any).downcast_ref()
}

/// Reads a single object named by a location (`s3://bucket/key` or a file path), refusing
/// one larger than `limit` bytes; a local path must name a regular file (see [`file`]).
pub fn read_object(location: &str, s3: &S3Options, limit: u64) -> Result<Object, Error> {
    let (parent, key) = Location::parse_object(location)?;
    let file_error = |problem| FileError {
        path: location.to_string(),
        problem,
    };
    if let Location::Local(_) = parent {
        let path = Path::new(location);
        let (body, metadata) =
            file::read_regular_file(path, limit).map_err(|problem| match &problem {
                FileProblem::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let shown = std::path::absolute(path).unwrap_or_else(|_| path.into());
                    Error::configuration(format!("no such file: {}", shown.display()))
                }
                _ => file_error(problem).into(),
            })?;
        return Ok(Object {
            meta: local::LocalStore::meta_of(&key, &metadata),
            body: body.into(),
        });
    }
    let store = open_location(&parent, s3)?;
    // The size first, so that an oversized object is not fetched.
    if store.head(&key)?.is_some_and(|meta| meta.size > limit) {
        return Err(file_error(FileProblem::TooLarge(limit)).into());
    }
    let object = store.get(&key)?.ok_or_else(|| {
        Error::configuration(format!("no such object: {}", redact::url(location)))
    })?;
    if object.body.len() as u64 > limit {
        return Err(file_error(FileProblem::TooLarge(limit)).into());
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_locations_have_one_spelling() {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("link")).unwrap();
        let at = |rel: &str| format!("{}/{rel}", tmp.path().display());
        let want = root.join("a/b").display().to_string();
        for spelling in [at("a/b"), at("a/./b/"), at("a/b/../b"), at("link/b")] {
            assert_eq!(canonical_location(&spelling), want, "{spelling}");
        }
        // Not there yet: the existing part resolved, the rest as written.
        let want = root.join("a/new/x").display().to_string();
        assert_eq!(canonical_location(&at("link/./new/x")), want);
        // Relative: from the current directory (the crate's, under cargo test).
        let cwd = std::fs::canonicalize(".").unwrap();
        let src = cwd.join("src").display().to_string();
        for spelling in ["src", "./src", "src/../src/."] {
            assert_eq!(canonical_location(spelling), src, "{spelling}");
        }
        for other in ["s3://b/x/", "s3://b", "gs://b/x"] {
            assert_eq!(canonical_location(other), other);
        }
    }

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("s3://b/x/y/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "x/y".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "".into()
            }
        );
        assert!(Location::parse("s3:///x").is_err());
        match Location::parse("s3://AKIA:LeakMe@bucket/x") {
            Err(e @ StoreError::BadLocation { .. }) => {
                let line = e.to_string();
                assert!(line.contains("s3://AKIA:***@bucket/x"), "{line}");
                assert!(!line.contains("LeakMe"), "{line}");
            }
            other => panic!("{other:?}"),
        }
        assert!(Location::parse("gs://b/x").is_err());
        for typo in ["s3:/b/x", "s3:b/x", "S3://b/x", "S3:///b/x", "S3:b/x"] {
            let line = Location::parse(typo).unwrap_err().to_string();
            assert!(line.contains("did you mean s3://b/x?"), "{typo}: {line}");
        }
        assert_eq!(
            Location::parse("./s3:b").unwrap(),
            Location::Local("./s3:b".into())
        );
        assert_eq!(
            Location::parse("/tmp/x").unwrap(),
            Location::Local("/tmp/x".into())
        );
        assert_eq!(
            Location::parse_object("s3://b/d/e/f.csv").unwrap(),
            (
                Location::S3 {
                    bucket: "b".into(),
                    prefix: "d/e".into()
                },
                "f.csv".to_string()
            )
        );
        assert_eq!(
            Location::parse_object("f.csv").unwrap(),
            (Location::Local(".".into()), "f.csv".to_string())
        );
    }
}
