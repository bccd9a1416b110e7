//! The bytes of a checkpoint: shards of per-pair totals, and the manifest that names them.
//!
//! A **shard** holds part of the dataflow's accumulated input — per `(c, m)` pair its
//! [`PairSums`] as of the checkpoint's epoch — and checks itself:
//!
//! ```text
//! "TXFLOWCK" | format u32 LE | header length u32 LE | header (JSON: run, epoch, shard, shards)
//!            | body length u64 LE | body | BLAKE3 of everything before it (32 bytes)
//! body: names (varint count, then varint length + UTF-8 bytes each)
//!       entries (varint count, then per pair: customer and merchant as name numbers, the six
//!       sums zigzag-varint encoded)
//! ```
//!
//! Each name is stored once per shard (a merchant appears in thousands of pairs), so the
//! ×10 set's state is a few MB. The shards of one checkpoint partition its pairs, but
//! nothing depends on that: a reader may insert any shard on any worker, since the dataflow
//! sums what it is given (a checkpoint of 2 workers restores on 1, 3 or a cluster).
//!
//! The **manifest** (JSON) is written after every shard is whole; it names the shards with
//! their sizes and carries what the runtime needs beyond the dataflow: the fraud labels seen
//! so far (backtest variants' report) and a replay's `YStartTime`. Its BLAKE3 digest is
//! recorded in the state store, so a manifest replaced by another run's is detected too.

use serde::{Deserialize, Serialize};

use crate::dataflow::aggregates::{Pair, PairSums};
use crate::model::{LabelCounts, Name};

/// The format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 8] = b"TXFLOWCK";
const DIGEST_LEN: usize = 32;

/// Why bytes are not a usable checkpoint part (named in the fallback's warning).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum FormatError {
    #[error("not a txflow checkpoint shard (bad magic)")]
    Magic,
    #[error("format version {0}, this build reads {FORMAT_VERSION}")]
    Version(u32),
    #[error("truncated ({0})")]
    Truncated(&'static str),
    #[error("digest mismatch: its bytes changed or were cut")]
    Digest,
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Mismatch(String),
}

/// What a shard says of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardHeader {
    /// The run's checkpoint key ([`crate::sinks::state::RunIdentity::checkpoint_key`]).
    pub run: String,
    pub epoch: u64,
    pub shard: usize,
    pub shards: usize,
}

/// Encodes a shard: `entries` are `(pair, totals)`, each pair at most once.
pub(crate) fn encode_shard(header: &ShardHeader, entries: &[(Pair, PairSums)]) -> Vec<u8> {
    let mut names: Vec<&Name> = Vec::new();
    let mut numbers = foldhash::HashMap::<&Name, u64>::default();
    for ((c, m), _) in entries {
        for name in [c, m] {
            numbers.entry(name).or_insert_with(|| {
                names.push(name);
                names.len() as u64 - 1
            });
        }
    }
    let mut body = Vec::with_capacity(entries.len() * 24);
    put_varint(&mut body, names.len() as u64);
    for name in &names {
        put_varint(&mut body, name.as_str().len() as u64);
        body.extend_from_slice(name.as_str().as_bytes());
    }
    put_varint(&mut body, entries.len() as u64);
    for ((c, m), s) in entries {
        put_varint(&mut body, numbers[c]);
        put_varint(&mut body, numbers[m]);
        for v in [s.n, s.female, s.male, s.weighted_n] {
            put_varint(&mut body, zigzag(v as i128));
        }
        put_varint(&mut body, zigzag(s.amount));
        put_varint(&mut body, zigzag(s.weighted_sum));
    }
    let header = serde_json::to_vec(header).expect("a header serialises");
    let mut out = Vec::with_capacity(body.len() + header.len() + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    let digest = blake3::hash(&out);
    out.extend_from_slice(digest.as_bytes());
    out
}

/// Decodes and checks a shard: the digest first, then its header against `expected`.
pub(crate) fn decode_shard(
    bytes: &[u8],
    expected: &ShardHeader,
) -> Result<Vec<(Pair, PairSums)>, FormatError> {
    let (header, body) = split_shard(bytes)?;
    if header != *expected {
        return Err(FormatError::Mismatch(format!(
            "its header says run {}…, epoch {}, shard {} of {}; expected run {}…, epoch {}, shard \
             {} of {}",
            short(&header.run),
            header.epoch,
            header.shard,
            header.shards,
            short(&expected.run),
            expected.epoch,
            expected.shard,
            expected.shards
        )));
    }
    decode_body(body)
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The shard's header and body, once its magic, version and digest are checked.
fn split_shard(bytes: &[u8]) -> Result<(ShardHeader, &[u8]), FormatError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(FormatError::Magic);
    }
    let version = u32::from_le_bytes(r.array("version")?);
    if version != FORMAT_VERSION {
        return Err(FormatError::Version(version));
    }
    if bytes.len() < DIGEST_LEN + r.at {
        return Err(FormatError::Truncated("digest"));
    }
    let (signed, digest) = bytes.split_at(bytes.len() - DIGEST_LEN);
    if blake3::hash(signed).as_bytes() != digest {
        return Err(FormatError::Digest);
    }
    let mut r = Reader {
        bytes: signed,
        at: r.at,
    };
    let header_len = u32::from_le_bytes(r.array("header length")?) as usize;
    let header: ShardHeader = serde_json::from_slice(r.take(header_len, "header")?)
        .map_err(|_| FormatError::Malformed("header"))?;
    let body_len = u64::from_le_bytes(r.array("body length")?);
    let body = r.take(usize::try_from(body_len).unwrap_or(usize::MAX), "body")?;
    if r.at != signed.len() {
        return Err(FormatError::Malformed("length"));
    }
    Ok((header, body))
}

