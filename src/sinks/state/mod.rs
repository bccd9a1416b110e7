//! The state-store seam (SPEC §6). Both implementations run the same SQL schema from `sql/`
//! and give the same answers; the runner only talks to [`StateStore`].
//!
//! Exactly-once contract: [`StateStore::commit_epoch`] applies one epoch's counter deltas,
//! new ledger rows and progress row in one transaction, and is never asked to commit an epoch
//! at or below the last committed one. An implementation whose COMMIT outcome can be unknown
//! (a lost connection) must find out by re-reading the progress row before retrying.
//!
//! Nothing mixed (SPEC §6): [`StateStore::begin_run`] records the run's identity
//! ([`RunIdentity`]: mode, landing, resolved replay range, thresholds, the importance file's
//! digest) in `run_meta`, one key per component, and refuses a store holding epochs of
//! another run with [`StateError::DifferentRun`] naming each difference (a store recorded by
//! a version without these keys is another run too). Each epoch's progress row records its
//! chunk's digest, so that a recovery can refuse a chunk whose bytes changed.

pub mod postgres;
pub mod sqlite;

use std::collections::BTreeMap;

use crate::error::StateError;

/// Versioned migrations, applied in order, each at most once (`schema_migrations`).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../sql/001_init.sql")),
    (2, include_str!("../../../sql/002_chunk_digest.sql")),
];

/// What run a store belongs to (SPEC §6): mode, landing, resolved replay range, thresholds
/// and the importance file's digest. A store that holds epochs of another run is refused,
/// naming what differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIdentity {
    /// `live` or `replay`.
    pub mode: String,
    /// The landing location (as given; never contains secrets).
    pub landing: String,
    /// Replay: the range as resolved from the landing listing when the run started (its
    /// first and last chunk), so that chunks arriving later make a rerun another run.
    /// Live: `None`.
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// The pattern thresholds, as text (`Thresholds::describe`): resuming a store under other
    /// thresholds would mix two configurations in one ledger.
    pub thresholds: String,
    /// Where the importance file was read from (named in messages; not compared: the same
    /// bytes read from elsewhere are the same input).
    pub importance: String,
    /// The importance file's digest (`sources::landing::chunk_digest` of its bytes).
    pub importance_digest: String,
}

/// `run_meta` keys of the identity's components (`run` holds [`RunIdentity::describe`], for
/// people; it is not compared).
const META_RUN: &str = "run";
const META_MODE: &str = "run.mode";
const META_LANDING: &str = "run.landing";
const META_FROM: &str = "run.from";
const META_TO: &str = "run.to";
const META_THRESHOLDS: &str = "run.thresholds";
const META_IMPORTANCE: &str = "run.importance";
const META_IMPORTANCE_DIGEST: &str = "run.importance_digest";

/// The components every identity recorded by this version has (a store whose identity lacks
/// one was created by an earlier version).
const META_COMPARED: [&str; 6] = [
    META_MODE,
    META_LANDING,
    META_FROM,
    META_TO,
    META_THRESHOLDS,
    META_IMPORTANCE_DIGEST,
];

/// The SQL condition selecting the identity's `run_meta` rows.
const META_IDENTITY_WHERE: &str = "key = 'run' OR key LIKE 'run.%'";

impl RunIdentity {
    /// A stable one-line description, stored in `run_meta` (for people) and logged.
    pub fn describe(&self) -> String {
        let bound = |b: Option<u64>| b.map_or_else(|| "*".to_string(), |v| v.to_string());
        let run = match self.mode.as_str() {
            "replay" => format!(
                "replay of {} chunks [{}, {}]",
                self.landing,
                bound(self.from),
                bound(self.to)
            ),
            _ => format!("{} of {}", self.mode, self.landing),
        };
        if self.thresholds.is_empty() {
            run
        } else {
            format!("{run} with thresholds {}", self.thresholds)
        }
    }

    /// The `run_meta` entries recording this identity, one per component.
    fn meta_entries(&self) -> Vec<(&'static str, String)> {
        let bound = |b: Option<u64>| b.map_or_else(String::new, |v| v.to_string());
        vec![
            (META_RUN, self.describe()),
            (META_MODE, self.mode.clone()),
            (META_LANDING, self.landing.clone()),
            (META_FROM, bound(self.from)),
            (META_TO, bound(self.to)),
            (META_THRESHOLDS, self.thresholds.clone()),
            (META_IMPORTANCE, self.importance.clone()),
            (META_IMPORTANCE_DIGEST, self.importance_digest.clone()),
        ]
    }
}

