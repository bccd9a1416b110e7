//! The maintained aggregates. Counts and sums ride in the difference type ("money in the
//! diff"): each transaction is one update whose diff is `(1, amount)`, and `count` yields the
//! exact running totals per key.

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::Epoch;
use crate::model::{Name, Txn, Weight, WeightKey};

/// A count and an exact sum of micro-units, usable as a differential difference.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct CountSum {
    pub count: i64,
    pub sum: i128,
}

impl IsZero for CountSum {
    fn is_zero(&self) -> bool {
        self.count == 0 && self.sum == 0
    }
}

impl Semigroup for CountSum {
    fn plus_equals(&mut self, rhs: &Self) {
        self.count += rhs.count;
        self.sum += rhs.sum;
    }
}

impl Monoid for CountSum {
    fn zero() -> Self {
        CountSum::default()
    }
}

impl Abelian for CountSum {
    fn negate(&mut self) {
        self.count = -self.count;
        self.sum = -self.sum;
    }
}

impl Multiply<isize> for CountSum {
    type Output = CountSum;
    fn multiply(self, rhs: &isize) -> CountSum {
        CountSum {
            count: self.count * *rhs as i64,
            sum: self.sum * *rhs as i128,
        }
    }
}

/// `(m, N(m))`: transactions per merchant.
pub fn merchant_counts(
    txns: VecCollection<'_, Epoch, Txn>,
) -> VecCollection<'_, Epoch, (Name, i64)> {
    txns.map(|t| t.merchant)
        .count()
        .map(|(merchant, n)| (merchant, n as i64))
}

/// `((c, m), (n(c,m), A(c,m)))`: count and amount sum per customer and merchant.
pub fn customer_merchant_stats(
    txns: VecCollection<'_, Epoch, Txn>,
) -> VecCollection<'_, Epoch, ((Name, Name), CountSum)> {
    txns.explode(|t| {
        let amount = t.amount as i128;
        Some((
            (t.customer, t.merchant),
            CountSum {
                count: 1,
                sum: amount,
            },
        ))
    })
    .count()
}

/// Per customer and merchant: `n(c,m)` and `W(c,m)`, the mean of the importance weights of
/// `c`'s transactions at `m` whose `(c, m, category)` key has one (`None` if none has).
pub type Profile = (i64, Option<Weight>);

/// `((c, m), (n(c,m), W(c,m)))`.
pub fn customer_profiles<'s>(
    txns: VecCollection<'s, Epoch, Txn>,
    weights: VecCollection<'s, Epoch, (WeightKey, Weight)>,
) -> VecCollection<'s, Epoch, ((Name, Name), Profile)> {
    let by_key = txns.map(|t| {
        (
            WeightKey {
                customer: t.customer,
                merchant: t.merchant,
                category: t.category,
            },
            (),
        )
    });
    // Left join: transactions whose key has a weight carry it, the others carry `None`.
    let weighted = by_key.clone().join_map(weights.clone(), |key, &(), w| {
        ((key.customer.clone(), key.merchant.clone()), Some(*w))
    });
    let unweighted = by_key
        .antijoin(weights.map(|(key, _)| key))
        .map(|(key, ())| ((key.customer, key.merchant), None));

    // The group of a (c, m) holds one value per distinct weight (plus `None`), each with
    // its transaction count, so re-reading it on change is cheap.
    weighted
        .concat(unweighted)
        .reduce(|_key, input: &[(&Option<Weight>, isize)], output| {
            let mut n: i64 = 0;
            let mut weighted_n: i64 = 0;
            let mut weighted_sum = 0.0f64;
            for (w, count) in input {
                n += *count as i64;
                if let Some(w) = w {
                    weighted_n += *count as i64;
                    weighted_sum += w.into_inner() * *count as f64;
                }
            }
            let mean = (weighted_n > 0).then(|| Weight::from(weighted_sum / weighted_n as f64));
            output.push(((n, mean), 1isize));
        })
}
