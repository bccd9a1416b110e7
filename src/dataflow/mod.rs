//! The differential computation (SPEC §4). Transactions enter at time = chunk index, each
//! worker's share pre-aggregated per `(c, m)` pair and joined with the (static, broadcast)
//! importance weights on the way in; every aggregate is a differential collection, so the
//! work of an epoch follows the rows that changed, not the history.
//!
//! | file | owns |
//! |---|---|
//! | `aggregates.rs` | `N(m)`; per `(c, m)` the running totals behind `n(c,m)`, `A(c,m)`, `W(c,m)` and the genders seen, as a stream of changes |
//! | `pat1_upgrade.rs` | PatId1: percentiles per large merchant |
//! | `pat2_child.rs` | PatId2: many small transactions |
//! | `pat3_dei_needed.rs` | PatId3: distinct female vs male customers |
//! | `percentile.rs` | `percentile_cont`, exact for counts |
//! | `arranged.rs` | plumbing of the operators that read arranged batches directly |
//! | `detections.rs` | what the patterns output: detections with their facts, PatId1's merchant percentiles |
//! | `variants.rs` | threshold sets: the baseline and the backtest variants in one dataflow |
//!
//! The dataflow computes several threshold sets at once (set 0 = the run's thresholds, then
//! the backtest variants); the aggregates are shared by all of them (`variants.rs`).
//!
//! The dataflow's output is the set of detections that *hold* after each epoch, per threshold
//! set, each with the pair- or merchant-level values it holds with ([`Facts`]): they change
//! only when the pair (or, for PatId3, the merchant) changes, so carrying them costs work
//! that follows the chunk. The merchant-level values of PatId1's evidence (`N(m)` and the two
//! percentiles) change with every epoch of a large merchant and would touch every detection
//! held there, so they travel separately, as changes ([`MerchantFact`]), and worker 0 joins
//! them to the detections that start holding (`runtime::batch`). "Emit once,
//! at the first epoch it holds" is not a collection property (collections retract), so it is
//! the committing writer's job (`runtime::writer`), backed by the ledger.

pub mod aggregates;
mod arranged;
pub mod detections;
pub mod pat1_upgrade;
pub mod pat2_child;
pub mod pat3_dei_needed;
pub mod percentile;
pub mod variants;

use std::sync::Arc;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;

use self::aggregates::{Pair, PairSums, PairTrace, ShareDeltas, WeightTable};
use self::variants::SetId;
use crate::model::{LabelCounts, Name, Reject, Thresholds, Txn};

pub use self::detections::{Facts, Holding, MerchantFact};

pub use crate::model::Epoch;

/// What one worker reports about its share of an epoch's chunk. The writer commits an epoch
/// only when every worker's report has arrived, so a stop or failure never commits half an epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShareReport {
    pub worker: usize,
    pub accepted: u64,
    pub rejected: u64,
    /// This share's rejected rows, in line order.
    pub rejects: Vec<Reject>,
    /// The `fraud` labels of this share's accepted rows.
    pub labels: LabelCounts,
}

/// The collections the writer consumes.
pub(crate) struct Outputs<'s> {
    /// Detections holding after each epoch, per threshold set (a set per threshold set; the
    /// writer takes insertions).
    pub detections: VecCollection<'s, Epoch, Holding>,
    /// `(set, m, fact)`: PatId1's percentiles per threshold set and merchant.
    pub merchant_facts: VecCollection<'s, Epoch, (SetId, Name, MerchantFact)>,
    /// `(m, N(m))`: its changes at time `k` give epoch `k`'s counter deltas.
    pub merchant_counts: VecCollection<'s, Epoch, (Name, i64)>,
    /// The per-pair totals' trace, which a checkpoint reads.
    pub pair_trace: PairTrace,
}

/// The dataflow's inputs, on one worker.
pub(crate) struct Inputs {
    /// Per `(c, m)` increments of this worker's share, totals in the difference type.
    pairs: InputSession<Epoch, Pair, PairSums>,
    /// Transactions per merchant of this worker's share: the same collection as the
    /// transactions' merchants, with ~50 updates a chunk instead of 10,000.
    merchants: InputSession<Epoch, Name, isize>,
    weights: Arc<WeightTable>,
}

