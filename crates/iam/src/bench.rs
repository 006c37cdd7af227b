//! `fintrail bench iam`: generates a large Terraform root (>= 5,000 resources across >= 500
//! files) in a temporary folder, analyzes it with the full role catalogue, runs Checkov on the
//! same root in the same run, prints a table and ends with `ratio: X` (Checkov's time ÷ ours:
//! how many times faster we are). Without Checkov there is no honest baseline: it says so,
//! prints `ratio: n/a (checkov not installed)` and fails.

use crate::analyze::{self, Options};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `fintrail bench iam`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Number of generated .tf files
    #[arg(long, default_value_t = 520)]
    pub files: usize,
    /// Resources per generated file
    #[arg(long, default_value_t = 10)]
    pub resources_per_file: usize,
    /// Predefined role catalogue (default: FINTRAIL_IAM_ROLES, else shared/data/gcp-iam-roles above the current folder)
    #[arg(long, env = "FINTRAIL_IAM_ROLES")]
    pub roles: Option<PathBuf>,
    /// Checkov executable (default: `checkov` on PATH)
    #[arg(long, env = "FINTRAIL_CHECKOV")]
    pub checkov: Option<PathBuf>,
    /// Give up on Checkov after this many seconds
    #[arg(long, default_value_t = 1800)]
    pub checkov_timeout_secs: u64,
    /// Keep the generated root (prints where)
    #[arg(long)]
    pub keep: bool,
}

/// Limits so a typo cannot fill the disk.
const MAX_FILES: usize = 100_000;
const MAX_RESOURCES_PER_FILE: usize = 1_000;

/// Writes the synthetic root; returns (files, resources). Every 10 resources form a realistic
/// unit: a service account, a custom role and its grant, a bucket, a secret, a topic and their
/// IAM bindings, with variables, locals and a `for_each`.
pub fn generate(dir: &Path, files: usize, per_file: usize) -> anyhow::Result<(usize, usize)> {
    anyhow::ensure!((1..=MAX_FILES).contains(&files), "--files must be 1..={MAX_FILES}");
    anyhow::ensure!(
        (1..=MAX_RESOURCES_PER_FILE).contains(&per_file),
        "--resources-per-file must be 1..={MAX_RESOURCES_PER_FILE}"
    );
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("main.tf"),
        "terraform {\n  required_providers {\n    google = {\n      source  = \"hashicorp/google\"\n      version = \"~> 6.0\"\n    }\n  }\n}\n\nprovider \"google\" {\n  project = var.project_id\n}\n\nvariable \"project_id\" {\n  type    = string\n  default = \"bench-prod\"\n}\n\nvariable \"env\" {\n  type    = string\n  default = \"prod\"\n}\n\nvariable \"readers\" {\n  type    = list(string)\n  default = [\"group:analysts@acme.com\", \"group:auditors@acme.com\"]\n}\n",
    )?;
    let mut resources = 0usize;
    for i in 0..files {
        let mut t = String::new();
        let _ = writeln!(t, "locals {{\n  name_{i} = \"svc-{i}-${{var.env}}\"\n}}\n");
        let mut n = 0usize;
        let mut unit = 0usize;
        while n < per_file {
            let k = format!("{i}_{unit}");
            let blocks = [
                format!("resource \"google_service_account\" \"sa_{k}\" {{\n  account_id   = \"s{i}u{unit}\"\n  display_name = local.name_{i}\n}}\n"),
                format!("resource \"google_project_iam_custom_role\" \"role_{k}\" {{\n  role_id     = \"r{i}u{unit}\"\n  title       = \"bench {k}\"\n  permissions = [\"storage.objects.get\", \"storage.objects.list\", \"pubsub.topics.publish\"]\n}}\n"),
                format!("resource \"google_project_iam_member\" \"grant_{k}\" {{\n  project = var.project_id\n  role    = google_project_iam_custom_role.role_{k}.id\n  member  = google_service_account.sa_{k}.member\n}}\n"),
                format!("resource \"google_service_account_iam_member\" \"tc_{k}\" {{\n  service_account_id = google_service_account.sa_{k}.name\n  role               = \"roles/iam.serviceAccountTokenCreator\"\n  member             = \"user:deployer-{i}@acme.com\"\n}}\n"),
                format!("resource \"google_storage_bucket\" \"b_{k}\" {{\n  name     = \"${{var.project_id}}-b-{k}\"\n  location = \"EU\"\n  labels   = {{ env = var.env, unit = \"{k}\" }}\n}}\n"),
                format!("resource \"google_storage_bucket_iam_member\" \"br_{k}\" {{\n  for_each = toset(var.readers)\n  bucket   = google_storage_bucket.b_{k}.name\n  role     = \"roles/storage.objectViewer\"\n  member   = each.value\n}}\n"),
                format!("resource \"google_secret_manager_secret\" \"s_{k}\" {{\n  secret_id = \"secret-{k}\"\n  labels    = {{ env = var.env }}\n  replication {{\n    auto {{}}\n  }}\n}}\n"),
                format!("resource \"google_secret_manager_secret_iam_member\" \"sr_{k}\" {{\n  secret_id = google_secret_manager_secret.s_{k}.id\n  role      = \"roles/secretmanager.secretAccessor\"\n  member    = google_service_account.sa_{k}.member\n}}\n"),
                format!("resource \"google_pubsub_topic\" \"t_{k}\" {{\n  name   = \"topic-{k}\"\n  labels = {{ env = var.env }}\n}}\n"),
                format!("resource \"google_pubsub_topic_iam_member\" \"tp_{k}\" {{\n  topic  = google_pubsub_topic.t_{k}.name\n  role   = \"roles/pubsub.publisher\"\n  member = google_service_account.sa_{k}.member\n}}\n"),
            ];
            for b in blocks.iter().take(per_file - n) {
                t.push_str(b);
                t.push('\n');
                n += 1;
            }
            unit += 1;
        }
        resources += n;
        std::fs::write(dir.join(format!("unit_{i:05}.tf")), t)?;
    }
    Ok((files + 1, resources))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// What Checkov reported on the generated root.
