//! The distribution API's pull side over the served layouts: routes, answers and the error
//! JSON of the spec. Every write is 405 `UNSUPPORTED`.
//!
//! No part of a request path reaches the file system: a repository name and a tag are looked
//! up in the snapshots, a digest is parsed ([`Digest::parse`], whose grammar has no `/` and no
//! `..`) and must be one the layout's `index.json` reaches before the store opens it.

use ocikit_layout::{Digest, Error as LayoutError, JSON_LIMIT};
use serde_json::{json, Value};

use super::http::{Body, Request, Response};
use super::names::{is_repository, is_tag};
use super::repos::{Found, View};
use super::Shared;

const API_VERSION: (&str, &str) = ("Docker-Distribution-API-Version", "registry/2.0");
const JSON: &str = "application/json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The route a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Upload(&'a str),
    Referrers(&'a str, &'a str),
    Unknown,
    NotApi,
}

fn route(path: &str) -> Route<'_> {
    if path == "/v2" || path == "/v2/" {
        return Route::Base;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::NotApi;
    };
    if rest == "_catalog" {
        return Route::Catalog;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Route::Tags(name);
    }
    if let Some((name, r)) = rest.rsplit_once("/manifests/") {
        return Route::Manifest(name, r);
    }
    if let Some((name, r)) = rest.rsplit_once("/blobs/") {
        if r == "uploads" || r.starts_with("uploads/") {
            return Route::Upload(name);
        }
        return Route::Blob(name, r);
    }
    if let Some((name, r)) = rest.rsplit_once("/referrers/") {
        return Route::Referrers(name, r);
    }
    Route::Unknown
}

/// An error response with the spec's JSON body.
pub fn error(status: u16, code: &str, message: &str, detail: Value) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "detail": detail}]});
    Response::bytes(status, JSON, body.to_string().into_bytes()).with(API_VERSION.0, API_VERSION.1)
}

/// Answer one request; the second value is the authenticated user, for the log.
pub fn handle(shared: &Shared, req: &Request) -> (Response, Option<String>) {
    let r = route(&req.path);
    if r == Route::NotApi {
        return (
            error(404, "NOT_FOUND", "not a distribution API path", json!({})),
            None,
        );
    }
    let user = match &shared.auth {
        Some(auth) => match auth.check(req.header("authorization")) {
            Some(u) => Some(u),
            None => {
                return (
                    error(401, "UNAUTHORIZED", "authentication required", json!({}))
                        .with("WWW-Authenticate", "Basic realm=\"ocikit\""),
                    None,
                )
            }
        },
        None => None,
    };
    let head = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return (
                error(
                    405,
                    "UNSUPPORTED",
                    "this registry is read-only: only GET and HEAD are served",
                    json!({"method": req.method}),
                )
                .with("Allow", "GET, HEAD"),
                user,
            )
        }
    };
    let resp = answer(shared, req, r).with(API_VERSION.0, API_VERSION.1);
    (if head { resp.head_only() } else { resp }, user)
}

fn answer(shared: &Shared, req: &Request, r: Route<'_>) -> Response {
    let name = match r {
        Route::Base => return Response::bytes(200, JSON, b"{}".to_vec()),
        Route::NotApi | Route::Unknown => {
            return error(404, "NOT_FOUND", "not a distribution API path", json!({}))
        }
        Route::Catalog => "",
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::Upload(n)
        | Route::Referrers(n, _) => n,
    };
    if !matches!(r, Route::Catalog) && !is_repository(name) {
        return error(
            400,
            "NAME_INVALID",
            "invalid repository name",
            json!({"name": name}),
        );
    }
    let mut view = shared.view();
    // A repository no layout serves, or the catalog: a layout may have been added below (or
    // removed from) a served parent directory since it was last searched.
    let catalog = matches!(r, Route::Catalog);
    if (catalog || !view.has_repo(name)) && shared.rescan() {
        view = shared.view();
    }
    if !catalog && !view.has_repo(name) {
        return error(
            404,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            json!({"name": name}),
        );
    }
    match r {
        Route::Catalog => {
            let all = view.repositories();
            paginate(
                req,
                &all,
                "/v2/_catalog",
                |page| json!({"repositories": page}),
            )
        }
        Route::Tags(name) => {
            let tags = view.tags(name);
            let link = format!("/v2/{name}/tags/list");
            paginate(
                req,
                &tags,
                &link,
                |page| json!({"name": name, "tags": page}),
            )
        }
        Route::Manifest(name, reference) => manifest(shared, req, &view, name, reference),
        Route::Blob(name, digest) => blob(shared, req, &view, name, digest),
        Route::Upload(_) => error(
            404,
            "BLOB_UPLOAD_UNKNOWN",
            "this registry is read-only: there are no uploads",
            json!({}),
        ),
        Route::Referrers(name, digest) => referrers(req, &view, name, digest),
        Route::Base | Route::Unknown | Route::NotApi => {
            error(404, "NOT_FOUND", "not a distribution API path", json!({}))
        }
    }
}

