//! Reading what the pipeline wrote: CSV rows of its output files, and the SPEC's time format.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Every record of a CSV file (header included), as strings.
pub fn read_csv(path: &Path) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// The bytes a rejects file's `raw` value stands for, by the rule in the README ("Rejects"):
/// `\x` and two hex digits is that byte, every other character its UTF-8 bytes.
pub fn unescape_raw(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let hex = rest
            .strip_prefix("\\x")
            .and_then(|r| r.get(..2))
            .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
        match hex {
            Some(h) => {
                out.push(u8::from_str_radix(h, 16).unwrap());
                rest = &rest[4..];
            }
            None => {
                out.extend_from_slice(c.to_string().as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

/// IST RFC 3339 with milliseconds, e.g. `2026-11-25T21:10:03.123+05:30` (SPEC §5).
pub fn is_ist_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() == 29
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && &s[23..] == "+05:30"
}

/// A ledger row without its two times: `(seq, epoch, patternId, ActionType, customerName,
/// MerchantId, file_seq)`, what every run of the same data must agree on.
pub type TimelessLedgerRow = (u64, u64, String, String, String, String, Option<u64>);

/// The ledger without its times.
pub fn timeless_ledger(rows: &[txflow::sinks::state::LedgerRow]) -> Vec<TimelessLedgerRow> {
    rows.iter()
        .map(|r| {
            (
                r.seq,
                r.epoch,
                r.pattern.id().to_string(),
                r.pattern.action().to_string(),
                r.customer_name.clone(),
                r.merchant_id.clone(),
                r.file_seq,
            )
        })
        .collect()
}

/// The progress rows without their commit time and digest: `(epoch, chunk_key, accepted,
/// rejected)`, what every run of the same data must agree on.
pub fn timeless_epochs(rows: &[txflow::sinks::state::EpochRow]) -> Vec<(u64, String, u64, u64)> {
    rows.iter()
        .map(|e| {
            (
                e.epoch,
                e.chunk_key.clone(),
                e.rows_accepted,
                e.rows_rejected,
            )
        })
        .collect()
}

/// Every file under `dir` at any depth (directories followed, not listed), sorted; none when
/// `dir` does not exist. The one directory walker of the tests.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// All files under `dir`, relative path → bytes.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            (path.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

/// All files under `dir`, relative path as text → bytes.
pub fn named_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    tree(dir)
        .into_iter()
        .map(|(path, bytes)| (path.display().to_string(), bytes))
        .collect()
}
