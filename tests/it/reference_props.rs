//! The reference implementation's own tests (`reference_*`), and property tests that run the
//! real pipeline on random small streams and compare it with the reference
//! (`pipeline_*`).
//!
//! Environment:
//! - `TXFLOW_PROP_SEEDS=N`: number of seeds (default 30);
//! - `TXFLOW_PROP_SEED_BASE=B`: seeds `B..B+N` (default 0);
//! - `TXFLOW_PROP_SEED=S`: run only seed `S` (and print the stream);
//! - `TXFLOW_PROP_STRICT_TIES=1`: also require weight ties to be decided as "holds"
//!   (`<=` inclusive; the SPEC allows either, so this is off by default);
//! - `TXFLOW_PROP_SHRINK=1`: on failure, shrink the first failing stream (drop chunks, rows,
//!   importance rows while the same check still fails) and print it.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::outputs::{is_ist_timestamp, read_csv, tree};
use common::reference::{self, action_of, Decision, Expected};
use common::streams::{self, Landing, Stream, StreamOptions};
use txflow::mechanism_y::{self, ReplayRange, RunSummary, YOptions};
use txflow::model::{Amount, Fraction, Thresholds};
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{EpochRow, LedgerRow};

const HEADER: &str =
    "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud";
const DETECTION_HEADER: &str =
    "YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId";

// ------------------------------------------------------------------------------------------
// Helpers for hand-written examples
// ------------------------------------------------------------------------------------------

/// A chunk in the real layout from `(customer, gender, merchant, category, amount)` rows.
fn chunk(rows: &[(&str, &str, &str, &str, &str)]) -> Vec<u8> {
    let mut text = format!("{HEADER}\n");
    for (c, g, m, t, a) in rows {
        text.push_str(&format!(
            "0,'{c}','4','{g}','28007','{m}','28007','{t}',{a},0\n"
        ));
    }
    text.into_bytes()
}

fn importance(rows: &[(&str, &str, &str, &str)]) -> Vec<u8> {
    let mut text = String::from("Source,Target,Weight,typeTrans,fraud\n");
    for (c, m, t, w) in rows {
        text.push_str(&format!("'{c}','{m}',{w},'{t}',0\n"));
    }
    text.into_bytes()
}

fn thresholds() -> Thresholds {
    Thresholds {
        upgrade_min_merchant_txns: 1_000_000,
        upgrade_count_percentile: Fraction::from_millionths(900_000),
        upgrade_weight_percentile: Fraction::from_millionths(100_000),
        child_min_txns: 1_000_000,
        child_max_avg_amount: Amount::from_micros(20_000_000),
        dei_min_female_customers: 1_000_000,
    }
}

fn det(epoch: u64, p: &str, c: &str, m: &str) -> (u64, String, String, String) {
    (epoch, p.to_string(), c.to_string(), m.to_string())
}

fn indexed(chunks: Vec<Vec<u8>>) -> Vec<(u64, Vec<u8>)> {
    chunks
        .into_iter()
        .enumerate()
        .map(|(k, c)| (k as u64, c))
        .collect()
}

// ------------------------------------------------------------------------------------------
// The reference's own tests
// ------------------------------------------------------------------------------------------

#[test]
fn reference_amount_grammar() {
    use reference::{parse_amount_micros as amount, parse_weight as weight};
    assert_eq!(amount("4.55"), Some(4_550_000));
    assert_eq!(amount("12"), Some(12_000_000));
    assert_eq!(amount("0.5"), Some(500_000));
    assert_eq!(amount("0"), Some(0));
    assert_eq!(amount("007.50"), Some(7_500_000));
    assert_eq!(amount("0.000001"), Some(1));
    assert_eq!(amount("999999999999.999999"), Some(999_999_999_999_999_999));
    for bad in [
        "",
        "-1",
        "+5",
        "1e3",
        "NaN",
        "inf",
        "1.1234567",
        "1000000000000",
        "1,5",
        "0x10",
        "1.2.3",
        " 5",
        "abc",
        "'4.55'",
    ] {
        assert_eq!(amount(bad), None, "{bad:?}");
    }
    assert_eq!(weight("-0.5"), Some(-0.5));
    assert_eq!(weight("0.25"), Some(0.25));
    for bad in ["--1", "+1", "-", "", "- 1", "1e3", "NaN"] {
        assert_eq!(weight(bad), None, "{bad:?}");
    }
    assert_eq!(reference::unquote("'C1'"), "C1");
    assert_eq!(reference::unquote("''C1''"), "'C1'");
    assert_eq!(reference::unquote("'"), "'");
    assert_eq!(reference::unquote("C1"), "C1");
}

#[test]
fn reference_parsing_rules() {
    // Permuted, partly double-quoted header; CRLF; blank lines; no final newline.
    let text = "\"amount\",customer,age,gender,zipcodeOri,\"merchant\",zipMerchant,category,step,fraud\r\n\
                \r\n\
                '4.55','C1','4','F','28007','M1','28007','es_food',0,0\r\n\
                4.55,C2,4,M,28007,M1,28007,es_food,x,\r\n\
                -1,'C3','4','M','28007','M1','28007','es_food',0,0\r\n\
                \r\n\
                1e3,'C3','4','M','28007','M1','28007','es_food',0,0\r\n\
                5,'C3','4','X','28007','M1','28007','es_food',0,0\r\n\
                5,'','4','M','28007','M1','28007','es_food',0,0\r\n\
                5,'C3','4','M','28007','M1','28007','es_food',0\r\n\
                \"1,5\",\"'C,4'\",'4','U','28007','M1','28007','es_food',0,0\r\n\
                5,\"'C,4'\",'4','E','28007','M1','28007','es_food',0,0";
    let out = reference::parse_chunk(text.as_bytes());
    assert_eq!(out.missing_column, None);
    assert_eq!(out.record_lines, vec![3, 4, 5, 7, 8, 9, 10, 11, 12]);
    assert_eq!(out.rejected_lines, vec![5, 7, 8, 9, 10, 11]);
    let got: Vec<(&str, &str, &str, i64)> = out
        .accepted
        .iter()
        .map(|t| {
            (
                t.customer.as_str(),
                t.gender.as_str(),
                t.merchant.as_str(),
                t.amount_micros,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("C1", "F", "M1", 4_550_000),
            ("C2", "M", "M1", 4_550_000),
            ("C,4", "E", "M1", 5_000_000)
        ]
    );
    let lines = reference::physical_lines(text.as_bytes());
    assert_eq!(
        lines[10].text,
        "\"1,5\",\"'C,4'\",'4','U','28007','M1','28007','es_food',0,0"
    );

    // Empty chunk (header only, no newline) and an empty file.
    let out = reference::parse_chunk(HEADER.as_bytes());
    assert_eq!((out.accepted.len(), out.rejected_lines.len()), (0, 0));
    assert_eq!(out.missing_column, None);
}

#[test]
fn reference_header_missing_column() {
    let text = format!(
        "{}\n0,'C1','4','F','28007','M1','28007','es_food',4.55,0\n\n0,'C1','4','F','28007','M1','28007','es_food',4.55,0\n",
        HEADER.replace("gender", "Gender")
    );
    let out = reference::parse_chunk(text.as_bytes());
    assert_eq!(out.missing_column.as_deref(), Some("gender"));
    assert!(out.accepted.is_empty());
    assert_eq!(out.rejected_lines, vec![2, 4]);
    let e = reference::expected(
        &indexed(vec![text.into_bytes()]),
        &importance(&[]),
        &thresholds(),
    );
    assert_eq!(e.epochs, vec![(0, 0, 2)]);
    assert!(e.counts.is_empty());
}

#[test]
fn reference_importance_mean_and_bad_rows() {
    let text = "Weight,\"Source\",Target,typeTrans,fraud\n\
                0.5,'C1','M1','es_food',0\n\
                '1.0','C1','M1','es_food',0\n\
                abc,'C1','M1','es_food',0\n\
                -0.25,C2,M1,es_food,0\n\
                1e3,'C3','M1','es_food',0\n\
                1,'C3','M1','es_food'\n";
    let out = reference::parse_importance(text.as_bytes());
    let key = |c: &str| (c.to_string(), "M1".to_string(), "es_food".to_string());
    assert_eq!(out.weights.get(&key("C1")), Some(&0.75));
    assert_eq!(out.weights.get(&key("C2")), Some(&-0.25));
    assert_eq!(out.weights.get(&key("C3")), None);
    assert_eq!(out.rejected_lines, vec![4, 6, 7]);
}

// ------------------------------------------------------------------------------------------
// The reference's framer (SPEC §2.1), hand-written cases
// ------------------------------------------------------------------------------------------

/// `(line, Some(fields) | None for an unbalanced-quote line)` of every record of `bytes`.
fn framed(bytes: &[u8]) -> Vec<(u64, Option<Vec<String>>)> {
    reference::frame_records(bytes)
        .records
        .into_iter()
        .map(|r| {
            let fields = match r.fields {
                reference::RefFields::Fields(f) => Some(
                    f.iter()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                ),
                reference::RefFields::Unbalanced => None,
            };
            (r.line, fields)
        })
        .collect()
}

fn rec(line: u64, fields: &[&str]) -> (u64, Option<Vec<String>>) {
    (line, Some(fields.iter().map(|f| f.to_string()).collect()))
}

fn unbalanced(line: u64) -> (u64, Option<Vec<String>>) {
    (line, None)
}

/// A BankSim row with the given customer and zip (`zipcodeOri`) fields, written as is.
fn row_with(customer: &str, zip: &str) -> String {
    format!("0,{customer},'4','F',{zip},'M1','28007','es_food',4.55,0")
}

#[test]
fn reference_framing_lines_lf_crlf_cr() {
    let lines = reference::physical_lines(b"h\r\na\rb\n\r\nc");
    let got: Vec<(u64, &str, &[u8])> = lines
        .iter()
        .map(|l| (l.number, l.text.as_str(), l.terminator.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "h", &b"\r\n"[..]),
            (2, "a", &b"\r"[..]),
            (3, "b", &b"\n"[..]),
            (4, "", &b"\r\n"[..]),
            (5, "c", &b""[..]),
        ]
    );
    // `\n\r` is two line breaks; `\r\r\n` is a CR then a CRLF.
    let texts = |b: &[u8]| -> Vec<String> {
        reference::physical_lines(b)
            .into_iter()
            .map(|l| l.text)
            .collect()
    };
    assert_eq!(texts(b"a\n\rb"), vec!["a", "", "b"]);
    assert_eq!(texts(b"a\r\r\nb\r"), vec!["a", "", "b"]);
    assert_eq!(texts(b""), Vec::<String>::new());
    assert_eq!(texts(b"\r\n"), vec![""]);
    assert_eq!(texts(b"x"), vec!["x"]);
    // The terminators are kept byte for byte: lines and terminators give back the input.
    let input = b"h\r\n\ra,\"b\r\nc\"\n\n\rz";
    let mut again = Vec::new();
    for l in reference::physical_lines(input) {
        again.extend_from_slice(&l.bytes);
        again.extend_from_slice(&l.terminator);
    }
    assert_eq!(again, input);
}

