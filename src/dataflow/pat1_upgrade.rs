//! PatId1 UPGRADE — SPEC §4:
//!
//! ```text
//! N(m) > 50,000
//! and n(c,m) >= percentile_cont(0.90) of { n(c',m) : c' a customer of m }
//! and W(c,m) defined and W(c,m) <= percentile_cont(0.10) of { W(c',m) : W(c',m) defined }
//! ```
//!
//! The percentile `reduce` re-reads a merchant's whole customer group whenever any of its
//! customers changes, so it is gated first: only merchants with `N(m)` above the threshold
//! reach it. The count percentile is compared exactly; weights in `f64`.

use differential_dataflow::VecCollection;

use super::aggregates::{Pair, PairSums};
use super::percentile::{float_percentile, CountPercentile};
use super::Epoch;
use crate::model::{DetectionKey, Name, Pattern, Thresholds, Weight};

/// `(customer, n(c,m), W(c,m))`, the values of a merchant's group.
type CustomerAtMerchant = (Name, i64, Option<Weight>);

pub fn detect<'s>(
    merchant_counts: VecCollection<'s, Epoch, (Name, i64)>,
    sums: VecCollection<'s, Epoch, (Pair, PairSums)>,
    thresholds: &Thresholds,
) -> VecCollection<'s, Epoch, DetectionKey> {
    let min_txns = thresholds.upgrade_min_merchant_txns as i64;
    let count_p = thresholds.upgrade_count_percentile;
    let weight_p = thresholds.upgrade_weight_percentile;

    let large_merchants = merchant_counts
        .filter(move |(_, n)| *n > min_txns)
        .map(|(merchant, _)| merchant);

    sums.map(|((customer, merchant), s)| (merchant, (customer, s.n, s.weight())))
        .semijoin(large_merchants)
        .reduce({
            // Buffers reused across groups: a large merchant has thousands of customers.
            let (mut counts, mut weights) = (Vec::<i64>::new(), Vec::<f64>::new());
            move |_merchant, input: &[(&CustomerAtMerchant, isize)], output| {
                counts.clear();
                counts.extend(input.iter().map(|((_, n, _), _)| *n));
                weights.clear();
                weights.extend(
                    input
                        .iter()
                        .filter_map(|((_, _, w), _)| w.map(|w| w.into_inner())),
                );
                let (Some(count_limit), Some(weight_limit)) = (
                    CountPercentile::of(&mut counts, count_p),
                    float_percentile(&mut weights, weight_p),
                ) else {
                    return;
                };
                for ((customer, n, w), _) in input {
                    let low_weight = w.is_some_and(|w| w.into_inner() <= weight_limit);
                    if low_weight && count_limit.reached_by(*n) {
                        output.push((customer.clone(), 1isize));
                    }
                }
            }
        })
        .map(|(merchant, customer)| DetectionKey {
            pattern: Pattern::Upgrade,
            merchant,
            customer,
        })
}
