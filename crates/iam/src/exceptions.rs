//! The policy exceptions registry (`infra/policy/exceptions.toml`): `[[exception]]` entries with
//! `rule`, `resource`, `member`, `justification`, `approver`, `ticket`, `expires` (YYYY-MM-DD).
//! A finding covered by a valid exception is reported as excepted; an expired, unused or
//! malformed exception is itself a finding that fails the check.

use crate::date::Date;
use std::path::{Path, PathBuf};

/// A registry larger than this is not a hand-kept file.
pub const MAX_EXCEPTIONS: usize = 10_000;
pub const FIELDS: [&str; 7] = ["rule", "resource", "member", "justification", "approver", "ticket", "expires"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct Exception {
    pub rule: String,
    pub resource: String,
    pub member: String,
    pub justification: String,
    pub approver: String,
    pub ticket: String,
    pub expires: String,
    /// 1-based line of its `[[exception]]` header.
    pub line: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Malformed {
    pub line: u32,
    pub problem: String,
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub path: Option<PathBuf>,
    pub exceptions: Vec<Exception>,
    pub malformed: Vec<Malformed>,
}

fn header_lines(text: &str) -> Vec<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[exception]]"))
        .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX))
        .collect()
}

impl Registry {
    /// Parses a registry. A file that is not TOML at all is one malformed entry (line 1 or the
    /// parser's line), so the check fails with a clear message instead of ignoring it.
    pub fn parse(text: &str, path: Option<PathBuf>) -> Registry {
        let mut reg = Registry { path, ..Registry::default() };
        let doc: toml::Table = match text.parse() {
            Ok(d) => d,
            Err(e) => {
                let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1).unwrap_or(1);
                reg.malformed.push(Malformed {
                    line: u32::try_from(line).unwrap_or(0),
                    problem: format!("not valid TOML: {}", e.message()),
                });
                return reg;
            }
        };
        let lines = header_lines(text);
        for key in doc.keys() {
            if key != "exception" {
                reg.malformed.push(Malformed {
                    line: 1,
                    problem: format!("unexpected top-level key {key:?} (only [[exception]] entries)"),
                });
            }
        }
        let Some(entries) = doc.get("exception") else {
            return reg;
        };
        let Some(entries) = entries.as_array() else {
            reg.malformed
                .push(Malformed { line: 1, problem: "`exception` must be an array of tables ([[exception]])".into() });
            return reg;
        };
        for (i, entry) in entries.iter().enumerate().take(MAX_EXCEPTIONS) {
            let line = lines.get(i).copied().unwrap_or(0);
            let Some(table) = entry.as_table() else {
                reg.malformed.push(Malformed { line, problem: "entry is not a table".into() });
                continue;
            };
            let mut problems = Vec::new();
            let mut field = |name: &str| -> String {
                match table.get(name) {
                    Some(toml::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                    Some(toml::Value::Datetime(d)) if name == "expires" => d.to_string(),
                    Some(toml::Value::String(_)) => {
                        problems.push(format!("`{name}` is empty"));
                        String::new()
                    }
                    Some(_) => {
                        problems.push(format!("`{name}` must be a string"));
                        String::new()
                    }
                    None => {
                        problems.push(format!("`{name}` is missing"));
                        String::new()
                    }
                }
            };
            let exc = Exception {
                rule: field("rule"),
                resource: field("resource"),
                member: field("member"),
                justification: field("justification"),
                approver: field("approver"),
                ticket: field("ticket"),
                expires: field("expires"),
                line,
            };
            for k in table.keys() {
                if !FIELDS.contains(&k.as_str()) {
                    problems.push(format!("unknown field `{k}`"));
                }
            }
            if !exc.expires.is_empty() && (exc.expires.len() != 10 || Date::parse(&exc.expires).is_none()) {
                problems.push(format!("`expires` {:?} is not a YYYY-MM-DD date", exc.expires));
            }
            if problems.is_empty() {
                reg.exceptions.push(exc);
            } else {
                reg.malformed.push(Malformed { line, problem: problems.join("; ") });
            }
        }
        reg
    }

    pub fn load(path: &Path) -> anyhow::Result<Registry> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read exceptions registry {}: {e}", path.display()))?;
        Ok(Registry::parse(&text, Some(path.to_path_buf())))
    }

    /// `infra/policy/exceptions.toml` next to the analyzed folder: walks up from it looking
    /// for `policy/exceptions.toml` or `infra/policy/exceptions.toml` (bounded).
    pub fn discover(start: &Path) -> Option<PathBuf> {
        let mut dir = std::fs::canonicalize(start).ok()?;
        if dir.is_file() {
            dir.pop();
        }
        for _ in 0..8 {
            for rel in ["policy/exceptions.toml", "infra/policy/exceptions.toml"] {
                let candidate = dir.join(rel);
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
            if dir.join(".git").exists() || !dir.pop() {
                break;
            }
        }
        None
    }
}

impl Exception {
    pub fn expires_date(&self) -> Option<Date> {
        Date::parse(&self.expires)
    }

    /// Covers a finding: same rule, resource equal to the finding's resource or its resource
    /// address, member equal (or `*` for findings about a resource, not a member).
    pub fn covers(&self, rule: &str, resource: &str, address: &str, member: &str) -> bool {
        self.rule == rule
            && (self.resource == resource || (!address.is_empty() && self.resource == address))
            && (self.member == member || self.member == "*")
    }
}

