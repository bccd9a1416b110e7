//! Backtests with threshold variants, on random dense edge-case streams:
//!
//! - every variant's ledger (all columns, evidence included) and files equal those of a
//!   separate replay with the variant's thresholds, and match the independent reference;
//! - the baseline of a run with variants is byte-identical to a run without (tables and
//!   files);
//! - every detection's evidence (baseline and variants) equals the reference's aggregates at
//!   the detection's epoch;
//! - the report's figures agree with the ledgers and with the labels in the chunks.
//!
//! `TXFLOW_VARIANT_SEEDS=N` sets the number of streams (default 8); workers alternate 1 and 3.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Evidence rows checked, of the baseline and of the variants (so that no check is vacuous).
static BASELINE_ROWS: AtomicUsize = AtomicUsize::new(0);
static VARIANT_ROWS: AtomicUsize = AtomicUsize::new(0);

use common::outputs::tree;
use common::reference::{self, evidence_of, ledger_identities, RefEvidence, RefTxn};
use common::streams::{self, Landing, SplitMix64, Stream, StreamOptions};
use serde_json::Value;
use txflow::mechanism_y;
use txflow::model::{Amount, Fraction, Thresholds, Variant};
use txflow::sinks::state::{EpochRow, LedgerRow};

/// What a replay left behind.
struct Run {
    ledger: Vec<LedgerRow>,
    variant_ledgers: BTreeMap<String, Vec<LedgerRow>>,
    counts: Vec<(String, i64)>,
    epochs: Vec<EpochRow>,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

fn replay(
    landing: &Landing,
    work: &Path,
    name: &str,
    thresholds: Thresholds,
    variants: &[Variant],
    workers: usize,
) -> Run {
    let output = work.join(format!("out-{name}"));
    let mut opts = landing.replay_options(&output, &work.join(format!("state-{name}.db")));
    let config = opts.state.clone();
    opts.thresholds = thresholds;
    opts.mode = txflow::mechanism_y::Mode::Replay {
        range: Default::default(),
        variants: variants.to_vec(),
    };
    opts.timely.workers = workers;
    let summary = mechanism_y::run(&opts).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(summary.finished, "{name}: the replay ends its stream");
    let mut store = txflow::sinks::state::open(&config).unwrap();
    let variant_ledgers = variants
        .iter()
        .map(|v| {
            (
                v.name.clone(),
                store
                    .ledger(txflow::sinks::state::LedgerId::Variant(&v.name))
                    .unwrap(),
            )
        })
        .collect();
    Run {
        ledger: store
            .ledger(txflow::sinks::state::LedgerId::Baseline)
            .unwrap(),
        variant_ledgers,
        counts: store.merchant_counts().unwrap(),
        epochs: store.epoch_rows().unwrap(),
        files: tree(&output),
    }
}

/// 1 to 3 variants, each changing 1 to 3 thresholds of `base` to values that fire on small
/// streams; sometimes two variants share a pattern's parameters, or equal the baseline.
fn random_variants(rng: &mut SplitMix64, base: &Thresholds) -> Vec<Variant> {
    let count = rng.range(1, 4);
    (0..count)
        .map(|i| {
            let mut t = *base;
            for _ in 0..rng.range(1, 4) {
                match rng.below(6) {
                    0 => t.upgrade_min_merchant_txns = *rng.pick(&[0, 3, 5, 10, 20]),
                    1 => {
                        let p = *rng.pick(&[0, 250_000, 500_000, 900_000, 1_000_000]);
                        t.upgrade_count_percentile = Fraction::from_millionths(p)
                    }
                    2 => {
                        let p = *rng.pick(&[0, 100_000, 500_000, 1_000_000]);
                        t.upgrade_weight_percentile = Fraction::from_millionths(p)
                    }
                    3 => t.child_min_txns = rng.range(1, 6),
                    4 => {
                        let micros = base.child_max_avg_amount.micros * rng.range(1, 4) as i64 / 2;
                        t.child_max_avg_amount = Amount::from_micros(micros)
                    }
                    _ => t.dei_min_female_customers = rng.below(3),
                }
            }
            Variant {
                name: format!("v{i}.{}", rng.below(100)),
                thresholds: t,
            }
        })
        .collect()
}

/// Every accepted transaction up to and including each epoch, by epoch.
fn accepted_through(stream: &Stream) -> BTreeMap<u64, Vec<RefTxn>> {
    let mut all = Vec::new();
    let mut out = BTreeMap::new();
    for (k, bytes) in &stream.chunks {
        all.extend(reference::parse_chunk(bytes).accepted);
        out.insert(*k, all.clone());
    }
    out
}

/// Whether `a` and `b` agree to 1e-9 (relative), or are both absent.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Problems of the stored evidence of `rows` against the reference.
fn check_evidence(
    rows: &[LedgerRow],
    through: &BTreeMap<u64, Vec<RefTxn>>,
    weights: &BTreeMap<reference::WeightKey, f64>,
    t: &Thresholds,
    which: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for row in rows {
        let txns = &through[&row.epoch];
        let want = evidence_of(
            txns,
            weights,
            t,
            row.pattern.id(),
            &row.customer_name,
            &row.merchant_id,
        );
        let got: Value = match row.evidence.as_deref().map(serde_json::from_str) {
            Some(Ok(v)) => v,
            other => {
                problems.push(format!("{which} row {}: evidence {other:?}", row.seq));
                continue;
            }
        };
        let int = |k: &str| got[k].as_u64();
        let num = |k: &str| got[k].as_f64().unwrap_or(f64::NAN);
        let ok = match &want {
            RefEvidence::Upgrade {
                merchant_txns,
                customer_txns,
                count_percentile,
                weight,
                weight_percentile,
            } => {
                int("merchant_txns") == Some(*merchant_txns)
                    && int("customer_txns") == Some(*customer_txns)
                    && close(num("count_percentile"), *count_percentile)
                    && close(num("weight"), *weight)
                    && close(num("weight_percentile"), *weight_percentile)
            }
            RefEvidence::Child {
                customer_txns,
                amount_micros,
                n,
            } => {
                // The stored mean is within half a micro-unit of the exact one.
                let exact = *amount_micros as f64 / *n as f64;
                int("customer_txns") == Some(*customer_txns)
                    && (num("mean_amount") * 1e6 - exact).abs() <= 0.5 + 1e-6 * exact.abs()
            }
            RefEvidence::DeiNeeded {
                female_customers,
                male_customers,
            } => {
                int("female_customers") == Some(*female_customers)
                    && int("male_customers") == Some(*male_customers)
            }
        };
        if !ok {
            problems.push(format!(
                "{which} row {row:?}: evidence {got} but the reference says {want:?}"
            ));
        }
    }
    problems
}

/// The files of `files` under `prefix`, with the prefix removed.
fn under(files: &BTreeMap<PathBuf, Vec<u8>>, prefix: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    files
        .iter()
        .filter_map(|(p, b)| Some((p.strip_prefix(prefix).ok()?.to_path_buf(), b.clone())))
        .collect()
}

/// The detection files of `files` (top level only).
fn detection_files(files: &BTreeMap<PathBuf, Vec<u8>>) -> BTreeMap<PathBuf, Vec<u8>> {
    files
        .iter()
        .filter(|(p, _)| p.parent() == Some(Path::new("")))
        .filter(|(p, _)| p.to_string_lossy().starts_with("detections-"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

/// Checks one stream; returns its problems.
fn check_stream(stream: &Stream, workers: usize, rng: &mut SplitMix64) -> Vec<String> {
    let work = tempfile::tempdir().unwrap();
    let landing = streams::write_landing(work.path(), stream);
    let base = stream.thresholds;
    let variants = random_variants(rng, &base);
    let mut problems = Vec::new();

    let with = replay(&landing, work.path(), "with", base, &variants, workers);
    let without = replay(&landing, work.path(), "without", base, &[], workers);
    // The baseline is untouched by the variants: tables and every file but the variants'.
    if with.ledger != without.ledger
        || with.counts != without.counts
        || with.epochs != without.epochs
    {
        problems.push("the baseline's tables differ from a replay without variants".into());
    }
    let baseline_files: BTreeMap<PathBuf, Vec<u8>> = with
        .files
        .iter()
        .filter(|(p, _)| !p.starts_with("variants"))
        .filter(|(p, _)| {
            ![
                "backtest-report.html",
                "backtest-report.json",
                "variants.csv",
            ]
            .contains(&p.to_str().unwrap())
        })
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect();
    if baseline_files != without.files {
        problems.push("the baseline's files differ from a replay without variants".into());
    }

    let importance = reference::parse_importance(&stream.importance).weights;
    let through = accepted_through(stream);
    problems.extend(check_evidence(
        &with.ledger,
        &through,
        &importance,
        &base,
        "baseline",
    ));
    BASELINE_ROWS.fetch_add(with.ledger.len(), Ordering::Relaxed);
    for (i, v) in variants.iter().enumerate() {
        let alone = replay(
            &landing,
            work.path(),
            &format!("alone{i}"),
            v.thresholds,
            &[],
            workers,
        );
        let ledger = &with.variant_ledgers[&v.name];
        if *ledger != alone.ledger {
            problems.push(format!(
                "variant {}: ledger differs from its own replay",
                v.name
            ));
        }
        let all = under(&with.files, &format!("variants/{}", v.name));
        let files = detection_files(&all);
        // Beside its detection files, the report's full lists of what it adds and removes.
        let lists = ["added.csv", "removed.csv"].map(|f| all.contains_key(Path::new(f)));
        if all.len() != files.len() + 2 || lists != [true, true] {
            problems.push(format!("variant {}: files beside its detections", v.name));
        }
        if files != detection_files(&alone.files) {
            problems.push(format!(
                "variant {}: files differ from its own replay's",
                v.name
            ));
        }
        let expected = reference::expected(&stream.chunks, &stream.importance, &v.thresholds);
        if let Err(e) = expected.check_ledger(&ledger_identities(ledger)) {
            problems.push(format!("variant {}: against the reference: {e}", v.name));
        }
        problems.extend(check_evidence(
            ledger,
            &through,
            &importance,
            &v.thresholds,
            &v.name,
        ));
        VARIANT_ROWS.fetch_add(ledger.len(), Ordering::Relaxed);
    }
    problems
}

fn seeds() -> u64 {
    std::env::var("TXFLOW_VARIANT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

#[test]
fn variants_equal_their_own_replays_and_the_reference() {
    let mut failures = Vec::new();
    let mut detections = 0;
    for seed in 0..seeds() {
        let stream = streams::random_stream(9_000 + seed, &StreamOptions::default());
        let mut rng = SplitMix64::new(seed);
        let workers = if seed % 2 == 0 { 1 } else { 3 };
        let expected = reference::expected(&stream.chunks, &stream.importance, &stream.thresholds);
        detections += expected.detections.len();
        let problems = check_stream(&stream, workers, &mut rng);
        if !problems.is_empty() {
            failures.push(format!(
                "seed {seed} (-w {workers}):\n  {}",
                problems.join("\n  ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The streams make detections, so the comparisons are not vacuous.
    let (baseline, variants) = (
        BASELINE_ROWS.load(Ordering::Relaxed),
        VARIANT_ROWS.load(Ordering::Relaxed),
    );
    eprintln!("{detections} expected baseline detections; evidence checked on {baseline} baseline and {variants} variant rows");
    assert!(detections > 0 && baseline > 0 && variants > 0);
}

/// The thresholds as the previous build recorded them (`PatId1 N>… ; PatId2 …; PatId3 F>…`,
/// decimals as `f64` prints them), written here from that format.
fn previous_build_text(t: &Thresholds) -> String {
    format!(
        "PatId1 N>{} n>=p{} W<=p{}; PatId2 n>={} avg<{}; PatId3 F>{}",
        t.upgrade_min_merchant_txns,
        f64::from(t.upgrade_count_percentile.millionths) / 1e6,
        f64::from(t.upgrade_weight_percentile.millionths) / 1e6,
        t.child_min_txns,
        t.child_max_avg_amount.micros as f64 / 1e6,
        t.dei_min_female_customers
    )
}

/// Turns a store written by this build into one the previous build wrote: thresholds as
/// text, and no migration 5.
fn as_previous_build(db: &Path, run: &Thresholds, variants: &[Variant]) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE run_meta SET value = ?1 WHERE key = 'run.thresholds'",
        [previous_build_text(run)],
    )
    .unwrap();
    for v in variants {
        let text = previous_build_text(&v.thresholds);
        let changed = conn
            .execute(
                "UPDATE variants SET thresholds = ?1 WHERE name = ?2",
                [text.as_str(), v.name.as_str()],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    // That build's schema ended at version 4 (later migrations add run_failures).
    conn.execute_batch(
        "DELETE FROM schema_migrations WHERE version >= 5; DROP TABLE run_failures;",
    )
    .unwrap();
}

/// A store of the previous build (thresholds recorded as text) resumes under the same
/// thresholds and variants, its records now JSON; under other thresholds it is refused,
/// naming the threshold that differs.
#[test]
fn a_store_of_the_previous_build_resumes_with_the_same_thresholds_only() {
    let stream = streams::random_stream(9_100, &StreamOptions::default());
    let work = tempfile::tempdir().unwrap();
    let landing = streams::write_landing(work.path(), &stream);
    let base = stream.thresholds;
    let variants = [Variant {
        name: "strict".into(),
        thresholds: Thresholds {
            upgrade_weight_percentile: Fraction::from_millionths(50_000),
            child_max_avg_amount: Amount::from_micros(12_500_000),
            ..base
        },
    }];
    let first = replay(&landing, work.path(), "old", base, &variants, 1);
    let db = work.path().join("state-old.db");
    as_previous_build(&db, &base, &variants);

    let resumed = replay(&landing, work.path(), "old", base, &variants, 1);
    assert!(resumed.ledger == first.ledger && resumed.variant_ledgers == first.variant_ledgers);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let recorded: String = conn
        .query_row(
            "SELECT value FROM run_meta WHERE key = 'run.thresholds'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let json: Value = serde_json::from_str(&recorded).unwrap();
    assert_eq!(json["child-min-txns"], Value::from(base.child_min_txns));
    let amount = json["child-max-avg-amount"].as_str().unwrap();
    let micros = txflow::decimal::parse_decimal_micros(amount);
    assert_eq!(micros, Some(base.child_max_avg_amount.micros), "{recorded}");
    let variant: String = conn
        .query_row("SELECT thresholds FROM variants", [], |r| r.get(0))
        .unwrap();
    let json: Value = serde_json::from_str(&variant).unwrap();
    assert_eq!(json["upgrade-weight-percentile"], Value::from("0.05"));
    assert_eq!(json["child-max-avg-amount"], Value::from("12.5"));
    drop(conn);

    as_previous_build(&db, &base, &variants);
    let output = work.path().join("out-old");
    let mut opts = landing.replay_options(&output, &db);
    opts.thresholds = Thresholds {
        child_min_txns: base.child_min_txns + 1,
        ..base
    };
    opts.mode = txflow::mechanism_y::Mode::Replay {
        range: Default::default(),
        variants: variants.to_vec(),
    };
    let refused = mechanism_y::run(&opts).map(|_| ()).unwrap_err();
    let message = format!("{refused:#}");
    let expected = format!(
        "the thresholds differ: child-min-txns was {}, now {}",
        base.child_min_txns,
        base.child_min_txns + 1
    );
    assert!(message.contains(&expected), "{message}");
}
