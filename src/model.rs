//! Data types shared by the sources, the dataflow and the sinks.

use serde::{Deserialize, Serialize};

pub use crate::name::Name;

/// Logical time of the dataflow: the index of the chunk an update came from (one chunk, one
/// epoch).
pub type Epoch = u64;

pub use crate::decimal::{Micros, MICROS_PER_UNIT};

pub use crate::thresholds::{
    count_above, count_reaches, Amount, CountThreshold, Fraction, Thresholds, Variant,
};

/// Customer gender as recorded in the BankSim data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Gender {
    /// `'F'`
    Female,
    /// `'M'`
    Male,
    /// `'E'` (enterprise)
    Enterprise,
    /// `'U'` (unknown)
    Unknown,
}

impl Gender {
    /// Parses the (already unquoted) gender value; `None` when it is not one of F, M, E, U.
    pub fn parse(value: &str) -> Option<Gender> {
        match value {
            "F" => Some(Gender::Female),
            "M" => Some(Gender::Male),
            "E" => Some(Gender::Enterprise),
            "U" => Some(Gender::Unknown),
            _ => None,
        }
    }
}

/// One accepted transaction: the five columns the patterns use.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Txn {
    pub customer: Name,
    pub merchant: Name,
    pub category: Name,
    pub gender: Gender,
    pub amount: Micros,
}

/// BankSim's `fraud` labels of accepted rows (a share of a chunk): only the backtest report
/// reads them, and a label is never a reason to reject a row.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LabelCounts {
    /// `(customer, merchant)` of the rows labelled 1, distinct, ascending.
    pub fraud_pairs: Vec<(Name, Name)>,
    /// Rows labelled 1, labelled 0, and with a missing or other label.
    pub fraud: u64,
    pub clean: u64,
    pub unknown: u64,
}

/// A rejected input row (SPEC §2.3): where it was, why, and the raw text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Reject {
    /// The chunk (or file) name, e.g. `chunk-000003.csv`.
    pub chunk: String,
    /// 1-based line number within the object; the header is line 1.
    pub line: u64,
    pub reason: String,
    /// The record's bytes without its line terminator, as [`escape_bytes`] writes them.
    pub raw: String,
}

/// Input bytes as one line of printable text, losslessly (the `raw` column of a rejects
/// file; values in reasons): every byte is written as it is, except that a byte that is not
/// part of valid UTF-8, each byte of a control character (U+0000–U+001F, U+007F–U+009F: line
/// breaks and tabs included) and a backslash that is followed by `x` and two hex digits are
/// written `\xHH` (two uppercase hex digits). Decoding replaces each `\x` and two hex digits
/// by that byte and takes every other character as its UTF-8 bytes. Printable UTF-8 text
/// without such a backslash is written unchanged.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_units(bytes, |unit| {
        out.push_str(unit);
        true
    });
    out
}

/// Calls `emit` with each unit of [`escape_bytes`]'s text in order (a character, or a
/// `\xHH` escape) until it returns `false`.
pub(crate) fn escape_units(bytes: &[u8], mut emit: impl FnMut(&str) -> bool) {
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        for (at, c) in valid.char_indices() {
            let mut utf8 = [0; 4];
            let text = c.encode_utf8(&mut utf8);
            let go_on = if c.is_control() || (c == '\\' && starts_hex_escape(&valid[at + 1..])) {
                text.bytes().all(|byte| emit_hex(byte, &mut emit))
            } else {
                emit(text)
            };
            if !go_on {
                return;
            }
        }
        if !chunk
            .invalid()
            .iter()
            .all(|&byte| emit_hex(byte, &mut emit))
        {
            return;
        }
    }
}

/// `\xHH` for `byte`.
fn emit_hex(byte: u8, emit: &mut impl FnMut(&str) -> bool) -> bool {
    emit(&format!("\\x{byte:02X}"))
}

/// Whether `text` starts with `x` and two hex digits (what follows the `\` of an escape).
fn starts_hex_escape(text: &str) -> bool {
    matches!(text.as_bytes(), [b'x', a, b, ..] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
}

/// The three patterns of SPEC §4. The derived order is the SPEC's output order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Pattern {
    Upgrade,
    Child,
    DeiNeeded,
}

impl Pattern {
    pub const ALL: [Pattern; 3] = [Pattern::Upgrade, Pattern::Child, Pattern::DeiNeeded];

