//! [`Name`]: an identifier (customer, merchant, category) as the dataflow stores it.
//!
//! Every arrangement sorts and merges by these keys, so their size and comparison speed
//! matter more than anything else about them. Names of up to 15 bytes without NUL bytes (all
//! of BankSim's customers and merchants) are stored inline, zero-padded, and compared as two
//! big-endian `u64` words — the same order as comparing the bytes, since padding sorts before
//! every real byte. Longer names (most of BankSim's categories) live on the heap, shared
//! (cloning one is a reference count), and compare bytewise; [`NameCache`] gives a parser the
//! same heap name for the same bytes. The order is byte order throughout, as the SPEC's output
//! order needs.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Inline capacity: 15 bytes plus the enum's tag make a `Name` 16 bytes, the size of the
/// heap variant (a thin pointer after the tag's padding), so a pair of names is 32 bytes.
const INLINE: usize = 15;

#[derive(Clone, PartialEq, Eq)]
pub struct Name(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline([u8; INLINE]),
    /// `Arc<String>`, not `Arc<str>`: a thin pointer keeps the name at 16 bytes.
    Heap(Arc<String>),
}

impl Name {
    pub fn new(text: &str) -> Name {
        let bytes = text.as_bytes();
        if fits_inline(bytes) {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Name(Repr::Inline(inline))
        } else {
            Name(Repr::Heap(Arc::new(text.to_owned())))
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

fn fits_inline(bytes: &[u8]) -> bool {
    bytes.len() <= INLINE && !bytes.contains(&0)
}

/// The heap names a parser has made, by their bytes: a chunk names few distinct long values
/// (its categories) on every row, and each row then shares one allocation instead of making
/// its own. Bounded, so that a chunk of distinct long names costs no more than without it.
#[derive(Default)]
pub(crate) struct NameCache {
    heap: Vec<Name>,
}

/// How many distinct heap names a [`NameCache`] keeps.
const CACHED: usize = 32;

impl NameCache {
    /// The name of `bytes` (`Err` when they are not UTF-8).
    #[inline]
    pub(crate) fn name(&mut self, bytes: &[u8]) -> Result<Name, std::str::Utf8Error> {
        if fits_inline(bytes) {
            return Name::from_utf8(bytes);
        }
        if let Some(name) = self.heap.iter().find(|n| n.as_str().as_bytes() == bytes) {
            return Ok(name.clone());
        }
        let name = Name::from_utf8(bytes)?;
        if self.heap.len() < CACHED {
            self.heap.push(name.clone());
        }
        Ok(name)
    }
}

/// Two big-endian words covering the 15 bytes: `[0..8]` and `[7..15]`. The second overlaps
/// the first by one byte, which keeps every load a plain 8-byte read; comparing the words in
/// order is comparing the bytes, since byte 7 only matters in the second word when the
/// first words are equal.
fn words(bytes: &[u8; INLINE]) -> [u64; 2] {
    let word =
        |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("a slice of 8 bytes"));
    [word(0), word(7)]
}

impl Ord for Name {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Repr::Inline(a), Repr::Inline(b)) => words(a).cmp(&words(b)),
            _ => self.as_str().as_bytes().cmp(other.as_str().as_bytes()),
        }
    }
}

/// Hashes an inline name as its two words (two `write_u64`s instead of a length-prefixed
/// byte slice): names are hashed for every exchange between workers and every hash-map
/// lookup on the way in. The words are big-endian, so the hash, and with it the worker a key
/// is routed to, is the same on every platform. The two representations never hold the same
/// name, so they may hash differently.
impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match &self.0 {
            Repr::Inline(bytes) => {
                let [a, b] = words(bytes);
                state.write_u64(a);
                state.write_u64(b);
            }
            Repr::Heap(text) => {
                state.write_u8(0xff);
                text.as_str().hash(state);
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
        assert_eq!(std::mem::size_of::<Name>(), 16);
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
            "M18230726870000",
            "M182307268700000",
            "M18230726870001",
            "M1823072687000",
            "M1823072",
            "M18230726",
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
        // long prefixes and differ near bytes 7, 8, 15 and 16.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let texts: Vec<String> = (0..3000)
            .map(|_| {
                let len = (next() % 20) as usize;
                let prefix = (next() % 16) as usize;
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
        let base = "C".repeat(INLINE);
        for i in 0..INLINE {
            let mut other = base.clone().into_bytes();
            other[i] = b'D';
            let other = String::from_utf8(other).unwrap();
            assert_ne!(hash(&base), hash(&other), "byte {i}");
        }
    }

    #[test]
    fn the_cache_gives_equal_names_and_shares_long_ones() {
        let mut cache = NameCache::default();
        for text in [
            "es_transportation",
            "C1093826151",
            "es_transportation",
            "M1",
        ] {
            let name = cache.name(text.as_bytes()).unwrap();
            assert_eq!(name, Name::new(text));
            assert_eq!(name.as_str(), text);
        }
        let (a, b) = (
            cache.name(b"es_barsandrestaurants").unwrap(),
            cache.name(b"es_barsandrestaurants").unwrap(),
        );
        match (&a.0, &b.0) {
            (Repr::Heap(x), Repr::Heap(y)) => assert!(Arc::ptr_eq(x, y)),
            _ => panic!("a 21-byte name lives on the heap"),
        }
        assert!(cache.name(b"\xff\xfe").is_err());
        // Past its bound the cache still names correctly.
        for i in 0..(CACHED + 5) {
            let text = format!("a-long-category-{i}");
            assert_eq!(cache.name(text.as_bytes()).unwrap().as_str(), text);
        }
    }
}
