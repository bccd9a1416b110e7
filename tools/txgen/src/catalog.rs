//! The fixed tables of the world — categories with their amounts and fraud rates, the
//! categories of the merchants, the age bands — and the tuning constants the planting aims at.

/// Customers at the default size (as in the real BankSim data).
pub(crate) const BASE_CUSTOMERS: f64 = 4112.0;
/// Shares of the rows of the four big merchants.
pub(crate) const BIG_SHARES: [f64; 4] = [0.36, 0.24, 0.11, 0.09];
/// Real BankSim ids of the two most popular merchants.
pub(crate) const TOP_MERCHANT_IDS: [&str; 2] = ["M1823072687", "M348934600"];
/// Ranks of the merchants that attract male customers more (PatId3).
pub(crate) const MALE_SKEWED_RANKS: [usize; 4] = [6, 10, 12, 15];
/// Rank of the merchant whose female customers mostly arrive late (F crosses M).
pub(crate) const CROSSING_RANK: usize = 8;
/// Ranks of the merchants where "child" customers buy (categories without fraud).
pub(crate) const CHILD_RANKS: [usize; 4] = [11, 13, 16, 19];
/// Day from which fading children make large purchases.
pub(crate) const CHILD_FADE_STEP: u32 = 120;
/// Day from which a dual-gender customer appears with the other gender.
pub(crate) const FLIP_STEP: u16 = 90;
/// Probability that a small merchant's row uses its secondary category.
pub(crate) const SECONDARY_P: f64 = 0.03;
/// Default thresholds of SPEC §4 the planting aims at.
pub(crate) const PAT1_MIN_TRANSACTIONS: f64 = 50_000.0;
pub(crate) const PAT3_MIN_FEMALE: f64 = 100.0;

pub(crate) struct Category {
    pub(crate) name: &'static str,
    /// Mean amount of a normal purchase.
    pub(crate) mean: f64,
    /// Log-scale spread.
    pub(crate) sigma: f64,
    /// Probability that a row is marked fraudulent (its amount is then larger).
    pub(crate) fraud: f64,
}

const fn cat(name: &'static str, mean: f64, sigma: f64, fraud: f64) -> Category {
    Category {
        name,
        mean,
        sigma,
        fraud,
    }
}

pub(crate) const TRANSPORTATION: u8 = 0;
pub(crate) const FOOD: u8 = 1;

pub(crate) const CATEGORIES: [Category; 15] = [
    cat("es_transportation", 27.5, 0.55, 0.0),
    cat("es_food", 33.0, 0.5, 0.0),
    cat("es_health", 85.0, 0.7, 0.03),
    cat("es_wellnessandbeauty", 55.0, 0.6, 0.02),
    cat("es_fashion", 58.0, 0.6, 0.009),
    cat("es_barsandrestaurants", 40.0, 0.5, 0.01),
    cat("es_hyper", 42.0, 0.6, 0.02),
    cat("es_sportsandtoys", 85.0, 0.7, 0.08),
    cat("es_tech", 85.0, 0.7, 0.03),
    cat("es_home", 100.0, 0.7, 0.05),
    cat("es_hotelservices", 120.0, 0.6, 0.08),
    cat("es_otherservices", 80.0, 0.7, 0.06),
    cat("es_contents", 40.0, 0.5, 0.0),
    cat("es_travel", 380.0, 0.8, 0.3),
    cat("es_leisure", 150.0, 0.7, 0.3),
];

/// Main categories of the merchants ranked 4..50.
pub(crate) const SMALL_MAIN_CATS: [u8; 46] = [
    2, 6, 7, 3, 5, 4, 8, 1, 9, 12, 11, 10, 0, 2, 6, 1, 3, 7, 4, 13, 14, 5, 8, 9, 12, 11, 10, 0, 1,
    2, 6, 3, 4, 5, 7, 8, 9, 13, 14, 1, 12, 11, 10, 6, 2, 3,
];

/// Secondary category of a small merchant, by its main category.
pub(crate) const SECONDARY_CAT: [u8; 15] = [1, 6, 3, 2, 3, 1, 1, 4, 9, 8, 5, 2, 8, 10, 7];

/// Age bands and their shares.
pub(crate) const AGES: [(u8, f64); 8] = [
    (b'0', 0.004),
    (b'1', 0.098),
    (b'2', 0.315),
    (b'3', 0.247),
    (b'4', 0.184),
    (b'5', 0.105),
    (b'6', 0.045),
    (b'U', 0.002),
];
