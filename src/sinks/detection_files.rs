//! Detection files (SPEC §5): `detections-<i:06>.csv` holds ledger rows `50i .. 50i+49`.
//! Files are rendered from the ledger only, so rewriting one after a crash yields the same bytes.

use crate::sinks::state::LedgerRow;

/// Data rows per file.
pub(crate) const ROWS_PER_FILE: u64 = 50;

pub const HEADER: [&str; 6] = [
    "YStartTime",
    "detectionTime",
    "patternId",
    "ActionType",
    "customerName",
    "MerchantId",
];

/// `detections-<i:06>.csv`.
pub(crate) fn file_key(file_seq: u64) -> String {
    format!("detections-{file_seq:06}.csv")
}

/// The file holding sequence number `seq`.
pub fn file_of(seq: u64) -> u64 {
    seq / ROWS_PER_FILE
}

/// CSV bytes of one file.
pub fn render(rows: &[LedgerRow]) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::with_capacity(64 + rows.len() * 120));
    // Writing to a Vec cannot fail.
    out.write_record(HEADER).expect("write to memory");
    for row in rows {
        out.write_record([
            row.y_start_time.as_str(),
            row.detection_time.as_str(),
            row.pattern.id(),
            row.pattern.action(),
            row.customer_name.as_str(),
            row.merchant_id.as_str(),
        ])
        .expect("write to memory");
    }
    out.into_inner().expect("flush to memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_header_and_rows() {
        let row = LedgerRow {
            seq: 0,
            epoch: 3,
            pattern: crate::model::Pattern::DeiNeeded,
            customer_name: "".into(),
            merchant_id: "M1".into(),
            y_start_time: "2026-11-25T21:10:03.123+05:30".into(),
            detection_time: "2026-11-25T21:10:04.000+05:30".into(),
            file_seq: None,
            evidence: None,
        };
        let text = String::from_utf8(render(&[row])).unwrap();
        assert_eq!(
            text,
            "YStartTime,detectionTime,patternId,ActionType,customerName,MerchantId\n\
             2026-11-25T21:10:03.123+05:30,2026-11-25T21:10:04.000+05:30,PatId3,DEI-NEEDED,,M1\n"
        );
        assert_eq!(file_key(12), "detections-000012.csv");
        assert_eq!(file_of(49), 0);
        assert_eq!(file_of(50), 1);
    }
}
