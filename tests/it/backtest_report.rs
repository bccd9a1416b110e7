//! The backtest comparison report in a real browser: a generated backtest (a
//! baseline ledger and variants that drop and add detections, evidence on every row, fraud
//! labels) is rendered by `report::backtest::render`, written to a temporary directory and
//! loaded in headless Chromium (`--dump-dom`, Debian's `chromium`, installed by
//! `scripts/ensure-tools.sh`; a missing browser fails the test, it never skips). The numbers
//! the rendered per-ledger table shows — as text and as `data-value` — must equal the ones this
//! test computes from the rows with plain loops; the samples must be the first fifty added and
//! removed detections in ledger order; names holding markup stay text. A real replay's full
//! lists (`variants/<name>/added.csv`, `removed.csv`) must equal the set differences of the
//! ledgers its store holds.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use common::browser;
use common::streams::SplitMix64;
use txflow::model::Evidence;
use txflow::report::backtest::{self, BacktestInput, FraudLabels, LedgerSet};
use txflow::sinks::state::LedgerRow;

const PATTERNS: [(&str, &str); 3] = [
    ("PatId1", "UPGRADE"),
    ("PatId2", "CHILD"),
    ("PatId3", "DEI-NEEDED"),
];
/// A variant name and a customer name that would be markup if inserted as HTML.
const HOSTILE_NAME: &str = "x</script><script>alert(1)</script><img id=\"injected\" src=\"x\">";
const HOSTILE_CUSTOMER: &str = "'C<b>bold</b>&amp;'";

// ------------------------------------------------------------------------------------------
// The browser (as tests/operating_browser.rs runs it: no network, no profile state)
// ------------------------------------------------------------------------------------------

/// The DOM of the local file `page` after its scripts ran.
fn dump_dom(page: &Path) -> String {
    browser::dump_dom(&format!("file://{}", page.display()), &[])
}

/// Renders `input`, writes the page into `dir` and returns its DOM in the browser.
fn rendered_dom(input: &BacktestInput, dir: &Path, name: &str) -> String {
    let page = dir.join(name);
    fs::write(&page, backtest::render(input).html).unwrap();
    dump_dom(&page)
}

// ------------------------------------------------------------------------------------------
// A generated backtest
// ------------------------------------------------------------------------------------------

