//! The planted behaviour (SPEC §4, thresholds scaled to the size) is in the files, checked
//! from the rows alone with SQL's percentile definition (tests/common):
//!
//! - `planted_patterns_hold_on_a_scaled_run` (60,000 rows): PatId1 pairs have `n >= p90` and
//!   `W <= p10` at a merchant above the `N(m)` threshold, the boundary plants sit exactly on
//!   p10 and one of them exactly on p90; PatId2 children hold at the end, the fading ones held
//!   once and no longer; PatId3 merchants have `threshold < F < M`, the crossing merchant had
//!   `F < M` and ends with `F >= M`; dual-gender customers show both genders; customers
//!   without weights, keys on several rows with different weights, negative weights and
//!   orphan rows all occur.
//! - `planted_patterns_hold_at_the_default_size` (ignored, run in release): the same on the
//!   594,643 default rows with the unscaled thresholds.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use txgen::{GenSummary, DEFAULT_ROWS, DEFAULT_SEED, IMPORTANCE_FILE, STEPS, TRANSACTIONS_FILE};

mod common;
use common::{gen, parse_importance, parse_transactions, percentile_cont, read, Key, Txn};

/// Running totals of one `(customer, merchant)` pair.
#[derive(Default)]
struct Pair {
    n: u64,
    cents: i64,
    wsum: f64,
    wn: u64,
    genders: HashSet<String>,
    ever_child: bool,
}

/// What the transactions say, in the final state (and for the crossing merchant, over time).
#[derive(Default)]
struct Totals<'a> {
    n_m: HashMap<&'a str, u64>,
    pairs: HashMap<(&'a str, &'a str), Pair>,
    female: HashMap<&'a str, HashSet<&'a str>>,
    male: HashMap<&'a str, HashSet<&'a str>>,
    crossing_held: bool,
}

fn totals<'a>(txns: &[Txn<'a>], weight: &HashMap<Key<'a>, f64>, s: &GenSummary) -> Totals<'a> {
    let mut t = Totals::default();
    let watch: HashSet<(&str, &str)> = s
        .pat2_fading
        .iter()
        .map(|p| (p.customer.as_str(), p.merchant.as_str()))
        .collect();
    for (i, x) in txns.iter().enumerate() {
        *t.n_m.entry(x.merchant).or_default() += 1;
        let p = t.pairs.entry((x.customer, x.merchant)).or_default();
        p.n += 1;
        p.cents += x.cents;
        if let Some(w) = weight.get(&(x.customer, x.merchant, x.category)) {
            p.wsum += w;
            p.wn += 1;
        }
        p.genders.insert(x.gender.to_string());
        match x.gender {
            "F" => t.female.entry(x.merchant).or_default().insert(x.customer),
            "M" => t.male.entry(x.merchant).or_default().insert(x.customer),
            _ => false,
        };
        if watch.contains(&(x.customer, x.merchant)) && p.n >= 80 && p.cents < 2300 * p.n as i64 {
            p.ever_child = true;
        }
        if (i + 1) % 1000 == 0 {
            for m in &s.pat3_crossing {
                let f = t.female.get(m.as_str()).map_or(0, |x| x.len()) as u64;
                let mm = t.male.get(m.as_str()).map_or(0, |x| x.len()) as u64;
                t.crossing_held |= f < mm && f > s.pat3_min_female;
            }
        }
    }
    t
}

fn check_pat1(t: &Totals, s: &GenSummary) {
    assert!(!s.pat1_planted.is_empty() && !s.pat1_boundary.is_empty());
    let mut exact_count_tie = false;
    for pl in &s.pat1_planted {
        let m = pl.merchant.as_str();
        assert!(t.n_m[m] > s.pat1_min_transactions, "{pl:?}: N(m) too small");
        let mut counts: Vec<f64> = Vec::new();
        let mut ws: Vec<f64> = Vec::new();
        for ((_, pm), p) in &t.pairs {
            if *pm == m {
                counts.push(p.n as f64);
                if p.wn > 0 {
                    ws.push(p.wsum / p.wn as f64);
                }
            }
        }
        let p90 = percentile_cont(&mut counts, 0.9);
        let p10 = percentile_cont(&mut ws, 0.1);
        let p = &t.pairs[&(pl.customer.as_str(), m)];
        let w = p.wsum / p.wn as f64;
        assert!(p.n as f64 >= p90, "{pl:?}: n {} < p90 {p90}", p.n);
        assert!(
            p.wn > 0 && w <= p10 + 1e-9 * p10.abs(),
            "{pl:?}: W {w} > p10 {p10}"
        );
        if s.pat1_boundary.contains(pl) {
            assert!(
                (w - p10).abs() <= 1e-9 * p10.abs(),
                "{pl:?}: W {w} != p10 {p10}"
            );
            exact_count_tie |= p.n as f64 == p90;
        }
    }
    assert!(exact_count_tie, "no planted count sits exactly on p90");
}

