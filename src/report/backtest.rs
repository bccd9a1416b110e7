//! The backtest comparison report: written at the end of a replay with variants as
//! `<output>/backtest-report.html`, `backtest-report.json` and `variants.csv`, and per variant
//! the full lists of what it adds and removes, `variants/<name>/added.csv` and `removed.csv`.
//!
//! Per ledger (the baseline first, as the reference row, then each variant) and pattern: the
//! detections, distinct customers and merchants, first and last epoch, what it adds to and
//! removes from the baseline (detections compared by `(pattern, customer, merchant)`), the
//! Jaccard overlap of the two, a sample of the added and the removed with their evidence, the
//! detections per epoch, and how the flagged pairs (PatId3: merchants) meet BankSim's fraud
//! labels. Rows of a pattern other than the three of the SPEC are not counted; a row whose
//! epoch is not among the input's epochs counts everywhere but in the per-epoch series.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::page::{script_safe, with_charts};
use crate::model::{Evidence, Pattern};
use crate::objectstore::ObjectStore;
use crate::runtime::writer::BacktestSource;
use crate::sinks::state::{LedgerId, LedgerRow, StateReader, VariantSpec};

/// One ledger of a backtest: the baseline (the run's own thresholds) or a variant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerSet {
    /// `baseline`, or the variant's name.
    pub name: String,
    /// Its thresholds as recorded (`Thresholds::to_json`).
    pub thresholds: String,
    /// Its ledger rows in sequence order (with evidence).
    pub rows: Vec<LedgerRow>,
}

pub use crate::runtime::writer::FraudLabels;

/// Everything the report is computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BacktestInput {
    /// The committed epochs, ascending (the x axis of the per-epoch charts).
    pub epochs: Vec<u64>,
    pub baseline: LedgerSet,
    pub variants: Vec<LedgerSet>,
    pub labels: FraudLabels,
}

/// What the report of a backtest whose stream ended is computed from: every ledger and the
/// epochs as its state store holds them, and the labels the run saw.
pub(crate) fn input_from_store(
    store: &mut dyn StateReader,
    variants: &[VariantSpec],
    labels: FraudLabels,
) -> crate::error::Result<BacktestInput> {
    let epochs = store.epoch_rows()?.iter().map(|e| e.epoch).collect();
    let meta = store.run_meta()?;
    let baseline = LedgerSet {
        name: "baseline".into(),
        thresholds: meta.get("run.thresholds").cloned().unwrap_or_default(),
        rows: store.ledger(LedgerId::Baseline)?,
    };
    let mut sets = Vec::new();
    for spec in variants {
        sets.push(LedgerSet {
            name: spec.name.clone(),
            thresholds: spec.thresholds.clone(),
            rows: store.ledger(LedgerId::Variant(&spec.name))?,
        });
    }
    Ok(BacktestInput {
        epochs,
        baseline,
        variants: sets,
        labels,
    })
}

/// Renders and writes the report of a backtest whose stream ended, from its state store.
pub(crate) fn write_from(source: BacktestSource<'_>) -> crate::error::Result<()> {
    let input = input_from_store(source.store, source.variants, source.labels.clone())?;
    write(source.output, &input)
}

/// The files of the report, rendered; deterministic for a given input (no clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacktestReport {
    pub html: String,
    pub json: String,
    pub csv: String,
    /// Per variant, in the input's order: its `added.csv` and `removed.csv` as (key, body).
    pub lists: Vec<(String, String)>,
}

/// The report's object keys under the output location.
pub(crate) const HTML_KEY: &str = "backtest-report.html";
pub(crate) const JSON_KEY: &str = "backtest-report.json";
pub(crate) const CSV_KEY: &str = "variants.csv";

/// How many added and how many removed detections each variant × pattern shows (all of them
/// are in the variant's `added.csv` and `removed.csv`).
const SAMPLE_SIZE: usize = 50;

/// The columns of a variant's `added.csv` and `removed.csv`: the ledger row's fields, its
/// evidence as stored (a JSON object; empty when absent).
const LIST_HEADER: &str = "pattern_id,action_type,seq,epoch,customer_name,merchant_id,\
y_start_time,detection_time,file_seq,evidence";

/// The key of a variant's list of added (`added`) or removed (`removed`) detections.
fn list_key(variant: &str, kind: &str) -> String {
    format!("variants/{variant}/{kind}.csv")
}

/// The page; its data element is filled with the figures and its `/*@charts.js*/` line with
/// the chart code it shares with the console.
const TEMPLATE: &str = include_str!("backtest.html");

/// The empty data element of [`TEMPLATE`].
const DATA_ELEMENT: &str = r#"<script type="application/json" id="backtest"></script>"#;

/// The columns of `variants.csv`, one row per ledger × pattern.
const CSV_HEADER: &str = "variant,pattern_id,action_type,detections,customers,merchants,\
first_epoch,last_epoch,added,removed,common,jaccard,flagged,flagged_fraud,fraud,\
fraud_share_of_flagged,flagged_share_of_fraud";

/// Renders the report of `input`.
pub fn render(input: &BacktestInput) -> BacktestReport {
    let figures = figures(input);
    // Plain structs of numbers and strings: serialising them cannot fail.
    let json = serde_json::to_string_pretty(&figures).unwrap_or_default() + "\n";
    // The page embeds the JSON document itself (its key order included).
    let filled = format!(
        r#"<script type="application/json" id="backtest">{}</script>"#,
        script_safe(&json)
    );
    BacktestReport {
        html: with_charts(TEMPLATE).replacen(DATA_ELEMENT, &filled, 1),
        json,
        csv: csv(&figures),
        lists: lists(input),
    }
}