/// How a digest is shown in messages: its first 16 hex digits.
fn short_digest(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

/// What differs between the stored identity (`run_meta` entries) and `requested`, each as
/// a clause naming it; empty = the same run.
fn identity_differences(stored: &BTreeMap<String, String>, requested: &RunIdentity) -> Vec<String> {
    if let Some(missing) = META_COMPARED.iter().find(|k| !stored.contains_key(**k)) {
        return vec![format!(
            "it was recorded by an earlier version of txflow ({}), without {}",
            stored
                .get(META_RUN)
                .map_or("no description", String::as_str),
            match *missing {
                META_IMPORTANCE_DIGEST => "the importance file's digest",
                META_FROM | META_TO => "the resolved replay range",
                _ => "every component of the run's identity",
            }
        )];
    }
    let old = |key: &str| stored.get(key).map_or("", String::as_str);
    let new: BTreeMap<&str, String> = requested.meta_entries().into_iter().collect();
    let differs = |key: &str| old(key) != new[key];
    let mut out = Vec::new();
    if differs(META_MODE) {
        out.push(format!(
            "the mode was {}, now {}",
            old(META_MODE),
            requested.mode
        ));
    }
    if differs(META_LANDING) {
        out.push(format!(
            "the landing was {}, now {}",
            old(META_LANDING),
            requested.landing
        ));
    }
    if !differs(META_MODE) && (differs(META_FROM) || differs(META_TO)) {
        let range = |from: &str, to: &str| {
            let b = |v: &str| {
                if v.is_empty() {
                    "*".to_string()
                } else {
                    v.to_string()
                }
            };
            format!("[{}, {}]", b(from), b(to))
        };
        let grown = !differs(META_FROM)
            && matches!(
                (old(META_TO).parse::<u64>(), requested.to),
                (Ok(was), Some(now)) if now > was
            );
        out.push(format!(
            "the replay range was {}, now {}{}",
            range(old(META_FROM), old(META_TO)),
            range(&new[META_FROM], &new[META_TO]),
            if grown {
                ": more chunks arrived (or --to changed)"
            } else {
                ""
            }
        ));
    }
    if differs(META_THRESHOLDS) {
        out.push(format!(
            "the thresholds were {}, now {}",
            old(META_THRESHOLDS),
            requested.thresholds
        ));
    }
    if differs(META_IMPORTANCE_DIGEST) {
        let was = old(META_IMPORTANCE);
        let file = if was.is_empty() || was == requested.importance {
            requested.importance.clone()
        } else {
            format!("{} (the run started with {was})", requested.importance)
        };
        out.push(format!(
            "the importance file {file} changed since this run started (digest {}, was {})",
            short_digest(&requested.importance_digest),
            short_digest(old(META_IMPORTANCE_DIGEST))
        ));
    }
    out
}

/// One row of the detection ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    pub seq: u64,
    pub epoch: u64,
    pub pattern_id: String,
    pub action_type: String,
    pub customer_name: String,
    pub merchant_id: String,
    pub y_start_time: String,
    pub detection_time: String,
    /// The output file holding this row; `None` until written.
    pub file_seq: Option<u64>,
}

/// One row of the progress table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochRow {
    pub epoch: u64,
    pub chunk_key: String,
    pub rows_accepted: u64,
    pub rows_rejected: u64,
    pub committed_at: String,
    /// The digest of the chunk the epoch was computed from (`Chunk::digest`); `None` for
    /// epochs committed before schema version 2.
    pub chunk_digest: Option<String>,
}

/// Everything one epoch commits, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochCommit {
    pub progress: EpochRow,
    /// `(merchant_id, delta of N(m))`, each merchant at most once.
    pub counter_deltas: Vec<(String, i64)>,
    /// New ledger rows, `file_seq` = None, sequence numbers continuing the ledger.
    pub detections: Vec<LedgerRow>,
}

/// What a starting run finds in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last committed epoch, if any.
    pub last_epoch: Option<u64>,
    /// Every committed epoch with its chunk's digest (`None` for epochs committed before
    /// schema version 2), ascending.
    pub epochs: BTreeMap<u64, Option<String>>,
    /// The ledger's detection identities `(pattern_id, customer_name, merchant_id)`.
    pub emitted: Vec<(String, String, String)>,
    /// The next sequence number to assign (ledger length).
    pub next_seq: u64,
    /// Whether the stream was ended (the last short file written).
    pub finished: bool,
}

