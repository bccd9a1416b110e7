//! Checkpoints of the dataflow's state, in an object store (a directory or S3).
//!
//! A checkpoint at epoch `k` is everything needed to go on at `k + 1` as if chunks `0..=k`
//! had been replayed: the dataflow's accumulated *inputs* (per `(c, m)` pair its totals —
//! `N(m)` follows from them), not its outputs, which live in the ledger. Layout under the
//! checkpoint location:
//!
//! ```text
//! epoch-000000000099/shard-0000-of-0002.bin   one per worker of the run that wrote it
//! epoch-000000000099/shard-0001-of-0002.bin
//! epoch-000000000099/MANIFEST.json            written last: names the shards
//! ```
//!
//! Every object is written whole (a local directory: temporary name and rename; S3: one
//! PUT), and the manifest only once every shard exists, so a checkpoint without its
//! manifest is never used; it is recorded in the state store (with the manifest's digest)
//! only after that. [`CheckpointStore::load`] checks everything a reader can check — the
//! manifest's digest against the store's record, its format and run, each shard's size,
//! digest, format and header — and says why a checkpoint is not usable, so that the caller
//! warns and falls back to an older one or to the full replay, never to a wrong result.
//! See [`format`] for the bytes.

pub mod format;

use std::sync::Arc;
use std::time::{Duration, Instant};

use self::format::{decode_shard, encode_shard, FormatError, Manifest, ShardEntry, ShardHeader};
use crate::dataflow::aggregates::{Pair, PairSums};
use crate::error::StoreError;
use crate::objectstore::ObjectStore;
use crate::sinks::state::CheckpointRow;

/// Why a checkpoint could not be written or is not usable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{key} is missing")]
    Missing { key: String },
    #[error("{key}: {source}")]
    Format {
        key: String,
        #[source]
        source: FormatError,
    },
    #[error("{key} has {got} bytes, its manifest says {expected}")]
    Size {
        key: String,
        expected: u64,
        got: u64,
    },
    #[error("{key} does not match the digest recorded in the state store")]
    ManifestDigest { key: String },
    #[error("a shard reader failed")]
    ReaderFailed,
    #[error("shards of epoch {epoch} still missing after {waited:?}: {missing}")]
    ShardsMissing {
        epoch: u64,
        waited: Duration,
        missing: String,
    },
}

/// A checkpoint read back and checked: its manifest and each shard's pairs.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub manifest: Manifest,
    /// Indexed by shard.
    pub shards: Vec<Vec<(Pair, PairSums)>>,
}

/// The checkpoint location.
#[derive(Clone)]
pub(crate) struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
}

impl CheckpointStore {
    pub(crate) fn new(store: Arc<dyn ObjectStore>) -> CheckpointStore {
        CheckpointStore { store }
    }

    /// The location, for messages (never holds secrets).
    pub(crate) fn describe(&self) -> String {
        self.store.describe()
    }

    fn dir(epoch: u64) -> String {
        format!("epoch-{epoch:012}/")
    }

    pub(crate) fn shard_key(epoch: u64, shard: usize, shards: usize) -> String {
        format!("{}shard-{shard:04}-of-{shards:04}.bin", Self::dir(epoch))
    }

    pub(crate) fn manifest_key(epoch: u64) -> String {
        format!("{}MANIFEST.json", Self::dir(epoch))
    }

    /// The recorded location of a checkpoint's manifest (for people).
    pub(crate) fn manifest_location(&self, epoch: u64) -> String {
        let root = self.describe();
        format!(
            "{}/{}",
            root.trim_end_matches('/'),
            Self::manifest_key(epoch)
        )
    }

    /// Writes one shard whole; its size in bytes.
    pub(crate) fn write_shard(
        &self,
        header: &ShardHeader,
        entries: &[(Pair, PairSums)],
    ) -> Result<u64, StoreError> {
        let bytes = encode_shard(header, entries);
        let key = Self::shard_key(header.epoch, header.shard, header.shards);
        self.store.put(&key, &bytes)?;
        Ok(bytes.len() as u64)
    }

