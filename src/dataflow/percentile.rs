//! `percentile_cont(p)` of values sorted ascending `v_0..v_{n-1}`: with `x = p·(n−1)`, the
//! result is `v_⌊x⌋ + (x−⌊x⌋)·(v_⌈x⌉ − v_⌊x⌋)` (PostgreSQL's definition, SPEC §4).
//!
//! Only `v_⌊x⌋` and `v_⌈x⌉` matter. The dataflow reads them off histograms of distinct
//! values (`(value, multiplicity)`, ascending), linear in the number of distinct values.

use crate::model::Fraction;

const MILLION: i128 = 1_000_000;

/// The count percentile of a group, kept exact: `lo + r/10^6 · (hi − lo)`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct CountPercentile {
    lo: i64,
    hi: i64,
    /// Fractional part of `x`, in millionths.
    r: i64,
}

impl CountPercentile {
    /// `percentile_cont(p)` of a multiset of counts given as ascending `(count, multiplicity)`.
    pub(crate) fn of_histogram(histogram: &[(i64, u64)], p: Fraction) -> Option<CountPercentile> {
        let (lo, hi, r) = histogram_bounds(histogram, p)?;
        Some(CountPercentile { lo, hi, r })
    }

    /// The percentile's value (evidence): exact in `f64` up to its six decimals for any
    /// count below 2^33.
    pub fn value(&self) -> f64 {
        (MILLION * self.lo as i128 + self.r as i128 * (self.hi - self.lo) as i128) as f64
            / MILLION as f64
    }

    /// `value >= percentile`, decided exactly: `10^6·value >= 10^6·lo + r·(hi − lo)`.
    pub fn reached_by(&self, value: i64) -> bool {
        MILLION * value as i128
            >= MILLION * self.lo as i128 + self.r as i128 * (self.hi - self.lo) as i128
    }
}

/// The value at 0-based `rank` of a multiset given as ascending `(value, multiplicity)`.
fn value_at<T: Copy>(histogram: &[(T, u64)], rank: u64) -> Option<T> {
    let mut below = 0u64;
    for &(value, count) in histogram {
        below += count;
        if rank < below {
            return Some(value);
        }
    }
    None
}

/// `(v_⌊x⌋, v_⌈x⌉, fractional part in millionths)` of a multiset given as ascending
/// `(value, multiplicity)` pairs: linear in the number of *distinct* values.
fn histogram_bounds<T: Copy>(histogram: &[(T, u64)], p: Fraction) -> Option<(T, T, i64)> {
    let total: u64 = histogram.iter().map(|(_, c)| c).sum();
    prefix_bounds(histogram, total, p)
}

/// [`histogram_bounds`] of a multiset of `total` values of which `prefix` holds the smallest
/// (at least the first [`ranks_needed`] of them).
fn prefix_bounds<T: Copy>(prefix: &[(T, u64)], total: u64, p: Fraction) -> Option<(T, T, i64)> {
    let histogram = prefix;
    let (q, r) = split(total as usize, p)?;
    let lo = value_at(histogram, q as u64)?;
    let hi = if r == 0 {
        lo
    } else {
        value_at(histogram, q as u64 + 1)?
    };
    Some((lo, hi, r))
}

/// `percentile_cont(p)` of a multiset of floats given as ascending `(value, multiplicity)`.
#[cfg(test)]
pub(crate) fn float_percentile_of_histogram(histogram: &[(f64, u64)], p: Fraction) -> Option<f64> {
    interpolate(histogram_bounds(histogram, p)?)
}

/// How many of the smallest values of a multiset of `total` values decide its
/// `percentile_cont(p)`: `⌈x⌉ + 1` (0 for an empty multiset).
pub(crate) fn ranks_needed(total: u64, p: Fraction) -> u64 {
    match split(total as usize, p) {
        Some((q, 0)) => q as u64 + 1,
        Some((q, _)) => q as u64 + 2,
        None => 0,
    }
}

/// `percentile_cont(p)` of a multiset of `total` floats, given only its smallest values as an
/// ascending `(value, multiplicity)` prefix covering at least [`ranks_needed`] values: a low
/// percentile reads a small part of a large group.
pub(crate) fn float_percentile_of_prefix(
    prefix: &[(f64, u64)],
    total: u64,
    p: Fraction,
) -> Option<f64> {
    interpolate(prefix_bounds(prefix, total, p)?)
}

fn interpolate((lo, hi, r): (f64, f64, i64)) -> Option<f64> {
    Some(if r == 0 {
        lo
    } else {
        lo + (r as f64 / 1e6) * (hi - lo)
    })
}