struct CheckovRun {
    elapsed: Duration,
    /// Resources it checked (both tools saw the same root).
    resources: usize,
    /// Failed checks on IAM resources (`google_*_iam_*`): per-resource rules, the nearest
    /// thing it has to an escalation finding.
    iam_failed: usize,
}

/// Checkov has per-resource checks and no graph of who can become whom: it reports no
/// escalation path, whatever the root.
const CHECKOV_PATHS: usize = 0;

/// Counts Checkov's failed checks on IAM resources in its JSON output (one report, or a list
/// of reports, one per framework).
fn checkov_iam_failed(report: &serde_json::Value) -> usize {
    let reports = match report {
        serde_json::Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    reports
        .iter()
        .filter_map(|r| r.pointer("/results/failed_checks").and_then(|f| f.as_array()))
        .flatten()
        .filter(|c| c.get("resource").and_then(|r| r.as_str()).is_some_and(|r| r.contains("_iam_")))
        .count()
}

/// Runs Checkov on `dir` (Terraform framework, all checks); returns its wall time. Its exit
/// code is 1 when checks fail, which is expected here; anything else is an error.
fn run_checkov(checkov: &Path, dir: &Path, timeout: Duration) -> anyhow::Result<CheckovRun> {
    let out_file = dir.with_extension("checkov.json");
    let started = Instant::now();
    let mut child = std::process::Command::new(checkov)
        .arg("-d")
        .arg(dir)
        .args(["--framework", "terraform", "--quiet", "--compact", "-o", "json"])
        .stdout(std::fs::File::create(&out_file)?)
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", checkov.display()))?;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("checkov did not finish within {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    anyhow::ensure!(matches!(status.code(), Some(0) | Some(1)), "checkov failed with {status}");
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    let json = serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default();
    let resources = json.pointer("/summary/resource_count").and_then(|c| c.as_u64()).unwrap_or(0);
    Ok(CheckovRun {
        elapsed,
        resources: usize::try_from(resources).unwrap_or(0),
        iam_failed: checkov_iam_failed(&json),
    })
}

/// Runs `fintrail bench iam`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("fintrail-bench-iam-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    let result = bench_in(&args, &root);
    if args.keep {
        println!("generated root kept at {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn bench_in(args: &BenchArgs, root: &Path) -> anyhow::Result<()> {
    let (files, resources) = generate(root, args.files, args.resources_per_file)?;
    let opts = Options { roles_dir: args.roles.clone(), no_exceptions: true, ..Options::default() };
    // Ours: catalogue load + parse + evaluate + rules + graph + JSON report, one thread.
    let started = Instant::now();
    let roles = analyze::load_roles(&opts, root).map_err(|e| anyhow::anyhow!("{e}"))?;
    let roles_loaded = started.elapsed();
    let report = analyze::analyze(root, &opts, &roles).map_err(|e| anyhow::anyhow!("{e}"))?;
    let rendered = crate::report::json(&report);
    let ours = started.elapsed();
    anyhow::ensure!(report.diagnostics.is_empty(), "generated root did not parse: {:?}", report.diagnostics.first());
    let analyzed = report.roots.first().map(|r| r.resources).unwrap_or(0);
    anyhow::ensure!(analyzed >= resources, "analyzed {analyzed} resource instances, generated {resources}");

    println!("fintrail bench iam — generated root: {files} files, {resources} resources ({})", root.display());
    println!("role catalogue: {}", roles.origin);
    println!();
    let paths: usize = report.roots.iter().map(|r| r.paths.len()).sum();
    println!("| tool          | time (s) | files/s   | findings | escalation paths | notes");
    println!("|---------------|----------|-----------|----------|------------------|------");
    println!(
        "| fintrail iam  | {:8.3} | {:9.0} | {:8} | {paths:16} | catalogue load {:.3} s, {} KiB JSON",
        ours.as_secs_f64(),
        files as f64 / ours.as_secs_f64().max(1e-9),
        report.findings.len(),
        roles_loaded.as_secs_f64(),
        rendered.len() / 1024
    );
    if !roles.origin.contains("2461") {
        println!("note: the full 2,461-role catalogue was not used (pass --roles DIR)");
    }
    let checkov = args.checkov.clone().or_else(|| find_on_path("checkov"));
    let Some(checkov) = checkov else {
        println!("| checkov       | -        | -         | -        | -                | not installed (pip install -r .ci/bench-requirements.txt); no baseline measured");
        println!("ratio: n/a (checkov not installed)");
        anyhow::bail!("checkov not installed: the baseline could not be measured");
    };
    let run = run_checkov(&checkov, root, Duration::from_secs(args.checkov_timeout_secs))?;
    let theirs = run.elapsed;
    println!(
        "| checkov       | {:8.3} | {:9.0} | {:>8} | {CHECKOV_PATHS:16} | {} resources checked, {} failed checks on IAM resources, no path search ({})",
        theirs.as_secs_f64(),
        files as f64 / theirs.as_secs_f64().max(1e-9),
        "-",
        run.resources,
        run.iam_failed,
        checkov.display()
    );
    println!("escalation paths on the same root: fintrail iam {paths}, checkov {CHECKOV_PATHS}");
    let ratio = theirs.as_secs_f64() / ours.as_secs_f64().max(1e-9);
    println!();
    println!("target: ours < 5 s ({}), ratio >= 50", if ours.as_secs_f64() < 5.0 { "met" } else { "NOT met" });
    println!("ratio: {ratio:.1}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_root_is_valid_and_fully_analyzed() {
        let dir = std::env::temp_dir().join(format!("fintrail-bench-gen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (files, resources) = generate(&dir, 3, 10).expect("generates");
        assert_eq!((files, resources), (4, 30));
        let opts = Options { builtin_roles: true, no_exceptions: true, ..Options::default() };
        let roles = crate::roles::RoleCatalog::builtin();
        let report = analyze::analyze(&dir, &opts, &roles).expect("analyzes");
        assert!(report.diagnostics.is_empty(), "{:?}", report.diagnostics);
        // for_each over two readers: 31 instances from 30 declarations... per unit one extra.
        assert_eq!(report.roots[0].resources, 33);
        // Each deployer can mint tokens for its unit's service account, which holds a role.
        assert_eq!(report.roots[0].paths.len(), 3);
        assert!(generate(&dir, 0, 10).is_err());
        let checkov_json = serde_json::json!([
            {"results": {"failed_checks": [{"resource": "google_project_iam_member.a"}, {"resource": "google_storage_bucket.b"}]}},
            {"results": {"failed_checks": [{"resource": "google_service_account_iam_member.c"}]}}
        ]);
        assert_eq!(checkov_iam_failed(&checkov_json), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