#[test]
fn reference_framing_mixed_terminators_and_blank_lines() {
    // Blank lines before the header, between records and at the end: skipped, but counted.
    let text = "\r\n\na,b,c\r1,2,3\r\n\r\n4,5,6\n\r7,8\r\n\n";
    let f = reference::frame_records(text.as_bytes());
    assert_eq!(f.header.as_ref().map(|h| h.number), Some(3));
    assert_eq!(
        f.header_fields,
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(
        framed(text.as_bytes()),
        vec![
            rec(4, &["1", "2", "3"]),
            rec(6, &["4", "5", "6"]),
            // A single-line record of the wrong field count is still a record.
            rec(8, &["7", "8"]),
        ]
    );
    // Only blank lines: no header, no record.
    assert_eq!(reference::frame_records(b"\n\r\n\r").header, None);
    // A header and nothing else.
    assert!(framed(b"a,b\r\n\r\n").is_empty());
}

#[test]
fn reference_framing_byte_order_mark_before_the_header() {
    let text =
        "\u{feff}step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\n\
                0,'C0','4','F','28007','M0','28007','es_food',0.5,0\n";
    let f = reference::frame_records(text.as_bytes());
    assert_eq!(f.header_fields[0], b"step".to_vec());
    let chunk = reference::parse_chunk(text.as_bytes());
    assert_eq!(chunk.missing_column, None);
    assert_eq!(chunk.accepted.len(), 1);
    // The crate agrees.
    let parsed = txflow::sources::parse::parse_chunk("chunk-000000.csv", text.as_bytes(), 1, 0);
    assert_eq!((parsed.txns.len(), parsed.rejects.len()), (1, 0));
}

#[test]
fn reference_framing_quoted_fields() {
    let text = "a,b,c\n\
                x,\"y,z\",w\n\
                \"q\"\"q\",\"\",\"\"\"\"\n\
                \"ab\"cd,\"e\"f\"g\",h\n\
                ,,\n";
    assert_eq!(
        framed(text.as_bytes()),
        vec![
            rec(2, &["x", "y,z", "w"]),
            // Doubled quotes inside quotes; an empty quoted field; a field that is one quote.
            rec(3, &["q\"q", "", "\""]),
            // A quote followed by anything but a quote, a comma or the line's end makes the
            // field malformed: the line is not a record.
            unbalanced(4),
            rec(5, &["", "", ""]),
        ]
    );
}

#[test]
fn reference_framing_quote_inside_unquoted_field_is_ordinary() {
    let text = "a,b,c\n\
                x\"y,z,w\n\
                x,y\",z\"\n\
                \u{20}\"p,q\",r\n";
    assert_eq!(
        framed(text.as_bytes()),
        vec![
            rec(2, &["x\"y", "z", "w"]),
            rec(3, &["x", "y\"", "z\""]),
            // A quote after a space is not at the start of the field.
            rec(4, &[" \"p", "q\"", "r"]),
        ]
    );
    // In a chunk: a customer holding a stray quote is a good name.
    let chunk = format!("{HEADER}\n{}\n", row_with("'C1\"23'", "'28007'"));
    let out = reference::parse_chunk(chunk.as_bytes());
    assert_eq!(out.rejected_lines, Vec::<u64>::new());
    assert_eq!(out.accepted[0].customer, "C1\"23");
}

#[test]
fn reference_framing_embedded_line_breaks() {
    // LF, CRLF and CR inside quotes belong to the field, byte for byte; the record's line is
    // its first line, and the lines it spans count for the next record's number.
    let text = "a,b,c\n\
                1,\"x\ny\",2\n\
                3,\"x\r\ny\",4\r\n\
                5,\"x\ry\r\rz\",6\r\
                7,8,9\n";
    // (Line 6 `5,"x`, line 7 `y`, line 8 blank inside the quotes, line 9 `z",6`.)
    assert_eq!(
        framed(text.as_bytes()),
        vec![
            rec(2, &["1", "x\ny", "2"]),
            rec(4, &["3", "x\r\ny", "4"]),
            rec(6, &["5", "x\ry\r\rz", "6"]),
            rec(10, &["7", "8", "9"]),
        ]
    );
    // A blank line inside quotes is part of the field.
    assert_eq!(
        framed(b"a,b\n\"x\n\ny\",z\n"),
        vec![rec(2, &["x\n\ny", "z"])]
    );
    let f = reference::frame_records(text.as_bytes());
    assert_eq!(f.records[1].raw, b"3,\"x\r\ny\",4");
    assert_eq!(f.records[1].terminator, b"\r\n");
    assert_eq!(f.records[2].raw, b"5,\"x\ry\r\rz\",6");
    assert_eq!(f.records[2].terminator, b"\r");
}

#[test]
fn reference_framing_multiline_record_with_header_count_is_a_record() {
    // A line break inside the (unvalidated) zip: accepted. Inside the customer: a control
    // character in a name, so rejected, as one record at its first line.
    let text = format!(
        "{HEADER}\r\n{}\r\n{}\r\n{}\r\n",
        row_with("'C1'", "\"'280\r\n07'\""),
        row_with("\"'C\n2'\"", "'28007'"),
        row_with("'C3'", "'28007'"),
    );
    let out = reference::parse_chunk(text.as_bytes());
    assert_eq!(out.record_lines, vec![2, 4, 6]);
    assert_eq!(out.rejected_lines, vec![4]);
    assert_eq!(
        out.rejects[0].reason,
        reference::RejectReason::BadValue("customer")
    );
    assert_eq!(
        out.rejects[0].raw,
        row_with("\"'C\n2'\"", "'28007'").into_bytes()
    );
    let customers: Vec<&str> = out.accepted.iter().map(|t| t.customer.as_str()).collect();
    assert_eq!(customers, vec!["C1", "C3"]);
}

#[test]
fn reference_framing_stray_quote_costs_one_line() {
    // Line 2 opens a quote that a later quote (line 4) closes: lines 2–4 would make a record
    // of 4 fields, not 3, so line 2 alone is rejected and framing resumes at line 3.
    let text = "a,b,c\n\
                1,\"2,3\n\
                4,5,6\n\
                7,8\",9,10\n\
                10,11,12\n";
    assert_eq!(
        framed(text.as_bytes()),
        vec![
            unbalanced(2),
            rec(3, &["4", "5", "6"]),
            rec(4, &["7", "8\"", "9", "10"]),
            rec(5, &["10", "11", "12"]),
        ]
    );
    // With the header's field count the same lines are one record (line 2 to line 4).
    assert_eq!(
        framed(b"a,b,c\n1,\"2,3\n4,5,6\n7,8\",9\n10,11,12\n"),
        vec![
            rec(2, &["1", "2,3\n4,5,6\n7,8", "9"]),
            rec(5, &["10", "11", "12"]),
        ]
    );
    // In a chunk: the stray quote at the start of a customer costs that row only.
    let text = format!(
        "{HEADER}\n{}\n{}\n{}\n{}\n",
        row_with("'C1'", "'28007'"),
        row_with("\"'C2'", "'28007'"),
        row_with("'C3'", "'28007'"),
        row_with("'C4'", "'28\"007'"),
    );
    let out = reference::parse_chunk(text.as_bytes());
    assert_eq!(out.record_lines, vec![2, 3, 4, 5]);
    assert_eq!(out.rejected_lines, vec![3]);
    assert_eq!(
        out.rejects[0].reason,
        reference::RejectReason::UnbalancedQuote
    );
    assert_eq!(
        out.rejects[0].raw,
        row_with("\"'C2'", "'28007'").into_bytes()
    );
    assert_eq!(out.accepted.len(), 3);
}

#[test]
fn reference_framing_quoted_field_ends_only_before_a_comma_a_line_end_or_the_end() {
    // An unclosed quote (line 2) meets a stray quote inside a field (line 4): a malformed
    // field, so line 2 alone is rejected; it never pairs with the stray quote.
    assert_eq!(
        framed(b"a,b\n\"C1,1\nC2,2\nC3\"x,3\n"),
        vec![unbalanced(2), rec(3, &["C2", "2"]), rec(4, &["C3\"x", "3"])]
    );
    // Closing quotes before a comma, CRLF and the end of the data.
    assert_eq!(
        framed(b"a,b\n\"x\ny\",1\r\n\"z\",\"w\""),
        vec![rec(2, &["x\ny", "1"]), rec(4, &["z", "w"])]
    );
    // A record spanning lines is at most 1 MiB long (without its terminator).
    let spanning = |len: usize| {
        let mut text = b"a,b\n\"".to_vec();
        text.extend(std::iter::repeat_n(b'x', len - 6));
        text.extend_from_slice(b"\ny\",1\n");
        text
    };
    let limit = reference::MAX_RECORD_BYTES;
    assert_eq!(framed(&spanning(limit)).len(), 1);
    assert_eq!(
        framed(&spanning(limit + 1)),
        vec![unbalanced(2), rec(3, &["y\"", "1"])]
    );
}

#[test]
fn reference_framing_unclosed_quote_at_end_of_data() {
    // Single line, with and without a terminator.
    assert_eq!(
        framed(b"a,b\n1,2\n3,\"4"),
        vec![rec(2, &["1", "2"]), unbalanced(3)]
    );
    assert_eq!(framed(b"a,b\n3,\"4\r\n"), vec![unbalanced(2)]);
    // Several lines to the end: the first is rejected, the rest framed again from line 3.
    assert_eq!(
        framed(b"a,b\n\"1,2\n3,4\r5,6\n"),
        vec![unbalanced(2), rec(3, &["3", "4"]), rec(4, &["5", "6"])]
    );
    // ... even when the lines to the end have the header's field count.
    assert_eq!(
        framed(b"a,b\n1,\"2\n3\n"),
        vec![unbalanced(2), rec(3, &["3"])]
    );
    // Resynchronisation can meet another open quote.
    assert_eq!(
        framed(b"a,b\n\"1\n\"2\n3,4\n"),
        vec![unbalanced(2), unbalanced(3), rec(4, &["3", "4"])]
    );
    let f = reference::frame_records(b"a,b\n3,\"4");
    assert_eq!(
        (
            f.records[0].raw.as_slice(),
            f.records[0].terminator.as_slice()
        ),
        (&b"3,\"4"[..], &b""[..])
    );
    assert_eq!(f.records[0].copied(), b"3,\"4\n");
}

#[test]
fn reference_framing_header_is_one_line() {
    // A quote open at the end of the header closes there.
    assert_eq!(
        reference::split_fields("a,\"b,c"),
        vec!["a".to_string(), "b,c".to_string()]
    );
    let f = reference::frame_records(b"a,\"b,c\n1,2\"\n");
    assert_eq!(f.header_fields.len(), 2);
    assert_eq!(f.header.as_ref().map(|h| h.number), Some(1));
    assert_eq!(framed(b"a,\"b,c\n1,2\"\n"), vec![rec(2, &["1", "2\""])]);
    // Header names may be wrapped in double quotes.
    let text = format!(
        "\"step\",customer,\"age\",gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\n{}\n",
        row_with("'C1'", "'28007'")
    );
    let out = reference::parse_chunk(text.as_bytes());
    assert_eq!((out.missing_column, out.accepted.len()), (None, 1));
}

#[test]
fn reference_framing_line_numbers_with_lone_crs() {
    let text = format!(
        "{HEADER}\r{}\r\r{}\r\n\n{}",
        row_with("'C1'", "'28007'"),
        row_with("'C2'", "'28007'"),
        row_with("'C3'", "'-'")
    );
    let out = reference::parse_chunk(text.as_bytes());
    assert_eq!(out.record_lines, vec![2, 4, 6]);
    assert_eq!(out.rejected_lines, Vec::<u64>::new());
    // A missing column rejects every record, unbalanced-quote lines included.
    let text = format!(
        "{}\r{}\r\"x\r{}\r",
        HEADER.replace("amount", "Amount"),
        row_with("'C1'", "'28007'"),
        row_with("'C2'", "'28007'")
    );
    let out = reference::parse_chunk(text.as_bytes());
    assert_eq!(out.missing_column.as_deref(), Some("amount"));
    assert_eq!(out.record_lines, vec![2, 3, 4]);
    assert_eq!(out.rejected_lines, vec![2, 3, 4]);
}

#[test]
fn reference_framing_field_count_and_control_characters() {
    let text = format!(
        "{HEADER}\n\
         {}\n\
         0,'C2','4','F'\n\
         {}\n\
         {}\n\
         0,'C5','4','F','28007','M\u{7f}','28007','es_food',4.55,0\n\
         0,'C6','4','F','28007','M1','28007','es\tfood',4.55,0\n\
         0\u{0},'C7','4','F','28\u{1b}007','M1','28007','es_food',4.55,0\n\
         0,'C8\u{80}','4','F','28007','M1','28007','es_food',4.55,0\n",
        row_with("'C1'", "'28007'"),
        row_with("'C\u{0}3'", "'28007'"),
        row_with("''", "'28007'"),
    );
    let out = reference::parse_chunk(text.as_bytes());
    use reference::RejectReason::*;
    let reasons: Vec<(u64, reference::RejectReason)> = out
        .rejects
        .iter()
        .map(|r| (r.line, r.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                3,
                FieldCount {
                    expected: 10,
                    found: 4
                }
            ),
            (4, BadValue("customer")),
            (5, BadValue("customer")),
            (6, BadValue("merchant")),
            (7, BadValue("category")),
        ]
    );
    // Control characters in unvalidated columns are carried; U+0080 is not a control
    // character of the SPEC's range.
    let customers: Vec<&str> = out.accepted.iter().map(|t| t.customer.as_str()).collect();
    assert_eq!(customers, vec!["C1", "C7", "C8\u{80}"]);

    let imp = "Source,Target,Weight,typeTrans,fraud\n\
               'C1','M1',0.5,'es_food',0\n\
               'C\u{0}1','M1',0.5,'es_food',0\n\
               'C1','M\u{1f}1',0.5,'es_food',0\n\
               'C1','M1',0.5,'es\u{7f}',0\n\
               'C1',\"'M1,0.5,'es_food',0\n\
               'C1','M1',0.5\n";
    let out = reference::parse_importance(imp.as_bytes());
    assert_eq!(out.rejected_lines, vec![3, 4, 5, 6, 7]);
    assert_eq!(out.rejects[3].reason, UnbalancedQuote);
    assert_eq!(out.weights.len(), 1);
}

