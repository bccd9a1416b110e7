//! The differential computation (SPEC §4). Transactions enter at time = chunk index; the
//! importance weights enter once; every aggregate is a differential collection, so the work
//! of an epoch follows the rows that changed, not the history.
//!
//! | file | owns |
//! |---|---|
//! | `aggregates.rs` | `N(m)`; per `(c, m)` the running totals behind `n(c,m)`, `A(c,m)`, `W(c,m)` and the genders seen |
//! | `pat1_upgrade.rs` | PatId1: percentiles per large merchant |
//! | `pat2_child.rs` | PatId2: many small transactions |
//! | `pat3_dei_needed.rs` | PatId3: distinct female vs male customers |
//! | `percentile.rs` | `percentile_cont`, exact for counts |
//!
//! The dataflow's output is the set of detections that *hold* after each epoch. "Emit once,
//! at the first epoch it holds" is not a collection property (collections retract), so it is
//! the committing writer's job (`sinks::writer`), backed by the ledger.

pub mod aggregates;
pub mod pat1_upgrade;
pub mod pat2_child;
pub mod pat3_dei_needed;
pub mod percentile;

use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};

use crate::model::{DetectionKey, Name, Reject, Thresholds, Txn, Weight, WeightKey};

/// Logical time: the chunk index.
pub type Epoch = u64;

/// What one worker reports about its share of an epoch's chunk. The writer commits an epoch
/// only when every worker's report has arrived, so a stop or failure never commits half an epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShareReport {
    pub worker: usize,
    pub accepted: u64,
    pub rejected: u64,
    /// This share's rejected rows, in line order.
    pub rejects: Vec<Reject>,
}

/// The collections the writer consumes.
pub struct Outputs<'s> {
    /// Detections holding after each epoch (a set; the writer takes insertions).
    pub detections: VecCollection<'s, Epoch, DetectionKey>,
    /// `(m, N(m))`: its changes at time `k` give epoch `k`'s counter deltas.
    pub merchant_counts: VecCollection<'s, Epoch, (Name, i64)>,
}

/// Builds the detection dataflow over the transactions and the importance weights.
pub fn detect<'s>(
    txns: VecCollection<'s, Epoch, Txn>,
    weights: VecCollection<'s, Epoch, (WeightKey, Weight)>,
    thresholds: &Thresholds,
) -> Outputs<'s> {
    let merchant_counts = aggregates::merchant_counts(txns.clone());
    let sums = aggregates::pair_sums(txns, weights);

    let upgrade = pat1_upgrade::detect(merchant_counts.clone(), sums.clone(), thresholds);
    let child = pat2_child::detect(sums.clone(), thresholds);
    let dei = pat3_dei_needed::detect(aggregates::merchant_customer_genders(sums), thresholds);

    Outputs {
        detections: upgrade.concat(child).concat(dei),
        merchant_counts,
    }
}
