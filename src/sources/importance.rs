//! Parsing of `CustomerImportance.csv` (SPEC §2.2).
//!
//! Header `Source,Target,Weight,typeTrans,fraud`, columns found by name with the same
//! leniency as transaction chunks (double-quoted, single-quoted or space-padded names, any
//! order, extra columns ignored). `Source`, `Target`, `Weight` and `typeTrans` are required;
//! `fraud` is ignored by the SPEC, so it is optional. The same quoting rules as for chunks
//! apply: records are framed by [`framing`](crate::sources::framing) (LF, CRLF, lone CR; RFC 4180
//! quotes with resynchronisation; blank lines skipped but counted in line numbers), and one
//! pair of single quotes is stripped from every value.
//!
//! A row is bad when its field count differs from the header's, when `Source`, `Target` or
//! `typeTrans` is empty, longer than 256 bytes, not UTF-8 or holds a control character (the
//! same rule as a chunk's names), or when `Weight` is not an optional single leading `-`
//! followed by the amount grammar ([`parse_weight`]). Bad rows become rejects whose `chunk`
//! is the file name.
//!
//! A key `(Source, Target, typeTrans)` on several rows gets the arithmetic mean of their
//! weights, computed exactly: the micro-unit weights are summed in `i128` and the mean is
//! one final division, `sum / (count · 10^6)` in `f64` (so it is the correctly rounded mean
//! whenever the sum's magnitude is below 2^53 micro-units, i.e. about 9·10^9 units).

use crate::decimal::parse_weight;
use crate::error::{Error, Result};
use crate::model::{Reject, Weight, WeightKey, MICROS_PER_UNIT};
use crate::name::NameCache;
use crate::sources::framing::FrameKind;
use crate::sources::parse::{name, resolve_columns, strip_single_quotes};
use crate::sources::parse::{Records, RowError, UNBALANCED_QUOTE};

/// The importance file's columns; all but `fraud` are required.
pub const IMPORTANCE_COLUMNS: [&str; 5] = ["Source", "Target", "Weight", "typeTrans", "fraud"];

/// The importance table: one weight per `(customer, merchant, typeTrans)`, the arithmetic
/// mean of that key's rows, sorted by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportanceTable {
    pub weights: Vec<(WeightKey, Weight)>,
    pub rejects: Vec<Reject>,
    /// Number of records read (accepted + rejected).
    pub records: u64,
}

/// Column positions of the importance file.
struct Columns {
    source: usize,
    target: usize,
    weight: usize,
    type_trans: usize,
}

/// Parses the importance file named `name`.
///
/// Errors ([`Error::Input`]: the whole file is unusable): no header row (`"empty importance file: no header
/// row"`), a header lacking a required column (`"importance file header lacks required
/// column 'Weight'"`), or a header with a required column twice (ambiguous).
pub fn parse_importance(name: &str, bytes: &[u8]) -> Result<ImportanceTable> {
    let mut rdr = Records::new(bytes);
    let Some(header) = &rdr.header else {
        return Err(Error::input("empty importance file: no header row"));
    };
    let [source, target, weight, type_trans, _] = resolve_columns(
        header,
        &IMPORTANCE_COLUMNS,
        &[false, false, false, false, true],
        "importance file header",
    )
    .map_err(Error::input)?;
    let columns = Columns {
        source,
        target,
        weight,
        type_trans,
    };
    let fields = rdr.width();

    let mut table = ImportanceTable::default();
    let mut rows: Vec<(WeightKey, i64)> = Vec::with_capacity(bytes.len() / 64);
    for frame in rdr.frames(rdr.body, bytes.len()) {
        table.records += 1;
        if frame.kind == FrameKind::Unbalanced {
            let reject = rdr.reject(name, &frame, UNBALANCED_QUOTE.to_owned());
            table.rejects.push(reject);
            continue;
        }
        rdr.split(&frame);
        match parse_row(&rdr.fields, fields, &columns, &mut rdr.names) {
            Ok(row) => rows.push(row),
            Err(e) => {
                let reason = e.to_string();
                table.rejects.push(rdr.reject(name, &frame, reason));
            }
        }
    }

    table.weights = mean_by_key(rows);
    Ok(table)
}

/// Validates one importance row.
fn parse_row<'r>(
    record: &'r crate::sources::framing::Fields,
    fields: usize,
    c: &Columns,
    names: &mut NameCache,
) -> Result<(WeightKey, i64), RowError<'r>> {
    if record.len() != fields {
        return Err(RowError::FieldCount {
            expected: fields,
            found: record.len(),
        });
    }
    let field = |i: usize| strip_single_quotes(record.get(i));
    let customer = name(field(c.source), "Source", names)?;
    let merchant = name(field(c.target), "Target", names)?;
    let w = field(c.weight);
    let micros = parse_weight(w).map_err(|e| RowError::Weight(w, e))?;
    let category = name(field(c.type_trans), "typeTrans", names)?;
    Ok((
        WeightKey {
            customer,
            merchant,
            category,
        },
        micros,
    ))
}

