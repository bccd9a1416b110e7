//! PatId3 DEI-NEEDED — SPEC §4:
//!
//! ```text
//! F(m) < M(m)  and  F(m) > 100
//! F(m), M(m) = number of distinct customers of m seen with gender 'F' / 'M'
//! ```
//!
//! A customer seen with both genders at a merchant counts under both. The pair changes give
//! one `(m, gender)` record per customer seen with that gender at `m` (an update only when a
//! pair sees a gender for the first time), so a merchant's group has just two values whose
//! multiplicities are `F(m)` and `M(m)`.

use differential_dataflow::VecCollection;

use super::aggregates::{derive, PairChanges};
use crate::model::Epoch;
use crate::model::{DetectionKey, Gender, Name, Pattern, Thresholds};

pub fn detect<'s>(
    changes: PairChanges<'s>,
    thresholds: &Thresholds,
) -> VecCollection<'s, Epoch, DetectionKey> {
    let min_female = thresholds.dei_min_female_customers as isize;
    let female = derive(changes.clone(), |(_, merchant), s| {
        (s.female > 0).then(|| (merchant.clone(), Gender::Female))
    });
    let male = derive(changes, |(_, merchant), s| {
        (s.male > 0).then(|| (merchant.clone(), Gender::Male))
    });
    female
        .concat(male)
        .reduce(move |_merchant, input: &[(&Gender, isize)], output| {
            let customers = |g: Gender| {
                input
                    .iter()
                    .find(|(gender, _)| **gender == g)
                    .map_or(0, |(_, n)| *n)
            };
            let (female, male) = (customers(Gender::Female), customers(Gender::Male));
            if female < male && female > min_female {
                output.push(((), 1isize));
            }
        })
        .map(|(merchant, ())| DetectionKey {
            pattern: Pattern::DeiNeeded,
            merchant,
            customer: Name::default(),
        })
}
