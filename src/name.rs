//! [`Name`]: an identifier (customer, merchant, category) as the dataflow stores it.
//!
//! Every arrangement sorts and merges by these keys, so comparison speed matters more than
//! anything else about them. Names of up to 23 bytes without NUL bytes (all of BankSim's) are
//! stored inline, zero-padded, and compared as three big-endian `u64` words — the same order
//! as comparing the bytes, since padding sorts before every real byte. Longer names live on the
//! heap and compare bytewise. The order is byte order throughout, as the SPEC's output order needs.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Inline capacity: 23 bytes plus the enum's tag make a `Name` 24 bytes, the size of the
/// heap variant (a `Box<str>` after the tag's padding), so a pair of names is 48 bytes.
const INLINE: usize = 23;

#[derive(Clone, PartialEq, Eq)]
pub struct Name(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline([u8; INLINE]),
    Heap(Box<str>),
}

impl Name {
    pub fn new(text: &str) -> Name {
        let bytes = text.as_bytes();
        if bytes.len() <= INLINE && !bytes.contains(&0) {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Name(Repr::Inline(inline))
        } else {
            Name(Repr::Heap(text.into()))
        }
    }

    pub fn from_utf8(bytes: &[u8]) -> Result<Name, std::str::Utf8Error> {
        std::str::from_utf8(bytes).map(Name::new)
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(bytes) => {
                let len = bytes.iter().position(|b| *b == 0).unwrap_or(INLINE);
                // Built from a &str, cut at a char boundary (the padding starts after it).
                std::str::from_utf8(&bytes[..len]).unwrap_or_default()
            }
            Repr::Heap(text) => text,
        }
    }

    pub fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Inline(bytes) => bytes[0] == 0,
            Repr::Heap(text) => text.is_empty(),
        }
    }
}

/// Three big-endian words covering the 23 bytes: `[0..8]`, `[8..16]` and `[15..23]`. The last
/// overlaps the second by one byte, which keeps every load a plain 8-byte read; comparing
/// the words in order is comparing the bytes, since byte 15 only matters in the third word
/// when the first two are equal.
fn words(bytes: &[u8; INLINE]) -> [u64; 3] {
    let word =
        |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("a slice of 8 bytes"));
    [word(0), word(8), word(15)]
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Repr::Inline(a), Repr::Inline(b)) => words(a).cmp(&words(b)),
            _ => self.as_str().as_bytes().cmp(other.as_str().as_bytes()),
        }
    }
}

/// Hashes an inline name as its three words (three `write_u64`s instead of a length-prefixed
/// byte slice): names are hashed for every exchange between workers and every hash-map
/// lookup on the way in. The words are big-endian, so the hash, and with it the worker a key
/// is routed to, is the same on every platform. The two representations never hold the same
/// name, so they may hash differently.
impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::Inline(bytes) => {
                let [a, b, c] = words(bytes);
                state.write_u64(a);
                state.write_u64(b);
                state.write_u64(c);
            }
            Repr::Heap(text) => {
                state.write_u8(0xff);
                text.hash(state);
            }
        }
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Default for Name {
    fn default() -> Self {
        Name(Repr::Inline([0; INLINE]))
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Self {
        Name::new(text)
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Self {
        Name::new(text)
    }
}

impl From<String> for Name {
    fn from(text: String) -> Self {
        Name::new(&text)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Name::new(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_byte_order_across_representations() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        let long = "x".repeat(30);
        let mut texts = vec![
            "",
            "M1823072687",
            "M348934600",
            "M1",
            "M10",
            "M1\u{e9}",
            "a\0b",
            "es_barsandrestaurants",
            "C1093826151",
            "M",
            "Z",
            "M18230726870000000000000",
            "M182307268700000000000000",
            "M18230726870000000000001",
            "M1823072687000000000000",
            long.as_str(),
        ];
        let mut names: Vec<Name> = texts.iter().map(|t| Name::new(t)).collect();
        texts.sort();
        names.sort();
        let back: Vec<&str> = names.iter().map(Name::as_str).collect();
        assert_eq!(back, texts);
        assert!(Name::new("M1823072687") < Name::new("M348934600"));
        assert_eq!(Name::new("abc").to_string(), "abc");
        assert!(Name::default().is_empty());
        assert_eq!(Name::new(&long).as_str(), long);
    }

    #[test]
    fn order_is_byte_order_on_random_names() {
        // Short alphabets and lengths around the inline limit, so that names often share
        // long prefixes and differ near bytes 15, 16 and 23.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let texts: Vec<String> = (0..3000)
            .map(|_| {
                let len = (next() % 28) as usize;
                let prefix = (next() % 20) as usize;
                (0..len)
                    .map(|i| {
                        if i < prefix {
                            'a'
                        } else {
                            ['a', 'b', '\u{e9}'][(next() % 3) as usize]
                        }
                    })
                    .collect()
            })
            .collect();
        for pair in texts.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert_eq!(
                Name::new(a).cmp(&Name::new(b)),
                a.as_bytes().cmp(b.as_bytes()),
                "{a:?} vs {b:?}"
            );
            assert_eq!(Name::new(a) == Name::new(b), a == b);
        }
    }

    #[test]
    fn equal_names_hash_equal_and_neighbours_differ() {
        use std::hash::BuildHasher;
        let hash = |text: &str| foldhash::fast::FixedState::with_seed(7).hash_one(Name::new(text));
        let long = "y".repeat(40);
        for text in [
            "",
            "M1823072687",
            "es_barsandrestaurants",
            long.as_str(),
            "a\0b",
        ] {
            // Built from a `&str` and from bytes (the parser's path), equal names hash equal.
            let from_bytes = Name::from_utf8(text.as_bytes()).unwrap();
            assert_eq!(Name::new(text), from_bytes);
            assert_eq!(
                hash(text),
                foldhash::fast::FixedState::with_seed(7).hash_one(from_bytes)
            );
        }
        // Zero padding is not content: names that differ only by trailing NULs differ.
        let padded = ["a", "a\0", "a\0\0", "\0", ""];
        for (i, a) in padded.iter().enumerate() {
            for b in &padded[i + 1..] {
                assert_ne!(Name::new(a), Name::new(b), "{a:?} vs {b:?}");
                assert_ne!(hash(a), hash(b), "{a:?} vs {b:?}");
            }
        }
        // Names differing in any byte position, including the last inline one, hash apart.
        let base = "C".repeat(23);
        for i in 0..23 {
            let mut other = base.clone().into_bytes();
            other[i] = b'D';
            let other = String::from_utf8(other).unwrap();
            assert_ne!(hash(&base), hash(&other), "byte {i}");
        }
    }
}
