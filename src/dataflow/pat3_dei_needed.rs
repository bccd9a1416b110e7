//! PatId3 DEI-NEEDED — SPEC §4:
//!
//! ```text
//! F(m) < M(m)  and  F(m) > 100
//! F(m), M(m) = number of distinct customers of m seen with gender 'F' / 'M'
//! ```
//!
//! A customer seen with both genders at a merchant counts under both.

use differential_dataflow::VecCollection;

use super::Epoch;
use crate::model::{DetectionKey, Gender, Name, Pattern, Thresholds, Txn};

pub fn detect<'s>(
    txns: VecCollection<'s, Epoch, Txn>,
    thresholds: &Thresholds,
) -> VecCollection<'s, Epoch, DetectionKey> {
    let min_female = thresholds.dei_min_female_customers as i64;
    txns.flat_map(|t| match t.gender {
        Gender::Female | Gender::Male => Some((t.merchant, t.gender, t.customer)),
        _ => None,
    })
    .distinct()
    .map(|(merchant, gender, _customer)| (merchant, gender))
    .count()
    .map(|((merchant, gender), customers)| (merchant, (gender, customers as i64)))
    .reduce(
        move |_merchant, input: &[(&(Gender, i64), isize)], output| {
            let count_of = |g: Gender| {
                input
                    .iter()
                    .find(|((gender, _), _)| *gender == g)
                    .map_or(0, |((_, n), _)| *n)
            };
            let (female, male) = (count_of(Gender::Female), count_of(Gender::Male));
            if female < male && female > min_female {
                output.push(((), 1isize));
            }
        },
    )
    .map(|(merchant, ())| DetectionKey {
        pattern: Pattern::DeiNeeded,
        merchant,
        customer: Name::default(),
    })
}