#[test]
fn reference_framing_accepts_any_bytes() {
    // Non-UTF-8 bytes anywhere: framed, decoded lossily, no panic.
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"\n0,'C1','4','F','28\xff007','M1','28007','es_food',4.55,0\r");
    bytes.extend_from_slice(b"\xfe\xff,\"\xc3\r\n");
    // A name must be text: not UTF-8 is a bad value.
    bytes.extend_from_slice(b"0,'C1','4','F','28007','M\xc3','28007','es_food',4.55,0\n");
    let out = reference::parse_chunk(&bytes);
    assert_eq!(out.record_lines, vec![2, 3, 4]);
    assert_eq!(out.rejected_lines, vec![3, 4]);
    assert_eq!(out.rejects[0].raw, b"\xfe\xff,\"\xc3");
    assert_eq!(
        out.rejects[0].reason,
        reference::RejectReason::UnbalancedQuote
    );
    assert_eq!(
        out.rejects[1].reason,
        reference::RejectReason::BadValue("merchant")
    );
    assert_eq!(out.accepted.len(), 1);
    let f = reference::frame_records(b"\xff\xfe,a,b\n\x00,\"\xff\n\xff\",z\n");
    assert_eq!(
        f.header_fields,
        vec![b"\xff\xfe".to_vec(), b"a".to_vec(), b"b".to_vec()]
    );
    assert_eq!(
        f.records[0].fields,
        reference::RefFields::Fields(vec![
            b"\x00".to_vec(),
            b"\xff\n\xff".to_vec(),
            b"z".to_vec()
        ])
    );
}

