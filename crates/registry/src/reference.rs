//! Image references: `host[:port]/repo[:tag][@digest]`, with Docker's short names expanded
//! (`nginx` -> `docker.io/library/nginx:latest`).

use std::fmt;

use ocikit_layout::names::{is_docker_tag, is_domain, is_path_component};
use ocikit_layout::Digest;

use crate::error::{Error, Result};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (with port), `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path (`library/nginx`).
    pub repository: String,
    /// The tag, if given (a reference with neither tag nor digest gets `latest`).
    pub tag: Option<String>,
    /// The digest, if given.
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parse `input` as `docker` does: a first component with a `.` or `:`, or `localhost`,
    /// is the registry; otherwise the registry is Docker Hub, where a one-component name is
    /// under `library/`. Neither tag nor digest means `latest`.
    pub fn parse(input: &str) -> Result<ImageRef> {
        let bad = |reason: &str| Error::Reference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.len() > 4096 {
            return Err(bad("longer than 4096 characters"));
        }
        let (name, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| bad(&format!("bad digest: {e}")))?),
            ),
            None => (input, None),
        };
        let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], Some(name[slash + i + 1..].to_string())),
            None => (name, None),
        };
        if let Some(t) = &tag {
            if !is_docker_tag(t) {
                return Err(bad(&format!("`{t}` is not a valid tag")));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if !is_domain(&registry) {
            return Err(bad(&format!("`{registry}` is not a valid registry host")));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty() || repository.len() > 255 {
            return Err(bad(
                "the repository name is empty or longer than 255 characters",
            ));
        }
        if let Some(c) = repository.split('/').find(|c| !is_path_component(c)) {
            return Err(bad(&format!(
                "`{c}` is not a valid repository component (lowercase letters, digits, and . _ __ - between them)"
            )));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the API is reached at (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the manifests endpoint for: the digest when given, else the tag.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository:tag`, when there is a tag (the ref a pull records by default).
    pub fn tagged_name(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Whether plain HTTP may be used to `host` without being asked: this machine only.
pub fn is_loopback(host: &str) -> bool {
    let h = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    h == "localhost" || h == "127.0.0.1" || h == "[::1]" || h.starts_with("127.")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    #[test]
    fn parses_like_docker() {
        let cases: &[(&str, &str, &str, Option<&str>, Option<&str>)] = &[
            ("nginx", "docker.io", "library/nginx", Some("latest"), None),
            (
                "nginx:1.27",
                "docker.io",
                "library/nginx",
                Some("1.27"),
                None,
            ),
            ("user/app", "docker.io", "user/app", Some("latest"), None),
            (
                "index.docker.io/nginx",
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            ("localhost/app:v1", "localhost", "app", Some("v1"), None),
            (
                "127.0.0.1:5000/a/b:v1",
                "127.0.0.1:5000",
                "a/b",
                Some("v1"),
                None,
            ),
        ];
        for (input, reg, repo, tag, digest) in cases {
            let r = ImageRef::parse(input).expect(input);
            assert_eq!(r.registry, *reg, "{input}");
            assert_eq!(r.repository, *repo, "{input}");
            assert_eq!(r.tag.as_deref(), *tag, "{input}");
            assert_eq!(r.digest.as_ref().map(|d| d.to_string()).as_deref(), *digest);
        }
        let r = ImageRef::parse(&format!("ghcr.io/o/r:t@{D}")).expect("digest");
        assert_eq!(r.tag.as_deref(), Some("t"));
        assert_eq!(r.reference(), D);
        assert_eq!(r.to_string(), format!("ghcr.io/o/r:t@{D}"));
        let r = ImageRef::parse(&format!("ghcr.io/o/r@{D}")).expect("digest only");
        assert_eq!(r.tag, None);
        assert_eq!(r.tagged_name(), None);
        assert_eq!(
            ImageRef::parse("nginx").expect("n").api_host(),
            DOCKER_HUB_API
        );
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "UPPER/case",
            "host:5000/app:",
            "app:t@sha256:12",
            "a//b",
            "host:port/x",
            "app:-bad",
        ] {
            let e = ImageRef::parse(bad).expect_err(bad);
            assert!(e
                .to_string()
                .starts_with(&format!("`{bad}`: not an image reference: ")));
        }
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(!is_loopback("registry.local:5000"));
        assert!(!is_loopback("10.0.0.1"));
    }
}
