//! A from-scratch reference implementation of SPEC §2–§5, used only by the tests.
//!
//! Written for clarity, not speed, and independent of the crate: it has its own framer and
//! field splitter (SPEC §2.1, written from the SPEC text alone: lines first, then records by
//! an explicit quote state machine, see [`frame_records`]) and, after every epoch `k`, recomputes
//! every pattern over all accepted transactions of chunks `0..=k` with plain maps and loops.
//! Only the `Thresholds` struct is borrowed from `txflow`.
//!
//! Exactness:
//! - amounts are micro-units summed in `i128`; `A/n < limit` is `A < limit·n`;
//! - count thresholds (any `u64`) are compared with the counts in `u128`, so a threshold no
//!   count reaches (up to 2^64−1) is never passed;
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
//! Framing (SPEC §2.1, as amended 2026-12-07): LF, CRLF and a lone CR each end a line; line
//! numbers are 1-based and count every line, blank ones included; the header is the first
//! non-blank line, alone; a quoted field may hold `,`, `""` and line breaks and ends only at a
//! `"` followed by `,`, a line terminator or the end of the data (a `"` followed by anything
//! else makes the field malformed); a record spanning several lines without the header's
//! field count or longer than 1 MiB, a record holding a malformed quoted field, or a quote open
//! at the end of the data is an `unbalanced quote` reject of its first line, and framing
//! resumes at the next line. Any bytes are accepted: values are decoded lossily where text is
//! needed. Names (customer, merchant, category; Source, Target, typeTrans) must be "text"
//! (SPEC §2.1): a name that is not UTF-8 is a bad value, as is one holding a control
//! character (U+0000–U+001F, U+007F; U+0080–U+009F are not in the SPEC's range and are
//! accepted) or longer than 256 bytes. Unvalidated columns may hold any bytes.
//! Not modelled: a UTF-8 byte order mark before the header (the SPEC does not mention one;
//! it would be part of the first header name here).

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
// Lines (SPEC §2.1)
// ------------------------------------------------------------------------------------------

/// One line of the input: its 1-based number, its bytes without the terminator, and the
/// terminator itself (`\n`, `\r\n`, `\r`, or empty for a last line that has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub number: u64,
    /// The line's bytes, decoded lossily (for messages and comparisons with text).
    pub text: String,
    pub bytes: Vec<u8>,
    pub terminator: Vec<u8>,
    /// Byte offset of the line's first byte in the input.
    pub start: usize,
    /// Byte offset just past the line's last byte (before the terminator).
    pub end: usize,
}

impl Line {
    /// A blank line: no bytes before its terminator.
    pub fn is_blank(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The lines of `bytes`: LF, CRLF and a lone CR each end a line (`\r\n` is one terminator).
/// A last line without a terminator is a line; nothing after a final terminator is not.
/// Any bytes are accepted (non-UTF-8 included).
pub fn physical_lines(bytes: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut push = |start: usize, end: usize, term_end: usize| {
        lines.push(Line {
            number: lines.len() as u64 + 1,
            text: String::from_utf8_lossy(&bytes[start..end]).into_owned(),
            bytes: bytes[start..end].to_vec(),
            terminator: bytes[end..term_end].to_vec(),
            start,
            end,
        });
    };
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                push(start, i, i + 1);
                i += 1;
                start = i;
            }
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                push(start, i, i + 2);
                i += 2;
                start = i;
            }
            b'\r' => {
                push(start, i, i + 1);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        push(start, bytes.len(), bytes.len());
    }
    lines
}

// ------------------------------------------------------------------------------------------
// Fields and records (SPEC §2.1): an explicit quote state machine
// ------------------------------------------------------------------------------------------

/// Where the field splitter is within the current field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum QuoteState {
    /// Nothing of the current field read yet.
    FieldStart,
    /// In a field that did not start with `"`: every byte but `,` is the field's.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Inside a quoted field, just after a `"`: either the first half of `""` or the
    /// closing quote.
    QuoteInQuoted,
    /// After a quoted field's `"` that was followed by neither `"` nor `,` (a malformed field;
    /// only a header keeps it): bytes up to the next `,` are taken literally.
    AfterQuoted,
}

/// Splits fields byte by byte; lines are fed one at a time.
struct FieldSplitter {
    state: QuoteState,
    fields: Vec<Vec<u8>>,
    field: Vec<u8>,
    /// A quoted field's `"` was followed by something other than `"`, `,` or the line's end.
    malformed: bool,
}

