//! The landing store's layout (SPEC §3) and the chunk feed that brings chunks to the workers.
//!
//! Chunk `k` is the object `chunk-<k:06>.csv`; `_COMPLETE` holds the number of chunks once the
//! producer is done. The [`ChunkFeed`] runs one fetching thread per process: it asks for the
//! next expected key directly (keys are ordered, so no listing per poll), falls back to a
//! listing with `start-after` only to warn about gaps, and keeps a small bounded queue of
//! fetched chunks ahead of the workers, which never block on it (they poll and keep stepping).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::StoreError;
use crate::objectstore::{ObjectMeta, ObjectStore};

/// Name of the end-of-stream marker.
pub const COMPLETE_KEY: &str = "_COMPLETE";

/// `chunk-<k:06>.csv`.
pub fn chunk_key(index: u64) -> String {
    format!("chunk-{index:06}.csv")
}

/// The index of a chunk key, `None` for other keys.
pub fn chunk_index(key: &str) -> Option<u64> {
    let digits = key.strip_prefix("chunk-")?.strip_suffix(".csv")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Every chunk present in the store, ascending by index.
pub fn list_chunks(store: &dyn ObjectStore) -> Result<Vec<(u64, ObjectMeta)>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list("chunk-", after.as_deref(), 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        out.extend(
            page.into_iter()
                .filter_map(|m| chunk_index(&m.key).map(|k| (k, m))),
        );
    }
    out.sort_by_key(|(k, _)| *k);
    Ok(out)
}

/// The chunk count recorded in `_COMPLETE`, if the marker exists.
pub fn read_complete(store: &dyn ObjectStore) -> Result<Option<u64>, StoreError> {
    let Some(object) = store.get(COMPLETE_KEY)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&object.body);
    match text.trim().parse() {
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(StoreError::BadLocation {
            location: format!("{}/{COMPLETE_KEY}", store.describe()),
            reason: format!("marker body {:?} is not a chunk count", text.trim()),
        }),
    }
}

/// A fetched chunk.
#[derive(Debug)]
pub struct Chunk {
    pub index: u64,
    pub key: String,
    pub body: bytes::Bytes,
    pub last_modified_ms: i64,
    /// When the feed saw the chunk (for visible → committed latency).
    pub seen_at: Instant,
    /// The digest of the chunk's bytes ([`chunk_digest`]), recorded with its epoch and checked
    /// when a recovery replays it (the landing store is append-only).
    pub digest: String,
}

/// The digest of a landing object's bytes: BLAKE3, 64 hex digits.
pub fn chunk_digest(body: &[u8]) -> String {
    blake3::hash(body).to_hex().to_string()
}

/// What a worker gets for the epoch it asks about.
#[derive(Clone, Debug)]
pub enum FeedItem {
    Chunk(Arc<Chunk>),
    /// The stream has ended: no chunk at or after this position.
    End,
}

/// Which chunks the feed delivers.
#[derive(Clone, Debug)]
pub enum FeedPlan {
    /// Follow the landing store from chunk 0: wait for each chunk in turn; end after
    /// `_COMPLETE` (unless `forever`).
    Live { forever: bool },
    /// Exactly these chunks (a replay range, listed up front), then end.
    Fixed(Vec<u64>),
}

struct FeedState {
    /// Position `i` of the plan → its item, for positions not yet taken by every worker.
    ready: BTreeMap<u64, (FeedItem, usize)>,
    /// First position not yet fetched.
    next_fetch: u64,
    error: Option<String>,
}

/// Fetches chunks in order on its own thread and hands them to this process's workers.
/// Positions are 0, 1, 2, … in delivery order; each worker takes each position once.
pub struct ChunkFeed {
    state: Mutex<FeedState>,
    changed: Condvar,
    consumers: usize,
    stop: Arc<AtomicBool>,
}

/// How many chunks may wait fetched ahead of the slowest local worker.
const PREFETCH: u64 = 2;

/// After waiting this long for a missing chunk while later ones exist, warn.
const GAP_WARNING: Duration = Duration::from_secs(10);

impl ChunkFeed {
    /// Starts the fetching thread. `consumers` = worker threads in this process.
    pub fn start(
        store: Arc<dyn ObjectStore>,
        plan: FeedPlan,
        consumers: usize,
        poll: Duration,
        stop: Arc<AtomicBool>,
    ) -> Arc<ChunkFeed> {
        let feed = Arc::new(ChunkFeed {
            state: Mutex::new(FeedState {
                ready: BTreeMap::new(),
                next_fetch: 0,
                error: None,
            }),
            changed: Condvar::new(),
            consumers,
            stop,
        });
        let worker_feed = feed.clone();
        std::thread::Builder::new()
            .name("chunk-feed".into())
            .spawn(move || {
                if let Err(e) = worker_feed.fetch_loop(store.as_ref(), &plan, poll) {
                    let mut state = worker_feed.state.lock().unwrap();
                    state.error = Some(e.to_string());
                    worker_feed.changed.notify_all();
                }
            })
            .expect("spawn chunk-feed thread");
        feed
    }

