//! Repository names and tags: the distribution spec's grammar, and how a ref in `index.json`
//! becomes a repository and a tag.
//!
//! | ref in `index.json` | repository | tag |
//! |---|---|---|
//! | `docker.io/library/nginx:1.27` | `library/nginx` | `1.27` |
//! | `docker.io/nginx:1.27` | `library/nginx` (Docker Hub's rule) | `1.27` |
//! | `registry.example:5000/team/app:v2` | `team/app` | `v2` |
//! | `team/app:v2`, `busybox:latest` | `team/app`, `busybox` (as written) | `v2`, `latest` |
//! | `team/app` | `team/app` | `latest` |
//! | `1.27` (a tag alone) | the layout's own repository | `1.27` |
//! | `team/app@sha256:…` | `team/app` | none: by digest only |
//! | anything else (`App:1`, `a:b:c`) | the layout's own repository | none: by digest only |
//!
//! A domain is a first component with a `.` or a `:`, or `localhost`. Entries without a ref
//! are reachable by digest only.

/// The longest repository name the server accepts (distribution's limit).
pub const NAME_LIMIT: usize = 255;

/// What a ref of `index.json` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefName {
    /// A tag of the layout's own repository (the ref is only a tag).
    OwnTag(String),
    /// A tag of a named repository.
    Tag {
        /// The repository.
        repo: String,
        /// The tag.
        tag: String,
    },
    /// A repository, reachable by digest only (the ref pins a digest and names no tag).
    DigestOnly {
        /// The repository.
        repo: String,
    },
    /// Not a Docker-style reference: the entry is reachable by digest only, in the layout's
    /// own repository.
    Other,
}

/// How `index.json`'s ref `r` maps to a repository and tag (see the module's table).
pub fn map_ref(r: &str) -> RefName {
    if is_tag(r) {
        return RefName::OwnTag(r.to_string());
    }
    let (rest, has_digest) = match r.split_once('@') {
        Some((rest, digest)) => {
            if ocikit_layout::Digest::parse(digest).is_err() {
                return RefName::Other;
            }
            (rest, true)
        }
        None => (r, false),
    };
    // The tag is after the last `:` that follows the last `/` (a domain may have a port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), path)
        }
        _ => (None, name),
    };
    let repo = match domain {
        Some("docker.io" | "index.docker.io") if !path.contains('/') => {
            format!("library/{path}")
        }
        _ => path.to_string(),
    };
    if !is_repository(&repo) {
        return RefName::Other;
    }
    match tag {
        Some(t) if is_tag(t) => RefName::Tag {
            repo,
            tag: t.to_string(),
        },
        Some(_) => RefName::Other,
        None if has_digest => RefName::DigestOnly { repo },
        None => RefName::Tag {
            repo,
            tag: "latest".to_string(),
        },
    }
}

/// Is `t` a tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`?
pub fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Is `name` a repository name: path components of `[a-z0-9]+` joined by `.`, `_`, `__` or
/// runs of `-`, separated by `/`, at most [`NAME_LIMIT`] bytes?
pub fn is_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_LIMIT && name.split('/').all(is_component)
}

fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_lower_alnum(b[0]) || !is_lower_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_lower_alnum(b[i]) {
            i += 1;
            continue;
        }
        let end = match b[i] {
            b'-' => i + b[i..].iter().take_while(|&&c| c == b'-').count(),
            b'_' if b.get(i + 1) == Some(&b'_') => i + 2,
            b'.' | b'_' => i + 1,
            _ => return false,
        };
        if !b.get(end).copied().is_some_and(is_lower_alnum) {
            return false;
        }
        i = end;
    }
    true
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(repo: &str, tag: &str) -> RefName {
        RefName::Tag {
            repo: repo.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn refs_map_to_repository_and_tag() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let cases: Vec<(String, RefName)> = vec![
            (
                "docker.io/library/nginx:1.27".into(),
                tag("library/nginx", "1.27"),
            ),
            ("docker.io/nginx:1.27".into(), tag("library/nginx", "1.27")),
            (
                "index.docker.io/nginx".into(),
                tag("library/nginx", "latest"),
            ),
            (
                "registry.example:5000/team/app:v2".into(),
                tag("team/app", "v2"),
            ),
            ("localhost/app:1".into(), tag("app", "1")),
            ("127.0.0.1:5000/a/b/c:x_1".into(), tag("a/b/c", "x_1")),
            ("team/app:v2".into(), tag("team/app", "v2")),
            ("busybox:latest".into(), tag("busybox", "latest")),
            ("team/app".into(), tag("team/app", "latest")),
            ("1.27".into(), RefName::OwnTag("1.27".into())),
            ("latest".into(), RefName::OwnTag("latest".into())),
            (
                format!("team/app@{d}"),
                RefName::DigestOnly {
                    repo: "team/app".into(),
                },
            ),
            (format!("team/app:v1@{d}"), tag("team/app", "v1")),
            ("team/app@sha256:short".into(), RefName::Other),
            ("App:1".into(), RefName::Other),
            ("a:b:c".into(), RefName::Other),
            ("team/../etc:1".into(), RefName::Other),
            ("team//app:1".into(), RefName::Other),
            ("team/app:".into(), RefName::Other),
            (".hidden".into(), RefName::Other),
        ];
        for (r, want) in cases {
            assert_eq!(map_ref(&r), want, "{r}");
        }
    }

    #[test]
    fn repository_grammar() {
        for ok in [
            "a",
            "library/nginx",
            "a-b/c.d/e_f/g__h",
            "a---b",
            &"a".repeat(255),
        ] {
            assert!(is_repository(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            ".a",
            "a.",
            "a___b",
            "a%2fb",
            "a b",
            &"a".repeat(256),
        ] {
            assert!(!is_repository(bad), "{bad}");
        }
    }

    #[test]
    fn tag_grammar() {
        assert!(is_tag("v1.0_rc-2"));
        assert!(is_tag("_x"));
        assert!(is_tag(&"a".repeat(128)));
        assert!(!is_tag(&"a".repeat(129)));
        assert!(!is_tag(".x"));
        assert!(!is_tag("-x"));
        assert!(!is_tag("a/b"));
        assert!(!is_tag("a:b"));
        assert!(!is_tag(""));
    }
}
