//! Container image references compared the way a container runtime resolves them.
//!
//! `nginx`, `nginx:latest`, `docker.io/library/nginx:latest` and `index.docker.io/library/nginx` all
//! name the same image. The registry, the `library/` namespace of Docker Hub and the implicit
//! `latest` tag are filled in before comparing.
//!
//! ```
//! use drift_core::image::same_image;
//! assert!(same_image("nginx:1.25", "docker.io/library/nginx:1.25"));
//! assert!(same_image("nginx", "nginx:latest"));
//! assert!(!same_image("nginx:1.25", "nginx:1.26"));
//! assert!(!same_image("ghcr.io/org/app:v1", "docker.io/org/app:v1"));
//! ```

use std::borrow::Cow;

/// The fully qualified form of an image reference: `registry/path[:tag][@digest]`, with Docker Hub's
/// defaults made explicit. Returns the input unchanged when it is already canonical.
pub fn normalize(reference: &str) -> Cow<'_, str> {
    let reference = reference.trim();
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_tag[last_slash..].rfind(':') {
        Some(i) => (&name_tag[..last_slash + i], Some(&name_tag[last_slash + i + 1..])),
        None => (name_tag, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (first, Cow::Borrowed(rest))
        }
        _ => ("docker.io", Cow::Borrowed(name)),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        Cow::Owned(format!("library/{path}"))
    } else {
        path
    };
    let tag = match (tag, digest) {
        (Some(t), _) => Some(t),
        (None, None) => Some("latest"),
        (None, Some(_)) => None,
    };
    let mut out = String::with_capacity(reference.len() + 24);
    out.push_str(domain);
    out.push('/');
    out.push_str(&path);
    if let Some(t) = tag {
        out.push(':');
        out.push_str(t);
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    if out == reference {
        Cow::Borrowed(reference)
    } else {
        Cow::Owned(out)
    }
}

/// Whether two references name the same image.
pub fn same_image(a: &str, b: &str) -> bool {
    a == b || normalize(a) == normalize(b)
}

/// The tag of a reference (`None` when it has only a digest). A reference with neither has the
/// implicit tag `latest`.
pub fn tag(reference: &str) -> Option<&str> {
    let name_tag = reference.split_once('@').map_or(reference, |(n, _)| n);
    let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[last_slash..].rfind(':') {
        Some(i) => Some(&name_tag[last_slash + i + 1..]),
        None if reference.contains('@') => None,
        None => Some("latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        assert_eq!(normalize("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalize("library/nginx:1"), "docker.io/library/nginx:1");
        assert_eq!(normalize("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(normalize("localhost/app:v1"), "localhost/app:v1");
        assert_eq!(
            normalize("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(
            normalize("nginx@sha256:abc"),
            "docker.io/library/nginx@sha256:abc"
        );
        assert_eq!(
            normalize("index.docker.io/library/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert!(matches!(normalize("ghcr.io/a/b:c"), Cow::Borrowed(_)));
    }

    #[test]
    fn tags() {
        assert_eq!(tag("nginx"), Some("latest"));
        assert_eq!(tag("nginx:1.2"), Some("1.2"));
        assert_eq!(tag("localhost:5000/nginx"), Some("latest"));
        assert_eq!(tag("nginx@sha256:1"), None);
    }
}
