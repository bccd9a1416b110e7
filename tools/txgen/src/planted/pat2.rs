//! PatId2: "child" customers make many small purchases at one merchant (65 % of their rows);
//! every third of them fades — large purchases there from [`CHILD_FADE_STEP`] on — so its
//! detection holds mid-file and stops holding later. Planted in the customers' habits.
//!
//! [`CHILD_FADE_STEP`]: crate::catalog::CHILD_FADE_STEP

use crate::catalog::{BIG_SHARES, CHILD_RANKS};
use crate::rng::Rng;
use crate::world::{entry_probabilities, Entry, Kind, World};

/// A merchant in a child's habits: rank, probability, kind of purchases.
type ChildHabit = (u8, f64, Kind);

impl World {
    /// Turns a few customers into children, each at one of [`CHILD_RANKS`].
    pub(crate) fn plant_children(&mut self, rng: &mut Rng) {
        let n = ((48.0 * self.scale).round() as usize)
            .max(3)
            .min(self.customers.len() / 4);
        let picks: Vec<usize> = self.candidates(rng, None).into_iter().take(n).collect();
        for (i, c) in picks.into_iter().enumerate() {
            let merchant = CHILD_RANKS[rng.below(CHILD_RANKS.len() as u64) as usize] as u8;
            let kind = if i % 3 == 2 {
                Kind::FadingChild
            } else {
                Kind::Child
            };
            let cu = &mut self.customers[c];
            cu.planted = true;
            cu.activity = 3.0;
            let range = cu.entries.clone();
            let mut habits = child_habits(&self.entries[range.clone()], merchant, kind);
            // Keep the customer's slice length: drop the smallest favourites if needed.
            drop_smallest_favourites(&mut habits, range.len());
            self.rewrite_habits(c, habits);
            self.children.push((c as u32, merchant, kind));
        }
    }

    /// Replaces customer `c`'s entries by `habits` (normalised, from step 0), shrinking its
    /// slice when there are fewer.
    fn rewrite_habits(&mut self, c: usize, habits: Vec<ChildHabit>) {
        let range = self.customers[c].entries.clone();
        let total: f64 = habits.iter().map(|p| p.1).sum();
        let mut cum = 0.0;
        let new_len = habits.len();
        for (slot, (m, p, k)) in self.entries[range.clone()].iter_mut().zip(habits) {
            cum += p / total;
            *slot = Entry::new(m, cum, 0, k);
        }
        self.entries[range.start + new_len - 1].cum = 1.0;
        self.customers[c].entries = range.start..range.start + new_len;
    }
}

/// A child's habits: `merchant` 65 %, the big merchants 25 %, the other favourites 10 % (each
/// group in the customer's old proportions).
fn child_habits(old: &[Entry], merchant: u8, kind: Kind) -> Vec<ChildHabit> {
    let mut big = Vec::new();
    let mut fav = Vec::new();
    for (e, p) in old.iter().zip(entry_probabilities(old)) {
        if (e.merchant as usize) < BIG_SHARES.len() {
            big.push((e.merchant, p));
        } else if e.merchant != merchant {
            fav.push((e.merchant, p));
        }
    }
    let bt: f64 = big.iter().map(|b| b.1).sum();
    let ft: f64 = fav.iter().map(|f| f.1).sum();
    let mut habits: Vec<ChildHabit> = Vec::new();
    for (m, p) in big {
        habits.push((m, 0.25 * p / bt, Kind::Normal));
    }
    for (m, p) in fav {
        habits.push((m, 0.10 * p / ft, Kind::Normal));
    }
    habits.push((merchant, 0.65, kind));
    habits
}

/// Drops the least likely small favourites until at most `len` habits are left.
fn drop_smallest_favourites(habits: &mut Vec<ChildHabit>, len: usize) {
    while habits.len() > len {
        let (idx, _) = habits
            .iter()
            .enumerate()
            .filter(|(_, p)| p.2 == Kind::Normal && (p.0 as usize) >= BIG_SHARES.len())
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .expect("a favourite to drop");
        habits.remove(idx);
    }
}