/// A SQL state store: embedded SQLite or PostgreSQL.
pub trait StateStore: Send {
    /// Applies pending migrations, takes the single-writer guard, checks (or records) the run
    /// identity, and reports what earlier runs committed.
    fn begin_run(&mut self, run: &RunIdentity) -> Result<Recovered, StateError>;

    /// Commits one epoch atomically.
    fn commit_epoch(&mut self, commit: &EpochCommit) -> Result<(), StateError>;

    /// Ledger rows with `seq` in `[from_seq, to_seq)`, ascending.
    fn ledger_range(&mut self, from_seq: u64, to_seq: u64) -> Result<Vec<LedgerRow>, StateError>;

    /// The smallest `seq` whose `file_seq` is NULL, if any.
    fn first_unwritten_seq(&mut self) -> Result<Option<u64>, StateError>;

    /// Records that rows `[from_seq, to_seq)` are in output file `file_seq`.
    fn mark_written(&mut self, file_seq: u64, from_seq: u64, to_seq: u64)
        -> Result<(), StateError>;

    /// Records that the stream ended (every ledger row is in a file).
    fn mark_finished(&mut self) -> Result<(), StateError>;

    /// The whole ledger, ascending (inspection and tests).
    fn ledger(&mut self) -> Result<Vec<LedgerRow>, StateError>;

    /// `merchant_transaction_counts`, by merchant (inspection and tests).
    fn merchant_counts(&mut self) -> Result<Vec<(String, i64)>, StateError>;

    /// The progress table, ascending (inspection and tests).
    fn epoch_rows(&mut self) -> Result<Vec<EpochRow>, StateError>;
}

/// Opens a state store from `sqlite://PATH` or a `postgres://` / `postgresql://` URL.
pub fn open(url: &str, options: &postgres::PgOptions) -> Result<Box<dyn StateStore>, StateError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(StateError::BadUrl {
                url: url.to_string(),
                reason: "expected sqlite://PATH".into(),
            });
        }
        Ok(Box::new(sqlite::SqliteStore::open(path)?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgStore::connect(url, options)?))
    } else {
        Err(StateError::BadUrl {
            url: redact_url(url),
            reason: "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
        })
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/...
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

/// A `u64` as the `BIGINT` both schemas store.
fn sql_i64(value: u64, what: &str) -> Result<i64, StateError> {
    i64::try_from(value)
        .map_err(|_| StateError::Inconsistent(format!("{what} {value} exceeds the BIGINT range")))
}

/// A stored `BIGINT` back as the `u64` it was written from.
fn sql_u64(value: i64, what: &str) -> Result<u64, StateError> {
    u64::try_from(value).map_err(|_| {
        StateError::Inconsistent(format!("negative {what} {value} in the state store"))
    })
}

/// An epoch's counter deltas with any repeated merchant summed (the contract says each
/// merchant appears once; a batched upsert must never see a key twice), by merchant.
fn merged_deltas(deltas: &[(String, i64)]) -> Result<Vec<(&str, i64)>, StateError> {
    let mut merged = std::collections::BTreeMap::<&str, i64>::new();
    for (merchant, delta) in deltas {
        let sum = merged.entry(merchant.as_str()).or_insert(0);
        *sum = sum.checked_add(*delta).ok_or_else(|| {
            StateError::Inconsistent(format!("counter delta overflow for merchant {merchant}"))
        })?;
    }
    Ok(merged.into_iter().collect())
}

/// What `begin_run` does with the stored run identity (its `run_meta` entries): `Ok(true)` =
/// record `requested` (none stored, or different but the store holds no epochs),
/// `Ok(false)` = the same run, an error naming every difference otherwise.
fn record_identity(
    stored: &BTreeMap<String, String>,
    requested: &RunIdentity,
    has_epochs: bool,
) -> Result<bool, StateError> {
    if stored.is_empty() {
        return Ok(true);
    }
    let differences = identity_differences(stored, requested);
    if differences.is_empty() {
        Ok(false)
    } else if has_epochs {
        Err(StateError::DifferentRun { differences })
    } else {
        tracing::info!(
            differences = %differences.join("; "),
            "state store holds no epochs: recording the new run identity"
        );
        Ok(true)
    }
}

/// The highest migration version this build knows.
fn latest_migration() -> i64 {
    MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0)
}