/// Renders the report of `input` and puts its objects ([`HTML_KEY`], [`JSON_KEY`],
/// [`CSV_KEY`] and each variant's lists) into `output`.
pub fn write(output: &dyn ObjectStore, input: &BacktestInput) -> crate::error::Result<()> {
    let report = render(input);
    output.put(HTML_KEY, report.html.as_bytes())?;
    output.put(JSON_KEY, report.json.as_bytes())?;
    output.put(CSV_KEY, report.csv.as_bytes())?;
    for (key, body) in &report.lists {
        output.put(key, body.as_bytes())?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// The figures (the JSON document; the page renders the same document)
// ------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Figures<'a> {
    epochs: &'a [u64],
    labels: LabelCounts,
    /// The baseline first, then the variants in the input's order.
    ledgers: Vec<LedgerFigures<'a>>,
}

#[derive(Serialize)]
struct LabelCounts {
    /// Whether any transaction carried a 0/1 label; the shares are null when not.
    available: bool,
    fraud_rows: u64,
    clean_rows: u64,
    unknown_rows: u64,
    /// Distinct (customer, merchant) pairs with a transaction labelled 1.
    fraud_pairs: u64,
    /// Distinct merchants of those pairs (what PatId3's shares compare with).
    fraud_merchants: u64,
}

#[derive(Serialize)]
struct LedgerFigures<'a> {
    name: &'a str,
    /// The recorded thresholds as a JSON object (the text as it is, were it not JSON).
    thresholds: serde_json::Value,
    baseline: bool,
    /// The keys of the full lists of added and removed detections; null for the baseline.
    added_csv: Option<String>,
    removed_csv: Option<String>,
    patterns: Vec<PatternFigures<'a>>,
}

#[derive(Serialize)]
struct PatternFigures<'a> {
    pattern_id: &'static str,
    action_type: &'static str,
    detections: u64,
    /// Distinct non-empty customer names (PatId3's rows have none).
    customers: u64,
    merchants: u64,
    first_epoch: Option<u64>,
    last_epoch: Option<u64>,
    /// Detections in this ledger and not in the baseline's, in the baseline's and not in
    /// this one, and in both.
    added: u64,
    removed: u64,
    common: u64,
    /// `common / (added + removed + common)`; 1 when both are empty.
    jaccard: f64,
    /// Null when labels are unavailable.
    labels: Option<LabelFigures>,
    added_sample: Vec<SampleRow<'a>>,
    removed_sample: Vec<SampleRow<'a>>,
    /// Detections per epoch, aligned with `epochs`.
    per_epoch: Vec<u64>,
}

/// PatId1/PatId2: (customer, merchant) pairs; PatId3: merchants.
#[derive(Serialize)]
struct LabelFigures {
    flagged: u64,
    /// Flagged and with a transaction labelled 1.
    flagged_fraud: u64,
    /// With a transaction labelled 1.
    fraud: u64,
    /// `flagged_fraud / flagged`, null when nothing is flagged.
    fraud_share_of_flagged: Option<f64>,
    /// `flagged_fraud / fraud`, null when nothing is labelled 1.
    flagged_share_of_fraud: Option<f64>,
}

#[derive(Serialize)]
struct SampleRow<'a> {
    seq: u64,
    epoch: u64,
    customer_name: &'a str,
    merchant_id: &'a str,
    evidence: ShownEvidence,
}

/// A row's evidence: an [`Evidence`] (its keys in their declared order), any other JSON as
/// stored, the text when it is not JSON, null when absent.
#[derive(Serialize)]
#[serde(untagged)]
enum ShownEvidence {
    Known(Evidence),
    Other(Value),
}

impl ShownEvidence {
    fn of(stored: Option<&str>) -> ShownEvidence {
        let Some(text) = stored else {
            return ShownEvidence::Other(Value::Null);
        };
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return ShownEvidence::Other(Value::String(text.to_string()));
        };
        // Only when nothing is lost: `Evidence` would drop keys it does not know.
        match serde_json::from_value::<Evidence>(value.clone()) {
            Ok(known) if serde_json::to_value(&known).ok().as_ref() == Some(&value) => {
                ShownEvidence::Known(known)
            }
            _ => ShownEvidence::Other(value),
        }
    }
}

/// A detection within one pattern: (customer, merchant).
type Key<'a> = (&'a str, &'a str);

/// The fraud labels as sets to intersect with.
struct FraudSets<'a> {
    pairs: BTreeSet<Key<'a>>,
    merchants: BTreeSet<&'a str>,
}

fn figures(input: &BacktestInput) -> Figures<'_> {
    let labels = &input.labels;
    let fraud = FraudSets {
        pairs: labels
            .fraud_pairs
            .iter()
            .map(|(c, m)| (c.as_str(), m.as_str()))
            .collect(),
        merchants: labels.fraud_pairs.iter().map(|(_, m)| m.as_str()).collect(),
    };
    let available = labels.fraud_rows + labels.clean_rows > 0;
    let epoch_index: BTreeMap<u64, usize> = input
        .epochs
        .iter()
        .enumerate()
        .map(|(i, epoch)| (*epoch, i))
        .collect();
    let ledger = |set, is_baseline| {
        let context = Context {
            baseline: &input.baseline,
            epoch_index: &epoch_index,
            fraud: available.then_some(&fraud),
        };
        ledger_figures(set, is_baseline, &context)
    };
    let ledgers = std::iter::once(ledger(&input.baseline, true))
        .chain(input.variants.iter().map(|set| ledger(set, false)))
        .collect();
    Figures {
        epochs: &input.epochs,
        labels: LabelCounts {
            available,
            fraud_rows: labels.fraud_rows,
            clean_rows: labels.clean_rows,
            unknown_rows: labels.unknown_rows,
            fraud_pairs: fraud.pairs.len() as u64,
            fraud_merchants: fraud.merchants.len() as u64,
        },
        ledgers,
    }
}

