//! What the patterns output: the detections holding after each epoch per threshold set, with
//! the values they hold with, and the merchant-level values of PatId1's evidence.

use serde::{Deserialize, Serialize};

use super::percentile::CountPercentile;
use super::variants::SetId;
use crate::model::{DetectionKey, Weight};

/// A detection holding after an epoch under threshold set `set`, with the values it holds
/// with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Holding {
    pub set: SetId,
    pub key: DetectionKey,
    pub facts: Facts,
}

/// The pair- or merchant-level values a detection holds with (its evidence, but for the
/// merchant-level values of PatId1, see [`MerchantFact`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Facts {
    /// PatId1: `n(c,m)` and `W(c,m)`.
    Upgrade { customer_txns: i64, weight: Weight },
    /// PatId2: `n(c,m)` and `A(c,m)` in micro-units.
    Child { customer_txns: i64, amount: i128 },
    /// PatId3: `F(m)` and `M(m)`.
    DeiNeeded { female: i64, male: i64 },
}

/// A merchant-level value of PatId1 under a threshold set: the percentiles its customers are
/// held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MerchantFact {
    CountPercentile(CountPercentile),
    WeightPercentile(Weight),
}
