//! A from-scratch reference implementation of SPEC §2–§5, used only by the tests.
//!
//! Written for clarity, not speed, and independent of the crate: it has its own parser
//! (the `csv` crate only splits one line into fields) and, after every epoch `k`, recomputes
//! every pattern over all accepted transactions of chunks `0..=k` with plain maps and loops.
//! Only the `Thresholds` struct is borrowed from `txflow`.
//!
//! Exactness:
//! - amounts are micro-units summed in `i128`; `A/n < limit` is `A < limit·n`;
//! - the count percentile is compared exactly: with `x = p·(n−1)` and `p` in millionths,
//!   `n(c,m) >= percentile_cont` is `n·10^6 >= v_lo·10^6 + rem·(v_hi − v_lo)`, in `i128`;
//! - weights are `f64` (the mean of a key's rows is `sum / count`, `W(c,m)` is
//!   `sum / count` over the transactions), as the SPEC allows.
//!
//! Weight ties (SPEC §4): a weight comparison whose two sides differ by less than 1e-9
//! relatively (equality included) may be decided either way. The reference decides every
//! weight comparison as a three-valued answer (true / false / tie). A detection's *canonical*
//! first epoch decides ties as "holds" (`<=` inclusive); when a tie touched a detection's
//! decision, the reference also records every first epoch (and whether "never") that some
//! admissible choice of tie decisions would give: [`Expected::tie_leeway`]. [`Expected::check_ledger`]
//! accepts exactly the ledgers those choices allow. Our own `f64` rounding (~1e-16) is far
//! inside the 1e-9 band, so mathematically equal values are always classified as ties.
//!
//! Input the reference does not support (and the generator never writes): a quoted field
//! spanning several lines. Every record is one physical line, so line numbers are simply
//! physical line numbers (1-based, the header being line 1, blank lines counted but skipped).

use std::collections::{BTreeMap, BTreeSet};

use txflow::model::Thresholds;

/// The ten BankSim columns, all required in a chunk header.
pub const TRANSACTION_COLUMNS: [&str; 10] = [
    "step",
    "customer",
    "age",
    "gender",
    "zipcodeOri",
    "merchant",
    "zipMerchant",
    "category",
    "amount",
    "fraud",
];

/// The importance file's columns.
pub const IMPORTANCE_COLUMNS: [&str; 5] = ["Source", "Target", "Weight", "typeTrans", "fraud"];

pub const PAT_UPGRADE: &str = "PatId1";
pub const PAT_CHILD: &str = "PatId2";
pub const PAT_DEI: &str = "PatId3";

/// `UPGRADE`, `CHILD`, `DEI-NEEDED` for `PatId1..3`.
pub fn action_of(pattern_id: &str) -> &'static str {
    match pattern_id {
        PAT_UPGRADE => "UPGRADE",
        PAT_CHILD => "CHILD",
        PAT_DEI => "DEI-NEEDED",
        other => panic!("unknown pattern id {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// Lines and values
// ------------------------------------------------------------------------------------------

/// One physical line: its 1-based number and its text without the line terminator
/// (`\n`, or `\r\n`: one trailing `\r` is removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub number: u64,
    pub text: String,
}

/// The physical lines of `bytes`. A final line without a terminator is a line; the empty
/// string after a final terminator is not.
pub fn physical_lines(bytes: &[u8]) -> Vec<Line> {
    let text = std::str::from_utf8(bytes).expect("reference: input must be UTF-8");
    let mut lines = Vec::new();
    let mut pieces: Vec<&str> = text.split('\n').collect();
    if pieces.last() == Some(&"") {
        pieces.pop();
    }
    for (i, piece) in pieces.into_iter().enumerate() {
        let piece = piece.strip_suffix('\r').unwrap_or(piece);
        lines.push(Line {
            number: i as u64 + 1,
            text: piece.to_string(),
        });
    }
    lines
}

/// Splits one line into CSV fields (ordinary CSV double-quote rules) with the `csv` crate.
pub fn split_fields(line: &str) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let mut records = reader.records();
    let record = records
        .next()
        .expect("reference: a non-blank line is a record")
        .expect("reference: CSV error");
    assert!(
        records.next().is_none(),
        "reference: line {line:?} holds more than one record (unsupported)"
    );
    record.iter().map(str::to_string).collect()
}

