//! The alert volume of a run's variants (a live run's shadow variants, or a backtest's), as
//! `/api/status` shows it beside the baseline's: detections by pattern in this run and in
//! the last hour of wall-clock time; and the [`Detections`] figure both use. Counted once per
//! committed epoch, never per row.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::model::Pattern;
use crate::sinks::state::LedgerRow;

#[derive(Clone, Debug, Serialize)]
pub struct Detections {
    pub total: u64,
    pub by_pattern: BTreeMap<String, u64>,
    /// Committed in the last hour of wall-clock time (a running process's only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_hour: Option<u64>,
}

impl Detections {
    /// Of ledger rows: every pattern present (0 when none).
    pub fn of<'a>(rows: impl Iterator<Item = &'a LedgerRow>) -> Detections {
        let mut by_pattern = zero_patterns();
        for row in rows {
            *by_pattern.entry(row.pattern.id().to_string()).or_default() += 1;
        }
        Detections {
            total: by_pattern.values().sum(),
            by_pattern,
            last_hour: None,
        }
    }
}

/// Detections by pattern, every pattern present.
pub(crate) fn zero_patterns() -> BTreeMap<String, u64> {
    Pattern::ALL
        .iter()
        .map(|p| (p.id().to_string(), 0))
        .collect()
}

/// The window of [`VariantVolume::last_hour`].
const HOUR_MS: i64 = 3_600_000;

/// A variant the run computes (`run.variants` of the document).
#[derive(Clone, Debug, Serialize)]
pub struct RunVariant {
    pub name: String,
    pub thresholds: serde_json::Value,
}

/// One variant's volume in the document (`variants`).
#[derive(Clone, Debug, Serialize)]
pub struct VariantVolume {
    pub name: String,
    pub thresholds: serde_json::Value,
    /// In this run.
    pub detections: Detections,
    /// Committed in the last hour (wall clock).
    pub last_hour: u64,
}

/// Detections counted by pattern, and per committed epoch for the last hour.
#[derive(Debug)]
pub(crate) struct Tally {
    by_pattern: BTreeMap<String, u64>,
    /// (committed at, detections) of the epochs of the last hour, oldest first.
    recent: VecDeque<(i64, u64)>,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            by_pattern: zero_patterns(),
            recent: VecDeque::new(),
        }
    }
}

impl Tally {
    /// An epoch committed at `at_ms` with these new rows.
    pub(crate) fn add(&mut self, rows: &[LedgerRow], at_ms: i64) {
        for row in rows {
            *self
                .by_pattern
                .entry(row.pattern.id().to_string())
                .or_default() += 1;
        }
        if !rows.is_empty() {
            self.recent.push_back((at_ms, rows.len() as u64));
        }
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| *t <= at_ms - HOUR_MS)
        {
            self.recent.pop_front();
        }
    }

    pub(crate) fn detections(&self) -> Detections {
        Detections {
            total: self.by_pattern.values().sum(),
            by_pattern: self.by_pattern.clone(),
            last_hour: None,
        }
    }

    /// Detections committed in the hour before `now_ms`.
    pub(crate) fn last_hour(&self, now_ms: i64) -> u64 {
        self.recent
            .iter()
            .filter(|(t, _)| *t > now_ms - HOUR_MS)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The variants' tallies, in the run's order.
#[derive(Debug, Default)]
pub(crate) struct Variants(Vec<(RunVariant, Tally)>);

impl Variants {
    pub(crate) fn of(run: &[RunVariant]) -> Variants {
        Variants(run.iter().map(|v| (v.clone(), Tally::default())).collect())
    }

    /// `name`'s new rows of an epoch committed at `at_ms` (a name the run does not have is
    /// ignored).
    pub(crate) fn add(&mut self, name: &str, rows: &[LedgerRow], at_ms: i64) {
        if let Some((_, tally)) = self.0.iter_mut().find(|(v, _)| v.name == name) {
            tally.add(rows, at_ms);
        }
    }

    /// The document's `variants` (`None` without variants).
    pub(crate) fn volumes(&self, now_ms: i64) -> Option<Vec<VariantVolume>> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(v, tally)| VariantVolume {
                    name: v.name.clone(),
                    thresholds: v.thresholds.clone(),
                    detections: tally.detections(),
                    last_hour: tally.last_hour(now_ms),
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pattern: Pattern) -> LedgerRow {
        LedgerRow {
            seq: 0,
            epoch: 0,
            pattern,
            customer_name: "c".into(),
            merchant_id: "m".into(),
            y_start_time: String::new(),
            detection_time: String::new(),
            file_seq: None,
            evidence: None,
        }
    }

    #[test]
    fn volumes_count_by_pattern_and_the_last_hour_only() {
        let run = [RunVariant {
            name: "strict".into(),
            thresholds: serde_json::json!({"child-min-txns": 100}),
        }];
        let mut variants = Variants::of(&run);
        assert_eq!(Variants::of(&[]).volumes(0).map(|v| v.len()), None);
        let start = 1_000_000_000;
        variants.add("strict", &[row(Pattern::Child), row(Pattern::Child)], start);
        variants.add("other", &[row(Pattern::Upgrade)], start);
        assert_eq!(
            variants.volumes(start + HOUR_MS - 1).unwrap()[0].last_hour,
            2
        );
        variants.add("strict", &[row(Pattern::DeiNeeded)], start + HOUR_MS);
        let volumes = variants.volumes(start + HOUR_MS).unwrap();
        assert_eq!(volumes.len(), 1);
        let v = &volumes[0];
        assert_eq!(v.detections.total, 3);
        assert_eq!(v.detections.by_pattern["PatId2"], 2);
        assert_eq!(v.detections.by_pattern["PatId1"], 0);
        assert_eq!(v.last_hour, 1, "the first epoch is an hour old");
    }
}
