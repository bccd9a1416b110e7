//! The landing store's layout (SPEC §3) and the chunk feed that brings chunks to the workers.
//!
//! **Names.** Chunk `k` is the object `chunk-<k:06>.csv`: the index in decimal, zero-padded to
//! six digits, more digits only when the index needs them (never an extra leading zero), at
//! most twelve ([`MAX_CHUNK_INDEX`]). Only these canonical names are chunks; any other
//! `chunk-*` key (`chunk-0000003.csv`, `chunk-7.csv`, `chunk-18446744073709551615.csv`) is
//! ignored with one warning per name, by X and Y alike. Keys are listed in lexicographic order,
//! which is not index order (`chunk-1000000.csv` sorts before `chunk-999999.csv`), so listings
//! are sorted by index.
//!
//! **`_COMPLETE`** holds the number of chunks once the producer is done. A body that is not a
//! count, or a chunk whose index is at or past the count, makes the landing inconsistent
//! ([`LandingError::Inconsistent`]): the feed delivers nothing at or past the problem and fails
//! instead of ending the stream. Live, the marker is read at start and before each chunk is
//! delivered until it has been seen (then its count is kept); when it first appears the
//! landing is listed once for chunks at or past the count, and once more before the stream
//! ends. A replay checks it at start ([`resolve_replay`]).
//!
//! **Replay range.** [`resolve_replay`] lists the landing once and refuses a range with a
//! missing chunk (a gap, `--to` or `--from` past the last chunk), naming the first missing
//! one, before anything is committed. Without `--to` the range ends at the last chunk
//! `_COMPLETE` counts when the marker exists (chunks it counts that are not there are missing,
//! as live Y would wait for them), else at the last chunk present.
//!
//! **Whole chunks.** S3 objects are atomic ([`ObjectStore::atomic_puts`]). On a local
//! directory X writes a temporary name and renames it, but another producer may write a chunk
//! in place: a chunk whose last byte is not a line terminator (or that is empty) is taken to
//! be still being written, and the feed takes it only once its size has stayed the same for
//! [`FeedOptions::settle`]. A producer that writes in place must therefore not pause at a line
//! boundary before the chunk is complete (a chunk that ends with a terminator is taken at
//! once): write each chunk with one call, or better, write another name and rename it.
//!
//! **Append-only.** A chunk taken is looked at again (size, modification time) before the
//! next one is delivered, before the end, and while the feed waits on a local directory; a
//! change stops the feed, naming the chunk (`sources::append_only`).
//!
//! **Feed.** The [`ChunkFeed`] runs one fetching thread per process: it asks for the next
//! expected key directly (no listing per poll) and keeps a small bounded queue of fetched
//! chunks ahead of the workers, which never block on it (they poll and keep stepping). While
//! it waits for a chunk that must exist (`_COMPLETE` counts past it, or a later chunk exists)
//! it warns every [`FeedOptions::gap_warn`]; a local landing directory that does not exist is
//! reported at start and as often while waiting (an S3 prefix without objects is normal).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{panic_message, LandingError, StoreError};
use crate::objectstore::{ObjectMeta, ObjectStore};
use crate::sources::append_only::AppendOnly;

/// Name of the end-of-stream marker.
pub(crate) const COMPLETE_KEY: &str = "_COMPLETE";

/// The largest chunk index: a canonical name has at most twelve digits.
pub(crate) const MAX_CHUNK_INDEX: u64 = 999_999_999_999;

/// Every chunk key starts with this.
const CHUNK_PREFIX: &str = "chunk-";

/// `chunk-<k:06>.csv`.
pub fn chunk_key(index: u64) -> String {
    format!("{CHUNK_PREFIX}{index:06}.csv")
}

/// The index of a canonical chunk name, or why `key` is not one.
pub(crate) fn parse_chunk_name(key: &str) -> Result<u64, String> {
    let Some(rest) = key.strip_prefix(CHUNK_PREFIX) else {
        return Err("not a chunk name".into());
    };
    let Some(digits) = rest.strip_suffix(".csv") else {
        return Err("no .csv suffix".into());
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the index is not a decimal number".into());
    }
    if digits.len() > 12 {
        return Err(format!(
            "more than 12 digits; the largest chunk index is {MAX_CHUNK_INDEX}"
        ));
    }
    let index: u64 = digits.parse().expect("at most 12 decimal digits");
    if digits.len() < 6 {
        return Err(format!(
            "fewer than 6 digits; chunk {index} is {}",
            chunk_key(index)
        ));
    }
    if digits.len() > 6 && digits.starts_with('0') {
        return Err(format!(
            "an extra leading zero; chunk {index} is {}",
            chunk_key(index)
        ));
    }
    Ok(index)
}

/// The `chunk-*` names that are not chunk names one lister (a chunk feed, the landing-edge
/// thread) already warned about (`<landing>/<key>`): one warning per name and lister, and
/// nothing shared between runs.
#[derive(Debug, Default)]
pub(crate) struct NameWarnings(Mutex<BTreeSet<String>>);

impl NameWarnings {
    /// Whether `name` is warned about for the first time.
    fn first(&self, name: String) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name)
    }
}

/// As [`parse_chunk_name`], warning (once per name) about a `chunk-*` key that is not canonical.
fn listed_index(location: &str, key: &str, warned: &NameWarnings) -> Option<u64> {
    match parse_chunk_name(key) {
        Ok(index) => Some(index),
        Err(reason) => {
            let first = warned.first(format!("{location}/{key}"));
            if first {
                tracing::warn!(
                    landing = %location,
                    key = %key,
                    "ignoring {key:?}: not a chunk name ({reason}); a chunk is chunk-<index>.csv, \
                     the index zero-padded to 6 digits"
                );
            }
            None
        }
    }
}

/// Every chunk present in the store, ascending by index. Other `chunk-*` keys are ignored,
/// with a warning each.
pub fn list_chunks(store: &dyn ObjectStore) -> Result<Vec<(u64, ObjectMeta)>, StoreError> {
    list_chunks_warned(store, &NameWarnings::default())
}

