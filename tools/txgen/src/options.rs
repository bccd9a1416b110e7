//! The public options of the generator and the constants a caller needs: the default size and
//! seed, the fixed merchant and day counts, the file names and the CSV headers.

/// Row count of the real BankSim data set, the default size.
pub const DEFAULT_ROWS: u64 = 594_643;
/// Default seed.
pub const DEFAULT_SEED: u64 = 42;
/// Number of merchants (fixed, independent of the row count).
pub const MERCHANTS: usize = 50;
/// Number of days (`step` runs over `0..STEPS`).
pub const STEPS: u32 = 180;
/// File name of the transactions.
pub const TRANSACTIONS_FILE: &str = "transactions.csv";
/// File name of the importance weights.
pub const IMPORTANCE_FILE: &str = "CustomerImportance.csv";
/// Header of `transactions.csv`.
pub const TRANSACTIONS_HEADER: &str =
    "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud";
/// Header of `CustomerImportance.csv`.
pub const IMPORTANCE_HEADER: &str = "Source,Target,Weight,typeTrans,fraud";

/// Generator options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenOptions {
    /// Number of transaction rows (without the header).
    pub rows: u64,
    /// Seed; the output is a pure function of `(rows, seed)`.
    pub seed: u64,
}

impl GenOptions {
    pub fn new(rows: u64, seed: u64) -> Self {
        GenOptions { rows, seed }
    }
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions::new(DEFAULT_ROWS, DEFAULT_SEED)
    }
}
