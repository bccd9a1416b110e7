//! The rules both state stores follow, free of SQL: detection keys from ledger rows, `BIGINT`
//! conversions, merged counter deltas, the schema-version checks, the backtest-variant
//! decisions and which checkpoints to forget.

use std::collections::{HashMap, HashSet};

use super::schema::MIGRATIONS;
use super::store::{VariantRecovered, VariantRows, VariantSpec};
use crate::error::StateError;
use crate::model::{DetectionKey, Pattern};
use crate::thresholds::VariantName;

/// The checkpoints `record_checkpoint` removes: all but the newest `keep` (at least 1).
pub(super) fn checkpoints_beyond(mut epochs: Vec<u64>, keep: usize) -> Vec<u64> {
    epochs.sort_unstable_by(|a, b| b.cmp(a));
    epochs.into_iter().skip(keep.max(1)).collect()
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

/// Refuses variant names that could not name a ledger and a folder `variants/<name>/` (the
/// one rule, [`VariantName::parse`]) and repeated names: the caller validates its options, so
/// either is a bug.
fn check_variant_names(variants: &[VariantSpec]) -> Result<(), StateError> {
    let mut seen = HashSet::new();
    for v in variants {
        let name = v.name.as_str();
        if let Err(why) = VariantName::parse(name) {
            return Err(StateError::Inconsistent(format!(
                "invalid variant name {name:?}: {why}"
            )));
        }
        if !seen.insert(name) {
            return Err(StateError::Inconsistent(format!(
                "variant {name:?} is given twice"
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
                "its epochs were committed without variants, now with {} (variants \
                 are computed from the run's first chunk on)",
                variant_names(requested)
            )]
        }
        (false, true) => {
            return vec![format!(
                "its epochs were committed with variants {}, now without",
                variant_names(recorded)
            )]
        }
        (false, false) => {}
    }
    let names = |vs: &[VariantSpec]| vs.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
    if names(recorded) != names(requested) {
        return vec![format!(
            "the variants were {}, now {} (same names in the same order needed)",
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
                "the thresholds of variant {} were {}, now {}",
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
                "state store holds no epochs: recording the new variants"
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
                    "the state store holds ledger rows of variant {name:?}, which is \
                     not among its recorded variants ({})",
                    variant_names(variants)
                )));
            }
            if max_seq.checked_add(1) != Some(*count) {
                return Err(StateError::Inconsistent(format!(
                    "the ledger of variant {name:?} holds {count} rows numbered up to \
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
                    "asked to commit ledger rows of variant {variant:?}, which is not \
                     recorded"
                )))
            }
            None => {
                return Err(StateError::Inconsistent(format!(
                    "asked to commit ledger rows of variant {variant:?} before \
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
        "no variant named {variant:?} is recorded in this state store"
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
            m.contains("committed without variants, now with a, b.60"),
            "{m}"
        );
        assert!(m.contains("a new run needs a new state store"), "{m}");
        let m = refusal(&ab, &[]);
        assert!(
            m.contains("committed with variants a, b.60, now without"),
            "{m}"
        );
        let m = refusal(&ab, &[ab[1].clone(), ab[0].clone()]);
        assert!(m.contains("the variants were a, b.60, now b.60, a"), "{m}");
        let m = refusal(&ab, &[spec("a", "t1"), spec("c", "t2")]);
        assert!(m.contains("were a, b.60, now a, c"), "{m}");
        let m = refusal(&ab, &[spec("a", "t1")]);
        assert!(m.contains("were a, b.60, now a"), "{m}");
        let m = refusal(&ab, &[spec("a", "t9"), spec("b.60", "t8")]);
        assert!(
            m.contains("the thresholds of variant a were t1, now t9")
                && m.contains("the thresholds of variant b.60 were t2, now t8"),
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
