//! Schema checks for single JSON documents: the job the image-spec v1.1 JSON Schemas do,
//! without a JSON Schema engine.
//!
//! [`check`] parses one document and returns every violation it finds as a short lowercase
//! message that starts with the JSON path it is about (`layers[0].size: expected an unsigned
//! integer`). An empty list means the document is valid. Field names are joined with `.`
//! (`config.Env[2]`, `manifests[0].platform.os.version`); keys of free-form maps
//! (annotations, labels, volumes, ports) are shown quoted (`annotations["a.b"]`); a problem
//! with the document as a whole is reported as `document: ...`.
//!
//! # What is checked
//!
//! * Descriptors (the top-level [`DocType::Descriptor`], `config`, `layers[]`, `manifests[]`
//!   and `subject`): `mediaType`, `digest` and `size` are required. `mediaType` and
//!   `artifactType` must match the RFC 6838 grammar of the schema
//!   (`type/subtype`, each 1 to 127 characters from letters, digits and `!#$&^_.+-`, starting
//!   with a letter or digit). `digest` must match `algorithm:encoded` with
//!   `algorithm = [a-z0-9]+([+._-][a-z0-9]+)*` and `encoded = [a-zA-Z0-9=_-]+`; for the
//!   registered algorithms `sha256` and `sha512` the encoded part must be exactly 64 or 128
//!   lowercase hex characters. `size` must be a non-negative integer that fits in an int64.
//!   `urls` must be an array of absolute RFC 3986 URIs (a scheme, `:`, then a non-empty rest
//!   of URI characters and well-formed `%` escapes, at most one `#`, brackets only around an
//!   IP-literal host, a numeric port), `annotations` an object of strings,
//!   `data` standard base64 with padding, and `platform` (if present) an object with the
//!   strings `architecture` and `os` plus the optional `os.version` (string), `os.features`
//!   (array of strings) and `variant` (string).
//! * Manifests: `schemaVersion` is the integer 2; `mediaType` and `artifactType`, if present,
//!   fit the media-type grammar; `config` is a descriptor; `layers` is a non-empty array of
//!   descriptors; `subject` is a descriptor; `annotations` is an object of strings. An empty
//!   `layers` is reported because the schema says `minItems: 1`, but the prose only says
//!   SHOULD, so its message says so (`layers: empty (the spec says SHOULD have at least
//!   one)`) and callers may treat it as a warning.
//! * Indexes: `schemaVersion` 2; `manifests` is a (possibly empty) array of descriptors;
//!   `mediaType`, `artifactType`, `subject` and `annotations` as for manifests.
//! * Image configs: `architecture`, `os` and `rootfs` are required; `created` (here and in
//!   `history[]`) is an RFC 3339 date-time; `author`, `variant`, `os.version` are strings and
//!   `os.features` an array of strings; in `config`, `User`, `WorkingDir` and `StopSignal` are
//!   strings, `ArgsEscaped` a boolean, `Env`, `Entrypoint` and `Cmd` arrays of strings,
//!   `ExposedPorts` and `Volumes` objects whose values are objects, `Labels` an object of
//!   strings; every `Env` entry looks like `name=value` with a non-empty name without `=` (the
//!   rule the upstream validator applies on top of the schema); `rootfs` has `type`
//!   `"layers"` and `diff_ids`, an array of digests; `history` is an array of objects whose
//!   `author`, `created_by` and `comment` are strings and `empty_layer` a boolean.
//! * Layout headers (`oci-layout`): `imageLayoutVersion` is the string `"1.0.0"`.
//!
//! Where an integer is expected, a number written with a fraction or an exponent (`2.0`,
//! `1e3`) is rejected, as Go's decoder behind the upstream validator rejects it.
//!
//! # Deliberately lenient, and why
//!
//! * Unknown fields are always allowed: the spec tells readers to ignore them.
//! * Media-type values are only checked against the grammar, never against the type the
//!   document "should" have (a Docker manifest checked as [`DocType::Manifest`] passes, and so
//!   does a config descriptor of `application/octet-stream`). The schemas do the same; which
//!   types a reader supports is not a schema question.
//! * Digests with unregistered algorithms (`sha256+b64u:...`, `multihash+base58:...`) are
//!   only checked against the grammar: the spec allows them and the upstream validator only
//!   warns about them. That includes `sha384`, which go-digest would length-check but the
//!   spec does not register.
//! * `null` is accepted where the schema allows it (`config.Entrypoint`, `config.Cmd`,
//!   `config.Volumes`, `config.Labels`) and also for `config.Env`, which Docker writes as
//!   `null` for an image without environment (the schema says array, but rejecting every
//!   such Docker image would make the check useless for Docker content).
//! * base64 in `data` may have non-zero trailing bits, as Go's standard decoder (the one the
//!   upstream validator relies on) accepts them. Padding is still required.
//! * An `Env` value may contain a newline (the upstream regular expression `^[^=]+=.*$` would
//!   refuse one, an accident of Go's `.` not matching `\n`).
//! * Cross-checks that need more than the document (does `data` hash to `digest`? does
//!   `size` match?) are not schema checks and are left to the layout reader.
//! * A key repeated in an object is not reported; like Go's decoder, the last one wins.
//!
//! # Stricter than the schemas, and why
//!
//! * The index schema types `manifests[].size` as int64 (negative allowed), unlike the
//!   descriptor schema; a negative size is reported everywhere, as a size cannot be negative.
//! * Descriptor rules (`data`, `artifactType`, `platform`, digest lengths) are applied to
//!   every descriptor, wherever it appears, not only where a schema lists the property.
//! * `rootfs.diff_ids` entries are checked as digests (the schema only says strings).
//! * `created` must be a full RFC 3339 date-time; the schema engine upstream uses
//!   (gojsonschema) also accepts a bare date or time.
//! * `manifests: null` in an index is reported (the schema says array), although Go tools
//!   that marshal a nil slice write exactly that.

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::{Map, Value};

/// Which kind of document [`check`] validates against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocType {
    /// An image manifest (`application/vnd.oci.image.manifest.v1+json`).
    Manifest,
    /// An image index (`application/vnd.oci.image.index.v1+json`), e.g. `index.json`.
    Index,
    /// An image configuration (`application/vnd.oci.image.config.v1+json`).
    Config,
    /// A single content descriptor (`application/vnd.oci.descriptor.v1+json`).
    Descriptor,
    /// The `oci-layout` file (`application/vnd.oci.layout.header.v1+json`).
    LayoutHeader,
}

/// Every violation found, as short lowercase messages naming the JSON path, e.g.
/// `"layers[0].size: expected an unsigned integer"`. Empty = valid.
pub fn check(doc: DocType, bytes: &[u8]) -> Vec<String> {
    let value: Value = match crate::json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            return vec![format!(
                "document: invalid json: {}",
                e.to_string().to_lowercase()
            )]
        }
    };
    let mut c = Checker::default();
    match doc {
        DocType::Manifest => c.manifest(&value),
        DocType::Index => c.index(&value),
        DocType::Config => c.config(&value),
        DocType::Descriptor => c.descriptor(ROOT, &value),
        DocType::LayoutHeader => c.layout_header(&value),
    }
    c.errors
}

/// The path of the document itself.
const ROOT: &str = "";

/// Standard alphabet, padding required, trailing bits tolerated (as Go's `StdEncoding`).
const DATA_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

type Obj = Map<String, Value>;

/// Whether `null` is an accepted value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Null {
    Ok,
    No,
}

#[derive(Default)]
struct Checker {
    errors: Vec<String>,
}

