//! The seam between the runner and its state store: the [`StateStore`] trait, the rows it
//! stores and reads back, and the small helpers both stores share (`BIGINT` conversions,
//! merged counter deltas, detection keys from ledger rows, the schema-version check).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::identity::RunIdentity;
use super::schema::MIGRATIONS;
use crate::error::StateError;
use crate::model::{DetectionKey, Pattern};

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
    /// Why it fired: the values that made it hold at its first epoch, as a JSON object
    /// (`model::Evidence`); `None` for rows written before schema version 3.
    pub evidence: Option<String>,
}

/// Which ledger a call reads or marks: the baseline's (`detections`) or a recorded backtest
/// variant's (`variant_detections`). Both have the same rows and the same operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerId<'a> {
    Baseline,
    Variant(&'a str),
}

impl<'a> LedgerId<'a> {
    /// The variant's name; `None` for the baseline.
    pub fn variant(self) -> Option<&'a str> {
        match self {
            LedgerId::Baseline => None,
            LedgerId::Variant(name) => Some(name),
        }
    }
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

/// A recorded checkpoint (`checkpoints` table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    pub epoch: u64,
    /// Where its manifest is: the checkpoint store's root and the manifest's key.
    pub location: String,
    /// Its size: shards and manifest.
    pub bytes: u64,
    /// BLAKE3 (hex) of the manifest's bytes.
    pub digest: String,
    pub format_version: u32,
    pub created_at: String,
}

/// The checkpoints `record_checkpoint` removes: all but the newest `keep` (at least 1).
pub(super) fn checkpoints_beyond(mut epochs: Vec<u64>, keep: usize) -> Vec<u64> {
    epochs.sort_unstable_by(|a, b| b.cmp(a));
    epochs.into_iter().skip(keep.max(1)).collect()
}

/// Everything one epoch commits, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochCommit {
    pub progress: EpochRow,
    /// `(merchant_id, delta of N(m))`, each merchant at most once.
    pub counter_deltas: Vec<(String, i64)>,
    /// New ledger rows, `file_seq` = None, sequence numbers continuing the ledger.
    pub detections: Vec<LedgerRow>,
    /// Backtest variants: each variant's new ledger rows (its own sequence numbers), in the
    /// order of [`StateStore::begin_variants`]. Committed in the same transaction.
    pub variant_detections: Vec<VariantRows>,
}

/// One backtest variant's new ledger rows of an epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantRows {
    pub variant: String,
    pub rows: Vec<LedgerRow>,
}

/// A backtest variant as the state store records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariantSpec {
    /// `[A-Za-z0-9._-]{1,64}`, not starting with `.`; names its ledger and its output folder `variants/<name>/`.
    pub name: String,
    /// `Thresholds::describe()` of the variant.
    pub thresholds: String,
}

/// What a starting run finds in one variant's ledger.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VariantRecovered {
    pub emitted: HashSet<DetectionKey>,
    /// The next sequence number to assign (the variant ledger's length).
    pub next_seq: u64,
}

