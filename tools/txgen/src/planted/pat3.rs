//! PatId3: four merchants attract male customers more (`F(m) < M(m)` with enough women), and
//! one merchant is popular with women who mostly start using it late, so `F(m)` overtakes
//! `M(m)` around the middle of the file. Planted in the customers' choice of favourites.

use crate::catalog::{CROSSING_RANK, MALE_SKEWED_RANKS};
use crate::rng::Rng;

/// Factor on the popularity of the small merchant `rank` for a customer of `gender`.
pub(crate) fn gender_affinity(rank: usize, gender: u8) -> f64 {
    if MALE_SKEWED_RANKS.contains(&rank) {
        match gender {
            b'M' => 2.5,
            _ => 0.6,
        }
    } else if gender == b'F' && rank == CROSSING_RANK {
        1.5
    } else {
        1.0
    }
}

/// The first step at which a customer uses a favourite merchant: 0, except for 70 % of the
/// women at the crossing merchant, who arrive between days 60 and 140.
pub(crate) fn first_step(rng: &mut Rng, rank: usize, gender: u8) -> u16 {
    if rank == CROSSING_RANK && gender == b'F' && rng.chance(0.7) {
        60 + rng.below(81) as u16
    } else {
        0
    }
}