    /// The item at `position`, if fetched; `Err` when fetching failed. Never blocks for I/O.
    /// Each worker must take each position exactly once, in order.
    pub fn poll(&self, position: u64) -> Result<Option<FeedItem>, String> {
        let mut state = self.state.lock().unwrap();
        if let Some(entry) = state.ready.get_mut(&position) {
            let item = entry.0.clone();
            entry.1 += 1;
            if entry.1 == self.consumers {
                state.ready.remove(&position);
                self.changed.notify_all();
            }
            return Ok(Some(item));
        }
        match &state.error {
            Some(e) => Err(e.clone()),
            None => Ok(None),
        }
    }

    /// Waits (bounded) until `position` may have been fetched; for idle workers.
    pub fn wait(&self, position: u64, timeout: Duration) {
        let state = self.state.lock().unwrap();
        if state.ready.contains_key(&position) || state.error.is_some() {
            return;
        }
        let _ = self.changed.wait_timeout(state, timeout);
    }

    fn push(&self, position: u64, item: FeedItem) {
        let mut state = self.state.lock().unwrap();
        state.ready.insert(position, (item, 0));
        state.next_fetch = position + 1;
        self.changed.notify_all();
    }

    /// Blocks the fetching thread while the queue is full.
    fn wait_for_room(&self, position: u64) -> bool {
        let mut state = self.state.lock().unwrap();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            let oldest = state.ready.keys().next().copied().unwrap_or(position);
            if position < oldest + PREFETCH {
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }

    fn fetch_loop(
        &self,
        store: &dyn ObjectStore,
        plan: &FeedPlan,
        poll: Duration,
    ) -> Result<(), StoreError> {
        match plan {
            FeedPlan::Fixed(indices) => {
                for (position, &index) in indices.iter().enumerate() {
                    if !self.wait_for_room(position as u64) {
                        return Ok(());
                    }
                    let key = chunk_key(index);
                    let object = store.get(&key)?.ok_or_else(|| StoreError::BadLocation {
                        location: format!("{}/{key}", store.describe()),
                        reason: "chunk disappeared during the replay".into(),
                    })?;
                    self.push(position as u64, Self::item(index, key, object));
                }
                self.push(indices.len() as u64, FeedItem::End);
                Ok(())
            }
            FeedPlan::Live { forever } => {
                let mut index = 0u64;
                let mut waiting_since = Instant::now();
                let mut warned = false;
                loop {
                    if !self.wait_for_room(index) {
                        return Ok(());
                    }
                    let key = chunk_key(index);
                    if let Some(object) = store.get(&key)? {
                        self.push(index, Self::item(index, key, object));
                        index += 1;
                        waiting_since = Instant::now();
                        warned = false;
                        continue;
                    }
                    if !forever {
                        if let Some(total) = read_complete(store)? {
                            if index >= total {
                                self.push(index, FeedItem::End);
                                return Ok(());
                            }
                        }
                    }
                    if !warned && waiting_since.elapsed() > GAP_WARNING {
                        let later = store.list("chunk-", Some(&key), 1)?;
                        if let Some(later) = later.first() {
                            tracing::warn!(
                                missing = %key,
                                present = %later.key,
                                "waiting for a missing chunk while later chunks exist; epochs are applied in order"
                            );
                            warned = true;
                        }
                    }
                    if self.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep(poll);
                }
            }
        }
    }

    fn item(index: u64, key: String, object: crate::objectstore::Object) -> FeedItem {
        FeedItem::Chunk(Arc::new(Chunk {
            index,
            key,
            last_modified_ms: object.meta.last_modified_ms,
            digest: chunk_digest(&object.body),
            body: object.body,
            seen_at: Instant::now(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectstore::local::LocalStore;

    #[test]
    fn chunk_names_round_trip() {
        assert_eq!(chunk_key(7), "chunk-000007.csv");
        assert_eq!(chunk_index("chunk-000007.csv"), Some(7));
        assert_eq!(chunk_index("chunk-1234567.csv"), Some(1_234_567));
        assert_eq!(chunk_index("chunk-7.csv"), None);
        assert_eq!(chunk_index("_COMPLETE"), None);
        assert_eq!(chunk_index("chunk-00000x.csv"), None);
    }

    #[test]
    fn live_feed_follows_the_store_and_ends_after_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().to_path_buf()));
        store.put(&chunk_key(0), b"zero").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Live { forever: false },
            1,
            Duration::from_millis(5),
            stop,
        );
        let take = |position: u64| loop {
            if let Some(item) = feed.poll(position).unwrap() {
                return item;
            }
            feed.wait(position, Duration::from_millis(50));
        };
        match take(0) {
            FeedItem::Chunk(c) => assert_eq!(&c.body[..], b"zero"),
            FeedItem::End => panic!("expected chunk 0"),
        }
        // Chunk 1 arrives later; the feed waits for it.
        let writer = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.put(&chunk_key(1), b"one").unwrap();
            writer.put(COMPLETE_KEY, b"2").unwrap();
        });
        match take(1) {
            FeedItem::Chunk(c) => assert_eq!(c.index, 1),
            FeedItem::End => panic!("expected chunk 1"),
        }
        assert!(matches!(take(2), FeedItem::End));
    }
}
