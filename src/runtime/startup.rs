//! Start-up: opening and checking everything a run needs before its workers start.
//!
//! In order: the landing store and the importance file (every process); which chunks and
//! which clock (a replay range is resolved and refused when a chunk is missing); then, on
//! the process hosting worker 0 only, the output store (probed for writing, cleared of the
//! temporary files of killed writers) and the state store, whose run identity must match.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{Context, Error, Result, StateError};
use crate::objectstore::{self, ObjectStore};
use crate::redact;
use crate::runtime::checkpointer::RestorePoint;
use crate::runtime::identity::run_identity;
use crate::runtime::options::YOptions;
use crate::runtime::worker::Restore;
use crate::runtime::writer::{Clock, EpochWriter};
use crate::sinks::checkpoint::CheckpointStore;
use crate::sinks::state::{self, RunIdentity, VariantSpec};
use crate::sources::importance::{parse_importance, ImportanceTable};
use crate::sources::landing::{chunk_key, list_chunks, resolve_replay, FeedPlan, ReplayPlan};

/// What every process of a run reads before it starts.
pub(crate) struct RunInputs {
    pub landing: Arc<dyn ObjectStore>,
    /// The importance file's bytes (their hash is part of the cluster fingerprint).
    pub importance_bytes: bytes::Bytes,
    pub importance: ImportanceTable,
    pub plan: FeedPlan,
    pub clock: Clock,
    pub identity: RunIdentity,
    /// A replay's resolved range (its chunks are in `plan`).
    pub replay: Option<ReplayPlan>,
}

/// Opens the landing store, reads the importance file, and decides the chunks and the clock.
pub(crate) fn open_inputs(options: &YOptions, y_start_ms: i64) -> Result<RunInputs> {
    let (landing_shown, importance_shown) = (
        redact::url(&options.landing),
        redact::url(&options.importance),
    );
    let landing = objectstore::open(&options.landing, &options.s3)
        .with_context(|| format!("opening the landing store {landing_shown}"))?;
    landing
        .check()
        .with_context(|| format!("checking the landing store {landing_shown}"))?;
    let limit = objectstore::file::MAX_IMPORTANCE_BYTES;
    let object = objectstore::read_object(&options.importance, &options.s3, limit)
        .with_context(|| format!("reading the importance file {importance_shown}"))?;
    let importance = parse_importance("CustomerImportance.csv", &object.body)
        .map_err(|e| Error::input(format!("importance file {importance_shown}: {e}")))?;
    tracing::info!(
        weights = importance.weights.len(),
        rejected = importance.rejects.len(),
        "importance weights loaded"
    );
    let mut replay_plan = None;
    let (plan, clock, resolved) = match options.replay_range() {
        Some(range) => {
            // One listing: `_COMPLETE` checked, the range refused when a chunk is missing.
            let replay = resolve_replay(landing.as_ref(), range.from, range.to)?;
            // A removed first chunk: its time comes from the checkpoint restored.
            let clock = Clock::Replay {
                first_chunk_ms: replay.first.as_ref().map_or(0, |m| m.last_modified_ms),
            };
            // The range as resolved from the listing is part of the run's identity, so that
            // chunks arriving later make a rerun another run.
            let resolved = Some((replay.from, replay.to));
            let indices = replay.indices.clone();
            replay_plan = Some(replay);
            (FeedPlan::Fixed(indices), clock, resolved)
        }
        None => {
            let plan = FeedPlan::Live {
                forever: options.follow_forever(),
            };
            (plan, Clock::Live { y_start_ms }, None)
        }
    };
    Ok(RunInputs {
        identity: run_identity(options, resolved, &object.body),
        landing,
        importance_bytes: object.body,
        importance,
        plan,
        clock,
        replay: replay_plan,
    })
}

/// The process hosting worker 0: opens the output and the state store and begins the run.
pub(crate) fn open_writer(options: &YOptions, inputs: &RunInputs) -> Result<EpochWriter> {
    let shown = redact::url(&options.output);
    let output = objectstore::open(&options.output, &options.s3)
        .with_context(|| format!("opening the output store {shown}"))?;
    output
        .check()
        .with_context(|| format!("checking the output store {shown}"))?;
    if let Some(dir) = objectstore::as_local(output.as_ref()) {
        dir.check_writable()
            .with_context(|| format!("the output {shown} is not writable"))?;
        dir.remove_stale_temporaries()
            .with_context(|| format!("removing stale temporary files from the output {shown}"))?;
    }
    let store = state::open(&options.state)
        .with_context(|| format!("opening the state store {}", options.state))?;
    let variants: Vec<VariantSpec> = options
        .variants()
        .iter()
        .map(|v| VariantSpec {
            name: v.name.clone(),
            thresholds: v.thresholds.to_json(),
        })
        .collect();
    EpochWriter::open(
        store,
        output,
        &inputs.identity,
        inputs.clock.clone(),
        &variants,
    )
}

