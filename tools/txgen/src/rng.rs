//! Random numbers that are the same on every platform: splitmix64 seeding of a xoshiro256**
//! stream, an `e^x` built from additions and multiplications only, and Vose alias tables.

#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The stream `stream` of `seed` (the generator uses one stream per phase).
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut s = [0u64; 4];
        for slot in &mut s {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *slot = z ^ (z >> 31);
        }
        Rng { s }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`); the multiply-shift bias is far below anything observable.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Approximately standard normal: Irwin–Hall sum of 12 uniforms (exact IEEE arithmetic).
    pub(crate) fn normal(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / 4_294_967_296.0;
        let mut sum = 0.0;
        for _ in 0..6 {
            let x = self.next_u64();
            sum += (x >> 32) as f64 * SCALE + (x & 0xFFFF_FFFF) as f64 * SCALE;
        }
        sum - 6.0
    }

    /// Log-normal with mean `mean` and log-scale `sigma`.
    pub(crate) fn lognormal(&mut self, mean: f64, sigma: f64) -> f64 {
        mean * det_exp(sigma * self.normal() - 0.5 * sigma * sigma)
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// `e^x` from additions and multiplications only, so results are identical on every platform.
pub(crate) fn det_exp(x: f64) -> f64 {
    const LN2: f64 = std::f64::consts::LN_2;
    let x = x.clamp(-700.0, 700.0);
    let k = (x / LN2).round();
    let r = x - k * LN2;
    // Taylor series on |r| <= ln2/2, Horner form: 14 terms are exact to double precision.
    const INV_FACT: [f64; 14] = {
        let mut t = [1.0; 14];
        let mut i = 1;
        while i < 14 {
            t[i] = t[i - 1] / i as f64;
            i += 1;
        }
        t
    };
    let mut sum = INV_FACT[13];
    for c in INV_FACT[..13].iter().rev() {
        sum = sum * r + c;
    }
    sum * f64::from_bits(((k as i64 + 1023) as u64) << 52)
}

/// Vose alias table for O(1) sampling from a discrete distribution.
pub(crate) struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    pub(crate) fn new(weights: &[f64]) -> Self {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        let mut prob: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut alias = vec![0u32; n];
        let mut small: Vec<usize> = Vec::new();
        let mut large: Vec<usize> = Vec::new();
        for (i, p) in prob.iter().enumerate() {
            if *p < 1.0 {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            alias[s] = l as u32;
            prob[l] = (prob[l] + prob[s]) - 1.0;
            if prob[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        for i in small.into_iter().chain(large) {
            prob[i] = 1.0;
        }
        Alias { prob, alias }
    }

    pub(crate) fn sample(&self, rng: &mut Rng) -> usize {
        let i = rng.below(self.prob.len() as u64) as usize;
        if rng.f64() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published splitmix64 outputs from state 0: `Rng::new(0, 0)` seeds with them.
    #[test]
    fn seeding_is_splitmix64() {
        let rng = Rng::new(0, 0);
        assert_eq!(
            rng.s,
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F,
                0xF88B_B8A8_724C_81EC,
            ]
        );
        // Streams of one seed start from different states.
        assert_ne!(Rng::new(0, 1).s, rng.s);
        assert_ne!(Rng::new(1, 0).s, rng.s);
    }

    /// The reference outputs of xoshiro256** (Blackman and Vigna) from the state {1, 2, 3, 4}.
    #[test]
    fn stream_is_the_reference_xoshiro256starstar() {
        let mut rng = Rng { s: [1, 2, 3, 4] };
        let expected: [u64; 10] = [
            11520,
            0,
            1509978240,
            1215971899390074240,
            1216172134540287360,
            607988272756665600,
            16172922978634559625,
            8476171486693032832,
            10595114339597558777,
            2904607092377533576,
        ];
        for e in expected {
            assert_eq!(rng.next_u64(), e);
        }
    }

    #[test]
    fn uniform_helpers_stay_in_range() {
        let mut rng = Rng::new(9, 0);
        for _ in 0..10_000 {
            let u = rng.f64();
            assert!((0.0..1.0).contains(&u));
            assert!(rng.below(7) < 7);
        }
        let mut items: Vec<u32> = (0..100).collect();
        rng.shuffle(&mut items);
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(items, sorted, "a shuffle of 100 items left them in order");
    }

    #[test]
    fn det_exp_matches_e() {
        assert_eq!(det_exp(0.0), 1.0);
        assert!((det_exp(1.0) - std::f64::consts::E).abs() < 1e-15);
        assert!((det_exp(-3.5) - 0.030_197_383_422_318_5).abs() < 1e-17);
        assert!((det_exp(std::f64::consts::LN_10) - 10.0).abs() < 1e-14);
        for i in -200..=200 {
            let x = i as f64 * 0.037;
            let (got, want) = (det_exp(x), x.exp());
            assert!(
                (got - want).abs() <= 1e-14 * want,
                "exp({x}): {got} vs {want}"
            );
        }
    }

    #[test]
    fn alias_samples_follow_the_weights() {
        let weights = [1.0, 0.0, 3.0, 6.0];
        let alias = Alias::new(&weights);
        let mut rng = Rng::new(5, 0);
        let mut counts = [0u32; 4];
        const DRAWS: u32 = 100_000;
        for _ in 0..DRAWS {
            counts[alias.sample(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0, "a zero weight was drawn");
        for (count, w) in counts.iter().zip(weights) {
            let share = *count as f64 / DRAWS as f64;
            assert!((share - w / 10.0).abs() < 0.01, "{counts:?}");
        }
    }
}
