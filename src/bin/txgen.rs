//! `txgen --out DIR [--rows N] [--seed S]`: writes BankSim-shaped `DIR/transactions.csv` and
//! `DIR/CustomerImportance.csv`. A thin CLI over the `txgen` workspace crate (`tools/txgen/`),
//! which documents the shape and the planted behaviour.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use txgen::GenOptions;

/// Writes BankSim-shaped synthetic transactions and customer importance weights.
#[derive(Parser, Debug)]
#[command(name = "txgen", version = txflow::cli::VERSION, after_long_help = EXAMPLES)]
struct Args {
    /// Output directory (created if missing).
    #[arg(help_heading = "Inputs", long, value_name = "DIR", env = "TXFLOW_OUT")]
    out: PathBuf,
    /// Number of transaction rows.
    #[arg(help_heading = "Inputs", long, value_name = "N", default_value_t = txgen::DEFAULT_ROWS, env = "TXFLOW_ROWS")]
    rows: u64,
    /// Seed; the same (rows, seed) always gives the same bytes.
    #[arg(help_heading = "Inputs", long, value_name = "S", default_value_t = txgen::DEFAULT_SEED, env = "TXFLOW_SEED")]
    seed: u64,
    #[command(flatten)]
    log: txflow::cli::LogArgs,
}

/// `--help`'s examples, after the options.
const EXAMPLES: &str = "\
Examples:
  # The default data set (594,643 rows, seed 42) into data/
  txgen --out data

  # A small one for a quick try
  txgen --out small --rows 20000

  # Another data set of the same size
  txgen --out data-7 --seed 7
";

fn main() -> ExitCode {
    // One line `error: ...` on stderr and a non-zero status, like the other binaries.
    let args = match txflow::cli::parse_args::<Args>() {
        Ok(a) => a,
        Err(code) => return code,
    };
    txflow::cli::init_logging(&args.log);
    txflow::cli::exit_with(run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let options = GenOptions::new(args.rows, args.seed);
    let s = txgen::generate_with_summary(&args.out, &options)
        .context("cannot generate the BankSim data")?;
    let steps = match s.last_step {
        Some(last) => format!("steps 0..={last}"),
        None => "no steps".to_string(),
    };
    println!(
        "wrote {} ({} rows, {} customers, {} merchants, {steps})",
        s.transactions_path.display(),
        s.rows,
        s.active_customers,
        s.merchants,
    );
    println!(
        "wrote {} ({} rows: {} keys, {} missing, {} duplicated, {} orphan rows; {} customers without any weight)",
        s.importance_path.display(),
        s.importance_rows,
        s.keys,
        s.missing_keys,
        s.duplicated_keys,
        s.orphan_rows,
        s.customers_without_importance,
    );
    let big: Vec<String> = s
        .merchant_transactions
        .iter()
        .filter(|(_, n)| *n > s.pat1_min_transactions)
        .map(|(m, n)| format!("{m}={n}"))
        .collect();
    println!(
        "planted: PatId1 {} pairs ({} on the percentile boundaries) at merchants with N > {} [{}]; \
         PatId2 {} pairs + {} that stop holding; PatId3 merchants {} + crossing {}; \
         {} customer(s) with two genders at one merchant",
        s.pat1_planted.len(),
        s.pat1_boundary.len(),
        s.pat1_min_transactions,
        big.join(", "),
        s.pat2_planted.len(),
        s.pat2_fading.len(),
        s.pat3_merchants.join(","),
        s.pat3_crossing.join(","),
        s.dual_gender.len(),
    );
    println!(
        "seed {}, done in {:.2} s",
        args.seed,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
