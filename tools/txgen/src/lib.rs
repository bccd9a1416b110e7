//! BankSim-shaped synthetic data: `transactions.csv` and `CustomerImportance.csv`.
//!
//! # Shape
//!
//! * `transactions.csv` has the real BankSim layout (SPEC §2.1): every value except `step`,
//!   `amount` and `fraud` is wrapped in single quotes, e.g.
//!   `0,'C1093826151','4','M','28007','M348934600','28007','es_transportation',4.55,0`.
//! * 50 merchants (fixed), ranked by popularity: the top four (three `es_transportation`, one
//!   `es_food`) carry about 80 % of the rows (shares 36/24/11/9 %), the other 46 follow a Zipf
//!   curve. Each merchant has one main category; small merchants use a secondary category on
//!   about 3 % of their rows. The two top merchants carry the real BankSim ids `M1823072687`
//!   and `M348934600`; every other id (`M`/`C` + 9–10 digits) comes from the seed.
//! * About 4,112 customers at the default 594,643 rows; the count scales linearly with
//!   `rows`, so the number of rows per customer (≈145) does not depend on the size.
//!   Genders F/M with a few E (enterprise) and U (unknown); age bands `'0'`..`'6'`, `'U'`.
//! * `step` is the day number, non-decreasing over the file, 0..=179, with slowly growing
//!   daily volume. Amounts are log-normal per category (overall mean ≈ 35–40), written with at
//!   most two decimals in Python's float style (`4.55`, `12.5`, `30.0`).
//! * `CustomerImportance.csv` has one row per `(customer, merchant, category)` key that occurs
//!   in the transactions, minus ≈10 % missing keys (and ≈1.5 % of the customers have no row at
//!   all), plus ≈3 % of keys that appear on 2–3 rows with different weights (whose mean is the
//!   intended weight), plus a few rows for customers that never transact. Weights are
//!   decimals with at most six fractional digits, correlated with the customer's activity;
//!   a few are negative.
//!
//! # Planted behaviour (SPEC §4, default thresholds)
//!
//! * **PatId1**: at every merchant whose final `N(m)` exceeds `50,000 × min(scale, 1)`, a few
//!   customers with `n(c,m) >= p90` get very low weights, and a few customers whose count is
//!   exactly the smallest count at or above the p90 boundary get a weight equal to the p10
//!   boundary of the weights (ties on both percentile boundaries, in the final state).
//! * **PatId2**: "child" customers make many small purchases (mean ≈ 9) at one merchant and
//!   pass 80 transactions around day 60; every third of them later makes large purchases at
//!   that merchant (from day 120), so its average rises above 23: a detection that later
//!   stops holding.
//! * **PatId3**: four merchants attract male customers about four times as often as female ones, so
//!   `100 < F(m) < M(m)` at the default size; one more merchant is popular with women, but
//!   70 % of its female customers only start using it between days 60 and 140, so
//!   `F(m) < M(m)` holds early and `F(m)` overtakes `M(m)` around the middle of the file.
//! * One or two customers appear with two genders at one merchant (from day 90).
//!
//! The generator is deterministic for a given `(rows, seed)` on every platform: it uses its
//! own xoshiro256** generator and only IEEE-exact float operations (no `ln`/`exp`/`cos` from
//! the platform's libm). Memory is bounded by the number of customers and keys, never rows.
//!
//! # Modules
//!
//! | module | job |
//! |---|---|
//! | `options` | the public options and constants: sizes, file names, headers |
//! | `summary` | the public report of what was written and planted |
//! | `catalog` | the fixed tables: categories, merchant categories, ages, tuning constants |
//! | `rng` | random numbers: xoshiro256**, IEEE-exact `exp`, alias sampling |
//! | `world` | the world's data types (merchants, customers, habits, keys) and its assembly |
//! | `population` | drawing the merchants and the customers with their habits |
//! | `planted` | the planted behaviours: PatId1, PatId2, PatId3 and the dual-gender customers |
//! | `transactions` | drawing and writing the rows of `transactions.csv` |
//! | `importance` | drawing and writing the rows of `CustomerImportance.csv` |
//! | `format` | number formatting and CSV row writing |
//!
//! The `txgen` command-line tool is a thin binary of the `txflow` package.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

mod catalog;
mod format;
mod importance;
mod options;
mod planted;
mod population;
mod rng;
mod summary;
mod transactions;
mod world;

pub use options::{
    GenOptions, DEFAULT_ROWS, DEFAULT_SEED, IMPORTANCE_FILE, IMPORTANCE_HEADER, MERCHANTS, STEPS,
    TRANSACTIONS_FILE, TRANSACTIONS_HEADER,
};
pub use summary::{GenSummary, Planted};

use catalog::PAT3_MIN_FEMALE;
use world::World;

/// Writes `dir/transactions.csv` and `dir/CustomerImportance.csv`.
pub fn generate(dir: &Path, options: &GenOptions) -> io::Result<()> {
    generate_with_summary(dir, options).map(|_| ())
}

/// Like [`generate`], and reports what was written and planted.
pub fn generate_with_summary(dir: &Path, options: &GenOptions) -> io::Result<GenSummary> {
    fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    let transactions_path = dir.join(TRANSACTIONS_FILE);
    let importance_path = dir.join(IMPORTANCE_FILE);

    let mut world = World::build(options);
    let mut summary = GenSummary {
        transactions_path: transactions_path.clone(),
        importance_path: importance_path.clone(),
        customers: world.customers.len(),
        merchants: MERCHANTS,
        scale: world.scale,
        pat1_min_transactions: world.pat1_min_transactions,
        pat3_min_female: (PAT3_MIN_FEMALE * world.scale.min(1.0)).round() as u64,
        ..GenSummary::default()
    };

    write_file(&transactions_path, |out| {
        world.write_transactions(out, options, &mut summary)
    })?;
    write_file(&importance_path, |out| {
        world.write_importance(out, options, &mut summary)
    })?;

    world.fill_summary(&mut summary);
    Ok(summary)
}

/// Creates (or truncates) `path` and writes it through a 1 MiB buffer; errors name the path.
fn write_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let file = File::create(path).map_err(|e| with_path(e, path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    write(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| with_path(e, path))
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}
