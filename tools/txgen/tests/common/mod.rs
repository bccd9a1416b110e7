//! Reading the generator's output back, independently of the generator: its own CSV
//! splitting, id and number checks, and the BankSim category list.

#![allow(dead_code)] // each test file uses its own part

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use txgen::{GenOptions, GenSummary, IMPORTANCE_HEADER, STEPS, TRANSACTIONS_HEADER};

/// The 15 categories of the BankSim data set.
pub(crate) const BANKSIM_CATEGORIES: [&str; 15] = [
    "es_transportation",
    "es_food",
    "es_health",
    "es_wellnessandbeauty",
    "es_fashion",
    "es_barsandrestaurants",
    "es_hyper",
    "es_sportsandtoys",
    "es_tech",
    "es_home",
    "es_hotelservices",
    "es_otherservices",
    "es_contents",
    "es_travel",
    "es_leisure",
];

/// Generates `(rows, seed)` into a fresh temporary directory.
pub(crate) fn gen(rows: u64, seed: u64) -> (tempfile::TempDir, GenSummary) {
    let dir = tempfile::tempdir().expect("temp dir");
    let summary =
        txgen::generate_with_summary(dir.path(), &GenOptions::new(rows, seed)).expect("generate");
    (dir, summary)
}

pub(crate) fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).expect("read output")
}

pub(crate) fn unquote(v: &str) -> &str {
    assert!(
        v.len() >= 2 && v.starts_with('\'') && v.ends_with('\''),
        "not single-quoted: {v:?}"
    );
    &v[1..v.len() - 1]
}

/// `prefix` followed by 9 or 10 digits, like the real BankSim ids.
pub(crate) fn is_id(v: &str, prefix: char) -> bool {
    let digits = &v[1..];
    v.starts_with(prefix)
        && (9..=10).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Millionths of a decimal with at most six fractional digits and an optional `-`.
pub(crate) fn micros(v: &str) -> Option<i64> {
    let (neg, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let mut m: i64 = int.parse::<i64>().ok()? * 1_000_000;
    let mut scale = 100_000;
    for b in frac.bytes() {
        m += (b - b'0') as i64 * scale;
        scale /= 10;
    }
    Some(if neg { -m } else { m })
}

pub(crate) struct Txn<'a> {
    pub step: u32,
    pub customer: &'a str,
    pub gender: &'a str,
    pub merchant: &'a str,
    pub category: &'a str,
    pub cents: i64,
}

/// Checks every transaction row and returns them.
pub(crate) fn parse_transactions(text: &str) -> Vec<Txn<'_>> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(TRANSACTIONS_HEADER));
    let cats: HashSet<&str> = BANKSIM_CATEGORIES.into_iter().collect();
    let mut last_step = 0;
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            assert_eq!(f.len(), 10, "field count: {line}");
            let step: u32 = f[0].parse().expect("step");
            assert!(step >= last_step && step < STEPS, "step order: {line}");
            last_step = step;
            let customer = unquote(f[1]);
            assert!(is_id(customer, 'C'), "customer id: {line}");
            assert!(
                matches!(unquote(f[2]), "0" | "1" | "2" | "3" | "4" | "5" | "6" | "U"),
                "age: {line}"
            );
            let gender = unquote(f[3]);
            assert!(matches!(gender, "F" | "M" | "E" | "U"), "gender: {line}");
            assert_eq!(unquote(f[4]), "28007");
            let merchant = unquote(f[5]);
            assert!(is_id(merchant, 'M'), "merchant id: {line}");
            assert_eq!(unquote(f[6]), "28007");
            let category = unquote(f[7]);
            assert!(cats.contains(category), "category: {line}");
            let amount = micros(f[8]).expect("amount");
            assert!(amount > 0 && amount % 10_000 == 0, "amount: {line}");
            assert!(!f[8].starts_with('-') && f[8].split('.').nth(1).is_some_and(|d| d.len() <= 2));
            assert!(matches!(f[9], "0" | "1"), "fraud: {line}");
            Txn {
                step,
                customer,
                gender,
                merchant,
                category,
                cents: amount / 10_000,
            }
        })
        .collect()
}

/// A `(customer, merchant, category)` key, ids without quotes.
pub(crate) type Key<'a> = (&'a str, &'a str, &'a str);

/// Checks every importance row and returns `key -> weights (millionths)`.
pub(crate) fn parse_importance(text: &str) -> HashMap<Key<'_>, Vec<i64>> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(IMPORTANCE_HEADER));
    let mut map: HashMap<Key<'_>, Vec<i64>> = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 5, "field count: {line}");
        let (c, m, t) = (unquote(f[0]), unquote(f[1]), unquote(f[3]));
        assert!(is_id(c, 'C') && is_id(m, 'M'), "ids: {line}");
        let w = micros(f[2]).unwrap_or_else(|| panic!("weight: {line}"));
        assert!(matches!(f[4], "0" | "1"), "fraud: {line}");
        map.entry((c, m, t)).or_default().push(w);
    }
    map
}

/// SQL's `PERCENTILE_CONT(p)`: linear interpolation between the closest ranks.
pub(crate) fn percentile_cont(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let x = p * (values.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    values[lo] + (x - lo as f64) * (values[hi] - values[lo])
}
