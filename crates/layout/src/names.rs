//! Image names: Docker's normalization of a short name to a full one
//! (`busybox` -> `docker.io/library/busybox:latest`), as containerd records it in
//! `io.containerd.image.name`.

/// The normalized full name of a Docker image reference, or `None` when `name` is empty.
pub fn containerd_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest.to_string())
        }
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let rest = if domain == "docker.io" && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest
    };
    let last = rest.rsplit('/').next().unwrap_or(&rest);
    let tagged = last.contains(':') || last.contains('@');
    Some(if tagged {
        format!("{domain}/{rest}")
    } else {
        format!("{domain}/{rest}:latest")
    })
}

/// Is `t` a valid Docker tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`)?
pub fn is_docker_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A path component of a Docker repository: `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
pub fn is_path_component(c: &str) -> bool {
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
        let sep_end = if b[i] == b'-' {
            b[i..].iter().take_while(|&&c| c == b'-').count() + i
        } else if b[i] == b'_' && b.get(i + 1) == Some(&b'_') {
            i + 2
        } else if matches!(b[i], b'.' | b'_') {
            i + 1
        } else {
            return false;
        };
        if !b.get(sep_end).copied().is_some_and(is_lower_alnum) {
            return false;
        }
        i = sep_end;
    }
    true
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A registry host: `localhost`, or labels of `[A-Za-z0-9-]` with a `.` or a `:port`.
pub fn is_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let host_ok = !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// Check that `name` is what `docker load` accepts in `RepoTags`: a repository (optionally
/// with a registry host) and a tag, `[host[:port]/]path/…:tag`.
pub fn check_docker_tagged(name: &str) -> Result<(), String> {
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let Some(colon) = name[slash..].rfind(':').map(|i| i + slash) else {
        return Err("not a Docker image name with a tag".into());
    };
    let (repo, tag) = (&name[..colon], &name[colon + 1..]);
    if !is_docker_tag(tag) {
        return Err(format!("`{tag}` is not a valid Docker tag"));
    }
    let mut parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 1
        && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
    {
        if !is_domain(parts[0]) {
            return Err(format!("`{}` is not a valid registry host", parts[0]));
        }
        parts.remove(0);
    }
    if repo.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    match parts.iter().find(|p| !is_path_component(p)) {
        Some(bad) => Err(format!("`{bad}` is not a valid Docker repository component (lowercase letters, digits, and . _ __ - between them)")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        for (i, o) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1", "docker.io/library/busybox:1"),
            (
                "bazel/v1/tarball:test_image_1",
                "docker.io/bazel/v1/tarball:test_image_1",
            ),
            ("docker.io/library/x:1", "docker.io/library/x:1"),
            ("index.docker.io/library/x:1", "docker.io/library/x:1"),
            (
                "localhost:5000/whiteout:latest",
                "localhost:5000/whiteout:latest",
            ),
            ("localhost/x", "localhost/x:latest"),
            ("quay.io/a/b@sha256:abc", "quay.io/a/b@sha256:abc"),
        ] {
            assert_eq!(containerd_name(i).as_deref(), Some(o), "{i}");
        }
        assert_eq!(containerd_name(""), None);
    }

    #[test]
    fn docker_tagged_names() {
        for ok in [
            "busybox:latest",
            "docker.io/library/x:1",
            "localhost:5000/whiteout:latest",
            "bazel/v1/tarball:test_image_1",
            "a__b/c-d.e:v1.0_rc-2",
            "my-registry.example:443/team/app:2024",
        ] {
            assert_eq!(check_docker_tagged(ok), Ok(()), "{ok}");
        }
        for bad in [
            "latest",
            "v1",
            "App:1",
            "app:",
            "app:-x",
            "a/B:1",
            "x@sha256:abc",
            "a..b:1",
            "-a:1",
            "a_:1",
            "a/:1",
        ] {
            assert!(check_docker_tagged(bad).is_err(), "{bad}");
        }
        assert!(
            is_docker_tag("latest")
                && is_docker_tag("v1.2-rc_3")
                && !is_docker_tag(".x")
                && !is_docker_tag("")
        );
    }
}
