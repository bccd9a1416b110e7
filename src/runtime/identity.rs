//! Run identity and option fingerprints: what makes a run the same run (SPEC §6, checked
//! against the state store) and what every process of a cluster must agree on (checked by
//! the writer's process before anything is committed).

use std::collections::BTreeMap;

use crate::error::ClusterError;
use crate::objectstore::canonical_location;
use crate::runtime::options::YOptions;
use crate::sinks::state::{RunIdentity, RunMode};
use crate::sources::landing::{chunk_digest, FeedPlan};

/// The run's identity: mode, landing, the resolved replay range (`None` live), thresholds,
/// and the importance file with its digest. Local locations are canonical, so a restart from
/// another directory, or with another spelling of the same path, is the same run.
pub(crate) fn run_identity(
    options: &YOptions,
    resolved: Option<(u64, u64)>,
    importance: &[u8],
) -> RunIdentity {
    RunIdentity {
        mode: match resolved {
            Some(_) => RunMode::Replay,
            None => RunMode::Live,
        },
        landing: canonical_location(&options.landing),
        from: resolved.map(|r| r.0),
        to: resolved.map(|r| r.1),
        thresholds: options.thresholds.to_json(),
        importance: canonical_location(&options.importance),
        importance_digest: chunk_digest(importance),
    }
}

/// What every process of a cluster must agree on, as hashes: a process started with other
/// thresholds, another importance file or another replay range would silently corrupt the
/// results (each key's operators run on one worker, with that worker's options).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct Fingerprint {
    /// `-w`.
    pub workers: usize,
    /// `-n`.
    processes: usize,
    /// Thresholds, variants, mode, replay range, `--follow`.
    settings: u64,
    /// The importance file's bytes.
    importance: u64,
    /// The chunks a replay processes (listed by each process at its start).
    chunks: u64,
}

impl Fingerprint {
    pub(crate) fn of(options: &YOptions, plan: &FeedPlan, importance: &[u8]) -> Fingerprint {
        let settings = format!(
            "{:?}|{:?}|{:?}|{}",
            options.thresholds,
            options.variants(),
            options.replay_range(),
            options.follow_forever()
        );
        let chunks = match plan {
            FeedPlan::Live { forever } => format!("live {forever}"),
            FeedPlan::Fixed(indices) => format!("{indices:?}"),
        };
        Fingerprint {
            workers: options.timely.workers,
            processes: options.timely.processes,
            settings: fnv1a(settings.as_bytes()),
            importance: fnv1a(importance),
            chunks: fnv1a(chunks.as_bytes()),
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The writer's check that every process runs with the writer's own options.
pub(crate) fn check_fingerprints(
    got: &[(usize, Fingerprint)],
    own: &Fingerprint,
) -> Result<(), ClusterError> {
    let mut differing: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (process, theirs) in got.iter().filter(|(_, f)| f != own) {
        let what = differing.entry(*process).or_default();
        for (differs, name) in [
            (theirs.workers != own.workers, "-w"),
            (theirs.processes != own.processes, "-n"),
            (
                theirs.settings != own.settings,
                "thresholds/mode/replay range",
            ),
            (
                theirs.importance != own.importance,
                "importance file contents",
            ),
            (theirs.chunks != own.chunks, "chunks listed for the replay"),
        ] {
            if differs && !what.contains(&name) {
                what.push(name);
            }
        }
    }
    if differing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = differing
        .iter()
        .map(|(p, what)| format!("process {p} differs in {}", what.join(", ")))
        .collect();
    Err(ClusterError::DifferentOptions {
        differences: list.join("; "),
    })
}
