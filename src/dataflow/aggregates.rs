//! The maintained aggregates. Counts and sums ride in the difference type ("money in the
//! diff"): each transaction is one update `((c, m), Txn{category, gender})` whose diff is
//! `(1, amount)`, and the importance weights join the same `(c, m)` groups as
//! `Weight{category, w}` updates. One arrangement of the raw rows, keyed by `(c, m)`, then
//! feeds a single `reduce` that derives everything the patterns need about a customer at a
//! merchant; its group holds one value per distinct `(category, gender)` plus the pair's
//! weights, so re-reading it on change is cheap.

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use super::Epoch;
use crate::model::{Gender, Name, Txn, Weight, WeightKey};

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

/// `(customer, merchant)`.
pub type Pair = (Name, Name);

/// What is known about a pair: its transactions by `(category, gender)`, and its weights.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PairEvent {
    Txn { category: Name, gender: Gender },
    Weight { category: Name, weight: Weight },
}

/// `n(c,m)`, `A(c,m)` and `W(c,m)` (`None` when no transaction of the pair has a weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PairStats {
    pub n: i64,
    pub amount: i128,
    pub weight: Option<Weight>,
}

/// The reduce's outputs per pair. Genders are separate facts so that PatId3 only sees a
/// change when a customer is first seen with a gender, not on every transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PairFact {
    Stats(PairStats),
    Gender(Gender),
}

/// `(m, N(m))`: transactions per merchant.
pub fn merchant_counts(
    txns: VecCollection<'_, Epoch, Txn>,
) -> VecCollection<'_, Epoch, (Name, i64)> {
    txns.map(|t| t.merchant)
        .count()
        .map(|(merchant, n)| (merchant, n as i64))
}

/// The per-pair facts, maintained incrementally.
pub fn pair_facts<'s>(
    txns: VecCollection<'s, Epoch, Txn>,
    weights: VecCollection<'s, Epoch, (WeightKey, Weight)>,
) -> VecCollection<'s, Epoch, (Pair, PairFact)> {
    let events = txns.explode(|t| {
        Some((
            (
                (t.customer, t.merchant),
                PairEvent::Txn {
                    category: t.category,
                    gender: t.gender,
                },
            ),
            CountSum {
                count: 1,
                sum: t.amount as i128,
            },
        ))
    });
    let weights = weights.explode(|(key, weight)| {
        Some((
            (
                (key.customer, key.merchant),
                PairEvent::Weight {
                    category: key.category,
                    weight,
                },
            ),
            CountSum { count: 1, sum: 0 },
        ))
    });
    events
        .concat(weights)
        .reduce(|_pair, input: &[(&PairEvent, CountSum)], output| summarize(input, output))
}

/// The reduce's logic for one pair; `input` is sorted (transactions, then weights).
fn summarize(input: &[(&PairEvent, CountSum)], output: &mut Vec<(PairFact, isize)>) {
    let weight_of = |wanted: &Name| {
        input.iter().find_map(|(event, diff)| match event {
            PairEvent::Weight { category, weight } if category == wanted && diff.count > 0 => {
                Some(weight.into_inner())
            }
            _ => None,
        })
    };
    let (mut n, mut amount) = (0i64, 0i128);
    let (mut weighted_n, mut weighted_sum) = (0i64, 0.0f64);
    let (mut female, mut male) = (false, false);
    for (event, diff) in input {
        let PairEvent::Txn { category, gender } = event else {
            continue;
        };
        if diff.count <= 0 {
            continue;
        }
        n += diff.count;
        amount += diff.sum;
        female |= *gender == Gender::Female;
        male |= *gender == Gender::Male;
        if let Some(w) = weight_of(category) {
            weighted_n += diff.count;
            weighted_sum += w * diff.count as f64;
        }
    }
    if n == 0 {
        return;
    }
    let weight = (weighted_n > 0).then(|| Weight::from(weighted_sum / weighted_n as f64));
    output.push((PairFact::Stats(PairStats { n, amount, weight }), 1));
    if female {
        output.push((PairFact::Gender(Gender::Female), 1));
    }
    if male {
        output.push((PairFact::Gender(Gender::Male), 1));
    }
}

/// The `PairStats` facts.
pub fn pair_stats<'s>(
    facts: VecCollection<'s, Epoch, (Pair, PairFact)>,
) -> VecCollection<'s, Epoch, (Pair, PairStats)> {
    facts.flat_map(|(pair, fact)| match fact {
        PairFact::Stats(stats) => Some((pair, stats)),
        PairFact::Gender(_) => None,
    })
}

/// `(merchant, gender)` once per customer seen with that gender at the merchant.
pub fn merchant_customer_genders<'s>(
    facts: VecCollection<'s, Epoch, (Pair, PairFact)>,
) -> VecCollection<'s, Epoch, (Name, Gender)> {
    facts.flat_map(|((_customer, merchant), fact)| match fact {
        PairFact::Gender(gender) => Some((merchant, gender)),
        PairFact::Stats(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(category: &str, gender: Gender) -> PairEvent {
        PairEvent::Txn {
            category: category.into(),
            gender,
        }
    }

    #[test]
    fn summarizes_counts_amounts_weights_and_genders() {
        let food = txn("food", Gender::Female);
        let food_m = txn("food", Gender::Male);
        let travel = txn("travel", Gender::Female);
        let w_food = PairEvent::Weight {
            category: "food".into(),
            weight: Weight::from(2.0),
        };
        let w_hotel = PairEvent::Weight {
            category: "hotel".into(),
            weight: Weight::from(9.0),
        };
        let cs = |count, sum| CountSum { count, sum };
        let input = [
            (&food, cs(3, 30)),
            (&food_m, cs(1, 5)),
            (&travel, cs(2, 100)),
            (&w_food, cs(1, 0)),
            (&w_hotel, cs(1, 0)),
        ];
        let mut out = Vec::new();
        summarize(&input, &mut out);
        // n = 6, A = 135; W = mean over the 4 food transactions (travel has no weight) = 2.
        assert_eq!(
            out,
            [
                (
                    PairFact::Stats(PairStats {
                        n: 6,
                        amount: 135,
                        weight: Some(Weight::from(2.0))
                    }),
                    1
                ),
                (PairFact::Gender(Gender::Female), 1),
                (PairFact::Gender(Gender::Male), 1),
            ]
        );
        // Only weights, no transactions: nothing is known about the pair.
        out.clear();
        summarize(&[(&w_food, cs(1, 0))], &mut out);
        assert!(out.is_empty());
    }
}