/// What every ledger is compared with.
struct Context<'a, 'b> {
    baseline: &'a LedgerSet,
    /// Epoch → its position in the input's epochs.
    epoch_index: &'b BTreeMap<u64, usize>,
    /// `None` when labels are unavailable.
    fraud: Option<&'b FraudSets<'a>>,
}

fn ledger_figures<'a>(
    set: &'a LedgerSet,
    is_baseline: bool,
    context: &Context<'a, '_>,
) -> LedgerFigures<'a> {
    LedgerFigures {
        name: &set.name,
        thresholds: serde_json::from_str(&set.thresholds)
            .unwrap_or_else(|_| serde_json::Value::String(set.thresholds.clone())),
        baseline: is_baseline,
        added_csv: (!is_baseline).then(|| list_key(&set.name, "added")),
        removed_csv: (!is_baseline).then(|| list_key(&set.name, "removed")),
        patterns: Pattern::ALL
            .into_iter()
            .map(|pattern| pattern_figures(set, pattern, context))
            .collect(),
    }
}

fn pattern_figures<'a>(
    set: &'a LedgerSet,
    pattern: Pattern,
    context: &Context<'a, '_>,
) -> PatternFigures<'a> {
    let rows = rows_of(set, pattern);
    let baseline_rows = rows_of(context.baseline, pattern);
    let (mine, theirs) = (keys(&rows), keys(&baseline_rows));
    let common = mine.intersection(&theirs).count() as u64;
    let (added, removed) = (mine.len() as u64 - common, theirs.len() as u64 - common);
    let union = added + removed + common;
    let mut per_epoch = vec![0; context.epoch_index.len()];
    for row in &rows {
        if let Some(&i) = context.epoch_index.get(&row.epoch) {
            per_epoch[i] += 1;
        }
    }
    let distinct = |name: fn(&LedgerRow) -> &str| {
        let names: BTreeSet<&str> = rows
            .iter()
            .map(|r| name(r))
            .filter(|n| !n.is_empty())
            .collect();
        names.len() as u64
    };
    PatternFigures {
        pattern_id: pattern.id(),
        action_type: pattern.action(),
        detections: rows.len() as u64,
        customers: distinct(|r| &r.customer_name),
        merchants: distinct(|r| &r.merchant_id),
        first_epoch: rows.iter().map(|r| r.epoch).min(),
        last_epoch: rows.iter().map(|r| r.epoch).max(),
        added,
        removed,
        common,
        jaccard: if union == 0 {
            1.0
        } else {
            common as f64 / union as f64
        },
        labels: context
            .fraud
            .map(|fraud| label_figures(&mine, pattern, fraud)),
        added_sample: sample(&rows, &theirs),
        removed_sample: sample(&baseline_rows, &mine),
        per_epoch,
    }
}

fn rows_of(set: &LedgerSet, pattern: Pattern) -> Vec<&LedgerRow> {
    set.rows
        .iter()
        .filter(|row| row.pattern == pattern)
        .collect()
}

fn keys<'a>(rows: &[&'a LedgerRow]) -> BTreeSet<Key<'a>> {
    rows.iter()
        .map(|row| (row.customer_name.as_str(), row.merchant_id.as_str()))
        .collect()
}

fn label_figures(
    flagged_pairs: &BTreeSet<Key<'_>>,
    pattern: Pattern,
    fraud: &FraudSets<'_>,
) -> LabelFigures {
    // PatId3 flags merchants (its customer is empty): compare merchants, not pairs.
    let (flagged, flagged_fraud, fraud) = if pattern == Pattern::DeiNeeded {
        let merchants: BTreeSet<&str> = flagged_pairs.iter().map(|(_, m)| *m).collect();
        let hits = merchants.intersection(&fraud.merchants).count();
        (merchants.len(), hits, fraud.merchants.len())
    } else {
        let hits = flagged_pairs.intersection(&fraud.pairs).count();
        (flagged_pairs.len(), hits, fraud.pairs.len())
    };
    let share = |part: usize, whole: usize| (whole > 0).then(|| part as f64 / whole as f64);
    LabelFigures {
        flagged: flagged as u64,
        flagged_fraud: flagged_fraud as u64,
        fraud: fraud as u64,
        fraud_share_of_flagged: share(flagged_fraud, flagged),
        flagged_share_of_fraud: share(flagged_fraud, fraud),
    }
}

