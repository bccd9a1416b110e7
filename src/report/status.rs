//! The status of a run built from its state store (the `epochs` and `detections` tables and
//! `run_meta`) and, when given, its output store (the `rejects/<chunk>.csv` objects):
//! [`Status::from_store`], the console's `/api/status` type; what a store does not record is `null`:
//! the run's output location, workers, processes, process and start time; recovered epochs,
//! the landing edge and, unless the stream ended, the lag; compute and commit times per epoch,
//! and the visible→committed latency. Throughput is derived from the epochs' `committed_at`
//! in live mode only (in a replay `committed_at` is the chunk's landing time, not Y's).
//! `previous_error` is the last run failure the store recorded (`run_failures`), if any;
//! `variants` the store's backtest or shadow variants, each with its thresholds and
//! detections per pattern.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Context, Error, Result};
use crate::objectstore::ObjectStore;
use crate::redact;
use crate::sinks::rejects::{reason_kind, rejects_key};
use crate::sinks::state::{EpochRow, LedgerId, LedgerRow, StateReader};
use crate::telemetry::status::{
    Detections, HistoryEntry, LatestDetection, PreviousError, Progress, Rejects, RunInfo, Status,
    Throughput, HISTORY_EPOCHS, LATEST_DETECTIONS,
};
use crate::thresholds::Thresholds;

/// The status JSON of the run recorded in `store` ([`Status::from_store`]).
pub fn status_from_store(
    store: &mut dyn StateReader,
    output: Option<&dyn ObjectStore>,
) -> Result<Value> {
    let status = Status::from_store(store, output)?;
    let json = |e: serde_json::Error| Error::internal(format!("the status JSON: {e}"));
    let mut value = serde_json::to_value(status).map_err(json)?;
    value["variants"] = serde_json::to_value(variants(store)?).map_err(json)?;
    Ok(value)
}

/// A backtest or shadow variant the store records, with its ledger's detections.
#[derive(Debug, Serialize)]
struct VariantStatus {
    name: String,
    /// As `run.thresholds` shows the baseline's.
    thresholds: Value,
    detections: Detections,
}

/// `variants`: the store's variants in their recorded order (empty when it has none).
fn variants(store: &mut dyn StateReader) -> Result<Vec<VariantStatus>> {
    let specs = store.variants().context("reading the variants")?;
    let mut variants = Vec::with_capacity(specs.len());
    for spec in specs {
        let ledger = store
            .ledger(LedgerId::Variant(&spec.name))
            .with_context(|| format!("reading the ledger of the variant {:?}", spec.name))?;
        variants.push(VariantStatus {
            thresholds: thresholds(&spec.thresholds),
            detections: Detections::of(ledger.iter()),
            name: spec.name,
        });
    }
    Ok(variants)
}

impl Status {
    /// The status of the run recorded in `store` (finished or still running), with rejects
    /// by reason read from `output` when given (otherwise `rejects.by_reason` is `null` and
    /// the total comes from the progress table). `run.state` (the store's location) is left
    /// `null`: the caller knows it.
    pub(crate) fn from_store(
        store: &mut dyn StateReader,
        output: Option<&dyn ObjectStore>,
    ) -> Result<Status> {
        let meta = store.run_meta().context("reading the run identity")?;
        let epochs = store.epoch_rows().context("reading the progress table")?;
        let ledger = store
            .ledger(LedgerId::Baseline)
            .context("reading the detection ledger")?;
        let ended = meta.contains_key("finished");
        let rejects = match output {
            Some(output) => rejects_by_reason(output, &epochs)?,
            None => Rejects {
                total: epochs.iter().map(|e| e.rows_rejected).sum(),
                by_reason: None,
            },
        };
        let live = meta.get("run.mode").is_some_and(|m| m == "live");
        let last_failure = store
            .last_failure()
            .context("reading the last run failure")?;
        Ok(Status {
            run: run_identity(&meta, output),
            state: if ended { "ended" } else { "running" },
            progress: progress(&epochs, ended),
            throughput: match live {
                true => throughput(&epochs),
                false => Throughput::unknown(),
            },
            detections: Detections::of(ledger.iter()),
            latest_detections: latest(&ledger),
            rejects,
            history: history(&epochs, &ledger),
            error: None,
            truncated: false,
            previous_error: last_failure.map(PreviousError::from),
            generated_at_ms: None,
            ready: None,
            state_detail: None,
            recent_events: None,
            variants: None,
        })
    }
}