/// A detection before it is placed in a ledger: (epoch, pattern, customer, merchant).
type Detection = (u64, &'static str, String, String);

fn evidence(rng: &mut SplitMix64, pattern: &str) -> String {
    let e = match pattern {
        "PatId1" => Evidence::Upgrade {
            merchant_txns: 50_000 + rng.below(1000) as i64,
            customer_txns: rng.below(500) as i64,
            count_percentile: 100.0 + rng.below(100) as f64,
            weight: rng.below(100) as f64 / 8.0,
            weight_percentile: 3.25,
        },
        "PatId2" => Evidence::Child {
            customer_txns: 80 + rng.below(40) as i64,
            mean_amount: rng.below(2300) as f64 / 100.0,
        },
        _ => Evidence::DeiNeeded {
            female_customers: 101 + rng.below(50) as i64,
            male_customers: 160 + rng.below(50) as i64,
        },
    };
    e.to_json()
}

/// A ledger of `detections` in epoch order, sequence numbers from 0.
fn ledger(rng: &mut SplitMix64, name: &str, mut detections: Vec<Detection>) -> LedgerSet {
    detections.sort_by_key(|d| d.0);
    let rows = detections
        .into_iter()
        .enumerate()
        .map(|(seq, (epoch, pattern, customer, merchant))| LedgerRow {
            seq: seq as u64,
            epoch,
            pattern: txflow::model::Pattern::from_id(pattern).unwrap(),
            customer_name: customer,
            merchant_id: merchant,
            y_start_time: "2026-01-01 00:00:00.000".to_string(),
            detection_time: format!("2026-01-01 00:{:02}:00.000", epoch % 60),
            file_seq: Some(seq as u64 / 50),
            evidence: Some(evidence(rng, pattern)),
        })
        .collect();
    LedgerSet {
        name: name.to_string(),
        thresholds: format!("thresholds of {name}"),
        rows,
    }
}

fn random_detection(rng: &mut SplitMix64, epochs: u64) -> Detection {
    let (pattern, _) = PATTERNS[rng.below(3) as usize];
    let customer = match pattern {
        "PatId3" => String::new(),
        _ => format!("'C{}'", rng.below(40)),
    };
    (
        rng.below(epochs),
        pattern,
        customer,
        format!("'M{}'", rng.below(12)),
    )
}

/// A baseline of ~300 detections and three variants, each keeping part of it and adding
/// detections of its own (one variant named with markup); fraud labels on some pairs.
fn generated_backtest() -> BacktestInput {
    let mut rng = SplitMix64::new(0x5EED_0013);
    let epochs = 30;
    let unique = |rng: &mut SplitMix64, n: usize| {
        let mut seen = HashSet::new();
        (0..n)
            .map(|_| random_detection(rng, epochs))
            .filter(|d| seen.insert((d.1, d.2.clone(), d.3.clone())))
            .collect::<Vec<_>>()
    };
    let base = unique(&mut rng, 300);
    let mut variants = Vec::new();
    for (name, keep_one_in) in [("strict", 3), (HOSTILE_NAME, 10), ("loose.60", 1000)] {
        let mut rows: Vec<Detection> = base
            .iter()
            .filter(|_| rng.below(keep_one_in) != 0)
            .cloned()
            .collect();
        let have: HashSet<_> = rows
            .iter()
            .map(|d| (d.1, d.2.clone(), d.3.clone()))
            .collect();
        let extra = unique(&mut rng, 90);
        rows.extend(
            extra
                .into_iter()
                .filter(|d| !have.contains(&(d.1, d.2.clone(), d.3.clone()))),
        );
        if variants.is_empty() {
            // Early in the first variant's added sample.
            rows.push((
                0,
                "PatId2",
                HOSTILE_CUSTOMER.to_string(),
                "'M0'".to_string(),
            ));
        }
        variants.push(ledger(&mut rng, name, rows));
    }
    let fraud_pairs = (0..60)
        .map(|_| {
            (
                format!("'C{}'", rng.below(40)),
                format!("'M{}'", rng.below(12)),
            )
        })
        .collect();
    BacktestInput {
        // Epoch 7 was not committed (a gap): its detections count everywhere but per epoch.
        epochs: (0..epochs).filter(|e| *e != 7).collect(),
        baseline: ledger(&mut rng, "baseline", base),
        variants,
        labels: FraudLabels {
            fraud_pairs,
            fraud_rows: 71,
            clean_rows: 5_000,
            unknown_rows: 12,
        },
    }
}

// ------------------------------------------------------------------------------------------
// The figures, computed here from the rows
// ------------------------------------------------------------------------------------------

/// One ledger × pattern, as numbers (shares as fractions).
#[derive(Debug)]
struct Expected {
    counts: BTreeMap<&'static str, Option<u64>>,
    jaccard: f64,
    shares: Option<(Option<f64>, Option<f64>)>,
    added_sample: Vec<u64>,
    removed_sample: Vec<u64>,
}

fn of_pattern<'a>(set: &'a LedgerSet, pattern: &str) -> Vec<&'a LedgerRow> {
    set.rows
        .iter()
        .filter(|r| r.pattern.id() == pattern)
        .collect()
}

fn key(r: &LedgerRow) -> (String, String) {
    (r.customer_name.clone(), r.merchant_id.clone())
}

/// The first fifty rows of `from` whose detection `other` does not hold, as sequence numbers.
fn first_fifty_missing(from: &[&LedgerRow], other: &[&LedgerRow]) -> Vec<u64> {
    let mut out = Vec::new();
    for r in from {
        if out.len() == 50 {
            break;
        }
        if !other.iter().any(|o| key(o) == key(r)) {
            out.push(r.seq);
        }
    }
    out
}

