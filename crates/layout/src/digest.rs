//! Content digests: `algorithm:encoded`, validated against the image-spec grammar.
//!
//! A [`Digest`] is the only way from a descriptor to a blob path. The grammar forbids `/` and
//! `..` in both parts, so every grammar-valid digest maps to a path inside `blobs/`.
//! sha256 and sha512 are verified; other algorithms that fit the grammar are carried but
//! reported as unverifiable.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A digest string that does not fit the grammar, or whose encoding is wrong for its
/// algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not `algorithm:encoded` per the image-spec grammar.
    #[error("invalid digest `{0}`: not of the form algorithm:encoded")]
    Format(String),
    /// A known algorithm with an encoding of the wrong length or alphabet.
    #[error("invalid digest `{0}`: wrong length or characters for its algorithm")]
    Length(String),
}

/// A hash algorithm named by a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default and by far the most common.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// Every algorithm ocikit computes.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name used in digests and in `blobs/<alg>/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// A map keyed by digest, with a fast hasher (foldhash, seeded per process: the names in a
/// layout are input, so a fixed hash could be attacked with colliding ones).
pub type DigestMap<V> = std::collections::HashMap<Digest, V, foldhash::fast::RandomState>;

/// A set of digests, hashed as [`DigestMap`] hashes them, sha256 digests held as their 32
/// bytes (no string each): gc marks half a million of them in a large layout.
#[derive(Debug, Clone, Default)]
pub struct DigestSet {
    sha256: std::collections::HashSet<[u8; 32], foldhash::fast::RandomState>,
    other: std::collections::HashSet<Digest, foldhash::fast::RandomState>,
}

impl DigestSet {
    /// Add `d`; true when it was not there.
    pub fn insert(&mut self, d: Digest) -> bool {
        match d.sha256_bytes() {
            Some(b) => self.sha256.insert(b),
            None => self.other.insert(d),
        }
    }

    /// Is `d` there?
    pub fn contains(&self, d: &Digest) -> bool {
        match d.sha256_bytes() {
            Some(b) => self.sha256.contains(&b),
            None => self.other.contains(d),
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.sha256.len() + self.other.len()
    }

    /// None?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A set of digests built in two steps: pushed (repeats allowed), then sealed (sorted, without
/// repeats), then asked. sha256 digests are kept as their 32 bytes in one sorted vector: the
/// half a million digests gc marks take 16 MB, and listing and marking meet in one merge.
#[derive(Debug, Clone, Default)]
pub struct DigestList {
    sha256: Vec<[u8; 32]>,
    other: Vec<Digest>,
}

impl DigestList {
    /// Add `d` (before [`DigestList::seal`]).
    pub fn push(&mut self, d: Digest) {
        match d.sha256_bytes() {
            Some(b) => self.sha256.push(b),
            None => self.other.push(d),
        }
    }

    /// Sort and drop repeats; [`DigestList::contains`] needs it.
    pub fn seal(&mut self) {
        self.sha256.sort_unstable();
        self.sha256.dedup();
        self.other.sort_unstable();
        self.other.dedup();
    }

    /// Is `d` there (once sealed)?
    pub fn contains(&self, d: &Digest) -> bool {
        match d.sha256_bytes() {
            Some(b) => self.sha256.binary_search(&b).is_ok(),
            None => self.other.binary_search(d).is_ok(),
        }
    }

    /// The sha256 digests, as their bytes, sorted (once sealed).
    pub(crate) fn sha256(&self) -> &[[u8; 32]] {
        &self.sha256
    }

    /// How many (once sealed).
    pub fn len(&self) -> usize {
        self.sha256.len() + self.other.len()
    }

    /// None?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A validated digest. Ordering is by the full string, so sorted output is stable.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: String,
    colon: usize,
}

impl Digest {
    /// Parse and validate a digest string.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let colon = Self::check(s)?;
        Ok(Digest {
            text: s.to_string(),
            colon,
        })
    }

    /// [`Digest::parse`], keeping the string (no copy): what deserializing does.
    pub fn parse_owned(text: String) -> Result<Digest, DigestError> {
        let colon = Self::check(&text)?;
        Ok(Digest { text, colon })
    }

    /// Validate `s`; the position of its colon.
    fn check(s: &str) -> Result<usize, DigestError> {
        // The usual case first, in one pass: `sha256:` and 64 lowercase hex digits.
        if s.len() == 71
            && s.as_bytes()[..7] == *b"sha256:"
            && s.as_bytes()[7..]
                .iter()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Ok(6);
        }
        let colon = s
            .find(':')
            .ok_or_else(|| DigestError::Format(s.to_string()))?;
        let (alg, enc) = (&s[..colon], &s[colon + 1..]);
        if !valid_algorithm(alg) || enc.is_empty() || !enc.bytes().all(valid_encoded_byte) {
            return Err(DigestError::Format(s.to_string()));
        }
        let known = match alg {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        };
        if let Some(a) = known {
            if enc.len() != a.hex_len()
                || !enc.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            {
                return Err(DigestError::Length(s.to_string()));
            }
        }
        Ok(colon)
    }

