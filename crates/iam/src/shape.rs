//! `fintrail iam shape DIR`: the module contract — typed and described variables, described
//! outputs, providers pinned in versions.tf, no provider blocks, a README, labels on
//! labelable resources.

use crate::analyze::{Finding, Report};
use crate::source::{self, attr, Loc, Mode, ModuleSrc};
use std::path::Path;

/// Resource types that accept labels, and where (attribute path) they go.
const LABELABLE: &[(&str, &[&str])] = &[
    ("google_storage_bucket", &["labels"]),
    ("google_bigquery_dataset", &["labels"]),
    ("google_bigquery_table", &["labels"]),
    ("google_pubsub_topic", &["labels"]),
    ("google_pubsub_subscription", &["labels"]),
    ("google_secret_manager_secret", &["labels"]),
    ("google_cloud_run_v2_service", &["labels"]),
    ("google_cloud_run_v2_job", &["labels"]),
    ("google_cloud_run_service", &["metadata", "labels"]),
    ("google_compute_instance", &["labels"]),
    ("google_redis_instance", &["labels"]),
    ("google_cloudfunctions2_function", &["labels"]),
    ("google_cloudfunctions_function", &["labels"]),
    ("google_kms_crypto_key", &["labels"]),
    ("google_sql_database_instance", &["settings", "user_labels"]),
    ("google_datastream_stream", &["labels"]),
    ("google_datastream_connection_profile", &["labels"]),
    ("google_datastream_private_connection", &["labels"]),
    ("google_artifact_registry_repository", &["labels"]),
    ("google_composer_environment", &["labels"]),
    ("google_dataflow_job", &["labels"]),
    ("google_project", &["labels"]),
    ("google_workflows_workflow", &["labels"]),
    ("google_filestore_instance", &["labels"]),
    ("google_spanner_instance", &["labels"]),
    ("google_compute_disk", &["labels"]),
];

fn has_path(body: &hcl::Body, path: &[&str]) -> bool {
    match path {
        [] => true,
        [last] => {
            attr(body, last).is_some()
                || body.blocks().any(|b| {
                    b.identifier.as_str() == "dynamic" && b.labels.first().is_some_and(|l| l.as_str() == *last)
                })
        }
        [first, rest @ ..] => {
            body.blocks().filter(|b| b.identifier.as_str() == *first).any(|b| has_path(&b.body, rest))
        }
    }
}

/// A version constraint pins when it bounds the version from above (`~>`, `=`, `<`, exact).
pub fn is_pinned(constraint: &str) -> bool {
    let c = constraint.trim();
    if c.is_empty() {
        return false;
    }
    c.split(',').any(|part| {
        let p = part.trim();
        p.starts_with("~>")
            || (p.starts_with('<'))
            || p.starts_with('=')
            || p.chars().next().is_some_and(|ch| ch.is_ascii_digit())
    })
}

