//! The epoch batch: everything the committer needs to commit one epoch, and nothing else.
//!
//! Worker 0 gathers the dataflow's outputs (detection changes, `N(m)` changes) and every
//! worker's share report by epoch ([`Gathered`]); once the dataflow has finished an epoch it
//! takes them out as one [`EpochBatch`] with the chunk's identity, and the batch says whether
//! every worker contributed its share ([`EpochBatch::is_complete`]). The committer takes only
//! batches.
//!
//! Worker 0 also keeps the merchant-level values evidence quotes (`N(m)`, PatId1's
//! percentiles per threshold set) as running values from their changes, and gives every
//! detection that starts holding its [`Evidence`] as of its epoch.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::dataflow::percentile::CountPercentile;
use crate::dataflow::variants::SetId;
use crate::dataflow::{Epoch, Facts, Holding, MerchantFact, ShareReport};
use crate::model::{DetectionKey, Evidence, Name, Reject, Weight, MICROS_PER_UNIT};
use crate::sources::landing::Chunk;

/// One threshold set's detection changes of an epoch.
#[derive(Debug, Default)]
pub struct SetChanges {
    /// Detection → summed diff at this epoch (+1 = starts holding).
    pub detections: BTreeMap<DetectionKey, isize>,
    /// The evidence of the detections that start holding.
    pub evidence: BTreeMap<DetectionKey, Evidence>,
}

/// One epoch, ready to commit.
#[derive(Debug)]
pub struct EpochBatch {
    /// The epoch = the chunk's index.
    pub epoch: Epoch,
    /// The chunk's key, e.g. `chunk-000007.csv`.
    pub chunk_key: String,
    /// The BLAKE3 digest of the chunk's bytes (SPEC §6: append-only landing).
    pub chunk_digest: String,
    /// When the chunk became visible (its last-modified time), in ms since the epoch.
    pub visible_ms: i64,
    /// When a worker took up the chunk (for the epoch latency).
    pub taken_at: Instant,
    /// Worker 0: from taking up the chunk to this batch being ready (the epoch's compute time).
    pub computed_in: Option<Duration>,
    /// Per threshold set (0 = the baseline, then the variants): its detection changes.
    pub sets: Vec<SetChanges>,
    /// Merchant → change of `N(m)` (Σ value·diff over the count collection's updates).
    pub counter_deltas: BTreeMap<Name, i64>,
    /// One per worker that parsed its share of the chunk.
    pub reports: Vec<ShareReport>,
    /// The state a checkpoint restored at this (committed) epoch, not a chunk's.
    pub restored: bool,
}

impl EpochBatch {
    /// An epoch of `chunk` with nothing gathered yet, for `sets` threshold sets.
    pub fn new(chunk: &Chunk, taken_at: Instant, sets: usize) -> EpochBatch {
        EpochBatch {
            epoch: chunk.index,
            chunk_key: chunk.key.clone(),
            chunk_digest: chunk.digest.clone(),
            visible_ms: chunk.last_modified_ms,
            taken_at,
            computed_in: None,
            sets: (0..sets.max(1)).map(|_| SetChanges::default()).collect(),
            counter_deltas: BTreeMap::new(),
            reports: Vec::new(),
            restored: false,
        }
    }

    /// Whether all `workers` workers of the run contributed their share: only a complete
    /// epoch may be committed (never half an epoch).
    pub(crate) fn is_complete(&self, workers: usize) -> bool {
        self.reports.len() == workers
    }

    /// Rows accepted and rejected over every share.
    pub(crate) fn row_counts(&self) -> (u64, u64) {
        self.reports
            .iter()
            .fold((0, 0), |(a, r), s| (a + s.accepted, r + s.rejected))
    }

    /// The rejected rows of every share in line order. Records separated by a lone `\r`
    /// share a line number: those are ordered by text, so that the rejects file is the same
    /// for any number of workers and processes.
    pub(crate) fn take_rejects(&mut self) -> Vec<Reject> {
        let mut rows: Vec<Reject> = self
            .reports
            .iter_mut()
            .flat_map(|s| std::mem::take(&mut s.rejects))
            .collect();
        rows.sort_by(|a, b| (a.line, &a.raw, &a.reason).cmp(&(b.line, &b.raw, &b.reason)));
        rows
    }
}

/// The dataflow's outputs of one epoch, as they arrive on worker 0.
#[derive(Default)]
struct Outputs {
    detections: BTreeMap<(SetId, DetectionKey), isize>,
    /// The facts of the records inserted at this epoch (a detection that starts holding has
    /// exactly one).
    facts: HashMap<(SetId, DetectionKey), Facts>,
    merchant_facts: Vec<(SetId, Name, MerchantFact, isize)>,
    counter_deltas: BTreeMap<Name, i64>,
    reports: Vec<ShareReport>,
}

/// PatId1's percentiles of one merchant under one threshold set.
#[derive(Clone, Copy, Debug, Default)]
struct Percentiles {
    count: Option<CountPercentile>,
    weight: Option<Weight>,
}

/// Outputs gathered on worker 0, by epoch, until their epoch is complete in the dataflow, and
/// the running merchant-level values evidence quotes.
pub(crate) struct Gathered {
    sets: usize,
    epochs: BTreeMap<Epoch, Outputs>,
    /// `N(m)` after the last batch taken.
    merchant_txns: HashMap<Name, i64>,
    percentiles: HashMap<(SetId, Name), Percentiles>,
}

impl Gathered {
    /// For a dataflow computing `sets` threshold sets.
    pub(crate) fn new(sets: usize) -> Gathered {
        Gathered {
            sets,
            epochs: BTreeMap::new(),
            merchant_txns: HashMap::new(),
            percentiles: HashMap::new(),
        }
    }