fn decode_body(body: &[u8]) -> Result<Vec<(Pair, PairSums)>, FormatError> {
    let mut r = Reader { bytes: body, at: 0 };
    let count = r.len("names")?;
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        let len = r.len("name")?;
        let text = std::str::from_utf8(r.take(len, "name")?)
            .map_err(|_| FormatError::Malformed("name"))?;
        names.push(Name::new(text));
    }
    let count = r.len("entries")?;
    let mut entries = Vec::with_capacity(count);
    let name = |i: u128| usize::try_from(i).ok().and_then(|i| names.get(i)).cloned();
    for _ in 0..count {
        let (c, m) = (r.varint("entry")?, r.varint("entry")?);
        let (Some(c), Some(m)) = (name(c), name(m)) else {
            return Err(FormatError::Malformed("name number"));
        };
        let mut small = [0i64; 4];
        for v in &mut small {
            *v = i64::try_from(unzigzag(r.varint("sums")?))
                .map_err(|_| FormatError::Malformed("sums"))?;
        }
        let [n, female, male, weighted_n] = small;
        let amount = unzigzag(r.varint("sums")?);
        let weighted_sum = unzigzag(r.varint("sums")?);
        let sums = PairSums {
            n,
            amount,
            female,
            male,
            weighted_n,
            weighted_sum,
        };
        entries.push(((c, m), sums));
    }
    if r.at != body.len() {
        return Err(FormatError::Malformed("body length"));
    }
    Ok(entries)
}

/// Reads from a byte slice without ever panicking: every shortfall is an error.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or(FormatError::Truncated(what))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// A LEB128 varint of up to 128 bits.
    fn varint(&mut self, what: &'static str) -> Result<u128, FormatError> {
        let mut value = 0u128;
        for shift in (0..128).step_by(7) {
            let byte = self.take(1, what)?[0];
            value |= u128::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(FormatError::Malformed(what))
    }

    /// A count or length: bounded by the bytes left, so that a corrupt count cannot make
    /// the reader allocate more than the input's size.
    fn len(&mut self, what: &'static str) -> Result<usize, FormatError> {
        let v = self.varint(what)?;
        let left = (self.bytes.len() - self.at) as u128;
        if v > left {
            return Err(FormatError::Malformed(what));
        }
        Ok(v as usize)
    }
}

fn put_varint(out: &mut Vec<u8>, value: impl Into<u128>) {
    let mut v: u128 = value.into();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn unzigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

/// One shard as the manifest names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShardEntry {
    /// The shard's key, relative to the checkpoint's directory.
    pub key: String,
    pub bytes: u64,
}

/// The fraud labels seen up to the checkpoint (the backtest report counts every epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Labels {
    pub fraud_pairs: Vec<(String, String)>,
    pub fraud: u64,
    pub clean: u64,
    pub unknown: u64,
}

impl Labels {
    /// As one share report's labels (the restored epoch's, on worker 0).
    pub(crate) fn to_counts(&self) -> LabelCounts {
        LabelCounts {
            fraud_pairs: self
                .fraud_pairs
                .iter()
                .map(|(c, m)| (Name::new(c), Name::new(m)))
                .collect(),
            fraud: self.fraud,
            clean: self.clean,
            unknown: self.unknown,
        }
    }
}

