//! PatId1 UPGRADE — SPEC §4:
//!
//! ```text
//! N(m) > 50,000
//! and n(c,m) >= percentile_cont(0.90) of { n(c',m) : c' a customer of m }
//! and W(c,m) defined and W(c,m) <= percentile_cont(0.10) of { W(c',m) : W(c',m) defined }
//! ```
//!
//! Gated first: only merchants with `N(m)` above the threshold reach the percentiles.
//! A `reduce` over a merchant's customers would re-read all of them every epoch, so the
//! percentiles are computed over *histograms* instead: `(m, n)` and `(m, W)` with the number of
//! customers as multiplicity, whose groups hold one entry per distinct value. Each histogram
//! `reduce` outputs the qualifying values (`n` at or above its percentile, `W` at or below
//! its own), and the customers are matched to them by two semijoins keyed by `(m, value)`:
//! when a percentile moves, only the customers whose value crossed it are touched.
//! Counts are compared exactly; weights in `f64`.

use differential_dataflow::VecCollection;

use super::aggregates::{Pair, PairSums};
use super::percentile::{float_percentile_of_histogram, CountPercentile};
use super::Epoch;
use crate::model::{DetectionKey, Name, Pattern, Thresholds, Weight};

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

    // Customers keyed by `(m, n(c,m))`, carrying `W(c,m)`: the one arrangement of the per-pair
    // stream. The histograms below are gated to the large merchants; this stream is gated by
    // meeting their qualifying values.
    let by_count = sums
        .clone()
        .map(|((customer, merchant), s)| ((merchant, s.n), (customer, s.weight())));

    let qualifying_counts = by_count
        .clone()
        .map(|((merchant, n), _)| (merchant, n))
        .semijoin(large_merchants.clone())
        .reduce({
            let mut histogram = Vec::<(i64, u64)>::new();
            move |_merchant, input: &[(&i64, isize)], output| {
                histogram.clear();
                histogram.extend(input.iter().map(|(n, customers)| (**n, *customers as u64)));
                if let Some(limit) = CountPercentile::of_histogram(&histogram, count_p) {
                    let reached = input.iter().filter(|(n, _)| limit.reached_by(**n));
                    output.extend(reached.map(|(n, _)| (**n, 1isize)));
                }
            }
        });
    let qualifying_weights = sums
        .flat_map(|((_, merchant), s)| s.weight().map(|w| (merchant, w)))
        .semijoin(large_merchants)
        .reduce({
            let mut histogram = Vec::<(f64, u64)>::new();
            move |_merchant, input: &[(&Weight, isize)], output| {
                histogram.clear();
                histogram.extend(input.iter().map(|(w, c)| (w.into_inner(), *c as u64)));
                if let Some(limit) = float_percentile_of_histogram(&histogram, weight_p) {
                    let low = input.iter().filter(|(w, _)| w.into_inner() <= limit);
                    output.extend(low.map(|(w, _)| (**w, 1isize)));
                }
            }
        });

    by_count
        .semijoin(qualifying_counts)
        .flat_map(|((merchant, _), (customer, w))| w.map(|w| ((merchant, w), customer)))
        .semijoin(qualifying_weights)
        .map(|((merchant, _), customer)| DetectionKey {
            pattern: Pattern::Upgrade,
            merchant,
            customer,
        })
}