    /// Waits until every shard of `epoch` exists (other processes write theirs), polling
    /// every `poll` for at most `timeout`, or until `stopped()`; their entries for the
    /// manifest.
    pub(crate) fn wait_for_shards(
        &self,
        epoch: u64,
        shards: usize,
        timeout: Duration,
        poll: Duration,
        stopped: impl Fn() -> bool,
    ) -> Result<Vec<ShardEntry>, CheckpointError> {
        let started = Instant::now();
        let mut found: Vec<Option<ShardEntry>> = vec![None; shards];
        loop {
            for (shard, slot) in found.iter_mut().enumerate().filter(|(_, s)| s.is_none()) {
                let key = Self::shard_key(epoch, shard, shards);
                if let Some(meta) = self.store.head(&key)? {
                    let key = key[Self::dir(epoch).len()..].to_string();
                    *slot = Some(ShardEntry {
                        key,
                        bytes: meta.size,
                    });
                }
            }
            let missing: Vec<String> = (0..shards)
                .filter(|s| found[*s].is_none())
                .map(|s| Self::shard_key(epoch, s, shards))
                .collect();
            if missing.is_empty() {
                return Ok(found.into_iter().flatten().collect());
            }
            if started.elapsed() >= timeout || stopped() {
                return Err(CheckpointError::ShardsMissing {
                    epoch,
                    waited: started.elapsed(),
                    missing: missing.join(", "),
                });
            }
            std::thread::sleep(poll);
        }
    }

    /// Writes the manifest (last); its size and BLAKE3 digest (hex).
    pub(crate) fn write_manifest(&self, manifest: &Manifest) -> Result<(u64, String), StoreError> {
        let bytes = manifest.encode();
        let key = Self::manifest_key(manifest.epoch);
        self.store.put(&key, &bytes)?;
        let digest = blake3::hash(&bytes).to_hex().to_string();
        Ok((bytes.len() as u64, digest))
    }

    /// Reads and checks the recorded checkpoint `row` of the run `run`.
    pub(crate) fn load(&self, row: &CheckpointRow, run: &str) -> Result<Loaded, CheckpointError> {
        let manifest = self.load_manifest(row.epoch, &row.digest, run)?;
        let shards = manifest.shards.len();
        let manifest_ref = &manifest;
        let results: Vec<Result<Vec<(Pair, PairSums)>, CheckpointError>> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..shards)
                    .map(|shard| scope.spawn(move || self.load_shard(manifest_ref, shard)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or(Err(CheckpointError::ReaderFailed)))
                    .collect()
            });
        let shards = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Loaded { manifest, shards })
    }

    /// Reads the manifest of the checkpoint of `epoch` and checks its digest (as recorded),
    /// format, run and epoch.
    pub(crate) fn load_manifest(
        &self,
        epoch: u64,
        digest: &str,
        run: &str,
    ) -> Result<Manifest, CheckpointError> {
        let key = Self::manifest_key(epoch);
        let object = self
            .store
            .get(&key)?
            .ok_or_else(|| CheckpointError::Missing { key: key.clone() })?;
        if blake3::hash(&object.body).to_hex().as_str() != digest {
            return Err(CheckpointError::ManifestDigest { key });
        }
        Manifest::decode(&object.body, run, epoch)
            .map_err(|source| CheckpointError::Format { key, source })
    }

    /// Reads and checks shard `shard` of `manifest`.
    pub(crate) fn load_shard(
        &self,
        manifest: &Manifest,
        shard: usize,
    ) -> Result<Vec<(Pair, PairSums)>, CheckpointError> {
        let shards = manifest.shards.len();
        let key = Self::shard_key(manifest.epoch, shard, shards);
        let object = self
            .store
            .get(&key)?
            .ok_or_else(|| CheckpointError::Missing { key: key.clone() })?;
        let expected = manifest.shards[shard].bytes;
        if object.body.len() as u64 != expected {
            return Err(CheckpointError::Size {
                key,
                expected,
                got: object.body.len() as u64,
            });
        }
        let header = ShardHeader {
            run: manifest.run.clone(),
            epoch: manifest.epoch,
            shard,
            shards,
        };
        decode_shard(&object.body, &header)
            .map_err(|source| CheckpointError::Format { key, source })
    }

    /// Removes a checkpoint's objects (the manifest first, so that a half-removed checkpoint
    /// is never taken for a whole one).
    pub(crate) fn remove(&self, epoch: u64) -> Result<(), StoreError> {
        self.store.delete(&Self::manifest_key(epoch))?;
        let dir = Self::dir(epoch);
        for meta in self.store.list(&dir, None, 10_000)? {
            self.store.delete(&meta.key)?;
        }
        Ok(())
    }
}