/// A checkpoint's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: u32,
    /// The run's checkpoint key.
    pub run: String,
    pub epoch: u64,
    pub shards: Vec<ShardEntry>,
    pub labels: Labels,
    /// A replay's `YStartTime` source (the first replayed chunk's last-modified time), so
    /// that a resumed replay needs no chunk at or before the checkpoint.
    pub first_chunk_ms: Option<i64>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest serialises")
    }

    /// Parses a manifest and checks it is of this format and this run at `epoch`.
    pub(crate) fn decode(bytes: &[u8], run: &str, epoch: u64) -> Result<Manifest, FormatError> {
        let probe: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|_| FormatError::Malformed("manifest"))?;
        let format = probe.get("format").and_then(|f| f.as_u64()).unwrap_or(0);
        if format != u64::from(FORMAT_VERSION) {
            return Err(FormatError::Version(format.min(u64::from(u32::MAX)) as u32));
        }
        let manifest: Manifest =
            serde_json::from_value(probe).map_err(|_| FormatError::Malformed("manifest"))?;
        if manifest.run != run {
            return Err(FormatError::Mismatch(format!(
                "it belongs to another run ({}…, this run is {}…)",
                short(&manifest.run),
                short(run)
            )));
        }
        if manifest.epoch != epoch {
            return Err(FormatError::Mismatch(format!(
                "it is of epoch {}, recorded as epoch {epoch}",
                manifest.epoch
            )));
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<(Pair, PairSums)> {
        let sums = |n: i64| PairSums {
            n,
            amount: 455 * n as i128 * 10_000,
            female: n / 2,
            male: n - n / 2,
            weighted_n: n - 1,
            weighted_sum: -(1i128 << 100) + n as i128,
        };
        vec![
            ((Name::new("'C1'"), Name::new("'M1'")), sums(3)),
            ((Name::new("'C1'"), Name::new("'M2'")), sums(1)),
            (
                (Name::new("a customer with a long name"), Name::new("'M1'")),
                sums(i64::MAX),
            ),
        ]
    }

    fn header() -> ShardHeader {
        ShardHeader {
            run: "r".repeat(64),
            epoch: 99,
            shard: 1,
            shards: 2,
        }
    }

    #[test]
    fn shards_round_trip() {
        let bytes = encode_shard(&header(), &entries());
        assert_eq!(decode_shard(&bytes, &header()).unwrap(), entries());
        let empty = encode_shard(&header(), &[]);
        assert_eq!(decode_shard(&empty, &header()).unwrap(), Vec::new());
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_refused() {
        let bytes = encode_shard(&header(), &entries());
        for cut in 0..bytes.len() {
            assert!(
                decode_shard(&bytes[..cut], &header()).is_err(),
                "cut at {cut}"
            );
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            assert!(decode_shard(&flipped, &header()).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn another_header_or_version_is_refused() {
        let bytes = encode_shard(&header(), &entries());
        let other = ShardHeader {
            epoch: 98,
            ..header()
        };
        assert!(matches!(
            decode_shard(&bytes, &other),
            Err(FormatError::Mismatch(_))
        ));
        let mut future = bytes.clone();
        future[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(
            decode_shard(&future, &header()),
            Err(FormatError::Version(2))
        );
    }

    #[test]
    fn varints_and_zigzag_cover_the_extremes() {
        for v in [
            0i128,
            1,
            -1,
            i64::MAX as i128,
            i64::MIN as i128,
            i128::MAX,
            i128::MIN,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(v));
            let mut r = Reader { bytes: &out, at: 0 };
            assert_eq!(unzigzag(r.varint("v").unwrap()), v);
        }
    }

    #[test]
    fn manifests_check_format_run_and_epoch() {
        let m = Manifest {
            format: FORMAT_VERSION,
            run: "a".repeat(64),
            epoch: 9,
            shards: vec![ShardEntry {
                key: "shard-0000-of-0001.bin".into(),
                bytes: 10,
            }],
            labels: Labels::default(),
            first_chunk_ms: Some(5),
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes, &m.run, 9).unwrap(), m);
        assert!(Manifest::decode(&bytes, &"b".repeat(64), 9).is_err());
        assert!(Manifest::decode(&bytes, &m.run, 8).is_err());
        let future = String::from_utf8(bytes)
            .unwrap()
            .replace(&format!("\"format\": {FORMAT_VERSION}"), "\"format\": 7");
        assert_eq!(
            Manifest::decode(future.as_bytes(), &m.run, 9),
            Err(FormatError::Version(7))
        );
        assert!(Manifest::decode(b"{", &m.run, 9).is_err());
    }
}