/// Strips one enclosing pair of single quotes, if there is one.
pub fn unquote(value: &str) -> &str {
    if value.len() >= 2 && value.starts_with('\'') && value.ends_with('\'') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// The amount grammar: `digits[.digits]`, at most six fractional digits, below 10^12.
/// Returns micro-units.
pub fn parse_amount_micros(text: &str) -> Option<i64> {
    let (int_part, frac_part) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) {
        return None;
    }
    let mut frac_micros: i64 = 0;
    if let Some(frac) = frac_part {
        if !all_digits(frac) || frac.len() > 6 {
            return None;
        }
        let padded = format!("{frac:0<6}");
        frac_micros = padded.parse().unwrap();
    }
    let significant = int_part.trim_start_matches('0');
    if significant.len() > 12 {
        return None;
    }
    let units: i64 = if significant.is_empty() {
        0
    } else {
        significant.parse().unwrap()
    };
    if units >= 1_000_000_000_000 {
        return None;
    }
    Some(units * 1_000_000 + frac_micros)
}

/// A weight: an optional leading `-`, then the amount grammar.
pub fn parse_weight(text: &str) -> Option<f64> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let micros = parse_amount_micros(rest)? as f64 / 1e6;
    Some(if negative { -micros } else { micros })
}

// ------------------------------------------------------------------------------------------
// Chunks
// ------------------------------------------------------------------------------------------

/// One accepted transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefTxn {
    pub customer: String,
    pub merchant: String,
    pub category: String,
    /// `F`, `M`, `E` or `U`.
    pub gender: String,
    pub amount_micros: i64,
}

/// What the reference makes of one chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    pub accepted: Vec<RefTxn>,
    /// Line numbers of all records (non-blank lines after the header).
    pub record_lines: Vec<u64>,
    /// Line numbers of the rejected records (all records when the header is bad).
    pub rejected_lines: Vec<u64>,
    /// The first required column the header lacks (in `TRANSACTION_COLUMNS` order).
    pub missing_column: Option<String>,
}

fn column_index(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

/// Parses one chunk by the SPEC's rules.
pub fn parse_chunk(bytes: &[u8]) -> ChunkOutcome {
    let lines: Vec<Line> = physical_lines(bytes)
        .into_iter()
        .filter(|l| !l.text.is_empty())
        .collect();
    let mut outcome = ChunkOutcome::default();
    let Some((header_line, records)) = lines.split_first() else {
        outcome.missing_column = Some(TRANSACTION_COLUMNS[0].to_string());
        return outcome;
    };
    let header = split_fields(&header_line.text);
    outcome.record_lines = records.iter().map(|l| l.number).collect();

    let mut index = BTreeMap::new();
    for name in TRANSACTION_COLUMNS {
        match column_index(&header, name) {
            Some(i) => {
                index.insert(name, i);
            }
            None => {
                outcome.missing_column = Some(name.to_string());
                outcome.rejected_lines = outcome.record_lines.clone();
                return outcome;
            }
        }
    }

    for line in records {
        let fields = split_fields(&line.text);
        if fields.len() != header.len() {
            outcome.rejected_lines.push(line.number);
            continue;
        }
        let value = |name: &str| unquote(&fields[index[name]]).to_string();
        let customer = value("customer");
        let merchant = value("merchant");
        let category = value("category");
        let gender = value("gender");
        let amount = parse_amount_micros(&value("amount"));
        let ok = !customer.is_empty()
            && !merchant.is_empty()
            && !category.is_empty()
            && ["F", "M", "E", "U"].contains(&gender.as_str())
            && amount.is_some();
        if ok {
            outcome.accepted.push(RefTxn {
                customer,
                merchant,
                category,
                gender,
                amount_micros: amount.unwrap(),
            });
        } else {
            outcome.rejected_lines.push(line.number);
        }
    }
    outcome
}

// ------------------------------------------------------------------------------------------
// Importance
// ------------------------------------------------------------------------------------------

/// `(customer, merchant, typeTrans)`.
pub type WeightKey = (String, String, String);

/// What the reference makes of the importance file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportanceOutcome {
    /// The weight of each key: the arithmetic mean of its good rows (`sum / count`).
    pub weights: BTreeMap<WeightKey, f64>,
    pub record_lines: Vec<u64>,
    pub rejected_lines: Vec<u64>,
}