impl FieldSplitter {
    fn new() -> FieldSplitter {
        FieldSplitter {
            state: QuoteState::FieldStart,
            fields: Vec::new(),
            field: Vec::new(),
            malformed: false,
        }
    }

    fn end_field(&mut self) {
        self.fields.push(std::mem::take(&mut self.field));
        self.state = QuoteState::FieldStart;
    }

    /// Feeds one line's bytes (without terminator).
    fn feed_line(&mut self, line: &[u8]) {
        use QuoteState::*;
        for &b in line {
            match (self.state, b) {
                (FieldStart, b'"') => self.state = Quoted,
                (FieldStart | Unquoted | AfterQuoted, b',') => self.end_field(),
                (FieldStart | Unquoted, _) => {
                    self.field.push(b);
                    self.state = Unquoted;
                }
                (Quoted, b'"') => self.state = QuoteInQuoted,
                (Quoted, _) => self.field.push(b),
                (QuoteInQuoted, b'"') => {
                    self.field.push(b'"');
                    self.state = Quoted;
                }
                (QuoteInQuoted, b',') => self.end_field(),
                (QuoteInQuoted | AfterQuoted, _) => {
                    self.malformed = true;
                    self.field.push(b);
                    self.state = AfterQuoted;
                }
            }
        }
    }

    /// Whether a quoted field is open (the line break belongs to the field).
    fn in_quotes(&self) -> bool {
        self.state == QuoteState::Quoted
    }

    /// Ends the record (closing an open quoted field, if any) and returns its fields.
    fn finish(mut self) -> Vec<Vec<u8>> {
        self.end_field();
        self.fields
    }
}

/// The fields of one line on its own (a quote left open at its end closes there, and bytes
/// after a closing quote stay in the field): how the header is split.
pub fn split_line(line: &[u8]) -> Vec<Vec<u8>> {
    let mut splitter = FieldSplitter::new();
    splitter.feed_line(line);
    splitter.finish()
}

/// Splits one line into fields, decoded lossily.
pub fn split_fields(line: &str) -> Vec<String> {
    split_line(line.as_bytes())
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

/// What a framed record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefFields {
    /// A record (one line, any field count; or several lines with the header's field count).
    Fields(Vec<Vec<u8>>),
    /// The first line of a record that spans several lines without the header's field count
    /// or over [`MAX_RECORD_BYTES`], of a record holding a malformed quoted field, or of a
    /// record whose quote is still open at the end of the data: rejected alone (`unbalanced
    /// quote`); framing resumes at the next line.
    Unbalanced,
}

/// One item the framer yields after the header: everything Y counts (accepted + rejected)
/// and X copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    /// The line number of the record's first line.
    pub line: u64,
    /// The record's bytes without its final terminator (for `Unbalanced`: the first line).
    pub raw: Vec<u8>,
    /// The final terminator (empty when the data ends without one).
    pub terminator: Vec<u8>,
    pub fields: RefFields,
}

impl RefRecord {
    /// The bytes X copies into a chunk: the raw bytes and the terminator (`\n` when none).
    pub fn copied(&self) -> Vec<u8> {
        let mut out = self.raw.clone();
        if self.terminator.is_empty() {
            out.push(b'\n');
        } else {
            out.extend_from_slice(&self.terminator);
        }
        out
    }
}

/// A whole input as the SPEC frames it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Framed {
    /// The header line (the first non-blank line), if any.
    pub header: Option<Line>,
    /// The header's fields (its own line only).
    pub header_fields: Vec<Vec<u8>>,
    /// Every record after the header, in order.
    pub records: Vec<RefRecord>,
}

/// The longest a record spanning several lines may be, without its final terminator
/// (SPEC §2.1: 1 MiB).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Reads the record that starts at `lines[first]`: its fields and the index of its last line,
/// or `None` when it holds a malformed quoted field or a quote is still open at the end of the
/// data.
fn read_record(lines: &[Line], first: usize) -> Option<(Vec<Vec<u8>>, usize)> {
    let mut splitter = FieldSplitter::new();
    let mut j = first;
    loop {
        splitter.feed_line(&lines[j].bytes);
        if splitter.malformed {
            return None;
        }
        if !splitter.in_quotes() {
            return Some((splitter.finish(), j));
        }
        if j + 1 == lines.len() {
            return None;
        }
        // The line break is part of the quoted field, byte for byte.
        splitter.field.extend_from_slice(&lines[j].terminator);
        j += 1;
    }
}