/// The first [`SAMPLE_SIZE`] rows (in ledger order) whose detection is not in `other`, each
/// detection once.
fn sample<'a>(rows: &[&'a LedgerRow], other: &BTreeSet<Key<'a>>) -> Vec<SampleRow<'a>> {
    let mut seen = BTreeSet::new();
    rows.iter()
        .filter(|row| {
            let key = (row.customer_name.as_str(), row.merchant_id.as_str());
            !other.contains(&key) && seen.insert(key)
        })
        .take(SAMPLE_SIZE)
        .map(|row| SampleRow {
            seq: row.seq,
            epoch: row.epoch,
            customer_name: &row.customer_name,
            merchant_id: &row.merchant_id,
            evidence: ShownEvidence::of(row.evidence.as_deref()),
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// added.csv and removed.csv
// ------------------------------------------------------------------------------------------

fn lists(input: &BacktestInput) -> Vec<(String, String)> {
    let base = &input.baseline.rows;
    let mut out = Vec::new();
    for set in &input.variants {
        out.push((list_key(&set.name, "added"), list_csv(&set.rows, base)));
        out.push((list_key(&set.name, "removed"), list_csv(base, &set.rows)));
    }
    out
}

/// The rows of `rows` (in ledger order) whose detection — `(pattern, customer, merchant)` —
/// is not in `other`, each detection once, with [`LIST_HEADER`]'s columns.
fn list_csv(rows: &[LedgerRow], other: &[LedgerRow]) -> String {
    let detection = |r: &'_ LedgerRow| {
        (
            r.pattern.id(),
            r.customer_name.clone(),
            r.merchant_id.clone(),
        )
    };
    let theirs: BTreeSet<_> = other.iter().map(detection).collect();
    let mut seen = BTreeSet::new();
    let mut out = String::from(LIST_HEADER);
    out.push('\n');
    for row in rows {
        let key = detection(row);
        if theirs.contains(&key) || !seen.insert(key) {
            continue;
        }
        let fields = [
            row.pattern.id().to_string(),
            row.pattern.action().to_string(),
            row.seq.to_string(),
            row.epoch.to_string(),
            csv_field(&row.customer_name),
            csv_field(&row.merchant_id),
            csv_field(&row.y_start_time),
            csv_field(&row.detection_time),
            row.file_seq.map(|f| f.to_string()).unwrap_or_default(),
            csv_field(row.evidence.as_deref().unwrap_or_default()),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

// ------------------------------------------------------------------------------------------
// variants.csv
// ------------------------------------------------------------------------------------------

fn csv(figures: &Figures<'_>) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let share = |s: Option<f64>| s.map(|s| s.to_string()).unwrap_or_default();
    for ledger in &figures.ledgers {
        for p in &ledger.patterns {
            let l = p.labels.as_ref();
            let fields = [
                csv_field(ledger.name),
                p.pattern_id.to_string(),
                p.action_type.to_string(),
                p.detections.to_string(),
                p.customers.to_string(),
                p.merchants.to_string(),
                number(p.first_epoch),
                number(p.last_epoch),
                p.added.to_string(),
                p.removed.to_string(),
                p.common.to_string(),
                p.jaccard.to_string(),
                number(l.map(|l| l.flagged)),
                number(l.map(|l| l.flagged_fraud)),
                number(l.map(|l| l.fraud)),
                share(l.and_then(|l| l.fraud_share_of_flagged)),
                share(l.and_then(|l| l.flagged_share_of_fraud)),
            ];
            out.push_str(&fields.join(","));
            out.push('\n');
        }
    }
    out
}

/// A CSV field, quoted when it holds a separator, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn row(seq: u64, epoch: u64, pattern: &str, customer: &str, merchant: &str) -> LedgerRow {
        LedgerRow {
            seq,
            epoch,
            pattern: Pattern::from_id(pattern).expect("a known pattern id"),
            customer_name: customer.to_string(),
            merchant_id: merchant.to_string(),
            y_start_time: "2026-01-01 00:00:00.000".to_string(),
            detection_time: "2026-01-01 00:00:01.000".to_string(),
            file_seq: None,
            evidence: Some(format!(r#"{{"customer_txns":{seq},"mean_amount":1.5}}"#)),
        }
    }

    fn ledger(name: &str, rows: Vec<LedgerRow>) -> LedgerSet {
        LedgerSet {
            name: name.to_string(),
            thresholds: format!("thresholds of {name}"),
            rows,
        }
    }

    fn parse(report: &BacktestReport) -> Value {
        serde_json::from_str(&report.json).unwrap()
    }

    /// The figures of ledger `i`, pattern `p` (0, 1, 2) in the JSON.
    fn cell(json: &Value, i: usize, p: usize) -> &Value {
        &json["ledgers"][i]["patterns"][p]
    }

    fn seqs(sample: &Value) -> Vec<u64> {
        sample
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["seq"].as_u64().unwrap())
            .collect()
    }

    /// A small input whose figures are worked out by hand in the assertions.
    fn hand_made() -> BacktestInput {
        let baseline = ledger(
            "baseline",
            vec![
                row(0, 1, "PatId2", "c1", "m1"),
                row(1, 1, "PatId2", "c2", "m1"),
                row(2, 3, "PatId1", "c1", "m2"),
                row(3, 4, "PatId3", "", "m3"),
            ],
        );
        let strict = ledger(
            "strict",
            vec![
                row(0, 1, "PatId2", "c2", "m1"),
                row(1, 2, "PatId2", "c3", "m2"),
                row(2, 4, "PatId2", "c3", "m1"),
                row(3, 4, "PatId3", "", "m3"),
                row(4, 5, "PatId3", "", "m4"),
            ],
        );
        BacktestInput {
            epochs: vec![1, 2, 3, 4],
            baseline,
            variants: vec![strict],
            labels: FraudLabels {
                fraud_pairs: [("c3", "m2"), ("c9", "m4"), ("c1", "m2")]
                    .map(|(c, m)| (c.to_string(), m.to_string()))
                    .into(),
                fraud_rows: 3,
                clean_rows: 10,
                unknown_rows: 2,
            },
        }
    }

    #[test]
    fn hand_made_figures() {
        let json = parse(&render(&hand_made()));
        assert_eq!(json["epochs"], serde_json::json!([1, 2, 3, 4]));
        assert_eq!(json["labels"]["available"], true);
        assert_eq!(json["labels"]["fraud_pairs"], 3);
        assert_eq!(json["labels"]["fraud_merchants"], 2);
        assert_eq!(json["labels"]["unknown_rows"], 2);

        // strict × PatId2: {c2m1, c3m2, c3m1} against the baseline's {c1m1, c2m1}.
        let child = cell(&json, 1, 1);
        assert_eq!(child["pattern_id"], "PatId2");
        assert_eq!(child["action_type"], "CHILD");
        assert_eq!(
            (
                &child["detections"],
                &child["customers"],
                &child["merchants"]
            ),
            (&3.into(), &2.into(), &2.into())
        );
        assert_eq!(
            (&child["first_epoch"], &child["last_epoch"]),
            (&1.into(), &4.into())
        );
        assert_eq!(
            (&child["added"], &child["removed"], &child["common"]),
            (&2.into(), &1.into(), &1.into())
        );
        assert_eq!(child["jaccard"].as_f64(), Some(0.25));
        assert_eq!(seqs(&child["added_sample"]), [1, 2]);
        assert_eq!(seqs(&child["removed_sample"]), [0]);
        assert_eq!(child["removed_sample"][0]["evidence"]["customer_txns"], 0);
        assert_eq!(child["removed_sample"][0]["customer_name"], "c1");
        assert_eq!(child["per_epoch"], serde_json::json!([1, 1, 0, 1]));
        // Flagged pairs: 3, one of them (c3, m2) a fraud pair; 1 of the 3 fraud pairs flagged.
        let labels = &child["labels"];
        assert_eq!(
            (
                &labels["flagged"],
                &labels["flagged_fraud"],
                &labels["fraud"]
            ),
            (&3.into(), &1.into(), &3.into())
        );
        assert_eq!(labels["fraud_share_of_flagged"].as_f64(), Some(1.0 / 3.0));
        assert_eq!(labels["flagged_share_of_fraud"].as_f64(), Some(1.0 / 3.0));

        // strict × PatId1: empty against the baseline's one detection.
        let upgrade = cell(&json, 1, 0);
        assert_eq!(
            (&upgrade["detections"], &upgrade["removed"]),
            (&0.into(), &1.into())
        );
        assert_eq!(upgrade["jaccard"].as_f64(), Some(0.0));
        assert!(upgrade["first_epoch"].is_null() && upgrade["last_epoch"].is_null());
        assert_eq!(upgrade["labels"]["fraud_share_of_flagged"], Value::Null);
        assert_eq!(
            upgrade["labels"]["flagged_share_of_fraud"].as_f64(),
            Some(0.0)
        );
        // strict × PatId3: merchants {m3, m4}; m4 has a fraud pair, m3 has none; fraud
        // merchants are {m2, m4}. Epoch 5 is not an input epoch: no per-epoch point.
        let dei = cell(&json, 1, 2);
        assert_eq!(
            (&dei["customers"], &dei["merchants"]),
            (&0.into(), &2.into())
        );
        assert_eq!(
            (&dei["added"], &dei["removed"], &dei["common"]),
            (&1.into(), &0.into(), &1.into())
        );
        assert_eq!(dei["per_epoch"], serde_json::json!([0, 0, 0, 1]));
        assert_eq!(dei["last_epoch"], 5);
        assert_eq!(dei["labels"]["fraud_share_of_flagged"].as_f64(), Some(0.5));
        assert_eq!(dei["labels"]["flagged_share_of_fraud"].as_f64(), Some(0.5));

        // The baseline against itself; both empty → Jaccard 1.
        assert_eq!(json["ledgers"][0]["baseline"], true);
        let base = cell(&json, 0, 1);
        assert_eq!(
            (&base["added"], &base["removed"], &base["common"]),
            (&0.into(), &0.into(), &2.into())
        );
        assert_eq!(base["jaccard"].as_f64(), Some(1.0));
        let mut empty = hand_made();
        empty.baseline.rows.retain(|r| r.pattern.id() != "PatId1");
        assert_eq!(
            cell(&parse(&render(&empty)), 1, 0)["jaccard"].as_f64(),
            Some(1.0)
        );
    }

    #[test]
    fn no_labelled_rows_means_labels_unavailable() {
        let mut input = hand_made();
        input.labels.fraud_rows = 0;
        input.labels.clean_rows = 0;
        let report = render(&input);
        let json = parse(&report);
        assert_eq!(json["labels"]["available"], false);
        for i in 0..2 {
            for p in 0..3 {
                assert_eq!(cell(&json, i, p)["labels"], Value::Null);
            }
        }
        for line in report.csv.lines().skip(1) {
            assert!(line.ends_with(",,,,,"), "{line}");
        }
        // A single labelled-0 row makes them available (shares of 0, not "unavailable").
        input.labels.clean_rows = 1;
        let json = parse(&render(&input));
        assert_eq!(cell(&json, 1, 1)["labels"]["flagged"], 3);
    }

    #[test]
    fn csv_has_a_row_per_ledger_and_pattern() {
        let report = render(&hand_made());
        let lines: Vec<&str> = report.csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines.len(), 1 + 2 * 3);
        assert_eq!(
            lines[1],
            "baseline,PatId1,UPGRADE,1,1,1,3,3,0,0,1,1,1,1,3,1,0.3333333333333333"
        );
        assert_eq!(
            lines[5],
            "strict,PatId2,CHILD,3,2,2,1,4,2,1,1,0.25,3,1,3,0.3333333333333333,0.3333333333333333"
        );
        assert_eq!(lines[4], "strict,PatId1,UPGRADE,0,0,0,,,0,1,0,0,0,0,3,,0");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }

    #[test]
    fn the_page_embeds_the_figures_safely() {
        let mut input = hand_made();
        let evil = "</script><script>alert(1)</script><!-- & \u{2028}";
        input.variants[0].name = evil.to_string();
        input.variants[0].rows[1].customer_name = evil.to_string();
        let report = render(&input);
        let html = &report.html;
        let open = r#"<script type="application/json" id="backtest">"#;
        let start = html.find(open).unwrap() + open.len();
        let end = start + html[start..].find("</script>").unwrap();
        let embedded = &html[start..end];
        assert!(!embedded.contains(['<', '>', '&']));
        let back: Value = serde_json::from_str(embedded).unwrap();
        assert_eq!(back, parse(&report));
        let unescaped = embedded
            .replace("\\u003c", "<")
            .replace("\\u003e", ">")
            .replace("\\u0026", "&")
            .replace("\\u2028", "\u{2028}");
        assert_eq!(unescaped, report.json, "the page embeds the JSON document");
        assert_eq!(back["ledgers"][1]["name"], evil);
        assert!(!html.contains("/*@charts.js*/"));
        assert_eq!(html.matches("function chart(containerId").count(), 1);
        for external in ["src=", "href=", "@import", "url(", "https://"] {
            assert!(!html.contains(external), "{external}");
        }
        assert!(!html.contains(".innerHTML") && !html.contains("insertAdjacentHTML"));
    }

    #[test]
    fn evidence_is_shown_as_stored() {
        let upgrade = Evidence::Upgrade {
            merchant_txns: 50_001,
            customer_txns: 7,
            count_percentile: 6.5,
            weight: 0.25,
            weight_percentile: 0.5,
        };
        let shown =
            |stored: Option<&str>| serde_json::to_string(&ShownEvidence::of(stored)).unwrap();
        // Declared order (N(m) first), not sorted keys.
        assert_eq!(shown(Some(&upgrade.to_json())), upgrade.to_json());
        assert!(upgrade
            .to_json()
            .starts_with(r#"{"merchant_txns":50001,"customer_txns":7"#));
        let dei = Evidence::DeiNeeded {
            female_customers: 101,
            male_customers: 150,
        };
        assert_eq!(shown(Some(&dei.to_json())), dei.to_json());
        // A key Evidence does not know is kept (the object as parsed, keys sorted).
        assert_eq!(
            shown(Some(r#"{"mean_amount":2.5,"customer_txns":90,"z":1}"#)),
            r#"{"customer_txns":90,"mean_amount":2.5,"z":1}"#
        );
        assert_eq!(shown(Some("not json")), r#""not json""#);
        assert_eq!(shown(None), "null");
    }

    #[test]
    fn the_page_shows_fifty_and_the_lists_hold_all() {
        let mut input = hand_made();
        let extra = (0..120).map(|i| row(10 + i, 2, "PatId2", &format!("n{i}"), "m9"));
        input.variants[0].rows.extend(extra);
        let report = render(&input);
        let json = parse(&report);
        let sample = seqs(&cell(&json, 1, 1)["added_sample"]);
        // The strict variant's own two added PatId2 detections, then the first 48 extra.
        let want: Vec<u64> = [1, 2].into_iter().chain(10..58).collect();
        assert_eq!(sample, want);
        let (key, added) = &report.lists[0];
        assert_eq!(key, "variants/strict/added.csv");
        // Header, the two, the 120 extra and PatId3's m4.
        assert_eq!(added.lines().count(), 1 + 2 + 120 + 1);
        assert!(added.contains("\nPatId2,CHILD,129,2,n119,m9,"));
        assert_eq!(report.lists[1].0, "variants/strict/removed.csv");
        assert_eq!(
            report.lists[1].1.lines().skip(1).collect::<Vec<_>>(),
            [
                r#"PatId2,CHILD,0,1,c1,m1,2026-01-01 00:00:00.000,2026-01-01 00:00:01.000,,"{""customer_txns"":0,""mean_amount"":1.5}""#,
                r#"PatId1,UPGRADE,2,3,c1,m2,2026-01-01 00:00:00.000,2026-01-01 00:00:01.000,,"{""customer_txns"":2,""mean_amount"":1.5}""#,
            ]
        );
    }

    #[test]
    fn write_puts_every_object() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            crate::objectstore::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        let input = hand_made();
        write(store.as_ref(), &input).unwrap();
        let report = render(&input);
        assert_eq!(report.lists.len(), 2);
        let lists = report.lists.iter().map(|(k, b)| (k.as_str(), b));
        for (key, body) in [
            (HTML_KEY, &report.html),
            (JSON_KEY, &report.json),
            (CSV_KEY, &report.csv),
        ]
        .into_iter()
        .chain(lists)
        {
            assert_eq!(
                std::fs::read_to_string(dir.path().join(key)).unwrap(),
                *body,
                "{key}"
            );
        }
    }

    // --------------------------------------------------------------------------------------
    // A randomised input against an independent computation
    // --------------------------------------------------------------------------------------

    /// xorshift64*: a reproducible stream without a dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % n
        }
    }

    fn random_ledger(rng: &mut Rng, name: &str) -> LedgerSet {
        let mut rows = Vec::new();
        for seq in 0..rng.below(40) {
            let pattern = ["PatId1", "PatId2", "PatId3"][rng.below(3) as usize];
            let customer = if pattern == "PatId3" {
                String::new()
            } else {
                format!("c{}", rng.below(6))
            };
            let mut r = row(
                seq,
                rng.below(9),
                pattern,
                &customer,
                &format!("m{}", rng.below(5)),
            );
            r.evidence = match rng.below(3) {
                0 => None,
                1 => Some("not json".to_string()),
                _ => r.evidence,
            };
            rows.push(r);
        }
        ledger(name, rows)
    }

    fn random_input(rng: &mut Rng) -> BacktestInput {
        let variants = (0..rng.below(4))
            .map(|i| random_ledger(rng, &format!("v{i}")))
            .collect();
        let fraud_pairs = (0..rng.below(8))
            .map(|_| (format!("c{}", rng.below(6)), format!("m{}", rng.below(5))))
            .collect();
        BacktestInput {
            // Epochs 0..=8 with some missing: rows of those count everywhere but per epoch.
            epochs: (0..9).filter(|_| rng.below(4) != 0).collect(),
            baseline: random_ledger(rng, "baseline"),
            variants,
            labels: FraudLabels {
                fraud_pairs,
                fraud_rows: rng.below(3),
                clean_rows: rng.below(3),
                unknown_rows: rng.below(3),
            },
        }
    }

    /// The figures of one ledger × pattern, by plain loops over the rows.
    #[derive(Debug, PartialEq)]
    struct Expected {
        counts: [u64; 6],
        epochs: (Option<u64>, Option<u64>),
        jaccard: i64,
        samples: (Vec<u64>, Vec<u64>),
        per_epoch: Vec<u64>,
        labels: Option<ExpectedLabels>,
    }

    /// Flagged, flagged with fraud, with fraud, and the two shares (see [`approx`]).
    type ExpectedLabels = (u64, u64, u64, Option<i64>, Option<i64>);

    /// A fraction to 12 decimals: serde_json's default float parsing may be one ulp off.
    fn approx(x: f64) -> i64 {
        (x * 1e12).round() as i64
    }

    fn expected(input: &BacktestInput, set: &LedgerSet, pattern: &str) -> Expected {
        let of = |s: &LedgerSet| -> Vec<LedgerRow> {
            s.rows
                .iter()
                .filter(|r| r.pattern.id() == pattern)
                .cloned()
                .collect()
        };
        let (mine, base) = (of(set), of(&input.baseline));
        let key = |r: &LedgerRow| (r.customer_name.clone(), r.merchant_id.clone());
        let has = |rows: &[LedgerRow], k: &(String, String)| rows.iter().any(|r| key(r) == *k);
        let mine_keys: HashSet<_> = mine.iter().map(key).collect();
        let base_keys: HashSet<_> = base.iter().map(key).collect();
        let added = mine_keys.iter().filter(|k| !has(&base, k)).count() as u64;
        let removed = base_keys.iter().filter(|k| !has(&mine, k)).count() as u64;
        let common = mine_keys.iter().filter(|k| has(&base, k)).count() as u64;
        let union = mine_keys.union(&base_keys).count();
        let first_not_in = |from: &[LedgerRow], other: &[LedgerRow]| {
            let mut taken: Vec<(String, String)> = Vec::new();
            let mut out = Vec::new();
            for r in from {
                if out.len() < 50 && !has(other, &key(r)) && !taken.contains(&key(r)) {
                    taken.push(key(r));
                    out.push(r.seq);
                }
            }
            out
        };
        let customers: HashSet<_> = mine
            .iter()
            .filter(|r| !r.customer_name.is_empty())
            .map(|r| &r.customer_name)
            .collect();
        let merchants: HashSet<_> = mine.iter().map(|r| &r.merchant_id).collect();
        let per_epoch = input
            .epochs
            .iter()
            .map(|e| mine.iter().filter(|r| r.epoch == *e).count() as u64)
            .collect();
        let labels = (input.labels.fraud_rows + input.labels.clean_rows > 0).then(|| {
            let fraud = &input.labels.fraud_pairs;
            let (flagged, hits, labelled) = if pattern == "PatId3" {
                let flagged: HashSet<_> = mine.iter().map(|r| r.merchant_id.clone()).collect();
                let labelled: HashSet<_> = fraud.iter().map(|(_, m)| m.clone()).collect();
                let hits = flagged.iter().filter(|m| labelled.contains(*m)).count();
                (flagged.len(), hits, labelled.len())
            } else {
                let hits = mine_keys.iter().filter(|k| fraud.contains(k)).count();
                (mine_keys.len(), hits, fraud.len())
            };
            let share = |a: usize, b: usize| (b != 0).then(|| approx(a as f64 / b as f64));
            (
                flagged as u64,
                hits as u64,
                labelled as u64,
                share(hits, flagged),
                share(hits, labelled),
            )
        });
        Expected {
            counts: [
                mine.len() as u64,
                customers.len() as u64,
                merchants.len() as u64,
                added,
                removed,
                common,
            ],
            epochs: (
                mine.iter().map(|r| r.epoch).min(),
                mine.iter().map(|r| r.epoch).max(),
            ),
            jaccard: approx(if union == 0 {
                1.0
            } else {
                common as f64 / union as f64
            }),
            samples: (first_not_in(&mine, &base), first_not_in(&base, &mine)),
            per_epoch,
            labels,
        }
    }

    /// The same figures, read from the report's JSON.
    fn reported(figures: &Value) -> Expected {
        let n = |k: &str| figures[k].as_u64().unwrap();
        let labels = &figures["labels"];
        Expected {
            counts: [
                "detections",
                "customers",
                "merchants",
                "added",
                "removed",
                "common",
            ]
            .map(n),
            epochs: (
                figures["first_epoch"].as_u64(),
                figures["last_epoch"].as_u64(),
            ),
            jaccard: approx(figures["jaccard"].as_f64().unwrap()),
            samples: (
                seqs(&figures["added_sample"]),
                seqs(&figures["removed_sample"]),
            ),
            per_epoch: serde_json::from_value(figures["per_epoch"].clone()).unwrap(),
            labels: (!labels.is_null()).then(|| {
                let l = |k: &str| labels[k].as_u64().unwrap();
                (
                    l("flagged"),
                    l("flagged_fraud"),
                    l("fraud"),
                    labels["fraud_share_of_flagged"].as_f64().map(approx),
                    labels["flagged_share_of_fraud"].as_f64().map(approx),
                )
            }),
        }
    }

    #[test]
    fn random_inputs_match_an_independent_computation() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..300 {
            let input = random_input(&mut rng);
            let report = render(&input);
            assert_eq!(
                report,
                render(&input.clone()),
                "round {round}: not deterministic"
            );
            let json = parse(&report);
            let csv: Vec<&str> = report.csv.lines().skip(1).collect();
            let sets = std::iter::once(&input.baseline).chain(&input.variants);
            for (i, set) in sets.enumerate() {
                assert_eq!(json["ledgers"][i]["name"], set.name.as_str());
                for (p, pattern) in ["PatId1", "PatId2", "PatId3"].into_iter().enumerate() {
                    let want = expected(&input, set, pattern);
                    assert_eq!(
                        reported(cell(&json, i, p)),
                        want,
                        "round {round}, {} {pattern}",
                        set.name
                    );
                    let line: Vec<&str> = csv[i * 3 + p].split(',').collect();
                    assert_eq!((line[0], line[1]), (set.name.as_str(), pattern));
                    let counts: Vec<u64> = [3, 4, 5, 8, 9, 10]
                        .map(|c| line[c].parse().unwrap())
                        .to_vec();
                    assert_eq!(counts, want.counts, "round {round}: csv");
                    assert_eq!(approx(line[11].parse().unwrap()), want.jaccard);
                }
            }
            check_lists(&input, &report, &json);
        }
    }

    /// The records of a list: every field of the rows of `rows` whose (pattern, customer,
    /// merchant) no row of `other` has, the first row of each detection, by plain loops.
    fn expected_list(rows: &[LedgerRow], other: &[LedgerRow]) -> Vec<Vec<String>> {
        let same = |a: &LedgerRow, b: &LedgerRow| {
            a.pattern == b.pattern
                && a.customer_name == b.customer_name
                && a.merchant_id == b.merchant_id
        };
        let mut out = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            if other.iter().any(|o| same(o, r)) || rows[..i].iter().any(|o| same(o, r)) {
                continue;
            }
            out.push(vec![
                r.pattern.id().to_string(),
                r.pattern.action().to_string(),
                r.seq.to_string(),
                r.epoch.to_string(),
                r.customer_name.clone(),
                r.merchant_id.clone(),
                r.y_start_time.clone(),
                r.detection_time.clone(),
                r.file_seq.map(|f| f.to_string()).unwrap_or_default(),
                r.evidence.clone().unwrap_or_default(),
            ]);
        }
        out
    }

    fn check_lists(input: &BacktestInput, report: &BacktestReport, json: &Value) {
        let base = &input.baseline.rows;
        let mut keys = Vec::new();
        assert_eq!(json["ledgers"][0]["added_csv"], Value::Null);
        for (i, set) in input.variants.iter().enumerate() {
            for (kind, mine, theirs) in [("added", &set.rows, base), ("removed", base, &set.rows)] {
                let key = format!("variants/{}/{kind}.csv", set.name);
                assert_eq!(json["ledgers"][i + 1][format!("{kind}_csv")], key.as_str());
                let body = &report.lists.iter().find(|(k, _)| *k == key).unwrap().1;
                let mut reader = csv::Reader::from_reader(body.as_bytes());
                let header: Vec<String> =
                    reader.headers().unwrap().iter().map(String::from).collect();
                assert_eq!(header.len(), 10);
                assert_eq!((&header[0][..], &header[9][..]), ("pattern_id", "evidence"));
                let records: Vec<Vec<String>> = reader
                    .records()
                    .map(|r| r.unwrap().iter().map(String::from).collect())
                    .collect();
                assert_eq!(records, expected_list(mine, theirs), "{key}");
                keys.push(key);
            }
        }
        let listed: Vec<&String> = report.lists.iter().map(|(k, _)| k).collect();
        assert_eq!(listed, keys.iter().collect::<Vec<_>>());
    }
}