/// An ended stream stays ended (SPEC §6): a store whose stream ended commits nothing more.
/// `Ok` (with a message saying so) when the landing (live: its canonical chunks; replay:
/// the resolved range) holds no chunk the store did not commit; the refusal otherwise.
pub(crate) fn check_ended_stream(
    writer: &EpochWriter,
    landing: &dyn ObjectStore,
    plan: &FeedPlan,
) -> Result<()> {
    let committed: BTreeSet<u64> = writer.committed_epochs().collect();
    let present: Vec<u64> = match plan {
        FeedPlan::Fixed(indices) => indices.clone(),
        FeedPlan::Live { .. } => list_chunks(landing)
            .with_context(|| format!("listing the landing store {}", landing.describe()))?
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
    };
    let more: Vec<u64> = present
        .into_iter()
        .filter(|k| !committed.contains(k))
        .collect();
    let last_epoch = committed.last().copied();
    if !more.is_empty() {
        let mut names: Vec<String> = more.iter().take(3).map(|k| chunk_key(*k)).collect();
        if more.len() > 3 {
            names.push(format!("… {}", chunk_key(more[more.len() - 1])));
        }
        let chunks = format!("{}: {} chunks", names.join(", "), more.len());
        return Err(StateError::StreamEnded { last_epoch, chunks }.into());
    }
    tracing::warn!(
        "the stream of this state store already ended{}: nothing to do (a new run needs a new \
         state store)",
        last_epoch.map_or_else(String::new, |e| format!(" at epoch {e}"))
    );
    Ok(())
}

/// The process hosting worker 0: the newest recorded checkpoint of this run that is whole
/// and valid, read and checked; `None` (a full replay) when there is none. A checkpoint
/// that is missing, cut, changed, of another run or of another format is never used: a
/// warning names it and the next older one is tried.
pub(crate) fn choose_restore(
    writer: &mut EpochWriter,
    store: &CheckpointStore,
    identity: &RunIdentity,
) -> Result<Option<Restore>> {
    let last_committed = writer.committed_epochs().last();
    let rows = writer
        .checkpoints()
        .context("reading the recorded checkpoints")?;
    let run = identity.checkpoint_key();
    for row in rows
        .iter()
        .rev()
        .filter(|r| Some(r.epoch) <= last_committed)
    {
        let started = std::time::Instant::now();
        match store.load(row, &run) {
            Ok(loaded) => {
                let pairs: usize = loaded.shards.iter().map(Vec::len).sum();
                tracing::info!(
                    epoch = row.epoch,
                    pairs,
                    bytes = row.bytes,
                    seconds = started.elapsed().as_secs_f64(),
                    location = %row.location,
                    "restoring from the checkpoint; only the chunks after it are replayed"
                );
                let point = RestorePoint {
                    epoch: row.epoch,
                    shards: loaded.manifest.shards.len(),
                    digest: row.digest.clone(),
                };
                let seconds = started.elapsed().as_secs_f64();
                return Ok(Some(Restore::new(point, loaded, seconds)));
            }
            Err(e) => tracing::warn!(
                epoch = row.epoch,
                "the checkpoint {} is not usable ({e}); falling back to an older one or to the \
                 full replay",
                row.location
            ),
        }
    }
    Ok(None)
}

/// A restart must replay the committed chunks after its restore point (all of them without
/// one): refused, naming the first, when the landing no longer holds one of them (a
/// retention rule removed it and no usable checkpoint covers it).
pub(crate) fn check_replay_needs(
    writer: &EpochWriter,
    landing: &dyn ObjectStore,
    restored: Option<u64>,
) -> Result<()> {
    let needed: Vec<u64> = writer
        .committed_epochs()
        .filter(|e| restored.is_none_or(|r| *e > r))
        .collect();
    if needed.is_empty() {
        return Ok(());
    }
    let present: BTreeSet<u64> = list_chunks(landing)
        .with_context(|| format!("listing the landing store {}", landing.describe()))?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    match needed.iter().find(|e| !present.contains(e)) {
        None => Ok(()),
        Some(missing) => Err(Error::input(format!(
            "{} is missing from the landing {}, and a restart needs it to rebuild the state of \
             committed epoch {missing} ({}): restore the chunk, or start a new run with a new \
             state store",
            chunk_key(*missing),
            landing.describe(),
            match restored {
                Some(r) => format!("the newest usable checkpoint is of epoch {r}"),
                None => "no usable checkpoint".to_string(),
            }
        ))),
    }
}