#[test]
fn reference_percentile_cont() {
    use reference::{percentile_cont_f64, percentile_cont_scaled};
    assert_eq!(percentile_cont_scaled(&[1, 2, 3, 4], 900_000), 3_700_000);
    assert_eq!(percentile_cont_scaled(&[1, 2, 3, 4], 0), 1_000_000);
    assert_eq!(percentile_cont_scaled(&[1, 2, 3, 4], 1_000_000), 4_000_000);
    assert_eq!(percentile_cont_scaled(&[1, 2, 3, 4], 500_000), 2_500_000);
    assert_eq!(percentile_cont_scaled(&[7], 900_000), 7_000_000);
    assert_eq!(percentile_cont_scaled(&[1, 1, 1, 5], 900_000), 3_800_000);
    // 0.9 · 10 = 9 exactly: no interpolation.
    let eleven: Vec<u64> = (0..11).collect();
    assert_eq!(percentile_cont_scaled(&eleven, 900_000), 9_000_000);
    assert!((percentile_cont_f64(&[0.1, 0.2, 0.3, 0.4], 100_000) - 0.13).abs() < 1e-15);
    assert_eq!(percentile_cont_f64(&[0.5, 0.5], 100_000), 0.5);
    assert_eq!(reference::weight_le(0.5, 0.5), Decision::Tie);
    assert_eq!(reference::weight_le(0.5, 0.5 + 1e-12), Decision::Tie);
    assert_eq!(reference::weight_le(0.5, 0.5 + 1e-6), Decision::Holds);
    assert_eq!(reference::weight_le(0.5 + 1e-6, 0.5), Decision::Fails);
}

#[test]
fn reference_patid1_percentile_interpolation() {
    // M1: C1..C4 with 1..4 transactions (N = 10); weights 0.5, 0.5, 0.5, 0.1 at p_w = 0.5
    // (→ 0.5: every W qualifies, C4's without a tie).
    // Counts {1,2,3,4} at p = 0.9 → 3.7: only C4 (n = 4) qualifies.
    let mut rows = Vec::new();
    for (i, c) in ["C1", "C2", "C3", "C4"].iter().enumerate() {
        for _ in 0..=i {
            rows.push((*c, "F", "M1", "es_food", "1"));
        }
    }
    let imp = importance(&[
        ("C1", "M1", "es_food", "0.5"),
        ("C2", "M1", "es_food", "0.5"),
        ("C3", "M1", "es_food", "0.5"),
        ("C4", "M1", "es_food", "0.1"),
    ]);
    let mut t = thresholds();
    t.upgrade_weight_percentile = Fraction::from_millionths(500_000);
    t.upgrade_min_merchant_txns = 9;
    let e = reference::expected(&indexed(vec![chunk(&rows)]), &imp, &t);
    assert_eq!(e.detections, vec![det(0, "PatId1", "C4", "M1")]);
    assert!(e.tie_leeway.is_empty());

    // N(m) > thr is strict.
    t.upgrade_min_merchant_txns = 10;
    let e = reference::expected(&indexed(vec![chunk(&rows)]), &imp, &t);
    assert!(e.detections.is_empty());

    // Weight percentile: four customers with one transaction each, weights 0.1..0.4, p_w = 0.1
    // → 0.13; p = 0 for counts. Only C1 (0.1) qualifies. C5 has no weight: not a candidate
    // and not in the weight set (else the percentile would change).
    let rows = [
        ("C1", "F", "M1", "es_food", "1"),
        ("C2", "F", "M1", "es_food", "1"),
        ("C3", "F", "M1", "es_food", "1"),
        ("C4", "F", "M1", "es_food", "1"),
        ("C5", "F", "M1", "es_food", "1"),
    ];
    let imp = importance(&[
        ("C1", "M1", "es_food", "0.1"),
        ("C2", "M1", "es_food", "0.2"),
        ("C3", "M1", "es_food", "0.3"),
        ("C4", "M1", "es_food", "0.4"),
        ("C5", "M1", "es_health", "0.0"),
    ]);
    let mut t = thresholds();
    t.upgrade_min_merchant_txns = 0;
    t.upgrade_count_percentile = Fraction::from_millionths(0);
    let e = reference::expected(&indexed(vec![chunk(&rows)]), &imp, &t);
    assert_eq!(e.detections, vec![det(0, "PatId1", "C1", "M1")]);

    // W is the mean over the transactions that have a weight: C1 has es_food (0.1) and
    // es_health (no weight) → W = 0.1; C2 has es_food 0.2 and es_tech 1.0 → W = 0.6.
    let rows = [
        ("C1", "F", "M1", "es_food", "1"),
        ("C1", "F", "M1", "es_health", "1"),
        ("C2", "F", "M1", "es_food", "1"),
        ("C2", "F", "M1", "es_tech", "1"),
    ];
    let imp = importance(&[
        ("C1", "M1", "es_food", "0.1"),
        ("C2", "M1", "es_food", "0.2"),
        ("C2", "M1", "es_tech", "1.0"),
    ]);
    t.upgrade_weight_percentile = Fraction::from_millionths(500_000); // → 0.35
    let e = reference::expected(&indexed(vec![chunk(&rows)]), &imp, &t);
    assert_eq!(e.detections, vec![det(0, "PatId1", "C1", "M1")]);
}

#[test]
fn reference_patid1_weight_ties_have_leeway() {
    // Two customers with equal W: at p_w = 0 the percentile is that W, so both are ties.
    // C3's W is strictly above it.
    let rows = [
        ("C1", "F", "M1", "es_food", "1"),
        ("C2", "F", "M1", "es_food", "1"),
        ("C3", "F", "M1", "es_food", "1"),
    ];
    let imp = importance(&[
        ("C1", "M1", "es_food", "0.5"),
        ("C2", "M1", "es_food", "0.25"),
        ("C2", "M1", "es_food", "0.75"),
        ("C3", "M1", "es_food", "0.6"),
    ]);
    let mut t = thresholds();
    t.upgrade_min_merchant_txns = 0;
    t.upgrade_count_percentile = Fraction::from_millionths(0);
    t.upgrade_weight_percentile = Fraction::from_millionths(0);
    let chunks = indexed(vec![chunk(&rows), chunk(&[])]);
    let e = reference::expected(&chunks, &imp, &t);
    assert_eq!(
        e.detections,
        vec![det(0, "PatId1", "C1", "M1"), det(0, "PatId1", "C2", "M1")]
    );
    assert_eq!(e.tie_leeway.len(), 2);
    let leeway = &e.tie_leeway[&("PatId1".to_string(), "C1".to_string(), "M1".to_string())];
    assert_eq!(leeway.first_epochs, BTreeSet::from([0, 1]));
    assert!(leeway.may_never);
    // Ties decided either way are accepted; a non-tie never is.
    assert_eq!(e.check_ledger(&e.detections).unwrap().decided_other_way, 0);
    assert_eq!(e.check_ledger(&[]).unwrap().decided_other_way, 2);
    let late = [det(1, "PatId1", "C1", "M1"), det(1, "PatId1", "C2", "M1")];
    assert_eq!(e.check_ledger(&late).unwrap().decided_other_way, 2);
    assert!(e.check_ledger(&[det(0, "PatId1", "C3", "M1")]).is_err());
}