    /// `PatId1`, `PatId2`, `PatId3`.
    pub fn id(self) -> &'static str {
        match self {
            Pattern::Upgrade => "PatId1",
            Pattern::Child => "PatId2",
            Pattern::DeiNeeded => "PatId3",
        }
    }

    /// `UPGRADE`, `CHILD`, `DEI-NEEDED`.
    pub fn action(self) -> &'static str {
        match self {
            Pattern::Upgrade => "UPGRADE",
            Pattern::Child => "CHILD",
            Pattern::DeiNeeded => "DEI-NEEDED",
        }
    }

    pub fn from_id(id: &str) -> Option<Pattern> {
        Pattern::ALL.into_iter().find(|p| p.id() == id)
    }
}

/// The identity of a detection: `(patternId, MerchantId, customerName)`, in the SPEC's
/// within-epoch output order (pattern, then merchant, then customer, bytewise).
/// `customer` is empty for PatId3.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DetectionKey {
    pub pattern: Pattern,
    pub merchant: Name,
    pub customer: Name,
}

/// Why a detection fired: the values that made it hold at its first epoch, stored with its
/// ledger row as a JSON object (`to_json`) and shown in the backtest report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Evidence {
    /// PatId1: `N(m)`, `n(c,m)`, the merchant's count percentile, `W(c,m)` and the merchant's
    /// weight percentile.
    Upgrade {
        merchant_txns: i64,
        customer_txns: i64,
        count_percentile: f64,
        weight: f64,
        weight_percentile: f64,
    },
    /// PatId2: `n(c,m)` and the mean amount `A(c,m)/n(c,m)` (rounded to six decimals).
    Child {
        customer_txns: i64,
        mean_amount: f64,
    },
    /// PatId3: distinct female and male customers of the merchant.
    DeiNeeded {
        female_customers: i64,
        male_customers: i64,
    },
}

impl Evidence {
    /// The stored form: one JSON object, keys in declaration order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A customer-importance weight: the mean of the rows of one `(customer, merchant, typeTrans)` key.
pub type Weight = ordered_float::OrderedFloat<f64>;

/// Key of the importance table: `(customer, merchant, category)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WeightKey {
    pub customer: Name,
    pub merchant: Name,
    pub category: Name,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads [`escape_bytes`]'s text back, written from its rule alone.
    fn decode(text: &str) -> Vec<u8> {
        let b = text.as_bytes();
        let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && hex(i + 2) && hex(i + 3) {
                out.push(u8::from_str_radix(&text[i + 2..i + 4], 16).unwrap());
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn printable_text_is_written_unchanged() {
        for text in [
            "0,'C1093826151','4','M','28007','M348934600','28007','es_transportation',4.55,0",
            "\"a,b\",\"c\"\"d\", é, ∑, 🦀",
            "a\\b, \\\\, \\x, \\x4, \\xZZ, \\ at the end \\",
        ] {
            assert_eq!(escape_bytes(text.as_bytes()), text);
        }
    }

    #[test]
    fn other_bytes_are_escaped() {
        let cases: [(&[u8], &str); 6] = [
            (b"C\xff1", "C\\xFF1"),
            (b"a\x00b\tc\r\nd\x7f", "a\\x00b\\x09c\\x0D\\x0Ad\\x7F"),
            // A C1 control (U+0085) is two bytes.
            ("x\u{85}y".as_bytes(), "x\\xC2\\x85y"),
            // A backslash that would read as an escape.
            (b"\\x41 \\xfF \\\\x00", "\\x5Cx41 \\x5CxfF \\\\x5Cx00"),
            // A truncated UTF-8 sequence before a valid character.
            (b"\xe2\x82A", "\\xE2\\x82A"),
            (b"", ""),
        ];
        for (bytes, text) in cases {
            assert_eq!(escape_bytes(bytes), text);
            assert_eq!(decode(text), bytes);
        }
    }

    #[test]
    fn any_bytes_come_back_from_their_text() {
        // Random bytes drawn mostly from the characters that matter to the rule.
        const PIECES: &[&[u8]] = &[
            b"\\",
            b"x",
            b"4",
            b"F",
            b"g",
            b"\xff",
            b"\xc3",
            b"\xc3\xa9",
            b"\0",
            b"\r\n",
            b"\x7f",
            b"\xc2\x9f",
            b"\xe2\x82",
            b"\xe2\x82\xac",
            b",",
            b"\"",
        ];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut bytes = Vec::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                bytes.extend_from_slice(PIECES[(state % PIECES.len() as u64) as usize]);
            }
            let text = escape_bytes(&bytes);
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert_eq!(decode(&text), bytes, "{text:?}");
        }
    }
}
