//! PatId2 CHILD — SPEC §4:
//!
//! ```text
//! n(c,m) >= 80  and  A(c,m) / n(c,m) < 23
//! ```
//!
//! Decided exactly on integers: `A < limit · n`, with amounts in micro-units. Derived from the
//! pair changes, so only the pairs whose condition (or, while it holds, whose totals) changed
//! send an update. One derivation per distinct `(min, limit)` of the threshold sets.

use differential_dataflow::collection::concatenate;
use differential_dataflow::VecCollection;

use super::aggregates::{derive, PairChanges};
use super::detections::{Facts, Holding};
use super::variants::{by_parameters, fan_out};
use crate::model::Epoch;
use crate::model::{count_reaches, DetectionKey, Pattern, Thresholds};

pub(crate) fn detect<'s>(
    changes: PairChanges<'s>,
    sets: &[Thresholds],
) -> VecCollection<'s, Epoch, Holding> {
    let groups = by_parameters(sets, |t| {
        (t.child_min_txns, t.child_max_avg_amount.micros as i128)
    });
    let scope = changes.inner.scope();
    let mut all = Vec::new();
    for ((min_txns, max_avg), ids) in groups {
        let detections = derive(changes.clone(), move |(customer, merchant), s| {
            (count_reaches(s.n, min_txns) && s.amount < max_avg * s.n as i128).then(|| {
                let key = DetectionKey {
                    pattern: Pattern::Child,
                    merchant: merchant.clone(),
                    customer: customer.clone(),
                };
                let facts = Facts::Child {
                    customer_txns: s.n,
                    amount: s.amount,
                };
                (key, facts)
            })
        });
        let tagged = fan_out(detections, ids, |set, (key, facts)| Holding {
            set,
            key: key.clone(),
            facts: *facts,
        });
        all.push(tagged);
    }
    concatenate(scope, all)
}