#[test]
fn reference_patid2_emit_once() {
    let mut t = thresholds();
    t.child_min_txns = 2;
    let c0 = chunk(&[
        ("C1", "M", "M1", "es_food", "10"),
        ("C1", "M", "M1", "es_food", "29.999999"), // avg 19.9999995 < 20
        ("C2", "M", "M1", "es_food", "10"),
        ("C2", "M", "M1", "es_food", "30"), // avg exactly 20: not < 20
        ("C3", "M", "M1", "es_food", "1"),  // n = 1 < 2
    ]);
    let c1 = chunk(&[("C1", "M", "M1", "es_food", "100")]); // avg 46.67: false
    let c2 = chunk(&[
        ("C1", "M", "M1", "es_food", "0"),
        ("C1", "M", "M1", "es_food", "0"),
        ("C1", "M", "M1", "es_food", "0"),
        ("C1", "M", "M1", "es_food", "0"),
        ("C1", "M", "M1", "es_food", "0"), // 140/8 = 17.5: true again
        ("C2", "M", "M1", "es_food", "19.999999"),
    ]);
    let e = reference::expected(&indexed(vec![c0, c1, c2]), &importance(&[]), &t);
    assert_eq!(
        e.detections,
        vec![det(0, "PatId2", "C1", "M1"), det(2, "PatId2", "C2", "M1")]
    );
    assert_eq!(e.epochs, vec![(0, 5, 0), (1, 1, 0), (2, 6, 0)]);
    assert_eq!(e.counts, BTreeMap::from([("M1".to_string(), 12)]));
}

#[test]
fn reference_patid3_both_genders_and_order() {
    let mut t = thresholds();
    t.dei_min_female_customers = 0;
    // M348934600: C1 seen as F and as M, C2 M → F = 1 < M = 2 → detected.
    // M1823072687: C1 F, C2 M → F = M → not yet; then C3 M → detected at epoch 1.
    let c0 = chunk(&[
        ("C1", "F", "M348934600", "es_food", "1"),
        ("C1", "M", "M348934600", "es_food", "1"),
        ("C2", "M", "M348934600", "es_food", "1"),
        ("C1", "F", "M1823072687", "es_food", "1"),
        ("C2", "M", "M1823072687", "es_food", "1"),
        ("C3", "E", "M1823072687", "es_food", "1"),
        ("C4", "U", "M1823072687", "es_food", "1"),
    ]);
    let c1 = chunk(&[("C3", "M", "M1823072687", "es_food", "1")]);
    let e = reference::expected(&indexed(vec![c0.clone(), c1.clone()]), &importance(&[]), &t);
    assert_eq!(
        e.detections,
        vec![
            det(0, "PatId3", "", "M348934600"),
            det(1, "PatId3", "", "M1823072687")
        ]
    );
    // F > thr is strict.
    t.dei_min_female_customers = 1;
    let e = reference::expected(&indexed(vec![c0, c1]), &importance(&[]), &t);
    assert!(e.detections.is_empty());

    // Within an epoch: by pattern, then merchant, then customer, bytewise.
    let mut t = thresholds();
    t.child_min_txns = 1;
    t.dei_min_female_customers = 0;
    let c0 = chunk(&[
        ("C9", "M", "M348934600", "es_food", "1"),
        ("C10", "M", "M348934600", "es_food", "1"),
        ("C9", "M", "M1823072687", "es_food", "1"),
        ("C1", "F", "M1823072687", "es_food", "1"),
        ("C2", "M", "M1823072687", "es_food", "1"),
    ]);
    let e = reference::expected(&indexed(vec![c0]), &importance(&[]), &t);
    assert_eq!(
        e.detections,
        vec![
            det(0, "PatId2", "C1", "M1823072687"),
            det(0, "PatId2", "C2", "M1823072687"),
            det(0, "PatId2", "C9", "M1823072687"),
            det(0, "PatId2", "C10", "M348934600"),
            det(0, "PatId2", "C9", "M348934600"),
            det(0, "PatId3", "", "M1823072687"),
        ]
    );
    assert!(e.check_ledger(&e.detections).is_ok());
    let mut swapped = e.detections.clone();
    swapped.swap(3, 4);
    assert!(e.check_ledger(&swapped).is_err());
    let mut twice = e.detections.clone();
    twice.push(det(1, "PatId2", "C1", "M1823072687"));
    assert!(e.check_ledger(&twice).is_err());
    assert!(e.check_ledger(&e.detections[1..]).is_err());
}

#[test]
fn reference_time_format() {
    assert_eq!(streams::unix_ms(1970, 1, 1, 0, 0, 0, 0), 0);
    assert_eq!(
        streams::unix_ms(2025, 11, 25, 15, 40, 3, 123),
        1_764_085_203_123
    );
    assert_eq!(streams::format_ist(0), "1970-01-01T05:30:00.000+05:30");
    assert_eq!(
        streams::format_ist(1_764_085_203_123),
        "2025-11-25T21:10:03.123+05:30"
    );
    assert_eq!(
        streams::format_ist(streams::chunk_mtime_ms(0)),
        "2028-02-28T23:59:58.500+05:30"
    );
    assert_eq!(
        streams::format_ist(streams::chunk_mtime_ms(2)),
        "2028-02-29T00:00:00.968+05:30"
    );
}

/// The generator is deterministic, and over the default seeds it produces every edge case
/// the property tests rely on (this guards against a generator change making them toothless).
#[test]
fn reference_generator_covers_edge_cases() {
    let opts = StreamOptions::default();
    assert_eq!(
        streams::random_stream(7, &opts).chunks,
        streams::random_stream(7, &opts).chunks
    );
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let mut max_detections = 0;
    let mut bump = |what: &'static str, yes: bool| *seen.entry(what).or_insert(0) += yes as u64;
    for seed in 0..prop_seed_count() as u64 {
        let s = streams::random_stream(seed, &opts);
        let e = reference::expected(&s.chunks, &s.importance, &s.thresholds);
        for p in ["PatId1", "PatId2", "PatId3"] {
            let n = e.detections.iter().filter(|d| d.1 == p).count();
            bump(p, n > 0);
        }
        bump("tie-touched PatId1", !e.tie_leeway.is_empty());
        bump(">50 detections", e.detections.len() > 50);
        bump(
            "detection at a later epoch",
            e.detections.iter().any(|d| d.0 > 0),
        );
        for (k, out) in &e.chunks {
            let bytes = &s.chunks[*k as usize].1;
            bump("header error", out.missing_column.is_some());
            bump("empty chunk", out.record_lines.is_empty());
            bump(
                "only bad rows",
                !out.record_lines.is_empty() && out.rejected_lines.len() == out.record_lines.len(),
            );
            bump("CRLF", bytes.windows(2).any(|w| w == b"\r\n"));
            bump(
                "blank line",
                reference::physical_lines(bytes)
                    .iter()
                    .any(|l| l.text.is_empty()),
            );
            bump("permuted header", !bytes.starts_with(b"step,customer"));
        }
        bump(
            "importance rejects",
            !e.importance.rejected_lines.is_empty(),
        );
        let accepted: Vec<&reference::RefTxn> =
            e.chunks.iter().flat_map(|(_, c)| &c.accepted).collect();
        let genders: BTreeSet<(&str, &str, &str)> = accepted
            .iter()
            .map(|t| (t.merchant.as_str(), t.customer.as_str(), t.gender.as_str()))
            .collect();
        bump(
            "customer both F and M at a merchant",
            genders
                .iter()
                .any(|(m, c, g)| *g == "F" && genders.contains(&(m, c, "M"))),
        );
        bump(
            "amount at the limit",
            accepted
                .iter()
                .any(|t| t.amount_micros == s.thresholds.child_max_avg_amount.micros),
        );
        bump(
            "huge amount",
            accepted.iter().any(|t| t.amount_micros > 1_000_000_000_000),
        );
        bump(
            "exotic name",
            accepted
                .iter()
                .any(|t| !t.customer.bytes().all(|b| b.is_ascii_alphanumeric())),
        );
        max_detections = max_detections.max(e.detections.len());
        // A condition going true → false → true: PatId2 of some pair.
        bump("child flip-flop", child_flip_flop(&s));
    }
    eprintln!(
        "generator coverage over {} seeds (max detections {max_detections}): {seen:#?}",
        prop_seed_count()
    );
    for (what, n) in &seen {
        assert!(*n > 0, "no seed produced {what}");
    }
}