impl Inputs {
    /// Builds the detection dataflow in `scope` for the threshold sets `sets` (the baseline
    /// first) and returns its inputs and outputs. Every worker of the process shares
    /// `weights`, the broadcast importance table.
    pub(crate) fn build<'s>(
        scope: Scope<'s, Epoch>,
        weights: Arc<WeightTable>,
        sets: &[Thresholds],
    ) -> (Inputs, Outputs<'s>) {
        let (pair_in, pair_deltas) = scope.new_collection::<Pair, PairSums>();
        let (merchant_in, merchant_txns) = scope.new_collection::<Name, isize>();
        let outputs = detect(pair_deltas, merchant_txns, sets);
        let inputs = Inputs {
            pairs: pair_in,
            merchants: merchant_in,
            weights,
        };
        (inputs, outputs)
    }

    /// Adds this worker's accepted transactions of the current epoch.
    pub(crate) fn insert_share(&mut self, txns: Vec<Txn>) {
        let deltas = ShareDeltas::of(txns, &self.weights);
        for (pair, sums) in deltas.pairs {
            self.pairs.update(pair, sums);
        }
        for (merchant, n) in deltas.merchants {
            self.merchants.update(merchant, n);
        }
    }

    /// Adds a checkpoint's part: per-pair totals accumulated up to the current epoch (the
    /// merchants' counts follow from them). Any part may go to any worker: the dataflow sums.
    pub(crate) fn insert_totals(&mut self, totals: Vec<(Pair, PairSums)>) {
        let mut merchants = foldhash::HashMap::<Name, isize>::default();
        for ((customer, merchant), sums) in totals {
            *merchants.entry(merchant.clone()).or_default() += sums.n as isize;
            self.pairs.update((customer, merchant), sums);
        }
        for (merchant, n) in merchants {
            self.merchants.update(merchant, n);
        }
    }

    pub(crate) fn advance_to(&mut self, epoch: Epoch) {
        self.pairs.advance_to(epoch);
        self.merchants.advance_to(epoch);
    }

    pub(crate) fn flush(&mut self) {
        self.pairs.flush();
        self.merchants.flush();
    }
}

