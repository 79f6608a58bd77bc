//! Image names normalised as Docker normalises them, so that a name written any way resolves
//! to the same image: `python` is `docker.io/library/python:latest`, `org/app:1` is
//! `docker.io/org/app:1`, `localhost:5000/x/y:1` keeps its registry. The grammar is the
//! distribution spec's, through `oci-spec`'s parser (the one the registry client uses too).

use oci_spec::distribution::Reference;

use super::ImageError;

/// The canonical spelling of an image name: registry, repository, then `:tag` and/or
/// `@digest` (a name with neither gets `:latest`).
pub fn normalize(name: &str) -> Result<String, ImageError> {
    let bad = |reason: String| ImageError::BadName { name: name.to_owned(), reason };
    if name.trim() != name || name.is_empty() {
        return Err(bad("empty or surrounded by white space".into()));
    }
    // `sha256:<hex>` alone is a digest, which the store resolves apart; as a name it would
    // read as the repository `sha256` with a tag.
    if name.starts_with("sha256:") {
        return Err(bad("a digest, not a name".into()));
    }
    let parsed: Reference =
        name.parse().map_err(|e: oci_spec::distribution::ParseError| bad(e.to_string()))?;
    Ok(parsed.whole())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_as_docker_does() {
        let cases = [
            ("python", "docker.io/library/python:latest"),
            ("python:3", "docker.io/library/python:3"),
            ("library/python:3", "docker.io/library/python:3"),
            ("docker.io/python:3", "docker.io/library/python:3"),
            ("index.docker.io/library/python:3", "docker.io/library/python:3"),
            ("org/name:1", "docker.io/org/name:1"),
            ("hearth-test/proxy:1", "docker.io/hearth-test/proxy:1"),
            ("localhost:5000/x/y:1", "localhost:5000/x/y:1"),
            ("localhost/x", "localhost/x:latest"),
            ("ghcr.io/o/r:v1.2", "ghcr.io/o/r:v1.2"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).unwrap(), want, "{input}");
            // Normalising is idempotent: the canonical form names the same image.
            assert_eq!(normalize(want).unwrap(), want, "{want}");
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("name@{digest}")).unwrap(),
            format!("docker.io/library/name@{digest}")
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in
            ["", " x", "org/Upper", "a b", "x@sha256:12", &format!("sha256:{}", "a".repeat(64))]
        {
            assert!(matches!(normalize(bad), Err(ImageError::BadName { .. })), "{bad:?}");
        }
    }
}