/// Escapes a TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Records an exception: validates it, refuses duplicates and past expiry, and appends it to
/// the registry (keeping the file's existing text and comments as they are).
pub fn add(path: &Path, exc: &Exception, today: Date) -> anyhow::Result<()> {
    for (name, value) in [
        ("rule", &exc.rule),
        ("resource", &exc.resource),
        ("member", &exc.member),
        ("justification", &exc.justification),
        ("approver", &exc.approver),
        ("ticket", &exc.ticket),
        ("expires", &exc.expires),
    ] {
        anyhow::ensure!(!value.trim().is_empty(), "--{name} must not be empty");
    }
    let expires = Date::parse(&exc.expires)
        .filter(|_| exc.expires.len() == 10)
        .ok_or_else(|| anyhow::anyhow!("--expires {:?} is not a YYYY-MM-DD date", exc.expires))?;
    anyhow::ensure!(
        expires >= today,
        "--expires {expires} is before today ({today}): an exception must expire in the future"
    );
    let existing = if path.exists() {
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
    } else {
        String::new()
    };
    let reg = Registry::parse(&existing, Some(path.to_path_buf()));
    if let Some(m) = reg.malformed.first() {
        anyhow::bail!(
            "{}:{}: the registry has a malformed entry ({}); fix it before adding",
            path.display(),
            m.line,
            m.problem
        );
    }
    anyhow::ensure!(
        !reg.exceptions.iter().any(|e| e.rule == exc.rule && e.resource == exc.resource && e.member == exc.member),
        "an exception for rule {} on {} / {} is already recorded",
        exc.rule,
        exc.resource,
        exc.member
    );
    let mut text = existing;
    if text.is_empty() {
        text.push_str("# Policy exceptions for `fintrail iam check`. Record with `fintrail iam exception add`.\n");
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("\n[[exception]]\n");
    for (name, value) in [
        ("rule", &exc.rule),
        ("resource", &exc.resource),
        ("member", &exc.member),
        ("justification", &exc.justification),
        ("approver", &exc.approver),
        ("ticket", &exc.ticket),
        ("expires", &exc.expires),
    ] {
        text.push_str(&format!("{name} = {}\n", quote(value.trim())));
    }
    // Re-parse what we are about to write: never leave a registry we cannot read back.
    let check = Registry::parse(&text, None);
    anyhow::ensure!(
        check.malformed.is_empty() && check.exceptions.len() == reg.exceptions.len() + 1,
        "internal error: the new registry would not read back"
    );
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = r#"
[[exception]]
rule = "IAM003"
resource = "projects/p"
member = "serviceAccount:ci@p.iam.gserviceaccount.com"
justification = "plan pipeline"
approver = "security@example.com"
ticket = "SEC-1"
expires = "2030-01-01"

[[exception]]
rule = "IAM001"
resource = "projects/p"
justification = "x"
approver = "y"
ticket = "z"
expires = "2030-02-30"
"#;

    #[test]
    fn parses_valid_and_flags_malformed_with_lines() {
        let reg = Registry::parse(GOOD, None);
        assert_eq!(reg.exceptions.len(), 1);
        assert_eq!(reg.exceptions[0].line, 2);
        assert_eq!(reg.malformed.len(), 1);
        assert_eq!(reg.malformed[0].line, 11);
        assert!(reg.malformed[0].problem.contains("`member` is missing"));
        assert!(reg.malformed[0].problem.contains("not a YYYY-MM-DD"));
    }

    #[test]
    fn add_roundtrips_and_refuses_bad_input() {
        let dir = std::env::temp_dir().join(format!("fintrail-iam-exc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("policy/exceptions.toml");
        let today = Date::parse("2026-01-01").expect("date");
        let mut exc = Exception {
            rule: "IAM003".into(),
            resource: "projects/p".into(),
            member: "user:a@example.com".into(),
            justification: "needs \"quotes\" \\ and more".into(),
            approver: "b@example.com".into(),
            ticket: "SEC-2".into(),
            expires: "2026-06-30".into(),
            line: 0,
        };
        add(&path, &exc, today).expect("adds");
        let reg = Registry::load(&path).expect("loads");
        assert_eq!(reg.exceptions.len(), 1);
        assert_eq!(reg.exceptions[0].justification, exc.justification);
        assert!(add(&path, &exc, today).is_err(), "duplicate refused");
        exc.member = "user:c@example.com".into();
        exc.expires = "2025-12-31".into();
        assert!(add(&path, &exc, today).is_err(), "past expiry refused");
        exc.expires = "2026-1-1".into();
        assert!(add(&path, &exc, today).is_err(), "bad date refused");
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        #[test]
        fn any_text_field_roundtrips(s in "\\PC{1,40}") {
            prop_assume!(!s.trim().is_empty());
            let text = format!("[[exception]]\nrule = {}\nresource = \"r\"\nmember = \"m\"\njustification = \"j\"\napprover = \"a\"\nticket = \"t\"\nexpires = \"2030-01-01\"\n", quote(&s));
            let reg = Registry::parse(&text, None);
            prop_assert_eq!(reg.exceptions.len(), 1);
            prop_assert_eq!(&reg.exceptions[0].rule, s.trim());
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = Registry::parse(&s, None);
        }
    }
}