/// Parses the importance file; panics when its header lacks a column (the generator
/// never writes such a file).
pub fn parse_importance(bytes: &[u8]) -> ImportanceOutcome {
    let lines: Vec<Line> = physical_lines(bytes)
        .into_iter()
        .filter(|l| !l.text.is_empty())
        .collect();
    let mut outcome = ImportanceOutcome::default();
    let Some((header_line, records)) = lines.split_first() else {
        panic!("reference: empty importance file");
    };
    let header = split_fields(&header_line.text);
    let mut index = BTreeMap::new();
    for name in IMPORTANCE_COLUMNS {
        let i = column_index(&header, name)
            .unwrap_or_else(|| panic!("reference: importance header lacks {name}"));
        index.insert(name, i);
    }
    let mut sums: BTreeMap<WeightKey, (f64, u64)> = BTreeMap::new();
    for line in records {
        outcome.record_lines.push(line.number);
        let fields = split_fields(&line.text);
        if fields.len() != header.len() {
            outcome.rejected_lines.push(line.number);
            continue;
        }
        let value = |name: &str| unquote(&fields[index[name]]).to_string();
        let (source, target, kind) = (value("Source"), value("Target"), value("typeTrans"));
        let weight = parse_weight(&value("Weight"));
        match weight {
            Some(w) if !source.is_empty() && !target.is_empty() && !kind.is_empty() => {
                let entry = sums.entry((source, target, kind)).or_insert((0.0, 0));
                entry.0 += w;
                entry.1 += 1;
            }
            _ => outcome.rejected_lines.push(line.number),
        }
    }
    outcome.weights = sums
        .into_iter()
        .map(|(key, (sum, count))| (key, sum / count as f64))
        .collect();
    outcome
}

// ------------------------------------------------------------------------------------------
// Patterns
// ------------------------------------------------------------------------------------------

/// A three-valued decision: a weight tie may be decided either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Holds,
    Fails,
    Tie,
}

/// `a <= b` for weights, with the SPEC's tie band.
pub fn weight_le(a: f64, b: f64) -> Decision {
    if a == b || (a - b).abs() < 1e-9 * a.abs().max(b.abs()) {
        Decision::Tie
    } else if a < b {
        Decision::Holds
    } else {
        Decision::Fails
    }
}

/// `percentile_cont(p)` of ascending integers, scaled by 10^6 (exact).
pub fn percentile_cont_scaled(sorted: &[u64], p_millionths: u32) -> i128 {
    assert!(!sorted.is_empty());
    assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
    let x_scaled = p_millionths as i128 * (sorted.len() as i128 - 1);
    let lo = (x_scaled / 1_000_000) as usize;
    let rem = x_scaled % 1_000_000;
    if rem == 0 {
        return sorted[lo] as i128 * 1_000_000;
    }
    let (v_lo, v_hi) = (sorted[lo] as i128, sorted[lo + 1] as i128);
    v_lo * 1_000_000 + rem * (v_hi - v_lo)
}

