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
}