pub fn check_module(src: &ModuleSrc) -> Vec<Finding> {
    let mut out = Vec::new();
    let dir = src.dir.display().to_string();
    let at = |loc: &Loc| loc.clone();
    for v in &src.variables {
        if !v.has_type {
            let mut f = Finding::new("SHAPE001", format!("variable {} has no type", v.name), at(&v.loc));
            f.resource = format!("{dir}:var.{}", v.name);
            out.push(f);
        }
        if v.description.as_deref().is_none_or(|d| d.trim().is_empty()) {
            let mut f = Finding::new("SHAPE002", format!("variable {} has no description", v.name), at(&v.loc));
            f.resource = format!("{dir}:var.{}", v.name);
            out.push(f);
        }
    }
    for o in &src.outputs {
        if o.description.as_deref().is_none_or(|d| d.trim().is_empty()) {
            let mut f = Finding::new("SHAPE003", format!("output {} has no description", o.name), at(&o.loc));
            f.resource = format!("{dir}:output.{}", o.name);
            out.push(f);
        }
    }
    let versions = src.dir.join("versions.tf");
    let module_loc = Loc { file: dir.clone(), line: 0 };
    if !versions.is_file() {
        let mut f = Finding::new("SHAPE004", format!("module {dir} has no versions.tf"), module_loc.clone());
        f.resource = dir.clone();
        out.push(f);
    } else {
        let used: std::collections::BTreeSet<String> =
            src.resources.iter().filter_map(|r| r.rtype.split('_').next().map(str::to_string)).collect();
        let declared: Vec<&(String, Option<String>, Loc)> =
            src.required_providers.iter().filter(|(_, _, l)| l.file.ends_with("versions.tf")).collect();
        for (name, version, loc) in &declared {
            if !version.as_deref().is_some_and(is_pinned) {
                let mut f = Finding::new(
                    "SHAPE004",
                    format!("provider {name} is not pinned (version {})", version.as_deref().unwrap_or("missing")),
                    loc.clone(),
                );
                f.resource = format!("{dir}:provider.{name}");
                out.push(f);
            }
        }
        for p in used {
            let base = p.as_str();
            let known = declared.iter().any(|(n, _, _)| n == base || n.starts_with(&format!("{base}-")));
            if !known {
                let mut f = Finding::new(
                    "SHAPE004",
                    format!("provider {base} is used but not declared in versions.tf required_providers"),
                    Loc { file: versions.display().to_string(), line: 0 },
                );
                f.resource = format!("{dir}:provider.{base}");
                out.push(f);
            }
        }
    }
    for p in &src.providers {
        let mut f = Finding::new("SHAPE005", format!("provider \"{}\" block inside module", p.name), p.loc.clone());
        f.resource = format!("{dir}:provider.{}", p.name);
        out.push(f);
    }
    let has_readme = ["README.md", "readme.md", "README"].iter().any(|n| src.dir.join(n).is_file());
    if !has_readme {
        let mut f = Finding::new("SHAPE006", format!("module {dir} has no README.md"), module_loc);
        f.resource = dir.clone();
        out.push(f);
    }
    for r in src.resources.iter().filter(|r| r.mode == Mode::Managed) {
        if let Some((_, path)) = LABELABLE.iter().find(|(t, _)| *t == r.rtype) {
            if !has_path(&r.body, path) {
                let mut f = Finding::new(
                    "SHAPE007",
                    format!("{}.{} has no {}", r.rtype, r.name, path.join(".")),
                    r.loc.clone(),
                );
                f.resource = format!("{dir}:{}.{}", r.rtype, r.name);
                f.address = format!("{}.{}", r.rtype, r.name);
                out.push(f);
            }
        }
    }
    out
}

/// Checks a module folder, or every module folder directly under `dir`.
pub fn shape(dir: &Path) -> Result<Report, crate::analyze::InputError> {
    if !dir.is_dir() {
        return Err(crate::analyze::InputError(format!("{}: not a folder", dir.display())));
    }
    let modules = crate::analyze::tf_dirs(dir)?;
    if modules.is_empty() {
        return Err(crate::analyze::InputError(format!(
            "{}: no module (no .tf files here nor in its sub-folders)",
            dir.display()
        )));
    }
    let mut report = Report {
        input: dir.display().to_string(),
        today: String::new(),
        roles: "(not used by shape)".into(),
        exceptions_registry: None,
        roots: Vec::new(),
        findings: Vec::new(),
        notes: vec![format!("{} module(s) checked", modules.len())],
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        truncated: false,
    };
    for m in modules {
        let src = source::load_module(&m);
        report.diagnostics.extend(src.diagnostics.iter().cloned());
        let mut findings = check_module(&src);
        for f in &mut findings {
            f.root = src.dir.display().to_string();
        }
        report.findings.extend(findings);
    }
    report.findings.sort_by(|a, b| (&a.location, a.rule).cmp(&(&b.location, b.rule)));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning() {
        assert!(is_pinned("~> 6.0"));
        assert!(is_pinned(">= 5.0, < 7.0"));
        assert!(is_pinned("6.1.0"));
        assert!(!is_pinned(">= 5.0"));
        assert!(!is_pinned(""));
    }
}
