//! PatId1 UPGRADE — SPEC §4:
//!
//! ```text
//! N(m) > 50,000
//! and n(c,m) >= percentile_cont(0.90) of { n(c',m) : c' a customer of m }
//! and W(c,m) defined and W(c,m) <= percentile_cont(0.10) of { W(c',m) : W(c',m) defined }
//! ```
//!
//! A `reduce` over a merchant's customers would re-read all of them every epoch, so the
//! percentiles are computed over *histograms* instead: per merchant, the distinct values of
//! `n` and of `W` with the number of customers as multiplicity (one arrangement, one `reduce`,
//! both statistics). The `reduce` outputs the qualifying values (`n` at or above its
//! percentile, `W` at or below its own), and the customers are matched to them by two
//! semijoins keyed by `(m, value)`: when a percentile moves, only the customers whose value
//! crossed it are touched. The `N(m)` gate applies last, to the few customers that qualify.
//! Counts are compared exactly; weights in `f64`.

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::aggregates::{derive, PairChange};
use super::percentile::{float_percentile_of_histogram, CountPercentile};
use super::Epoch;
use crate::model::{DetectionKey, Name, Pattern, Thresholds, Weight};

/// One customer's statistic in a merchant's histogram. `Count`s sort before `Weight`s, so a
/// merchant's group holds its count histogram, then its weight histogram, each ascending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Stat {
    Count(i64),
    Weight(Weight),
}

pub fn detect<'s>(
    merchant_counts: VecCollection<'s, Epoch, (Name, i64)>,
    changes: VecCollection<'s, Epoch, PairChange>,
    thresholds: &Thresholds,
) -> VecCollection<'s, Epoch, DetectionKey> {
    let min_txns = thresholds.upgrade_min_merchant_txns as i64;
    let count_p = thresholds.upgrade_count_percentile;
    let weight_p = thresholds.upgrade_weight_percentile;

    let large_merchants = merchant_counts
        .filter(move |(_, n)| *n > min_txns)
        .map(|(merchant, _)| merchant);

    let counts = derive(changes.clone(), |(_, merchant), s| {
        Some((merchant.clone(), Stat::Count(s.n)))
    });
    let weights = derive(changes.clone(), |(_, merchant), s| {
        s.weight().map(|w| (merchant.clone(), Stat::Weight(w)))
    });
    let qualifying = counts.concat(weights).reduce({
        let mut count_histogram = Vec::<(i64, u64)>::new();
        let mut weight_histogram = Vec::<(f64, u64)>::new();
        move |_merchant, input: &[(&Stat, isize)], output| {
            count_histogram.clear();
            weight_histogram.clear();
            for (stat, customers) in input {
                match stat {
                    Stat::Count(n) => count_histogram.push((*n, *customers as u64)),
                    Stat::Weight(w) => weight_histogram.push((w.into_inner(), *customers as u64)),
                }
            }
            if let Some(limit) = CountPercentile::of_histogram(&count_histogram, count_p) {
                let reached = count_histogram.iter().filter(|(n, _)| limit.reached_by(*n));
                output.extend(reached.map(|(n, _)| (Stat::Count(*n), 1isize)));
            }
            if let Some(limit) = float_percentile_of_histogram(&weight_histogram, weight_p) {
                let low = weight_histogram.iter().filter(|(w, _)| *w <= limit);
                output.extend(low.map(|(w, _)| (Stat::Weight(Weight::from(*w)), 1isize)));
            }
        }
    });
    let qualifying_counts = qualifying.clone().flat_map(|(merchant, stat)| match stat {
        Stat::Count(n) => Some((merchant, n)),
        Stat::Weight(_) => None,
    });
    let qualifying_weights = qualifying.flat_map(|(merchant, stat)| match stat {
        Stat::Weight(w) => Some((merchant, w)),
        Stat::Count(_) => None,
    });

    // Customers keyed by `(m, n(c,m))`, carrying `W(c,m)`: the one arrangement of the
    // per-pair totals, matched to the qualifying counts, then to the qualifying weights.
    derive(changes, |(customer, merchant), s| {
        Some(((merchant.clone(), s.n), (customer.clone(), s.weight())))
    })
    .semijoin(qualifying_counts)
    .flat_map(|((merchant, _), (customer, w))| w.map(|w| ((merchant, w), customer)))
    .semijoin(qualifying_weights)
    .map(|((merchant, _), customer)| (merchant, customer))
    .semijoin(large_merchants)
    .map(|(merchant, customer)| DetectionKey {
        pattern: Pattern::Upgrade,
        merchant,
        customer,
    })
}
