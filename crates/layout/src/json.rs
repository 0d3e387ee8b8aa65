//! JSON whose numbers survive a parse and a rewrite exactly.
//!
//! `serde_json` (without `arbitrary_precision`) reads every number as `u64`, `i64` or `f64`:
//! `123456789012345678901234567890` comes back as `1.2345678901234568e29`, `1.0e400` does not
//! parse at all, and `1E2` is written back as `100.0`. ocikit keeps the fields it does not know
//! and writes them back when it rewrites `index.json` or a document, so such numbers must come
//! back as they were. `arbitrary_precision` would keep them, but it breaks
//! `#[serde(flatten)]`, which every descriptor type uses for its unknown fields.
//!
//! Instead, [`from_slice`] finds the numbers that would not come back as written (by the one
//! test that matters: parse the token alone and print it again) and hands them to the parser
//! as strings marked with a per-process random tag; [`to_vec`] and [`to_vec_pretty`] turn
//! every marked string back into the number's original text. Numbers that round-trip (sizes,
//! schema versions: nearly all of them) are left alone, and a document without any other
//! number is parsed directly. The tag is 128 random bits chosen when first needed, so no
//! input can forge one; a marked string only ever exists inside this process.
//!
//! Where a known field (a `size`) holds such a number, the marked string would not fit its
//! type: the original text is parsed again for the error (or value) `serde_json` gives it.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The marker a kept number's string starts with: printable ASCII without `"` or `\`, so it is
/// serialized as it is and found again in the output.
fn marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| {
        let s = std::collections::hash_map::RandomState::new();
        let (a, b) = (s.hash_one(0x6f63_696bu32), s.hash_one(std::process::id()));
        format!("ocikit-exact-number-{a:016x}{b:016x}:")
    })
}

/// Is `tok` a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`)? Anything else
/// is left for the parser to refuse.
fn is_number(tok: &str) -> bool {
    let b = tok.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Does this number token come back as written through `serde_json`?
fn round_trips(tok: &str) -> bool {
    let digits = tok.strip_prefix('-').unwrap_or(tok);
    // Integers below 10^18 (the grammar allows no leading zeros): the usual case, no parse.
    if !digits.is_empty()
        && digits.len() <= 18
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && tok != "-0"
    {
        return true;
    }
    match serde_json::from_str::<serde_json::Number>(tok) {
        Ok(n) => serde_json::to_string(&n).is_ok_and(|s| s == tok),
        Err(_) => false,
    }
}

/// `bytes` with every number that would not round-trip replaced by a marked string, or `None`
/// when there is none.
fn protect(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', bytes.get(i..).unwrap_or_default()) {
                        Some(p) if bytes[i + p] == b'"' => {
                            i += p + 1;
                            break;
                        }
                        Some(p) => i += p + 2,
                        None => {
                            i = bytes.len();
                            break;
                        }
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let Ok(tok) = std::str::from_utf8(&bytes[start..i]) else {
                    continue;
                };
                // Not a number at all (`1.0.0`): the parser refuses it as it would anyway.
                if !is_number(tok) || round_trips(tok) {
                    continue;
                }
                let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len() + 64));
                o.extend_from_slice(&bytes[copied..start]);
                o.push(b'"');
                o.extend_from_slice(marker().as_bytes());
                o.extend_from_slice(tok.as_bytes());
                o.push(b'"');
                copied = i;
            }
            _ => i += 1,
        }
    }
    let mut out = out?;
    out.extend_from_slice(&bytes[copied.min(bytes.len())..]);
    Some(out)
}

/// Parse JSON, keeping numbers that `serde_json` would change as their text (see the module
/// documentation). Errors are the ones `serde_json` gives for `bytes` as they are.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match protect(bytes) {
        None => serde_json::from_slice(bytes),
        Some(marked) => match serde_json::from_slice(&marked) {
            Ok(v) => Ok(v),
            // A kept number where a known field wants a number (or invalid JSON): what the
            // plain parser says about the original.
            Err(_) => serde_json::from_slice(bytes),
        },
    }
}

