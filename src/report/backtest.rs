//! The backtest comparison report (issue 13): written at the end of a replay with variants as
//! `<output>/backtest-report.html`, `backtest-report.json` and `variants.csv`.

use std::collections::BTreeSet;

use crate::sinks::state::LedgerRow;

/// One ledger of a backtest: the baseline (the run's own thresholds) or a variant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerSet {
    /// `baseline`, or the variant's name.
    pub name: String,
    /// `Thresholds::describe()` of its thresholds.
    pub thresholds: String,
    /// Its ledger rows in sequence order (with evidence).
    pub rows: Vec<LedgerRow>,
}

/// BankSim's `fraud` labels of the replayed transactions, accepted rows only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FraudLabels {
    /// `(customer, merchant)` pairs with at least one transaction labelled 1.
    pub fraud_pairs: BTreeSet<(String, String)>,
    /// Transactions labelled 1, labelled 0, and with a missing or other label ("unknown").
    pub fraud_rows: u64,
    pub clean_rows: u64,
    pub unknown_rows: u64,
}

/// Everything the report is computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BacktestInput {
    /// The committed epochs, ascending (the x axis of the per-epoch charts).
    pub epochs: Vec<u64>,
    pub baseline: LedgerSet,
    pub variants: Vec<LedgerSet>,
    pub labels: FraudLabels,
}

/// The three files of the report, rendered; deterministic for a given input (no clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacktestReport {
    pub html: String,
    pub json: String,
    pub csv: String,
}

/// The report's object keys under the output location.
pub const HTML_KEY: &str = "backtest-report.html";
pub const JSON_KEY: &str = "backtest-report.json";
pub const CSV_KEY: &str = "variants.csv";

/// Renders the report of `input`.
pub fn render(input: &BacktestInput) -> BacktestReport {
    // Filled in by the report's implementation.
    let _ = input;
    BacktestReport {
        html: String::new(),
        json: String::new(),
        csv: String::new(),
    }
}

/// Renders the report of `input` and puts its three objects under `output`.
pub fn write(
    output: &dyn crate::objectstore::ObjectStore,
    input: &BacktestInput,
) -> crate::error::Result<()> {
    let report = render(input);
    output.put(HTML_KEY, report.html.as_bytes())?;
    output.put(JSON_KEY, report.json.as_bytes())?;
    output.put(CSV_KEY, report.csv.as_bytes())?;
    Ok(())
}