/// Whether some (customer, merchant) pair's PatId2 condition holds, fails, then holds again.
fn child_flip_flop(s: &Stream) -> bool {
    let imp = reference::parse_importance(&s.importance);
    let mut txns = Vec::new();
    let mut history: BTreeMap<(String, String, String), Vec<bool>> = BTreeMap::new();
    for (k, bytes) in &s.chunks {
        txns.extend(reference::parse_chunk(bytes).accepted);
        let now = reference::evaluate(&txns, &imp.weights, &s.thresholds);
        for key in now.keys() {
            history
                .entry(key.clone())
                .or_insert_with(|| vec![false; *k as usize]);
        }
        for (key, h) in history.iter_mut() {
            h.push(now.contains_key(key));
        }
    }
    history.iter().any(|(key, h)| {
        key.0 == "PatId2"
            && h.windows(2).any(|w| w[0] && !w[1])
            && h.iter()
                .skip_while(|b| !**b)
                .skip_while(|b| **b)
                .any(|b| *b)
    })
}

// ------------------------------------------------------------------------------------------
// Running the pipeline
// ------------------------------------------------------------------------------------------

fn prop_seed_count() -> usize {
    std::env::var("TXFLOW_PROP_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn prop_seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("TXFLOW_PROP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![seed];
    }
    let base: u64 = std::env::var("TXFLOW_PROP_SEED_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (base..base + prop_seed_count() as u64).collect()
}

/// What one pipeline run left behind.
struct Observed {
    summary: RunSummary,
    ledger: Vec<LedgerRow>,
    counts: Vec<(String, i64)>,
    epochs: Vec<EpochRow>,
    output: PathBuf,
}

fn run_pipeline(
    landing: &Landing,
    work: &Path,
    name: &str,
    thresholds: Thresholds,
    workers: usize,
    replay: Option<ReplayRange>,
    http: bool,
) -> Result<Observed, String> {
    let output = work.join(format!("out-{name}"));
    let state = format!(
        "sqlite://{}",
        work.join(format!("state-{name}.db")).display()
    );
    let mut opts = YOptions::new(
        landing.landing.to_str().unwrap(),
        landing.importance.to_str().unwrap(),
        output.to_str().unwrap(),
        StateConfig::parse(&state).unwrap(),
    );
    opts.mode = replay.map_or_else(Default::default, txflow::mechanism_y::Mode::replay);
    opts.thresholds = thresholds;
    opts.timely.workers = workers;
    let scraper = http.then(|| Scraper::start(&mut opts));
    let summary = mechanism_y::run(&opts).map_err(|e| format!("(run) {name}: run failed: {e:#}"));
    let answers = scraper.map(Scraper::stop);
    if answers == Some(0) {
        return Err(format!("(run) {name}: the endpoint never answered"));
    }
    let summary = summary?;
    let mut store = txflow::sinks::state::open(&StateConfig::parse(&state).unwrap())
        .map_err(|e| format!("(run) {name}: opening the state store: {e}"))?;
    let ledger = store
        .ledger(txflow::sinks::state::LedgerId::Baseline)
        .map_err(|e| format!("(run) ledger: {e}"))?;
    let counts = store
        .merchant_counts()
        .map_err(|e| format!("(run) counts: {e}"))?;
    let epochs = store
        .epoch_rows()
        .map_err(|e| format!("(run) epochs: {e}"))?;
    Ok(Observed {
        summary,
        ledger,
        counts,
        epochs,
        output,
    })
}

/// Scrapes the run's endpoint (`--http`) over and over on a thread of its own while it runs.
struct Scraper {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Answers received.
    thread: std::thread::JoinHandle<u64>,
}

impl Scraper {
    fn start(opts: &mut YOptions) -> Scraper {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        opts.http = Some(([127, 0, 0, 1], port).into());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut answers = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for path in ["/metrics", "/api/status", "/readyz"] {
                    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                        let _ = write!(s, "GET {path} HTTP/1.1\r\n\r\n");
                        let mut reply = Vec::new();
                        let _ = s.read_to_end(&mut reply);
                        answers += reply.starts_with(b"HTTP/1.1 ") as u64;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            answers
        });
        Scraper { done, thread }
    }

    /// Stops scraping; the number of answers.
    fn stop(self) -> u64 {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Checks (a)–(e) and the times of one run against the reference. Each problem starts with
/// its check's tag, e.g. `(a)`.
fn check_run(
    stream: &Stream,
    e: &Expected,
    landing: &Landing,
    got: &Observed,
    replay: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |tag: &str, msg: String| problems.push(format!("({tag}) {msg}"));

    // (a) the ledger
    for (i, row) in got.ledger.iter().enumerate() {
        if row.seq != i as u64 {
            problem("a", format!("ledger row {i} has seq {}", row.seq));
        }
        if reference::PAT_UPGRADE != row.pattern.id()
            && reference::PAT_CHILD != row.pattern.id()
            && reference::PAT_DEI != row.pattern.id()
        {
            problem(
                "a",
                format!("ledger row {i}: pattern {:?}", row.pattern.id()),
            );
        } else if row.pattern.action() != action_of(row.pattern.id()) {
            problem(
                "a",
                format!(
                    "ledger row {i}: action {:?} for {}",
                    row.pattern.action(),
                    row.pattern.id()
                ),
            );
        }
        if row.file_seq != Some(row.seq / 50) {
            problem("a", format!("ledger row {i}: file_seq {:?}", row.file_seq));
        }
    }
    let tuples: Vec<(u64, String, String, String)> =
        common::reference::ledger_identities(&got.ledger);
    match e.check_ledger(&tuples) {
        Ok(report) => {
            if report.decided_other_way > 0 && std::env::var("TXFLOW_PROP_STRICT_TIES").is_ok() {
                problem(
                    "a",
                    format!(
                        "{} of {} tie-touched detections decided as \"fails\" (strict ties)",
                        report.decided_other_way, report.tie_touched
                    ),
                );
            } else if report.decided_other_way > 0 {
                eprintln!(
                    "seed {}: {} of {} tie-touched detections decided as \"fails\"",
                    stream.seed, report.decided_other_way, report.tie_touched
                );
            }
        }
        Err(msg) => problem("a", format!("ledger vs reference:\n{msg}")),
    }

    // (b) merchant counts
    let counts: BTreeMap<String, i64> = got.counts.iter().cloned().collect();
    if counts != e.counts || counts.len() != got.counts.len() {
        problem(
            "b",
            format!("merchant counts {:?}, expected {:?}", got.counts, e.counts),
        );
    }

    // (c) progress rows
    let epochs: Vec<(u64, u64, u64)> = got
        .epochs
        .iter()
        .map(|r| (r.epoch, r.rows_accepted, r.rows_rejected))
        .collect();
    if epochs != e.epochs {
        problem(
            "c",
            format!("epoch rows {epochs:?}, expected {:?}", e.epochs),
        );
    }
    for r in &got.epochs {
        if !r.chunk_key.ends_with(&format!("chunk-{:06}.csv", r.epoch)) {
            problem(
                "c",
                format!("epoch {} chunk_key {:?}", r.epoch, r.chunk_key),
            );
        }
    }

    // Summary
    let s = &got.summary;
    let n_chunks = e.epochs.len() as u64;
    if (s.rows_accepted, s.rows_rejected) != (e.total_accepted(), e.total_rejected())
        || s.detections_total != got.ledger.len() as u64
        || !s.finished
        || s.epochs_committed != n_chunks
        || s.epochs_recovered != 0
    {
        problem(
            "summary",
            format!(
                "{s:?}: expected accepted {} rejected {} detections {} epochs {n_chunks}",
                e.total_accepted(),
                e.total_rejected(),
                got.ledger.len()
            ),
        );
    }

    // (d) detection files
    let mut files = Vec::new();
    for i in 0.. {
        let path = got.output.join(format!("detections-{i:06}.csv"));
        if !path.exists() {
            break;
        }
        files.push(path);
    }
    let listed = fs::read_dir(&got.output)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("detections-"))
                .count()
        })
        .unwrap_or(0);
    if listed != files.len() {
        problem(
            "d",
            format!(
                "{listed} detections-* files, {} numbered contiguously",
                files.len()
            ),
        );
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let text = fs::read_to_string(path).unwrap();
        if text.lines().next() != Some(DETECTION_HEADER) {
            problem(
                "d",
                format!("{}: header {:?}", path.display(), text.lines().next()),
            );
        }
        let records = read_csv(path);
        let data = &records[1.min(records.len())..];
        let last = i + 1 == files.len();
        let full = data.len() == 50;
        let ok = if last {
            (1..=50).contains(&data.len()) || (data.is_empty() && rows.len().is_multiple_of(50))
        } else {
            full
        };
        if !ok {
            problem(
                "d",
                format!(
                    "{} has {} data rows (last: {last})",
                    path.display(),
                    data.len()
                ),
            );
        }
        rows.extend(data.iter().cloned());
    }
    if rows.len() != got.ledger.len() {
        problem(
            "d",
            format!(
                "{} rows in detection files, {} in the ledger",
                rows.len(),
                got.ledger.len()
            ),
        );
    }
    for (i, (row, l)) in rows.iter().zip(&got.ledger).enumerate() {
        let want = [
            l.y_start_time.as_str(),
            l.detection_time.as_str(),
            l.pattern.id(),
            l.pattern.action(),
            l.customer_name.as_str(),
            l.merchant_id.as_str(),
        ];
        if row.iter().map(String::as_str).collect::<Vec<_>>() != want {
            problem("d", format!("detection row {i} {row:?}, ledger {want:?}"));
        }
    }

    // Times
    let y_start: BTreeSet<&str> = got.ledger.iter().map(|l| l.y_start_time.as_str()).collect();
    if y_start.len() > 1 {
        problem("t", format!("several YStartTimes {y_start:?}"));
    }
    for l in &got.ledger {
        if replay {
            // The first replayed chunk's mtime.
            let want_start = streams::format_ist(landing.mtimes_ms[e.epochs[0].0 as usize]);
            let want_det = streams::format_ist(landing.mtimes_ms[l.epoch as usize]);
            if (l.y_start_time.as_str(), l.detection_time.as_str()) != (&want_start, &want_det) {
                problem(
                    "t",
                    format!(
                        "seq {} times ({}, {}), expected ({want_start}, {want_det})",
                        l.seq, l.y_start_time, l.detection_time
                    ),
                );
                break;
            }
        } else if !is_ist_timestamp(&l.y_start_time) || !is_ist_timestamp(&l.detection_time) {
            problem(
                "t",
                format!(
                    "seq {} times ({}, {})",
                    l.seq, l.y_start_time, l.detection_time
                ),
            );
            break;
        }
    }
    for pair in got.ledger.windows(2) {
        if pair[0].detection_time > pair[1].detection_time {
            problem(
                "t",
                format!("detection times go back at seq {}", pair[1].seq),
            );
            break;
        }
    }

    // (e) rejects
    let mut total_rejects = 0;
    for (k, out) in &e.chunks {
        let bytes = &stream.chunks[*k as usize].1;
        let name = format!("chunk-{k:06}.csv");
        let path = got.output.join("rejects").join(&name);
        let records = if path.exists() {
            read_csv(&path)
        } else {
            Vec::new()
        };
        if path.exists()
            && records.first().map(|h| h.join(",")) != Some("chunk,line,reason,raw".into())
        {
            problem(
                "e",
                format!("{}: header {:?}", path.display(), records.first()),
            );
        }
        let data = &records[1.min(records.len())..];
        let lines = reference::physical_lines(bytes);
        let mut got_lines = Vec::new();
        for r in data {
            if r.len() != 4 {
                problem("e", format!("{name}: reject row {r:?}"));
                continue;
            }
            if !r[0].ends_with(&name) {
                problem("e", format!("{name}: reject row names chunk {:?}", r[0]));
            }
            let Ok(line) = r[1].parse::<u64>() else {
                problem("e", format!("{name}: reject line {:?}", r[1]));
                continue;
            };
            got_lines.push(line);
            let raw = lines.get(line as usize - 1).map(|l| l.text.as_str());
            if raw != Some(r[3].as_str()) {
                problem(
                    "e",
                    format!("{name}: line {line} raw {:?}, the file has {raw:?}", r[3]),
                );
            }
        }
        if !got_lines.windows(2).all(|w| w[0] < w[1]) {
            problem(
                "e",
                format!("{name}: reject lines not ascending: {got_lines:?}"),
            );
        }
        if let Some(column) = &out.missing_column {
            // Rejected whole: one row per record, or (allowed) a row for the header.
            let records: Vec<u64> = got_lines.iter().copied().filter(|&l| l != 1).collect();
            if records != out.rejected_lines && !records.is_empty() {
                problem(
                    "e",
                    format!(
                        "{name} (header lacks {column}): reject lines {got_lines:?}, records {:?}",
                        out.rejected_lines
                    ),
                );
            }
            if records.is_empty() && !out.rejected_lines.is_empty() && got_lines.is_empty() {
                problem(
                    "e",
                    format!("{name} (header lacks {column}): no rejects written"),
                );
            }
            if let Some(r) = data.first() {
                if r.len() == 4 && !r[2].contains(column.as_str()) {
                    problem(
                        "e",
                        format!(
                            "{name}: reason {:?} does not name the missing column {column}",
                            r[2]
                        ),
                    );
                }
            }
            total_rejects += out.rejected_lines.len();
        } else {
            if got_lines != out.rejected_lines {
                problem(
                    "e",
                    format!(
                        "{name}: reject lines {got_lines:?}, expected {:?}",
                        out.rejected_lines
                    ),
                );
            }
            total_rejects += data.len();
        }
    }
    if total_rejects as u64 != e.total_rejected() {
        problem(
            "e",
            format!(
                "{total_rejects} rejects written, expected {}",
                e.total_rejected()
            ),
        );
    }

    // (e') importance rejects
    let path = got.output.join("rejects").join("CustomerImportance.csv");
    let records = if path.exists() {
        read_csv(&path)
    } else {
        Vec::new()
    };
    let got_lines: Vec<u64> = records
        .iter()
        .skip(1)
        .filter_map(|r| r.get(1).and_then(|l| l.parse().ok()))
        .collect();
    if got_lines != e.importance.rejected_lines {
        problem(
            "e'",
            format!(
                "importance reject lines {got_lines:?}, expected {:?}",
                e.importance.rejected_lines
            ),
        );
    }
    let imp_lines = reference::physical_lines(&stream.importance);
    for r in records.iter().skip(1) {
        if let (Some(line), Some(raw)) = (r.get(1).and_then(|l| l.parse::<usize>().ok()), r.get(3))
        {
            let want = imp_lines.get(line.wrapping_sub(1)).map(|l| l.text.as_str());
            if want != Some(raw.as_str()) {
                problem(
                    "e'",
                    format!("importance line {line} raw {raw:?}, the file has {want:?}"),
                );
            }
        }
    }
    problems
}

