//! Path globs for sensitive paths, matched on raw path bytes (git paths need not be UTF-8).
//!
//! Syntax, matched against the whole path from the repository root:
//! `*` any run of bytes within one segment (never `/`), `?` one byte other than `/`,
//! a whole segment `**` zero or more segments. Everything else is literal.
//! A pattern without `**/` in front is anchored at the root: `infra/**` matches
//! `infra/a.tf` but not `x/infra/a.tf`.

/// The longest pattern we accept: a configuration file is human-written, and the
/// matcher's backtracking is bounded by pattern length times path length.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole segments.
    AnyDepth,
    /// One segment with `*` / `?` wildcards.
    Pattern(Vec<u8>),
}

impl Glob {
    /// Compiles `pattern`; rejects empty, over-long, absolute or `..`-containing patterns.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty path pattern".into());
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!("path pattern longer than {MAX_PATTERN_BYTES} bytes: {pattern:.40}…"));
        }
        if pattern.starts_with('/') {
            return Err(format!("path pattern `{pattern}` is absolute; patterns are relative to the repository root"));
        }
        let mut segments = Vec::new();
        for part in pattern.split('/') {
            match part {
                "" => return Err(format!("path pattern `{pattern}` has an empty segment (`//` or a trailing `/`)")),
                ".." | "." => return Err(format!("path pattern `{pattern}` contains `{part}`; git paths never do")),
                "**" => {
                    // `**/**` is the same as `**`; keep one so matching stays linear.
                    if segments.last() != Some(&Segment::AnyDepth) {
                        segments.push(Segment::AnyDepth);
                    }
                }
                other if other.contains("**") => {
                    return Err(format!("path pattern `{pattern}`: `**` must be a whole segment (e.g. `infra/**`)"))
                }
                other => segments.push(Segment::Pattern(other.as_bytes().to_vec())),
            }
        }
        Ok(Self { source: pattern.to_owned(), segments })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `path` (bytes, `/`-separated, relative to the root) matches.
    pub fn matches(&self, path: &[u8]) -> bool {
        let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
        match_segments(&self.segments, &parts)
    }
}

fn match_segments(pattern: &[Segment], parts: &[&[u8]]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        // A trailing `**` (`infra/**`) matches what is inside, not the directory itself.
        Some((Segment::AnyDepth, [])) => !parts.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            // Try every split point. `**` segments are deduplicated, so the recursion
            // depth is bounded by the number of segments in the pattern.
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((Segment::Pattern(seg), rest)) => match parts.split_first() {
            Some((first, tail)) => match_one(seg, first) && match_segments(rest, tail),
            None => false,
        },
    }
}

/// Matches one segment with `*` and `?` (greedy with a single backtrack point, linear
/// in practice and at most `pattern.len() * text.len()` steps).
fn match_one(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// A set of globs; a path is in the set when any glob matches.
#[derive(Debug, Clone, Default)]
pub struct GlobSet {
    globs: Vec<Glob>,
}

impl GlobSet {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let globs = patterns.iter().map(|p| Glob::new(p)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { globs })
    }

    pub fn matches(&self, path: &[u8]) -> bool {
        self.globs.iter().any(|g| g.matches(path))
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.globs.iter().map(Glob::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, path: &str) -> bool {
        Glob::new(p).unwrap().matches(path.as_bytes())
    }

    #[test]
    fn defaults_match_what_they_should() {
        assert!(m("infra/**", "infra/modules/iam/main.tf"));
        assert!(m("infra/**", "infra/a"));
        assert!(!m("infra/**", "crates/infra/a"));
        assert!(!m("infra/**", "infrastructure/a"));
        assert!(m("**/migrations/**", "crates/db/migrations/0001.sql"));
        assert!(m("**/migrations/**", "migrations/0001.sql"));
        assert!(!m("**/migrations/**", "crates/db/migration.rs"));
        assert!(m("**/*role*", "crates/domain/src/db_role.rs"));
        assert!(m("**/*role*", "infra/roles.tf"));
        assert!(m("**/*permission*", "crates/domain/src/permission.rs"));
        assert!(m("crates/domain/src/permission*.rs", "crates/domain/src/permissions.rs"));
        assert!(!m("crates/domain/src/permission*.rs", "crates/domain/src/x/permission.rs"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(!m("*", "a/b"));
        assert!(m("**", "a/b"));
        assert!(!m("infra/**", "infra"));
    }

    #[test]
    fn non_utf8_paths_match_as_bytes() {
        let g = Glob::new("infra/**").unwrap();
        assert!(g.matches(b"infra/\xff\xfe.tf"));
        assert!(!g.matches(b"\xffinfra/x"));
    }

    #[test]
    fn bad_patterns_are_rejected_with_a_reason() {
        for bad in ["", "/abs", "a//b", "a/", "../x", "a/**b/c", "x/./y"] {
            let err = Glob::new(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(Glob::new(&"a".repeat(MAX_PATTERN_BYTES + 1)).is_err());
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        /// A literal path (no wildcard bytes) matches itself and `**` prefixes of it.
        #[test]
        fn literal_paths_match_themselves(parts in proptest::collection::vec("[a-z0-9_.-]{1,8}", 1..6)) {
            let parts: Vec<String> = parts.into_iter().filter(|p| p != "." && p != "..").collect();
            prop_assume!(!parts.is_empty());
            let path = parts.join("/");
            prop_assert!(m(&path, &path));
            let last = parts.last().unwrap();
            let any_depth = format!("**/{last}");
            prop_assert!(m(&any_depth, &path));
            let prefix = format!("{}/**", parts[0]);
            prop_assert_eq!(m(&prefix, &path), parts.len() > 1);
        }

        /// `*` never crosses a `/`; one `*` per segment matches exactly the same-depth paths.
        #[test]
        fn star_is_per_segment(parts in proptest::collection::vec("[a-z]{1,5}", 1..6), depth in 1usize..6) {
            let path = parts.join("/");
            let pattern = vec!["*"; depth].join("/");
            prop_assert_eq!(m(&pattern, &path), depth == parts.len());
        }
    }
}
