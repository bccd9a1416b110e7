//! Parsing of BankSim transaction chunks (SPEC §2.1, §2.3).

use crate::model::{Reject, Txn};

/// Parses an unsigned decimal amount (`4.55`, `12`, `0.5`, at most six fractional digits)
/// into micro-units. `None` for a sign, an exponent, `NaN`, `inf`, an empty value, or a value
/// of 10^12 or more (kept below so that sums of many amounts stay exact in 128 bits... and
/// single amounts fit `i64` micro-units).
pub fn parse_decimal_micros(text: &str) -> Option<i64> {
    let _ = text;
    unimplemented!("parse_decimal_micros")
}

/// The result of parsing one chunk (or this worker's share of it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkParse {
    /// Number of records in the whole chunk (all workers' shares), excluding the header and blank lines.
    pub records: u64,
    /// Accepted transactions of this share, in record order.
    pub txns: Vec<Txn>,
    /// Rejected rows of this share, in line order.
    pub rejects: Vec<Reject>,
    /// Set when the header lacks a required column (the whole chunk is rejected).
    pub header_error: Option<String>,
}

/// Parses chunk `chunk_name`. Record `i` (0-based, in file order) belongs to this share when
/// `i % peers == index`; only those are validated and returned.
pub fn parse_chunk(chunk_name: &str, bytes: &[u8], peers: usize, index: usize) -> ChunkParse {
    let _ = (chunk_name, bytes, peers, index);
    unimplemented!("parse_chunk")
}