fn expected(input: &BacktestInput, set: &LedgerSet, pattern: &str) -> Expected {
    let (mine, base) = (
        of_pattern(set, pattern),
        of_pattern(&input.baseline, pattern),
    );
    let mut added = 0;
    for r in &mine {
        if !base.iter().any(|b| key(b) == key(r)) {
            added += 1;
        }
    }
    let mut removed = 0;
    for b in &base {
        if !mine.iter().any(|r| key(r) == key(b)) {
            removed += 1;
        }
    }
    let common = mine.len() as u64 - added;
    let union = added + removed + common;
    let customers: HashSet<&str> = mine
        .iter()
        .map(|r| r.customer_name.as_str())
        .filter(|c| !c.is_empty())
        .collect();
    let merchants: HashSet<&str> = mine.iter().map(|r| r.merchant_id.as_str()).collect();
    let fraud = &input.labels.fraud_pairs;
    let (flagged, hits, labelled) = if pattern == "PatId3" {
        let fraud_merchants: HashSet<&str> = fraud.iter().map(|(_, m)| m.as_str()).collect();
        let hits = merchants
            .iter()
            .filter(|m| fraud_merchants.contains(*m))
            .count();
        (merchants.len(), hits, fraud_merchants.len())
    } else {
        let hits = mine.iter().filter(|r| fraud.contains(&key(r))).count();
        (mine.len(), hits, fraud.len())
    };
    let available = input.labels.fraud_rows + input.labels.clean_rows > 0;
    let share = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    let counts = [
        ("detections", Some(mine.len() as u64)),
        ("customers", Some(customers.len() as u64)),
        ("merchants", Some(merchants.len() as u64)),
        ("first_epoch", mine.iter().map(|r| r.epoch).min()),
        ("last_epoch", mine.iter().map(|r| r.epoch).max()),
        ("added", Some(added)),
        ("removed", Some(removed)),
    ];
    let mut counts: BTreeMap<_, _> = counts.into();
    if available {
        counts.insert("flagged", Some(flagged as u64));
        counts.insert("flagged_fraud", Some(hits as u64));
    }
    Expected {
        counts,
        jaccard: if union == 0 {
            1.0
        } else {
            common as f64 / union as f64
        },
        shares: available.then(|| (share(hits, flagged), share(hits, labelled))),
        added_sample: first_fifty_missing(&mine, &base),
        removed_sample: first_fifty_missing(&base, &mine),
    }
}

// ------------------------------------------------------------------------------------------
// Reading the DOM
// ------------------------------------------------------------------------------------------

/// The value of attribute `name` in a start tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// Text as the DOM serialiser escapes it, back to the characters.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// The element starting at `open` (e.g. `<tr data-row="1:PatId2"`) up to `close`.
fn element<'a>(dom: &'a str, open: &str, close: &str) -> &'a str {
    let start = dom
        .find(open)
        .unwrap_or_else(|| panic!("no {open} in the DOM"));
    let end = start + dom[start..].find(close).unwrap();
    &dom[start..end]
}

/// The `tag` elements (`td`, `span`) in `html` that carry `data-col`: name → (data-value,
/// text shown).
fn cells(html: &str, tag: &str) -> BTreeMap<String, (Option<String>, String)> {
    let mut out = BTreeMap::new();
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    for piece in html.split(&open).skip(1) {
        let tag_end = piece.find('>').unwrap();
        let tag = &piece[..tag_end];
        let text = &piece[tag_end + 1..piece.find(&close).unwrap()];
        if let Some(col) = attr(tag, "data-col") {
            let value = attr(tag, "data-value").map(str::to_string);
            out.insert(col.to_string(), (value, unescape(text)));
        }
    }
    out
}

