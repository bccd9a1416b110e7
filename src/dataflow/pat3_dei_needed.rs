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
//! multiplicities are `F(m)` and `M(m)`. The counts do not depend on thresholds: they are
//! computed once, and each distinct threshold filters them.

use differential_dataflow::collection::concatenate;
use differential_dataflow::VecCollection;

use super::aggregates::{derive, PairChanges};
use super::detections::{Facts, Holding};
use super::variants::{by_parameters, fan_out};
use crate::model::Epoch;
use crate::model::{count_above, DetectionKey, Gender, Name, Pattern, Thresholds};

pub(crate) fn detect<'s>(
    changes: PairChanges<'s>,
    sets: &[Thresholds],
) -> VecCollection<'s, Epoch, Holding> {
    let scope = changes.inner.scope();
    let genders = gender_counts(changes);
    let mut all = Vec::new();
    for (min_female, ids) in by_parameters(sets, |t| t.dei_min_female_customers) {
        let detections = genders
            .clone()
            .filter(move |(_, (female, male))| female < male && count_above(*female, min_female));
        let tagged = fan_out(detections, ids, |set, (merchant, (female, male))| Holding {
            set,
            key: DetectionKey {
                pattern: Pattern::DeiNeeded,
                merchant: merchant.clone(),
                customer: Name::default(),
            },
            facts: Facts::DeiNeeded {
                female: *female,
                male: *male,
            },
        });
        all.push(tagged);
    }
    concatenate(scope, all)
}

/// `(m, (F(m), M(m)))` for every merchant with a customer seen as female or male.
fn gender_counts(changes: PairChanges<'_>) -> VecCollection<'_, Epoch, (Name, (i64, i64))> {
    let female = derive(changes.clone(), |(_, merchant), s| {
        (s.female > 0).then(|| (merchant.clone(), Gender::Female))
    });
    let male = derive(changes, |(_, merchant), s| {
        (s.male > 0).then(|| (merchant.clone(), Gender::Male))
    });
    female
        .concat(male)
        .reduce(|_merchant, input: &[(&Gender, isize)], output| {
            let customers = |g: Gender| {
                input
                    .iter()
                    .find(|(gender, _)| **gender == g)
                    .map_or(0, |(_, n)| *n as i64)
            };
            output.push(((customers(Gender::Female), customers(Gender::Male)), 1isize));
        })
}