/// Frames `bytes` by SPEC §2.1: header (first non-blank line, one line), then records;
/// blank lines are skipped; resynchronisation after an unbalanced quote costs one line.
pub fn frame_records(bytes: &[u8]) -> Framed {
    let lines = physical_lines(bytes);
    let mut framed = Framed::default();
    let mut i = 0;
    while i < lines.len() && lines[i].is_blank() {
        i += 1;
    }
    let Some(header) = lines.get(i) else {
        return framed;
    };
    // A UTF-8 byte-order mark before the header is not part of the first column's name.
    let header_bytes = header
        .bytes
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .filter(|_| header.start == 0)
        .unwrap_or(&header.bytes);
    framed.header_fields = split_line(header_bytes);
    framed.header = Some(header.clone());
    i += 1;
    while i < lines.len() {
        let line = &lines[i];
        if line.is_blank() {
            i += 1;
            continue;
        }
        let one_line = |last: usize| last == i;
        let fits = |last: usize, fields: &Vec<Vec<u8>>| {
            fields.len() == framed.header_fields.len()
                && lines[last].end - line.start <= MAX_RECORD_BYTES
        };
        let record = match read_record(&lines, i) {
            Some((fields, last)) if one_line(last) || fits(last, &fields) => {
                let record = RefRecord {
                    line: line.number,
                    raw: bytes[line.start..lines[last].end].to_vec(),
                    terminator: lines[last].terminator.clone(),
                    fields: RefFields::Fields(fields),
                };
                i = last + 1;
                record
            }
            _ => {
                i += 1;
                RefRecord {
                    line: line.number,
                    raw: line.bytes.clone(),
                    terminator: line.terminator.clone(),
                    fields: RefFields::Unbalanced,
                }
            }
        };
        framed.records.push(record);
    }
    framed
}

// ------------------------------------------------------------------------------------------
// Values
// ------------------------------------------------------------------------------------------

/// The longest a name may be, in bytes (names longer are rejected: `name too long`).
pub const MAX_NAME_BYTES: usize = 256;

/// Whether a name value is acceptable text: non-empty, at most [`MAX_NAME_BYTES`] bytes, no
/// control character (U+0000–U+001F, U+007F). (A name must also be UTF-8: the callers check
/// the raw bytes.)
pub fn is_good_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_NAME_BYTES
        && !value.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}')
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
    /// The `fraud` value, one pair of single quotes stripped (`1`, `0`, or anything else:
    /// unknown).
    pub fraud: String,
}

/// Why the reference rejects a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RejectReason {
    /// A frame that is not a record ([`RefFields::Unbalanced`]; the reject is its first line
    /// alone).
    UnbalancedQuote,
    /// A (single-line) record of the wrong field count.
    FieldCount { expected: usize, found: usize },
    /// The header lacks this column: every record is rejected.
    MissingColumn(String),
    /// A value is bad: the column's name.
    BadValue(&'static str),
}

/// One rejected record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefReject {
    pub line: u64,
    /// The record's bytes without its final terminator (the first line for an unbalanced quote).
    pub raw: Vec<u8>,
    pub reason: RejectReason,
}

/// What the reference makes of one chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkOutcome {
    pub accepted: Vec<RefTxn>,
    /// Line numbers of all records Y counts (accepted + rejected, unbalanced-quote lines
    /// included), in order.
    pub record_lines: Vec<u64>,
    /// Line numbers of the rejected records (all records when the header is bad).
    pub rejected_lines: Vec<u64>,
    /// The rejected records, in line order.
    pub rejects: Vec<RefReject>,
    /// The first required column the header lacks (in `TRANSACTION_COLUMNS` order).
    pub missing_column: Option<String>,
}

impl ChunkOutcome {
    fn reject(&mut self, record: &RefRecord, reason: RejectReason) {
        self.rejected_lines.push(record.line);
        self.rejects.push(RefReject {
            line: record.line,
            raw: record.raw.clone(),
            reason,
        });
    }
}