/// Builds the detection dataflow over the per-pair increments (`pair_deltas`, totals in the
/// difference type) and the transactions' merchants, for every threshold set of `sets`.
pub(crate) fn detect<'s>(
    pair_deltas: VecCollection<'s, Epoch, Pair, PairSums>,
    merchant_txns: VecCollection<'s, Epoch, Name>,
    sets: &[Thresholds],
) -> Outputs<'s> {
    let merchant_counts = aggregates::merchant_counts(merchant_txns);
    let (changes, pair_trace) = aggregates::pair_changes(pair_deltas);

    let upgrade = pat1_upgrade::detect(merchant_counts.clone(), changes.clone(), sets);
    let child = pat2_child::detect(changes.clone(), sets);
    let dei = pat3_dei_needed::detect(changes, sets);

    Outputs {
        detections: upgrade.detections.concat(child).concat(dei),
        merchant_facts: upgrade.merchant_facts,
        merchant_counts,
        pair_trace,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;

    use differential_dataflow::consolidation::consolidate;
    use timely::dataflow::ProbeHandle;

    use super::*;
    use crate::model::{Amount, Fraction, Gender, Pattern, Weight, WeightKey, MICROS_PER_UNIT};

    /// Detections and counter changes, as `(epoch, what, diff)`, consolidated.
    type Observed = (
        Vec<(Epoch, Holding, isize)>,
        Vec<(Epoch, (Name, i64), isize)>,
    );

    fn thresholds() -> Thresholds {
        Thresholds {
            upgrade_min_merchant_txns: 30,
            upgrade_count_percentile: Fraction::from_millionths(700_000),
            upgrade_weight_percentile: Fraction::from_millionths(400_000),
            child_min_txns: 4,
            child_max_avg_amount: Amount::from_micros(30 * MICROS_PER_UNIT),
            dei_min_female_customers: 2,
        }
    }

    /// Random epochs of transactions over few customers and merchants (dense collisions),
    /// and weights for part of their keys.
    fn workload(seed: u64) -> (Vec<Vec<Txn>>, Vec<(WeightKey, Weight)>) {
        let mut state = seed | 1;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut weights = BTreeMap::new();
        let epochs = (0..8)
            .map(|_| {
                (0..(20 + next(60)))
                    .map(|_| {
                        let txn = Txn {
                            customer: Name::new(&format!("C{}", next(12))),
                            merchant: Name::new(&format!("M{}", next(3))),
                            category: Name::new(["es_food", "es_health"][next(2) as usize]),
                            gender: [Gender::Female, Gender::Male, Gender::Unknown]
                                [next(3) as usize],
                            amount: (next(60) as i64 + 1) * MICROS_PER_UNIT / 2,
                        };
                        if next(3) > 0 {
                            let key = WeightKey {
                                customer: txn.customer.clone(),
                                merchant: txn.merchant.clone(),
                                category: txn.category.clone(),
                            };
                            let w = Weight::from(next(8) as f64 / 4.0);
                            weights.entry(key).or_insert(w);
                        }
                        txn
                    })
                    .collect()
            })
            .collect();
        (epochs, weights.into_iter().collect())
    }

    /// Runs the dataflow on one worker; `step_each_epoch` steps until each epoch is complete
    /// before inserting the next (as the workers do), otherwise every epoch is inserted
    /// first and the operators see batches spanning several times.
    fn run(
        epochs: &[Vec<Txn>],
        weights: &[(WeightKey, Weight)],
        step_each_epoch: bool,
        sets: &[Thresholds],
    ) -> Observed {
        let epochs = epochs.to_vec();
        let sets = sets.to_vec();
        let table = Arc::new(WeightTable::new(weights));
        timely::execute_directly(move |worker| {
            let detections = Rc::new(RefCell::new(Vec::new()));
            let counts = Rc::new(RefCell::new(Vec::new()));
            let probe = ProbeHandle::new();
            let (mut inputs, ()) = worker.dataflow::<Epoch, _, _>(|scope| {
                let (inputs, outputs) = Inputs::build(scope, table, &sets);
                let sink = detections.clone();
                outputs
                    .detections
                    .inspect(move |(d, t, r)| sink.borrow_mut().push((*t, d.clone(), *r)))
                    .probe_with(&probe);
                let sink = counts.clone();
                outputs
                    .merchant_counts
                    .inspect(move |(d, t, r)| sink.borrow_mut().push((*t, d.clone(), *r)))
                    .probe_with(&probe);
                (inputs, ())
            });
            for (epoch, txns) in epochs.into_iter().enumerate() {
                let epoch = epoch as Epoch;
                inputs.advance_to(epoch);
                inputs.insert_share(txns);
                inputs.advance_to(epoch + 1);
                inputs.flush();
                if step_each_epoch {
                    worker.step_while(|| probe.less_than(&(epoch + 1)));
                }
            }
            drop(inputs);
            worker.step_while(|| !probe.done());
            let mut d = detections.take();
            let mut c = counts.take();
            consolidate_updates(&mut d);
            consolidate_updates(&mut c);
            (d, c)
        })
    }

    fn consolidate_updates<D: Ord + Clone>(updates: &mut Vec<(Epoch, D, isize)>) {
        let mut keyed: Vec<((Epoch, D), isize)> =
            updates.drain(..).map(|(t, d, r)| ((t, d), r)).collect();
        consolidate(&mut keyed);
        updates.extend(keyed.into_iter().map(|((t, d), r)| (t, d, r)));
    }

    #[test]
    fn batches_spanning_several_epochs_give_the_same_changes() {
        let mut patterns_seen = std::collections::BTreeSet::new();
        for seed in 1..=12 {
            let (epochs, weights) = workload(seed * 7919);
            let stepped = run(&epochs, &weights, true, &[thresholds()]);
            let batched = run(&epochs, &weights, false, &[thresholds()]);
            assert_eq!(stepped, batched, "seed {seed}");
            patterns_seen.extend(stepped.0.iter().map(|(_, d, _)| d.key.pattern));
            // N(m) after the last epoch is the number of transactions of m.
            let mut n: BTreeMap<Name, i64> = BTreeMap::new();
            for txn in epochs.iter().flatten() {
                *n.entry(txn.merchant.clone()).or_default() += 1;
            }
            let mut last: BTreeMap<Name, i64> = BTreeMap::new();
            for (_, (m, count), diff) in &stepped.1 {
                *last.entry(m.clone()).or_default() += count * *diff as i64;
            }
            assert_eq!(last, n, "seed {seed}");
        }
        // The workload exercises every pattern, so the comparison is not vacuous.
        assert_eq!(patterns_seen.len(), 3, "{patterns_seen:?}");
    }

    /// Each threshold set of a dataflow computing several gives what a dataflow computing it
    /// alone gives: the same detections with the same facts at the same epochs.
    #[test]
    fn every_threshold_set_computes_as_if_alone() {
        let base = thresholds();
        let variants = [
            base,
            Thresholds {
                child_min_txns: 2,
                child_max_avg_amount: Amount::from_micros(20 * MICROS_PER_UNIT),
                ..base
            },
            Thresholds {
                upgrade_count_percentile: Fraction::from_millionths(500_000),
                upgrade_weight_percentile: Fraction::from_millionths(600_000),
                upgrade_min_merchant_txns: 10,
                ..base
            },
            Thresholds {
                dei_min_female_customers: 0,
                ..base
            },
            Thresholds {
                child_min_txns: 2,
                child_max_avg_amount: Amount::from_micros(20 * MICROS_PER_UNIT),
                ..base
            },
        ];
        let mut sets_seen = std::collections::BTreeSet::new();
        for seed in 1..=6 {
            let (epochs, weights) = workload(seed * 104_729);
            let together = run(&epochs, &weights, true, &variants);
            let mut per_set: BTreeMap<SetId, Vec<(Epoch, Holding, isize)>> = BTreeMap::new();
            for (t, h, r) in together.0 {
                per_set.entry(h.set).or_default().push((t, h, r));
            }
            for (id, alone) in variants.iter().enumerate() {
                let (expected, counts) = run(&epochs, &weights, true, &[*alone]);
                assert_eq!(counts, together.1, "seed {seed}: N(m) is shared");
                let got: Vec<(Epoch, Holding, isize)> = per_set
                    .remove(&(id as SetId))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, h, r)| (t, Holding { set: 0, ..h }, r))
                    .collect();
                assert_eq!(got, expected, "seed {seed}, set {id}");
                if !expected.is_empty() {
                    sets_seen.insert(id);
                }
            }
        }
        assert_eq!(sets_seen.len(), variants.len(), "{sets_seen:?}");
    }

    /// A count threshold no count reaches switches its pattern off, exactly: 2^63 and 2^64−1
    /// do not wrap to negative limits that every count passes. 0 lets the pattern fire.
    #[test]
    fn count_thresholds_past_every_count_switch_their_pattern_off() {
        let (epochs, weights) = workload(7919);
        let fired = |t: Thresholds, pattern: Pattern| {
            let (detections, _) = run(&epochs, &weights, true, &[t]);
            detections.iter().any(|(_, h, _)| h.key.pattern == pattern)
        };
        type Set = fn(&mut Thresholds, u64);
        let keys: [(Pattern, Set); 3] = [
            (Pattern::Upgrade, |t, v| t.upgrade_min_merchant_txns = v),
            (Pattern::Child, |t, v| t.child_min_txns = v),
            (Pattern::DeiNeeded, |t, v| t.dei_min_female_customers = v),
        ];
        for (pattern, set) in keys {
            let mut t = thresholds();
            set(&mut t, 0);
            assert!(fired(t, pattern), "{pattern:?} fires at 0");
            for never in [i64::MAX as u64, 1 << 63, u64::MAX] {
                set(&mut t, never);
                assert!(!fired(t, pattern), "{pattern:?} at {never}");
            }
        }
    }
}
