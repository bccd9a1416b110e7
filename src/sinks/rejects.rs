//! Reject files (SPEC §2.3, §6): `rejects/<name>` with columns `chunk,line,reason,raw`.

use crate::model::Reject;

/// `rejects/<name>`, e.g. `rejects/chunk-000003.csv` or `rejects/CustomerImportance.csv`.
pub fn rejects_key(name: &str) -> String {
    format!("rejects/{name}")
}

/// The kind of a reject reason: its text before the first `'` or `:`, trimmed (the value and
/// the details differ from row to row; the kind is what figures group by), e.g.
/// `invalid amount '-3.00': a sign is not allowed` → `invalid amount`.
pub fn reason_kind(reason: &str) -> &str {
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
}