fn field(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn item(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

fn map_key(parent: &str, key: &str) -> String {
    // `Value`'s Display writes a JSON string literal, escapes included.
    format!("{parent}[{}]", Value::String(key.to_owned()))
}

impl Checker {
    fn report(&mut self, path: &str, msg: impl std::fmt::Display) {
        let path = if path.is_empty() { "document" } else { path };
        self.errors.push(format!("{path}: {msg}"));
    }

    // ---- field presence -------------------------------------------------------------------

    fn required(
        &mut self,
        parent: &str,
        obj: &Obj,
        key: &str,
        check: impl FnOnce(&mut Self, &str, &Value),
    ) {
        let path = field(parent, key);
        match obj.get(key) {
            Some(v) => check(self, &path, v),
            None => self.report(&path, "required field is missing"),
        }
    }

    fn optional(
        &mut self,
        parent: &str,
        obj: &Obj,
        key: &str,
        check: impl FnOnce(&mut Self, &str, &Value),
    ) {
        if let Some(v) = obj.get(key) {
            check(self, &field(parent, key), v);
        }
    }

    // ---- JSON types -----------------------------------------------------------------------

    fn object<'v>(&mut self, path: &str, v: &'v Value, null: Null) -> Option<&'v Obj> {
        match v {
            Value::Object(o) => Some(o),
            Value::Null if null == Null::Ok => None,
            _ if path.is_empty() => {
                self.report(path, "expected a json object");
                None
            }
            _ if null == Null::Ok => {
                self.report(path, "expected an object or null");
                None
            }
            _ => {
                self.report(path, "expected an object");
                None
            }
        }
    }

    fn array<'v>(&mut self, path: &str, v: &'v Value, null: Null) -> Option<&'v [Value]> {
        match v {
            Value::Array(a) => Some(a),
            Value::Null if null == Null::Ok => None,
            _ if null == Null::Ok => {
                self.report(path, "expected an array or null");
                None
            }
            _ => {
                self.report(path, "expected an array");
                None
            }
        }
    }

    fn str<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v str> {
        let s = v.as_str();
        if s.is_none() {
            self.report(path, "expected a string");
        }
        s
    }

    fn string(&mut self, path: &str, v: &Value) {
        self.str(path, v);
    }

    fn boolean(&mut self, path: &str, v: &Value) {
        if !v.is_boolean() {
            self.report(path, "expected a boolean");
        }
    }

    fn string_array(&mut self, path: &str, v: &Value, null: Null) {
        for (i, s) in self
            .array(path, v, null)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            self.string(&item(path, i), s);
        }
    }

    /// An object whose values are all strings (`mapStringString`).
    fn string_map(&mut self, path: &str, v: &Value, null: Null) {
        if let Some(o) = self.object(path, v, null) {
            for (k, s) in o {
                self.string(&map_key(path, k), s);
            }
        }
    }

    /// An object whose values are all objects (`mapStringObject`).
    fn object_map(&mut self, path: &str, v: &Value, null: Null) {
        if let Some(o) = self.object(path, v, null) {
            for (k, x) in o {
                self.object(&map_key(path, k), x, Null::No);
            }
        }
    }

    // ---- grammars ---------------------------------------------------------------------------

    fn media_type(&mut self, path: &str, v: &Value) {
        if let Some(s) = self.str(path, v) {
            if let Err(why) = media_type_grammar(s) {
                self.report(path, format_args!("invalid media type: {why}"));
            }
        }
    }

    fn digest(&mut self, path: &str, v: &Value) {
        if let Some(s) = self.str(path, v) {
            if let Err(why) = digest_grammar(s) {
                self.report(path, format_args!("invalid digest: {why}"));
            }
        }
    }

    fn size(&mut self, path: &str, v: &Value) {
        match v.as_u64() {
            Some(n) if i64::try_from(n).is_ok() => {}
            Some(_) => self.report(path, "larger than the int64 maximum"),
            None if v.is_i64() => self.report(path, "must not be negative"),
            None => self.report(path, "expected an unsigned integer"),
        }
    }

    fn schema_version(&mut self, path: &str, v: &Value) {
        match v.as_i64() {
            Some(2) => {}
            Some(_) => self.report(path, "unsupported version, expected 2"),
            None if v.is_u64() => self.report(path, "unsupported version, expected 2"),
            None => self.report(path, "expected the integer 2"),
        }
    }

    fn urls(&mut self, path: &str, v: &Value) {
        for (i, u) in self
            .array(path, v, Null::No)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let p = item(path, i);
            if let Some(s) = self.str(&p, u) {
                if let Err(why) = uri_grammar(s) {
                    self.report(&p, format_args!("not a valid uri: {why}"));
                }
            }
        }
    }

    fn base64(&mut self, path: &str, v: &Value) {
        if let Some(s) = self.str(path, v) {
            if DATA_BASE64.decode(s).is_err() {
                self.report(path, "not valid base64 (standard alphabet with padding)");
            }
        }
    }

    fn date_time(&mut self, path: &str, v: &Value) {
        if let Some(s) = self.str(path, v) {
            if rfc3339(s).is_none() {
                self.report(path, "not an rfc 3339 date-time");
            }
        }
    }

    fn env(&mut self, path: &str, v: &Value) {
        // Docker writes `"Env": null`; accepted though the schema says array.
        for (i, e) in self
            .array(path, v, Null::Ok)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let p = item(path, i);
            if let Some(s) = self.str(&p, e) {
                // Upstream: ^[^=]+=.*$
                if s.find('=').is_none_or(|at| at == 0) {
                    self.report(&p, "expected name=value with a non-empty name");
                }
            }
        }
    }

    // ---- structures ---------------------------------------------------------------------------

    fn descriptor(&mut self, path: &str, v: &Value) {
        let Some(o) = self.object(path, v, Null::No) else {
            return;
        };
        self.required(path, o, "mediaType", Self::media_type);
        self.required(path, o, "digest", Self::digest);
        self.required(path, o, "size", Self::size);
        self.optional(path, o, "urls", Self::urls);
        self.optional(path, o, "data", Self::base64);
        self.optional(path, o, "artifactType", Self::media_type);
        self.optional(path, o, "annotations", |c, p, v| {
            c.string_map(p, v, Null::No)
        });
        self.optional(path, o, "platform", Self::platform);
    }

    fn platform(&mut self, path: &str, v: &Value) {
        let Some(o) = self.object(path, v, Null::No) else {
            return;
        };
        self.required(path, o, "architecture", Self::string);
        self.required(path, o, "os", Self::string);
        self.optional(path, o, "os.version", Self::string);
        self.optional(path, o, "os.features", |c, p, v| {
            c.string_array(p, v, Null::No)
        });
        self.optional(path, o, "variant", Self::string);
    }

    fn descriptors(&mut self, path: &str, v: &Value) {
        for (i, d) in self
            .array(path, v, Null::No)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            self.descriptor(&item(path, i), d);
        }
    }

    fn layers(&mut self, path: &str, v: &Value) {
        if v.as_array().is_some_and(Vec::is_empty) {
            self.report(path, "empty (the spec says SHOULD have at least one)");
        }
        self.descriptors(path, v);
    }

    /// The fields manifests and indexes share.
    fn top_level_common(&mut self, o: &Obj) {
        self.required(ROOT, o, "schemaVersion", Self::schema_version);
        self.optional(ROOT, o, "mediaType", Self::media_type);
        self.optional(ROOT, o, "artifactType", Self::media_type);
    }

    fn manifest(&mut self, v: &Value) {
        let Some(o) = self.object(ROOT, v, Null::No) else {
            return;
        };
        self.top_level_common(o);
        self.required(ROOT, o, "config", Self::descriptor);
        self.required(ROOT, o, "layers", Self::layers);
        self.optional(ROOT, o, "subject", Self::descriptor);
        self.optional(ROOT, o, "annotations", |c, p, v| {
            c.string_map(p, v, Null::No)
        });
    }

    fn index(&mut self, v: &Value) {
        let Some(o) = self.object(ROOT, v, Null::No) else {
            return;
        };
        self.top_level_common(o);
        self.required(ROOT, o, "manifests", Self::descriptors);
        self.optional(ROOT, o, "subject", Self::descriptor);
        self.optional(ROOT, o, "annotations", |c, p, v| {
            c.string_map(p, v, Null::No)
        });
    }

    fn config(&mut self, v: &Value) {
        let Some(o) = self.object(ROOT, v, Null::No) else {
            return;
        };
        self.optional(ROOT, o, "created", Self::date_time);
        self.optional(ROOT, o, "author", Self::string);
        self.required(ROOT, o, "architecture", Self::string);
        self.optional(ROOT, o, "variant", Self::string);
        self.required(ROOT, o, "os", Self::string);
        self.optional(ROOT, o, "os.version", Self::string);
        self.optional(ROOT, o, "os.features", |c, p, v| {
            c.string_array(p, v, Null::No)
        });
        self.optional(ROOT, o, "config", Self::exec_config);
        self.required(ROOT, o, "rootfs", Self::rootfs);
        self.optional(ROOT, o, "history", Self::history);
    }

    fn exec_config(&mut self, path: &str, v: &Value) {
        let Some(o) = self.object(path, v, Null::No) else {
            return;
        };
        self.optional(path, o, "User", Self::string);
        self.optional(path, o, "ExposedPorts", |c, p, v| {
            c.object_map(p, v, Null::No)
        });
        self.optional(path, o, "Env", Self::env);
        self.optional(path, o, "Entrypoint", |c, p, v| {
            c.string_array(p, v, Null::Ok)
        });
        self.optional(path, o, "Cmd", |c, p, v| c.string_array(p, v, Null::Ok));
        self.optional(path, o, "Volumes", |c, p, v| c.object_map(p, v, Null::Ok));
        self.optional(path, o, "WorkingDir", Self::string);
        self.optional(path, o, "Labels", |c, p, v| c.string_map(p, v, Null::Ok));
        self.optional(path, o, "StopSignal", Self::string);
        self.optional(path, o, "ArgsEscaped", Self::boolean);
    }

    fn rootfs(&mut self, path: &str, v: &Value) {
        let Some(o) = self.object(path, v, Null::No) else {
            return;
        };
        self.required(path, o, "type", |c, p, v| {
            if c.str(p, v).is_some_and(|t| t != "layers") {
                c.report(p, "expected \"layers\"");
            }
        });
        self.required(path, o, "diff_ids", |c, p, v| {
            for (i, d) in c
                .array(p, v, Null::No)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                c.digest(&item(p, i), d);
            }
        });
    }

    fn history(&mut self, path: &str, v: &Value) {
        for (i, h) in self
            .array(path, v, Null::No)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let p = item(path, i);
            let Some(o) = self.object(&p, h, Null::No) else {
                continue;
            };
            self.optional(&p, o, "created", Self::date_time);
            self.optional(&p, o, "author", Self::string);
            self.optional(&p, o, "created_by", Self::string);
            self.optional(&p, o, "comment", Self::string);
            self.optional(&p, o, "empty_layer", Self::boolean);
        }
    }

    fn layout_header(&mut self, v: &Value) {
        let Some(o) = self.object(ROOT, v, Null::No) else {
            return;
        };
        self.required(ROOT, o, "imageLayoutVersion", |c, p, v| {
            if c.str(p, v).is_some_and(|s| s != "1.0.0") {
                c.report(p, "expected \"1.0.0\"");
            }
        });
    }
}