/// (f): the two runs' outputs and ledgers are identical.
fn check_same(a: &Observed, b: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    let (ta, tb) = (tree(&a.output), tree(&b.output));
    let names_a: Vec<_> = ta.keys().collect();
    let names_b: Vec<_> = tb.keys().collect();
    if names_a != names_b {
        problems.push(format!(
            "(f) output files differ: {names_a:?} vs {names_b:?}"
        ));
    }
    for (name, bytes) in &ta {
        if tb.get(name).is_some_and(|other| other != bytes) {
            problems.push(format!(
                "(f) {} differs between 1 and 3 workers",
                name.display()
            ));
        }
    }
    if a.ledger != b.ledger {
        problems.push("(f) ledgers differ between 1 and 3 workers".to_string());
    }
    let strip = |rows: &[EpochRow]| -> Vec<(u64, String, u64, u64)> {
        rows.iter()
            .map(|r| {
                (
                    r.epoch,
                    r.chunk_key.clone(),
                    r.rows_accepted,
                    r.rows_rejected,
                )
            })
            .collect()
    };
    if strip(&a.epochs) != strip(&b.epochs) || a.counts != b.counts {
        problems.push("(f) progress rows or counters differ between 1 and 3 workers".to_string());
    }
    problems
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Replay with 1 and with 3 workers; both checked, and compared with each other.
    ReplayWorkers1And3,
    /// Live mode with 2 workers.
    LiveWorkers2,
    /// Replay of a sub-range `[from, to]` (chosen from the seed) with 2 workers.
    ReplayRangeWorkers2,
    /// Replay with 2 workers and the operating endpoint on, scraped throughout (fewer seeds).
    ReplayHttpWorkers2,
}

