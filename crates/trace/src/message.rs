//! Commit messages: trailers, task references, approvers, reverts.
//!
//! One function, [`references`], decides what a message references; `check`, `report`
//! and the commit-msg hook all go through it, so they can never disagree.

use crate::config::Config;

/// A `Key: value` line of the trailer block (the last paragraph of the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub key: String,
    pub value: String,
}

/// What a message says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Task ids, in order of first appearance, without duplicates.
    pub tasks: Vec<String>,
    /// Approver trailer values (`Reviewed-by: Ann <ann@x>`), as written.
    pub approvers: Vec<String>,
    /// The full or abbreviated sha named by git's `This reverts commit <sha>.` line.
    pub reverts: Option<String>,
}

/// The most task ids we keep per message: a message listing more is not a trace, it is noise.
pub const MAX_TASKS_PER_MESSAGE: usize = 64;

/// Whether `key` can be a trailer key: ASCII letters, digits and `-`, starting alphanumeric.
pub fn is_trailer_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
        && key.len() <= 64
}

fn parse_trailer_line(line: &str) -> Option<Trailer> {
    let (key, value) = line.split_once(':')?;
    if !is_trailer_key(key) {
        return None;
    }
    Some(Trailer { key: key.to_owned(), value: value.trim().to_owned() })
}

/// Parses the trailer block: the last paragraph, if it is not the subject paragraph and
/// its lines are trailers (continuation lines, starting with whitespace, are folded into
/// the previous trailer; git's `(cherry picked from commit …)` lines are allowed).
/// Like git, a block with some non-trailer lines still counts when at least one line is a
/// trailer with a key we know (`known`) and at least a quarter of the lines are trailers.
pub fn trailers(message: &str, known: &[String]) -> Vec<Trailer> {
    let lines: Vec<&str> = message.lines().map(str::trim_end).collect();
    let mut end = lines.len();
    while end > 0 && lines[end - 1].is_empty() {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && !lines[start - 1].is_empty() {
        start -= 1;
    }
    // The subject paragraph never holds trailers.
    if lines[..start].iter().all(|l| l.is_empty()) {
        return Vec::new();
    }
    let mut found: Vec<Trailer> = Vec::new();
    let (mut trailer_lines, mut other_lines, mut known_seen) = (0usize, 0usize, false);
    for line in &lines[start..end] {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = found.last_mut() {
                last.value.push(' ');
                last.value.push_str(line.trim());
            }
            continue;
        }
        if line.starts_with("(cherry picked from commit ") {
            trailer_lines += 1;
            continue;
        }
        match parse_trailer_line(line) {
            Some(t) => {
                known_seen |= known.iter().any(|k| k.eq_ignore_ascii_case(&t.key));
                trailer_lines += 1;
                found.push(t);
            }
            None => other_lines += 1,
        }
    }
    let total = trailer_lines + other_lines;
    let is_block = total > 0 && (other_lines == 0 || (known_seen && trailer_lines * 4 >= total));
    if is_block {
        found
    } else {
        Vec::new()
    }
}

/// Task ids, approvers and the reverted commit named by `message`.
pub fn references(message: &str, config: &Config) -> References {
    let known: Vec<String> = config.task_trailers.iter().chain(&config.approver_trailers).cloned().collect();
    let block = trailers(message, &known);
    let mut refs = References::default();
    let push_task = |id: &str, refs: &mut References| {
        if !id.is_empty() && refs.tasks.len() < MAX_TASKS_PER_MESSAGE && !refs.tasks.iter().any(|t| t == id) {
            refs.tasks.push(id.to_owned());
        }
    };
    for t in &block {
        if config.task_trailers.iter().any(|k| k.eq_ignore_ascii_case(&t.key)) {
            // `Task: CU-1, CU-2` and `Task: CU-1 CU-2` both name two tasks.
            for id in t.value.split([',', ' ', '\t']).map(str::trim) {
                push_task(id, &mut refs);
            }
        }
        if config.approver_trailers.iter().any(|k| k.eq_ignore_ascii_case(&t.key)) && !t.value.is_empty() {
            refs.approvers.push(t.value.clone());
        }
    }
    for re in &config.task_patterns {
        for caps in re.captures_iter(message) {
            if let Some(m) = caps.get(1).or_else(|| caps.get(0)) {
                push_task(m.as_str().trim(), &mut refs);
            }
        }
    }
    refs.reverts = reverted_commit(message);
    refs
}