/// As [`list_chunks`], warning about each other `chunk-*` key once per `warned`.
pub(crate) fn list_chunks_warned(
    store: &dyn ObjectStore,
    warned: &NameWarnings,
) -> Result<Vec<(u64, ObjectMeta)>, StoreError> {
    let location = store.describe();
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(CHUNK_PREFIX, after.as_deref(), 1000)?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        out.extend(
            page.into_iter()
                .filter_map(|m| listed_index(&location, &m.key, warned).map(|k| (k, m))),
        );
    }
    // Lexicographic order is not index order once indices have more than six digits.
    out.sort_by_key(|(k, _)| *k);
    Ok(out)
}

/// The index of some chunk after `index` present in the store (not necessarily the next one),
/// if any.
fn later_chunk(
    store: &dyn ObjectStore,
    index: u64,
    warned: &NameWarnings,
) -> Result<Option<u64>, StoreError> {
    if index >= 100_000 {
        // Longer canonical names may sort before `chunk_key(index)`: list everything.
        return Ok(list_chunks_warned(store, warned)?
            .into_iter()
            .map(|(k, _)| k)
            .find(|&k| k > index));
    }
    // `chunk_key(index)` starts with `chunk-0`: every canonical key sorting after it has a
    // larger index (six digits and larger, or more digits without a leading zero).
    let location = store.describe();
    let mut after = chunk_key(index);
    loop {
        let page = store.list(CHUNK_PREFIX, Some(&after), 1000)?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        after = last.key.clone();
        if let Some(k) = page
            .iter()
            .filter_map(|m| listed_index(&location, &m.key, warned))
            .find(|&k| k > index)
        {
            return Ok(Some(k));
        }
    }
}

/// The count in a `_COMPLETE` body (ASCII whitespace around it allowed), or why it is not one.
fn parse_count(body: &[u8]) -> Result<u64, String> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let count = if !trimmed.is_empty()
        && trimmed.len() <= 13
        && trimmed.bytes().all(|b| b.is_ascii_digit())
    {
        trimmed.parse::<u64>().ok()
    } else {
        None
    };
    match count {
        Some(n) if n <= MAX_CHUNK_INDEX + 1 => Ok(n),
        _ => {
            let shown: String = text.chars().take(40).collect();
            let more = if text.chars().count() > 40 { "…" } else { "" };
            Err(format!(
                "{COMPLETE_KEY} holds {shown:?}{more}, not a chunk count"
            ))
        }
    }
}

fn inconsistent(store: &dyn ObjectStore, detail: String) -> LandingError {
    LandingError::Inconsistent {
        location: store.describe(),
        detail,
    }
}

/// The chunk count recorded in `_COMPLETE`, if the marker exists; a body that is not a count
/// is an inconsistent landing.
pub(crate) fn read_complete(store: &dyn ObjectStore) -> Result<Option<u64>, LandingError> {
    let Some(object) = store.get(COMPLETE_KEY)? else {
        return Ok(None);
    };
    parse_count(&object.body)
        .map(Some)
        .map_err(|reason| inconsistent(store, reason))
}

/// Refuses chunks at or past `_COMPLETE`'s `count` (`chunks` ascending by index).
fn check_count(
    store: &dyn ObjectStore,
    count: u64,
    chunks: &[(u64, ObjectMeta)],
) -> Result<(), LandingError> {
    match chunks.iter().find(|(k, _)| *k >= count) {
        Some((_, meta)) => Err(past_count(store, count, &meta.key)),
        None => Ok(()),
    }
}

fn past_count(store: &dyn ObjectStore, count: u64, key: &str) -> LandingError {
    inconsistent(
        store,
        format!("{COMPLETE_KEY} says {count} chunks but {key} exists"),
    )
}

/// A replay's chunks, resolved from one listing of the landing store.
#[derive(Clone, Debug)]
pub(crate) struct ReplayPlan {
    /// The chunks of `from..=to` present: all of them, or all after a removed prefix.
    pub indices: Vec<u64>,
    /// The resolved range: `--from` (default 0) and `--to` (default the last chunk present).
    pub from: u64,
    pub to: u64,
    /// Chunk `from`'s metadata (its last-modified time starts the replay's clock); `None`
    /// when it was removed.
    pub first: Option<ObjectMeta>,
    /// Chunks `from..=pruned` are no longer in the landing (a retention rule removed them):
    /// only a restart from a checkpoint at or after `pruned` can go on without them.
    pub pruned: Option<u64>,
}

