//! Rendering: human text grouped by severity, JSON, and SARIF 2.1.0 (GitHub code scanning).

use crate::analyze::{Finding, Report, Severity, RULES};
use crate::graph::EscalationPath;
use serde_json::json;
use std::fmt::Write as _;

pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "fintrail iam check {}", report.input);
    let _ = writeln!(
        out,
        "roles: {} | today: {} | exceptions: {}",
        report.roles,
        report.today,
        report.exceptions_registry.as_deref().unwrap_or("(no registry found)")
    );
    for d in &report.diagnostics {
        let _ = writeln!(out, "error: {}: {}", d.loc, d.message);
    }
    for d in &report.warnings {
        let _ = writeln!(out, "warning: {}: {}", d.loc, d.message);
    }
    for r in &report.roots {
        let _ = writeln!(
            out,
            "root {}: {} files, {} resources, {} effective bindings ({} inactive: condition expired), {} escalation paths",
            r.root,
            r.files,
            r.resources,
            r.bindings.len(),
            r.inactive_bindings.len(),
            r.paths.len()
        );
    }
    let order = [Severity::Critical, Severity::High, Severity::Medium, Severity::Low];
    for sev in order {
        let group: Vec<&Finding> =
            report.findings.iter().filter(|f| f.severity == sev && f.excepted.is_none()).collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{} ({})", sev.as_str().to_uppercase(), group.len());
        for f in group {
            write_finding(&mut out, f);
        }
    }
    let excepted: Vec<&Finding> = report.findings.iter().filter(|f| f.excepted.is_some()).collect();
    if !excepted.is_empty() {
        let _ = writeln!(out, "\nEXCEPTED ({})", excepted.len());
        for f in excepted {
            write_finding(&mut out, f);
        }
    }
    let info: Vec<&Finding> =
        report.findings.iter().filter(|f| f.severity == Severity::Info && f.excepted.is_none()).collect();
    if !info.is_empty() {
        let _ = writeln!(out, "\nINFO ({}) — values known only after plan; not failures", info.len());
        for f in info.iter().take(50) {
            let _ = writeln!(out, "  {} {}  {}", f.rule, f.location, f.message);
        }
        if info.len() > 50 {
            let _ = writeln!(out, "  ... {} more (see --format json)", info.len() - 50);
        }
    }
    if !report.notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in report.notes.iter().take(50) {
            let _ = writeln!(out, "  {n}");
        }
    }
    let excepted = report.findings.iter().filter(|f| f.excepted.is_some()).count();
    let _ = writeln!(
        out,
        "\nsummary: {} findings, {} failing, {} excepted{}",
        report.findings.len(),
        report.failing(),
        excepted,
        if report.truncated { " (limits reached: output truncated)" } else { "" }
    );
    out
}

fn write_finding(out: &mut String, f: &Finding) {
    let _ = writeln!(out, "  {} {}  {}", f.rule, f.name, f.location);
    let _ = writeln!(out, "    {}", f.message);
    for s in &f.symbolic {
        let _ = writeln!(out, "    symbolic: {s}");
    }
    if let Some(e) = &f.excepted {
        let _ = writeln!(
            out,
            "    excepted: ticket {} approved by {} until {} ({}:{})",
            e.ticket, e.approver, e.expires, e.registry, e.line
        );
    } else {
        let _ = writeln!(out, "    fix: {}", f.hint);
    }
}

pub fn json(report: &Report) -> String {
    let mut value = serde_json::to_value(report).unwrap_or_else(|e| json!({"error": e.to_string()}));
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "summary".into(),
            json!({
                "findings": report.findings.len(),
                "failing": report.failing(),
                "excepted": report.findings.iter().filter(|f| f.excepted.is_some()).count(),
                "exit_code": report.exit_code(),
            }),
        );
    }
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium | Severity::Low => "warning",
        Severity::Info => "note",
    }
}

/// SARIF 2.1.0: one run, the rules as `tool.driver.rules`, excepted findings carry an
/// external suppression with the justification.
pub fn sarif(report: &Report) -> String {
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": {"text": r.summary},
                "help": {"text": r.hint},
                "defaultConfiguration": {"level": sarif_level(r.severity)},
                "properties": {"security-severity": match r.severity {
                    Severity::Critical => "9.5", Severity::High => "8.0", Severity::Medium => "5.5",
                    Severity::Low => "3.0", Severity::Info => "0.0" }}
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            let uri = f.location.file.split('#').next().unwrap_or_default().to_string();
            let mut region = json!({});
            if f.location.line > 0 {
                region = json!({"startLine": f.location.line});
            }
            let mut result = json!({
                "ruleId": f.rule,
                "ruleIndex": RULES.iter().position(|r| r.id == f.rule).unwrap_or(0),
                "level": sarif_level(f.severity),
                "message": {"text": format!("{} Fix: {}", f.message, f.hint)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri},
                        "region": region
                    }
                }],
                "partialFingerprints": {
                    "fintrailIam/v1": format!("{}|{}|{}|{}", f.rule, f.member, f.resource, f.address)
                },
                "properties": {"member": f.member, "resource": f.resource, "root": f.root}
            });
            if f.location.line == 0 {
                if let Some(pl) = result.pointer_mut("/locations/0/physicalLocation") {
                    if let Some(o) = pl.as_object_mut() {
                        o.remove("region");
                    }
                }
            }
            if let Some(e) = &f.excepted {
                result["suppressions"] = json!([{
                    "kind": "external",
                    "status": "accepted",
                    "justification": format!("{} (ticket {}, approved by {}, until {})", e.justification, e.ticket, e.approver, e.expires)
                }]);
            }
            result
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "fintrail-iam",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules
            }},
            "results": results
        }]
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

pub fn paths_text(paths: &[EscalationPath]) -> String {
    let mut out = String::new();
    for (i, p) in paths.iter().enumerate() {
        let kind = if p.self_escalation { "self-escalation" } else { "escalation" };
        let _ = writeln!(out, "{}. [{kind}] {} ⇒ {} ({} steps)", i + 1, p.from, p.to, p.steps.len());
        for s in &p.steps {
            let ev: Vec<String> = s.evidence.iter().map(|l| l.to_string()).collect();
            let _ = writeln!(out, "     {} → {}  via {} [{}] {}", s.from, s.to, s.method, s.permission, ev.join(", "));
        }
    }
    out
}
