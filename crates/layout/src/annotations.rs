//! [`Annotations`]: the string-to-string maps of descriptors, manifests and indexes.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Annotations: string keys to string values, kept in key order (as a `BTreeMap` keeps them,
/// so documents are written with their keys sorted), stored as one sorted vector. An
/// `index.json` of 100,000 refs holds 100,000 of these with one key each; a `BTreeMap`'s
/// first node alone is over 500 bytes, a vector's one entry 48.
///
/// A key given twice keeps its last value, as JSON parsers (and `BTreeMap`) do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Annotations(Vec<(String, String)>);

impl Annotations {
    /// No annotations.
    pub fn new() -> Annotations {
        Annotations(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// Is `key` there?
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Set `key` to `value`; the value it had.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Remove `key`; the value it had.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Keep only the entries `f` says yes to.
    pub fn retain(&mut self, mut f: impl FnMut(&String, &mut String) -> bool) {
        self.0.retain_mut(|(k, v)| f(k, v));
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// None at all?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &String)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// The values, in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(_, v)| v)
    }

    /// From entries in any order; of a key given twice, the last value stays. `O(n log n)`,
    /// whatever the order (a document is input: sorted inserts would be quadratic on keys
    /// given in reverse).
    fn from_vec(v: Vec<(String, String)>) -> Annotations {
        let mut v: Vec<(usize, (String, String))> = v.into_iter().enumerate().collect();
        v.sort_unstable_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(&a.0)));
        v.dedup_by(|later, first| later.1 .0 == first.1 .0);
        Annotations(v.into_iter().map(|(_, e)| e).collect())
    }
}

impl FromIterator<(String, String)> for Annotations {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Annotations::from_vec(iter.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, String); N]> for Annotations {
    fn from(entries: [(String, String); N]) -> Self {
        Annotations::from_vec(entries.into())
    }
}

impl Extend<(String, String)> for Annotations {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, iter: I) {
        let mut all = std::mem::take(&mut self.0);
        all.extend(iter);
        *self = Annotations::from_vec(all);
    }
}

impl IntoIterator for Annotations {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Annotations {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for Annotations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Annotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Annotations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Annotations, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(e) = map.next_entry::<String, String>()? {
                    v.push(e);
                }
                // Already sorted and without repeats, as written by every tool: kept as is.
                if v.windows(2).all(|w| w[0].0 < w[1].0) {
                    return Ok(Annotations(v));
                }
                Ok(Annotations::from_vec(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn sorted_and_the_last_of_a_repeated_key_stays() {
        let a: Annotations =
            serde_json::from_str(r#"{"b":"1","a":"2","b":"3","c":"4","a":"5"}"#).expect("parse");
        assert_eq!(
            serde_json::to_string(&a).expect("json"),
            r#"{"a":"5","b":"3","c":"4"}"#
        );
        let mut a = Annotations::from([(s("z"), s("1")), (s("y"), s("2"))]);
        assert_eq!(a.insert(s("y"), s("3")), Some(s("2")));
        assert_eq!(a.insert(s("x"), s("4")), None);
        assert_eq!(a.keys().collect::<Vec<_>>(), [&s("x"), &s("y"), &s("z")]);
        assert_eq!(a.remove("z"), Some(s("1")));
        assert_eq!(a.get("y"), Some(&s("3")));
        assert!(!a.contains_key("z"));
        assert_eq!(a.len(), 2);
        // Not a map: the same error a map type gives.
        let e = serde_json::from_str::<Annotations>("[1]").expect_err("refused");
        assert_eq!(
            e.to_string(),
            "invalid type: sequence, expected a map at line 1 column 0"
        );
    }

    #[test]
    fn keys_in_reverse_are_not_quadratic() {
        let n = 200_000;
        let json = format!(
            "{{{}}}",
            (0..n)
                .rev()
                .map(|i| format!("\"k{i:07}\":\"v\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        let a: Annotations = serde_json::from_str(&json).expect("parse");
        assert_eq!(a.len(), n);
        assert_eq!(a.keys().next(), Some(&s("k0000000")));
    }
}