// ---- hand-written grammars ------------------------------------------------------------------

/// `^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$`
fn media_type_grammar(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty string".to_owned());
    }
    let Some((ty, sub)) = s.split_once('/') else {
        return Err("no '/' between type and subtype".to_owned());
    };
    restricted_name(ty, "type")?;
    restricted_name(sub, "subtype")
}

/// One side of a media type (RFC 6838 `restricted-name`).
fn restricted_name(s: &str, which: &str) -> Result<(), String> {
    let mut bytes = s.bytes();
    match bytes.next() {
        None => return Err(format!("empty {which}")),
        Some(b) if b.is_ascii_alphanumeric() => {}
        Some(_) => return Err(format!("{which} must start with a letter or digit")),
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b)) {
        return Err(format!(
            "{which} may only contain letters, digits and !#$&^_.+-"
        ));
    }
    if s.len() > 127 {
        return Err(format!("{which} is longer than 127 characters"));
    }
    Ok(())
}

/// `^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`, plus the encoded length and alphabet of
/// the registered algorithms.
fn digest_grammar(s: &str) -> Result<(), String> {
    let Some((alg, encoded)) = s.split_once(':') else {
        return Err("no ':' between algorithm and encoded part".to_owned());
    };
    if alg.is_empty() {
        return Err("empty algorithm".to_owned());
    }
    if !alg
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
    {
        return Err(
            "algorithm may only contain lowercase letters, digits and the separators + . _ -"
                .to_owned(),
        );
    }
    if alg.split(['+', '.', '_', '-']).any(str::is_empty) {
        return Err("algorithm has a leading, trailing or repeated separator".to_owned());
    }
    if encoded.is_empty() {
        return Err("empty encoded part".to_owned());
    }
    if !encoded
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
    {
        return Err("encoded part may only contain letters, digits, '=', '_' and '-'".to_owned());
    }
    let hex_len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Ok(()),
    };
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if encoded.len() != hex_len || !encoded.bytes().all(lower_hex) {
        return Err(format!(
            "{alg} needs exactly {hex_len} lowercase hex characters"
        ));
    }
    Ok(())
}

/// An absolute URI per RFC 3986 (JSON Schema `"format": "uri"`): a scheme, `:`, and a
/// non-empty rest made of allowed characters and well-formed percent escapes.
fn uri_grammar(s: &str) -> Result<(), &'static str> {
    let Some((scheme, rest)) = s.split_once(':') else {
        return Err("no scheme");
    };
    let mut sb = scheme.bytes();
    if !sb.next().is_some_and(|b| b.is_ascii_alphabetic()) {
        return Err("the scheme must start with a letter");
    }
    if !sb.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
        return Err("the scheme may only contain letters, digits, '+', '-' and '.'");
    }
    if rest.is_empty() {
        return Err("nothing after the scheme");
    }
    let mut bytes = rest.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let (hi, lo) = (bytes.next(), bytes.next());
            if !(hi.is_some_and(|h| h.is_ascii_hexdigit())
                && lo.is_some_and(|l| l.is_ascii_hexdigit()))
            {
                return Err("'%' is not followed by two hex digits");
            }
        } else if !(b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)) {
            return Err(
                "a character that must be percent-encoded (space, quote, backslash, non-ascii...)",
            );
        }
    }
    if rest.matches('#').count() > 1 {
        return Err("more than one '#'");
    }
    let (authority, after) = match rest.strip_prefix("//") {
        Some(r) => {
            let end = r.find(['/', '?', '#']).unwrap_or(r.len());
            let (a, b) = r.split_at_checked(end).unwrap_or((r, ""));
            (Some(a), b)
        }
        None => (None, rest),
    };
    if after.contains(['[', ']']) {
        return Err("'[' or ']' outside the host");
    }
    if let Some(authority) = authority {
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
        if userinfo.contains(['@', '[', ']']) {
            return Err("invalid user information");
        }
        let port = if let Some(literal) = hostport.strip_prefix('[') {
            let Some((inside, after_host)) = literal.split_once(']') else {
                return Err("'[' in the host is not closed");
            };
            if inside.is_empty() || inside.contains('[') {
                return Err("invalid ip literal in the host");
            }
            match after_host.strip_prefix(':') {
                Some(port) => port,
                None if after_host.is_empty() => "",
                None => return Err("unexpected text after the ip literal"),
            }
        } else {
            let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
            if host.contains(['[', ']']) {
                return Err("'[' or ']' in a host name");
            }
            port
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("the port is not a number");
        }
    }
    Ok(())
}

