//! The maintained aggregates. Counts and sums ride in the difference type ("money in the
//! diff"): each transaction becomes one update of its `(c, m)` pair whose diff carries
//! `(1, amount, gender, weight)`, and `count_total` keeps the exact running totals per pair.
//! Time is a total order (the chunk index), so the totals need no general `reduce`: each
//! changed pair costs one trace lookup per epoch.

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::operators::count::CountTotal;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::Epoch;
use crate::model::{Gender, Name, Txn, Weight, WeightKey};

/// `(customer, merchant)`.
pub type Pair = (Name, Name);

/// Weights enter the sums as fixed-point integers of 10^-18, so that `W(c,m)`'s numerator
/// is an exact, order-independent sum (the same bits for any worker count). The rounding
/// (< 10^-18 absolute) is far inside the SPEC's 10^-9 tie tolerance.
pub const WEIGHT_SCALE: f64 = 1e18;

/// Per `(c, m)` running totals, carried in the difference type and accumulated by
/// `count_total`: `n(c,m)`, `A(c,m)`, transactions seen with gender F and M, and the
/// transactions with a weight and the sum of their weights (for `W(c,m)`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct PairSums {
    pub n: i64,
    pub amount: i128,
    pub female: i64,
    pub male: i64,
    pub weighted_n: i64,
    pub weighted_sum: i128,
}

impl PairSums {
    /// `W(c,m)`, `None` when no transaction of the pair has a weight.
    pub fn weight(&self) -> Option<Weight> {
        (self.weighted_n > 0)
            .then(|| Weight::from(self.weighted_sum as f64 / self.weighted_n as f64 / WEIGHT_SCALE))
    }
}

impl IsZero for PairSums {
    fn is_zero(&self) -> bool {
        *self == PairSums::default()
    }
}

impl Semigroup for PairSums {
    fn plus_equals(&mut self, rhs: &Self) {
        self.n += rhs.n;
        self.amount += rhs.amount;
        self.female += rhs.female;
        self.male += rhs.male;
        self.weighted_n += rhs.weighted_n;
        self.weighted_sum += rhs.weighted_sum;
    }
}

impl Monoid for PairSums {
    fn zero() -> Self {
        PairSums::default()
    }
}

impl Abelian for PairSums {
    fn negate(&mut self) {
        *self = self.multiply(&-1);
    }
}

impl Multiply<isize> for PairSums {
    type Output = PairSums;
    fn multiply(self, rhs: &isize) -> PairSums {
        let r = *rhs as i64;
        PairSums {
            n: self.n * r,
            amount: self.amount * r as i128,
            female: self.female * r,
            male: self.male * r,
            weighted_n: self.weighted_n * r,
            weighted_sum: self.weighted_sum * r as i128,
        }
    }
}

/// `(m, N(m))` from the collection of the transactions' merchants.
pub fn merchant_counts(
    merchant_txns: VecCollection<'_, Epoch, Name>,
) -> VecCollection<'_, Epoch, (Name, i64)> {
    merchant_txns
        .count_total()
        .map(|(merchant, n)| (merchant, n as i64))
}

/// `((c, m), totals)`, maintained incrementally: every transaction adds its count, amount
/// and gender; every transaction whose `(c, m, category)` has a weight (a join with the
/// importance collection) adds that weight. `count_total` accumulates the diffs per pair —
/// the cheap path for totally ordered times: no per-key re-evaluation of a `reduce`.
pub fn pair_sums<'s>(
    txns: VecCollection<'s, Epoch, Txn>,
    weights: VecCollection<'s, Epoch, (WeightKey, Weight)>,
) -> VecCollection<'s, Epoch, (Pair, PairSums)> {
    let own = txns.clone().explode(|t| {
        Some((
            (t.customer, t.merchant),
            PairSums {
                n: 1,
                amount: t.amount as i128,
                female: (t.gender == Gender::Female) as i64,
                male: (t.gender == Gender::Male) as i64,
                ..PairSums::default()
            },
        ))
    });
    let weighted = txns
        .map(|t| {
            (
                WeightKey {
                    customer: t.customer,
                    merchant: t.merchant,
                    category: t.category,
                },
                (),
            )
        })
        .join_map(weights, |key, &(), weight| {
            (
                (key.customer.clone(), key.merchant.clone()),
                (weight.into_inner() * WEIGHT_SCALE).round() as i128,
            )
        })
        .explode(|(pair, weight)| {
            Some((
                pair,
                PairSums {
                    weighted_n: 1,
                    weighted_sum: weight,
                    ..PairSums::default()
                },
            ))
        });
    own.concat(weighted).count_total()
}

/// `(merchant, gender)` once per customer seen with that gender at the merchant.
pub fn merchant_customer_genders<'s>(
    sums: VecCollection<'s, Epoch, (Pair, PairSums)>,
) -> VecCollection<'s, Epoch, (Name, Gender)> {
    sums.flat_map(|((_customer, merchant), s)| {
        let female = (s.female > 0).then(|| (merchant.clone(), Gender::Female));
        let male = (s.male > 0).then_some((merchant, Gender::Male));
        female.into_iter().chain(male)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_sums_are_an_abelian_difference() {
        let a = PairSums {
            n: 2,
            amount: 300,
            female: 1,
            male: 1,
            weighted_n: 1,
            weighted_sum: 5,
        };
        let mut b = a;
        b.plus_equals(&a.multiply(&-1));
        assert!(b.is_zero());
        let mut c = a;
        c.negate();
        c.plus_equals(&a);
        assert!(c.is_zero());
        assert_eq!(a.multiply(&3).amount, 900);
    }

    #[test]
    fn weight_is_the_mean_of_the_weighted_transactions() {
        let scaled = |w: f64| (w * WEIGHT_SCALE).round() as i128;
        let s = PairSums {
            n: 5,
            weighted_n: 4,
            weighted_sum: scaled(2.0) * 3 + scaled(6.0),
            ..PairSums::default()
        };
        assert_eq!(s.weight(), Some(Weight::from(3.0)));
        assert_eq!(PairSums::default().weight(), None);
        // Exact sums: the order of accumulation cannot change the bits.
        let parts = [scaled(0.1), scaled(0.2), scaled(0.3)];
        let forward: i128 = parts.iter().sum();
        let backward: i128 = parts.iter().rev().sum();
        assert_eq!(forward, backward);
    }
}
