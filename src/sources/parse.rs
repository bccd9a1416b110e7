//! Parsing of BankSim transaction chunks (SPEC §2.1, §2.3).
//!
//! # Format
//!
//! A chunk is a header row followed by CSV records, framed by [`framing`]
//! (LF, CRLF and a lone CR end lines; blank lines are skipped but count for line numbers;
//! RFC 4180 double quotes, a quoted field ending only at a `"` before a comma, a line
//! terminator or the end; a multi-line record without the header's field count or over 1 MiB,
//! or a record holding a malformed quoted field, costs only its first line, rejected as
//! `unbalanced quote`). After CSV unquoting, one enclosing pair of single quotes is stripped
//! from every value (`'4.55'` is `4.55`).
//!
//! Columns are found by header name; the ten columns of [`TXN_COLUMNS`] must all be present
//! (extra columns are allowed and ignored). Header names are matched exactly (case-sensitive)
//! after CSV unquoting, trimming ASCII whitespace and stripping one pair of single quotes; a
//! UTF-8 byte-order mark before the header is ignored. A required column that appears twice
//! makes the header ambiguous and is a header error, like a missing one.
//!
//! Only `customer`, `gender`, `merchant`, `category` and `amount` are validated (in that
//! order; the first problem found is the reason). Names (customer, merchant, category) must be
//! non-empty UTF-8 text without control characters (U+0000–U+001F, U+007F), so nothing reaches
//! a state store or an output file that cannot hold it, and at most [`MAX_NAME_BYTES`] long
//! (`name too long` otherwise), so what a name costs in memory, in the store and in
//! `/api/status` is bounded by the program, not by the input. The other columns are carried
//! without validation, not even for emptiness. Values are not trimmed.
//!
//! # Rejects
//!
//! [`Reject::line`] is the 1-based line (every LF, CRLF or lone CR ends one) where the record
//! starts, the header normally being line 1; [`Reject::raw`] holds the record's bytes (all
//! its lines for a quoted field spanning several; the first line alone for an unbalanced
//! quote) without its line terminator, losslessly escaped by [`escape_bytes`] (invalid UTF-8
//! and control characters as `\xHH`). Values quoted in reasons are escaped the same way and
//! shortened to 64 characters.
//!
//! Nothing here panics, whatever the input bytes.

use std::fmt;

use crate::decimal::{parse_amount, AmountError};
use crate::model::{escape_bytes, escape_units, Gender, LabelCounts, Name, Reject, Txn};
use crate::name::NameCache;
use crate::sources::framing::{self, Fields, Frame, FrameKind, Frames, LineCounter};

/// The ten columns a transactions chunk header must have (SPEC §2.1), in the SPEC's order.
pub(crate) const TXN_COLUMNS: [&str; 10] = [
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

/// Strips one enclosing pair of single quotes (`'x'` → `x`); other values are returned as is.
#[inline]
pub(crate) fn strip_single_quotes(value: &[u8]) -> &[u8] {
    match value {
        [b'\'', inner @ .., b'\''] => inner,
        _ => value,
    }
}

/// A header name as it is matched: ASCII whitespace trimmed, one pair of single quotes stripped.
pub(crate) fn header_name(field: &[u8]) -> &[u8] {
    strip_single_quotes(field.trim_ascii())
}

/// A value for a reason message: escaped as a rejects file's `raw` column is
/// ([`escape_bytes`]: a reason is plain text, whatever the input held), shortened to 64
/// characters or escapes.
pub(crate) fn show(value: &[u8]) -> String {
    const MAX_UNITS: usize = 64;
    let mut out = String::new();
    let mut units = 0;
    escape_units(value, |unit| {
        if units == MAX_UNITS {
            out.push('…');
            return false;
        }
        units += 1;
        out.push_str(unit);
        true
    });
    out
}

/// U+0000–U+001F and U+007F: not allowed in names (SPEC §2.1).
#[inline]
fn is_control(c: u32) -> bool {
    c < 0x20 || c == 0x7f
}

/// Resolves the `wanted` column names in a header row. `Err` is a complete message naming
/// the missing columns (or, failing that, the duplicated ones); `what` starts the message,
/// e.g. `"chunk header"`. `optional` marks columns that may be absent (index `usize::MAX`).
pub(crate) fn resolve_columns<const N: usize>(
    header: &Fields,
    wanted: &[&str; N],
    optional: &[bool; N],
    what: &str,
) -> Result<[usize; N], String> {
    let mut found = [usize::MAX; N];
    let mut duplicated = [false; N];
    for (i, field) in header.iter().enumerate() {
        let name = header_name(field);
        if let Some(k) = wanted.iter().position(|w| w.as_bytes() == name) {
            if found[k] == usize::MAX {
                found[k] = i;
            } else {
                duplicated[k] = true;
            }
        }
    }
    let missing: Vec<&str> = (0..N)
        .filter(|&k| found[k] == usize::MAX && !optional[k])
        .map(|k| wanted[k])
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{what} lacks required column{} {}",
            if missing.len() == 1 { "" } else { "s" },
            quoted_list(&missing)
        ));
    }
    let dups: Vec<&str> = (0..N)
        .filter(|&k| duplicated[k])
        .map(|k| wanted[k])
        .collect();
    if !dups.is_empty() {
        return Err(format!(
            "{what} has duplicate column{} {} (ambiguous)",
            if dups.len() == 1 { "" } else { "s" },
            quoted_list(&dups)
        ));
    }
    Ok(found)
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One object read record by record: its header line and split header fields, and the
/// frames after it; knows each frame's line number and makes rejects.
pub(crate) struct Records<'a> {
    pub(crate) data: &'a [u8],
    /// The header's fields; `None` for an object with no header row (empty or blank).
    pub(crate) header: Option<Fields>,
    /// Where the records begin (after the header line).
    pub(crate) body: usize,
    lines: LineCounter,
    /// The current record's fields (reused).
    pub(crate) fields: Fields,
    /// The long names (categories) made so far, shared by the rows that repeat them.
    pub(crate) names: NameCache,
}