/// RFC 3339 `date-time`: `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`, with real calendar
/// bounds. `T` and `Z` may be lowercase, as RFC 3339 allows.
fn rfc3339(s: &str) -> Option<()> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)?;
    sep(b, 4, b"-")?;
    let month = digits(b, 5, 2)?;
    sep(b, 7, b"-")?;
    let day = digits(b, 8, 2)?;
    sep(b, 10, b"Tt")?;
    let hour = digits(b, 11, 2)?;
    sep(b, 13, b":")?;
    let minute = digits(b, 14, 2)?;
    sep(b, 16, b":")?;
    let second = digits(b, 17, 2)?;
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    match b.get(i)? {
        b'Z' | b'z' => i += 1,
        b'+' | b'-' => {
            let off_hour = digits(b, i + 1, 2)?;
            sep(b, i + 3, b":")?;
            let off_minute = digits(b, i + 4, 2)?;
            if off_hour > 23 || off_minute > 59 {
                return None;
            }
            i += 6;
        }
        _ => return None,
    }
    let calendar_ok = (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day);
    let clock_ok = hour <= 23 && minute <= 59 && second <= 60;
    (i == b.len() && calendar_ok && clock_ok).then_some(())
}

/// `len` ASCII digits at `at`, as a number.
fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    b.get(at..at.checked_add(len)?)?
        .iter()
        .try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
}

