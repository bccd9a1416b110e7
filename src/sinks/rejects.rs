//! Reject files (SPEC §2.3, §6): `rejects/<name>` with columns `chunk,line,reason,raw`, one
//! CSV row per rejected record, by line (RFC 4180 quoting where a value holds `,` or `"`).
//!
//! # The `raw` column
//!
//! `raw` holds the record's bytes without its line terminator (all its lines for a record
//! spanning several, the first line alone for an unbalanced quote), losslessly, as one line
//! of printable UTF-8 text ([`escape_bytes`](crate::model::escape_bytes)):
//!
//! - every byte is written as it is, except:
//! - a byte that is not part of valid UTF-8 is written `\xHH` (two uppercase hex digits);
//! - each byte of a control character (U+0000–U+001F, U+007F–U+009F: NUL, tab, and the CR and
//!   LF inside a record spanning lines included) is written `\xHH`;
//! - a backslash followed by `x` and two hex digits (either case) is written `\x5C`, so that
//!   it is not read as an escape. Any other backslash is written as it is.
//!
//! To get the record's bytes back, replace each `\x` followed by two hex digits by that
//! byte, and take every other character as its UTF-8 bytes. A record that is printable
//! UTF-8 without such a backslash (every well-formed row) is written unchanged. Values
//! quoted in `reason` are escaped the same way (and shortened to 64 characters).

use crate::model::Reject;

/// `rejects/<name>`, e.g. `rejects/chunk-000003.csv` or `rejects/CustomerImportance.csv`.
pub(crate) fn rejects_key(name: &str) -> String {
    format!("rejects/{name}")
}

/// The kind of a reject reason: its text before the first `'` or `:`, trimmed (the value and
/// the details differ from row to row; the kind is what figures group by), e.g.
/// `invalid amount '-3.00': a sign is not allowed` → `invalid amount`.
pub(crate) fn reason_kind(reason: &str) -> &str {
    let end = reason.find(['\'', ':']).unwrap_or(reason.len());
    reason[..end].trim()
}

/// CSV bytes of a rejects file; rows sorted by line.
pub fn render(rejects: &[Reject]) -> Vec<u8> {
    let mut rows: Vec<&Reject> = rejects.iter().collect();
    rows.sort_by_key(|r| r.line);
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["chunk", "line", "reason", "raw"])
        .expect("write to memory");
    for r in rows {
        out.write_record([
            r.chunk.as_str(),
            &r.line.to_string(),
            r.reason.as_str(),
            r.raw.as_str(),
        ])
        .expect("write to memory");
    }
    out.into_inner().expect("flush to memory")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reason_kinds_stop_at_a_quote_or_colon() {
        use super::reason_kind;
        assert_eq!(
            reason_kind("invalid amount '-3.00': a sign is not allowed"),
            "invalid amount"
        );
        assert_eq!(
            reason_kind("wrong number of fields: 3, expected 10"),
            "wrong number of fields"
        );
        assert_eq!(reason_kind("  empty record "), "empty record");
    }

    use super::*;

    #[test]
    fn quotes_raw_lines_and_sorts_by_line() {
        let r = |line, raw: &str| Reject {
            chunk: "chunk-000001.csv".into(),
            line,
            reason: "bad amount".into(),
            raw: raw.into(),
        };
        let text = String::from_utf8(render(&[r(5, "a,'b',\"c\""), r(2, "x")])).unwrap();
        assert_eq!(
            text,
            "chunk,line,reason,raw\nchunk-000001.csv,2,bad amount,x\n\
             chunk-000001.csv,5,bad amount,\"a,'b',\"\"c\"\"\"\n"
        );
    }

    #[test]
    fn raw_bytes_are_one_escaped_line() {
        let raw = crate::model::escape_bytes(b"0,\"C\r\n1\",\xff\x00,\\x41");
        let r = Reject {
            chunk: "chunk-000001.csv".into(),
            line: 3,
            reason: "bad".into(),
            raw,
        };
        assert_eq!(
            String::from_utf8(render(&[r])).unwrap(),
            "chunk,line,reason,raw\n\
             chunk-000001.csv,3,bad,\"0,\"\"C\\x0D\\x0A1\"\",\\xFF\\x00,\\x5Cx41\"\n"
        );
    }
}
