//! BankSim-shaped synthetic data: `transactions.csv` and `CustomerImportance.csv`.

/// Generator options.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub rows: u64,
    pub seed: u64,
}

/// Writes `dir/transactions.csv` and `dir/CustomerImportance.csv`.
pub fn generate(dir: &std::path::Path, options: &GenOptions) -> std::io::Result<()> {
    let _ = (dir, options);
    unimplemented!()
}
