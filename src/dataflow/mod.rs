//! The differential computation (SPEC §4). Transactions enter at time = chunk index, each
//! worker's share pre-aggregated per `(c, m)` pair and joined with the (static, broadcast)
//! importance weights on the way in; every aggregate is a differential collection, so the
//! work of an epoch follows the rows that changed, not the history.
//!
//! | file | owns |
//! |---|---|
//! | `aggregates.rs` | `N(m)`; per `(c, m)` the running totals behind `n(c,m)`, `A(c,m)`, `W(c,m)` and the genders seen, as a stream of changes |
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

use std::sync::Arc;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;

use self::aggregates::{Pair, PairSums, ShareDeltas, WeightTable};
use crate::model::{DetectionKey, Name, Reject, Thresholds, Txn};

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

/// The dataflow's inputs, on one worker.
pub struct Inputs {
    /// Per `(c, m)` increments of this worker's share, totals in the difference type.
    pairs: InputSession<Epoch, Pair, PairSums>,
    /// Transactions per merchant of this worker's share: the same collection as the
    /// transactions' merchants, with ~50 updates a chunk instead of 10,000.
    merchants: InputSession<Epoch, Name, isize>,
    weights: Arc<WeightTable>,
}

impl Inputs {
    /// Builds the detection dataflow in `scope` and returns its inputs and outputs. Every
    /// worker of the process shares `weights`, the broadcast importance table.
    pub fn build<'s>(
        scope: Scope<'s, Epoch>,
        weights: Arc<WeightTable>,
        thresholds: &Thresholds,
    ) -> (Inputs, Outputs<'s>) {
        let (pair_in, pair_deltas) = scope.new_collection::<Pair, PairSums>();
        let (merchant_in, merchant_txns) = scope.new_collection::<Name, isize>();
        let outputs = detect(pair_deltas, merchant_txns, thresholds);
        let inputs = Inputs {
            pairs: pair_in,
            merchants: merchant_in,
            weights,
        };
        (inputs, outputs)
    }

    /// Adds this worker's accepted transactions of the current epoch.
    pub fn insert_share(&mut self, txns: Vec<Txn>) {
        let deltas = ShareDeltas::of(txns, &self.weights);
        for (pair, sums) in deltas.pairs {
            self.pairs.update(pair, sums);
        }
        for (merchant, n) in deltas.merchants {
            self.merchants.update(merchant, n);
        }
    }

    pub fn advance_to(&mut self, epoch: Epoch) {
        self.pairs.advance_to(epoch);
        self.merchants.advance_to(epoch);
    }

    pub fn flush(&mut self) {
        self.pairs.flush();
        self.merchants.flush();
    }
}

/// Builds the detection dataflow over the per-pair increments (`pair_deltas`, totals in the
/// difference type) and the transactions' merchants.
pub fn detect<'s>(
    pair_deltas: VecCollection<'s, Epoch, Pair, PairSums>,
    merchant_txns: VecCollection<'s, Epoch, Name>,
    thresholds: &Thresholds,
) -> Outputs<'s> {
    let merchant_counts = aggregates::merchant_counts(merchant_txns);
    let changes = aggregates::pair_changes(pair_deltas);

    let upgrade = pat1_upgrade::detect(merchant_counts.clone(), changes.clone(), thresholds);
    let child = pat2_child::detect(changes.clone(), thresholds);
    let dei = pat3_dei_needed::detect(changes, thresholds);

    Outputs {
        detections: upgrade.concat(child).concat(dei),
        merchant_counts,
    }
}