impl<'a> Records<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Records<'a> {
        let mut fields = Fields::default();
        let (header, body) = match framing::header_at(data, framing::bom_len(data), true) {
            framing::Header::Line(h) => {
                fields.split(h.bytes(data), h.quoted);
                (Some(std::mem::take(&mut fields)), h.next)
            }
            _ => (None, data.len()),
        };
        Records {
            data,
            header,
            body,
            lines: LineCounter::default(),
            fields,
            names: NameCache::default(),
        }
    }

    /// The header's field count (what a multi-line record must have).
    pub(crate) fn width(&self) -> usize {
        self.header.as_ref().map_or(0, Fields::len)
    }

    /// The frames of `data[start..end]` (`start` and `end` line starts).
    pub(crate) fn frames(&self, start: usize, end: usize) -> Frames<'a> {
        Frames::new(&self.data[..end], start, self.width())
    }

    /// Splits a record frame into [`fields`](Self::fields).
    #[inline]
    pub(crate) fn split(&mut self, frame: &Frame) {
        self.fields.split(frame.bytes(self.data), frame.quoted);
    }

    /// A reject for `frame`.
    pub(crate) fn reject(&mut self, chunk: &str, frame: &Frame, reason: String) -> Reject {
        Reject {
            chunk: chunk.to_owned(),
            line: self.lines.line_at(self.data, frame.start),
            reason,
            raw: escape_bytes(frame.bytes(self.data)),
        }
    }
}

/// The reject reason of a frame that is not a record (SPEC §2.1): a multi-line record
/// without the header's field count or over 1 MiB, or a malformed quoted field.
pub(crate) const UNBALANCED_QUOTE: &str = "unbalanced quote";

/// Every kind of reason a transactions chunk's rejects can have, as [`reject_label`] names
/// it: the `reason` label of `txflow_rows_rejected_total`, each present from the start.
pub(crate) const REJECT_KINDS: &[&str] = &[
    "expected N fields found N",
    "missing customer",
    "missing merchant",
    "missing category",
    "missing amount",
    "name too long",
    "invalid customer",
    "invalid merchant",
    "invalid category",
    "invalid gender",
    "invalid amount",
    UNBALANCED_QUOTE,
    "chunk header lacks required column",
    "chunk header lacks required columns",
    "chunk header has duplicate column",
    "chunk header has duplicate columns",
];

/// A reason kind ([`reason_kind`](crate::sinks::rejects::reason_kind)) as a metric label:
/// each run of digits as `N`, so that field counts do not make a label each, and without
/// commas, which some exposition parsers take for the end of a label.
pub(crate) fn reject_label(kind: &str) -> String {
    let mut label = String::with_capacity(kind.len());
    let mut in_number = false;
    for c in kind.chars().filter(|&c| c != ',') {
        match (c.is_ascii_digit(), in_number) {
            (true, true) => {}
            (true, false) => label.push('N'),
            (false, _) => label.push(c),
        }
        in_number = c.is_ascii_digit();
    }
    label
}

/// Positions of the validated columns of a transactions chunk, and the header's field count.
#[derive(Clone, Copy, Debug)]
struct TxnLayout {
    fields: usize,
    customer: usize,
    gender: usize,
    merchant: usize,
    category: usize,
    amount: usize,
    fraud: usize,
}

impl TxnLayout {
    fn from_header(header: &Fields) -> Result<TxnLayout, String> {
        let idx = resolve_columns(header, &TXN_COLUMNS, &[false; 10], "chunk header")?;
        Ok(TxnLayout {
            fields: header.len(),
            customer: idx[1],
            gender: idx[3],
            merchant: idx[5],
            category: idx[7],
            amount: idx[8],
            fraud: idx[9],
        })
    }

    /// Validates one record; `Err` is the reject reason.
    #[inline]
    fn parse<'r>(&self, record: &'r Fields, names: &mut NameCache) -> Result<Txn, RowError<'r>> {
        if record.len() != self.fields {
            return Err(RowError::FieldCount {
                expected: self.fields,
                found: record.len(),
            });
        }
        let field = |i: usize| strip_single_quotes(record.get(i));
        let customer = name(field(self.customer), "customer", names)?;
        let gender_raw = field(self.gender);
        let gender = std::str::from_utf8(gender_raw)
            .ok()
            .and_then(Gender::parse)
            .ok_or(RowError::Gender(gender_raw))?;
        let merchant = name(field(self.merchant), "merchant", names)?;
        let category = name(field(self.category), "category", names)?;
        let amount_raw = field(self.amount);
        let amount = parse_amount(amount_raw).map_err(|e| RowError::Amount(amount_raw, e))?;
        Ok(Txn {
            customer,
            merchant,
            category,
            gender,
            amount,
        })
    }
}

/// The longest a name (customer, merchant, category; the importance file's `Source`,
/// `Target`, `typeTrans`) may be, in bytes after unquoting. BankSim's are 11–20 bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// A non-empty, valid UTF-8 identifier value of at most [`MAX_NAME_BYTES`] without control
/// characters.
#[inline]
pub(crate) fn name<'r>(
    value: &'r [u8],
    column: &'static str,
    names: &mut NameCache,
) -> Result<Name, RowError<'r>> {
    if value.is_empty() {
        return Err(RowError::Missing(column));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(RowError::TooLong(column, value.len()));
    }
    if let Some(&b) = value.iter().find(|&&b| is_control(u32::from(b))) {
        return Err(RowError::Control(column, value, b));
    }
    names
        .name(value)
        .map_err(|_| RowError::NotUtf8(column, value))
}

