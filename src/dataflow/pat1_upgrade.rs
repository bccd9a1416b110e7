//! PatId1 UPGRADE — SPEC §4:
//!
//! ```text
//! N(m) > 50,000
//! and n(c,m) >= percentile_cont(0.90) of { n(c',m) : c' a customer of m }
//! and W(c,m) defined and W(c,m) <= percentile_cont(0.10) of { W(c',m) : W(c',m) defined }
//! ```
//!
//! A `reduce` over a merchant's customers would re-read all of them every epoch, so:
//!
//! - customers are arranged by `(m, n(c,m))`; the count histogram (distinct `n` per merchant,
//!   customers as multiplicity) is read off that arrangement's batches, a `reduce` per
//!   merchant outputs the counts at or above the percentile, and a join keyed by `(m, n)`
//!   picks the customers with those counts — when the percentile moves, only the customers
//!   whose count crossed it are touched;
//! - the weight percentile comes from an operator that walks only the smallest values of
//!   each merchant's weight histogram (a tenth of them for p = 0.10), and the frequent
//!   customers are joined with it by merchant;
//! - the `N(m)` gate applies last, to the few customers that meet both.
//!
//! Counts are compared exactly; weights in `f64`.
//!
//! The three arrangements above do not depend on thresholds and are built once; the
//! percentiles, joins and the gate are built once per distinct `(N, count p, weight p)` of
//! the threshold sets.

use differential_dataflow::collection::concatenate;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::trace::{Cursor, TraceReader};
use differential_dataflow::{AsCollection, VecCollection};
use foldhash::HashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::progress::{Antichain, Timestamp};

use super::aggregates::{derive, PairChanges};
use super::arranged;
use super::detections::{Facts, Holding, MerchantFact};
use super::percentile::{float_percentile_of_prefix, ranks_needed, CountPercentile};
use super::variants::{by_parameters, fan_out, SetId};
use crate::model::Epoch;
use crate::model::{count_above, DetectionKey, Fraction, Name, Pattern, Thresholds, Weight};

/// PatId1's outputs: the detections of every threshold set, and the merchant percentiles
/// their evidence quotes.
pub struct Upgrade<'s> {
    pub detections: VecCollection<'s, Epoch, Holding>,
    pub merchant_facts: VecCollection<'s, Epoch, (SetId, Name, MerchantFact)>,
}

pub(crate) fn detect<'s>(
    merchant_counts: VecCollection<'s, Epoch, (Name, i64)>,
    changes: PairChanges<'s>,
    sets: &[Thresholds],
) -> Upgrade<'s> {
    let scope = changes.inner.scope();
    // Customers keyed by `(m, n(c,m))`, carrying `W(c,m)`: the one arrangement of the
    // per-pair totals at full size. Customers without a weight stay: they count in the
    // count percentile (they just never qualify themselves).
    let by_count = derive(changes.clone(), |(customer, merchant), s| {
        Some(((merchant.clone(), s.n), (customer.clone(), s.weight())))
    })
    .arrange_by_key_named("Arrange: CustomersByCount");
    // The count histogram, `(m, n)` with the number of customers as multiplicity, read off
    // that arrangement's batches (one update per touched `(m, n)`, not two per changed pair).
    let histogram = key_multiplicities(&by_count).arrange_by_key_named("Arrange: CountHistogram");
    let weight_histogram = derive(changes, |(_, merchant), s| {
        s.weight().map(|w| (merchant.clone(), w))
    })
    .arrange_by_key_named("Arrange: WeightHistogram");

    let mut detections = Vec::new();
    let mut merchant_facts = Vec::new();
    let groups = by_parameters(sets, |t| {
        (
            t.upgrade_min_merchant_txns,
            t.upgrade_count_percentile,
            t.upgrade_weight_percentile,
        )
    });
    for ((min_txns, count_p, weight_p), ids) in groups {
        let (qualifying_counts, count_limits) = count_percentiles(&histogram, count_p);
        let weight_limits = weight_percentiles(&weight_histogram, weight_p);
        let large_merchants = merchant_counts
            .clone()
            .filter(move |(_, n)| count_above(*n, min_txns))
            .map(|(merchant, _)| merchant);
        let held = customers_held(&by_count, qualifying_counts, weight_limits.clone())
            .semijoin(large_merchants);
        detections.push(fan_out(
            held,
            ids.clone(),
            |set, (merchant, (customer, n, w))| Holding {
                set,
                key: DetectionKey {
                    pattern: Pattern::Upgrade,
                    merchant: merchant.clone(),
                    customer: customer.clone(),
                },
                facts: Facts::Upgrade {
                    customer_txns: *n,
                    weight: *w,
                },
            },
        ));
        let limits = count_limits
            .map(|(m, limit)| (m, MerchantFact::CountPercentile(limit)))
            .concat(weight_limits.map(|(m, limit)| (m, MerchantFact::WeightPercentile(limit))));
        merchant_facts.push(fan_out(limits, ids, |set, (m, fact)| {
            (set, m.clone(), *fact)
        }));
    }
    Upgrade {
        detections: concatenate(scope, detections),
        merchant_facts: concatenate(scope, merchant_facts),
    }
}

