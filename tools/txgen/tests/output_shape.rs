//! The shape of the whole output, read back independently of the generator (tests/common):
//!
//! - `header_and_row_count_are_exact`: for 0, 1, 7 and 1,234 rows, each file starts with its
//!   header and ends with a line break, every row parses (ids, ages, genders, zip codes,
//!   categories, amounts with at most two decimals, steps non-decreasing in `0..180`), and the
//!   counts and last step in the summary are the ones read from the files.
//! - `keys_and_importance_rows_match_the_summary`: the distinct keys of the transactions, the
//!   importance rows, the missing, duplicated and orphan keys, the active customers and the
//!   rows per merchant counted in the files are the summary's; about 10 % of the keys have no
//!   weight and some customers none at all.

use std::collections::HashSet;

use txgen::{
    IMPORTANCE_FILE, IMPORTANCE_HEADER, MERCHANTS, TRANSACTIONS_FILE, TRANSACTIONS_HEADER,
};

mod common;
use common::{gen, parse_importance, parse_transactions, read};

#[test]
fn header_and_row_count_are_exact() {
    for rows in [0u64, 1, 7, 1234] {
        let (dir, summary) = gen(rows, 3);
        let text = read(dir.path(), TRANSACTIONS_FILE);
        assert_eq!(text.lines().next(), Some(TRANSACTIONS_HEADER));
        assert_eq!(text.lines().count() as u64, rows + 1);
        assert!(text.ends_with('\n'));
        let txns = parse_transactions(&text);
        assert_eq!(txns.len() as u64, rows);
        assert_eq!(summary.rows, rows);
        assert_eq!(summary.last_step, txns.last().map(|t| t.step));
        let imp = read(dir.path(), IMPORTANCE_FILE);
        assert_eq!(imp.lines().next(), Some(IMPORTANCE_HEADER));
        assert!(imp.ends_with('\n'));
        assert_eq!(imp.lines().count() as u64, summary.importance_rows + 1);
        parse_importance(&imp);
    }
}

#[test]
fn keys_and_importance_rows_match_the_summary() {
    let (dir, s) = gen(60_000, 11);
    let text = read(dir.path(), TRANSACTIONS_FILE);
    let txns = parse_transactions(&text);
    let imp_text = read(dir.path(), IMPORTANCE_FILE);
    let imp = parse_importance(&imp_text);

    let keys: HashSet<(&str, &str, &str)> = txns
        .iter()
        .map(|t| (t.customer, t.merchant, t.category))
        .collect();
    assert_eq!(keys.len() as u64, s.keys);
    let customers: HashSet<&str> = txns.iter().map(|t| t.customer).collect();
    assert_eq!(customers.len(), s.active_customers);
    assert!(s.active_customers <= s.customers);
    assert_eq!(s.merchants, MERCHANTS);
    assert_eq!(s.merchant_transactions.len(), MERCHANTS);
    for (m, n) in &s.merchant_transactions {
        let counted = txns.iter().filter(|t| t.merchant == m).count() as u64;
        assert_eq!(counted, *n, "N({m})");
    }

    let missing = keys.iter().filter(|k| !imp.contains_key(*k)).count() as u64;
    assert_eq!(missing, s.missing_keys);
    let ratio = missing as f64 / keys.len() as f64;
    assert!((0.06..0.16).contains(&ratio), "missing keys ratio {ratio}");
    let duplicated = imp
        .iter()
        .filter(|(k, v)| keys.contains(*k) && v.len() > 1)
        .count() as u64;
    assert_eq!(duplicated, s.duplicated_keys);
    let orphans: u64 = imp
        .iter()
        .filter(|(k, _)| !keys.contains(*k))
        .map(|(_, v)| v.len() as u64)
        .sum();
    assert_eq!(orphans, s.orphan_rows);
    let rows: u64 = imp.values().map(|v| v.len() as u64).sum();
    assert_eq!(rows, s.importance_rows);
    let weighted: HashSet<&str> = imp.keys().map(|k| k.0).collect();
    // The summary counts the customers left out on purpose; a customer can also lose all
    // of its few keys to the 10 % of missing keys.
    let without = customers.iter().filter(|c| !weighted.contains(*c)).count();
    assert!(s.customers_without_importance > 0);
    assert!(without >= s.customers_without_importance, "{without}");
}
