//! `check` and `report` on real temporary git repositories, through the real program.

mod common;

use common::{isolate, temp_dir, trace, TempRepo};
use serde_json::Value;
use std::process::Command;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn commits_with_and_without_references() {
    let r = TempRepo::new("refs");
    r.commit("a.txt", "Add a\n\nTask: CU-86b1x2");
    let base = r.head();
    r.commit("b.txt", "Fix b (#123)");
    let (code, out, _) = trace(&r.dir, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all 2 commit(s) traced"), "{out}");

    let bad = r.commit("c.txt", "Quick fix without a reference");
    let (code, out, _) = trace(&r.dir, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{} Quick fix without a reference: no task reference", r.short(&bad))), "{out}");
    assert!(out.contains("1 of 3 commit(s) fail"), "{out}");

    // A range that excludes the bad commit passes; one that includes it fails.
    let two = format!("{base}~0..{}", r.git(["rev-parse", "HEAD~1"]));
    assert_eq!(trace(&r.dir, &["check", &two]).0, 0);
    let (code, out, _) = trace(&r.dir, &["check", &format!("{base}..HEAD"), "--format", "json"]);
    assert_eq!(code, 1);
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["checked"], 2);
    assert_eq!(v["problems"][0]["sha"], bad.as_str());
}

#[test]
fn sensitive_paths_need_an_approver_other_than_the_author() {
    let r = TempRepo::new("sensitive");
    r.commit("README.md", "Start\n\nTask: CU-1");
    let start = r.head();
    let no_approver = r.commit("infra/modules/iam/main.tf", "Grant storage admin\n\nTask: CU-2");
    let (code, out, _) = trace(&r.dir, &["check", &format!("{start}..HEAD")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&r.short(&no_approver)) && out.contains("Grant storage admin"), "{out}");
    assert!(out.contains("infra/modules/iam/main.tf") && out.contains("Reviewed-by:"), "{out}");

    let mid = r.head();
    r.commit(
        "crates/db/migrations/0002_roles.sql",
        "Add role table\n\nTask: CU-3\nReviewed-by: Rita Reviewer <rita@example.com>",
    );
    r.commit("crates/domain/src/permission.rs", "New permission\n\nTask: CU-4\nApproved-by: Otto <otto@example.com>");
    assert_eq!(trace(&r.dir, &["check", &format!("{mid}..HEAD")]).0, 0);

    // Self-approval does not count.
    let before = r.head();
    let selfie = r.commit("infra/net.tf", "Open port\n\nTask: CU-5\nReviewed-by: Ann Author <ann@example.com>");
    let (code, out, _) = trace(&r.dir, &["check", &format!("{before}..HEAD")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&r.short(&selfie)) && out.contains("approval by the author does not count"), "{out}");

    // A flag can narrow what is sensitive.
    assert_eq!(trace(&r.dir, &["check", &format!("{before}..HEAD"), "--sensitive", "k8s/**"]).0, 0);
}

#[test]
fn merges_clean_are_exempt_conflict_resolutions_are_checked() {
    let r = TempRepo::new("merges");
    r.commit("a.txt", "Base\n\nTask: CU-1");
    let base = r.head();
    r.git(["checkout", "-q", "-b", "feature"]);
    r.commit("f.txt", "Feature\n\nTask: CU-2");
    r.git(["checkout", "-q", "main"]);
    r.commit("m.txt", "Main work\n\nTask: CU-3");
    r.git(["merge", "-q", "--no-ff", "--no-edit", "feature"]);
    let (code, out, _) = trace(&r.dir, &["check", &format!("{base}..HEAD")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 clean merge(s) exempt"), "{out}");
    // --strict-merges: the default merge message has no reference.
    let (code, out, _) = trace(&r.dir, &["check", &format!("{base}..HEAD"), "--strict-merges"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Merge branch 'feature'"), "{out}");

    // A conflicted merge whose resolution touches infra: checked on its own changes.
    let before = r.head();
    r.git(["checkout", "-q", "-b", "side"]);
    r.commit("infra/x.tf", "Side infra\n\nTask: CU-4\nReviewed-by: Rita <rita@example.com>");
    r.git(["checkout", "-q", "main"]);
    r.write("infra/x.tf", "main version\n");
    r.commit_all("Main infra\n\nTask: CU-5\nReviewed-by: Rita <rita@example.com>");
    let out = r.git_output(["merge", "-q", "--no-edit", "side"]);
    assert!(!out.status.success(), "expected a conflict");
    r.write("infra/x.tf", "resolved\n");
    r.git(["add", "-A"]);
    r.git(["commit", "-q", "--no-verify", "-m", "Merge side"]);
    let merge = r.head();
    let (code, out, _) = trace(&r.dir, &["check", &format!("{before}..HEAD")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{} Merge side: no task reference", r.short(&merge))), "{out}");
    assert!(out.contains("changes sensitive paths (infra/x.tf)"), "{out}");
}

#[test]
fn reverts_inherit_the_reverted_commits_task() {
    let r = TempRepo::new("reverts");
    r.commit("a.txt", "Base\n\nTask: CU-1");
    let traced = r.commit("b.txt", "Feature b\n\nTask: CU-77");
    let after_feature = r.head();
    r.git(["revert", "--no-edit", &traced]);
    let revert = r.head();
    // The reverted commit is outside the range: read from the clone.
    let (code, out, _) = trace(&r.dir, &["report", &format!("{after_feature}..HEAD"), "--format", "json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(v["commits"][0]["sha"], revert.as_str());
    assert_eq!(v["commits"][0]["tasks"][0], "CU-77");
    assert_eq!(v["commits"][0]["task_source"], "reverted");
    assert_eq!(trace(&r.dir, &["check", &format!("{after_feature}..HEAD")]).0, 0);

    // Reverting an untraced commit inherits nothing.
    let untraced = r.commit("c.txt", "No ref");
    let before = r.head();
    r.git(["revert", "--no-edit", &untraced]);
    let (code, out, _) = trace(&r.dir, &["check", &format!("{before}..HEAD")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Revert \"No ref\"") && out.contains("it reverts"), "{out}");
}

#[test]
fn renames_count_both_paths() {
    let r = TempRepo::new("renames");
    r.write("docs/plan.tf", "resource \"x\" \"y\" {}\n# a long enough body for rename detection\n");
    r.commit_all("Docs\n\nTask: CU-1");
    let start = r.head();
    std::fs::create_dir_all(r.dir.join("infra")).unwrap();
    r.git(["mv", "docs/plan.tf", "infra/plan.tf"]);
    let moved = r.commit_all("Move plan into infra\n\nTask: CU-2");
    let (code, out, _) = trace(&r.dir, &["check", &format!("{start}..HEAD")]);
    assert_eq!(code, 1, "moving a file into infra is a sensitive change: {out}");
    assert!(out.contains(&r.short(&moved)), "{out}");
    let (_, out, _) = trace(&r.dir, &["report", &format!("{start}..HEAD"), "--format", "json"]);
    let v = json(&out);
    let change = &v["commits"][0]["changes"][0];
    assert!(change["status"].as_str().unwrap().starts_with('R'), "{change}");
    assert_eq!(change["from"], "docs/plan.tf");
    assert_eq!(change["path"], "infra/plan.tf");
    let paths: Vec<&str> = v["paths"].as_array().unwrap().iter().map(|p| p["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["docs/plan.tf", "infra/plan.tf"]);
}

#[test]
fn non_utf8_paths_are_handled_as_bytes() {
    use std::os::unix::ffi::OsStrExt;
    let r = TempRepo::new("bytes");
    r.commit("a.txt", "Base\n\nTask: CU-1");
    let start = r.head();
    let name = std::ffi::OsStr::from_bytes(b"infra/r\xe9gion\xff.tf");
    std::fs::create_dir_all(r.dir.join("infra")).unwrap();
    std::fs::write(r.dir.join(name), "x\n").unwrap();
    let c = r.commit_all("Latin-1 name\n\nTask: CU-9");
    let (code, out, _) = trace(&r.dir, &["check", &format!("{start}..HEAD")]);
    assert_eq!(code, 1, "a non-UTF-8 path under infra/ is still sensitive: {out}");
    assert!(out.contains(&r.short(&c)) && out.contains("infra/r\u{fffd}gion\u{fffd}.tf"), "{out}");
    let (code, out, _) = trace(&r.dir, &["report", &format!("{start}..HEAD"), "--format", "json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["commits"][0]["changes"][0]["path"], "infra/r\u{fffd}gion\u{fffd}.tf");
}

#[test]
fn empty_range_unborn_repository_and_bad_input() {
    let r = TempRepo::new("empty");
    // Unborn HEAD, default range: nothing to check.
    let (code, out, _) = trace(&r.dir, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no commits yet"), "{out}");
    r.commit("a.txt", "Base\n\nTask: CU-1");
    let (code, out, _) = trace(&r.dir, &["check", "HEAD..HEAD"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all 0 commit(s) traced"), "{out}");
    let (code, out, _) = trace(&r.dir, &["report", "HEAD..HEAD"]);
    assert_eq!(code, 0);
    assert!(out.contains("the range holds no commits"), "{out}");
    // Usage errors: exit 2 with a reason.
    let (code, _, err) = trace(&r.dir, &["check", "no-such-branch..HEAD"]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-branch"), "{err}");
    let (code, _, err) = trace(&r.dir, &["check", "--bogus"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = trace(&r.dir, &["check", "--", "--all"]);
    assert_eq!(code, 2, "{err}");
    let outside = temp_dir("not-a-repo");
    let (code, _, err) = trace(&outside, &["check"]);
    assert_eq!(code, 2);
    assert!(err.contains("not inside a git repository"), "{err}");
    let _ = std::fs::remove_dir_all(outside);
    // A broken configuration file is a usage error, not a panic.
    r.write("trace.toml", "[sensitive]\npaths = [\"/etc/**\"]\n");
    let (code, _, err) = trace(&r.dir, &["check"]);
    assert_eq!(code, 2);
    assert!(err.contains("absolute"), "{err}");
}

#[test]
fn configuration_file_changes_the_rules() {
    let r = TempRepo::new("config");
    r.write(
        "trace.toml",
        "[references]\ntrailers = [\"Ticket\"]\npatterns = ['\\b(FIN-[0-9]+)\\b']\n[sensitive]\npaths = [\"deploy/**\"]\n",
    );
    r.commit_all("Config\n\nTicket: OPS-1");
    r.commit("src/x.rs", "Implements FIN-42");
    r.commit("infra/y.tf", "Infra is not sensitive here\n\nTicket: OPS-2");
    let (code, out, _) = trace(&r.dir, &["check"]);
    assert_eq!(code, 0, "{out}");
    r.commit("src/z.rs", "Old style\n\nTask: CU-1");
    let (code, out, _) = trace(&r.dir, &["check"]);
    assert_eq!(code, 1, "`Task:` is not configured here: {out}");
    assert!(out.contains("`Ticket: <id>`") && out.contains("FIN-"), "{out}");
    // Flags replace the file.
    assert_eq!(trace(&r.dir, &["check", "--task-trailer", "Task", "--task-trailer", "Ticket"]).0, 0);
}

#[test]
fn shallow_clone_checks_messages_and_warns_at_the_boundary() {
    let r = TempRepo::new("shallow-src");
    r.commit("a.txt", "One\n\nTask: CU-1");
    r.commit("b.txt", "Two\n\nTask: CU-2");
    r.commit("infra/c.tf", "Three\n\nTask: CU-3\nReviewed-by: Rita <rita@example.com>");
    r.commit("d.txt", "Four\n\nTask: CU-4");
    let dest = temp_dir("shallow-clone");
    let mut cmd = Command::new("git");
    let url = format!("file://{}", r.dir.display());
    let st = isolate(&mut cmd).args(["clone", "-q", "--depth", "2", &url]).arg(dest.join("c")).status().unwrap();
    assert!(st.success());
    let clone = dest.join("c");
    let (code, out, _) = trace(&clone, &["check"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("all 2 commit(s) traced"), "{out}");
    assert!(out.contains("warning") && out.contains("Three") && out.contains("shallow"), "{out}");
    // The boundary's paths are unknown: not reported as the whole tree.
    let (_, out, _) = trace(&clone, &["report", "--format", "json"]);
    let v = json(&out);
    assert_eq!(v["commits"][1]["shallow_boundary"], true);
    assert_eq!(v["commits"][1]["changes"].as_array().unwrap().len(), 0);
    // A range reaching past the boundary cannot be read: exit 2, git's reason shown.
    let (code, _, err) = trace(&clone, &["check", "HEAD~3..HEAD"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HEAD~3"), "{err}");
    let _ = std::fs::remove_dir_all(dest);
}

#[test]
fn report_maps_tasks_to_commits_to_paths_and_back() {
    let r = TempRepo::new("report");
    let a = r.commit("src/a.rs", "A\n\nTask: CU-1");
    let b = r.commit("src/a.rs", "A again, see #7\n\nTask: CU-1");
    let c = r.commit("infra/main.tf", "Infra\n\nTask: CU-2\nReviewed-by: Rita <rita@example.com>");
    let (code, out, _) = trace(&r.dir, &["report", "--format", "json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    let tasks = v["tasks"].as_array().unwrap();
    let cu1 = tasks.iter().find(|t| t["task"] == "CU-1").unwrap();
    assert_eq!(cu1["commits"], serde_json::json!([b, a]));
    assert_eq!(cu1["paths"], serde_json::json!(["src/a.rs"]));
    let a_rs = v["paths"].as_array().unwrap().iter().find(|p| p["path"] == "src/a.rs").unwrap();
    assert_eq!(a_rs["tasks"], serde_json::json!(["#7", "CU-1"]));

    let (_, text, _) = trace(&r.dir, &["report"]);
    assert!(text.contains("CU-2") && text.contains("infra/main.tf") && text.contains("[sensitive]"), "{text}");
    let (_, md, _) = trace(&r.dir, &["report", "--format", "markdown"]);
    assert!(md.contains("| task | commits | paths |") && md.contains("#### Sensitive changes"), "{md}");

    // Audit link: one JSON Lines event per sensitive commit.
    let (code, audit, _) = trace(&r.dir, &["report", "--audit"]);
    assert_eq!(code, 0);
    let lines: Vec<Value> = audit.lines().map(json).collect();
    assert_eq!(lines.len(), 1, "{audit}");
    let e = &lines[0];
    assert_eq!(e["action"], "infra.change");
    assert_eq!(e["actor"], "ann@example.com");
    assert_eq!(e["occurred_at"], "2024-05-01T10:00:00Z");
    assert_eq!(e["request_id"], c.as_str());
    assert_eq!(e["after"]["commit"], c.as_str());
    assert_eq!(e["reason"], "CU-2");
    assert_eq!(e["subject"], serde_json::json!({"kind": "paths", "paths": ["infra/main.tf"]}));
    for key in ["on_behalf_of", "permission", "before"] {
        assert!(e[key].is_null(), "{key}");
    }
}