    /// A sha256 digest's 32 bytes (its encoding is 64 lowercase hex digits, checked when parsed).
    pub(crate) fn sha256_bytes(&self) -> Option<[u8; 32]> {
        if self.colon != 6 || &self.text[..6] != "sha256" {
            return None;
        }
        let hex = &self.text.as_bytes()[7..];
        let nibble = |c: u8| match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        };
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *o = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        Some(out)
    }

    /// The sha256 digest whose 32 bytes are `b`.
    pub(crate) fn from_sha256_bytes(b: &[u8; 32]) -> Digest {
        let mut text = String::with_capacity(71);
        text.push_str("sha256:");
        for byte in b {
            text.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            text.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        Digest { text, colon: 6 }
    }

    /// The digest of `bytes` with `alg`.
    pub fn of(alg: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = alg.hasher();
        h.update(bytes);
        h.finish()
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    /// The algorithm part, as written.
    pub fn algorithm_str(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The encoded part (hex for sha256 and sha512).
    pub fn encoded(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The algorithm, when ocikit can verify it.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match self.algorithm_str() {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The whole digest string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The path of this blob relative to the layout root: `blobs/<alg>/<encoded>`.
    /// Safe by construction: the grammar admits neither `/` nor `..`.
    pub fn blob_rel_path(&self) -> std::path::PathBuf {
        std::path::Path::new("blobs")
            .join(self.algorithm_str())
            .join(self.encoded())
    }
}

fn valid_algorithm(alg: &str) -> bool {
    // algorithm ::= component (separator component)* ; component ::= [a-z0-9]+ ; separator ::= [+._-]
    if alg.is_empty() {
        return false;
    }
    let mut prev_sep = true;
    for b in alg.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = false,
            b'+' | b'.' | b'_' | b'-' => {
                if prev_sep {
                    return false;
                }
                prev_sep = true;
            }
            _ => return false,
        }
    }
    !prev_sep
}

fn valid_encoded_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'=' | b'_' | b'-')
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse_owned(s).map_err(serde::de::Error::custom)
    }
}

/// A running hash for one of the verifiable algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hasher::Sha256(_) => "Hasher(sha256)",
            Hasher::Sha512(_) => "Hasher(sha512)",
        })
    }
}

impl Hasher {
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => ("sha256", to_hex(&h.finalize())),
            Hasher::Sha512(h) => ("sha512", to_hex(&h.finalize())),
        };
        let text = format!("{alg}:{hex}");
        Digest {
            colon: alg.len(),
            text,
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_table() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b", Ok(())),
            ("sha512:401b09eab3c013d4ca54922bb802bec8fd5318192b0a75f201d8b3727429080fb337591abd3e44453b954555b7a0812e1081c39b740293f765eae731f5a65ed1", Ok(())),
            ("sha384:d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801d", Ok(())),
            ("sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564", Ok(())),
            ("multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8", Ok(())),
            ("", Err("format")),
            ("     ", Err("format")),
            ("sha256:", Err("format")),
            (":", Err("format")),
            ("d41d8cd98f00b204e9800998ecf8427e", Err("format")),
            ("../blah:this-is-an-attack", Err("format")),
            ("sha256:../../etc/passwd", Err("format")),
            ("sha256:d41d8cd98f00b204e9800m98ecf8427e", Err("length")),
            ("sha256:abcdef0123456789", Err("length")),
            ("sha256:E58FCF7418D4390DEC8E8FB69D88C06EC07039D651FEDD3AA72AF9972E7D046B", Err("length")),
            ("sha256++b64:abc", Err("format")),
            ("+sha256:abc", Err("format")),
            ("sha256-:abc", Err("format")),
            ("SHA256:abc", Err("format")),
        ];
        for (input, want) in cases {
            let got = Digest::parse(input);
            match (want, &got) {
                (Ok(()), Ok(d)) => assert_eq!(d.as_str(), *input),
                (Err("format"), Err(DigestError::Format(_))) => {}
                (Err("length"), Err(DigestError::Length(_))) => {}
                _ => panic!("{input:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            Digest::sha256(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            Digest::of(Algorithm::Sha512, b"").as_str(),
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
    }

    #[test]
    fn blob_path() {
        let d = Digest::sha256(b"x");
        assert_eq!(
            d.blob_rel_path(),
            std::path::Path::new("blobs/sha256").join(d.encoded())
        );
    }
}