/// `percentile_cont(p)` of ascending floats (the position `p·(n−1)` is found exactly).
pub fn percentile_cont_f64(sorted: &[f64], p_millionths: u32) -> f64 {
    assert!(!sorted.is_empty());
    assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
    let x_scaled = p_millionths as u64 * (sorted.len() as u64 - 1);
    let lo = (x_scaled / 1_000_000) as usize;
    let rem = x_scaled % 1_000_000;
    if rem == 0 {
        return sorted[lo];
    }
    let (v_lo, v_hi) = (sorted[lo], sorted[lo + 1]);
    v_lo + (rem as f64 / 1e6) * (v_hi - v_lo)
}

/// `(patternId, MerchantId, customerName)` — the SPEC's within-epoch order.
pub type DetKey = (String, String, String);

/// Everything the patterns need about one `(customer, merchant)` pair.
#[derive(Default)]
struct PairStats {
    n: u64,
    amount_micros: i128,
    weight_sum: f64,
    weight_count: u64,
}

/// Evaluates every pattern over `txns` (all accepted transactions so far). Returns the keys
/// whose condition holds or is a tie; every other key fails.
pub fn evaluate(
    txns: &[RefTxn],
    weights: &BTreeMap<WeightKey, f64>,
    t: &Thresholds,
) -> BTreeMap<DetKey, Decision> {
    // merchant -> customer -> stats
    let mut pairs: BTreeMap<&str, BTreeMap<&str, PairStats>> = BTreeMap::new();
    // merchant -> (customers seen with F, customers seen with M)
    let mut genders: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
    for txn in txns {
        let stats = pairs
            .entry(&txn.merchant)
            .or_default()
            .entry(&txn.customer)
            .or_default();
        stats.n += 1;
        stats.amount_micros += txn.amount_micros as i128;
        let key = (
            txn.customer.clone(),
            txn.merchant.clone(),
            txn.category.clone(),
        );
        if let Some(w) = weights.get(&key) {
            stats.weight_sum += w;
            stats.weight_count += 1;
        }
        let sets = genders.entry(&txn.merchant).or_default();
        match txn.gender.as_str() {
            "F" => {
                sets.0.insert(&txn.customer);
            }
            "M" => {
                sets.1.insert(&txn.customer);
            }
            _ => {}
        }
    }

    let mut out = BTreeMap::new();
    let key = |p: &str, m: &str, c: &str| (p.to_string(), m.to_string(), c.to_string());

    // PatId1
    for (merchant, customers) in &pairs {
        let n_m: u64 = customers.values().map(|s| s.n).sum();
        if n_m <= t.upgrade_min_merchant_txns {
            continue;
        }
        let mut counts: Vec<u64> = customers.values().map(|s| s.n).collect();
        counts.sort();
        let count_pct = percentile_cont_scaled(&counts, t.upgrade_count_percentile.millionths);
        let w_of =
            |s: &PairStats| (s.weight_count > 0).then(|| s.weight_sum / s.weight_count as f64);
        let mut ws: Vec<f64> = customers.values().filter_map(w_of).collect();
        ws.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let weight_pct = (!ws.is_empty())
            .then(|| percentile_cont_f64(&ws, t.upgrade_weight_percentile.millionths));
        for (customer, stats) in customers {
            if (stats.n as i128) * 1_000_000 < count_pct {
                continue;
            }
            let (Some(w), Some(weight_pct)) = (w_of(stats), weight_pct) else {
                continue;
            };
            let decision = weight_le(w, weight_pct);
            if decision != Decision::Fails {
                out.insert(key(PAT_UPGRADE, merchant, customer), decision);
            }
        }
    }

    // PatId2
    for (merchant, customers) in &pairs {
        for (customer, stats) in customers {
            if stats.n >= t.child_min_txns
                && stats.amount_micros < t.child_max_avg_amount as i128 * stats.n as i128
            {
                out.insert(key(PAT_CHILD, merchant, customer), Decision::Holds);
            }
        }
    }

    // PatId3
    for (merchant, (female, male)) in &genders {
        let (f, m) = (female.len() as u64, male.len() as u64);
        if f < m && f > t.dei_min_female_customers {
            out.insert(key(PAT_DEI, merchant, ""), Decision::Holds);
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// The expected outcome of a whole stream
// ------------------------------------------------------------------------------------------

/// For a detection whose emission a weight tie touched: every first epoch some admissible
/// choice of tie decisions gives, and whether "never emitted" is admissible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TieLeeway {
    pub first_epochs: BTreeSet<u64>,
    pub may_never: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// `(epoch, pattern_id, customer, merchant)` in SPEC order, ties decided as "holds".
    pub detections: Vec<(u64, String, String, String)>,
    /// Detections (`(pattern_id, customer, merchant)`) whose emission a tie touched.
    pub tie_leeway: BTreeMap<(String, String, String), TieLeeway>,
    /// `N(m)` after the last epoch.
    pub counts: BTreeMap<String, i64>,
    /// `(epoch, accepted, rejected)` per chunk.
    pub epochs: Vec<(u64, u64, u64)>,
    /// Per chunk, in order: the parse outcome.
    pub chunks: Vec<(u64, ChunkOutcome)>,
    pub importance: ImportanceOutcome,
}

/// Sort key of a detection tuple `(epoch, pattern, customer, merchant)`: by epoch, then
/// `(pattern, merchant, customer)` bytewise.
/// A ledger as the `(epoch, pattern_id, customer, merchant)` identities the reference speaks of.
pub fn ledger_identities(
    rows: &[txflow::sinks::state::LedgerRow],
) -> Vec<(u64, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r.epoch,
                r.pattern_id.clone(),
                r.customer_name.clone(),
                r.merchant_id.clone(),
            )
        })
        .collect()
}