/// Groups `(key, micro-units)` rows by key and averages each group exactly (see the module
/// docs); the result is sorted by key.
fn mean_by_key(mut rows: Vec<(WeightKey, i64)>) -> Vec<(WeightKey, Weight)> {
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(WeightKey, Weight)> = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while let Some((key, first)) = rows.next() {
        let mut sum = i128::from(first);
        let mut count: u64 = 1;
        while let Some((_, micros)) = rows.next_if(|(k, _)| *k == key) {
            sum += i128::from(micros);
            count += 1;
        }
        let mean = sum as f64 / (count as f64 * MICROS_PER_UNIT as f64);
        out.push((key, Weight::from(mean)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "CustomerImportance.csv";

    fn key(c: &str, m: &str, t: &str) -> WeightKey {
        WeightKey {
            customer: c.into(),
            merchant: m.into(),
            category: t.into(),
        }
    }

    fn parse(text: &str) -> ImportanceTable {
        parse_importance(FILE, text.as_bytes()).expect("valid header")
    }

    #[test]
    fn real_layout() {
        let t = parse(
            "Source,Target,Weight,typeTrans,fraud\n\
             'C1093826151','M348934600',4.55,'es_transportation',0\n\
             'C1093826151','M348934600','2.5','es_food',0\n",
        );
        assert_eq!(t.records, 2);
        assert!(t.rejects.is_empty());
        assert_eq!(
            t.weights,
            vec![
                (
                    key("C1093826151", "M348934600", "es_food"),
                    Weight::from(2.5)
                ),
                (
                    key("C1093826151", "M348934600", "es_transportation"),
                    Weight::from(4.55)
                ),
            ]
        );
    }

    #[test]
    fn columns_by_name_quoted_and_fraud_optional() {
        let t = parse("\"typeTrans\",'Weight',Target,Source\r\nt,1,M1,C1\r\n\r\nt,2,M2,C1\r\n");
        assert!(t.rejects.is_empty(), "{:?}", t.rejects);
        assert_eq!(
            t.weights,
            vec![
                (key("C1", "M1", "t"), Weight::from(1.0)),
                (key("C1", "M2", "t"), Weight::from(2.0)),
            ]
        );
    }

    #[test]
    fn duplicates_are_averaged_exactly() {
        let t = parse(
            "Source,Target,Weight,typeTrans,fraud\n\
             C1,M1,1,t,0\nC2,M1,5,t,0\nC1,M1,2,t,1\nC1,M1,'4',t,0\nC1,M1,3,u,0\n",
        );
        assert_eq!(t.records, 5);
        assert_eq!(
            t.weights,
            vec![
                (key("C1", "M1", "t"), Weight::from(7.0 / 3.0)),
                (key("C1", "M1", "u"), Weight::from(3.0)),
                (key("C2", "M1", "t"), Weight::from(5.0)),
            ]
        );
        // 0.1 + 0.2 would be 0.30000000000000004 in floating point; micro-units are exact.
        let t = parse("Source,Target,Weight,typeTrans\nC,M,0.1,t\nC,M,0.2,t\n");
        assert_eq!(t.weights[0].1, Weight::from(0.15));
        // Many large rows: the sum overflows i64 micro-units, not the i128 accumulator.
        let mut text = String::from("Source,Target,Weight,typeTrans\n");
        for _ in 0..1000 {
            text.push_str("C,M,999999999999.999999,t\n");
        }
        let t = parse(&text);
        assert_eq!(t.weights[0].1, Weight::from(999_999_999_999.999999));
    }

    #[test]
    fn negative_weights_accepted() {
        let t = parse("Source,Target,Weight,typeTrans,fraud\nC1,M1,-0.5,t,0\nC1,M1,-1.5,t,0\nC2,M1,-.25,t,0\n");
        assert!(t.rejects.is_empty());
        assert_eq!(
            t.weights,
            vec![
                (key("C1", "M1", "t"), Weight::from(-1.0)),
                (key("C2", "M1", "t"), Weight::from(-0.25)),
            ]
        );
    }

    #[test]
    fn bad_rows_rejected_with_file_name_and_line() {
        let t = parse(
            "Source,Target,Weight,typeTrans,fraud\n\
             C1,M1,abc,t,0\n\
             \n\
             C1,M1,1e3,t,0\n\
             C1,M1,+1,t,0\n\
             C1,M1,,t,0\n\
             ,M1,1,t,0\n\
             C1,'',1,t,0\n\
             C1,M1,1,,0\n\
             C1,M1,1,t\n\
             C1,M1,NaN,t,0\n\
             C1,M1,1.0000001,t,0\n\
             C9,M9,9,t,0\n",
        );
        assert_eq!(t.records, 11);
        assert_eq!(t.weights, vec![(key("C9", "M9", "t"), Weight::from(9.0))]);
        let got: Vec<(u64, &str, &str)> = t
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.as_str(), r.raw.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    2,
                    "invalid weight 'abc': unexpected character 'a'",
                    "C1,M1,abc,t,0"
                ),
                (
                    4,
                    "invalid weight '1e3': an exponent is not allowed",
                    "C1,M1,1e3,t,0"
                ),
                (
                    5,
                    "invalid weight '+1': only a single leading '-' is allowed",
                    "C1,M1,+1,t,0"
                ),
                (6, "missing Weight", "C1,M1,,t,0"),
                (7, "missing Source", ",M1,1,t,0"),
                (8, "missing Target", "C1,'',1,t,0"),
                (9, "missing typeTrans", "C1,M1,1,,0"),
                (10, "expected 5 fields, found 4", "C1,M1,1,t"),
                (
                    11,
                    "invalid weight 'NaN': NaN is not a number",
                    "C1,M1,NaN,t,0"
                ),
                (
                    12,
                    "invalid weight '1.0000001': more than six fractional digits",
                    "C1,M1,1.0000001,t,0"
                ),
            ]
        );
        assert!(t.rejects.iter().all(|r| r.chunk == FILE));
    }

    #[test]
    fn an_unclosed_quote_costs_one_line_whatever_follows() {
        let t = parse(
            "Source,Target,Weight,typeTrans\n\"C1,M1,1,t\nC2,M1,2,t\nC3\"x,M1,3,t\n\"C4\"x,M1,4,t\n",
        );
        assert_eq!(t.records, 4);
        let rejects: Vec<(u64, &str)> = t
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(rejects, [(2, UNBALANCED_QUOTE), (5, UNBALANCED_QUOTE)]);
        assert_eq!(
            t.weights,
            vec![
                (key("C2", "M1", "t"), Weight::from(2.0)),
                (key("C3\"x", "M1", "t"), Weight::from(3.0)),
            ]
        );
    }

    #[test]
    fn names_longer_than_256_bytes_are_rejected() {
        let over = "n".repeat(257);
        let t = parse(&format!(
            "Source,Target,Weight,typeTrans\n{over},M1,1,t\nC1,{over},1,t\nC1,M1,1,'{over}'\n\
             C1,M1,2,'{}'\n",
            "t".repeat(256)
        ));
        let reasons: Vec<&str> = t.rejects.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "name too long: Source of 257 bytes (at most 256)",
                "name too long: Target of 257 bytes (at most 256)",
                "name too long: typeTrans of 257 bytes (at most 256)",
            ]
        );
        assert_eq!(t.weights.len(), 1);
    }

    #[test]
    fn header_missing_column_is_an_error_naming_it() {
        let err = parse_importance(FILE, b"Source,Target,typeTrans,fraud\nC1,M1,t,0\n")
            .expect_err("no Weight");
        assert_eq!(
            err.to_string(),
            "importance file header lacks required column 'Weight'"
        );
        let err = parse_importance(FILE, b"Source,fraud\n").expect_err("two missing");
        assert_eq!(
            err.to_string(),
            "importance file header lacks required columns 'Target', 'Weight', 'typeTrans'"
        );
        let err = parse_importance(FILE, b"").expect_err("empty");
        assert_eq!(err.to_string(), "empty importance file: no header row");
        let err = parse_importance(FILE, b"Source,Target,Weight,typeTrans,Weight\n")
            .expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "importance file header has duplicate column 'Weight' (ambiguous)"
        );
    }

    #[test]
    fn fuzz_never_panics() {
        use crate::sources::parse::tests::{mutate, XorShift};
        let base = b"Source,Target,Weight,typeTrans,fraud\n'C1','M1',1.5,'t',0\n\
                     'C1','M1',-2,'t',0\r\n\"C2\",'M2',\"3\",'u',1\n"
            .to_vec();
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        for _ in 0..10_000 {
            let mut bytes = base.clone();
            mutate(&mut rng, &mut bytes);
            if let Ok(t) = parse_importance(FILE, &bytes) {
                assert!(t.rejects.len() as u64 <= t.records);
                assert!(t.weights.len() as u64 + t.rejects.len() as u64 <= t.records);
                assert!(t.weights.windows(2).all(|w| w[0].0 < w[1].0));
            }
        }
    }
}
