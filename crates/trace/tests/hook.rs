//! The commit-msg hook, installed into real repositories and run by real `git commit`.

mod common;

use common::{trace, TempRepo};

const BIN: &str = env!("CARGO_BIN_EXE_fintrail-trace");

#[test]
fn hook_refuses_messages_without_a_task_and_accepts_others() {
    let r = TempRepo::new("hook");
    let (code, out, err) = trace(&r.dir, &["install-hook", "--binary", BIN]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("installed"), "{out}");
    let hook = std::fs::read_to_string(r.dir.join(".git/hooks/commit-msg")).unwrap();
    assert!(hook.contains("check-message") && hook.contains(BIN), "{hook}");

    r.write("a.txt", "a\n");
    r.git(["add", "-A"]);
    let refused = r.git_output(["commit", "-q", "-m", "No reference here"]);
    assert!(!refused.status.success(), "commit without a task must be refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("commit refused") && err.contains("Task: <id>"), "{err}");
    assert!(r.git_output(["rev-parse", "--verify", "-q", "HEAD"]).stdout.is_empty(), "nothing committed");

    let ok = r.git_output(["commit", "-q", "-m", "Add a\n\nTask: CU-1"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    r.write("b.txt", "b\n");
    r.git(["add", "-A"]);
    assert!(r.git_output(["commit", "-q", "-m", "#12 fix b"]).status.success());

    // Sensitive staged paths without an approver: accepted, with a warning.
    r.write("infra/x.tf", "x\n");
    r.git(["add", "-A"]);
    let warned = r.git_output(["commit", "-q", "-m", "Infra\n\nTask: CU-2"]);
    assert!(warned.status.success());
    assert!(
        String::from_utf8_lossy(&warned.stderr).contains("Reviewed-by"),
        "{}",
        String::from_utf8_lossy(&warned.stderr)
    );

    // A clean merge with git's default message is not refused by the hook.
    r.git(["checkout", "-q", "-b", "side"]);
    r.write("s.txt", "s\n");
    r.git(["add", "-A"]);
    r.git(["commit", "-q", "-m", "Side\n\nTask: CU-3"]);
    r.git(["checkout", "-q", "main"]);
    r.write("m.txt", "m\n");
    r.git(["add", "-A"]);
    r.git(["commit", "-q", "-m", "Main\n\nTask: CU-4"]);
    // `git merge`/`git revert --no-edit` may skip the hook; concluding them with `git commit`
    // always runs it, with MERGE_HEAD / REVERT_HEAD present.
    r.git(["merge", "-q", "--no-ff", "--no-commit", "side"]);
    let merged = r.git_output(["commit", "-q", "--no-edit"]);
    assert!(merged.status.success(), "a clean merge is exempt: {}", String::from_utf8_lossy(&merged.stderr));

    // A revert inherits the reverted commit's task through the hook too.
    let side = r.git(["rev-parse", "HEAD^2"]);
    r.git(["revert", "--no-commit", &side]);
    let msg = format!("Revert \"Side\"\n\nThis reverts commit {side}.\n");
    let reverted = r.git_output(["commit", "-q", "-m", &msg]);
    assert!(reverted.status.success(), "{}", String::from_utf8_lossy(&reverted.stderr));
    r.write("u.txt", "u\n");
    r.git(["add", "-A"]);
    r.git(["commit", "-q", "--no-verify", "-m", "untraced"]);
    let untraced = r.head();
    r.git(["revert", "--no-commit", &untraced]);
    let msg = format!("Revert \"untraced\"\n\nThis reverts commit {untraced}.\n");
    let refused = r.git_output(["commit", "-q", "-m", &msg]);
    assert!(!refused.status.success(), "reverting an untraced commit inherits nothing");
    r.git(["revert", "--abort"]);

    // And everything the hook let through passes `check`, except the --no-verify commit.
    let (code, out, _) = trace(&r.dir, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("untraced") && out.contains("infra/x.tf"), "{out}");
}

#[test]
fn existing_different_hook_is_not_overwritten_without_force() {
    let r = TempRepo::new("hook-existing");
    let path = r.dir.join(".git/hooks/commit-msg");
    std::fs::write(&path, "#!/bin/sh\necho mine\n").unwrap();
    let (code, _, err) = trace(&r.dir, &["install-hook", "--binary", BIN]);
    assert_eq!(code, 1);
    assert!(err.contains("not overwriting") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "#!/bin/sh\necho mine\n");

    let (code, out, _) = trace(&r.dir, &["install-hook", "--binary", BIN, "--force"]);
    assert_eq!(code, 0);
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(std::fs::read_to_string(path.with_extension("bak")).unwrap(), "#!/bin/sh\necho mine\n");
    assert!(std::fs::read_to_string(&path).unwrap().contains("check-message"));

    // Installing again is a no-op, not a refusal.
    let (code, out, _) = trace(&r.dir, &["install-hook", "--binary", BIN]);
    assert_eq!(code, 0);
    assert!(out.contains("already installed"), "{out}");
}

#[test]
fn check_message_exit_codes() {
    let r = TempRepo::new("check-message");
    let f = r.dir.join("MSG");
    std::fs::write(&f, "Subject\n\nTask: CU-1\n# Please enter the commit message\n").unwrap();
    assert_eq!(trace(&r.dir, &["check-message", f.to_str().unwrap()]).0, 0);
    std::fs::write(&f, "Subject\n# Task: CU-1 only in a comment\n").unwrap();
    assert_eq!(trace(&r.dir, &["check-message", f.to_str().unwrap()]).0, 1);
    assert_eq!(trace(&r.dir, &["check-message", "/no/such/file"]).0, 2);
}