/// Turn every marked string in serialized JSON back into its number.
fn restore(out: Vec<u8>) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(marker().len() + 1);
    pattern.push(b'"');
    pattern.extend_from_slice(marker().as_bytes());
    let Some(first) = find(&out, &pattern, 0) else {
        return out;
    };
    let mut res = Vec::with_capacity(out.len());
    let mut copied = 0;
    let mut at = Some(first);
    while let Some(start) = at {
        let num_start = start + pattern.len();
        let Some(end) = out[num_start..].iter().position(|&b| b == b'"') else {
            break;
        };
        let num = &out[num_start..num_start + end];
        // Only a number is written back as one: the output is JSON whatever a string held.
        if std::str::from_utf8(num).is_ok_and(is_number) {
            res.extend_from_slice(&out[copied..start]);
            res.extend_from_slice(num);
            copied = num_start + end + 1;
        }
        at = find(&out, &pattern, num_start + end + 1);
    }
    res.extend_from_slice(&out[copied..]);
    res
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|p| p + from)
}

/// Serialize as compact JSON, numbers kept by [`from_slice`] written as they were read.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(value).map(restore)
}

/// Serialize as pretty JSON, numbers kept by [`from_slice`] written as they were read.
pub fn to_vec_pretty<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map(restore)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Index;
    use serde_json::Value;

    #[test]
    fn numbers_serde_would_change_come_back_as_written() {
        let input = br#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"platform":{"architecture":"amd64","os":"linux","x-f":[1.0e400,1E2,-0,0.1000000000000000055511151231257827]},"x-big":123456789012345678901234567890}],"x-n":{"a":-98765432109876543210,"s":"1e400 in a string","ok":[7,1.5,-3]}}"#;
        let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
        let ix: Index = from_slice(input).expect("parses");
        assert_eq!(text(to_vec(&ix).expect("json")), text(input.to_vec()));
        // Through a Value (the rewriter's maps) too.
        let v: Value = from_slice(input).expect("parses");
        assert_eq!(text(to_vec(&v).expect("json")), text(input.to_vec()));
        // Plain serde_json could not even read it.
        assert!(serde_json::from_slice::<Value>(input).is_err());
    }

    #[test]
    fn a_known_field_keeps_serde_json_s_own_error() {
        let input = br#"{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":1e2}]}"#;
        let e = from_slice::<Index>(input).expect_err("size is no integer");
        let plain = serde_json::from_slice::<Index>(input).expect_err("same");
        assert_eq!(e.to_string(), plain.to_string());
    }

    #[test]
    fn what_is_not_a_number_is_left_for_the_parser_to_refuse() {
        for bad in [
            &b"{\"v\":1.0.0}"[..],
            b"{\"v\":01}",
            b"{\"v\":1.}",
            b"{\"v\":-}",
            b"[1e]",
        ] {
            let plain = serde_json::from_slice::<Value>(bad).expect_err("invalid");
            let e = from_slice::<Value>(bad).expect_err("still invalid");
            assert_eq!(e.to_string(), plain.to_string());
        }
        assert!(is_number("-0.5e+10") && is_number("0") && is_number("1E400"));
        assert!(!is_number("1.0.0") && !is_number("01") && !is_number("+1"));
    }

    /// Found by fuzzing (the fuzzer can read the tag from memory; an input from outside the
    /// process cannot): a string holding the tag and no number stays a string, so what is
    /// written is JSON.
    #[test]
    fn a_marked_string_without_a_number_is_written_as_a_string() {
        let input = format!(r#"{{"a":"{}1,5","b":"{}","c":1E2}}"#, marker(), marker());
        let v: Value = from_slice(input.as_bytes()).expect("parses");
        let out = to_vec(&v).expect("json");
        let back: Value = from_slice(&out).expect("what is written parses");
        assert_eq!(to_vec(&back).expect("json"), out);
        assert!(String::from_utf8(out)
            .expect("utf-8")
            .ends_with(r#","c":1E2}"#));
    }

    #[test]
    fn strings_that_look_like_markers_stay_strings() {
        let input = br#"{"a":"ocikit-exact-number-0000000000000000:5","b":"\"12e999"}"#;
        let v: Value = from_slice(input).expect("parses");
        assert_eq!(to_vec(&v).expect("json"), input.to_vec());
    }
}