fn check_pat2(t: &Totals, s: &GenSummary) {
    assert!(!s.pat2_planted.is_empty() && !s.pat2_fading.is_empty());
    for pl in &s.pat2_planted {
        let p = &t.pairs[&(pl.customer.as_str(), pl.merchant.as_str())];
        assert!(
            p.n >= 80 && p.cents < 2300 * p.n as i64,
            "{pl:?}: not a child"
        );
    }
    for pl in &s.pat2_fading {
        let p = &t.pairs[&(pl.customer.as_str(), pl.merchant.as_str())];
        assert!(p.ever_child, "{pl:?}: never held");
        assert!(
            p.cents >= 2300 * p.n as i64,
            "{pl:?}: still holds at the end"
        );
    }
}

fn check_pat3(t: &Totals, s: &GenSummary) {
    for m in &s.pat3_merchants {
        let (f, mm) = (
            t.female[m.as_str()].len() as u64,
            t.male[m.as_str()].len() as u64,
        );
        assert!(f < mm && f > s.pat3_min_female, "{m}: F {f}, M {mm}");
    }
    assert!(t.crossing_held, "crossing merchant never had F < M");
    for m in &s.pat3_crossing {
        let (f, mm) = (t.female[m.as_str()].len(), t.male[m.as_str()].len());
        assert!(f >= mm, "{m}: F {f} never overtook M {mm}");
    }
}

fn check_irregularities(t: &Totals, txns: &[Txn], imp: &HashMap<Key, Vec<i64>>, s: &GenSummary) {
    for pl in &s.dual_gender {
        let g = &t.pairs[&(pl.customer.as_str(), pl.merchant.as_str())].genders;
        assert!(g.contains("F") && g.contains("M"), "{pl:?}: {g:?}");
    }
    let weighted: HashSet<&str> = imp.keys().map(|k| k.0).collect();
    assert!(txns.iter().any(|t| !weighted.contains(t.customer)));
    assert!(imp
        .values()
        .any(|v| v.len() >= 2 && v.iter().any(|w| *w != v[0])));
    assert!(imp.values().flatten().any(|w| *w < 0));
    let keys: HashSet<Key> = txns
        .iter()
        .map(|t| (t.customer, t.merchant, t.category))
        .collect();
    assert_eq!(keys.len() as u64, s.keys);
    let present = keys.iter().filter(|k| imp.contains_key(*k)).count() as f64;
    let ratio = present / keys.len() as f64;
    assert!((0.84..0.94).contains(&ratio), "present keys ratio {ratio}");
    assert!(imp.keys().any(|k| !keys.contains(k)), "no orphan rows");
}

/// Checks, in the final state and with thresholds scaled to the size, that what the
/// generator says it planted is there.
fn check_planted(dir: &Path, s: &GenSummary) {
    let text = read(dir, TRANSACTIONS_FILE);
    let txns = parse_transactions(&text);
    assert!(txns.iter().all(|t| t.step < STEPS));
    let imp_text = read(dir, IMPORTANCE_FILE);
    let imp = parse_importance(&imp_text);
    let weight: HashMap<Key, f64> = imp
        .iter()
        .map(|(k, v)| (*k, v.iter().sum::<i64>() as f64 / v.len() as f64 / 1e6))
        .collect();
    let t = totals(&txns, &weight, s);
    check_pat1(&t, s);
    check_pat2(&t, s);
    check_pat3(&t, s);
    check_irregularities(&t, &txns, &imp, s);
}

#[test]
fn planted_patterns_hold_on_a_scaled_run() {
    let (dir, s) = gen(60_000, 42);
    assert_eq!(s.pat1_min_transactions, 5045);
    assert_eq!(s.pat3_min_female, 10);
    assert!(
        s.merchant_transactions
            .iter()
            .filter(|(_, n)| *n > s.pat1_min_transactions)
            .count()
            >= 3
    );
    check_planted(dir.path(), &s);
}

#[test]
#[ignore = "full default size; run with --release -- --ignored"]
fn planted_patterns_hold_at_the_default_size() {
    let (dir, s) = gen(DEFAULT_ROWS, DEFAULT_SEED);
    assert_eq!(s.pat1_min_transactions, 50_000);
    assert_eq!(s.pat3_min_female, 100);
    assert_eq!(s.customers, 4112);
    check_planted(dir.path(), &s);
}