/// The sequence numbers a sample table lists (empty when the page says "none").
fn sample_seqs(dom: &str, key: &str, kind: &str) -> Vec<u64> {
    let open = format!("<table data-sample=\"{key}:{kind}\"");
    if !dom.contains(&open) {
        return Vec::new();
    }
    let table = element(dom, &open, "</table>");
    table
        .split("<tr data-seq=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse().unwrap())
        .collect()
}

/// A fraction shown as text: a ratio with 3 decimals or a percentage with 1, within rounding.
fn assert_shown_fraction(what: &str, cell: &(Option<String>, String), expected: Option<f64>) {
    let (value, text) = cell;
    let Some(expected) = expected else {
        assert_eq!((value.as_deref(), text.as_str()), (Some(""), "–"), "{what}");
        return;
    };
    let value: f64 = value.as_deref().unwrap().parse().unwrap();
    assert!(
        (value - expected).abs() < 1e-9,
        "{what}: data-value {value}, expected {expected}"
    );
    let (shown, scale, half_step) = match text.strip_suffix(" %") {
        Some(percent) => (percent.parse::<f64>().unwrap(), 100.0, 0.05),
        None => (text.parse::<f64>().unwrap(), 1.0, 0.0005),
    };
    assert!(
        (shown - scale * expected).abs() <= half_step + 1e-9,
        "{what}: shows {text}, expected {expected}"
    );
}

fn check_row(dom: &str, i: usize, set: &LedgerSet, pattern: &str, want: &Expected) {
    let what = format!("{} {pattern}", set.name);
    let row = element(dom, &format!("<tr data-row=\"{i}:{pattern}\""), "</tr>");
    let shown = cells(row, "td");
    assert_eq!(shown["ledger"].1, set.name, "{what}: the name shown");
    for (col, count) in &want.counts {
        let (value, text) = &shown[*col];
        match count {
            Some(n) => {
                assert_eq!(
                    value.as_deref(),
                    Some(n.to_string().as_str()),
                    "{what} {col}"
                );
                assert_eq!(text.replace(',', ""), n.to_string(), "{what} {col}: text");
            }
            None => assert_eq!(
                (value.as_deref(), text.as_str()),
                (Some(""), "–"),
                "{what} {col}"
            ),
        }
    }
    assert_shown_fraction(
        &format!("{what} jaccard"),
        &shown["jaccard"],
        Some(want.jaccard),
    );
    match want.shares {
        Some((of_flagged, of_fraud)) => {
            assert_shown_fraction(
                &format!("{what} fraud share"),
                &shown["fraud_share_of_flagged"],
                of_flagged,
            );
            assert_shown_fraction(
                &format!("{what} flagged share"),
                &shown["flagged_share_of_fraud"],
                of_fraud,
            );
        }
        None => {
            assert_eq!(shown["labels"].1, "labels unavailable", "{what}");
            assert!(
                !shown.contains_key("flagged") && !shown.contains_key("fraud_share_of_flagged")
            );
        }
    }
    if i > 0 {
        let key = format!("{i}:{pattern}");
        assert_eq!(
            sample_seqs(dom, &key, "added"),
            want.added_sample,
            "{what}: added sample"
        );
        assert_eq!(
            sample_seqs(dom, &key, "removed"),
            want.removed_sample,
            "{what}: removed sample"
        );
    }
}

/// Every ledger × pattern row of the page against the figures computed here.
fn check_table(dom: &str, input: &BacktestInput) {
    assert_eq!(
        dom.matches("<tr data-row=").count(),
        3 * (1 + input.variants.len())
    );
    let sets = std::iter::once(&input.baseline).chain(&input.variants);
    for (i, set) in sets.enumerate() {
        for (pattern, _) in PATTERNS {
            check_row(dom, i, set, pattern, &expected(input, set, pattern));
        }
    }
}

// ------------------------------------------------------------------------------------------
// The tests
// ------------------------------------------------------------------------------------------

#[test]
fn the_rendered_report_shows_the_figures_of_the_ledgers() {
    let input = generated_backtest();
    // The input exercises what the table shows: changes both ways, full samples, fraud hits.
    let strict = expected(&input, &input.variants[0], "PatId2");
    assert!(strict.counts["added"] > Some(10) && strict.counts["removed"] > Some(10));
    assert!(strict.shares.is_some_and(|(s, _)| s > Some(0.0)));

    let tmp = tempfile::tempdir().unwrap();
    let dom = rendered_dom(&input, tmp.path(), "backtest-report.html");
    assert!(dom.contains("<title>txflow backtest report</title>"));
    check_table(&dom, &input);

    let counts = cells(element(&dom, "<p id=\"label-counts\"", "</p>"), "span");
    assert_eq!(counts["fraud_rows"].0.as_deref(), Some("71"));
    assert_eq!(counts["clean_rows"].1, "5,000");
    assert_eq!(counts["unknown_rows"].0.as_deref(), Some("12"));
    assert!(!dom.contains("id=\"labels-unavailable\""));

    // One chart per pattern, one line per distinct series of the ledgers.
    assert_eq!(dom.matches("<svg").count(), 3, "charts drawn");
    check_merged_series(&dom, &input);

    // A sample row shows its evidence as text.
    let first_added = expected(&input, &input.variants[0], "PatId2").added_sample[0];
    let row = &input.variants[0].rows[first_added as usize];
    let evidence: serde_json::Value =
        serde_json::from_str(row.evidence.as_deref().unwrap()).unwrap();
    // Rust's f64 Display and JavaScript's number to string agree on these (no exponent).
    let shown = format!(
        "customer_txns={}, mean_amount={}",
        evidence["customer_txns"].as_i64().unwrap(),
        evidence["mean_amount"].as_f64().unwrap()
    );
    assert!(dom.contains(&shown), "evidence {shown} not shown");

    // Names holding markup are shown as text: no element is made from them.
    assert!(
        !dom.contains("<img") && !dom.contains("<b>"),
        "markup in a name became an element"
    );
    assert_eq!(
        dom.matches("<script").count(),
        2,
        "only the page's own scripts"
    );
    assert!(dom
        .contains("x&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img id=\"injected\""));
    assert!(
        dom.contains("'C&lt;b&gt;bold&lt;/b&gt;&amp;amp;'"),
        "the hostile customer is shown"
    );
}

#[test]
fn without_labelled_rows_the_report_says_labels_are_unavailable() {
    let mut input = generated_backtest();
    input.labels = FraudLabels {
        fraud_pairs: BTreeSet::new(),
        fraud_rows: 0,
        clean_rows: 0,
        unknown_rows: 5_071,
    };
    let tmp = tempfile::tempdir().unwrap();
    let dom = rendered_dom(&input, tmp.path(), "unlabelled.html");
    assert!(
        dom.contains("id=\"labels-unavailable\""),
        "no 'labels unavailable' note"
    );
    assert!(!dom.contains(" %<"), "a share is shown without labels");
    check_table(&dom, &input);
}

/// A real replay with variants: the report it writes, loaded in the browser, shows the
/// figures of the store's ledgers, and label counts equal those the reference parser reads
/// from the chunks.
#[test]
fn a_replay_with_variants_writes_a_report_of_its_store() {
    use common::reference;
    use common::streams::{self, StreamOptions};
    use txflow::mechanism_y;
    use txflow::model::{Thresholds, Variant};

    // A wide stream (several detection files) with every pattern firing.
    let options = StreamOptions {
        wide_percent: 100,
        ..StreamOptions::default()
    };
    let stream = streams::random_stream(4_242, &options);
    let work = tempfile::tempdir().unwrap();
    let landing = streams::write_landing(work.path(), &stream);
    let base = stream.thresholds;
    let variants = vec![
        Variant {
            name: "child-strict".into(),
            thresholds: Thresholds {
                child_min_txns: base.child_min_txns + 2,
                ..base
            },
        },
        Variant {
            name: "all-loose".into(),
            thresholds: Thresholds {
                upgrade_min_merchant_txns: 0,
                child_min_txns: 1,
                dei_min_female_customers: 0,
                ..base
            },
        },
    ];
    let output = work.path().join("out");
    let mut opts = landing.replay_options(&output, &work.path().join("state.db"));
    let config = opts.state.clone();
    opts.thresholds = base;
    opts.mode = txflow::mechanism_y::Mode::Replay {
        range: Default::default(),
        variants: variants.clone(),
    };
    opts.timely.workers = 2;
    mechanism_y::run(&opts).unwrap();

    // What the page must show, from the store and from the chunks (not from the report).
    let mut store = txflow::sinks::state::open(&config).unwrap();
    let set = |name: &str, rows: Vec<LedgerRow>| LedgerSet {
        name: name.into(),
        thresholds: String::new(),
        rows,
    };
    let mut labels = FraudLabels::default();
    for (_, bytes) in &stream.chunks {
        for txn in reference::parse_chunk(bytes).accepted {
            match txn.fraud.as_str() {
                "1" => {
                    labels.fraud_rows += 1;
                    labels.fraud_pairs.insert((txn.customer, txn.merchant));
                }
                "0" => labels.clean_rows += 1,
                _ => labels.unknown_rows += 1,
            }
        }
    }
    let input = BacktestInput {
        epochs: store
            .epoch_rows()
            .unwrap()
            .iter()
            .map(|e| e.epoch)
            .collect(),
        baseline: set(
            "baseline",
            store
                .ledger(txflow::sinks::state::LedgerId::Baseline)
                .unwrap(),
        ),
        variants: variants
            .iter()
            .map(|v| {
                set(
                    &v.name,
                    store
                        .ledger(txflow::sinks::state::LedgerId::Variant(&v.name))
                        .unwrap(),
                )
            })
            .collect(),
        labels,
    };
    assert!(
        !input.baseline.rows.is_empty() && input.variants[1].rows.len() > input.baseline.rows.len()
    );
    assert!(input.labels.fraud_rows > 0 && input.labels.clean_rows > 0);

    let dom = dump_dom(&output.join("backtest-report.html"));
    check_table(&dom, &input);
    let counts = cells(element(&dom, "<p id=\"label-counts\"", "</p>"), "span");
    for (col, want) in [
        ("fraud_rows", input.labels.fraud_rows),
        ("clean_rows", input.labels.clean_rows),
        ("unknown_rows", input.labels.unknown_rows),
    ] {
        assert_eq!(
            counts[col].0.as_deref(),
            Some(want.to_string().as_str()),
            "{col}"
        );
    }
    for file in ["backtest-report.json", "variants.csv"] {
        assert!(output.join(file).is_file(), "{file} written");
    }
    // Each ledger's thresholds are a JSON object of the threshold options, as given.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output.join("backtest-report.json")).unwrap())
            .unwrap();
    let ledgers = report["ledgers"].as_array().unwrap();
    let wanted = [base.child_min_txns, base.child_min_txns + 2, 1];
    for (ledger, want) in ledgers.iter().zip(wanted) {
        assert_eq!(ledger["thresholds"]["child-min-txns"], want, "{ledger:#}");
    }
    let shown = format!("child-min-txns={}", base.child_min_txns + 2);
    assert!(dom.contains(&shown), "the page shows {shown}");
    check_lists(&output, &dom, &input);
    let merged = check_merged_series(&dom, &input);
    assert!(merged > 0, "no two ledgers share a series");
}

/// Each chart draws one line per distinct per-epoch series, named by every ledger that has
/// it (joined with " = "), in ledger order. Returns how many lines were merged away.
fn check_merged_series(dom: &str, input: &BacktestInput) -> usize {
    let mut merged = 0;
    for (pattern, _) in PATTERNS {
        let mut series: Vec<(Vec<u64>, Vec<&str>)> = Vec::new();
        for set in std::iter::once(&input.baseline).chain(&input.variants) {
            let rows = of_pattern(set, pattern);
            let counts: Vec<u64> = input
                .epochs
                .iter()
                .map(|e| rows.iter().filter(|r| r.epoch == *e).count() as u64)
                .collect();
            match series.iter_mut().find(|(c, _)| *c == counts) {
                Some((_, names)) => names.push(&set.name),
                None => series.push((counts, vec![&set.name])),
            }
        }
        let chart = element(
            dom,
            &format!("<div id=\"chart-{pattern}\""),
            "<div class=\"legend\"",
        );
        assert_eq!(
            chart.matches("<polyline").count(),
            series.len(),
            "{pattern}"
        );
        let legend = unescape(element(
            &dom[dom.find(chart).unwrap() + chart.len()..],
            "<div class=\"legend\"",
            "</div></div>",
        ));
        for (_, names) in &series {
            assert!(legend.contains(&names.join(" = ")), "{pattern}: {names:?}");
        }
        merged += 1 + input.variants.len() - series.len();
    }
    merged
}

/// A detection of a ledger: (pattern, customer, merchant).
fn detection(r: &LedgerRow) -> (String, String, String) {
    (
        r.pattern.id().to_string(),
        r.customer_name.clone(),
        r.merchant_id.clone(),
    )
}

/// The records of a list file (header checked, then dropped).
fn read_list(path: &Path) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let header: Vec<&str> = reader.headers().unwrap().iter().collect();
    assert_eq!(
        header,
        [
            "pattern_id",
            "action_type",
            "seq",
            "epoch",
            "customer_name",
            "merchant_id",
            "y_start_time",
            "detection_time",
            "file_seq",
            "evidence"
        ]
    );
    reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

/// Each variant's `added.csv` and `removed.csv` hold exactly the set differences of its
/// ledger and the baseline's, every detection once with its first row's fields and
/// evidence, and the page links them.
fn check_lists(output: &Path, dom: &str, input: &BacktestInput) {
    let base = &input.baseline.rows;
    let mut longest = 0;
    for set in &input.variants {
        for (kind, mine, theirs) in [("added", &set.rows, base), ("removed", base, &set.rows)] {
            let other: HashSet<_> = theirs.iter().map(detection).collect();
            let difference: HashSet<_> = mine
                .iter()
                .map(detection)
                .filter(|d| !other.contains(d))
                .collect();
            let path = output.join(format!("variants/{}/{kind}.csv", set.name));
            let records = read_list(&path);
            let listed: Vec<_> = records
                .iter()
                .map(|r| (r[0].clone(), r[4].clone(), r[5].clone()))
                .collect();
            let distinct: HashSet<_> = listed.iter().cloned().collect();
            assert_eq!(distinct.len(), listed.len(), "{path:?}: a detection twice");
            assert_eq!(distinct, difference, "{path:?}");
            longest = longest.max(records.len());
            // Each record is the detection's first row in the ledger, all of its fields.
            for record in &records {
                let seq: u64 = record[2].parse().unwrap();
                let row = mine.iter().find(|r| r.seq == seq).unwrap();
                let first = mine
                    .iter()
                    .find(|r| detection(r) == detection(row))
                    .unwrap();
                assert_eq!(first.seq, seq, "{path:?}: not the first row");
                let fields = [
                    row.pattern.action().to_string(),
                    row.epoch.to_string(),
                    row.y_start_time.clone(),
                    row.detection_time.clone(),
                    row.file_seq.map(|f| f.to_string()).unwrap_or_default(),
                    row.evidence.clone().unwrap(),
                ];
                let shown = [1, 3, 6, 7, 8, 9].map(|i| record[i].clone());
                assert_eq!(shown, fields, "{path:?}: seq {seq}");
            }
            let link = format!("href=\"variants/{}/{kind}.csv\"", set.name);
            assert!(dom.contains(&link), "the page links {link}");
        }
    }
    assert!(longest > 0, "every list is empty");
}