/// Seeds of the `ReplayHttpWorkers2` mode (the first of [`prop_seeds`]).
const HTTP_SEEDS: usize = 6;

/// The replay range of a stream in `ReplayRangeWorkers2` mode: `(range, first, last)`.
fn range_for(stream: &Stream) -> (ReplayRange, u64, u64) {
    let (seed, n) = (stream.seed, stream.chunks.len() as u64);
    let from = seed % n;
    let to = from + (seed / 3) % (n - from);
    let range = ReplayRange {
        from: (from > 0 || seed % 4 != 0).then_some(from),
        to: (to < n - 1 || seed % 2 != 0).then_some(to),
    };
    (range, from, to)
}

/// Runs one stream in `mode` and returns its problems (empty = passed).
fn check_stream(stream: &Stream, mode: Mode) -> Vec<String> {
    let (range, from, to) = range_for(stream);
    let chunks = match mode {
        Mode::ReplayRangeWorkers2 => &stream.chunks[from as usize..=to as usize],
        _ => &stream.chunks[..],
    };
    let e = reference::expected(chunks, &stream.importance, &stream.thresholds);
    let all = Some(ReplayRange::default());
    let work = tempfile::tempdir().unwrap();
    let landing = streams::write_landing(work.path(), stream);
    let t = stream.thresholds;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut problems = Vec::new();
        match mode {
            Mode::ReplayWorkers1And3 => {
                let one = run_pipeline(&landing, work.path(), "w1", t, 1, all, false);
                let three = run_pipeline(&landing, work.path(), "w3", t, 3, all, false);
                match (one, three) {
                    (Ok(one), Ok(three)) => {
                        problems.extend(check_run(stream, &e, &landing, &one, true));
                        problems.extend(
                            check_run(stream, &e, &landing, &three, true)
                                .into_iter()
                                .map(|p| format!("[3 workers] {p}")),
                        );
                        problems.extend(check_same(&one, &three));
                    }
                    (one, three) => {
                        problems.extend(one.err());
                        problems.extend(three.err());
                    }
                }
            }
            Mode::LiveWorkers2 => {
                match run_pipeline(&landing, work.path(), "live", t, 2, None, false) {
                    Ok(got) => problems.extend(check_run(stream, &e, &landing, &got, false)),
                    Err(msg) => problems.push(msg),
                }
            }
            Mode::ReplayHttpWorkers2 => {
                match run_pipeline(&landing, work.path(), "http", t, 2, all, true) {
                    Ok(got) => problems.extend(check_run(stream, &e, &landing, &got, true)),
                    Err(msg) => problems.push(msg),
                }
            }
            Mode::ReplayRangeWorkers2 => {
                match run_pipeline(&landing, work.path(), "range", t, 2, Some(range), false) {
                    Ok(got) => problems.extend(
                        check_run(stream, &e, &landing, &got, true)
                            .into_iter()
                            .map(|p| format!("[range {range:?}] {p}")),
                    ),
                    Err(msg) => problems.push(msg),
                }
            }
        }
        problems
    }));
    outcome.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        vec![format!("(panic) {msg}")]
    })
}

/// The check tags of a problem list, e.g. `{"(a)", "(e)"}`.
fn tags(problems: &[String]) -> BTreeSet<String> {
    problems
        .iter()
        .map(|p| p.trim_start_matches("[3 workers] "))
        .map(|p| match p.strip_prefix("[range ") {
            Some(rest) => rest.split_once("] ").map_or(rest, |(_, p)| p),
            None => p,
        })
        .filter_map(|p| p.split_once(' ').map(|(tag, _)| tag.to_string()))
        .collect()
}

/// Greedily removes chunks, record lines and importance lines while a problem with one of
/// the same tags remains. Returns the smallest failing stream found.
fn shrink(stream: &Stream, mode: Mode, budget: usize) -> Stream {
    let want = tags(&check_stream(stream, mode));
    let mut best = stream.clone();
    let mut runs = 0;
    let still_fails = |candidate: &Stream, runs: &mut usize| -> bool {
        *runs += 1;
        let got = tags(&check_stream(candidate, mode));
        !got.is_disjoint(&want)
    };
    let split = |bytes: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(bytes)
            .split_inclusive('\n')
            .map(str::to_string)
            .collect()
    };
    loop {
        let mut progressed = false;
        // Whole chunks.
        let mut k = 0;
        while k < best.chunks.len() && runs < budget {
            let mut candidate = best.clone();
            candidate.chunks.remove(k);
            for (i, c) in candidate.chunks.iter_mut().enumerate() {
                c.0 = i as u64;
            }
            if !candidate.chunks.is_empty() && still_fails(&candidate, &mut runs) {
                best = candidate;
                progressed = true;
            } else {
                k += 1;
            }
        }
        // Single lines of chunks (the first line, the header, stays).
        for k in 0..best.chunks.len() {
            let mut i = 1;
            while i < split(&best.chunks[k].1).len() && runs < budget {
                let mut lines = split(&best.chunks[k].1);
                lines.remove(i);
                let mut candidate = best.clone();
                candidate.chunks[k].1 = lines.concat().into_bytes();
                if still_fails(&candidate, &mut runs) {
                    best = candidate;
                    progressed = true;
                } else {
                    i += 1;
                }
            }
        }
        // Importance lines.
        let mut i = 1;
        while i < split(&best.importance).len() && runs < budget {
            let mut lines = split(&best.importance);
            lines.remove(i);
            let mut candidate = best.clone();
            candidate.importance = lines.concat().into_bytes();
            if still_fails(&candidate, &mut runs) {
                best = candidate;
                progressed = true;
            } else {
                i += 1;
            }
        }
        if !progressed || runs >= budget {
            break;
        }
    }
    best
}

fn run_property(mode: Mode) {
    let started = Instant::now();
    let opts = StreamOptions::default();
    let mut failures = Vec::new();
    let single = std::env::var("TXFLOW_PROP_SEED").is_ok();
    let mut seeds = prop_seeds();
    if mode == Mode::ReplayHttpWorkers2 {
        seeds.truncate(HTTP_SEEDS);
    }
    let count = seeds.len();
    for seed in seeds {
        let stream = streams::random_stream(seed, &opts);
        if single {
            eprintln!("{}", stream.describe());
        }
        let problems = check_stream(&stream, mode);
        if !problems.is_empty() {
            failures.push((stream, problems));
        }
    }
    eprintln!(
        "{mode:?}: {} seeds in {:.1?}, {} failing",
        count,
        started.elapsed(),
        failures.len()
    );
    if failures.is_empty() {
        return;
    }
    let mut report = String::new();
    for (stream, problems) in &failures {
        report.push_str(&format!("seed {} ({mode:?}):\n", stream.seed));
        for p in problems.iter().take(12) {
            report.push_str(&format!("  {p}\n"));
        }
        if problems.len() > 12 {
            report.push_str(&format!("  … {} more\n", problems.len() - 12));
        }
    }
    if std::env::var("TXFLOW_PROP_SHRINK").is_ok() {
        let (stream, _) = &failures[0];
        let small = shrink(stream, mode, 400);
        report.push_str(&format!(
            "\nshrunk seed {}:\n{}\nproblems of the shrunk stream:\n{}\n",
            stream.seed,
            small.describe(),
            check_stream(&small, mode).join("\n")
        ));
    } else {
        report.push_str("(set TXFLOW_PROP_SHRINK=1 to shrink the first failure)\n");
    }
    panic!("{} of {} seeds failed:\n{report}", failures.len(), count);
}

#[test]
fn pipeline_replay_matches_reference() {
    run_property(Mode::ReplayWorkers1And3);
}

#[test]
fn pipeline_live_matches_reference() {
    run_property(Mode::LiveWorkers2);
}

#[test]
fn pipeline_replay_range_matches_reference() {
    run_property(Mode::ReplayRangeWorkers2);
}

#[test]
fn pipeline_replay_with_http_matches_reference() {
    run_property(Mode::ReplayHttpWorkers2);
}