/// A sorted list, paginated by `n` and `last`, with a `Link` to the next page.
fn paginate(
    req: &Request,
    all: &[String],
    path: &str,
    body: impl Fn(&[String]) -> Value,
) -> Response {
    let n = match req.query_values("n").first() {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error(
                    400,
                    "PAGINATION_NUMBER_INVALID",
                    "invalid number of results requested",
                    json!({"n": v}),
                )
            }
        },
    };
    let last = req.query_values("last").into_iter().next();
    let from = match &last {
        Some(l) => all.partition_point(|t| t.as_str() <= l.as_str()),
        None => 0,
    };
    let rest = &all[from..];
    let (page, more) = match n {
        Some(n) if n < rest.len() => (&rest[..n], true),
        _ => (rest, false),
    };
    let mut resp = Response::bytes(200, JSON, body(page).to_string().into_bytes());
    if let (true, Some(n), Some(l)) = (more, n, page.last()) {
        resp = resp.with("Link", format!("<{path}?n={n}&last={l}>; rel=\"next\""));
    }
    resp
}

fn etag(d: &Digest) -> String {
    format!("\"{d}\"")
}

/// Does `If-None-Match` name this entity?
fn not_modified(req: &Request, tag: &str) -> bool {
    req.header("if-none-match").is_some_and(|v| {
        v.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == tag || t.strip_prefix("W/") == Some(tag))
    })
}

fn bad_digest(d: &str) -> Response {
    error(
        400,
        "DIGEST_INVALID",
        "invalid digest",
        json!({"digest": d}),
    )
}

fn manifest(shared: &Shared, req: &Request, view: &View, name: &str, reference: &str) -> Response {
    let unknown = || {
        error(
            404,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            json!({"name": name, "reference": reference}),
        )
    };
    let found: Option<Found<'_>> = if reference.contains(':') {
        match Digest::parse(reference) {
            Ok(d) => view.by_digest(name, &d, true),
            Err(_) => return bad_digest(reference),
        }
    } else if is_tag(reference) {
        view.by_tag(name, reference)
    } else {
        return unknown();
    };
    let Some(found) = found else {
        return unknown();
    };
    let tag = etag(&found.digest);
    let headers = |r: Response| {
        r.with("Docker-Content-Digest", found.digest.as_str())
            .with("ETag", tag.clone())
    };
    if not_modified(req, &tag) {
        return headers(Response {
            status: 304,
            headers: Vec::new(),
            body: Body::Empty(None),
        });
    }
    match found
        .layout
        .read_blob(&found.digest, found.size, JSON_LIMIT)
    {
        Ok(bytes) => headers(Response::bytes(200, found.media_type.as_str(), bytes)),
        Err(e) => store_error(
            shared,
            e,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            name,
            &found,
        ),
    }
}

/// A blob the snapshot names but the store cannot give: absent is 404 with `code`, anything
/// else (corrupt size or digest, not a regular file, I/O) is 500 and logged.
fn store_error(
    shared: &Shared,
    e: LayoutError,
    code: &str,
    message: &str,
    name: &str,
    found: &Found<'_>,
) -> Response {
    if let LayoutError::MissingBlob { .. } = e {
        return error(
            404,
            code,
            message,
            json!({"name": name, "digest": found.digest.as_str()}),
        );
    }
    shared.warn(&format!("`{}`: {e}", found.layout.root().display()));
    error(
        500,
        "UNKNOWN",
        "the layout's copy of this content cannot be served",
        json!({"digest": found.digest.as_str()}),
    )
}

fn blob(shared: &Shared, req: &Request, view: &View, name: &str, digest: &str) -> Response {
    let Ok(d) = Digest::parse(digest) else {
        return bad_digest(digest);
    };
    let Some(found) = view.by_digest(name, &d, false) else {
        return error(
            404,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
            json!({"name": name, "digest": digest}),
        );
    };
    let (file, len) = match found.layout.open_blob_sized(&found.digest, found.size) {
        Ok(f) => f,
        Err(e) => {
            return store_error(
                shared,
                e,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                name,
                &found,
            )
        }
    };
    let tag = etag(&found.digest);
    let common = |r: Response| {
        r.with("Docker-Content-Digest", found.digest.as_str())
            .with("ETag", tag.clone())
            .with("Accept-Ranges", "bytes")
    };
    if not_modified(req, &tag) {
        return common(Response {
            status: 304,
            headers: Vec::new(),
            body: Body::Empty(None),
        });
    }
    let range = match req.header("range") {
        Some(_) if req.header("if-range").is_some_and(|v| v != tag) => Range::Full,
        Some(h) => parse_range(h, len),
        None => Range::Full,
    };
    let octets = "application/octet-stream".to_string();
    match range {
        Range::Full => common(Response {
            status: 200,
            headers: vec![("Content-Type", octets)],
            body: Body::File {
                file,
                offset: 0,
                len,
            },
        }),
        Range::Part(start, end) => common(Response {
            status: 206,
            headers: vec![
                ("Content-Type", octets),
                ("Content-Range", format!("bytes {start}-{end}/{len}")),
            ],
            body: Body::File {
                file,
                offset: start,
                len: end - start + 1,
            },
        }),
        Range::Unsatisfiable => common(
            error(
                416,
                "BLOB_UNKNOWN",
                "the requested range is not within the blob",
                json!({"digest": digest, "size": len}),
            )
            .with("Content-Range", format!("bytes */{len}")),
        ),
    }
}

