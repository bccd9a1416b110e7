//! PatId2 CHILD — SPEC §4:
//!
//! ```text
//! n(c,m) >= 80  and  A(c,m) / n(c,m) < 23
//! ```
//!
//! Decided exactly on integers: `A < limit · n`, with amounts in micro-units. Derived from the
//! pair changes, so only the pairs whose condition flips send an update.

use differential_dataflow::VecCollection;

use super::aggregates::{derive, PairChanges};
use crate::model::Epoch;
use crate::model::{DetectionKey, Pattern, Thresholds};

pub fn detect<'s>(
    changes: PairChanges<'s>,
    thresholds: &Thresholds,
) -> VecCollection<'s, Epoch, DetectionKey> {
    let min_txns = thresholds.child_min_txns as i64;
    let max_avg = thresholds.child_max_avg_amount as i128;
    derive(changes, move |(customer, merchant), s| {
        (s.n >= min_txns && s.amount < max_avg * s.n as i128).then(|| DetectionKey {
            pattern: Pattern::Child,
            merchant: merchant.clone(),
            customer: customer.clone(),
        })
    })
}
