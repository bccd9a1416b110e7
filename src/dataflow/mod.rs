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

use std::collections::HashMap;

use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::Scope;

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

/// The dataflow's inputs, on one worker.
pub struct Inputs {
    txns: InputSession<Epoch, Txn, isize>,
    /// Transactions per merchant of this worker's share, pre-aggregated before they enter
    /// (a chunk touches ~50 merchants but 10,000 rows): the same collection as
    /// `txns.map(merchant)`, with far fewer updates to arrange.
    merchant_txns: InputSession<Epoch, Name, isize>,
    weights: InputSession<Epoch, (WeightKey, Weight), isize>,
}

impl Inputs {
    /// Builds the detection dataflow in `scope` and returns its inputs and outputs.
    pub fn build<'s>(scope: Scope<'s, Epoch>, thresholds: &Thresholds) -> (Inputs, Outputs<'s>) {
        let (txn_in, txns) = scope.new_collection::<Txn, isize>();
        let (merchant_in, merchant_txns) = scope.new_collection::<Name, isize>();
        let (weight_in, weights) = scope.new_collection::<(WeightKey, Weight), isize>();
        let outputs = detect(txns, merchant_txns, weights, thresholds);
        let inputs = Inputs {
            txns: txn_in,
            merchant_txns: merchant_in,
            weights: weight_in,
        };
        (inputs, outputs)
    }

    /// Adds this worker's accepted transactions of the current epoch.
    pub fn insert_share(&mut self, txns: Vec<Txn>) {
        let mut per_merchant: HashMap<Name, isize> = HashMap::new();
        for txn in txns {
            *per_merchant.entry(txn.merchant.clone()).or_default() += 1;
            self.txns.insert(txn);
        }
        for (merchant, n) in per_merchant {
            self.merchant_txns.update(merchant, n);
        }
    }

    /// Adds one importance weight (at the current epoch; weights enter once, at the start).
    pub fn insert_weight(&mut self, key: WeightKey, weight: Weight) {
        self.weights.insert((key, weight));
    }

    pub fn advance_to(&mut self, epoch: Epoch) {
        self.txns.advance_to(epoch);
        self.merchant_txns.advance_to(epoch);
        self.weights.advance_to(epoch);
    }

    pub fn flush(&mut self) {
        self.txns.flush();
        self.merchant_txns.flush();
        self.weights.flush();
    }
}

/// Builds the detection dataflow over the transactions and the importance weights.
/// `merchant_txns` must be `txns.map(|t| t.merchant)` (possibly pre-aggregated).
pub fn detect<'s>(
    txns: VecCollection<'s, Epoch, Txn>,
    merchant_txns: VecCollection<'s, Epoch, Name>,
    weights: VecCollection<'s, Epoch, (WeightKey, Weight)>,
    thresholds: &Thresholds,
) -> Outputs<'s> {
    let merchant_counts = aggregates::merchant_counts(merchant_txns);
    let sums = aggregates::pair_sums(txns, weights);

    let upgrade = pat1_upgrade::detect(merchant_counts.clone(), sums.clone(), thresholds);
    let child = pat2_child::detect(sums.clone(), thresholds);
    let dei = pat3_dei_needed::detect(aggregates::merchant_customer_genders(sums), thresholds);

    Outputs {
        detections: upgrade.concat(child).concat(dei),
        merchant_counts,
    }
}