pub fn spec_order(d: &(u64, String, String, String)) -> (u64, &[u8], &[u8], &[u8]) {
    (d.0, d.1.as_bytes(), d.3.as_bytes(), d.2.as_bytes())
}

/// Computes the expected outcome of `chunks` (ascending chunk indices).
pub fn expected(chunks: &[(u64, Vec<u8>)], importance: &[u8], t: &Thresholds) -> Expected {
    assert!(chunks.windows(2).all(|w| w[0].0 < w[1].0));
    let importance = parse_importance(importance);
    let mut all_txns: Vec<RefTxn> = Vec::new();
    let mut out = Expected::default();
    // detection key -> decision per epoch (absent = fails)
    let mut history: BTreeMap<DetKey, BTreeMap<u64, Decision>> = BTreeMap::new();
    let epochs: Vec<u64> = chunks.iter().map(|(k, _)| *k).collect();

    for (k, bytes) in chunks {
        let outcome = parse_chunk(bytes);
        all_txns.extend(outcome.accepted.iter().cloned());
        out.epochs.push((
            *k,
            outcome.accepted.len() as u64,
            outcome.rejected_lines.len() as u64,
        ));
        for (key, decision) in evaluate(&all_txns, &importance.weights, t) {
            history.entry(key).or_default().insert(*k, decision);
        }
        out.chunks.push((*k, outcome));
    }

    for ((pattern, merchant, customer), per_epoch) in history {
        let decision_at = |k: u64| per_epoch.get(&k).copied().unwrap_or(Decision::Fails);
        let canonical = epochs
            .iter()
            .copied()
            .find(|&k| decision_at(k) != Decision::Fails);
        // Every first epoch some choice of tie decisions gives.
        let mut first_epochs = BTreeSet::new();
        let mut possibly_unemitted = true;
        for &k in &epochs {
            let d = decision_at(k);
            if possibly_unemitted && d != Decision::Fails {
                first_epochs.insert(k);
            }
            if d == Decision::Holds {
                possibly_unemitted = false;
            }
        }
        let leeway = TieLeeway {
            first_epochs,
            may_never: possibly_unemitted,
        };
        if let Some(k) = canonical {
            out.detections
                .push((k, pattern.clone(), customer.clone(), merchant.clone()));
        }
        let exact = TieLeeway {
            first_epochs: canonical.into_iter().collect(),
            may_never: canonical.is_none(),
        };
        if leeway != exact {
            out.tie_leeway.insert((pattern, customer, merchant), leeway);
        }
    }
    out.detections
        .sort_by(|a, b| spec_order(a).cmp(&spec_order(b)));

    for txn in &all_txns {
        *out.counts.entry(txn.merchant.clone()).or_insert(0) += 1;
    }
    out.importance = importance;
    out
}