/// Why a row is bad; formatted only when a reject is made.
#[derive(Debug)]
pub(crate) enum RowError<'r> {
    FieldCount {
        expected: usize,
        found: usize,
    },
    Missing(&'static str),
    /// A name over [`MAX_NAME_BYTES`]: the column and the name's length.
    TooLong(&'static str, usize),
    NotUtf8(&'static str, &'r [u8]),
    Control(&'static str, &'r [u8], u8),
    Gender(&'r [u8]),
    Amount(&'r [u8], AmountError),
    Weight(&'r [u8], AmountError),
}

impl fmt::Display for RowError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowError::FieldCount { expected, found } => {
                write!(f, "expected {expected} fields, found {found}")
            }
            RowError::Missing(column) => write!(f, "missing {column}"),
            RowError::TooLong(column, len) => write!(
                f,
                "name too long: {column} of {len} bytes (at most {MAX_NAME_BYTES})"
            ),
            RowError::NotUtf8(column, v) => {
                write!(f, "invalid {column} '{}': not valid UTF-8", show(v))
            }
            RowError::Control(column, v, b) => write!(
                f,
                "invalid {column} '{}': control character U+{b:04X} is not allowed",
                show(v)
            ),
            RowError::Gender(v) => {
                write!(f, "invalid gender '{}' (expected F, M, E or U)", show(v))
            }
            RowError::Amount(_, AmountError::Empty) => write!(f, "missing amount"),
            RowError::Amount(v, e) => write!(f, "invalid amount '{}': {e}", show(v)),
            RowError::Weight(_, AmountError::Empty) => write!(f, "missing Weight"),
            RowError::Weight(v, e) => write!(f, "invalid weight '{}': {e}", show(v)),
        }
    }
}

/// The result of parsing one chunk (or this worker's share of it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkParse {
    /// Number of records in this share (the shares' counts add up to the chunk's), excluding
    /// the header and blank lines.
    pub records: u64,
    /// Accepted transactions of this share, in record order.
    pub txns: Vec<Txn>,
    /// Rejected rows of this share, in line order.
    pub rejects: Vec<Reject>,
    /// Set when the header lacks a required column (the whole chunk is rejected).
    pub header_error: Option<String>,
    /// The `fraud` labels of the accepted rows.
    pub labels: LabelCounts,
}

/// Parses share `index` of `peers` of chunk `chunk_name`; only its records are validated and
/// returned. The shares partition the chunk's records. When the body has no double quote
/// (every BankSim chunk), a share is a contiguous run of lines, found by byte offset, so a
/// worker tokenizes only its part. Otherwise (a quoted field may span lines) every worker
/// frames the whole chunk and record `i` (0-based, in file order) belongs to share
/// `i % peers`.
///
/// `peers == 0` is treated as 1; an `index >= peers` owns no record. An object without a header
/// row (empty, or only blank lines) gives `records == 0` and `header_error == Some("empty
/// chunk: no header row")`. A header lacking (or duplicating) a required column sets
/// `header_error` and rejects every record of the share with that message as the reason.
pub fn parse_chunk(chunk_name: &str, bytes: &[u8], peers: usize, index: usize) -> ChunkParse {
    let peers = peers.max(1);
    let mut out = ChunkParse::default();
    let mut rdr = Records::new(bytes);
    let layout = match &rdr.header {
        None => {
            out.header_error = Some("empty chunk: no header row".to_owned());
            return out;
        }
        Some(header) => TxnLayout::from_header(header),
    };
    let body = rdr.body;
    let contiguous = peers > 1 && memchr::memchr(b'"', &bytes[body..]).is_none();
    let (start, end, stride) = if contiguous {
        let part = (bytes.len() - body) / peers;
        let at = |i: usize| match i {
            0 => body,
            i if i >= peers => bytes.len(),
            i => framing::line_start_at_or_after(bytes, body, body + part * i),
        };
        (at(index), at(index + 1).max(at(index)), 1)
    } else if index < peers {
        (body, bytes.len(), peers)
    } else {
        (bytes.len(), bytes.len(), 1)
    };
    if contiguous {
        out.txns.reserve((end - start) / 80);
    }
    let frames = rdr.frames(start, end);
    let skip = if contiguous { 0 } else { index };
    for frame in frames.skip(skip).step_by(stride) {
        out.records += 1;
        match &layout {
            Err(message) => {
                let reject = rdr.reject(chunk_name, &frame, message.clone());
                out.rejects.push(reject);
            }
            Ok(layout) => parse_record(&mut rdr, &frame, layout, chunk_name, &mut out),
        }
    }
    if let Err(message) = layout {
        out.header_error = Some(message);
    }
    out.labels.fraud_pairs.sort_unstable();
    out.labels.fraud_pairs.dedup();
    out
}

/// Counts an accepted row's `fraud` label: `1`, `0`, or anything else ("unknown").
#[inline]
fn count_label(labels: &mut LabelCounts, txn: &Txn, label: &[u8]) {
    match label {
        b"1" => {
            labels.fraud += 1;
            labels
                .fraud_pairs
                .push((txn.customer.clone(), txn.merchant.clone()));
        }
        b"0" => labels.clean += 1,
        _ => labels.unknown += 1,
    }
}

