//! The syntax corpus: every `.tf` file under tests/syntax is valid HCL that Terraform accepts
//! (shapes met in public roots: cloud-foundation-fabric, terraform-example-foundation). Each
//! must parse without a diagnostic, and evaluating a root made of it must not fail either.

use fintrail_iam::source::{parse_file_into, ModuleSrc};
use std::path::Path;

/// The corpus must not shrink silently: a deleted file would hide a parser regression.
const MIN_CORPUS_FILES: usize = 4;

#[test]
fn every_corpus_file_parses_without_a_diagnostic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/syntax");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("syntax corpus folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    assert!(files.len() >= MIN_CORPUS_FILES, "syntax corpus shrank: {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read corpus file");
        let mut src = ModuleSrc::default();
        parse_file_into(&mut src, &path.display().to_string(), &text);
        if !src.diagnostics.is_empty() {
            failures.push(format!("{}: {:?}", path.display(), src.diagnostics));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// terraform-example-foundation links `*.auto.tfvars` at setup; a checkout without the
/// target must still be analyzed: a warning, defaults apply, findings are reported.
#[cfg(unix)]
#[test]
fn a_dangling_auto_tfvars_symlink_is_a_warning_and_the_analysis_goes_on() {
    use fintrail_iam::analyze::{analyze, Options};
    use fintrail_iam::roles::RoleCatalog;
    let dir = std::env::temp_dir().join(format!("fintrail-iam-dangling-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp root");
    std::fs::write(
        dir.join("main.tf"),
        "variable \"who\" {\n  default = \"user:mallory@acme.com\"\n}\n\
         resource \"google_project_iam_member\" \"m\" {\n  project = \"p1\"\n  role = \"roles/owner\"\n  member = var.who\n}\n",
    )
    .expect("write main.tf");
    std::os::unix::fs::symlink("../shared/missing.auto.tfvars", dir.join("common.auto.tfvars")).expect("symlink");
    let opts = Options { builtin_roles: true, no_exceptions: true, ..Options::default() };
    let report = analyze(&dir, &opts, &RoleCatalog::builtin()).expect("analyzes");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].message.contains("dangling symlink"), "{:?}", report.warnings);
    assert!(report.findings.iter().any(|f| f.rule == "IAM001" && f.member == "user:mallory@acme.com"));
    assert_eq!(report.exit_code(), 1, "findings decide the exit code, not the warning");
}