/// `(⌊x⌋, fractional part of x in millionths)` of `x = p·(n−1)`.
fn split(n: usize, p: Fraction) -> Option<(usize, i64)> {
    if n == 0 {
        return None;
    }
    let scaled = p.millionths as u64 * (n as u64 - 1);
    Some(((scaled / 1_000_000) as usize, (scaled % 1_000_000) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P90: Fraction = Fraction::from_millionths(900_000);

    /// The histogram of a list of values.
    fn histogram(values: &[i64]) -> Vec<(i64, u64)> {
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        let mut out: Vec<(i64, u64)> = Vec::new();
        for v in sorted {
            match out.last_mut() {
                Some((last, count)) if *last == v => *count += 1,
                _ => out.push((v, 1)),
            }
        }
        out
    }

    fn reached(value: i64, values: &[i64], p: Fraction) -> bool {
        CountPercentile::of_histogram(&histogram(values), p).is_some_and(|pc| pc.reached_by(value))
    }

    #[test]
    fn count_percentile_interpolates_exactly() {
        // {1,2,3,4} at 0.9: x = 2.7, value = 3 + 0.7 = 3.7 (any input order).
        let v = [4, 1, 3, 2];
        assert!(!reached(3, &v, P90));
        assert!(reached(4, &v, P90));
        // Ten equal values: every one reaches the percentile (ties are inclusive).
        assert!(reached(5, &[5; 10], P90));
        // Exactly on an interpolated integer: {0, 10} at 0.9 → 9.
        assert!(reached(9, &[10, 0], P90));
        assert!(!reached(8, &[0, 10], P90));
        // p = 0 and p = 1 are the minimum and the maximum.
        assert!(reached(1, &[7, 1], Fraction::from_millionths(0)));
        assert!(!reached(6, &[1, 7], Fraction::from_millionths(1_000_000)));
        assert!(!reached(0, &[], P90));
    }

    #[test]
    fn histograms_match_the_definition_on_many_groups() {
        // The SPEC's formula on a sorted list of every value, for pseudo-random groups.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..500 {
            let n = (next() % 40) as usize + 1;
            let values: Vec<i64> = (0..n).map(|_| (next() % 12) as i64).collect();
            let p = Fraction::from_millionths((next() % 1_000_001) as u32);
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let x = p.millionths as i128 * (n as i128 - 1);
            let (q, r) = ((x / MILLION) as usize, x % MILLION);
            let hi = if r == 0 { sorted[q] } else { sorted[q + 1] };
            for probe in -1..13 {
                let expected = MILLION * probe as i128
                    >= MILLION * sorted[q] as i128 + r * (hi - sorted[q]) as i128;
                assert_eq!(
                    reached(probe, &values, p),
                    expected,
                    "{values:?} p={p:?} v={probe}"
                );
            }
            let floats: Vec<(f64, u64)> = histogram(&values)
                .into_iter()
                .map(|(v, c)| (v as f64 / 4.0, c))
                .collect();
            let expected_f =
                sorted[q] as f64 / 4.0 + (r as f64 / 1e6) * ((hi - sorted[q]) as f64 / 4.0);
            let got = float_percentile_of_histogram(&floats, p).unwrap();
            assert!((got - expected_f).abs() < 1e-12, "{got} vs {expected_f}");
            // The shortest prefix covering `ranks_needed` values gives the same bits.
            let needed = ranks_needed(n as u64, p);
            let mut covered = 0;
            let prefix: Vec<(f64, u64)> = floats
                .iter()
                .take_while(|(_, c)| {
                    let take = covered < needed;
                    covered += c;
                    take
                })
                .copied()
                .collect();
            assert!(prefix.len() <= floats.len());
            assert_eq!(
                float_percentile_of_prefix(&prefix, n as u64, p),
                Some(got),
                "{values:?} p={p:?} prefix={prefix:?}"
            );
        }
        assert_eq!(CountPercentile::of_histogram(&[], P90), None);
        assert_eq!(float_percentile_of_histogram(&[], P90), None);
    }

    #[test]
    fn float_percentile_matches_definition() {
        let p10 = Fraction::from_millionths(100_000);
        assert_eq!(float_percentile_of_histogram(&[(2.0, 1)], p10), Some(2.0));
        // {1, 2, 3, 4}: x = 0.1·3 = 0.3 → 1 + 0.3·(2 − 1)
        let got =
            float_percentile_of_histogram(&[(1.0, 1), (2.0, 1), (3.0, 1), (4.0, 1)], p10).unwrap();
        assert!((got - 1.3).abs() < 1e-12);
        // Multiplicities count as repeated values: {1, 1, 1, 5} at 0.9 → x = 2.7 → 1 + 0.7·4.
        let got = float_percentile_of_histogram(&[(1.0, 3), (5.0, 1)], P90).unwrap();
        assert!((got - 3.8).abs() < 1e-12);
    }
}