/// Resolves a replay range against the landing: checks `_COMPLETE` against the chunks, and
/// refuses a range with a missing chunk (a gap in `[from, to]`, `to` or `from` past the last
/// chunk), naming the first missing one. `None` = open end: `from` 0, `to` the last chunk
/// `_COMPLETE` counts, else the last chunk present (so a landing with fewer chunks than its
/// marker counts is refused like a gap; an explicit `to` within the present chunks is not).
pub(crate) fn resolve_replay(
    store: &dyn ObjectStore,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<ReplayPlan, LandingError> {
    let refuse = |detail: String| LandingError::Replay {
        location: store.describe(),
        detail,
    };
    if let Some(dir) = missing_dir(store) {
        return Err(refuse(format!(
            "the landing directory {} does not exist",
            dir.display()
        )));
    }
    let complete = read_complete(store)?;
    let chunks = list_chunks(store)?;
    if let Some(count) = complete {
        check_count(store, count, &chunks)?;
    }
    let Some(&(last, _)) = chunks.last() else {
        return Err(refuse("the landing holds no chunks".into()));
    };
    let lo = from.unwrap_or(0);
    if let Some(hi) = to {
        if lo > hi {
            return Err(refuse(format!("--from {lo} is after --to {hi}")));
        }
    }
    // An open `to` with `from` past the last chunk asks for chunk `from`.
    let open_to = complete.map_or(last, |count| count.saturating_sub(1));
    let hi = to.unwrap_or(open_to).max(lo);
    // Chunks at the start of the range may have been removed (retention): the caller
    // decides whether a checkpoint covers them. Any other gap is refused here.
    let in_range: Vec<&(u64, ObjectMeta)> = chunks
        .iter()
        .filter(|(k, _)| (lo..=hi).contains(k))
        .collect();
    let start = in_range.first().map_or(lo, |(k, _)| *k);
    let mut indices = Vec::new();
    let mut expected = start;
    for (k, _) in &in_range {
        if *k != expected {
            break;
        }
        indices.push(*k);
        expected += 1;
    }
    if expected <= hi || indices.is_empty() {
        let missing = if indices.is_empty() { lo } else { expected };
        let range = match (to, complete) {
            (Some(t), _) => format!("[{lo}, {t}]"),
            (None, Some(_)) => format!("[{lo}, {hi}] (to the last chunk {COMPLETE_KEY} counts)"),
            (None, None) => format!("[{lo}, the last chunk]"),
        };
        return Err(refuse(format!(
            "the range {range} needs {}, which is missing ({}); a replay takes \
             every chunk of its range",
            chunk_key(missing),
            why_missing(&chunks, missing, complete)
        )));
    }
    Ok(ReplayPlan {
        indices,
        from: lo,
        to: hi,
        first: in_range
            .first()
            .filter(|(k, _)| *k == lo)
            .map(|(_, meta)| meta.clone()),
        pruned: (start > lo).then(|| start - 1),
    })
}

/// A replay whose first chunks were removed (`plan.pruned`) goes on only from a checkpoint
/// at or after the last of them; otherwise it is refused, naming the first chunk it needs.
pub(crate) fn check_pruned_replay(
    store: &dyn ObjectStore,
    plan: &ReplayPlan,
    restored: Option<u64>,
) -> Result<(), LandingError> {
    let Some(pruned) = plan.pruned else {
        return Ok(());
    };
    let needed = restored.map_or(plan.from, |r| r + 1);
    if needed > pruned {
        return Ok(());
    }
    Err(LandingError::Replay {
        location: store.describe(),
        detail: format!(
            "the range [{}, {}] needs {}, which is missing (chunks up to {} were removed, and \
             {}); restore the chunks, or replay a range that starts after them",
            plan.from,
            plan.to,
            chunk_key(needed),
            chunk_key(pruned),
            match restored {
                Some(r) => format!("the newest usable checkpoint is of epoch {r}"),
                None => "no usable checkpoint covers them".to_string(),
            }
        ),
    })
}

/// Why chunk `missing` is missing from the listed `chunks` (not empty): a gap before a later
/// chunk, or past the last chunk (with `_COMPLETE`'s count, if any).
fn why_missing(chunks: &[(u64, ObjectMeta)], missing: u64, complete: Option<u64>) -> String {
    if let Some(&(next, _)) = chunks.iter().find(|(k, _)| *k > missing) {
        return format!("a gap: {} exists", chunk_key(next));
    }
    let last = chunks.last().map_or(0, |(k, _)| *k);
    let marker = complete.map_or(String::new(), |n| {
        format!("; {COMPLETE_KEY} says {n} chunks")
    });
    format!("the last chunk is {}{marker}", chunk_key(last))
}

/// As [`list_chunks_warned`], telling `observer` whether the landing is there: a local
/// directory that does not exist lists as empty, yet is missing.
pub(crate) fn list_landing(
    store: &dyn ObjectStore,
    warned: &NameWarnings,
    observer: &dyn FeedObserver,
) -> Result<Vec<(u64, ObjectMeta)>, StoreError> {
    let listed = list_chunks_warned(store, warned);
    match (&listed, missing_dir(store)) {
        (Err(e), _) => observer.landing_listed(Some(&format!("cannot list the landing: {e}"))),
        (Ok(_), Some(dir)) => observer.landing_listed(Some(&missing_dir_message(&dir))),
        (Ok(_), None) => observer.landing_listed(None),
    }
    listed
}

/// The store's local directory when it does not exist.
fn missing_dir(store: &dyn ObjectStore) -> Option<PathBuf> {
    crate::objectstore::as_local(store)
        .map(|local| local.dir())
        .filter(|dir| !dir.exists())
        .map(|dir| dir.to_path_buf())
}

/// A fetched chunk.
#[derive(Debug)]
pub struct Chunk {
    pub index: u64,
    pub key: String,
    pub body: bytes::Bytes,
    pub last_modified_ms: i64,
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
pub(crate) enum FeedItem {
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

impl FeedPlan {
    /// The plan of a run restored at `epoch`: only the chunks after it.
    pub fn after(self, epoch: u64) -> FeedPlan {
        match self {
            FeedPlan::Fixed(indices) => {
                FeedPlan::Fixed(indices.into_iter().filter(|k| *k > epoch).collect())
            }
            live => live,
        }
    }
}

/// How the feed polls, warns and decides a chunk is whole.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FeedOptions {
    /// How often to look again for an object that is not there (or not whole) yet.
    pub poll: Duration,
    /// While waiting for a chunk that must exist, or for a missing local landing directory,
    /// warn this often.
    pub gap_warn: Duration,
    /// Non-atomic store: a chunk whose last byte is not a line terminator is taken once its
    /// size has stayed the same this long.
    pub settle: Duration,
    /// Live: the first chunk to deliver (after a restored checkpoint, the one after it;
    /// the chunks before it may have been removed from the landing).
    pub first: u64,
}

struct FeedState {
    /// Position `i` of the plan → its item, for positions not yet taken by every worker.
    ready: BTreeMap<u64, (FeedItem, usize)>,
    /// Why fetching stopped; every worker gets a copy ([`copy_of`]).
    error: Option<LandingError>,
}

/// Fetches chunks in order on its own thread and hands them to this process's workers.
/// Positions are 0, 1, 2, … in delivery order; each worker takes each position once.
pub(crate) struct ChunkFeed {
    state: Mutex<FeedState>,
    changed: Condvar,
    consumers: usize,
    stop: Arc<AtomicBool>,
    /// Told of every chunk fetched (the landing edge of the run's telemetry).
    observer: Option<Arc<dyn FeedObserver>>,
    /// The names this feed warned about.
    warned: NameWarnings,
}

/// Told of every chunk a [`ChunkFeed`] fetches, and of what the feed and the landing's
/// listings find.
pub(crate) trait FeedObserver: Send + Sync {
    fn chunk_fetched(&self, index: u64, last_modified_ms: i64);
    /// The feed starts fetching chunk `index` (it is in the landing).
    fn fetching(&self, _index: u64) {}
    /// The first worker took chunk `index`: its epoch is being computed.
    fn computing(&self, _index: u64) {}
    /// The landing was listed: `missing` says why it is not there or could not be listed.
    fn landing_listed(&self, _missing: Option<&str>) {}
    /// The feed has waited `waited` for `chunk`, which must exist (`why`).
    fn chunk_waited(&self, _chunk: &str, _waited: Duration, _why: &str) {}
}

/// How many chunks may wait fetched ahead of the slowest local worker: enough to keep the
/// workers' epochs in flight fed (`runtime::worker`), few enough to bound the memory.
const PREFETCH: u64 = 4;

/// Decides when an object of a non-atomic store is whole: at once when it looks whole, else
/// once its size has stayed the same for the settle time.
struct Settle {
    atomic: bool,
    settle: Duration,
    /// The object last seen not looking whole: key, size, since when at that size.
    seen: Option<(String, usize, Instant)>,
}

impl Settle {
    fn new(atomic: bool, settle: Duration) -> Settle {
        Settle {
            atomic,
            settle,
            seen: None,
        }
    }

    /// Whether to take the object `key` of `size` bytes now.
    fn taken(&mut self, key: &str, size: usize, looks_whole: bool) -> bool {
        if self.atomic || looks_whole {
            self.seen = None;
            return true;
        }
        match &self.seen {
            Some((k, s, since)) if k == key && *s == size => {
                if since.elapsed() >= self.settle {
                    self.seen = None;
                    true
                } else {
                    false
                }
            }
            _ => {
                self.seen = Some((key.to_string(), size, Instant::now()));
                false
            }
        }
    }
}

/// What the live feed knows of `_COMPLETE`.
#[derive(Clone, Copy, Debug)]
enum Marker {
    Absent,
    /// A body that is not a count, on a non-atomic store, not yet settled.
    Unsettled,
    Count(u64),
}

/// Whether a chunk's last byte is a line terminator (X ends every chunk with one).
fn ends_with_terminator(body: &[u8]) -> bool {
    matches!(body.last(), Some(b'\n' | b'\r'))
}

impl ChunkFeed {
    /// Starts the fetching thread, unobserved (the feed's own tests). `consumers` = worker
    /// threads in this process.
    #[cfg(test)]
    pub(crate) fn start(
        store: Arc<dyn ObjectStore>,
        plan: FeedPlan,
        consumers: usize,
        options: FeedOptions,
        stop: Arc<AtomicBool>,
    ) -> Arc<ChunkFeed> {
        Self::start_observed(store, plan, consumers, options, stop, None)
    }

    /// Starts the fetching thread, telling `observer` of every chunk fetched. `consumers` =
    /// worker threads in this process.
    pub(crate) fn start_observed(
        store: Arc<dyn ObjectStore>,
        plan: FeedPlan,
        consumers: usize,
        options: FeedOptions,
        stop: Arc<AtomicBool>,
        observer: Option<Arc<dyn FeedObserver>>,
    ) -> Arc<ChunkFeed> {
        let feed = Arc::new(ChunkFeed {
            state: Mutex::new(FeedState {
                ready: BTreeMap::new(),
                error: None,
            }),
            changed: Condvar::new(),
            consumers,
            stop,
            observer,
            warned: NameWarnings::default(),
        });
        let worker_feed = feed.clone();
        let location = store.describe();
        let spawned = std::thread::Builder::new()
            .name("chunk-feed".into())
            .spawn(move || {
                let fetch = std::panic::AssertUnwindSafe(|| match &plan {
                    FeedPlan::Fixed(indices) => {
                        worker_feed.fetch_fixed(store.as_ref(), indices, &options)
                    }
                    FeedPlan::Live { forever } => {
                        worker_feed.follow(store.as_ref(), *forever, &options)
                    }
                });
                // A panic (a bug) would leave the workers waiting for chunks forever.
                let result = std::panic::catch_unwind(fetch).unwrap_or_else(|panic| {
                    Err(LandingError::Panicked(panic_message(panic.as_ref())))
                });
                if let Err(e) = result {
                    worker_feed.fail(e);
                }
            });
        // No thread, no chunks: every worker's poll reports why.
        if let Err(source) = spawned {
            feed.fail(LandingError::Store(StoreError::Io {
                op: "starting the chunk-feed thread for",
                path: location,
                source,
            }));
        }
        feed
    }

    /// The queue. A panic while holding the lock cannot leave it half-updated (each update
    /// is one insert, remove or assignment), so a poisoned lock is used as is.
    fn state(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records why fetching stopped and wakes the workers.
    fn fail(&self, error: LandingError) {
        self.state().error = Some(error);
        self.changed.notify_all();
    }

    /// The item at `position`, if fetched; `Err` when fetching failed. Never blocks for I/O.
    /// Each worker must take each position exactly once, in order.
    pub(crate) fn poll(&self, position: u64) -> Result<Option<FeedItem>, LandingError> {
        let mut state = self.state();
        if let Some(entry) = state.ready.get_mut(&position) {
            let item = entry.0.clone();
            entry.1 += 1;
            let first = entry.1 == 1;
            if entry.1 == self.consumers {
                state.ready.remove(&position);
                self.changed.notify_all();
            }
            drop(state);
            if let (true, Some(observer), FeedItem::Chunk(chunk)) = (first, &self.observer, &item) {
                observer.computing(chunk.index);
            }
            return Ok(Some(item));
        }
        match &state.error {
            Some(e) => Err(copy_of(e)),
            None => Ok(None),
        }
    }

    /// Waits (bounded) until `position` may have been fetched (the feed's own tests).
    #[cfg(test)]
    fn wait(&self, position: u64, timeout: Duration) {
        let state = self.state();
        if state.ready.contains_key(&position) || state.error.is_some() {
            return;
        }
        let _ = self.changed.wait_timeout(state, timeout);
    }

    fn push(&self, position: u64, item: FeedItem) {
        if let (Some(observer), FeedItem::Chunk(chunk)) = (&self.observer, &item) {
            observer.chunk_fetched(chunk.index, chunk.last_modified_ms);
        }
        let mut state = self.state();
        state.ready.insert(position, (item, 0));
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Blocks the fetching thread while the queue is full.
    fn wait_for_room(&self, position: u64) -> bool {
        let mut state = self.state();
        loop {
            if self.stopped() {
                return false;
            }
            let oldest = state.ready.keys().next().copied().unwrap_or(position);
            if position < oldest + PREFETCH {
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// A replay: exactly `indices` (listed and checked by [`resolve_replay`]), then the end.
    fn fetch_fixed(
        &self,
        store: &dyn ObjectStore,
        indices: &[u64],
        options: &FeedOptions,
    ) -> Result<(), LandingError> {
        let mut settle = Settle::new(store.atomic_puts(), options.settle);
        let mut append_only = AppendOnly::new(store);
        for (position, &index) in indices.iter().enumerate() {
            if !self.wait_for_room(position as u64) {
                return Ok(());
            }
            let key = chunk_key(index);
            if let Some(observer) = &self.observer {
                observer.fetching(index);
            }
            loop {
                let object = store.get(&key)?.ok_or_else(|| {
                    inconsistent(store, format!("{key} disappeared during the replay"))
                })?;
                if self.take(&mut settle, &key, &object) {
                    append_only.taking(store, &key, &object)?;
                    self.push(position as u64, Self::item(index, key, object));
                    break;
                }
                if self.stopped() {
                    return Ok(());
                }
                std::thread::sleep(options.poll);
            }
        }
        append_only.ending(store)?;
        self.push(indices.len() as u64, FeedItem::End);
        Ok(())
    }

    /// Live: every chunk from 0 in turn, each once it is whole; the end after `_COMPLETE`'s
    /// count (unless `forever`). See the module doc for the checks.
    fn follow(
        &self,
        store: &dyn ObjectStore,
        forever: bool,
        options: &FeedOptions,
    ) -> Result<(), LandingError> {
        let atomic = store.atomic_puts();
        let mut chunk_settle = Settle::new(atomic, options.settle);
        let mut marker_settle = Settle::new(atomic, options.settle);
        let mut marker = self.start_following(store, &mut marker_settle)?;
        let first = options.first;
        let mut append_only = AppendOnly::new(store);
        let mut index = first;
        let mut waiting_since = Instant::now();
        let mut next_warning = waiting_since + options.gap_warn;
        let mut announced = None;
        loop {
            if !self.wait_for_room(index - first) {
                return Ok(());
            }
            let key = chunk_key(index);
            let object = store.get(&key)?;
            // Until the marker has been seen, look for it before delivering each chunk.
            if !matches!(marker, Marker::Count(_)) {
                marker = self.look_for_marker(store, &mut marker_settle)?;
            }
            let complete = match marker {
                Marker::Count(count) => Some(count),
                Marker::Absent => None,
                // Deliver nothing until it can be judged.
                Marker::Unsettled => {
                    std::thread::sleep(options.poll);
                    continue;
                }
            };
            if let Some(count) = complete.filter(|count| index >= *count) {
                let (at, present) = ((index, first), object.is_some());
                if self.at_count(store, count, at, present, forever, &mut append_only)? {
                    return Ok(());
                }
            }
            if let (Some(observer), true) = (&self.observer, object.is_some()) {
                if announced.replace(index) != Some(index) {
                    observer.fetching(index);
                }
            }
            match object {
                Some(object) if self.take(&mut chunk_settle, &key, &object) => {
                    append_only.taking(store, &key, &object)?;
                    self.push(index - first, Self::item(index, key, object));
                    index += 1;
                    waiting_since = Instant::now();
                    next_warning = waiting_since + options.gap_warn;
                    continue;
                }
                // Still being written (non-atomic store): wait for it to settle.
                Some(_) => {}
                None if Instant::now() >= next_warning => {
                    next_warning = Instant::now() + options.gap_warn;
                    self.warn_waiting(store, &key, index, complete, waiting_since)?;
                }
                None => {}
            }
            if self.stopped() {
                return Ok(());
            }
            append_only.idle(store)?;
            std::thread::sleep(options.poll);
        }
    }

    /// At the start of a live feed: a missing local directory is reported at once; the
    /// listing warns about keys that are not chunks; a marker already present is checked
    /// against it.
    fn start_following(
        &self,
        store: &dyn ObjectStore,
        marker_settle: &mut Settle,
    ) -> Result<Marker, LandingError> {
        if let Some(dir) = missing_dir(store) {
            self.report_missing_dir(&dir);
        }
        let marker = self.look_for_marker(store, marker_settle)?;
        if !matches!(marker, Marker::Count(_)) {
            list_chunks_warned(store, &self.warned)?;
        }
        Ok(marker)
    }

    /// The live feed reached `_COMPLETE`'s `count` (chunk `index` is at or past it): that
    /// chunk being `present` makes the landing inconsistent; else, unless `forever`, the
    /// landing and the last chunk taken are checked once more and the stream ends at `index`
    /// (`true`).
    fn at_count(
        &self,
        store: &dyn ObjectStore,
        count: u64,
        (index, first): (u64, u64),
        present: bool,
        forever: bool,
        append_only: &mut AppendOnly,
    ) -> Result<bool, LandingError> {
        if present {
            return Err(past_count(store, count, &chunk_key(index)));
        }
        if forever {
            return Ok(false);
        }
        // Once more, for chunks that arrived since the marker was first checked.
        check_count(store, count, &list_chunks_warned(store, &self.warned)?)?;
        append_only.ending(store)?;
        self.push(index - first, FeedItem::End);
        Ok(true)
    }

    /// Whether to take `object` now (see [`Settle`]); warns when taking a chunk that has no
    /// final line terminator.
    fn take(&self, settle: &mut Settle, key: &str, object: &crate::objectstore::Object) -> bool {
        let looks_whole = ends_with_terminator(&object.body);
        let taken = settle.taken(key, object.body.len(), looks_whole);
        if taken && !looks_whole && !settle.atomic {
            tracing::warn!(
                chunk = %key,
                bytes = object.body.len(),
                "{key} does not end with a line terminator; taken as whole after its size stayed \
                 the same for {:?}",
                settle.settle
            );
        }
        taken
    }

    /// `_COMPLETE`: its count once the marker is there (checked against a listing when first
    /// seen); unsettled while a body that is not a count may still be being written (a
    /// non-atomic store, until its size has stayed the same for the settle time).
    fn look_for_marker(
        &self,
        store: &dyn ObjectStore,
        settle: &mut Settle,
    ) -> Result<Marker, LandingError> {
        let Some(object) = store.get(COMPLETE_KEY)? else {
            return Ok(Marker::Absent);
        };
        match parse_count(&object.body) {
            Ok(count) => {
                check_count(store, count, &list_chunks_warned(store, &self.warned)?)?;
                tracing::info!(chunks = count, "{COMPLETE_KEY} found");
                Ok(Marker::Count(count))
            }
            Err(reason) => {
                if settle.taken(COMPLETE_KEY, object.body.len(), false) {
                    Err(inconsistent(store, reason))
                } else {
                    Ok(Marker::Unsettled)
                }
            }
        }
    }

    /// The periodic warning while chunk `index` is absent: it must exist when `_COMPLETE`
    /// counts past it or a later chunk exists; a missing local directory is reported too.
    fn warn_waiting(
        &self,
        store: &dyn ObjectStore,
        key: &str,
        index: u64,
        complete: Option<u64>,
        since: Instant,
    ) -> Result<(), LandingError> {
        let waited = since.elapsed().as_secs();
        if let Some(dir) = missing_dir(store) {
            self.report_missing_dir(&dir);
            return Ok(());
        }
        let waited_for = |why: &str| {
            if let Some(observer) = &self.observer {
                observer.chunk_waited(key, since.elapsed(), why);
            }
        };
        if let Some(count) = complete.filter(|count| index < *count) {
            waited_for(&format!("{COMPLETE_KEY} says {count} chunks"));
            tracing::warn!(
                missing = %key,
                waited_s = waited,
                "waiting for {key}: {COMPLETE_KEY} says {count} chunks, so it must exist; epochs \
                 are applied in order"
            );
            return Ok(());
        }
        if let Some(later) = later_chunk(store, index, &self.warned)? {
            if let Some(count) = complete.filter(|count| later >= *count) {
                return Err(past_count(store, count, &chunk_key(later)));
            }
            waited_for(&format!("{} exists", chunk_key(later)));
            tracing::warn!(
                missing = %key,
                present = %chunk_key(later),
                waited_s = waited,
                "waiting for {key} while {} exists; epochs are applied in order",
                chunk_key(later)
            );
        }
        Ok(())
    }

    /// A local landing directory that does not exist: warned about, and told the observer.
    fn report_missing_dir(&self, dir: &std::path::Path) {
        warn_missing_dir(dir);
        if let Some(observer) = &self.observer {
            observer.landing_listed(Some(&missing_dir_message(dir)));
        }
    }

    fn item(index: u64, key: String, object: crate::objectstore::Object) -> FeedItem {
        FeedItem::Chunk(Arc::new(Chunk {
            index,
            key,
            last_modified_ms: object.meta.last_modified_ms,
            digest: chunk_digest(&object.body),
            body: object.body,
        }))
    }
}

/// A copy of `error` for one more worker: the same message, domain and retry hint (an I/O
/// error is copied by kind and message, as `std::io::Error` cannot be cloned).
fn copy_of(error: &LandingError) -> LandingError {
    match error {
        LandingError::Store(e) => LandingError::Store(copy_of_store(e)),
        LandingError::Inconsistent { location, detail } => LandingError::Inconsistent {
            location: location.clone(),
            detail: detail.clone(),
        },
        LandingError::Replay { location, detail } => LandingError::Replay {
            location: location.clone(),
            detail: detail.clone(),
        },
        LandingError::Panicked(message) => LandingError::Panicked(message.clone()),
    }
}

fn copy_of_store(error: &StoreError) -> StoreError {
    match error {
        StoreError::Io { op, path, source } => StoreError::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        StoreError::S3Permanent {
            op,
            bucket,
            key,
            message,
        } => StoreError::S3Permanent {
            op,
            bucket: bucket.clone(),
            key: key.clone(),
            message: message.clone(),
        },
        StoreError::S3Exhausted {
            op,
            bucket,
            key,
            attempts,
            message,
        } => StoreError::S3Exhausted {
            op,
            bucket: bucket.clone(),
            key: key.clone(),
            attempts: *attempts,
            message: message.clone(),
        },
        StoreError::BadLocation { location, reason } => StoreError::BadLocation {
            location: location.clone(),
            reason: reason.clone(),
        },
    }
}

fn missing_dir_message(dir: &std::path::Path) -> String {
    format!("the landing directory {} does not exist", dir.display())
}

fn warn_missing_dir(dir: &std::path::Path) {
    tracing::warn!(
        landing = %dir.display(),
        "the landing directory {} does not exist; waiting for it (is --landing right?)",
        dir.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objectstore::local::LocalStore;

    /// The index of a canonical chunk name, `None` for any other key.
    fn chunk_index(key: &str) -> Option<u64> {
        parse_chunk_name(key).ok()
    }

    #[test]
    fn only_canonical_names_are_chunks() {
        assert_eq!(chunk_key(7), "chunk-000007.csv");
        assert_eq!(chunk_key(1_234_567), "chunk-1234567.csv");
        assert_eq!(chunk_index("chunk-000007.csv"), Some(7));
        assert_eq!(chunk_index("chunk-000000.csv"), Some(0));
        assert_eq!(chunk_index("chunk-999999.csv"), Some(999_999));
        assert_eq!(chunk_index("chunk-1234567.csv"), Some(1_234_567));
        assert_eq!(chunk_index("chunk-999999999999.csv"), Some(MAX_CHUNK_INDEX));
        for key in [
            "chunk-7.csv",
            "chunk-00007.csv",
            "chunk-0000003.csv",
            "chunk-0000000.csv",
            "chunk-01234567.csv",
            "chunk-1000000000000.csv",
            "chunk-18446744073709551615.csv",
            "chunk-99999999999999999999999.csv",
            "chunk-000007.CSV",
            "chunk-000007.csv.tmp",
            "chunk-+00007.csv",
            "chunk- 00007.csv",
            "chunk-.csv",
            "chunk-00000x.csv",
            "_COMPLETE",
        ] {
            assert_eq!(chunk_index(key), None, "{key}");
            assert!(parse_chunk_name(key).is_err(), "{key}");
        }
        // Every canonical name round-trips.
        for k in [0, 1, 99_999, 100_000, 999_999, 1_000_000, MAX_CHUNK_INDEX] {
            assert_eq!(chunk_index(&chunk_key(k)), Some(k));
        }
        assert!(parse_chunk_name("chunk-0000003.csv")
            .unwrap_err()
            .contains("chunk-000003.csv"));
    }

    fn local() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::new(dir.path().join("landing")));
        (dir, store)
    }

    #[test]
    fn listing_ignores_other_names_and_sorts_by_index() {
        let (_dir, store) = local();
        for k in [0, 2, 999_999, 1_000_000, 1] {
            store.put(&chunk_key(k), b"h\n").unwrap();
        }
        for stray in [
            "chunk-0000003.csv",
            "chunk-18446744073709551615.csv",
            "chunk-5.csv",
        ] {
            store.put(stray, b"h\n").unwrap();
        }
        store.put(COMPLETE_KEY, b"9").unwrap();
        let listed: Vec<u64> = list_chunks(store.as_ref())
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, [0, 1, 2, 999_999, 1_000_000]);
        // Some later chunk (the first listed: 1000000 sorts before 999999).
        assert_eq!(
            later_chunk(store.as_ref(), 2, &NameWarnings::default()).unwrap(),
            Some(1_000_000)
        );
        assert_eq!(
            later_chunk(store.as_ref(), 3, &NameWarnings::default()).unwrap(),
            Some(1_000_000)
        );
        // 1000000 sorts before 999999: found all the same.
        assert_eq!(
            later_chunk(store.as_ref(), 999_998, &NameWarnings::default()).unwrap(),
            Some(999_999)
        );
        assert_eq!(
            later_chunk(store.as_ref(), 999_999, &NameWarnings::default()).unwrap(),
            Some(1_000_000)
        );
        assert_eq!(
            later_chunk(store.as_ref(), 1_000_000, &NameWarnings::default()).unwrap(),
            None
        );
    }

    #[test]
    fn complete_must_be_a_count() {
        assert_eq!(parse_count(b"30"), Ok(30));
        assert_eq!(parse_count(b" 30\n"), Ok(30));
        assert_eq!(parse_count(b"0"), Ok(0));
        for bad in [
            &b""[..],
            b"abc",
            b"-1",
            b"3 0",
            b"0x1f",
            b"1e3",
            b"99999999999999999999",
        ] {
            assert!(parse_count(bad).is_err(), "{bad:?}");
        }
        let (_dir, store) = local();
        assert_eq!(read_complete(store.as_ref()).unwrap(), None);
        store.put(COMPLETE_KEY, b"five").unwrap();
        let e = read_complete(store.as_ref()).unwrap_err().to_string();
        assert!(e.starts_with("inconsistent landing "), "{e}");
        assert!(e.contains("\"five\""), "{e}");
    }

    #[test]
    fn replay_ranges_resolve_or_name_the_missing_chunk() {
        let (_dir, store) = local();
        let s = store.as_ref();
        let e = resolve_replay(s, None, None).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        for k in [0, 1, 2, 4, 5] {
            store.put(&chunk_key(k), b"h\n").unwrap();
        }
        store.put("chunk-0000003.csv", b"h\n").unwrap();
        let plan = resolve_replay(s, Some(0), Some(2)).unwrap();
        assert_eq!(
            (plan.indices.as_slice(), plan.from, plan.to),
            (&[0, 1, 2][..], 0, 2)
        );
        assert_eq!(plan.first.unwrap().key, chunk_key(0));
        let plan = resolve_replay(s, Some(4), None).unwrap();
        assert_eq!((plan.indices.as_slice(), plan.to), (&[4, 5][..], 5));
        for (from, to, missing) in [
            (None, None, 3),
            (Some(1), Some(4), 3),
            (Some(4), Some(7), 6),
            (Some(9), None, 9),
            (Some(9), Some(12), 9),
        ] {
            let e = resolve_replay(s, from, to).unwrap_err().to_string();
            assert!(e.contains(&chunk_key(missing)), "{from:?}..{to:?}: {e}");
            assert!(e.contains("refused before committing anything"), "{e}");
        }
        let e = resolve_replay(s, Some(1), Some(4)).unwrap_err().to_string();
        assert!(e.contains("a gap: chunk-000004.csv exists"), "{e}");
        let e = resolve_replay(s, Some(4), Some(7)).unwrap_err().to_string();
        assert!(e.contains("the last chunk is chunk-000005.csv"), "{e}");
        assert!(resolve_replay(s, Some(3), Some(1)).is_err());
        // _COMPLETE counting chunks that are not there: an open range needs them all (the
        // first missing one named); an explicit range within the present chunks is whole.
        store.put(&chunk_key(3), b"h\n").unwrap();
        store.put(COMPLETE_KEY, b"9").unwrap();
        for (from, to) in [(None, None), (Some(2), None), (Some(4), Some(7))] {
            let e = resolve_replay(s, from, to).unwrap_err().to_string();
            assert!(
                e.contains("needs chunk-000006.csv"),
                "{from:?}..{to:?}: {e}"
            );
            assert!(e.contains("_COMPLETE says 9 chunks"), "{e}");
        }
        let e = resolve_replay(s, None, None).unwrap_err().to_string();
        assert!(
            e.contains("the range [0, 8] (to the last chunk _COMPLETE counts) needs"),
            "{e}"
        );
        let plan = resolve_replay(s, Some(1), Some(5)).unwrap();
        assert_eq!(
            (plan.indices.as_slice(), plan.to),
            (&[1, 2, 3, 4, 5][..], 5)
        );
        store.put(COMPLETE_KEY, b"6").unwrap();
        let plan = resolve_replay(s, Some(2), None).unwrap();
        assert_eq!((plan.indices.as_slice(), plan.to), (&[2, 3, 4, 5][..], 5));
        // _COMPLETE is checked first.
        store.put(COMPLETE_KEY, b"5").unwrap();
        let e = resolve_replay(s, Some(0), Some(2)).unwrap_err().to_string();
        assert!(
            e.contains("_COMPLETE says 5 chunks but chunk-000005.csv exists"),
            "{e}"
        );
    }

    fn options() -> FeedOptions {
        FeedOptions {
            poll: Duration::from_millis(5),
            gap_warn: Duration::from_secs(60),
            settle: Duration::from_millis(150),
            first: 0,
        }
    }

    /// Takes `position`, waiting at most 10 s; `Err` = the feed's error.
    fn take(feed: &ChunkFeed, position: u64) -> Result<FeedItem, LandingError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(item) = feed.poll(position)? {
                return Ok(item);
            }
            assert!(
                Instant::now() < deadline,
                "position {position} not delivered"
            );
            feed.wait(position, Duration::from_millis(20));
        }
    }

    fn chunk(item: FeedItem) -> Arc<Chunk> {
        match item {
            FeedItem::Chunk(c) => c,
            FeedItem::End => panic!("expected a chunk, got the end"),
        }
    }

    #[test]
    fn live_feed_follows_the_store_and_ends_after_complete() {
        let (_dir, store) = local();
        store.put(&chunk_key(0), b"zero\n").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Live { forever: false },
            1,
            options(),
            stop,
        );
        assert_eq!(&chunk(take(&feed, 0).unwrap()).body[..], b"zero\n");
        // Chunk 1 arrives later; the feed waits for it.
        let writer = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            writer.put(&chunk_key(1), b"one\n").unwrap();
            writer.put(COMPLETE_KEY, b"2").unwrap();
        });
        assert_eq!(chunk(take(&feed, 1).unwrap()).index, 1);
        assert!(matches!(take(&feed, 2).unwrap(), FeedItem::End));
    }

    /// After a restored checkpoint the feed starts at its next chunk: the earlier ones may be
    /// gone from the landing (pruned), and positions count from the first chunk delivered.
    #[test]
    fn a_live_feed_can_start_after_a_restored_epoch() {
        let (_dir, store) = local();
        for k in 3..5 {
            store
                .put(&chunk_key(k), format!("c{k}\n").as_bytes())
                .unwrap();
        }
        store.put(COMPLETE_KEY, b"5").unwrap();
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Live { forever: false }.after(2),
            1,
            FeedOptions {
                first: 3,
                ..options()
            },
            Arc::new(AtomicBool::new(false)),
        );
        assert_eq!(chunk(take(&feed, 0).unwrap()).index, 3);
        assert_eq!(chunk(take(&feed, 1).unwrap()).index, 4);
        assert!(matches!(take(&feed, 2).unwrap(), FeedItem::End));
        let fixed = FeedPlan::Fixed(vec![1, 2, 3, 4]).after(2);
        assert!(matches!(fixed, FeedPlan::Fixed(ref k) if *k == [3, 4]));
    }

    #[test]
    fn live_feed_delivers_nothing_past_a_short_complete() {
        let (_dir, store) = local();
        for k in 0..4 {
            store.put(&chunk_key(k), b"h\n").unwrap();
        }
        store.put(COMPLETE_KEY, b"2").unwrap();
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Live { forever: false },
            1,
            options(),
            Arc::new(AtomicBool::new(false)),
        );
        let e = take(&feed, 0).unwrap_err().to_string();
        assert!(
            e.contains("_COMPLETE says 2 chunks but chunk-000002.csv exists")
                && e.contains("append-only"),
            "{e}"
        );
    }

    #[test]
    fn live_feed_checks_a_marker_that_appears_later() {
        let (_dir, store) = local();
        store.put(&chunk_key(0), b"h\n").unwrap();
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Live { forever: true },
            1,
            options(),
            Arc::new(AtomicBool::new(false)),
        );
        assert_eq!(chunk(take(&feed, 0).unwrap()).index, 0);
        // A marker counting 1 chunk, then chunk 1: chunk 1 is never delivered. (`forever`:
        // without it, the feed may end between the two writes, which is right.)
        store.put(COMPLETE_KEY, b"1").unwrap();
        store.put(&chunk_key(1), b"h\n").unwrap();
        match take(&feed, 1) {
            Err(e) => assert!(
                e.to_string()
                    .contains("_COMPLETE says 1 chunks but chunk-000001.csv"),
                "{e}"
            ),
            Ok(FeedItem::End) => panic!("ended with --follow"),
            Ok(FeedItem::Chunk(c)) => panic!("delivered {}", c.key),
        }
    }

    #[test]
    fn a_marker_that_is_not_a_count_fails_the_feed() {
        let (_dir, store) = local();
        store.put(&chunk_key(0), b"h\n").unwrap();
        store.put(COMPLETE_KEY, b"lots").unwrap();
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Live { forever: false },
            1,
            options(),
            Arc::new(AtomicBool::new(false)),
        );
        // Local store: the body is judged once it has stayed the same for the settle time.
        let e = loop {
            match take(&feed, 0) {
                Ok(FeedItem::Chunk(_)) => continue,
                Ok(FeedItem::End) => panic!("ended"),
                Err(e) => break e,
            }
        };
        let e = e.to_string();
        assert!(
            e.contains("_COMPLETE holds \"lots\", not a chunk count"),
            "{e}"
        );
    }

    #[test]
    fn every_worker_gets_the_same_feed_error() {
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let error = LandingError::Store(StoreError::Io {
            op: "read",
            path: "/landing/chunk-000000.csv".into(),
            source: io,
        });
        let copy = copy_of(&error);
        assert_eq!(copy.to_string(), error.to_string());
        assert_eq!(copy.domain(), error.domain());
        assert!(copy.retryable() && error.retryable());
    }

    #[test]
    fn a_chunk_written_in_place_is_taken_whole() {
        let (dir, store) = local();
        let path = dir.path().join("landing").join(chunk_key(0));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"h\nrow 1\nrow 2 half").unwrap();
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Live { forever: false },
            1,
            FeedOptions {
                settle: Duration::from_millis(400),
                ..options()
            },
            Arc::new(AtomicBool::new(false)),
        );
        std::thread::sleep(Duration::from_millis(200));
        assert!(feed.poll(0).unwrap().is_none(), "half a chunk was taken");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b" done\nrow 3\n").unwrap();
        drop(file);
        let c = chunk(take(&feed, 0).unwrap());
        assert_eq!(&c.body[..], b"h\nrow 1\nrow 2 half done\nrow 3\n");
        assert_eq!(c.digest, chunk_digest(&c.body));
    }

    #[test]
    fn an_unterminated_chunk_is_taken_once_its_size_settles() {
        let (_dir, store) = local();
        store.put(&chunk_key(0), b"h\nlast row").unwrap();
        store.put(COMPLETE_KEY, b"1").unwrap();
        let started = Instant::now();
        let feed = ChunkFeed::start(
            store.clone(),
            FeedPlan::Fixed(vec![0]),
            1,
            options(),
            Arc::new(AtomicBool::new(false)),
        );
        let c = chunk(take(&feed, 0).unwrap());
        assert!(started.elapsed() >= options().settle);
        assert_eq!(&c.body[..], b"h\nlast row");
        assert!(matches!(take(&feed, 1).unwrap(), FeedItem::End));
    }
}
