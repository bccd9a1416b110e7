//! `percentile_cont(p)` of values sorted ascending `v_0..v_{n-1}`: with `x = p·(n−1)`, the
//! result is `v_⌊x⌋ + (x−⌊x⌋)·(v_⌈x⌉ − v_⌊x⌋)` (PostgreSQL's definition, SPEC §4).

use crate::model::Fraction;

/// `value >= percentile_cont(p)` of the sorted integer `values`, decided exactly.
///
/// With `p = P/10^6`, `x = P·(n−1)/10^6`; writing `P·(n−1) = q·10^6 + r`, the percentile is
/// `v_q + r·(v_{q+1} − v_q)/10^6`, so the comparison is `10^6·value >= 10^6·v_q + r·(v_{q+1} − v_q)`.
pub fn at_least_count_percentile(value: i64, sorted: &[i64], p: Fraction) -> bool {
    let Some((q, r)) = split(sorted.len(), p) else {
        return false;
    };
    let lo = sorted[q] as i128;
    let hi = if r == 0 { lo } else { sorted[q + 1] as i128 };
    const D: i128 = 1_000_000;
    D * value as i128 >= D * lo + r as i128 * (hi - lo)
}

/// `percentile_cont(p)` of sorted floats, `None` for no values.
pub fn percentile_f64(sorted: &[f64], p: Fraction) -> Option<f64> {
    let (q, r) = split(sorted.len(), p)?;
    let lo = sorted[q];
    if r == 0 {
        return Some(lo);
    }
    let hi = sorted[q + 1];
    Some(lo + (r as f64 / 1e6) * (hi - lo))
}

/// `(⌊x⌋, fractional part in millionths)` of `x = p·(n−1)`.
fn split(n: usize, p: Fraction) -> Option<(usize, u64)> {
    if n == 0 {
        return None;
    }
    let scaled = p.millionths as u64 * (n as u64 - 1);
    Some(((scaled / 1_000_000) as usize, scaled % 1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P90: Fraction = Fraction::from_millionths(900_000);

    #[test]
    fn count_percentile_interpolates_exactly() {
        // {1,2,3,4} at 0.9: x = 2.7, value = 3 + 0.7 = 3.7.
        let v = [1, 2, 3, 4];
        assert!(!at_least_count_percentile(3, &v, P90));
        assert!(at_least_count_percentile(4, &v, P90));
        // Ten equal values: every one reaches the percentile (ties are inclusive).
        let v = [5; 10];
        assert!(at_least_count_percentile(5, &v, P90));
        // Exactly on an interpolated integer: {0, 10} at 0.9 → 9.
        assert!(at_least_count_percentile(9, &[0, 10], P90));
        assert!(!at_least_count_percentile(8, &[0, 10], P90));
        // p = 0 and p = 1 are the minimum and the maximum.
        assert!(at_least_count_percentile(
            1,
            &[1, 7],
            Fraction::from_millionths(0)
        ));
        assert!(!at_least_count_percentile(
            6,
            &[1, 7],
            Fraction::from_millionths(1_000_000)
        ));
        assert!(!at_least_count_percentile(0, &[], P90));
    }

    #[test]
    fn float_percentile_matches_definition() {
        let p10 = Fraction::from_millionths(100_000);
        assert_eq!(percentile_f64(&[], p10), None);
        assert_eq!(percentile_f64(&[2.0], p10), Some(2.0));
        // x = 0.1·3 = 0.3 → 1 + 0.3·(2 − 1)
        let got = percentile_f64(&[1.0, 2.0, 3.0, 4.0], p10).unwrap();
        assert!((got - 1.3).abs() < 1e-12);
    }
}
