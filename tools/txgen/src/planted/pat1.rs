//! PatId1, planted in the importance weights once the final counts are known: at every
//! merchant with `N(m)` above the threshold, a few high-count customers get very low weights,
//! and a few customers whose count is the smallest at or above the p90 boundary get the p10
//! boundary weight (ties on both percentile boundaries).

use std::ops::Range;

use crate::importance::KeyImportance;
use crate::options::MERCHANTS;
use crate::rng::Rng;
use crate::world::World;

/// Weights (millionths) of the low-weight plants of one merchant.
const LOW_WEIGHTS: [i64; 4] = [50_000, 120_000, 120_000, 310_000];
/// Customers planted on both percentile boundaries at one merchant.
const TIES: usize = 3;

/// One customer's keys at one merchant, summed: count, weighted weight sum and its divisor.
struct Agg {
    cust: u32,
    n: u64,
    num: i128,
    den: i128,
    /// Positions of the customer's keys in the merchant's key list.
    keys: Range<usize>,
}

/// The exact p90 of a merchant's per-customer counts, as `PERCENTILE_CONT` interpolates it.
struct P90 {
    lo: u64,
    hi: u64,
    /// Tenths of the way from `lo` to `hi`.
    rem: u64,
}

impl P90 {
    fn of(aggs: &[Agg]) -> P90 {
        let mut counts: Vec<u64> = aggs.iter().map(|a| a.n).collect();
        counts.sort_unstable();
        let x9 = 9 * (counts.len() as u64 - 1);
        let (f, rem) = ((x9 / 10) as usize, x9 % 10);
        let hi = counts[(f + 1).min(counts.len() - 1)];
        P90 {
            lo: counts[f],
            hi,
            rem,
        }
    }

    /// `n >= lo + rem/10 (hi - lo)`, in integers.
    fn reached_by(&self, n: u64) -> bool {
        10 * n as u128 >= 10 * self.lo as u128 + self.rem as u128 * (self.hi - self.lo) as u128
    }
}

impl World {
    pub(crate) fn plant_pat1(&mut self, imp: &mut [KeyImportance], rng: &mut Rng) {
        if self.pat1_min_transactions == 0 {
            return;
        }
        for m in 0..MERCHANTS {
            if self.merchant_rows[m] > self.pat1_min_transactions {
                self.plant_pat1_at(m, imp, rng);
            }
        }
    }

    fn plant_pat1_at(&mut self, m: usize, imp: &mut [KeyImportance], rng: &mut Rng) {
        let (idx, aggs) = self.customers_at(m, imp);
        if aggs.len() < 10 {
            return;
        }
        let p90 = P90::of(&aggs);
        let mut q: Vec<usize> = (0..aggs.len())
            .filter(|&a| {
                p90.reached_by(aggs[a].n) && !self.customers[aggs[a].cust as usize].planted
            })
            .collect();
        if q.is_empty() {
            return;
        }
        let tie_pool = pick_ties(&aggs, &q, rng);
        q.retain(|a| !tie_pool.contains(a));
        rng.shuffle(&mut q);
        q.truncate(LOW_WEIGHTS.len());
        q.sort_unstable();
        let tie_weight = tie_weight(&aggs, &tie_pool, &q);

        for (&a, &w) in q.iter().zip(&LOW_WEIGHTS) {
            self.plant_pat1_customer(imp, &idx, &aggs[a], m, w, false);
        }
        if let Some(tw) = tie_weight {
            for &a in &tie_pool {
                self.plant_pat1_customer(imp, &idx, &aggs[a], m, tw, true);
            }
        }
    }

    /// The keys of merchant `m` ordered by customer, and their sums per customer.
    fn customers_at(&self, m: usize, imp: &[KeyImportance]) -> (Vec<usize>, Vec<Agg>) {
        let mut idx: Vec<usize> = (0..self.keys.len())
            .filter(|&k| self.keys[k].merchant as usize == m)
            .collect();
        idx.sort_by_key(|&k| (self.keys[k].cust, k));
        let mut aggs: Vec<Agg> = Vec::new();
        let mut i = 0;
        while i < idx.len() {
            let cust = self.keys[idx[i]].cust;
            let mut j = i;
            let (mut n, mut num, mut den) = (0u64, 0i128, 0i128);
            while j < idx.len() && self.keys[idx[j]].cust == cust {
                let k = &self.keys[idx[j]];
                n += k.n as u64;
                if !imp[idx[j]].missing {
                    num += k.n as i128 * imp[idx[j]].weight as i128;
                    den += k.n as i128;
                }
                j += 1;
            }
            aggs.push(Agg {
                cust,
                n,
                num,
                den,
                keys: i..j,
            });
            i = j;
        }
        (idx, aggs)
    }

    /// Gives each key of `agg`'s customer at `m` (positions in `idx`) the weight `weight`,
    /// on one row.
    fn plant_pat1_customer(
        &mut self,
        imp: &mut [KeyImportance],
        idx: &[usize],
        agg: &Agg,
        m: usize,
        weight: i64,
        boundary: bool,
    ) {
        let cust = agg.cust;
        for &k in &idx[agg.keys.clone()] {
            imp[k] = KeyImportance {
                weight,
                missing: false,
                rows: 0,
                defer: false,
            };
        }
        self.customers[cust as usize].planted = true;
        self.pat1.push((cust, m as u8, boundary));
    }
}

/// Up to [`TIES`] of the qualifying customers `q` whose count is the smallest among them.
fn pick_ties(aggs: &[Agg], q: &[usize], rng: &mut Rng) -> Vec<usize> {
    let min_n = q.iter().map(|&a| aggs[a].n).min().unwrap_or(0);
    let mut tie_pool: Vec<usize> = q.iter().copied().filter(|&a| aggs[a].n == min_n).collect();
    rng.shuffle(&mut tie_pool);
    tie_pool.truncate(TIES);
    tie_pool
}

/// The weight of the tie plants: the value at the p10 position of everybody else's weights
/// (and the low plants') once the ties are counted in, floored to a millionth, so W <= p10
/// holds even when that value is not a whole millionth. `None` when nobody has a weight.
fn tie_weight(aggs: &[Agg], tie_pool: &[usize], low: &[usize]) -> Option<i64> {
    let mut others: Vec<(i128, i128)> = aggs
        .iter()
        .enumerate()
        .filter(|(a, g)| g.den > 0 && !tie_pool.contains(a) && !low.contains(a))
        .map(|(_, g)| (g.num, g.den))
        .collect();
    others.extend(LOW_WEIGHTS.iter().take(low.len()).map(|&w| (w as i128, 1)));
    others.sort_by(|a, b| (a.0 as f64 / a.1 as f64).total_cmp(&(b.0 as f64 / b.1 as f64)));
    let total = others.len() + tie_pool.len();
    let fw = (total - 1) / 10;
    others
        .get(fw.min(others.len().saturating_sub(1)))
        .map(|&(num, den)| num.div_euclid(den) as i64)
}
