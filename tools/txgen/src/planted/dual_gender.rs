//! One or two women who, from [`FLIP_STEP`] on, appear as men at their favourite small
//! merchant: a customer seen with two genders at one merchant. Planted in their habits.

use crate::catalog::{BIG_SHARES, FLIP_STEP};
use crate::format::with_gender;
use crate::rng::Rng;
use crate::world::{entry_probabilities, Entry, World};

impl World {
    pub(crate) fn plant_dual_gender(&mut self, rng: &mut Rng) {
        let n = ((2.0 * self.scale).round() as usize).clamp(1, 2);
        let picks: Vec<usize> = self
            .candidates(rng, Some(b'F'))
            .into_iter()
            .take(n)
            .collect();
        for c in picks {
            let range = self.customers[c].entries.clone();
            let Some(chosen) = favourite_small_merchant(&self.entries[range.clone()]) else {
                continue;
            };
            let i = range.start + chosen;
            self.entries[i].flip_from = FLIP_STEP;
            // Make the merchant a habit, so both genders surely show up there.
            make_habit(&mut self.entries[range], chosen);
            let cu = &mut self.customers[c];
            cu.planted = true;
            cu.activity = cu.activity.max(1.5);
            cu.alt_prefix = with_gender(&cu.prefix, b'M');
            self.duals.push((c as u32, self.entries[i].merchant));
        }
    }
}

/// The index of the small merchant with the largest share that is used from step 0.
fn favourite_small_merchant(entries: &[Entry]) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (e, p)) in entries.iter().zip(entry_probabilities(entries)).enumerate() {
        if (e.merchant as usize) >= BIG_SHARES.len()
            && e.start_step == 0
            && best.is_none_or(|b| p > b.1)
        {
            best = Some((i, p));
        }
    }
    best.map(|(i, _)| i)
}

/// Gives `entries[chosen]` 30 % of the customer's rows, the others 70 % in their proportions.
fn make_habit(entries: &mut [Entry], chosen: usize) {
    let mut probs = entry_probabilities(entries);
    let rest: f64 = 1.0 - probs[chosen];
    for (j, p) in probs.iter_mut().enumerate() {
        *p = if j == chosen { 0.3 } else { *p * 0.7 / rest };
    }
    let mut cum = 0.0;
    for (e, p) in entries.iter_mut().zip(probs) {
        cum += p;
        e.cum = cum;
    }
    if let Some(last) = entries.last_mut() {
        last.cum = 1.0;
    }
}