/// How a checked ledger used the tie leeway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TieReport {
    /// Tie-touched detections whose emission differs from the canonical ("ties hold") one.
    pub decided_other_way: usize,
    pub tie_touched: usize,
}

impl Expected {
    /// Checks a ledger `(epoch, pattern_id, customer, merchant)` in sequence order against the
    /// expectation: SPEC order, each detection once, and every detection at its expected first
    /// epoch (any admissible one for tie-touched detections).
    pub fn check_ledger(&self, got: &[(u64, String, String, String)]) -> Result<TieReport, String> {
        let mut problems = Vec::new();
        for (i, pair) in got.windows(2).enumerate() {
            if spec_order(&pair[0]) >= spec_order(&pair[1]) {
                problems.push(format!(
                    "ledger rows {i} and {} out of SPEC order: {:?} then {:?}",
                    i + 1,
                    pair[0],
                    pair[1]
                ));
            }
        }
        let canonical: BTreeMap<(String, String, String), u64> = self
            .detections
            .iter()
            .map(|(k, p, c, m)| ((p.clone(), c.clone(), m.clone()), *k))
            .collect();
        let mut seen = BTreeSet::new();
        let mut report = TieReport {
            tie_touched: self.tie_leeway.len(),
            ..TieReport::default()
        };
        for (k, p, c, m) in got {
            let id = (p.clone(), c.clone(), m.clone());
            if !seen.insert(id.clone()) {
                problems.push(format!("detection {id:?} emitted twice"));
                continue;
            }
            if let Some(leeway) = self.tie_leeway.get(&id) {
                if !leeway.first_epochs.contains(k) {
                    problems.push(format!(
                        "tie-touched detection {id:?} at epoch {k}, admissible {:?}",
                        leeway.first_epochs
                    ));
                }
                if canonical.get(&id) != Some(k) {
                    report.decided_other_way += 1;
                }
            } else {
                match canonical.get(&id) {
                    Some(e) if e == k => {}
                    Some(e) => problems.push(format!(
                        "detection {id:?} at epoch {k}, expected at epoch {e}"
                    )),
                    None => problems.push(format!("unexpected detection {id:?} at epoch {k}")),
                }
            }
        }
        for (id, k) in &canonical {
            let required = self.tie_leeway.get(id).is_none_or(|l| !l.may_never);
            if required && !seen.contains(id) {
                problems.push(format!("missing detection {id:?} (expected at epoch {k})"));
            }
        }
        // (A tie-touched detection always has a canonical epoch: its first non-failing one.)
        for (id, leeway) in &self.tie_leeway {
            if leeway.may_never && !seen.contains(id) {
                report.decided_other_way += 1;
            }
        }
        if problems.is_empty() {
            Ok(report)
        } else {
            Err(problems.join("\n"))
        }
    }

    pub fn total_accepted(&self) -> u64 {
        self.epochs.iter().map(|e| e.1).sum()
    }

    pub fn total_rejected(&self) -> u64 {
        self.epochs.iter().map(|e| e.2).sum()
    }
}
