//! End to end through `cli::run` (the entry point the `fintrail` binary calls), on fixtures
//! copied into temporary folders: exit codes, JSON/SARIF output, parse diagnostics,
//! exceptions (valid, expired, unused, malformed, recorded with `exception add`), drawing,
//! module shape, plan and exported-policy inputs, and the full role catalogue when present.

use clap::Parser;
use fintrail_iam::cli::{run, IamArgs};
use std::path::{Path, PathBuf};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    iam: IamArgs,
}

fn iam(args: &[&str]) -> u8 {
    let mut full = vec!["fintrail-iam"];
    full.extend_from_slice(args);
    // Reproducible: the built-in role subset unless a test passes --roles.
    if matches!(args.first(), Some(&"check") | Some(&"paths")) && !args.contains(&"--roles") {
        full.push("--builtin-roles");
    }
    let cli = Cli::try_parse_from(full).expect("arguments parse");
    run(cli.iam)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("fintrail-iam-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
    fn path(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

fn json_file(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("output written")).expect("json")
}

#[test]
fn check_exit_codes_and_formats() {
    let tmp = TempDir::new("formats");
    let pos = fixture("esc-project-token-creator").display().to_string();
    let neg = fixture("neg-unrelated-sa").display().to_string();
    let out = tmp.path("report.json");
    assert_eq!(iam(&["check", &pos, "--no-exceptions", "--today", "2026-01-15", "--format", "json", "-o", &out]), 1);
    let report = json_file(&out);
    let rules: Vec<&str> =
        report["findings"].as_array().expect("findings").iter().filter_map(|f| f["rule"].as_str()).collect();
    assert!(rules.contains(&"IAM003") && rules.contains(&"IAM010"), "{rules:?}");
    assert_eq!(report["summary"]["exit_code"], 1);
    assert!(report["roots"][0]["bindings"].as_array().is_some_and(|b| b.len() == 2));

    let sarif = tmp.path("report.sarif");
    assert_eq!(iam(&["check", &pos, "--no-exceptions", "--today", "2026-01-15", "--format", "sarif", "-o", &sarif]), 1);
    let doc = json_file(&sarif);
    assert_eq!(doc["version"], "2.1.0");
    let results = doc["runs"][0]["results"].as_array().expect("results");
    assert!(results.iter().any(|r| r["ruleId"] == "IAM003"
        && r["locations"][0]["physicalLocation"]["region"]["startLine"].as_u64().is_some_and(|l| l > 0)));

    assert_eq!(iam(&["check", &neg, "--no-exceptions", "--today", "2026-01-15", "-o", &tmp.path("neg.txt")]), 0);
    assert_eq!(iam(&["check", &tmp.path("does-not-exist"), "--no-exceptions"]), 2);
    assert_eq!(iam(&["check", &pos, "--today", "2026-13-01"]), 2, "bad --today is a usage error");
}

#[test]
fn unparseable_hcl_is_a_diagnostic_with_file_and_line() {
    let tmp = TempDir::new("badhcl");
    std::fs::write(
        tmp.0.join("main.tf"),
        "resource \"google_project_iam_member\" \"x\" {\n  role = \"roles/owner\"\n  member = \n}\n",
    )
    .expect("write");
    let out = tmp.path("r.json");
    assert_eq!(iam(&["check", &tmp.0.display().to_string(), "--no-exceptions", "--format", "json", "-o", &out]), 2);
    let report = json_file(&out);
    let d = &report["diagnostics"][0];
    assert!(d["loc"]["file"].as_str().is_some_and(|f| f.ends_with("main.tf")), "{d}");
    assert!(d["loc"]["line"].as_u64().is_some_and(|l| l >= 3), "{d}");
}

#[test]
fn exceptions_lifecycle() {
    let tmp = TempDir::new("exc");
    let root = tmp.0.join("envs/prod");
    copy_dir(&fixture("esc-project-token-creator"), &root);
    let root_s = root.display().to_string();
    let registry = tmp.path("policy/exceptions.toml");
    let mallory = "user:mallory@acme.com";
    let target = "serviceAccount:target@p1.iam.gserviceaccount.com";
    let add = |rule: &str, resource: &str, expires: &str| {
        iam(&[
            "exception",
            "add",
            "--rule",
            rule,
            "--resource",
            resource,
            "--member",
            mallory,
            "--justification",
            "break-glass for the migration",
            "--approver",
            "security@acme.com",
            "--ticket",
            "SEC-42",
            "--expires",
            expires,
            "--exceptions",
            &registry,
            "--today",
            "2026-01-15",
        ])
    };
    assert_eq!(add("IAM003", "projects/p1", "2026-03-31"), 0);
    assert_eq!(add("IAM010", target, "2026-03-31"), 0);
    assert_eq!(add("IAM010", target, "2026-03-31"), 2, "duplicate refused");
    assert_eq!(add("IAM999", target, "2026-03-31"), 2, "unknown rule refused");
    assert_eq!(add("IAM001", "projects/p1", "2025-01-01"), 2, "past expiry refused");

    // Found by walking up from the root (policy/exceptions.toml); both findings excepted.
    let out = tmp.path("r.json");
    assert_eq!(iam(&["check", &root_s, "--today", "2026-01-15", "--format", "json", "-o", &out]), 0);
    let report = json_file(&out);
    let excepted = report["findings"].as_array().expect("f").iter().filter(|f| f["excepted"].is_object()).count();
    assert_eq!(excepted, 2);

    // After expiry: the findings are back and the expired exceptions fail the check.
    assert_eq!(iam(&["check", &root_s, "--today", "2026-04-01", "--format", "json", "-o", &out]), 1);
    let rules: Vec<String> = json_file(&out)["findings"]
        .as_array()
        .expect("f")
        .iter()
        .map(|f| f["rule"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(rules.contains(&"EXC001".to_string()) && rules.contains(&"IAM003".to_string()), "{rules:?}");

    // Unused: an exception for something that is not found.
    assert_eq!(add("IAM006", "projects/p1", "2026-03-31"), 0);
    assert_eq!(iam(&["check", &root_s, "--today", "2026-01-15", "--format", "json", "-o", &out]), 1);
    let report = json_file(&out);
    let failing: Vec<&str> = report["findings"]
        .as_array()
        .expect("f")
        .iter()
        .filter(|f| !f["excepted"].is_object() && f["severity"] != "info")
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert_eq!(failing, vec!["EXC002"]);

    // Malformed: a field missing.
    let mut text = std::fs::read_to_string(&registry).expect("read");
    text.push_str("\n[[exception]]\nrule = \"IAM001\"\nresource = \"projects/p1\"\n");
    std::fs::write(&registry, text).expect("write");
    assert_eq!(
        iam(&["check", &root_s, "--today", "2026-01-15", "--exceptions", &registry, "--format", "json", "-o", &out]),
        1
    );
    assert!(std::fs::read_to_string(&out).expect("read").contains("EXC003"));
}

/// Checking one environment of a folder of environments: an exception recorded for a sibling
/// root is out of scope (not EXC002); checking the whole folder judges it, and a stale
/// exception about the analyzed root is still unused.
#[test]
fn exceptions_of_other_roots_are_out_of_scope_when_checking_one() {
    let tmp = TempDir::new("scope");
    copy_dir(&fixture("esc-token-creator"), &tmp.0.join("envs/prod"));
    copy_dir(&fixture("neg-unrelated-sa"), &tmp.0.join("envs/dev"));
    let entry = |resource: &str, member: &str| {
        format!(
            "[[exception]]\nrule = \"IAM010\"\nresource = \"{resource}\"\nmember = \"{member}\"\n\
             justification = \"j\"\napprover = \"a\"\nticket = \"T-1\"\nexpires = \"2026-12-31\"\n\n"
        )
    };
    let covers_prod = entry("serviceAccount:target@p1.iam.gserviceaccount.com", "user:mallory@acme.com");
    let other_env = entry("serviceAccount:ci@p-dev.iam.gserviceaccount.com", "user:dev@acme.com");
    std::fs::create_dir_all(tmp.0.join("policy")).expect("mkdir");
    let registry = tmp.path("policy/exceptions.toml");
    std::fs::write(&registry, format!("{covers_prod}{other_env}")).expect("write");
    let check = |what: &str| iam(&["check", &tmp.path(what), "--today", "2026-01-15", "--exceptions", &registry]);
    assert_eq!(check("envs/prod"), 0, "the other environment's exception is out of scope");
    assert_eq!(check("envs"), 1, "checking every environment judges it: unused");
    // A stale exception about the analyzed root itself is still unused.
    let stale = entry("serviceAccount:target@p1.iam.gserviceaccount.com", "user:eve@acme.com");
    std::fs::write(&registry, format!("{covers_prod}{stale}")).expect("write");
    assert_eq!(check("envs/prod"), 1, "unused exception of the analyzed root");
}

/// `iam paths --format json` says which paths are conditional and how wide a federated
/// source is.
#[test]
fn paths_json_marks_conditional_paths_and_federation_width() {
    let tmp = TempDir::new("pathsjson");
    let out = tmp.path("p.json");
    let paths = |fixture_name: &str| {
        let dir = fixture(fixture_name).display().to_string();
        assert_eq!(iam(&["paths", &dir, "--no-exceptions", "--format", "json", "-o", &out]), 1);
        json_file(&out)["paths"].as_array().expect("paths").clone()
    };
    let conditional = paths("esc-condition-undecided");
    assert!(conditional.iter().all(|p| p["conditional"] == true), "{conditional:?}");
    let certain = paths("esc-condition-decided");
    assert!(certain.iter().all(|p| p["conditional"] == false), "{certain:?}");
    let federated = paths("esc-wif-provider-admin");
    let width = federated
        .iter()
        .find_map(|p| p["source_width"].as_str())
        .expect("a path from the principal set says how wide it is");
    assert!(width.contains("repository is acme/app") && width.contains("any branch"), "{width}");
}

#[test]
fn paths_and_drawings() {
    let tmp = TempDir::new("paths");
    let fx = fixture("esc-implicit-delegation").display().to_string();
    let out = tmp.path("paths.json");
    assert_eq!(iam(&["paths", &fx, "--no-exceptions", "--format", "json", "-o", &out]), 1);
    let paths = json_file(&out)["paths"].as_array().expect("paths").clone();
    assert_eq!(paths.len(), 3);
    assert!(paths[0]["steps"].as_array().is_some_and(|s| s.len() == 1), "shortest witness first");
    let dot = tmp.path("g.dot");
    assert_eq!(iam(&["paths", &fx, "--no-exceptions", "--dot", "-o", &dot]), 1);
    let text = std::fs::read_to_string(&dot).expect("dot");
    assert!(text.starts_with("digraph") && text.contains("implicit-delegation"), "{text}");
    let mermaid = tmp.path("g.mmd");
    assert_eq!(iam(&["paths", &fx, "--no-exceptions", "--mermaid", "-o", &mermaid]), 1);
    assert!(std::fs::read_to_string(&mermaid).expect("mmd").starts_with("flowchart LR"));
    let neg = fixture("neg-role-without-danger").display().to_string();
    assert_eq!(iam(&["paths", &neg, "--no-exceptions", "-o", &tmp.path("none.txt")]), 0);
}

#[test]
fn module_shape() {
    let tmp = TempDir::new("shape");
    let good = tmp.0.join("modules/good");
    std::fs::create_dir_all(&good).expect("mkdir");
    std::fs::write(good.join("README.md"), "# good\n").expect("w");
    std::fs::write(good.join("versions.tf"), "terraform {\n  required_providers {\n    google = {\n      source  = \"hashicorp/google\"\n      version = \"~> 6.0\"\n    }\n  }\n}\n").expect("w");
    std::fs::write(good.join("main.tf"), "variable \"name\" {\n  type        = string\n  description = \"bucket name\"\n}\n\nresource \"google_storage_bucket\" \"b\" {\n  name     = var.name\n  location = \"EU\"\n  labels   = { app = \"x\" }\n}\n\noutput \"url\" {\n  value       = google_storage_bucket.b.url\n  description = \"bucket url\"\n}\n").expect("w");
    assert_eq!(iam(&["shape", &good.display().to_string(), "-o", &tmp.path("good.txt")]), 0);
    let bad = tmp.0.join("modules/bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    std::fs::write(bad.join("main.tf"), "provider \"google\" {\n  project = \"x\"\n}\n\nvariable \"name\" {}\n\nresource \"google_storage_bucket\" \"b\" {\n  name     = var.name\n  location = \"EU\"\n}\n\noutput \"url\" {\n  value = google_storage_bucket.b.url\n}\n").expect("w");
    let out = tmp.path("shape.json");
    assert_eq!(iam(&["shape", &tmp.0.join("modules").display().to_string(), "--format", "json", "-o", &out]), 1);
    let report = json_file(&out);
    let mut rules: Vec<String> = report["findings"]
        .as_array()
        .expect("f")
        .iter()
        .map(|f| f["rule"].as_str().unwrap_or_default().to_string())
        .collect();
    rules.sort();
    rules.dedup();
    assert_eq!(rules, ["SHAPE001", "SHAPE002", "SHAPE003", "SHAPE004", "SHAPE005", "SHAPE006", "SHAPE007"]);
}

#[test]
fn plan_and_exported_policy_inputs() {
    let tmp = TempDir::new("json");
    let plan = serde_json::json!({
        "format_version": "1.2",
        "planned_values": {"root_module": {
            "resources": [],
            "child_modules": [{"address": "module.iam", "resources": [
                {"address": "module.iam.google_project_iam_member.ci", "mode": "managed", "type": "google_project_iam_member", "name": "ci",
                 "values": {"project": "p9", "role": "roles/iam.serviceAccountTokenCreator", "member": "serviceAccount:ci@p9.iam.gserviceaccount.com"}},
                {"address": "module.iam.google_project_iam_member.app", "mode": "managed", "type": "google_project_iam_member", "name": "app",
                 "values": {"project": "p9", "role": "roles/storage.objectAdmin", "member": "serviceAccount:app@p9.iam.gserviceaccount.com"}}
            ]}]
        }}
    });
    let plan_path = tmp.path("plan.json");
    std::fs::write(&plan_path, plan.to_string()).expect("w");
    let out = tmp.path("r.json");
    assert_eq!(iam(&["check", &plan_path, "--no-exceptions", "--format", "json", "-o", &out]), 1);
    let report = json_file(&out);
    let text = report.to_string();
    assert!(text.contains("IAM003") && text.contains("IAM010"), "{text}");
    assert!(text.contains("plan.json#module.iam.google_project_iam_member.ci"));

    let policy = serde_json::json!({"bindings": [
        {"role": "roles/viewer", "members": ["user:a@acme.com"]},
        {"role": "roles/storage.objectViewer", "members": ["allUsers"]}
    ], "etag": "BwX"});
    let policy_path = tmp.path("policy.json");
    std::fs::write(&policy_path, policy.to_string()).expect("w");
    assert_eq!(
        iam(&[
            "check",
            &policy_path,
            "--no-exceptions",
            "--policy-resource",
            "projects/p9",
            "--format",
            "json",
            "-o",
            &out
        ]),
        1
    );
    let text = std::fs::read_to_string(&out).expect("r");
    assert!(text.contains("IAM001") && text.contains("IAM006") && text.contains("projects/p9"), "{text}");

    let junk = tmp.path("junk.json");
    std::fs::write(&junk, "{\"hello\": 1}").expect("w");
    assert_eq!(iam(&["check", &junk, "--no-exceptions"]), 2);
}

/// The 2,461-role catalogue lives beside the clone (shared/), not in the project.
fn catalogue() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/gcp-iam-roles");
    p.is_dir().then_some(p)
}

#[test]
fn full_catalogue_resolves_predefined_roles() {
    let Some(cat) = catalogue() else {
        eprintln!(
            "SKIPPED full_catalogue_resolves_predefined_roles: shared/data/gcp-iam-roles not found beside the clone"
        );
        return;
    };
    let tmp = TempDir::new("catalogue");
    std::fs::write(tmp.0.join("main.tf"), "resource \"google_project_iam_member\" \"a\" {\n  project = \"p1\"\n  role    = \"roles/compute.admin\"\n  member  = \"user:a@acme.com\"\n}\n\nresource \"google_project_iam_member\" \"b\" {\n  project = \"p1\"\n  role    = \"roles/iam.serviceAccountTokenCreator\"\n  member  = \"user:b@acme.com\"\n}\n\nresource \"google_project_iam_member\" \"c\" {\n  project = \"p1\"\n  role    = \"roles/does.notExist\"\n  member  = \"user:c@acme.com\"\n}\n\nresource \"google_project_iam_member\" \"d\" {\n  project = \"p1\"\n  role    = \"roles/iam.serviceAccountUser\"\n  member  = \"user:d@acme.com\"\n}\n").expect("w");
    let out = tmp.path("r.json");
    let cat_s = cat.display().to_string();
    assert_eq!(
        iam(&[
            "check",
            &tmp.0.display().to_string(),
            "--roles",
            &cat_s,
            "--no-exceptions",
            "--format",
            "json",
            "-o",
            &out
        ]),
        1
    );
    let report = json_file(&out);
    assert!(report["roles"].as_str().is_some_and(|r| r.contains("2461 roles")), "{}", report["roles"]);
    let rules: Vec<(String, String)> = report["findings"]
        .as_array()
        .expect("f")
        .iter()
        .map(|f| {
            (f["rule"].as_str().unwrap_or_default().to_string(), f["member"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    assert!(rules.contains(&("IAM002".into(), "user:a@acme.com".into())), "compute.admin is broad: {rules:?}");
    assert!(rules.contains(&("IAM004".into(), "user:d@acme.com".into())), "{rules:?}");
    assert!(rules.contains(&("IAM003".into(), "user:b@acme.com".into())), "{rules:?}");
    assert!(rules.contains(&("IAM012".into(), "user:c@acme.com".into())), "{rules:?}");
}