/// `(m, (c, n(c,m), W(c,m)))` for the customers that reach their merchant's count percentile
/// and stay at or under its weight percentile.
fn customers_held<'s>(
    by_count: &ByCount<'s>,
    qualifying_counts: VecCollection<'s, Epoch, (Name, i64)>,
    weight_limits: VecCollection<'s, Epoch, (Name, Weight)>,
) -> VecCollection<'s, Epoch, (Name, (Name, i64, Weight))> {
    let frequent = by_count.clone().join_core(
        qualifying_counts.arrange_by_self_named("Arrange: QualifyingCounts"),
        |(merchant, n), (customer, w), ()| w.map(|w| (merchant.clone(), (customer.clone(), *n, w))),
    );
    frequent
        .arrange_by_key_named("Arrange: FrequentCustomers")
        .join_core(
            weight_limits.arrange_by_key_named("Arrange: WeightLimits"),
            |merchant, (customer, n, w), limit| {
                (w <= limit).then(|| (merchant.clone(), (customer.clone(), *n, *w)))
            },
        )
}

/// What the count percentile of a merchant's customers yields: the counts that reach it, and
/// the percentile itself (evidence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum CountOutcome {
    Reached(i64),
    Percentile(CountPercentile),
}

/// From the count histogram (small: a merchant's customers share few distinct counts, so a
/// `reduce` reads it whole): `(m, n)` for the counts at or above the percentile, and
/// `(m, percentile)`.
#[allow(clippy::type_complexity)]
fn count_percentiles<'s>(
    histogram: &Histogram<'s>,
    p: Fraction,
) -> (
    VecCollection<'s, Epoch, (Name, i64)>,
    VecCollection<'s, Epoch, (Name, CountPercentile)>,
) {
    let mut counts = Vec::<(i64, u64)>::new();
    let outcomes = histogram
        .clone()
        .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<Name, CountOutcome, Epoch, isize>, _, _>(
            "CountPercentile",
            move |_merchant, input: &[(&i64, isize)], output| {
                counts.clear();
                counts.extend(input.iter().map(|(n, customers)| (**n, *customers as u64)));
                if let Some(limit) = CountPercentile::of_histogram(&counts, p) {
                    output.push((CountOutcome::Percentile(limit), 1isize));
                    let reached = counts.iter().filter(|(n, _)| limit.reached_by(*n));
                    output.extend(reached.map(|(n, _)| (CountOutcome::Reached(*n), 1isize)));
                }
            },
            |vec, key, updates| {
                vec.clear();
                vec.extend(updates.drain(..).map(|(v, t, r)| ((key.clone(), v), t, r)));
            },
        )
        .as_collection(|m, outcome| (m.clone(), *outcome));
    let reached = outcomes.clone().flat_map(|(m, outcome)| match outcome {
        CountOutcome::Reached(n) => Some((m, n)),
        CountOutcome::Percentile(_) => None,
    });
    let limits = outcomes.flat_map(|(m, outcome)| match outcome {
        CountOutcome::Percentile(limit) => Some((m, limit)),
        CountOutcome::Reached(_) => None,
    });
    (reached, limits)
}

/// The arrangement of customers by `(m, n)`.
type ByCount<'s> =
    Arranged<'s, TraceAgent<ValSpine<(Name, i64), (Name, Option<Weight>), Epoch, isize>>>;

/// A histogram arranged by merchant: `(m, value)` with multiplicities.
type Histogram<'s> = Arranged<'s, TraceAgent<ValSpine<Name, i64, Epoch, isize>>>;
type WeightHistogram<'s> = Arranged<'s, TraceAgent<ValSpine<Name, Weight, Epoch, isize>>>;