    pub(crate) fn add_detection(&mut self, epoch: Epoch, holding: &Holding, diff: isize) {
        let outputs = self.epochs.entry(epoch).or_default();
        let key = (holding.set, holding.key.clone());
        if diff > 0 {
            outputs.facts.insert(key.clone(), holding.facts);
        }
        *outputs.detections.entry(key).or_default() += diff;
    }

    pub(crate) fn add_merchant_fact(
        &mut self,
        epoch: Epoch,
        fact: &(SetId, Name, MerchantFact),
        diff: isize,
    ) {
        let outputs = self.epochs.entry(epoch).or_default();
        outputs
            .merchant_facts
            .push((fact.0, fact.1.clone(), fact.2, diff));
    }

    pub(crate) fn add_count(&mut self, epoch: Epoch, merchant: &Name, change: i64) {
        let outputs = self.epochs.entry(epoch).or_default();
        *outputs.counter_deltas.entry(merchant.clone()).or_default() += change;
    }

    pub(crate) fn add_report(&mut self, epoch: Epoch, report: &ShareReport) {
        let outputs = self.epochs.entry(epoch).or_default();
        outputs.reports.push(report.clone());
    }

    /// Takes out everything gathered for epochs before `next` as `chunk`'s batch. Once the
    /// dataflow's frontier has passed the chunk's epoch only that epoch can be there; earlier
    /// ones are merged defensively, in epoch order.
    pub(crate) fn take_batch(
        &mut self,
        chunk: &Chunk,
        next: Epoch,
        taken_at: Instant,
    ) -> EpochBatch {
        let rest = self.epochs.split_off(&next);
        let done = std::mem::replace(&mut self.epochs, rest);
        let mut batch = EpochBatch::new(chunk, taken_at, self.sets);
        for (_, outputs) in done {
            self.apply_merchant_values(&outputs);
            for (merchant, change) in outputs.counter_deltas {
                *batch.counter_deltas.entry(merchant).or_default() += change;
            }
            for ((set, key), diff) in outputs.detections {
                let Some(changes) = batch.sets.get_mut(set as usize) else {
                    continue;
                };
                if diff > 0 {
                    let facts = outputs.facts.get(&(set, key.clone()));
                    match facts.and_then(|f| self.evidence(set, &key, f)) {
                        Some(evidence) => changes.evidence.insert(key.clone(), evidence),
                        None => changes.evidence.remove(&key),
                    };
                }
                *changes.detections.entry(key).or_default() += diff;
            }
            batch.reports.extend(outputs.reports);
        }
        batch
    }

    /// Brings `N(m)` and the percentiles up to the epoch of `outputs`: retractions first, so
    /// that a value replaced at the epoch ends as the new one.
    fn apply_merchant_values(&mut self, outputs: &Outputs) {
        for (merchant, change) in &outputs.counter_deltas {
            *self.merchant_txns.entry(merchant.clone()).or_default() += change;
        }
        let mut facts: Vec<&(SetId, Name, MerchantFact, isize)> =
            outputs.merchant_facts.iter().collect();
        facts.sort_by_key(|f| f.3 > 0);
        for (set, merchant, fact, diff) in facts {
            let entry = self
                .percentiles
                .entry((*set, merchant.clone()))
                .or_default();
            match (fact, *diff > 0) {
                (MerchantFact::CountPercentile(p), true) => entry.count = Some(*p),
                (MerchantFact::CountPercentile(p), false) if entry.count == Some(*p) => {
                    entry.count = None
                }
                (MerchantFact::WeightPercentile(w), true) => entry.weight = Some(*w),
                (MerchantFact::WeightPercentile(w), false) if entry.weight == Some(*w) => {
                    entry.weight = None
                }
                _ => {}
            }
        }
    }

    /// The evidence of `key` starting to hold under `set` with `facts`, as of the last epoch
    /// applied; `None` when a merchant-level value is missing (not expected: it arrives at the
    /// same epoch as the detection).
    fn evidence(&self, set: SetId, key: &DetectionKey, facts: &Facts) -> Option<Evidence> {
        Some(match *facts {
            Facts::Upgrade {
                customer_txns,
                weight,
            } => {
                let percentiles = self.percentiles.get(&(set, key.merchant.clone()))?;
                Evidence::Upgrade {
                    merchant_txns: *self.merchant_txns.get(&key.merchant)?,
                    customer_txns,
                    count_percentile: percentiles.count?.value(),
                    weight: weight.into_inner(),
                    weight_percentile: percentiles.weight?.into_inner(),
                }
            }
            Facts::Child {
                customer_txns,
                amount,
            } => Evidence::Child {
                customer_txns,
                mean_amount: mean_amount(amount, customer_txns),
            },
            Facts::DeiNeeded { female, male } => Evidence::DeiNeeded {
                female_customers: female,
                male_customers: male,
            },
        })
    }
}

/// `amount / n` (micro-units) in units, rounded half up to six decimals.
fn mean_amount(amount: i128, n: i64) -> f64 {
    if n <= 0 {
        return 0.0;
    }
    let n = n as i128;
    let micros = (2 * amount + n).div_euclid(2 * n);
    micros as f64 / MICROS_PER_UNIT as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_amounts_round_half_up_to_six_decimals() {
        assert_eq!(mean_amount(10_000_000, 4), 2.5);
        // 1/3 of a micro-unit rounds down, 2/3 up, 1/2 up.
        assert_eq!(mean_amount(1, 3), 0.0);
        assert_eq!(mean_amount(2, 3), 0.000001);
        assert_eq!(mean_amount(1, 2), 0.000001);
        assert_eq!(mean_amount(5, 0), 0.0);
    }
}