/// Validates one record frame into a transaction or a reject.
#[inline]
fn parse_record(
    rdr: &mut Records,
    frame: &Frame,
    layout: &TxnLayout,
    chunk_name: &str,
    out: &mut ChunkParse,
) {
    if frame.kind == FrameKind::Unbalanced {
        let reject = rdr.reject(chunk_name, frame, UNBALANCED_QUOTE.to_owned());
        out.rejects.push(reject);
        return;
    }
    rdr.split(frame);
    match layout.parse(&rdr.fields, &mut rdr.names) {
        Ok(txn) => {
            count_label(
                &mut out.labels,
                &txn,
                strip_single_quotes(rdr.fields.get(layout.fraud)),
            );
            out.txns.push(txn)
        }
        Err(e) => {
            let reason = e.to_string();
            let reject = rdr.reject(chunk_name, frame, reason);
            out.rejects.push(reject);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const HEADER: &str =
        "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud";

    fn row(customer: &str, gender: &str, merchant: &str, category: &str, amount: &str) -> String {
        format!(
            "0,'{customer}','4','{gender}','28007','{merchant}','28007','{category}',{amount},0"
        )
    }

    fn txn(customer: &str, gender: Gender, merchant: &str, category: &str, amount: i64) -> Txn {
        Txn {
            customer: customer.into(),
            merchant: merchant.into(),
            category: category.into(),
            gender,
            amount,
        }
    }

    fn parse1(text: &str) -> ChunkParse {
        parse_chunk("chunk-000000.csv", text.as_bytes(), 1, 0)
    }

    /// Parses a chunk made of the standard header and one row; returns the only reject's reason.
    fn reason_for(row: &str) -> String {
        let p = parse1(&format!("{HEADER}\n{row}\n"));
        assert_eq!(p.records, 1, "{row}");
        assert!(p.txns.is_empty(), "{row} accepted: {:?}", p.txns);
        assert_eq!(p.rejects.len(), 1, "{row}");
        assert_eq!(p.rejects[0].line, 2);
        // (These rows are UTF-8 without backslashes: only control characters are escaped.)
        let escaped: String = row
            .chars()
            .map(|c| match c {
                '\0'..='\u{1f}' | '\u{7f}' => format!("\\x{:02X}", c as u32),
                c => c.to_string(),
            })
            .collect();
        assert_eq!(p.rejects[0].raw, escaped);
        assert_eq!(p.rejects[0].chunk, "chunk-000000.csv");
        p.rejects[0].reason.clone()
    }

    #[test]
    fn every_reason_the_parser_gives_has_a_listed_kind() {
        let label = |reason: &str| reject_label(crate::sinks::rejects::reason_kind(reason));
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let mut reasons = vec![
            reason_for("garbage"),
            reason_for("0,'C1','4','F','1','M1','1','c',1,0,extra"),
            reason_for(&row("C1", "F", "M1", "c", "-1")),
            reason_for(&row("C1", "F", "M1", "c", "")),
            reason_for(&row("C1", "X", "M1", "c", "1")),
            reason_for(&row("C1", "", "M1", "c", "1")),
        ];
        for (i, column) in ["customer", "merchant", "category"].into_iter().enumerate() {
            let mut fields = ["C1", "M1", "c"];
            for (value, want) in [
                ("", format!("missing {column}")),
                (long.as_str(), "name too long".into()),
                ("a\u{1}b", format!("invalid {column}")),
            ] {
                fields[i] = value;
                let reason = reason_for(&row(fields[0], "F", fields[1], fields[2], "1"));
                assert_eq!(label(&reason), want, "{reason}");
                reasons.push(reason);
            }
        }
        let not_utf8 = [
            HEADER.as_bytes(),
            b"\n0,'C\xff','4','F','1','M1','1','c',1,0\n",
        ]
        .concat();
        reasons.push(
            parse_chunk("c.csv", &not_utf8, 1, 0).rejects[0]
                .reason
                .clone(),
        );
        let unbalanced = format!("{HEADER}\n0,\"C1,'4','F','1','M1','1','c',1,0\n");
        reasons.push(parse1(&unbalanced).rejects[0].reason.clone());
        for header in [
            "step,customer,age",
            "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount",
            "step,customer,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud",
            "step,customer,customer,age,gender,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud",
        ] {
            reasons.push(parse1(&format!("{header}\n1,2\n")).rejects[0].reason.clone());
        }
        for reason in &reasons {
            let kind = label(reason);
            assert!(REJECT_KINDS.contains(&kind.as_str()), "{reason} → {kind}");
        }
        let kinds: std::collections::BTreeSet<String> = reasons.iter().map(|r| label(r)).collect();
        assert_eq!(
            kinds.len(),
            REJECT_KINDS.len(),
            "every listed kind occurs: {kinds:?}"
        );
    }

    #[test]
    fn single_quote_stripping_helper() {
        assert_eq!(strip_single_quotes(b"'abc'"), b"abc");
        assert_eq!(strip_single_quotes(b"''"), b"");
        assert_eq!(strip_single_quotes(b"'"), b"'");
        assert_eq!(strip_single_quotes(b"''x''"), b"'x'");
        assert_eq!(strip_single_quotes(b"'abc"), b"'abc");
        assert_eq!(strip_single_quotes(b"abc"), b"abc");
    }

    // ---- SPEC §2.1 rules ----

    #[test]
    fn real_layout_example() {
        let p = parse1(
            "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\n\
             0,'C1093826151','4','M','28007','M348934600','28007','es_transportation',4.55,0\n",
        );
        assert_eq!(p.header_error, None);
        assert_eq!(p.records, 1);
        assert!(p.rejects.is_empty());
        assert_eq!(
            p.txns,
            vec![txn(
                "C1093826151",
                Gender::Male,
                "M348934600",
                "es_transportation",
                4_550_000
            )]
        );
    }

    #[test]
    fn columns_found_by_name_in_any_order() {
        let p = parse1(
            "amount,fraud,category,zipMerchant,merchant,zipcodeOri,gender,age,customer,step,extra\n\
             7.25,0,'es_food','28007','M1','28007','F','3','C1',5,whatever\n",
        );
        assert_eq!(p.header_error, None);
        assert_eq!(
            p.txns,
            vec![txn("C1", Gender::Female, "M1", "es_food", 7_250_000)]
        );
    }

    #[test]
    fn double_quoted_and_single_quoted_header_names() {
        let p = parse1(
            "\"step\",\"customer\",\"age\",\"gender\",\"zipcodeOri\",\"merchant\",\"zipMerchant\",\
             \"category\",\"amount\",\"fraud\"\n0,'C1','4','E','1','M1','1','c',1,0\n",
        );
        assert_eq!(p.header_error, None);
        assert_eq!(p.txns.len(), 1);
        let p = parse1(
            "'step','customer','age','gender','zipcodeOri','merchant','zipMerchant',\
             'category','amount', fraud \n0,'C1','4','U','1','M1','1','c',1,0\n",
        );
        assert_eq!(p.header_error, None);
        assert_eq!(p.txns[0].gender, Gender::Unknown);
        // A UTF-8 byte-order mark before the header is ignored.
        let p = parse1(&format!(
            "\u{feff}{HEADER}\n{}\n",
            row("C1", "M", "M1", "c", "1")
        ));
        assert_eq!(p.header_error, None);
        assert_eq!(p.txns.len(), 1);
    }

    #[test]
    fn single_quotes_stripped_from_every_value_including_numbers() {
        let p = parse1(&format!(
            "{HEADER}\n'0','C1','4','F','28007','M1','28007','es_food','4.55','0'\n\
             0,C2,4,M,28007,M2,28007,es_bar,'.5',0\n"
        ));
        assert!(p.rejects.is_empty(), "{:?}", p.rejects);
        assert_eq!(
            p.txns,
            vec![
                txn("C1", Gender::Female, "M1", "es_food", 4_550_000),
                txn("C2", Gender::Male, "M2", "es_bar", 500_000),
            ]
        );
        // Only one pair is stripped.
        let p = parse1(&format!("{HEADER}\n{}\n", row("'C1'", "F", "M1", "c", "1")));
        assert_eq!(p.txns[0].customer, "'C1'");
    }

    #[test]
    fn double_quotes_are_csv_quoting() {
        let p = parse1(&format!(
            "{HEADER}\n0,\"'C1'\",4,\"F\",1,\"M1\",1,\"a,b\",\"4.55\",0\n"
        ));
        assert_eq!(
            p.txns,
            vec![txn("C1", Gender::Female, "M1", "a,b", 4_550_000)]
        );
    }

    #[test]
    fn crlf_line_endings() {
        let text = format!(
            "{HEADER}\r\n{}\r\n{}\r\n",
            row("C1", "F", "M1", "c", "1"),
            row("C2", "X", "M1", "c", "1")
        );
        let p = parse1(&text);
        assert_eq!(p.records, 2);
        assert_eq!(
            p.txns,
            vec![txn("C1", Gender::Female, "M1", "c", 1_000_000)]
        );
        assert_eq!(p.rejects.len(), 1);
        assert_eq!(p.rejects[0].line, 3);
        assert_eq!(p.rejects[0].raw, row("C2", "X", "M1", "c", "1"));
        // The last line may lack its terminator; the value before CRLF has no '\r'.
        let p = parse1(&format!("{HEADER}\r\n{}", row("C3", "M", "M9", "c", "2.5")));
        assert_eq!(p.txns, vec![txn("C3", Gender::Male, "M9", "c", 2_500_000)]);
    }

    #[test]
    fn blank_lines_skipped_but_counted_in_line_numbers() {
        let good = row("C1", "F", "M1", "c", "1");
        let bad = row("C2", "F", "M1", "c", "-1");
        let text = format!("{HEADER}\n\n{good}\n\r\n\n{bad}\n\n\r\n");
        let p = parse1(&text);
        assert_eq!(p.records, 2);
        assert_eq!(p.txns.len(), 1);
        assert_eq!(p.rejects.len(), 1);
        assert_eq!(p.rejects[0].line, 6);
        assert_eq!(p.rejects[0].raw, bad);
        // Same with CRLF everywhere.
        let text = format!("{HEADER}\r\n\r\n{good}\r\n\r\n\r\n{bad}\r\n\r\n");
        let p = parse1(&text);
        assert_eq!(p.records, 2);
        assert_eq!(p.rejects[0].line, 6);
        assert_eq!(p.rejects[0].raw, bad);
        // Blank lines before the header count too.
        let p = parse1(&format!("\n\n{HEADER}\n{bad}\n"));
        assert_eq!(p.rejects[0].line, 4);
    }

    #[test]
    fn quoted_field_with_comma_and_newline_spans_lines() {
        // A line break in a quoted field is data (here in an unvalidated column; in a name it
        // is a control character, rejected below).
        let multi = "0,'C1','4','F','1','M1',\"zip\nx, y\",\"es_food\",4.55,0";
        let bad = row("C2", "F", "M1", "c", "1e3");
        let text = format!("{HEADER}\n{multi}\n{bad}\n\"x\ny\",1\n");
        let p = parse1(&text);
        assert_eq!(p.records, 4);
        assert_eq!(
            p.txns,
            vec![txn("C1", Gender::Female, "M1", "es_food", 4_550_000)]
        );
        assert_eq!(p.rejects.len(), 3);
        assert_eq!(
            p.rejects[0].line, 4,
            "the multi-line record takes lines 2 and 3"
        );
        assert_eq!(p.rejects[0].raw, bad);
        // A multi-line record without the header's field count costs its first line only.
        assert_eq!(p.rejects[1].line, 5);
        assert_eq!(p.rejects[1].raw, "\"x");
        assert_eq!(p.rejects[1].reason, UNBALANCED_QUOTE);
        assert_eq!(p.rejects[2].line, 6);
        assert_eq!(p.rejects[2].raw, "y\",1");
        assert_eq!(p.rejects[2].reason, "expected 10 fields, found 2");
    }

    #[test]
    fn unvalidated_columns_are_carried_even_if_empty_or_odd() {
        let p = parse1(&format!(
            "{HEADER}\n,'C1',,'F',,'M1',,'c',1,\nzz,C2,'',M,??,M2,x,c,2,yes\n"
        ));
        assert!(p.rejects.is_empty(), "{:?}", p.rejects);
        assert_eq!(p.txns.len(), 2);
    }

    // ---- SPEC §2.3 bad rows ----

    #[test]
    fn wrong_field_count() {
        assert_eq!(
            reason_for("0,'C1','4','F','1','M1','1','c',1"),
            "expected 10 fields, found 9"
        );
        assert_eq!(
            reason_for("0,'C1','4','F','1','M1','1','c',1,0,extra"),
            "expected 10 fields, found 11"
        );
        assert_eq!(reason_for("garbage"), "expected 10 fields, found 1");
    }

    #[test]
    fn missing_required_values() {
        assert_eq!(
            reason_for(&row("", "F", "M1", "c", "1")),
            "missing customer"
        );
        assert_eq!(
            reason_for("0,,'4','F','1','M1','1','c',1,0"),
            "missing customer"
        );
        assert_eq!(
            reason_for(&row("C1", "F", "", "c", "1")),
            "missing merchant"
        );
        assert_eq!(
            reason_for(&row("C1", "F", "M1", "", "1")),
            "missing category"
        );
        assert_eq!(reason_for(&row("C1", "F", "M1", "c", "")), "missing amount");
        assert_eq!(
            reason_for(&row("C1", "F", "M1", "c", "''")),
            "missing amount"
        );
        assert_eq!(
            reason_for(&row("C1", "", "M1", "c", "1")),
            "invalid gender '' (expected F, M, E or U)"
        );
    }

    #[test]
    fn bad_gender() {
        assert_eq!(
            reason_for(&row("C1", "X", "M1", "c", "1")),
            "invalid gender 'X' (expected F, M, E or U)"
        );
        assert_eq!(
            reason_for(&row("C1", "f", "M1", "c", "1")),
            "invalid gender 'f' (expected F, M, E or U)"
        );
    }

    #[test]
    fn bad_amounts() {
        let cases = [
            ("-4.55", "invalid amount '-4.55': a sign is not allowed"),
            ("+4.55", "invalid amount '+4.55': a sign is not allowed"),
            ("1e3", "invalid amount '1e3': an exponent is not allowed"),
            ("NaN", "invalid amount 'NaN': NaN is not a number"),
            ("inf", "invalid amount 'inf': infinity is not allowed"),
            ("", "missing amount"),
            (
                "4.5500001",
                "invalid amount '4.5500001': more than six fractional digits",
            ),
            (
                "1000000000000",
                "invalid amount '1000000000000': out of range (must be below 10^12)",
            ),
            ("4. 5", "invalid amount '4. 5': whitespace is not allowed"),
            ("abc", "invalid amount 'abc': unexpected character 'a'"),
        ];
        for (amount, want) in cases {
            assert_eq!(reason_for(&row("C1", "F", "M1", "c", amount)), want);
            // Same with the value in single quotes.
            assert_eq!(
                reason_for(&row("C1", "F", "M1", "c", &format!("'{amount}'"))),
                want
            );
        }
    }

    #[test]
    fn validation_order_first_problem_wins() {
        assert_eq!(reason_for(&row("", "X", "", "", "-1")), "missing customer");
        assert_eq!(
            reason_for(&row("C1", "X", "", "", "-1")),
            "invalid gender 'X' (expected F, M, E or U)"
        );
    }

    #[test]
    fn invalid_utf8_in_validated_field_is_rejected_not_panicking() {
        let mut bytes = format!("{HEADER}\n").into_bytes();
        bytes.extend_from_slice(b"0,'C\xff1','4','F','1','M1','1','c',1,0\n");
        bytes.extend_from_slice(b"0,'C1','4','\xc3','1','M1','1','c',1,0\n");
        bytes.extend_from_slice(b"0,'C1','4','F','1','M1','1','c',1\xfe,0\n");
        bytes.extend_from_slice(b"\xff\xfe,'C1','4','F','1','M1','1','c',1,0\n");
        let p = parse_chunk("k", &bytes, 1, 0);
        assert_eq!(p.records, 4);
        assert_eq!(p.txns.len(), 1, "unvalidated step column may hold anything");
        let reasons: Vec<&str> = p.rejects.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            vec![
                "invalid customer 'C\\xFF1': not valid UTF-8",
                "invalid gender '\\xC3' (expected F, M, E or U)",
                "invalid amount '1\\xFE': not valid UTF-8",
            ]
        );
        assert_eq!(p.rejects[0].raw, "0,'C\\xFF1','4','F','1','M1','1','c',1,0");
        assert_eq!(
            p.rejects.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn control_characters_in_names_are_rejected() {
        assert_eq!(
            reason_for(&row("C\u{0}1", "F", "M1", "c", "1")),
            "invalid customer 'C\\x001': control character U+0000 is not allowed"
        );
        assert_eq!(
            reason_for(&row("C1", "F", "M\u{7f}", "c", "1")),
            "invalid merchant 'M\\x7F': control character U+007F is not allowed"
        );
        assert_eq!(
            reason_for(&row("C1", "F", "M1", "es\tfood", "1")),
            "invalid category 'es\\x09food': control character U+0009 is not allowed"
        );
        // U+0080 and above are text; unvalidated columns may hold anything.
        let p = parse1(&format!(
            "{HEADER}\n0\u{1},'C\u{80}1','4','F','1','M1','1','c',1,0\n"
        ));
        assert_eq!((p.txns.len(), p.rejects.len()), (1, 0));
    }

    #[test]
    fn every_line_terminator_counts_for_line_numbers() {
        let bad = row("C2", "X", "M1", "c", "1");
        let good = row("C1", "F", "M1", "c", "1");
        let text = format!("{HEADER}\r{good}\r\n\r{bad}\n\"open\r{bad}");
        let p = parse1(&text);
        assert_eq!(p.records, 4);
        let lines: Vec<(u64, &str)> = p
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        let gender = "invalid gender 'X' (expected F, M, E or U)";
        assert_eq!(lines, vec![(4, gender), (5, UNBALANCED_QUOTE), (6, gender)]);
        assert_eq!(p.rejects[1].raw, "\"open");
    }

    #[test]
    fn names_longer_than_256_bytes_are_rejected() {
        let at_limit = "n".repeat(MAX_NAME_BYTES);
        let p = parse1(&format!(
            "{HEADER}\n{}\n",
            row(&at_limit, "F", &at_limit, &at_limit, "1")
        ));
        assert_eq!((p.txns.len(), p.rejects.len()), (1, 0));
        assert_eq!(p.txns[0].customer.as_str(), at_limit);
        let over = "n".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            reason_for(&row(&over, "F", "M1", "c", "1")),
            "name too long: customer of 257 bytes (at most 256)"
        );
        assert_eq!(
            reason_for(&row("C1", "F", &over, "c", "1")),
            "name too long: merchant of 257 bytes (at most 256)"
        );
        let ten_mb = "c".repeat(10 << 20);
        assert_eq!(
            reason_for(&row("C1", "F", "M1", &ten_mb, "1")),
            "name too long: category of 10485760 bytes (at most 256)"
        );
    }

    #[test]
    fn long_values_are_shortened_in_reasons() {
        let long = "x".repeat(1000);
        let reason = reason_for(&row("C1", &long, "M1", "c", "1"));
        assert!(reason.len() < 150, "{reason}");
        assert!(reason.contains('…'));
    }

    #[test]
    fn header_missing_column_rejects_whole_chunk() {
        let header = "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,fraud";
        let good = row("C1", "F", "M1", "c", "1");
        let text = format!("{header}\n{good}\n\n{good}\n");
        let p = parse1(&text);
        let want = "chunk header lacks required column 'amount'";
        assert_eq!(p.header_error.as_deref(), Some(want));
        assert_eq!(p.records, 2);
        assert!(p.txns.is_empty());
        assert_eq!(p.rejects.len(), 2);
        assert!(p.rejects.iter().all(|r| r.reason == want));
        assert_eq!(p.rejects[0].line, 2);
        assert_eq!(p.rejects[1].line, 4);
        assert_eq!(p.rejects[1].raw, good);

        let p = parse1("customer,merchant\nC1,M1\n");
        assert_eq!(
            p.header_error.as_deref(),
            Some(
                "chunk header lacks required columns 'step', 'age', 'gender', 'zipcodeOri', \
                 'zipMerchant', 'category', 'amount', 'fraud'"
            )
        );
        assert_eq!(p.records, 1);
        assert_eq!(p.rejects.len(), 1);

        // Header only: no records, but the error is still reported.
        let p = parse1("customer,merchant\n");
        assert_eq!(p.records, 0);
        assert!(p.header_error.is_some());

        // Column names are case-sensitive.
        let p = parse1(&format!("{}\n", HEADER.replace("amount", "Amount")));
        assert_eq!(
            p.header_error.as_deref(),
            Some("chunk header lacks required column 'amount'")
        );
    }

    #[test]
    fn header_missing_column_splits_rejects_by_share() {
        // Without quotes, shares are contiguous runs of lines.
        let text = "a,b\n1,2\n3,4\n5,6\n";
        let p = parse_chunk("k", text.as_bytes(), 2, 1);
        assert_eq!(p.records, 1);
        assert_eq!(p.rejects.len(), 1);
        assert_eq!(p.rejects[0].line, 4);
        assert_eq!(p.rejects[0].raw, "5,6");
        // With quotes, record `i` belongs to share `i % peers`.
        let text = "a,b\n1,2\n\"3\",4\n5,6\n";
        let p = parse_chunk("k", text.as_bytes(), 2, 1);
        assert_eq!(p.records, 1);
        assert_eq!(p.rejects[0].line, 3);
        assert_eq!(p.rejects[0].raw, "\"3\",4");
    }

    #[test]
    fn duplicate_required_column_is_a_header_error() {
        let p = parse1(&format!(
            "{HEADER},amount\n{},5\n",
            row("C1", "F", "M1", "c", "1")
        ));
        assert_eq!(
            p.header_error.as_deref(),
            Some("chunk header has duplicate column 'amount' (ambiguous)")
        );
        assert_eq!(p.records, 1);
        assert_eq!(p.rejects.len(), 1);
    }

    #[test]
    fn empty_chunk() {
        for text in ["", "\n", "\r\n\r\n"] {
            let p = parse1(text);
            assert_eq!(p.records, 0);
            assert!(p.txns.is_empty() && p.rejects.is_empty());
            assert_eq!(
                p.header_error.as_deref(),
                Some("empty chunk: no header row")
            );
        }
        let p = parse1(HEADER);
        assert_eq!(p.records, 0);
        assert_eq!(p.header_error, None);
    }

    fn sample_chunk(rows: usize, seed: u64) -> String {
        let mut rng = XorShift(seed | 1);
        let mut text = format!("{HEADER}\n");
        for i in 0..rows {
            let amount = match rng.next() % 10 {
                0 => "-1".to_owned(),
                1 => "1e2".to_owned(),
                _ => format!("{}.{:02}", rng.next() % 100, rng.next() % 100),
            };
            let gender = ["F", "M", "E", "U", "X"][(rng.next() % 5) as usize];
            let line = row(
                &format!("C{}", rng.next() % 50),
                gender,
                &format!("M{}", rng.next() % 7),
                "es_food",
                &amount,
            );
            text.push_str(&line);
            text.push('\n');
            if i % 13 == 0 {
                text.push('\n');
            }
            if i % 17 == 0 {
                text.push_str("0,'C1',\"multi\nline\",'F',1,'M1',1,'c',1,0\n");
            }
        }
        text
    }

    /// Parses `text` as `peers` shares and checks that they partition the whole parse.
    fn check_shares_partition(text: &[u8], peers: usize) -> Vec<ChunkParse> {
        let all = parse_chunk("chunk-000000.csv", text, 1, 0);
        let shares: Vec<ChunkParse> = (0..peers)
            .map(|index| parse_chunk("chunk-000000.csv", text, peers, index))
            .collect();
        let mut txns = Vec::new();
        let mut rejects = Vec::new();
        for share in &shares {
            assert_eq!(share.header_error, all.header_error);
            assert_eq!(
                share.records as usize,
                share.txns.len() + share.rejects.len()
            );
            assert!(share.rejects.windows(2).all(|w| w[0].line <= w[1].line));
            txns.extend(share.txns.iter().cloned());
            rejects.extend(share.rejects.iter().cloned());
        }
        assert_eq!(
            shares.iter().map(|s| s.records).sum::<u64>(),
            all.records,
            "{:?}",
            String::from_utf8_lossy(text)
        );
        // The writer's order (same-line records by text).
        let writer_order = |a: &Reject, b: &Reject| (a.line, &a.raw).cmp(&(b.line, &b.raw));
        rejects.sort_by(writer_order);
        let mut want_rejects = all.rejects.clone();
        want_rejects.sort_by(writer_order);
        assert_eq!(rejects, want_rejects);
        let mut want = all.txns.clone();
        want.sort();
        txns.sort();
        assert_eq!(txns, want);
        shares
    }

    #[test]
    fn shares_partition_the_chunk() {
        // With quoted multi-line records (every worker reads the whole chunk).
        let text = sample_chunk(200, 42);
        let all = parse1(&text);
        assert_eq!(all.records as usize, all.txns.len() + all.rejects.len());
        assert!(!all.rejects.is_empty() && !all.txns.is_empty());
        assert!(text.contains('"'));
        // Without quotes (contiguous byte ranges), with blank lines, CRLF and a final line
        // without terminator.
        let unquoted: String = sample_chunk(300, 7)
            .lines()
            .filter(|l| !l.contains('"') && !l.starts_with("line"))
            .enumerate()
            .map(|(i, l)| format!("{l}{}", if i % 5 == 0 { "\r\n" } else { "\n" }))
            .collect::<String>()
            .trim_end()
            .to_owned();
        assert!(!unquoted.contains('"'));
        for text in [text.as_str(), unquoted.as_str()] {
            for peers in [2usize, 3, 7, 400] {
                check_shares_partition(text.as_bytes(), peers);
            }
        }
        // An index outside the peers owns nothing; zero peers means one.
        for text in [text.as_str(), unquoted.as_str()] {
            let none = parse_chunk("k", text.as_bytes(), 3, 5);
            assert_eq!(none.records, 0);
            assert!(none.txns.is_empty() && none.rejects.is_empty());
            assert_eq!(
                parse_chunk("chunk-000000.csv", text.as_bytes(), 0, 0),
                parse1(text)
            );
        }
    }

    #[test]
    fn unquoted_shares_are_contiguous_runs_in_order() {
        let rows: Vec<String> = (0..50)
            .map(|i| row(&format!("C{i}"), "F", "M1", "c", "1"))
            .collect();
        let text = format!("{HEADER}\n{}\n", rows.join("\n"));
        let all = parse1(&text);
        let shares = check_shares_partition(text.as_bytes(), 3);
        let in_order: Vec<Txn> = shares.into_iter().flat_map(|s| s.txns).collect();
        assert_eq!(in_order, all.txns);
    }

    #[test]
    fn share_membership_is_by_record_index_when_quoted() {
        let rows: Vec<String> = (0..6)
            .map(|i| row(&format!("C{i}"), "F", "M1", "c", "1"))
            .collect();
        let text = format!(
            "{HEADER}\n{}\n\n{}\n{}\n{}\n{}\n{}\n\"x\"\n",
            rows[0], rows[1], rows[2], rows[3], rows[4], rows[5]
        );
        let p = parse_chunk("k", text.as_bytes(), 3, 1);
        let names: Vec<&str> = p.txns.iter().map(|t| t.customer.as_str()).collect();
        assert_eq!(names, vec!["C1", "C4"]);
        assert_eq!(p.records, 2);
    }

    // ---- robustness ----

    pub(crate) struct XorShift(pub u64);

    impl XorShift {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    /// Applies a few random edits (byte flips, CSV-significant insertions, deletions,
    /// duplications, truncation) to `bytes`.
    pub(crate) fn mutate(rng: &mut XorShift, bytes: &mut Vec<u8>) {
        const SPECIAL: &[u8] = b"\",'\r\n.-+e \xff\xc3\x00\t";
        let edits = 1 + rng.next() % 6;
        for _ in 0..edits {
            let len = bytes.len();
            let at = if len == 0 {
                0
            } else {
                (rng.next() % len as u64) as usize
            };
            match rng.next() % 7 {
                0 if len > 0 => bytes[at] = rng.next() as u8,
                1 => bytes.insert(at, SPECIAL[(rng.next() % SPECIAL.len() as u64) as usize]),
                2 if len > 0 => {
                    let n = (1 + rng.next() % 8) as usize;
                    bytes.drain(at..(at + n).min(len));
                }
                3 => bytes.truncate(at),
                4 if len > 0 => {
                    let n = (1 + rng.next() % 40) as usize;
                    let piece: Vec<u8> = bytes[at..(at + n).min(len)].to_vec();
                    let to = (rng.next() % (len as u64 + 1)) as usize;
                    bytes.splice(to..to, piece);
                }
                5 if len > 0 => bytes[at] = SPECIAL[(rng.next() % SPECIAL.len() as u64) as usize],
                _ => bytes.insert(at, b'"'),
            }
        }
    }

    #[test]
    fn fuzz_never_panics_and_accounts_for_every_record() {
        let bases: Vec<Vec<u8>> = vec![
            sample_chunk(8, 7).into_bytes(),
            sample_chunk(3, 99).into_bytes(),
            format!("{HEADER}\r\n{}\r\n", row("C1", "F", "M1", "c", "1")).into_bytes(),
            b"customer,amount\n'C1',1\n".to_vec(),
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for iteration in 0..20_000 {
            let mut bytes = bases[iteration % bases.len()].clone();
            mutate(&mut rng, &mut bytes);
            let all = parse_chunk("fuzz", &bytes, 1, 0);
            assert_eq!(
                all.records as usize,
                all.txns.len() + all.rejects.len(),
                "input {:?}",
                String::from_utf8_lossy(&bytes)
            );
            if all.header_error.is_some() {
                assert!(all.txns.is_empty());
            }
            assert!(all.rejects.windows(2).all(|w| w[0].line <= w[1].line));
            for r in &all.rejects {
                assert!(r.line >= 1 && !r.reason.is_empty());
                assert!(!r.raw.ends_with('\n'));
            }
            if iteration % 10 == 0 {
                let peers = 1 + (rng.next() % 4) as usize;
                check_shares_partition(&bytes, peers);
            }
            // Amount parsing on arbitrary bytes.
            let _ = parse_amount(&bytes[..bytes.len().min(24)]);
            let _ = crate::decimal::parse_weight(&bytes[..bytes.len().min(24)]);
        }
    }
}