/// One of `allowed` at `at`.
fn sep(b: &[u8], at: usize, allowed: &[u8]) -> Option<()> {
    b.get(at).filter(|c| allowed.contains(c)).map(|_| ())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Copies of the image-spec vectors, see fixtures/schema-vectors/ORIGIN.md.
    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/schema-vectors/"
    );

    const SHA: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn read(rel: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}{rel}")).unwrap_or_else(|e| panic!("{FIXTURES}{rel}: {e}"))
    }

    fn read_json(rel: &str) -> Value {
        serde_json::from_slice(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// The vector folder -> document type map (docker-compat folders are checked as OCI).
    fn doc_type_of_kind(kind: &str) -> DocType {
        match kind {
            "manifest" | "docker-compat-manifest" => DocType::Manifest,
            "index" | "docker-compat-index" => DocType::Index,
            "descriptor" => DocType::Descriptor,
            "config" | "docker-compat-config" => DocType::Config,
            "oci-layout" => DocType::LayoutHeader,
            other => panic!("unknown vector kind {other}"),
        }
    }

    /// The validator media type recorded next to each vector or example.
    fn doc_type_of_media_type(mt: &str) -> DocType {
        match mt {
            "application/vnd.oci.image.manifest.v1+json" => DocType::Manifest,
            "application/vnd.oci.image.index.v1+json" => DocType::Index,
            "application/vnd.oci.descriptor.v1+json" => DocType::Descriptor,
            "application/vnd.oci.image.config.v1+json" => DocType::Config,
            "application/vnd.oci.layout.header.v1+json" => DocType::LayoutHeader,
            other => panic!("unknown validator media type {other}"),
        }
    }

    fn check_str(doc: DocType, json: &str) -> Vec<String> {
        check(doc, json.as_bytes())
    }

    fn check_value(doc: DocType, v: &Value) -> Vec<String> {
        check(doc, &serde_json::to_vec(v).unwrap())
    }

    /// A valid descriptor with `key` set to `value`.
    fn descriptor_with(key: &str, value: Value) -> Vec<String> {
        let mut d = json!({"mediaType": "application/octet-stream", "size": 2, "digest": SHA});
        d[key] = value;
        check_value(DocType::Descriptor, &d)
    }

    /// A valid config whose `config` object is `exec`.
    fn config_with_exec(exec: Value) -> Vec<String> {
        let c = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": exec,
            "rootfs": {"type": "layers", "diff_ids": [SHA]},
        });
        check_value(DocType::Config, &c)
    }

    /// Messages are "<path>: <lowercase text>"; the one allowed capital is the spec's SHOULD.
    fn assert_message_shape(msgs: &[String]) {
        for m in msgs {
            let (path, text) = m
                .split_once(": ")
                .unwrap_or_else(|| panic!("no path in {m:?}"));
            assert!(!path.is_empty() && !text.is_empty(), "{m:?}");
            assert!(
                !text.replace("SHOULD", "").chars().any(char::is_uppercase),
                "not lowercase: {m:?}"
            );
        }
    }

    /// Every vector under fixtures/schema-vectors/<kind>/ with the exact messages expected
    /// (empty = valid). For docker-compat both the raw Docker bytes and the
    /// `*.converted-to-oci.json` input upstream validated are listed; vectors.json names the raw
    /// file.
    #[rustfmt::skip]
    const SCHEMA_VECTORS: &[(&str, &[&str])] = &[
        ("config/00-invalid-field-os-has-numeric-value-must-be-string.json", &["os: expected a string"]),
        ("config/01-invalid-field-variant-has-numeric-value-must-be-string.json", &["variant: expected a string"]),
        ("config/02-invalid-field-config-user-has-numeric-value-must-be-string.json", &["config.User: expected a string"]),
        ("config/03-invalid-history-has-string-value-must-be-an-array.json", &["os: expected a string", "history: expected an array"]),
        ("config/04-invalid-env-has-numeric-value-must-be-a-string.json", &["os: expected a string", "config.Env[0]: expected a string"]),
        ("config/05-invalid-config-volumes-has-string-array-must-be-an-object-string-set.json", &["os: expected a string", "config.Volumes: expected an object or null"]),
        ("config/06-invalid-invalid-json.json", &["document: invalid json: expected value at line 1 column 1"]),
        ("config/07-valid-valid-config-with-optional-fields.json", &[]),
        ("config/08-valid-valid-config-with-only-required-fields.json", &[]),
        ("config/09-invalid-env-is-invalid.json", &["config.Env[0]: expected name=value with a non-empty name"]),
        ("descriptor/00-valid-valid-descriptor.json", &[]),
        ("descriptor/01-valid-zero-length-blob.json", &[]),
        ("descriptor/02-invalid-mediatype-missing.json", &["mediaType: required field is missing"]),
        ("descriptor/03-invalid-mediatype-does-not-match-pattern-no-subtype.json", &["mediaType: invalid media type: no '/' between type and subtype"]),
        ("descriptor/04-invalid-mediatype-does-not-match-pattern-invalid-first-type-characte.json", &["mediaType: invalid media type: type must start with a letter or digit"]),
        ("descriptor/05-invalid-mediatype-does-not-match-pattern-invalid-first-subtype-chara.json", &["mediaType: invalid media type: subtype must start with a letter or digit"]),
        ("descriptor/06-valid-mediatype-has-type-and-subtype-as-long-as-possible.json", &[]),
        ("descriptor/07-invalid-mediatype-does-not-match-pattern-type-too-long.json", &["mediaType: invalid media type: type is longer than 127 characters"]),
        ("descriptor/08-invalid-mediatype-does-not-match-pattern-subtype-too-long.json", &["mediaType: invalid media type: subtype is longer than 127 characters"]),
        ("descriptor/09-invalid-size-missing.json", &["size: required field is missing"]),
        ("descriptor/10-invalid-size-is-a-string-expected-integer.json", &["size: expected an unsigned integer"]),
        ("descriptor/11-invalid-digest-missing.json", &["digest: required field is missing"]),
        ("descriptor/12-invalid-digest-does-not-match-pattern-no-algorithm.json", &["digest: invalid digest: empty algorithm"]),
        ("descriptor/13-invalid-digest-does-not-match-pattern-no-hash.json", &["digest: invalid digest: no ':' between algorithm and encoded part"]),
        ("descriptor/14-invalid-digest-does-not-match-pattern-invalid-aglorithm-characters.json", &["digest: invalid digest: algorithm may only contain lowercase letters, digits and the separators + . _ -"]),
        ("descriptor/15-invalid-digest-does-not-match-pattern-characters-needs-to-be-lower-f.json", &["digest: invalid digest: sha256 needs exactly 64 lowercase hex characters"]),
        ("descriptor/16-valid-valid-url-entry.json", &[]),
        ("descriptor/17-invalid-urls-does-not-match-format-invalide-url-characters.json", &["urls[0]: not a valid uri: no scheme"]),
        ("descriptor/18-valid-artifacttype-is-present-and-an-iana-compliant-value.json", &[]),
        ("descriptor/19-invalid-artifacttype-does-not-match-pattern-invalid-first-subtype-ch.json", &["artifactType: invalid media type: subtype must start with a letter or digit"]),
        ("descriptor/20-valid-data-field-is-present-and-has-base64-content.json", &[]),
        ("descriptor/21-valid-test-for-alternate-digest-algorithm.json", &[]),
        ("descriptor/22-valid-test-for-alternate-digest-algorithm.json", &[]),
        ("descriptor/23-valid-test-for-alternate-digest-algorithm.json", &[]),
        ("descriptor/24-valid-test-for-alternate-digest-algorithm.json", &[]),
        ("descriptor/25-valid-test-for-alternate-digest-algorithm.json", &[]),
        ("descriptor/26-invalid-repeated-separators-in-algorithm.json", &["digest: invalid digest: algorithm has a leading, trailing or repeated separator"]),
        ("descriptor/27-valid-test-for-alternate-digest-encoding.json", &[]),
        ("descriptor/28-valid-test-for-those-who-cannot-use-modulo-arithmetic-to-recover-p.json", &[]),
        ("descriptor/29-invalid-invalid-data-base64-missing-padding.json", &["data: not valid base64 (standard alphabet with padding)"]),
        ("descriptor/30-invalid-negative-size.json", &["size: must not be negative"]),
        ("docker-compat-config/00-valid-config-pulled-from-docker-hub-blob-store.converted-to-oci.json", &[]),
        ("docker-compat-config/00-valid-config-pulled-from-docker-hub-blob-store.json", &[]),
        ("docker-compat-config/01-valid-fedora-23-from-docker-hub-both-entrypoint-and-cmd-can-be-nul.converted-to-oci.json", &[]),
        ("docker-compat-config/01-valid-fedora-23-from-docker-hub-both-entrypoint-and-cmd-can-be-nul.json", &[]),
        ("docker-compat-index/00-valid-case.converted-to-oci.json", &[]),
        ("docker-compat-index/00-valid-case.json", &[]),
        ("docker-compat-manifest/00-valid-manifest-pulled-from-docker-hub-using-hash-value.converted-to-oci.json", &[]),
        ("docker-compat-manifest/00-valid-manifest-pulled-from-docker-hub-using-hash-value.json", &[]),
        ("index/00-invalid-mediatype-does-not-match-pattern.json", &["manifests[0].mediaType: invalid media type: no '/' between type and subtype"]),
        ("index/01-invalid-manifest-size-is-string-expected-integer.json", &["manifests[0].size: expected an unsigned integer"]),
        ("index/02-invalid-manifest-digest-is-missing-expected-required.json", &["manifests[0].digest: required field is missing"]),
        ("index/03-invalid-in-the-optional-field-platform-platform-architecture-is-miss.json", &["manifests[0].platform.architecture: required field is missing"]),
        ("index/04-invalid-invalid-referenced-manifest-media-type.json", &["manifests[0].mediaType: invalid media type: no '/' between type and subtype"]),
        ("index/05-invalid-empty-referenced-manifest-media-type.json", &["manifests[0].mediaType: invalid media type: empty string"]),
        ("index/06-valid-valid-image-index-with-optional-fields.json", &[]),
        ("index/07-valid-valid-image-index-with-required-fields-only.json", &[]),
        ("index/08-valid-valid-image-index-with-customized-media-type-of-referenced-m.json", &[]),
        ("index/09-valid-valid-image-index-with-artifacttype-and-manifests.json", &[]),
        ("index/10-valid-valid-image-index-with-a-subject-field.json", &[]),
        ("index/11-invalid-expected-failure-invalid-subject-field.json", &["subject: expected an object"]),
        ("manifest/00-invalid-mediatype-does-not-match-pattern.json", &["config.mediaType: invalid media type: no '/' between type and subtype"]),
        ("manifest/01-invalid-config-size-is-a-string-expected-integer.json", &["document: invalid json: eof while parsing an object at line 19 column 0"]),
        ("manifest/02-invalid-layers-size-is-string-expected-integer.json", &["layers[0].size: expected an unsigned integer"]),
        ("manifest/03-valid-valid-manifest-with-optional-fields.json", &[]),
        ("manifest/04-valid-valid-manifest-with-only-required-fields.json", &[]),
        ("manifest/05-invalid-empty-layer-expected-at-least-one.json", &["layers: empty (the spec says SHOULD have at least one)"]),
        ("manifest/06-valid-expected-pass-test-bounds-of-algorithm-field-in-digest.json", &[]),
        ("manifest/07-valid-subject-field-with-a-valid-descriptor.json", &[]),
        ("manifest/08-invalid-subject-field-with-invalid-value-something-that-is-not-a-des.json", &["subject: expected an object"]),
        ("manifest/09-invalid-push-bounds-of-algorithm-field-in-digest-too-far.json", &["layers[0].digest: invalid digest: algorithm has a leading, trailing or repeated separator"]),
        ("manifest/10-valid-valid-manifest-for-an-artifact-with-a-dedicated-config.json", &[]),
        ("manifest/11-valid-valid-manifest-for-an-artifact-using-the-empty-config-and-ar.json", &[]),
        ("oci-layout/00-invalid-imagelayoutversion-does-not-match-pattern.json", &["document: invalid json: expected `,` or `}` at line 3 column 28"]),
        ("oci-layout/01-valid-validate-layout.json", &[]),
    ];

    /// Vectors whose upstream expectation this checker deliberately does not enforce, with the
    /// reason. None: every expectation is enforced.
    const LENIENT: &[(&str, &str)] = &[];

    const CONVERTED: &str = ".converted-to-oci.json";

    #[test]
    fn schema_vectors() {
        let listed = read_json("vectors.json");
        let listed = listed.as_array().unwrap();
        let mut upstream: BTreeMap<String, (String, DocType)> = BTreeMap::new();
        for v in listed {
            let file = v["file"]
                .as_str()
                .unwrap()
                .strip_prefix("schema-test-vectors/")
                .unwrap();
            let expected = v["expected"].as_str().unwrap().to_owned();
            let ty = doc_type_of_media_type(v["validator_media_type"].as_str().unwrap());
            upstream.insert(file.to_owned(), (expected, ty));
        }
        assert_eq!(upstream.len(), 71, "vectors.json should list 71 vectors");

        let table: BTreeMap<&str, &[&str]> = SCHEMA_VECTORS.iter().copied().collect();
        assert_eq!(table.len(), SCHEMA_VECTORS.len(), "duplicate rows");

        // Every vector listed upstream is in the table, and so is its converted form.
        for file in upstream.keys() {
            assert!(
                table.contains_key(file.as_str()),
                "{file} missing from the table"
            );
            let converted = file.replace(".json", CONVERTED);
            if std::path::Path::new(&format!("{FIXTURES}{converted}")).exists() {
                assert!(
                    table.contains_key(converted.as_str()),
                    "{converted} missing from the table"
                );
            }
        }
        // Every vector file on disk is in the table.
        let mut on_disk = 0;
        for kind in [
            "manifest",
            "index",
            "descriptor",
            "config",
            "oci-layout",
            "docker-compat-manifest",
            "docker-compat-index",
            "docker-compat-config",
        ] {
            for entry in std::fs::read_dir(format!("{FIXTURES}{kind}")).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let rel = format!("{kind}/{name}");
                assert!(
                    table.contains_key(rel.as_str()),
                    "{rel} is on disk but not in the table"
                );
                on_disk += 1;
            }
        }
        assert_eq!(on_disk, SCHEMA_VECTORS.len());

        let mut failures = Vec::new();
        for &(file, want) in SCHEMA_VECTORS {
            let kind = file.split('/').next().unwrap();
            let ty = doc_type_of_kind(kind);
            let raw = file.replace(CONVERTED, ".json");
            let (expected, upstream_ty) = upstream
                .get(&raw)
                .unwrap_or_else(|| panic!("{file} not in vectors.json"));
            assert_eq!(
                ty, *upstream_ty,
                "{file}: folder and validator media type disagree"
            );
            let lenient = LENIENT.iter().any(|(f, _)| *f == file);
            assert_eq!(
                want.is_empty(),
                expected == "valid" || lenient,
                "{file}: the table contradicts vectors.json ({expected})"
            );
            let got = check(ty, &read(file));
            assert_message_shape(&got);
            if got != want {
                failures.push(format!("{file}\n  want {want:?}\n  got  {got:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} vector(s) differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(
            SCHEMA_VECTORS.len(),
            75,
            "71 upstream vectors plus 4 converted docker documents"
        );
    }

    #[test]
    fn deliberate_leniency() {
        // Each entry must really be a vector upstream calls invalid that passes here.
        for (file, why) in LENIENT {
            assert!(!why.is_empty());
            let ty = doc_type_of_kind(file.split('/').next().unwrap());
            assert!(
                check(ty, &read(file)).is_empty(),
                "{file} is listed as lenient but fails"
            );
        }
        assert!(
            LENIENT.is_empty(),
            "update the module docs and the report when adding leniency"
        );
    }

    #[test]
    fn spec_doc_examples() {
        let examples = read_json("spec-doc-examples/examples.json");
        let examples = examples.as_array().unwrap();
        assert_eq!(examples.len(), 13);
        for e in examples {
            let file = e["file"].as_str().unwrap();
            assert_eq!(e["expected"], "valid", "{file}");
            let ty = doc_type_of_media_type(e["validator_media_type"].as_str().unwrap());
            // Cross-check with the file names: descriptor-* and manifest-02 (the empty config
            // descriptor) are descriptors, image-layout-01 is the layout header.
            let name = file.rsplit('/').next().unwrap();
            let by_name = if name.starts_with("descriptor-") || name.starts_with("manifest-02-") {
                DocType::Descriptor
            } else if name.starts_with("manifest-") {
                DocType::Manifest
            } else if name.starts_with("image-layout-01-") {
                DocType::LayoutHeader
            } else if name.ends_with("image-index.json") {
                DocType::Index
            } else {
                DocType::Config
            };
            assert_eq!(ty, by_name, "{file}");
            assert_eq!(check(ty, &read(file)), Vec::<String>::new(), "{file}");
        }
    }

    #[test]
    fn intended_faults_of_malformed_vectors() {
        // manifest/01 and oci-layout/00 are not well-formed JSON, so the fault their comment
        // names is never reached upstream; check it on well-formed versions.
        let m = json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": "1470", "digest": SHA},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 148, "digest": SHA}],
        });
        assert_eq!(
            check_value(DocType::Manifest, &m),
            ["config.size: expected an unsigned integer"]
        );
        assert_eq!(
            check_str(DocType::LayoutHeader, r#"{"imageLayoutVersion": 1.0}"#),
            ["imageLayoutVersion: expected a string"]
        );
        assert_eq!(
            check_str(DocType::LayoutHeader, r#"{"imageLayoutVersion": "1.0.1"}"#),
            ["imageLayoutVersion: expected \"1.0.0\""]
        );
        assert_eq!(
            check_str(DocType::LayoutHeader, "{}"),
            ["imageLayoutVersion: required field is missing"]
        );
        // config/03-05 also carry `"os": 123`; each named fault is found on its own too.
        let fixed = |key: &str, value: Value, nested: bool| {
            let mut c = json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}});
            if nested {
                c["config"] = json!({key: value});
            } else {
                c[key] = value;
            }
            check_value(DocType::Config, &c)
        };
        assert_eq!(
            fixed("history", json!("should be an array"), false),
            ["history: expected an array"]
        );
        assert_eq!(
            fixed("Env", json!([7353]), true),
            ["config.Env[0]: expected a string"]
        );
        assert_eq!(
            fixed("Volumes", json!(["/a", "/b"]), true),
            ["config.Volumes: expected an object or null"]
        );
    }

    #[test]
    fn documents_that_are_not_objects() {
        for ty in [
            DocType::Manifest,
            DocType::Index,
            DocType::Config,
            DocType::Descriptor,
            DocType::LayoutHeader,
        ] {
            assert_eq!(check_str(ty, "[]"), ["document: expected a json object"]);
            assert_eq!(check_str(ty, "null"), ["document: expected a json object"]);
            let bad = check(ty, b"");
            assert_eq!(bad.len(), 1);
            assert!(bad[0].starts_with("document: invalid json: "), "{bad:?}");
            let bad = check(ty, b"{\"a\": \"\xff\"}");
            assert!(bad[0].starts_with("document: invalid json: "), "{bad:?}");
            assert_message_shape(&bad);
        }
    }

    #[test]
    fn sizes() {
        let size = |v: Value| descriptor_with("size", v);
        assert!(size(json!(0)).is_empty());
        assert!(size(json!(i64::MAX)).is_empty());
        assert_eq!(
            size(json!(u64::try_from(i64::MAX).unwrap() + 1)),
            ["size: larger than the int64 maximum"]
        );
        assert_eq!(size(json!(-1)), ["size: must not be negative"]);
        for v in [
            json!(1.0),
            json!(1.5),
            json!("2"),
            Value::Null,
            json!(true),
            json!([2]),
        ] {
            assert_eq!(size(v), ["size: expected an unsigned integer"]);
        }
        // Written with an exponent or beyond u64: a float to the parser, not an integer.
        assert_eq!(
            check_str(
                DocType::Descriptor,
                &format!(r#"{{"mediaType":"a/b","size":1e3,"digest":"{SHA}"}}"#)
            ),
            ["size: expected an unsigned integer"]
        );
        assert_eq!(
            check_str(
                DocType::Descriptor,
                &format!(r#"{{"mediaType":"a/b","size":18446744073709551616,"digest":"{SHA}"}}"#)
            ),
            ["size: expected an unsigned integer"]
        );
    }

    #[test]
    fn schema_versions() {
        let m = |v: Value| {
            let mut m = json!({"config": {"mediaType": "a/b", "size": 2, "digest": SHA}, "layers": [{"mediaType": "a/b", "size": 2, "digest": SHA}]});
            if !v.is_null() {
                m["schemaVersion"] = v;
            }
            check_value(DocType::Manifest, &m)
        };
        assert!(m(json!(2)).is_empty());
        assert_eq!(
            m(json!(1)),
            ["schemaVersion: unsupported version, expected 2"]
        );
        assert_eq!(
            m(json!(-2)),
            ["schemaVersion: unsupported version, expected 2"]
        );
        assert_eq!(
            m(json!(u64::MAX)),
            ["schemaVersion: unsupported version, expected 2"]
        );
        assert_eq!(m(json!(2.0)), ["schemaVersion: expected the integer 2"]);
        assert_eq!(m(json!("2")), ["schemaVersion: expected the integer 2"]);
        assert_eq!(m(Value::Null), ["schemaVersion: required field is missing"]);
    }

    #[test]
    fn media_types() {
        let long = "a".repeat(127);
        for ok in [
            "a/b",
            "A/B",
            "0/0",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "x/y!#$&^_.+-",
            &format!("{long}/{long}"),
        ] {
            assert_eq!(media_type_grammar(ok), Ok(()), "{ok}");
        }
        let too_long = "a".repeat(128);
        for (bad, why) in [
            ("", "empty string"),
            ("application", "no '/' between type and subtype"),
            ("/json", "empty type"),
            ("application/", "empty subtype"),
            ("-a/b", "type must start with a letter or digit"),
            ("a/+b", "subtype must start with a letter or digit"),
            (
                "a/b/c",
                "subtype may only contain letters, digits and !#$&^_.+-",
            ),
            (
                "text/plain; charset=utf-8",
                "subtype may only contain letters, digits and !#$&^_.+-",
            ),
            (
                "a b/c",
                "type may only contain letters, digits and !#$&^_.+-",
            ),
            (
                "a/b\n",
                "subtype may only contain letters, digits and !#$&^_.+-",
            ),
            ("a/é", "subtype must start with a letter or digit"),
            (
                &format!("{too_long}/b"),
                "type is longer than 127 characters",
            ),
            (
                &format!("a/{too_long}"),
                "subtype is longer than 127 characters",
            ),
        ] {
            assert_eq!(media_type_grammar(bad), Err(why.to_owned()), "{bad:?}");
        }
        assert_eq!(
            descriptor_with("mediaType", json!(5)),
            ["mediaType: expected a string"]
        );
        assert_eq!(
            descriptor_with("artifactType", json!("")),
            ["artifactType: invalid media type: empty string"]
        );
    }

    #[test]
    fn digests() {
        let hex64 = "0123456789abcdef".repeat(4);
        let hex128 = "0123456789abcdef".repeat(8);
        for ok in [
            format!("sha256:{hex64}"),
            format!("sha512:{hex128}"),
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564".to_owned(),
            "sha256+b64u.unknownlength:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564=".to_owned(),
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8".to_owned(),
            "a.b_c-d+e:x".to_owned(),
            "sha384:short".to_owned(), // not registered by the spec: grammar only
        ] {
            assert_eq!(digest_grammar(&ok), Ok(()), "{ok}");
        }
        let sha256_len = "sha256 needs exactly 64 lowercase hex characters";
        for (bad, why) in [
            (
                "sha256".to_owned(),
                "no ':' between algorithm and encoded part",
            ),
            (format!(":{hex64}"), "empty algorithm"),
            ("sha256:".to_owned(), "empty encoded part"),
            (
                format!("SHA256:{hex64}"),
                "algorithm may only contain lowercase letters, digits and the separators + . _ -",
            ),
            (
                format!("sha 256:{hex64}"),
                "algorithm may only contain lowercase letters, digits and the separators + . _ -",
            ),
            (
                format!("sha256+:{hex64}"),
                "algorithm has a leading, trailing or repeated separator",
            ),
            (
                format!("+sha256:{hex64}"),
                "algorithm has a leading, trailing or repeated separator",
            ),
            (
                format!("a..b:{hex64}"),
                "algorithm has a leading, trailing or repeated separator",
            ),
            (
                "sha256:../../etc/passwd".to_owned(),
                "encoded part may only contain letters, digits, '=', '_' and '-'",
            ),
            (
                format!("sha256:{hex64}:x"),
                "encoded part may only contain letters, digits, '=', '_' and '-'",
            ),
            (
                "x:a+b".to_owned(),
                "encoded part may only contain letters, digits, '=', '_' and '-'",
            ),
            (format!("sha256:{}", &hex64[1..]), sha256_len),
            (format!("sha256:{hex64}0"), sha256_len),
            (format!("sha256:{}", hex64.to_uppercase()), sha256_len),
            (format!("sha256:{}", "g".repeat(64)), sha256_len),
            (
                format!("sha512:{hex64}"),
                "sha512 needs exactly 128 lowercase hex characters",
            ),
        ] {
            assert_eq!(digest_grammar(&bad), Err(why.to_owned()), "{bad}");
        }
        assert_eq!(
            descriptor_with("digest", json!(1)),
            ["digest: expected a string"]
        );
    }

    #[test]
    fn uris() {
        for ok in [
            "https://example.com/foo",
            "http://[::1]:5000/v2/",
            "https://user:pw@host:443/p/a%20b?q=1&r=(2)#frag",
            "urn:isbn:0451450523",
            "file:///tmp/x",
            "s3+https://bucket/key",
            "HTTPS://EXAMPLE.COM",
            "https://host:/",
        ] {
            assert_eq!(uri_grammar(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("value", "no scheme"),
            ("://x", "the scheme must start with a letter"),
            ("1http://x", "the scheme must start with a letter"),
            (
                "ht tp://x",
                "the scheme may only contain letters, digits, '+', '-' and '.'",
            ),
            ("https:", "nothing after the scheme"),
            (
                "https://example.com/a b",
                "a character that must be percent-encoded (space, quote, backslash, non-ascii...)",
            ),
            (
                "https://example.com/\"x\"",
                "a character that must be percent-encoded (space, quote, backslash, non-ascii...)",
            ),
            (
                "c:\\windows",
                "a character that must be percent-encoded (space, quote, backslash, non-ascii...)",
            ),
            (
                "https://example.com/é",
                "a character that must be percent-encoded (space, quote, backslash, non-ascii...)",
            ),
            ("https://h/%4", "'%' is not followed by two hex digits"),
            ("https://h/%zz", "'%' is not followed by two hex digits"),
            ("https://h/a#b#c", "more than one '#'"),
            ("https://h/[x]", "'[' or ']' outside the host"),
            ("https://h:port/", "the port is not a number"),
            ("https://[::1/x", "'[' in the host is not closed"),
            ("https://[]/", "invalid ip literal in the host"),
            ("https://[::1]x/", "unexpected text after the ip literal"),
            ("https://a@b@c/", "invalid user information"),
            ("https://h]/", "'[' or ']' in a host name"),
        ] {
            assert_eq!(uri_grammar(bad), Err(why), "{bad}");
        }
        assert_eq!(
            descriptor_with("urls", json!("https://a/")),
            ["urls: expected an array"]
        );
        assert_eq!(
            descriptor_with("urls", json!(["https://a/", 3, "nope"])),
            [
                "urls[1]: expected a string",
                "urls[2]: not a valid uri: no scheme"
            ]
        );
    }

    #[test]
    fn base64_data() {
        for ok in [
            "", "e30=", "aGk=", "YWJj", "e31=", /* non-zero trailing bits, as Go accepts */
            "+/+/",
        ] {
            assert!(descriptor_with("data", json!(ok)).is_empty(), "{ok}");
        }
        for bad in [
            "e30", "e30==", "e3=0", "e3 0=", "e30=\n", "-_-_", "e30=e30=", "a",
        ] {
            assert_eq!(
                descriptor_with("data", json!(bad)),
                ["data: not valid base64 (standard alphabet with padding)"],
                "{bad:?}"
            );
        }
        assert_eq!(
            descriptor_with("data", json!(null)),
            ["data: expected a string"]
        );
    }

    #[test]
    fn date_times() {
        for ok in [
            "2015-10-31T22:22:56.015925234Z",
            "1970-01-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "1970-01-01t00:00:00z",
            "2020-02-29T23:59:59+05:30",
            "2000-02-29T00:00:00-00:00",
            "2016-12-31T23:59:60Z",
        ] {
            assert_eq!(rfc3339(ok), Some(()), "{ok}");
        }
        for bad in [
            "",
            "2015-10-31",
            "22:22:56Z",
            "2015-10-31 22:22:56Z",
            "2015-10-31T22:22:56",
            "2015-10-31T22:22:56.Z",
            "2015-10-31T22:22:56+0000",
            "2015-10-31T22:22:56+24:00",
            "2015-10-31T22:22:56+01:60",
            "2015-10-31T24:00:00Z",
            "2015-10-31T23:60:00Z",
            "2015-10-31T23:59:61Z",
            "2015-13-01T00:00:00Z",
            "2015-00-01T00:00:00Z",
            "2015-04-31T00:00:00Z",
            "2015-10-00T00:00:00Z",
            "2019-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "15-10-31T22:22:56Z",
            "2015-10-31T22:22:56Z ",
            "２015-10-31T22:22:56Z",
        ] {
            assert_eq!(rfc3339(bad), None, "{bad}");
        }
        let c = json!({
            "created": "yesterday",
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created": "2015-10-31"}, {"created": 5}],
        });
        assert_eq!(
            check_value(DocType::Config, &c),
            [
                "created: not an rfc 3339 date-time",
                "history[0].created: not an rfc 3339 date-time",
                "history[1].created: expected a string"
            ]
        );
    }

    #[test]
    fn env_entries() {
        let env = |e: Value| config_with_exec(json!({"Env": e}));
        assert!(env(json!(["PATH=/bin", "A=", "A=b=c", "A=b\nc", " =x"])).is_empty());
        let shape = "expected name=value with a non-empty name";
        assert_eq!(
            env(json!(["foo", "=x", "", 1])),
            [
                format!("config.Env[0]: {shape}"),
                format!("config.Env[1]: {shape}"),
                format!("config.Env[2]: {shape}"),
                "config.Env[3]: expected a string".to_owned()
            ]
        );
        assert_eq!(env(json!("A=b")), ["config.Env: expected an array or null"]);
    }

    #[test]
    fn docker_nulls() {
        // What Docker writes for an image without them.
        let nulls = json!({"Env": null, "Cmd": null, "Entrypoint": null, "Volumes": null, "Labels": null, "OnBuild": null});
        assert!(config_with_exec(nulls).is_empty());
        // Not nullable in the schema, and Docker omits rather than nulls them.
        let not_nullable = json!({"User": null, "ExposedPorts": null, "WorkingDir": null, "StopSignal": null, "ArgsEscaped": null});
        assert_eq!(
            config_with_exec(not_nullable),
            [
                "config.User: expected a string",
                "config.ExposedPorts: expected an object",
                "config.WorkingDir: expected a string",
                "config.StopSignal: expected a string",
                "config.ArgsEscaped: expected a boolean"
            ]
        );
        assert_eq!(
            config_with_exec(Value::Null),
            ["config: expected an object"]
        );
        let m = json!({"schemaVersion": 2, "config": {"mediaType": "a/b", "size": 2, "digest": SHA}, "layers": [{"mediaType": "a/b", "size": 2, "digest": SHA}], "annotations": null});
        assert_eq!(
            check_value(DocType::Manifest, &m),
            ["annotations: expected an object"]
        );
        let i = json!({"schemaVersion": 2, "manifests": null});
        assert_eq!(
            check_value(DocType::Index, &i),
            ["manifests: expected an array"]
        );
    }

    #[test]
    fn config_fields() {
        assert_eq!(
            check_str(DocType::Config, "{}"),
            [
                "architecture: required field is missing",
                "os: required field is missing",
                "rootfs: required field is missing"
            ]
        );
        let c = json!({
            "architecture": "amd64",
            "os": "linux",
            "os.version": 10,
            "os.features": ["win32k", 1],
            "author": [],
            "rootfs": {"type": "layer", "diff_ids": ["sha256:abc", 7]},
            "history": [1, {"author": 1, "created_by": 2, "comment": 3, "empty_layer": "yes"}],
        });
        assert_eq!(
            check_value(DocType::Config, &c),
            [
                "author: expected a string",
                "os.version: expected a string",
                "os.features[1]: expected a string",
                "rootfs.type: expected \"layers\"",
                "rootfs.diff_ids[0]: invalid digest: sha256 needs exactly 64 lowercase hex characters",
                "rootfs.diff_ids[1]: expected a string",
                "history[0]: expected an object",
                "history[1].author: expected a string",
                "history[1].created_by: expected a string",
                "history[1].comment: expected a string",
                "history[1].empty_layer: expected a boolean"
            ]
        );
        assert_eq!(
            check_value(
                DocType::Config,
                &json!({"architecture": "a", "os": "b", "rootfs": {}})
            ),
            [
                "rootfs.type: required field is missing",
                "rootfs.diff_ids: required field is missing"
            ]
        );
        let exec = json!({
            "ExposedPorts": {"80/tcp": {}, "53/udp": []},
            "Volumes": {"/data": {}, "/x": "y"},
            "Labels": {"ok": "v", "n": 1},
            "Cmd": ["a", 2],
            "Entrypoint": "sh",
        });
        assert_eq!(
            config_with_exec(exec),
            [
                "config.ExposedPorts[\"53/udp\"]: expected an object",
                "config.Entrypoint: expected an array or null",
                "config.Cmd[1]: expected a string",
                "config.Volumes[\"/x\"]: expected an object",
                "config.Labels[\"n\"]: expected a string"
            ]
        );
    }

    #[test]
    fn nested_descriptors_get_every_descriptor_rule() {
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "nope",
            "config": {"mediaType": "a/b", "size": 2, "digest": SHA, "data": "e30"},
            "layers": [
                {"mediaType": "a/b", "size": 2, "digest": SHA, "platform": {"architecture": "amd64"}},
                {"size": -1, "digest": "sha256:x", "urls": ["nope"], "annotations": {"a\"b": 1}},
                "layer",
            ],
            "subject": {"mediaType": "a/b", "size": 2},
            "annotations": {"k": ["v"]},
        });
        assert_eq!(
            check_value(DocType::Manifest, &m),
            [
                "artifactType: invalid media type: no '/' between type and subtype",
                "config.data: not valid base64 (standard alphabet with padding)",
                "layers[0].platform.os: required field is missing",
                "layers[1].mediaType: required field is missing",
                "layers[1].digest: invalid digest: sha256 needs exactly 64 lowercase hex characters",
                "layers[1].size: must not be negative",
                "layers[1].urls[0]: not a valid uri: no scheme",
                "layers[1].annotations[\"a\\\"b\"]: expected a string",
                "layers[2]: expected an object",
                "subject.digest: required field is missing",
                "annotations[\"k\"]: expected a string"
            ]
        );
    }

    #[test]
    fn index_fields() {
        let i = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "a/b",
                "size": -5,
                "digest": SHA,
                "platform": {"architecture": 1, "os": "linux", "os.version": 1, "os.features": "x", "variant": 8},
            }],
            "subject": {"mediaType": "a/b", "size": 2, "digest": SHA, "artifactType": "x/.y"},
        });
        assert_eq!(
            check_value(DocType::Index, &i),
            [
                // The index schema says int64 here; negative sizes are reported anyway.
                "manifests[0].size: must not be negative",
                "manifests[0].platform.architecture: expected a string",
                "manifests[0].platform.os.version: expected a string",
                "manifests[0].platform.os.features: expected an array",
                "manifests[0].platform.variant: expected a string",
                "subject.artifactType: invalid media type: subtype must start with a letter or digit"
            ]
        );
        assert!(check_str(DocType::Index, r#"{"schemaVersion": 2, "manifests": []}"#).is_empty());
        assert_eq!(
            check_str(DocType::Index, r#"{"schemaVersion": 2}"#),
            ["manifests: required field is missing"]
        );
        assert_eq!(
            check_str(DocType::Manifest, "{}"),
            [
                "schemaVersion: required field is missing",
                "config: required field is missing",
                "layers: required field is missing"
            ]
        );
    }

    #[test]
    fn unknown_fields_and_repeated_keys() {
        let d = json!({"mediaType": "a/b", "size": 2, "digest": SHA, "x-extra": [1, {"y": null}], "manifests": 3});
        assert!(check_value(DocType::Descriptor, &d).is_empty());
        // A repeated key: the last one wins, as in Go's decoder.
        let twice = format!(r#"{{"mediaType": "a/b", "size": "x", "size": 2, "digest": "{SHA}"}}"#);
        assert!(check_str(DocType::Descriptor, &twice).is_empty());
    }
}
