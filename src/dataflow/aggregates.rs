//! The maintained aggregates. Counts and sums ride in the difference type ("money in the
//! diff"): a worker's share of a chunk becomes one update per `(c, m)` pair whose diff carries
//! the share's `(n, amount, genders, weights)` for that pair, and one arranged operator keeps
//! the exact running totals per pair. Time is a total order (the chunk index), so the totals
//! need no general `reduce`: each changed pair costs one trace lookup per epoch.

use std::rc::Rc;

use foldhash::HashMap;

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::operators::count::CountTotal;
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::implementations::KeySpine;
use differential_dataflow::trace::{Cursor, TraceReader};
use differential_dataflow::{AsCollection, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::progress::{Antichain, Timestamp};

use super::arranged;
use crate::model::Epoch;
use crate::model::{Gender, Name, Txn, Weight, WeightKey};

/// `(customer, merchant)`.
pub type Pair = (Name, Name);

/// Weights enter the sums as fixed-point integers of 10^-18, so that `W(c,m)`'s numerator
/// is an exact, order-independent sum (the same bits for any worker count). The rounding
/// (< 10^-18 absolute) is far inside the SPEC's 10^-9 tie tolerance.
pub(crate) const WEIGHT_SCALE: f64 = 1e18;

/// Per `(c, m)` running totals, carried in the difference type and accumulated by
/// [`pair_changes`]: `n(c,m)`, `A(c,m)`, transactions seen with gender F and M, and the
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

/// The importance table as every worker holds it: `w(c,m,t)`, looked up by key. The table is
/// static for a run (its bytes are part of the run's fingerprint), so it is broadcast — each
/// process parses the whole file once — and joined with the transactions as they enter (a
/// broadcast hash join). The dataflow then never arranges the transactions by `(c, m, t)`:
/// each transaction contributes its weight to its pair's totals directly.
///
/// Compact, since every process holds all of it and every transaction probes it: the names
/// are numbered once (customers, merchants and categories each), and the weights are keyed
/// by the three numbers: 24 bytes an entry instead of 64 for three names and the weight (the
/// ×10 set's 371k keys take 13 MB). A transaction whose customer, merchant or
/// category the file never names is answered by the small name maps alone.
#[derive(Debug, Default)]
pub(crate) struct WeightTable {
    customers: HashMap<Name, u32>,
    merchants: HashMap<Name, u32>,
    categories: HashMap<Name, u32>,
    weights: HashMap<(u32, u32, u32), f64>,
}

impl WeightTable {
    /// The table of `weights`; a key given twice keeps its last weight.
    pub(crate) fn new(weights: &[(WeightKey, Weight)]) -> WeightTable {
        let mut table = WeightTable::default();
        for (key, w) in weights {
            let ids = (
                number(&mut table.customers, &key.customer),
                number(&mut table.merchants, &key.merchant),
                number(&mut table.categories, &key.category),
            );
            table.weights.insert(ids, w.into_inner());
        }
        table
    }

    /// `w(c,m,t)` in fixed point (see [`WEIGHT_SCALE`]).
    fn scaled(&self, customer: &Name, merchant: &Name, category: &Name) -> Option<i128> {
        let ids = (
            *self.customers.get(customer)?,
            *self.merchants.get(merchant)?,
            *self.categories.get(category)?,
        );
        let w = self.weights.get(&ids)?;
        Some((w * WEIGHT_SCALE).round() as i128)
    }
}

/// The number of `name` in `numbers`, given the next one when it is new.
fn number(numbers: &mut HashMap<Name, u32>, name: &Name) -> u32 {
    let next = numbers.len() as u32;
    *numbers.entry(name.clone()).or_insert(next)
}

/// One worker's share of a chunk, pre-aggregated before it enters the dataflow: the totals
/// per `(c, m)` (a chunk of 10,000 rows touches ~7,600 pairs) and the transactions per
/// merchant (~50). The dataflow sees the same collections as if every transaction entered
/// alone, with fewer updates to sort.
#[derive(Debug, Default)]
pub(crate) struct ShareDeltas {
    pub pairs: HashMap<Pair, PairSums>,
    pub merchants: HashMap<Name, isize>,
}

impl ShareDeltas {
    pub(crate) fn of(txns: Vec<Txn>, weights: &WeightTable) -> ShareDeltas {
        let mut deltas = ShareDeltas {
            pairs: HashMap::with_capacity_and_hasher(txns.len(), Default::default()),
            merchants: HashMap::default(),
        };
        for txn in txns {
            let weight = weights.scaled(&txn.customer, &txn.merchant, &txn.category);
            let sums = deltas
                .pairs
                .entry((txn.customer, txn.merchant))
                .or_default();
            sums.plus_equals(&PairSums {
                n: 1,
                amount: txn.amount as i128,
                female: (txn.gender == Gender::Female) as i64,
                male: (txn.gender == Gender::Male) as i64,
                weighted_n: weight.is_some() as i64,
                weighted_sum: weight.unwrap_or(0),
            });
        }
        for ((_, merchant), sums) in &deltas.pairs {
            *deltas.merchants.entry(merchant.clone()).or_default() += sums.n as isize;
        }
        deltas
    }
}

/// The stream of pair changes. It never leaves its worker (every consumer derives a smaller
/// record first), so the changes are shared by reference: each of the six consumers gets the
/// same records instead of a copy.
pub(crate) type PairChanges<'s> = VecCollection<'s, Epoch, Rc<PairChange>>;

/// How one pair's totals changed at one time. Zero totals mean the pair has no transactions.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PairChange {
    pub pair: Pair,
    pub before: PairSums,
    pub after: PairSums,
}

