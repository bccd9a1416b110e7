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

use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::implementations::ValSpine;
use differential_dataflow::trace::{Cursor, TraceReader};
use differential_dataflow::{AsCollection, VecCollection};
use foldhash::HashMap;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::progress::{Antichain, Timestamp};

use super::aggregates::{derive, PairChanges};
use super::arranged;
use super::percentile::{float_percentile_of_prefix, ranks_needed, CountPercentile};
use crate::model::Epoch;
use crate::model::{DetectionKey, Fraction, Name, Pattern, Thresholds, Weight};

pub fn detect<'s>(
    merchant_counts: VecCollection<'s, Epoch, (Name, i64)>,
    changes: PairChanges<'s>,
    thresholds: &Thresholds,
) -> VecCollection<'s, Epoch, DetectionKey> {
    let min_txns = thresholds.upgrade_min_merchant_txns as i64;
    let count_p = thresholds.upgrade_count_percentile;
    let weight_p = thresholds.upgrade_weight_percentile;

    let large_merchants = merchant_counts
        .filter(move |(_, n)| *n > min_txns)
        .map(|(merchant, _)| merchant);

    // Customers keyed by `(m, n(c,m))`, carrying `W(c,m)`: the one arrangement of the
    // per-pair totals at full size. Customers without a weight stay: they count in the
    // count percentile (they just never qualify themselves).
    let by_count = derive(changes.clone(), |(customer, merchant), s| {
        Some(((merchant.clone(), s.n), (customer.clone(), s.weight())))
    })
    .arrange_by_key_named("Arrange: CustomersByCount");

    // The count histogram, `(m, n)` with the number of customers as multiplicity, read off
    // that arrangement's batches (one update per touched `(m, n)`, not two per changed pair).
    // It is small (a merchant's customers share few distinct counts): a `reduce` reads it
    // whole and outputs the counts that reach the percentile.
    let qualifying_counts = key_multiplicities(&by_count).reduce({
        let mut histogram = Vec::<(i64, u64)>::new();
        move |_merchant, input: &[(&i64, isize)], output| {
            histogram.clear();
            histogram.extend(input.iter().map(|(n, customers)| (**n, *customers as u64)));
            if let Some(limit) = CountPercentile::of_histogram(&histogram, count_p) {
                let reached = histogram.iter().filter(|(n, _)| limit.reached_by(*n));
                output.extend(reached.map(|(n, _)| (*n, 1isize)));
            }
        }
    });
    // The weight histogram has about one distinct value per customer: its low percentile is
    // read off the smallest values only.
    let weight_limits = weight_percentiles(
        derive(changes.clone(), |(_, merchant), s| {
            s.weight().map(|w| (merchant.clone(), w))
        }),
        weight_p,
    );

    // The customers that reach the count percentile meet their merchant's weight limit.
    let frequent = by_count.join_core(
        qualifying_counts.arrange_by_self_named("Arrange: QualifyingCounts"),
        |(merchant, _), (customer, w), ()| w.map(|w| (merchant.clone(), (customer.clone(), w))),
    );
    frequent
        .arrange_by_key_named("Arrange: FrequentCustomers")
        .join_core(
            weight_limits.arrange_by_key_named("Arrange: WeightLimits"),
            |merchant, (customer, w), limit| {
                (w <= limit).then(|| (merchant.clone(), customer.clone()))
            },
        )
        .semijoin(large_merchants)
        .map(|(merchant, customer)| DetectionKey {
            pattern: Pattern::Upgrade,
            merchant,
            customer,
        })
}

/// The arrangement of customers by `(m, n)`.
type ByCount<'s> =
    Arranged<'s, TraceAgent<ValSpine<(Name, i64), (Name, Option<Weight>), Epoch, isize>>>;

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
    weights: VecCollection<'s, Epoch, (Name, Weight)>,
    p: Fraction,
) -> VecCollection<'s, Epoch, (Name, Weight)> {
    let arranged = weights.arrange_by_key_named("Arrange: WeightHistogram");
    let mut trace = arranged.trace.clone();
    arranged
        .stream
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