/// Refuses a store migrated by a newer build (its schema may mean something this one ignores).
fn check_schema_version(newest: Option<i64>) -> Result<(), StateError> {
    match newest {
        Some(v) if v > latest_migration() => Err(StateError::Inconsistent(format!(
            "the state store has schema version {v}, newer than this build's {}; use a newer build",
            latest_migration()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    fn replay(from: u64, to: u64) -> RunIdentity {
        RunIdentity {
            mode: "replay".into(),
            landing: "/data/landing".into(),
            from: Some(from),
            to: Some(to),
            thresholds: "t1".into(),
            importance: "/data/CustomerImportance.csv".into(),
            importance_digest: "a".repeat(64),
        }
    }

    fn stored(run: &RunIdentity) -> BTreeMap<String, String> {
        run.meta_entries()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn refusal(stored: &BTreeMap<String, String>, requested: &RunIdentity) -> String {
        match record_identity(stored, requested, true) {
            Err(e @ StateError::DifferentRun { .. }) => e.to_string(),
            other => panic!("expected DifferentRun, got {other:?}"),
        }
    }

    #[test]
    fn identity_decisions() {
        let run = replay(0, 29);
        assert!(record_identity(&BTreeMap::new(), &run, true).unwrap());
        assert!(!record_identity(&stored(&run), &run, true).unwrap());
        // The importance file read from elsewhere, same bytes: the same run.
        let moved = RunIdentity {
            importance: "/elsewhere/imp.csv".into(),
            ..run.clone()
        };
        assert!(!record_identity(&stored(&run), &moved, true).unwrap());
        // Different, without epochs: recorded; with epochs: refused.
        assert!(record_identity(&stored(&run), &replay(0, 39), false).unwrap());
        refusal(&stored(&run), &replay(0, 39));
    }

    #[test]
    fn identity_refusals_name_the_difference() {
        let run = replay(0, 29);
        let old = stored(&run);
        let grown = refusal(&old, &replay(0, 39));
        assert!(
            grown.contains("different run")
                && grown.contains("the replay range was [0, 29], now [0, 39]: more chunks arrived")
                && grown.contains("a new run needs a new state store"),
            "{grown}"
        );
        let shifted = refusal(&old, &replay(3, 29));
        assert!(
            shifted.contains("the replay range was [0, 29], now [3, 29]"),
            "{shifted}"
        );
        assert!(!shifted.contains("more chunks"), "{shifted}");

        let edited = RunIdentity {
            importance_digest: "b".repeat(64),
            ..run.clone()
        };
        let message = refusal(&old, &edited);
        assert!(
            message.contains(
                "the importance file /data/CustomerImportance.csv changed since this run started \
                 (digest bbbbbbbbbbbbbbbb, was aaaaaaaaaaaaaaaa)"
            ),
            "{message}"
        );
        assert!(!message.contains("replay range"), "{message}");

        let other = RunIdentity {
            thresholds: "t2".into(),
            landing: "/data/other".into(),
            ..run.clone()
        };
        let message = refusal(&old, &other);
        assert!(
            message.contains("the landing was /data/landing, now /data/other")
                && message.contains("the thresholds were t1, now t2"),
            "{message}"
        );
        let live = RunIdentity {
            mode: "live".into(),
            from: None,
            to: None,
            ..run.clone()
        };
        let message = refusal(&old, &live);
        assert!(
            message.contains("the mode was replay, now live"),
            "{message}"
        );
        assert!(!message.contains("replay range"), "{message}");
    }

    #[test]
    fn an_identity_of_an_earlier_version_is_another_run() {
        let legacy: BTreeMap<String, String> =
            [("run".to_string(), "live of /data/landing".to_string())].into();
        let message = refusal(&legacy, &replay(0, 29));
        assert!(
            message.contains("earlier version") && message.contains("live of /data/landing"),
            "{message}"
        );
        // Without epochs the new identity is simply recorded.
        assert!(record_identity(&legacy, &replay(0, 29), false).unwrap());
    }

    #[test]
    fn merges_repeated_deltas() {
        let d = vec![
            ("m2".to_string(), 1),
            ("m1".to_string(), 2),
            ("m2".to_string(), 3),
        ];
        assert_eq!(merged_deltas(&d).unwrap(), vec![("m1", 2), ("m2", 4)]);
        assert!(merged_deltas(&[("m".into(), i64::MAX), ("m".into(), 1)]).is_err());
    }
}