/// The per-pair totals, maintained incrementally, as a stream of changes: for every pair
/// touched at a time, its totals before and after. `deltas` carries each pair's increments in
/// its difference type ("money in the diff"); they are arranged by pair, and each touched
/// pair costs one trace lookup — `count_total`'s algorithm (time is a total order, the chunk
/// index), but reporting before and after together, so that the collections derived from the
/// totals ([`derive`](fn@derive)) carry only the updates that do not cancel.
pub(crate) fn pair_changes<'s>(
    deltas: VecCollection<'s, Epoch, Pair, PairSums>,
) -> (PairChanges<'s>, PairTrace) {
    let arranged = deltas.arrange_by_self_named("Arrange: PairTotals");
    let mut trace = arranged.trace.clone();
    let handle = arranged.trace.clone();
    let changes = arranged
        .stream
        .unary_frontier(Pipeline, "PairTotals", move |_, _| {
            // The times of the batches received so far: [lower, upper).
            let mut lower = Antichain::from_elem(Epoch::minimum());
            let mut upper = Antichain::from_elem(Epoch::minimum());
            move |(input, _frontier), output| {
                lower.clone_from(&upper);
                let (caps, batches) = arranged::receive(input, &mut upper);
                if !caps.is_empty() {
                    let mut session = output.session(&caps);
                    let (mut batch_cursor, batch_storage) = cursor_list(batches);
                    let (mut trace_cursor, trace_storage) = cursor_list(
                        trace
                            .batches_through(lower.borrow())
                            .expect("the trace is compacted only up to `lower`"),
                    );
                    while let Some(pair) = batch_cursor.get_key(&batch_storage) {
                        let mut totals = PairSums::default();
                        trace_cursor.seek_key(&trace_storage, pair);
                        if trace_cursor.get_key(&trace_storage) == Some(pair) {
                            trace_cursor.map_times(&trace_storage, |_, diff| {
                                totals.plus_equals(diff);
                            });
                        }
                        batch_cursor.map_times(&batch_storage, |time, diff| {
                            let before = totals;
                            totals.plus_equals(diff);
                            session.give((
                                Rc::new(PairChange {
                                    pair: pair.clone(),
                                    before,
                                    after: totals,
                                }),
                                *time,
                                1isize,
                            ));
                        });
                        batch_cursor.step_key(&batch_storage);
                    }
                }
                arranged::release(&mut trace, &mut upper);
            }
        })
        .as_collection();
    (changes, handle)
}

/// A handle on the per-pair totals' trace, outside the dataflow: what a checkpoint reads
/// ([`pair_totals_through`]). Whoever holds it must advance its compaction as epochs
/// complete ([`release_through`]), or the trace keeps every batch.
pub(crate) type PairTrace = TraceAgent<KeySpine<Pair, Epoch, PairSums>>;

/// Every pair's totals over the times before `upper`, ascending by pair, zero totals left
/// out: this worker's part of the state at epoch `upper - 1`. `None` when the trace cannot
/// answer for `upper` (it has not reached it, or was compacted past it).
pub(crate) fn pair_totals_through(
    trace: &mut PairTrace,
    upper: Epoch,
) -> Option<Vec<(Pair, PairSums)>> {
    let mut reached = Antichain::new();
    trace.read_upper(&mut reached);
    if reached.less_than(&upper) {
        return None;
    }
    let batches = trace.batches_through(Antichain::from_elem(upper).borrow())?;
    let (mut cursor, storage) = cursor_list(batches);
    let mut out = Vec::new();
    while let Some(pair) = cursor.get_key(&storage) {
        let mut totals = PairSums::default();
        cursor.map_times(&storage, |time, diff| {
            if *time < upper {
                totals.plus_equals(diff);
            }
        });
        if !totals.is_zero() {
            out.push((pair.clone(), totals));
        }
        cursor.step_key(&storage);
    }
    Some(out)
}

/// Lets the trace forget distinctions and batches before `upper` (an epoch every reader is
/// done with).
pub(crate) fn release_through(trace: &mut PairTrace, upper: Epoch) {
    let frontier = Antichain::from_elem(upper);
    trace.set_logical_compaction(frontier.borrow());
    trace.set_physical_compaction(frontier.borrow());
}

/// The collection `{ view(pair, totals) : pairs with transactions }`, from the changes: each
/// change retracts the old view and inserts the new one, and sends nothing when they are
/// equal (a derived fact that did not change costs nothing downstream).
pub fn derive<'s, D, F>(changes: PairChanges<'s>, view: F) -> VecCollection<'s, Epoch, D>
where
    D: differential_dataflow::Data,
    F: Fn(&Pair, &PairSums) -> Option<D> + 'static,
{
    changes.explode(move |change| {
        let seen = |sums: &PairSums| {
            if sums.is_zero() {
                None
            } else {
                view(&change.pair, sums)
            }
        };
        let (old, new) = (seen(&change.before), seen(&change.after));
        let changed = old != new;
        let retract = old.filter(|_| changed).map(|d| (d, -1isize));
        let insert = new.filter(|_| changed).map(|d| (d, 1isize));
        retract.into_iter().chain(insert)
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
