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
//!   `urls` must be an array of absolute RFC 3986 URIs, `annotations` an object of strings,
//!   `data` standard base64 with padding, and `platform` (if present) an object with the
//!   strings `architecture` and `os` plus the optional `os.version` (string), `os.features`
//!   (array of strings) and `variant` (string).
//! * Manifests: `schemaVersion` is the integer 2; `mediaType` and `artifactType`, if present,
//!   fit the media-type grammar; `config` is a descriptor; `layers` is a non-empty array of
//!   descriptors; `subject` is a descriptor; `annotations` is an object of strings.
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
//!   warns about them.
//! * `null` is accepted where the schema allows it (`config.Entrypoint`, `config.Cmd`,
//!   `config.Volumes`, `config.Labels`) and also for `config.Env`, which Docker writes as
//!   `null` for an image without environment (the schema says array, but rejecting every
//!   such Docker image would make the check useless for Docker content).
//! * base64 in `data` may have non-zero trailing bits, as Go's standard decoder (the one the
//!   upstream validator relies on) accepts them. Padding is still required.
//! * An `Env` value may contain a newline (the upstream regular expression `^[^=]+=.*$` would
//!   refuse one, an accident of Go's `.` not matching `\n`).
//! * `layers: []` is reported, because the schema has `minItems: 1`, but the prose only says
//!   SHOULD; the message says so, and callers may treat it as a warning.
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
//! * `created` must be a full RFC 3339 date-time; the upstream schema engine also accepts a
//!   bare date or time.

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
/// "layers[0].size: expected an unsigned integer". Empty = valid.
pub fn check(doc: DocType, bytes: &[u8]) -> Vec<String> {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return vec![format!("document: invalid json: {}", e.to_string().to_lowercase())],
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

    fn required(&mut self, parent: &str, obj: &Obj, key: &str, check: impl FnOnce(&mut Self, &str, &Value)) {
        let path = field(parent, key);
        match obj.get(key) {
            Some(v) => check(self, &path, v),
            None => self.report(&path, "required field is missing"),
        }
    }

    fn optional(&mut self, parent: &str, obj: &Obj, key: &str, check: impl FnOnce(&mut Self, &str, &Value)) {
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
        for (i, s) in self.array(path, v, null).unwrap_or_default().iter().enumerate() {
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
        for (i, u) in self.array(path, v, Null::No).unwrap_or_default().iter().enumerate() {
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
        for (i, e) in self.array(path, v, Null::Ok).unwrap_or_default().iter().enumerate() {
            let p = item(path, i);
            if let Some(s) = self.str(&p, e) {
                // Upstream: ^[^=]+=.*$
                if !s.find('=').is_some_and(|at| at > 0) {
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
        self.optional(path, o, "annotations", |c, p, v| c.string_map(p, v, Null::No));
        self.optional(path, o, "platform", Self::platform);
    }

    fn platform(&mut self, path: &str, v: &Value) {
        let Some(o) = self.object(path, v, Null::No) else {
            return;
        };
        self.required(path, o, "architecture", Self::string);
        self.required(path, o, "os", Self::string);
        self.optional(path, o, "os.version", Self::string);
        self.optional(path, o, "os.features", |c, p, v| c.string_array(p, v, Null::No));
        self.optional(path, o, "variant", Self::string);
    }

    fn descriptors(&mut self, path: &str, v: &Value) {
        for (i, d) in self.array(path, v, Null::No).unwrap_or_default().iter().enumerate() {
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
        self.optional(ROOT, o, "annotations", |c, p, v| c.string_map(p, v, Null::No));
    }

    fn index(&mut self, v: &Value) {
        let Some(o) = self.object(ROOT, v, Null::No) else {
            return;
        };
        self.top_level_common(o);
        self.required(ROOT, o, "manifests", Self::descriptors);
        self.optional(ROOT, o, "subject", Self::descriptor);
        self.optional(ROOT, o, "annotations", |c, p, v| c.string_map(p, v, Null::No));
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
        self.optional(ROOT, o, "os.features", |c, p, v| c.string_array(p, v, Null::No));
        self.optional(ROOT, o, "config", Self::exec_config);
        self.required(ROOT, o, "rootfs", Self::rootfs);
        self.optional(ROOT, o, "history", Self::history);
    }

    fn exec_config(&mut self, path: &str, v: &Value) {
        let Some(o) = self.object(path, v, Null::No) else {
            return;
        };
        self.optional(path, o, "User", Self::string);
        self.optional(path, o, "ExposedPorts", |c, p, v| c.object_map(p, v, Null::No));
        self.optional(path, o, "Env", Self::env);
        self.optional(path, o, "Entrypoint", |c, p, v| c.string_array(p, v, Null::Ok));
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
            for (i, d) in c.array(p, v, Null::No).unwrap_or_default().iter().enumerate() {
                c.digest(&item(p, i), d);
            }
        });
    }

    fn history(&mut self, path: &str, v: &Value) {
        for (i, h) in self.array(path, v, Null::No).unwrap_or_default().iter().enumerate() {
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
        return Err(format!("{which} may only contain letters, digits and !#$&^_.+-"));
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
    if !alg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)) {
        return Err("algorithm may only contain lowercase letters, digits and the separators + . _ -".to_owned());
    }
    if alg.split(['+', '.', '_', '-']).any(str::is_empty) {
        return Err("algorithm has a leading, trailing or repeated separator".to_owned());
    }
    if encoded.is_empty() {
        return Err("empty encoded part".to_owned());
    }
    if !encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b)) {
        return Err("encoded part may only contain letters, digits, '=', '_' and '-'".to_owned());
    }
    let hex_len = match alg {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Ok(()),
    };
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if encoded.len() != hex_len || !encoded.bytes().all(lower_hex) {
        return Err(format!("{alg} needs exactly {hex_len} lowercase hex characters"));
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
            if !(hi.is_some_and(|h| h.is_ascii_hexdigit()) && lo.is_some_and(|l| l.is_ascii_hexdigit())) {
                return Err("'%' is not followed by two hex digits");
            }
        } else if !(b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b)) {
            return Err("a character that must be percent-encoded (space, quote, backslash, non-ascii...)");
        }
    }
    if rest.matches('#').count() > 1 {
        return Err("more than one '#'");
    }
    let (authority, after) = match rest.strip_prefix("//") {
        Some(r) => {
            let end = r.find(['/', '?', '#']).unwrap_or(r.len());
            let (a, b) = r.split_at(end);
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
        .try_fold(0u32, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0')))
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