fn column_index(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses one chunk by the SPEC's rules.
pub fn parse_chunk(bytes: &[u8]) -> ChunkOutcome {
    let framed = frame_records(bytes);
    let mut outcome = ChunkOutcome::default();
    if framed.header.is_none() {
        outcome.missing_column = Some(TRANSACTION_COLUMNS[0].to_string());
        return outcome;
    }
    let header: Vec<String> = framed.header_fields.iter().map(|f| lossy(f)).collect();
    outcome.record_lines = framed.records.iter().map(|r| r.line).collect();

    let mut index = BTreeMap::new();
    for name in TRANSACTION_COLUMNS {
        match column_index(&header, name) {
            Some(i) => {
                index.insert(name, i);
            }
            None => {
                outcome.missing_column = Some(name.to_string());
                for record in &framed.records {
                    outcome.reject(record, RejectReason::MissingColumn(name.to_string()));
                }
                return outcome;
            }
        }
    }

    for record in &framed.records {
        let fields = match &record.fields {
            RefFields::Unbalanced => {
                outcome.reject(record, RejectReason::UnbalancedQuote);
                continue;
            }
            RefFields::Fields(fields) if fields.len() != header.len() => {
                let reason = RejectReason::FieldCount {
                    expected: header.len(),
                    found: fields.len(),
                };
                outcome.reject(record, reason);
                continue;
            }
            RefFields::Fields(fields) => fields,
        };
        let value = |name: &str| unquote(&lossy(&fields[index[name]])).to_string();
        let text = |name: &str| std::str::from_utf8(&fields[index[name]]).is_ok();
        let customer = value("customer");
        let merchant = value("merchant");
        let category = value("category");
        let gender = value("gender");
        let amount = parse_amount_micros(&value("amount"));
        let problem = if !text("customer") || !is_good_name(&customer) {
            Some("customer")
        } else if !text("merchant") || !is_good_name(&merchant) {
            Some("merchant")
        } else if !text("category") || !is_good_name(&category) {
            Some("category")
        } else if !["F", "M", "E", "U"].contains(&gender.as_str()) {
            Some("gender")
        } else if amount.is_none() {
            Some("amount")
        } else {
            None
        };
        match problem {
            Some(column) => outcome.reject(record, RejectReason::BadValue(column)),
            None => outcome.accepted.push(RefTxn {
                customer,
                merchant,
                category,
                gender,
                amount_micros: amount.unwrap(),
                fraud: value("fraud"),
            }),
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
    /// The rejected records, in line order.
    pub rejects: Vec<RefReject>,
}

/// Parses the importance file; panics when its header lacks a column (the generator
/// never writes such a file).
pub fn parse_importance(bytes: &[u8]) -> ImportanceOutcome {
    let framed = frame_records(bytes);
    let mut outcome = ImportanceOutcome::default();
    assert!(framed.header.is_some(), "reference: empty importance file");
    let header: Vec<String> = framed.header_fields.iter().map(|f| lossy(f)).collect();
    let mut index = BTreeMap::new();
    for name in IMPORTANCE_COLUMNS {
        let i = column_index(&header, name)
            .unwrap_or_else(|| panic!("reference: importance header lacks {name}"));
        index.insert(name, i);
    }
    let mut sums: BTreeMap<WeightKey, (f64, u64)> = BTreeMap::new();
    for record in &framed.records {
        outcome.record_lines.push(record.line);
        let mut reject = |reason: RejectReason| {
            outcome.rejected_lines.push(record.line);
            outcome.rejects.push(RefReject {
                line: record.line,
                raw: record.raw.clone(),
                reason,
            });
        };
        let fields = match &record.fields {
            RefFields::Unbalanced => {
                reject(RejectReason::UnbalancedQuote);
                continue;
            }
            RefFields::Fields(fields) if fields.len() != header.len() => {
                reject(RejectReason::FieldCount {
                    expected: header.len(),
                    found: fields.len(),
                });
                continue;
            }
            RefFields::Fields(fields) => fields,
        };
        let value = |name: &str| unquote(&lossy(&fields[index[name]])).to_string();
        let text = |name: &str| std::str::from_utf8(&fields[index[name]]).is_ok();
        let (source, target, kind) = (value("Source"), value("Target"), value("typeTrans"));
        let weight = parse_weight(&value("Weight"));
        let problem = if !text("Source") || !is_good_name(&source) {
            Some("Source")
        } else if !text("Target") || !is_good_name(&target) {
            Some("Target")
        } else if !text("typeTrans") || !is_good_name(&kind) {
            Some("typeTrans")
        } else if weight.is_none() {
            Some("Weight")
        } else {
            None
        };
        match problem {
            Some(column) => reject(RejectReason::BadValue(column)),
            None => {
                let entry = sums.entry((source, target, kind)).or_insert((0.0, 0));
                entry.0 += weight.unwrap();
                entry.1 += 1;
            }
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
        if u128::from(n_m) <= u128::from(t.upgrade_min_merchant_txns) {
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
            if u128::from(stats.n) >= u128::from(t.child_min_txns)
                && stats.amount_micros < t.child_max_avg_amount.micros as i128 * stats.n as i128
            {
                out.insert(key(PAT_CHILD, merchant, customer), Decision::Holds);
            }
        }
    }

    // PatId3
    for (merchant, (female, male)) in &genders {
        let (f, m) = (female.len() as u64, male.len() as u64);
        if f < m && u128::from(f) > u128::from(t.dei_min_female_customers) {
            out.insert(key(PAT_DEI, merchant, ""), Decision::Holds);
        }
    }
    out
}

/// The values a detection's evidence must quote, computed from every accepted transaction up
/// to its epoch: PatId1 `N(m)`, `n(c,m)`, the count percentile, `W(c,m)`, the
/// weight percentile; PatId2 `n(c,m)` and the mean amount; PatId3 `F(m)`, `M(m)`.
#[derive(Clone, Debug, PartialEq)]
pub enum RefEvidence {
    Upgrade {
        merchant_txns: u64,
        customer_txns: u64,
        count_percentile: f64,
        weight: f64,
        weight_percentile: f64,
    },
    Child {
        customer_txns: u64,
        /// `A(c,m)/n(c,m)` in micro-units, exact (a fraction, as numerator and denominator).
        amount_micros: i128,
        n: u64,
    },
    DeiNeeded {
        female_customers: u64,
        male_customers: u64,
    },
}

/// [`RefEvidence`] of detection `(pattern_id, customer, merchant)` after `txns`.
pub fn evidence_of(
    txns: &[RefTxn],
    weights: &BTreeMap<WeightKey, f64>,
    t: &Thresholds,
    pattern_id: &str,
    customer: &str,
    merchant: &str,
) -> RefEvidence {
    let at_m: Vec<&RefTxn> = txns.iter().filter(|x| x.merchant == merchant).collect();
    let mut per_customer: BTreeMap<&str, (u64, i128, f64, u64)> = BTreeMap::new();
    for x in &at_m {
        let e = per_customer.entry(&x.customer).or_default();
        e.0 += 1;
        e.1 += x.amount_micros as i128;
        let key = (x.customer.clone(), x.merchant.clone(), x.category.clone());
        if let Some(w) = weights.get(&key) {
            e.2 += w;
            e.3 += 1;
        }
    }
    match pattern_id {
        PAT_UPGRADE => {
            let mut counts: Vec<u64> = per_customer.values().map(|e| e.0).collect();
            counts.sort();
            let count_p = percentile_cont_scaled(&counts, t.upgrade_count_percentile.millionths);
            let w_of = |e: &(u64, i128, f64, u64)| (e.3 > 0).then(|| e.2 / e.3 as f64);
            let mut ws: Vec<f64> = per_customer.values().filter_map(w_of).collect();
            ws.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let mine = per_customer[customer];
            RefEvidence::Upgrade {
                merchant_txns: at_m.len() as u64,
                customer_txns: mine.0,
                count_percentile: count_p as f64 / 1e6,
                weight: w_of(&mine).unwrap_or(f64::NAN),
                weight_percentile: percentile_cont_f64(&ws, t.upgrade_weight_percentile.millionths),
            }
        }
        PAT_CHILD => {
            let mine = per_customer[customer];
            RefEvidence::Child {
                customer_txns: mine.0,
                amount_micros: mine.1,
                n: mine.0,
            }
        }
        _ => {
            let seen = |g: &str| {
                let who: BTreeSet<&str> = at_m
                    .iter()
                    .filter(|x| x.gender == g)
                    .map(|x| x.customer.as_str())
                    .collect();
                who.len() as u64
            };
            RefEvidence::DeiNeeded {
                female_customers: seen("F"),
                male_customers: seen("M"),
            }
        }
    }
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
                r.pattern.id().to_string(),
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