/// The sha in git's revert message line `This reverts commit <sha>.` (or `<sha>, reversing`).
pub fn reverted_commit(message: &str) -> Option<String> {
    const MARK: &str = "This reverts commit ";
    let at = message.find(MARK)? + MARK.len();
    let sha: String = message[at..].chars().take_while(|c| c.is_ascii_hexdigit()).take(64).collect();
    (sha.len() >= 7).then_some(sha)
}

/// The email inside `Name <email>`, lower-cased, if any.
pub fn email_of(value: &str) -> Option<String> {
    let open = value.rfind('<')?;
    let close = value[open..].find('>')? + open;
    let email = value[open + 1..close].trim();
    (!email.is_empty()).then(|| email.to_ascii_lowercase())
}

/// The message as git will store it from a commit-msg hook's file: drop everything from
/// the scissors line on, and git's own comment lines (`#` followed by a space, a tab or
/// nothing). A line such as `#123 fix` is kept: it is a reference, not a comment.
pub fn strip_hook_comments(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for line in raw.lines() {
        if line.starts_with("# ") && line.contains(">8") && line.contains("---") {
            break;
        }
        let is_comment = line == "#" || line.starts_with("# ") || line.starts_with("#\t");
        if !is_comment {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn task_trailer_and_issue_references() {
        let r = references("Fix rounding\n\nSee #12 and #7.\n\nTask: CU-86b1x2\nReviewed-by: Ann <ann@x.io>\n", &cfg());
        assert_eq!(r.tasks, vec!["CU-86b1x2", "#12", "#7"]);
        assert_eq!(r.approvers, vec!["Ann <ann@x.io>"]);
        assert_eq!(r.reverts, None);
    }

    #[test]
    fn subject_only_trailer_lookalike_is_not_a_trailer() {
        let r = references("Task: CU-1\n", &cfg());
        assert!(r.tasks.is_empty(), "{r:?}");
    }

    #[test]
    fn trailer_block_must_be_last_paragraph() {
        let r = references("Subject\n\nTask: CU-1\n\nMore prose after it.\n", &cfg());
        assert!(r.tasks.is_empty(), "{r:?}");
    }

    #[test]
    fn mixed_block_counts_when_known_key_present() {
        let r = references("Subject\n\nTask: CU-9\nsome note\nSigned-off-by: A <a@x>\n", &cfg());
        assert_eq!(r.tasks, vec!["CU-9"]);
    }

    #[test]
    fn html_entities_urls_and_words_are_not_issue_refs() {
        let r = references("Use &#123; and http://x/#12 and abc#5\n", &cfg());
        assert!(r.tasks.is_empty(), "{r:?}");
        let r = references("(#5) done\n", &cfg());
        assert_eq!(r.tasks, vec!["#5"]);
    }

    #[test]
    fn revert_line_is_found() {
        let sha = "0123456789abcdef0123456789abcdef01234567"; // pragma: allowlist secret (a commit sha)
        let msg = format!("Revert \"x\"\n\nThis reverts commit {sha}.\n");
        assert_eq!(references(&msg, &cfg()).reverts.as_deref(), Some(sha));
        assert_eq!(reverted_commit("This reverts commit abc."), None);
    }

    #[test]
    fn hook_comments_are_stripped_but_references_kept() {
        let raw = "Fix\n\n#123 was the cause\n# Please enter the commit message\n#\n# ------------------------ >8 ------------------------\nTask: CU-1\n";
        let s = strip_hook_comments(raw);
        assert_eq!(s, "Fix\n\n#123 was the cause\n");
    }

    #[test]
    fn email_extraction() {
        assert_eq!(email_of("Ann <Ann@X.io>").as_deref(), Some("ann@x.io"));
        assert_eq!(email_of("Ann"), None);
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        /// Arbitrary messages never panic and never yield empty or duplicate ids.
        #[test]
        fn arbitrary_messages_are_handled(msg in "\\PC{0,200}(\n\\PC{0,40}){0,6}") {
            let r = references(&msg, &cfg());
            prop_assert!(r.tasks.iter().all(|t| !t.is_empty()));
            let mut dedup = r.tasks.clone();
            dedup.sort();
            dedup.dedup();
            prop_assert_eq!(dedup.len(), r.tasks.len());
        }

        /// A well-formed trailer is always found, whatever the subject and body.
        #[test]
        fn task_trailer_is_found(subject in "[A-Za-z][A-Za-z ]{0,29}", id in "[A-Z]{2}-[a-z0-9]{1,8}") {
            let msg = format!("{subject}\n\nTask: {id}\n");
            prop_assert_eq!(references(&msg, &cfg()).tasks, vec![id]);
        }
    }
}