/// What a starting run finds in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last committed epoch, if any.
    pub last_epoch: Option<u64>,
    /// Every committed epoch with its chunk's digest (`None` for epochs committed before
    /// schema version 2), ascending.
    pub epochs: BTreeMap<u64, Option<String>>,
    /// The ledger's detections (each row's pattern, merchant and customer).
    pub emitted: HashSet<DetectionKey>,
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

    /// Records the run's backtest variants (the first run of the store) or checks them against
    /// those recorded: a restart must name the same variants, in the same order, with the same
    /// thresholds, and a store whose epochs were committed without variants takes none (and
    /// the other way round). Returns each variant's ledger state, in `variants`' order. Called
    /// after [`begin_run`](Self::begin_run), also with no variants.
    fn begin_variants(
        &mut self,
        variants: &[VariantSpec],
    ) -> Result<Vec<VariantRecovered>, StateError>;

    /// The recorded variants, in order (inspection and the backtest report).
    fn variants(&mut self) -> Result<Vec<VariantSpec>, StateError>;

    /// Commits one epoch atomically.
    fn commit_epoch(&mut self, commit: &EpochCommit) -> Result<(), StateError>;

    /// Rows of `ledger` with `seq` in `[from_seq, to_seq)`, ascending. A variant the store
    /// does not record is an error, in every `*_of` method.
    fn ledger_range_of(
        &mut self,
        ledger: LedgerId<'_>,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<LedgerRow>, StateError>;

    /// The smallest `seq` of `ledger` whose `file_seq` is NULL, if any.
    fn first_unwritten_seq_of(&mut self, ledger: LedgerId<'_>) -> Result<Option<u64>, StateError>;

    /// Records that rows `[from_seq, to_seq)` of `ledger` are in its output file `file_seq`.
    fn mark_written_of(
        &mut self,
        ledger: LedgerId<'_>,
        file_seq: u64,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<(), StateError>;

    /// The whole of `ledger`, ascending (inspection, tests and the backtest report).
    fn ledger_of(&mut self, ledger: LedgerId<'_>) -> Result<Vec<LedgerRow>, StateError>;

    /// The baseline's rows with `seq` in `[from_seq, to_seq)`, ascending.
    fn ledger_range(&mut self, from_seq: u64, to_seq: u64) -> Result<Vec<LedgerRow>, StateError> {
        self.ledger_range_of(LedgerId::Baseline, from_seq, to_seq)
    }

    /// The smallest `seq` of the baseline's ledger whose `file_seq` is NULL, if any.
    fn first_unwritten_seq(&mut self) -> Result<Option<u64>, StateError> {
        self.first_unwritten_seq_of(LedgerId::Baseline)
    }

    /// Records that the baseline's rows `[from_seq, to_seq)` are in output file `file_seq`.
    fn mark_written(
        &mut self,
        file_seq: u64,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<(), StateError> {
        self.mark_written_of(LedgerId::Baseline, file_seq, from_seq, to_seq)
    }

    /// Records a whole checkpoint and forgets all but the newest `keep`; returns the rows
    /// forgotten (their objects are the caller's to remove, after this returned).
    fn record_checkpoint(
        &mut self,
        row: &CheckpointRow,
        keep: usize,
    ) -> Result<Vec<CheckpointRow>, StateError>;

    /// The recorded checkpoints, oldest first.
    fn checkpoints(&mut self) -> Result<Vec<CheckpointRow>, StateError>;

    /// Records that the stream ended (every ledger row is in a file).
    fn mark_finished(&mut self) -> Result<(), StateError>;

    /// The baseline's whole ledger, ascending (inspection and tests).
    fn ledger(&mut self) -> Result<Vec<LedgerRow>, StateError> {
        self.ledger_of(LedgerId::Baseline)
    }

    /// A variant's whole ledger, ascending.
    fn variant_ledger(&mut self, variant: &str) -> Result<Vec<LedgerRow>, StateError> {
        self.ledger_of(LedgerId::Variant(variant))
    }

    /// `merchant_transaction_counts`, by merchant (inspection and tests).
    fn merchant_counts(&mut self) -> Result<Vec<(String, i64)>, StateError>;

    /// The progress table, ascending (inspection and tests).
    fn epoch_rows(&mut self) -> Result<Vec<EpochRow>, StateError>;

    /// Every `run_meta` entry, by key (inspection: the run identity's `run.*` components, and
    /// `finished` once the stream ended).
    fn run_meta(&mut self) -> Result<BTreeMap<String, String>, StateError>;
}

/// A ledger row's detection identity; an unknown pattern id is an inconsistency (a store
/// written by another program, or a newer version with more patterns).
pub(super) fn detection_key(
    pattern_id: &str,
    customer: &str,
    merchant: &str,
) -> Result<DetectionKey, StateError> {
    let pattern = Pattern::from_id(pattern_id).ok_or_else(|| {
        StateError::Inconsistent(format!(
            "the ledger holds a detection with unknown pattern id {pattern_id:?} \
             (merchant {merchant:?}, customer {customer:?})"
        ))
    })?;
    Ok(DetectionKey {
        pattern,
        merchant: merchant.into(),
        customer: customer.into(),
    })
}

/// A `u64` as the `BIGINT` both schemas store.
pub(super) fn sql_i64(value: u64, what: &str) -> Result<i64, StateError> {
    i64::try_from(value)
        .map_err(|_| StateError::Inconsistent(format!("{what} {value} exceeds the BIGINT range")))
}

/// A stored `BIGINT` back as the `u64` it was written from.
pub(super) fn sql_u64(value: i64, what: &str) -> Result<u64, StateError> {
    u64::try_from(value).map_err(|_| {
        StateError::Inconsistent(format!("negative {what} {value} in the state store"))
    })
}

/// An epoch's counter deltas with any repeated merchant summed (the contract says each
/// merchant appears once; a batched upsert must never see a key twice), by merchant.
pub(super) fn merged_deltas(deltas: &[(String, i64)]) -> Result<Vec<(&str, i64)>, StateError> {
    let mut merged = std::collections::BTreeMap::<&str, i64>::new();
    for (merchant, delta) in deltas {
        let sum = merged.entry(merchant.as_str()).or_insert(0);
        *sum = sum.checked_add(*delta).ok_or_else(|| {
            StateError::Inconsistent(format!("counter delta overflow for merchant {merchant}"))
        })?;
    }
    Ok(merged.into_iter().collect())
}

/// The highest migration version this build knows.
fn latest_migration() -> i64 {
    MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0)
}

/// Refuses a store migrated by a newer build (its schema may mean something this one ignores).
pub(super) fn check_schema_version(newest: Option<i64>) -> Result<(), StateError> {
    match newest {
        Some(v) if v > latest_migration() => Err(StateError::Inconsistent(format!(
            "the state store has schema version {v}, newer than this build's {}; use a newer build",
            latest_migration()
        ))),
        _ => Ok(()),
    }
}

/// Refuses to read a store whose schema is not exactly this build's (`newest` = its newest
/// applied migration, `None` when it has none): a reader never meets "no such column".
pub(super) fn check_readable_schema(newest: Option<i64>) -> Result<(), StateError> {
    let expected = latest_migration();
    match newest {
        Some(v) if v == expected => Ok(()),
        found => Err(StateError::Schema { found, expected }),
    }
}

/// The longest variant name (it names an output folder).
const MAX_VARIANT_NAME: usize = 64;

/// Refuses variant names that could not name a ledger and a folder `variants/<name>/`
/// (`[A-Za-z0-9._-]{1,64}`, not starting with `.`) and repeated names: the caller validates
/// its options, so either is a bug.
fn check_variant_names(variants: &[VariantSpec]) -> Result<(), StateError> {
    let mut seen = HashSet::new();
    for v in variants {
        let name = v.name.as_str();
        let valid = (1..=MAX_VARIANT_NAME).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid {
            return Err(StateError::Inconsistent(format!(
                "invalid backtest variant name {name:?} (expected [A-Za-z0-9._-]{{1,64}}, not \
                 starting with '.')"
            )));
        }
        if !seen.insert(name) {
            return Err(StateError::Inconsistent(format!(
                "backtest variant {name:?} is given twice"
            )));
        }
    }
    Ok(())
}

fn variant_names(variants: &[VariantSpec]) -> String {
    variants
        .iter()
        .map(|v| v.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What differs between the recorded variants and the requested ones, each as a clause
/// naming it; empty = the same variants.
fn variant_differences(recorded: &[VariantSpec], requested: &[VariantSpec]) -> Vec<String> {
    match (recorded.is_empty(), requested.is_empty()) {
        (true, true) => return Vec::new(),
        (true, false) => {
            return vec![format!(
                "its epochs were committed without backtest variants, now with {} (variants \
                 are computed from the run's first chunk on)",
                variant_names(requested)
            )]
        }
        (false, true) => {
            return vec![format!(
                "its epochs were committed with backtest variants {}, now without",
                variant_names(recorded)
            )]
        }
        (false, false) => {}
    }
    let names = |vs: &[VariantSpec]| vs.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    if names(recorded) != names(requested) {
        return vec![format!(
            "the backtest variants were {}, now {} (same names in the same order needed)",
            variant_names(recorded),
            variant_names(requested)
        )];
    }
    recorded
        .iter()
        .zip(requested)
        .filter(|(was, now)| was.thresholds != now.thresholds)
        .map(|(was, now)| {
            format!(
                "the thresholds of backtest variant {} were {}, now {}",
                was.name, was.thresholds, now.thresholds
            )
        })
        .collect()
}

/// What `begin_variants` does with the recorded variants: `Ok(true)` = record `requested`
/// (in place of any recorded, the store holding no epochs), `Ok(false)` = the same variants,
/// [`StateError::DifferentRun`] naming every difference otherwise.
pub(super) fn record_variants(
    recorded: &[VariantSpec],
    requested: &[VariantSpec],
    has_epochs: bool,
) -> Result<bool, StateError> {
    check_variant_names(requested)?;
    let differences = variant_differences(recorded, requested);
    if differences.is_empty() {
        Ok(false)
    } else if has_epochs {
        Err(StateError::DifferentRun { differences })
    } else {
        if !recorded.is_empty() {
            tracing::info!(
                differences = %differences.join("; "),
                "state store holds no epochs: recording the new backtest variants"
            );
        }
        Ok(true)
    }
}

/// What the variant ledgers hold, as read by `begin_variants`: each row's detection by
/// variant, and each ledger's `(variant, row count, highest seq)`.
#[derive(Default)]
pub(super) struct VariantLedgers {
    pub(super) emitted: HashMap<String, HashSet<DetectionKey>>,
    pub(super) sizes: Vec<(String, i64, i64)>,
}

impl VariantLedgers {
    /// Adds one ledger row's detection (an unknown pattern id is an inconsistency).
    pub(super) fn add(
        &mut self,
        variant: &str,
        pattern_id: &str,
        customer: &str,
        merchant: &str,
    ) -> Result<(), StateError> {
        let key = detection_key(pattern_id, customer, merchant)?;
        if let Some(keys) = self.emitted.get_mut(variant) {
            keys.insert(key);
        } else {
            self.emitted
                .insert(variant.to_string(), HashSet::from([key]));
        }
        Ok(())
    }

    /// Each of `variants`' ledger state, in order. Every ledger must belong to a recorded
    /// variant and be numbered from 0 without gaps (rows are only ever appended in order).
    pub(super) fn recovered(
        mut self,
        variants: &[VariantSpec],
    ) -> Result<Vec<VariantRecovered>, StateError> {
        let mut lengths = HashMap::new();
        for (name, count, max_seq) in &self.sizes {
            if !variants.iter().any(|v| &v.name == name) {
                return Err(StateError::Inconsistent(format!(
                    "the state store holds ledger rows of backtest variant {name:?}, which is \
                     not among its recorded variants ({})",
                    variant_names(variants)
                )));
            }
            if max_seq.checked_add(1) != Some(*count) {
                return Err(StateError::Inconsistent(format!(
                    "the ledger of backtest variant {name:?} holds {count} rows numbered up to \
                     {max_seq}"
                )));
            }
            lengths.insert(name.as_str(), sql_u64(*count, "variant ledger length")?);
        }
        Ok(variants
            .iter()
            .map(|v| VariantRecovered {
                emitted: self.emitted.remove(&v.name).unwrap_or_default(),
                next_seq: lengths.get(v.name.as_str()).copied().unwrap_or(0),
            })
            .collect())
    }
}

/// Refuses an epoch's variant rows for a variant `begin_variants` did not record (`recorded`
/// = its names, `None` before it ran).
pub(super) fn check_variant_rows(
    recorded: Option<&[String]>,
    rows: &[VariantRows],
) -> Result<(), StateError> {
    for VariantRows { variant, .. } in rows {
        match recorded {
            Some(names) if names.contains(variant) => {}
            Some(_) => {
                return Err(StateError::Inconsistent(format!(
                    "asked to commit ledger rows of backtest variant {variant:?}, which is not \
                     recorded"
                )))
            }
            None => {
                return Err(StateError::Inconsistent(format!(
                    "asked to commit ledger rows of backtest variant {variant:?} before \
                     begin_variants recorded the variants"
                )))
            }
        }
    }
    Ok(())
}

/// The error for a variant the store does not record.
pub(super) fn unknown_variant(variant: &str) -> StateError {
    StateError::Inconsistent(format!(
        "no backtest variant named {variant:?} is recorded in this state store"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_keys_need_a_known_pattern() {
        let key = detection_key("PatId2", "c1", "m1").unwrap();
        assert_eq!(
            (key.pattern, key.customer.as_str(), key.merchant.as_str()),
            (Pattern::Child, "c1", "m1")
        );
        assert!(matches!(
            detection_key("PatId9", "c1", "m1"),
            Err(StateError::Inconsistent(m)) if m.contains("PatId9")
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

    fn spec(name: &str, thresholds: &str) -> VariantSpec {
        VariantSpec {
            name: name.into(),
            thresholds: thresholds.into(),
        }
    }

    fn refusal(recorded: &[VariantSpec], requested: &[VariantSpec]) -> String {
        match record_variants(recorded, requested, true) {
            Err(e @ StateError::DifferentRun { .. }) => e.to_string(),
            other => panic!("expected DifferentRun, got {other:?}"),
        }
    }

    #[test]
    fn variant_decisions() {
        let ab = [spec("a", "t1"), spec("b.60", "t2")];
        // Nothing recorded: record; the same: nothing to do, epochs or not.
        assert!(record_variants(&[], &ab, false).unwrap());
        assert!(!record_variants(&[], &[], true).unwrap());
        assert!(!record_variants(&ab, &ab, true).unwrap());
        // Other variants on a store without epochs replace the recorded ones.
        assert!(record_variants(&ab, &ab[..1], false).unwrap());
        assert!(record_variants(&ab, &[], false).unwrap());
    }

    #[test]
    fn variant_refusals_name_the_difference() {
        let ab = [spec("a", "t1"), spec("b.60", "t2")];
        let m = refusal(&[], &ab);
        assert!(
            m.contains("committed without backtest variants, now with a, b.60"),
            "{m}"
        );
        assert!(m.contains("a new run needs a new state store"), "{m}");
        let m = refusal(&ab, &[]);
        assert!(
            m.contains("committed with backtest variants a, b.60, now without"),
            "{m}"
        );
        let m = refusal(&ab, &[ab[1].clone(), ab[0].clone()]);
        assert!(
            m.contains("the backtest variants were a, b.60, now b.60, a"),
            "{m}"
        );
        let m = refusal(&ab, &[spec("a", "t1"), spec("c", "t2")]);
        assert!(m.contains("were a, b.60, now a, c"), "{m}");
        let m = refusal(&ab, &[spec("a", "t1")]);
        assert!(m.contains("were a, b.60, now a"), "{m}");
        let m = refusal(&ab, &[spec("a", "t9"), spec("b.60", "t8")]);
        assert!(
            m.contains("the thresholds of backtest variant a were t1, now t9")
                && m.contains("the thresholds of backtest variant b.60 were t2, now t8"),
            "{m}"
        );
    }

    #[test]
    fn variant_names_are_checked() {
        for bad in ["", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(
                matches!(
                    record_variants(&[], &[spec(bad, "t")], false),
                    Err(StateError::Inconsistent(m)) if m.contains("invalid")
                ),
                "{bad:?}"
            );
        }
        assert!(record_variants(&[], &[spec(&"x".repeat(64), "t")], false).unwrap());
        assert!(matches!(
            record_variants(&[], &[spec("a", "t1"), spec("a", "t2")], false),
            Err(StateError::Inconsistent(m)) if m.contains("twice")
        ));
    }

    #[test]
    fn variant_ledgers_are_recovered_in_order_and_checked() {
        let ab = [spec("a", "t1"), spec("b", "t2")];
        let mut ledgers = VariantLedgers::default();
        ledgers.add("b", "PatId2", "c1", "m1").unwrap();
        ledgers.add("b", "PatId3", "", "m2").unwrap();
        ledgers.sizes = vec![("b".into(), 2, 1)];
        let recovered = ledgers.recovered(&ab).unwrap();
        assert_eq!(recovered[0], VariantRecovered::default());
        assert_eq!(recovered[1].next_seq, 2);
        let mut keys: Vec<_> = recovered[1]
            .emitted
            .iter()
            .map(|k| (k.pattern, k.customer.to_string(), k.merchant.to_string()))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                (Pattern::Child, "c1".to_string(), "m1".to_string()),
                (Pattern::DeiNeeded, String::new(), "m2".to_string())
            ]
        );

        let mut bad = VariantLedgers::default();
        assert!(matches!(
            bad.add("a", "PatId9", "c", "m"),
            Err(StateError::Inconsistent(m)) if m.contains("PatId9")
        ));
        bad.sizes = vec![("a".into(), 2, 2)];
        assert!(matches!(
            bad.recovered(&ab),
            Err(StateError::Inconsistent(m)) if m.contains("2 rows numbered up to 2")
        ));
        let orphan = VariantLedgers {
            sizes: vec![("z".into(), 1, 0)],
            ..VariantLedgers::default()
        };
        assert!(matches!(
            orphan.recovered(&ab),
            Err(StateError::Inconsistent(m)) if m.contains("\"z\"")
        ));
    }

    #[test]
    fn variant_rows_need_a_recorded_variant() {
        let rows = |name: &str| VariantRows {
            variant: name.into(),
            rows: Vec::new(),
        };
        let names = vec!["a".to_string()];
        assert!(check_variant_rows(Some(&names), &[rows("a")]).is_ok());
        assert!(check_variant_rows(None, &[]).is_ok());
        assert!(matches!(
            check_variant_rows(Some(&names), &[rows("a"), rows("b")]),
            Err(StateError::Inconsistent(m)) if m.contains("\"b\"")
        ));
        assert!(matches!(
            check_variant_rows(None, &[rows("a")]),
            Err(StateError::Inconsistent(m)) if m.contains("begin_variants")
        ));
    }
}