/// What a `Range` header asks of a blob of some length.
#[derive(Debug, PartialEq, Eq)]
pub enum Range {
    /// The whole blob (no range, a unit other than bytes, several ranges, or a malformed one:
    /// a server may ignore those).
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

/// What the `Range` header value `h` asks of a blob of `len` bytes.
pub fn parse_range(h: &str, len: u64) -> Range {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Range::Full;
    };
    if spec.contains(',') {
        return Range::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Range::Full;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Range::Full,
        // A suffix: the last `b` bytes.
        (true, false) => match num(b) {
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(len - n.min(len), len - 1),
            None => Range::Full,
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return Range::Full;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(e) if e >= start => e,
                    _ => return Range::Full,
                }
            };
            if start >= len {
                Range::Unsatisfiable
            } else {
                Range::Part(start, end.min(len - 1))
            }
        }
    }
}

fn referrers(req: &Request, view: &View, name: &str, digest: &str) -> Response {
    let Ok(d) = Digest::parse(digest) else {
        return bad_digest(digest);
    };
    let mut list = view.referrers(name, &d);
    let filter = req.query_values("artifactType").into_iter().next();
    if let Some(t) = &filter {
        list.retain(|r| r.artifact_type.as_deref() == Some(t.as_str()));
    }
    let body = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": list,
    });
    let resp = Response::bytes(200, OCI_INDEX, body.to_string().into_bytes());
    if filter.is_some() {
        resp.with("OCI-Filters-Applied", "artifactType")
    } else {
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert_eq!(route("/v2/"), Route::Base);
        assert_eq!(route("/v2"), Route::Base);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(route("/v2/a/b/tags/list"), Route::Tags("a/b"));
        assert_eq!(route("/v2/a/manifests/1.0"), Route::Manifest("a", "1.0"));
        assert_eq!(
            route("/v2/a/manifests/b/manifests/x"),
            Route::Manifest("a/manifests/b", "x")
        );
        assert_eq!(route(&format!("/v2/a/blobs/{d}")), Route::Blob("a", d));
        assert_eq!(route("/v2/a/blobs/uploads/"), Route::Upload("a"));
        assert_eq!(route("/v2/a/blobs/uploads/123"), Route::Upload("a"));
        assert_eq!(
            route(&format!("/v2/a/referrers/{d}")),
            Route::Referrers("a", d)
        );
        assert_eq!(route("/v2/a/other"), Route::Unknown);
        assert_eq!(route("/etc/passwd"), Route::NotApi);
        assert_eq!(route("/v2/../etc/passwd"), Route::Unknown);
    }

    #[test]
    fn ranges() {
        let cases = [
            ("bytes=0-0", 10, Range::Part(0, 0)),
            ("bytes=2-5", 10, Range::Part(2, 5)),
            ("bytes=2-", 10, Range::Part(2, 9)),
            ("bytes=5-100", 10, Range::Part(5, 9)),
            ("bytes=-3", 10, Range::Part(7, 9)),
            ("bytes=-30", 10, Range::Part(0, 9)),
            ("bytes=10-", 10, Range::Unsatisfiable),
            ("bytes=10-20", 10, Range::Unsatisfiable),
            ("bytes=-0", 10, Range::Unsatisfiable),
            ("bytes=-1", 0, Range::Unsatisfiable),
            ("bytes=0-", 0, Range::Unsatisfiable),
            ("bytes=5-2", 10, Range::Full),
            ("bytes=0-1,3-4", 10, Range::Full),
            ("bytes=x-1", 10, Range::Full),
            ("bytes=+1-2", 10, Range::Full),
            ("bytes=-", 10, Range::Full),
            ("items=0-1", 10, Range::Full),
            ("bytes=99999999999999999999999-", 10, Range::Full),
        ];
        for (h, len, want) in cases {
            assert_eq!(parse_range(h, len), want, "{h} of {len}");
        }
    }
}
