//! The state-store seam (SPEC §6). Both implementations run the same SQL schema from `sql/`
//! and give the same answers; the runner only talks to [`StateStore`].
//!
//! Exactly-once contract: [`StateStore::commit_epoch`] applies one epoch's counter deltas,
//! new ledger rows and progress row in one transaction, and is never asked to commit an epoch
//! at or below the last committed one. An implementation whose COMMIT outcome can be unknown
//! (a lost connection) must find out by re-reading the progress row before retrying.

pub mod postgres;
pub mod sqlite;

use crate::error::StateError;

/// Versioned migrations, applied in order, each at most once (`schema_migrations`).
pub const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../../sql/001_init.sql"))];

/// What run a store belongs to. A store that holds epochs of another run is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIdentity {
    /// `live` or `replay`.
    pub mode: String,
    /// The landing location (as given; never contains secrets).
    pub landing: String,
    /// Replay range, as given (`None` = open).
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// The pattern thresholds, as text (`Thresholds::describe`): resuming a store under other
    /// thresholds would mix two configurations in one ledger.
    pub thresholds: String,
}

impl RunIdentity {
    /// A stable one-line description, stored in `run_meta` and compared on start.
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
    /// Every committed epoch, ascending (a replay range may skip missing chunks).
    pub epochs: Vec<u64>,
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

/// What `begin_run` does with the stored run identity: `Ok(true)` = record `requested`
/// (absent, or different but the store holds no epochs), `Ok(false)` = the same run.
fn record_identity(
    existing: Option<&str>,
    requested: &str,
    has_epochs: bool,
) -> Result<bool, StateError> {
    match existing {
        None => Ok(true),
        Some(existing) if existing == requested => Ok(false),
        Some(existing) if has_epochs => Err(StateError::DifferentRun {
            existing: existing.to_string(),
            requested: requested.to_string(),
        }),
        Some(_) => Ok(true),
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

    #[test]
    fn identity_decisions() {
        assert!(record_identity(None, "a", true).unwrap());
        assert!(!record_identity(Some("a"), "a", true).unwrap());
        assert!(record_identity(Some("a"), "b", false).unwrap());
        assert!(matches!(
            record_identity(Some("a"), "b", true),
            Err(StateError::DifferentRun { .. })
        ));
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