/// `(m, n)` with multiplicity = the number of customers of `m` with `n` transactions there:
/// the net change of each `(m, n)` key of `by_count`'s batches.
fn key_multiplicities<'s>(by_count: &ByCount<'s>) -> VecCollection<'s, Epoch, (Name, i64)> {
    by_count
        .stream
        .clone()
        .unary(Pipeline, "KeyMultiplicities", |_, _| {
            let mut per_time: Vec<(Epoch, isize)> = Vec::new();
            move |input, output| {
                input.for_each(|capability, batches| {
                    // Every update's time is at or after some time of the message's stamp.
                    let caps = capability.retain_stamp(0);
                    let mut session = output.session(&caps);
                    for batch in batches.drain(..).filter_map(|b| b.inner) {
                        let (mut cursor, storage) = cursor_list(vec![batch]);
                        while let Some(key) = cursor.get_key(&storage) {
                            per_time.clear();
                            while cursor.val_valid(&storage) {
                                cursor.map_times(&storage, |time, diff| {
                                    per_time.push((*time, *diff));
                                });
                                cursor.step_val(&storage);
                            }
                            per_time.sort_unstable();
                            for group in per_time.chunk_by(|a, b| a.0 == b.0) {
                                let net: isize = group.iter().map(|(_, d)| d).sum();
                                if net != 0 {
                                    session.give((key.clone(), group[0].0, net));
                                }
                            }
                            cursor.step_key(&storage);
                        }
                    }
                });
            }
        })
        .as_collection()
}

/// `(m, percentile_cont(p) of { W : (m, W) })` for every merchant, from the collection of
/// `(merchant, weight)` (one record per customer with a defined weight).
///
/// Arranged by merchant, values ascending. For every merchant touched at a time, the operator
/// walks that merchant's smallest values only as far as the percentile's ranks (a tenth of
/// them for p = 0.10), instead of re-reading the group as a `reduce` would; the group sizes
/// are running totals kept from the updates. Emits the change of the merchant's limit.
fn weight_percentiles<'s>(
    arranged: &WeightHistogram<'s>,
    p: Fraction,
) -> VecCollection<'s, Epoch, (Name, Weight)> {
    let mut trace = arranged.trace.clone();
    arranged
        .stream
        .clone()
        .unary_frontier(Pipeline, "WeightPercentile", move |_, _| {
            let mut upper = Antichain::from_elem(Epoch::minimum());
            // Per merchant: customers with a weight, and the limit last emitted.
            let mut totals: HashMap<Name, i64> = HashMap::default();
            let mut limits: HashMap<Name, Weight> = HashMap::default();
            let mut prefix = Vec::<(f64, u64)>::new();
            move |(input, _frontier), output| {
                let (caps, batches) = arranged::receive(input, &mut upper);
                if !caps.is_empty() {
                    // The group-size change of every (merchant, time) touched.
                    let mut touched: Vec<(Name, Epoch, i64)> = Vec::new();
                    let (mut cursor, storage) = cursor_list(batches);
                    while let Some(merchant) = cursor.get_key(&storage) {
                        while cursor.val_valid(&storage) {
                            cursor.map_times(&storage, |time, diff| {
                                touched.push((merchant.clone(), *time, *diff as i64));
                            });
                            cursor.step_val(&storage);
                        }
                        cursor.step_key(&storage);
                    }
                    touched.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                    touched.dedup_by(|later, earlier| {
                        let same = later.0 == earlier.0 && later.1 == earlier.1;
                        if same {
                            earlier.2 += later.2;
                        }
                        same
                    });

                    let (mut cursor, storage) = cursor_list(
                        trace
                            .batches_through(upper.borrow())
                            .expect("the trace holds every batch received"),
                    );
                    let mut session = output.session(&caps);
                    for (merchant, time, delta) in touched {
                        let total = totals.entry(merchant.clone()).or_default();
                        *total += delta;
                        let total = *total as u64;
                        // The smallest values of the group at `time`, as far as needed.
                        let needed = ranks_needed(total, p);
                        prefix.clear();
                        cursor.seek_key(&storage, &merchant);
                        if cursor.get_key(&storage) == Some(&merchant) {
                            cursor.rewind_vals(&storage);
                            let mut covered = 0u64;
                            while covered < needed {
                                let Some(w) = cursor.get_val(&storage) else {
                                    break;
                                };
                                let mut customers = 0isize;
                                cursor.map_times(&storage, |t, diff| {
                                    if *t <= time {
                                        customers += diff;
                                    }
                                });
                                if customers > 0 {
                                    prefix.push((w.into_inner(), customers as u64));
                                    covered += customers as u64;
                                }
                                cursor.step_val(&storage);
                            }
                        }
                        let limit = float_percentile_of_prefix(&prefix, total, p).map(Weight::from);
                        let before = match limit {
                            Some(limit) => limits.insert(merchant.clone(), limit),
                            None => limits.remove(&merchant),
                        };
                        if before != limit {
                            if let Some(before) = before {
                                session.give(((merchant.clone(), before), time, -1isize));
                            }
                            if let Some(limit) = limit {
                                session.give(((merchant, limit), time, 1isize));
                            }
                        }
                    }
                }
                arranged::release(&mut trace, &mut upper);
            }
        })
        .as_collection()
}