/// `run`: the identity recorded in `run_meta` (locations as [`redact::url`] shows them);
/// what it does not hold is `null`.
fn run_identity(meta: &BTreeMap<String, String>, output: Option<&dyn ObjectStore>) -> RunInfo {
    let bound = |key: &str| meta.get(key).and_then(|v| v.parse::<u64>().ok());
    let range = match (bound("run.from"), bound("run.to")) {
        (Some(from), Some(to)) => Some([Some(from), Some(to)]),
        _ => None,
    };
    RunInfo {
        mode: meta.get("run.mode").cloned(),
        landing: meta.get("run.landing").map(|v| redact::url(v)),
        output: output.map(|o| o.describe()),
        state: None,
        range,
        thresholds: meta
            .get("run.thresholds")
            .map_or(Value::Null, |t| thresholds(t)),
        variants: Vec::new(),
        workers: None,
        processes: None,
        process: None,
        started_at: None,
    }
}

/// The thresholds as recorded (their canonical serde JSON, as `/api/status` shows them); a
/// record this version cannot read is kept as `{"text": …}`.
fn thresholds(recorded: &str) -> Value {
    Thresholds::from_json(recorded)
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| json!({ "text": recorded }))
}

/// `progress`: counts from the progress table; the lag is 0 once the stream ended (every
/// chunk committed) and unknown otherwise (the store does not know the landing edge).
fn progress(epochs: &[EpochRow], ended: bool) -> Progress {
    let last = epochs.last().map(|e| e.epoch);
    Progress {
        epochs_committed: epochs.len() as u64,
        epochs_recovered: None,
        restore: None,
        last_committed_epoch: last,
        landing_edge: if ended { last } else { None },
        lag_chunks: ended.then_some(0),
        lag_seconds: ended.then_some(0.0),
        rows_accepted: epochs.iter().map(|e| e.rows_accepted).sum(),
        rows_rejected: epochs.iter().map(|e| e.rows_rejected).sum(),
        last_commit_ms: None,
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp with an offset, as the store
/// records them (`2026-11-25T21:10:03.123+05:30`); `None` for any other text.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = text.get(19..)?;
    let (fraction, offset) = match rest.strip_prefix('.') {
        Some(r) => r.split_at(r.find(|c: char| !c.is_ascii_digit())?),
        None => ("", rest),
    };
    let millis = format!("{fraction:0<3}").get(..3)?.parse::<i64>().ok()?;
    let offset_min = match offset {
        "Z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 60 + o.get(4..6)?.parse::<i64>().ok()?)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + m - offset_min) * 60_000 + s * 1000 + millis)
}

/// `throughput` over the committed epochs (live mode): rows and epochs after the first
/// commit, divided by the time from the first commit to the last.
fn throughput(epochs: &[EpochRow]) -> Throughput {
    let (Some(first), Some(last)) = (epochs.first(), epochs.last()) else {
        return Throughput::unknown();
    };
    let span_ms = parse_rfc3339_ms(&last.committed_at)
        .zip(parse_rfc3339_ms(&first.committed_at))
        .map(|(l, f)| l - f)
        .filter(|ms| *ms > 0);
    let Some(span_ms) = span_ms else {
        return Throughput::unknown();
    };
    let rows: u64 = epochs[1..]
        .iter()
        .map(|e| e.rows_accepted + e.rows_rejected)
        .sum();
    Throughput::rate(rows, epochs.len() as u64 - 1, span_ms as f64 / 1000.0)
}

/// The last [`LATEST_DETECTIONS`] ledger rows, newest first, names as stored.
fn latest(ledger: &[LedgerRow]) -> Vec<LatestDetection> {
    let whole = |name: &str| name.to_string();
    let newest = ledger.iter().rev().take(LATEST_DETECTIONS);
    newest.map(|r| LatestDetection::of(r, whole)).collect()
}

/// `history`: the last [`HISTORY_EPOCHS`] epochs, oldest first, with their detections per
/// pattern; times the store does not record are `null`.
fn history(epochs: &[EpochRow], ledger: &[LedgerRow]) -> Vec<HistoryEntry> {
    let mut per_epoch: BTreeMap<u64, Vec<&LedgerRow>> = BTreeMap::new();
    for row in ledger {
        per_epoch.entry(row.epoch).or_default().push(row);
    }
    let skip = epochs.len().saturating_sub(HISTORY_EPOCHS);
    epochs[skip..]
        .iter()
        .map(|e| {
            let rows = per_epoch.get(&e.epoch).map_or(&[][..], Vec::as_slice);
            HistoryEntry {
                epoch: e.epoch,
                chunk: e.chunk_key.clone(),
                committed_at: e.committed_at.clone(),
                rows: e.rows_accepted,
                rejected: e.rows_rejected,
                compute_ms: None,
                commit_ms: None,
                visible_to_commit_ms: None,
                detections: Detections::of(rows.iter().copied()).by_pattern,
                committed_at_ms: None,
                visible_ms: None,
                lag_chunks: None,
            }
        })
        .collect()
}

/// `rejects` from the committed epochs' reject files (`rejects/<chunk>`; an epoch without
/// rejects has none), grouped by [`reason_kind`].
fn rejects_by_reason(output: &dyn ObjectStore, epochs: &[EpochRow]) -> Result<Rejects> {
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    for epoch in epochs.iter().filter(|e| e.rows_rejected > 0) {
        let key = rejects_key(&epoch.chunk_key);
        let object = output
            .get(&key)
            .with_context(|| format!("reading {key} from {}", output.describe()))?;
        let Some(object) = object else {
            tracing::warn!(file = %key, "rejects file missing: its rows are not counted by reason");
            continue;
        };
        let mut reader = csv::Reader::from_reader(&object.body[..]);
        for record in reader.records() {
            let record = record.map_err(|e| {
                crate::error::Error::input(format!("{key} in {}: {e}", output.describe()))
            })?;
            let kind = reason_kind(record.get(2).unwrap_or(""));
            *by_reason.entry(kind.to_string()).or_insert(0) += 1;
            total += 1;
        }
    }
    Ok(Rejects {
        total,
        by_reason: Some(by_reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_store_timestamps() {
        let ms = 1_795_000_000_123;
        assert_eq!(parse_rfc3339_ms(&crate::time::format_ist(ms)), Some(ms));
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_rfc3339_ms("1970-01-01T05:30:00.5+05:30"), Some(500));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn reads_recorded_thresholds() {
        let t = Thresholds {
            child_min_txns: u64::MAX,
            ..Thresholds::default()
        };
        let v = thresholds(&t.to_json());
        assert_eq!(v["upgrade-min-merchant-txns"], json!(50000));
        assert_eq!(v["upgrade-count-percentile"], json!("0.9"));
        assert_eq!(v["upgrade-weight-percentile"], json!("0.1"));
        assert_eq!(v["child-min-txns"], json!(u64::MAX));
        assert_eq!(v["child-max-avg-amount"], json!("23"));
        assert_eq!(v["dei-min-female-customers"], json!(100));
        let legacy = "PatId1 N>50000 n>=p0.9 W<=p0.1; PatId2 n>=80 avg<23; PatId3 F>100";
        assert_eq!(thresholds(legacy), json!({ "text": legacy }));
    }
}
