//! Orchestration: input (HCL root(s), plan JSON or exported policy) → inventory → effective
//! bindings → rules + escalation paths → exceptions → one `Report`.

use crate::date::Date;
use crate::eval::World;
use crate::exceptions::Registry;
use crate::graph::{EscalationGraph, EscalationPath};
use crate::model::{parent_target, Binding, Inventory, TargetKind};
use crate::roles::{danger_of, is_basic_role, Danger, RoleCatalog};
use crate::source::{Diagnostic, Loc};
use crate::value::is_symbolic;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

pub struct RuleInfo {
    pub id: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub summary: &'static str,
    pub hint: &'static str,
}

/// The rules. Ids are stable: exceptions and SARIF consumers refer to them.
pub const RULES: &[RuleInfo] = &[
    RuleInfo { id: "IAM001", name: "basic-role", severity: Severity::High, summary: "Basic role (owner/editor/viewer) granted", hint: "Replace the basic role with single-permission custom roles holding only what is used." },
    RuleInfo { id: "IAM002", name: "broad-predefined-role", severity: Severity::Medium, summary: "Broad predefined role granted", hint: "Grant a custom role with only the permissions the workload uses (see the role's permission count)." },
    RuleInfo { id: "IAM003", name: "broad-token-creator", severity: Severity::High, summary: "Token creation granted at project/folder/organization level", hint: "Bind roles/iam.serviceAccountTokenCreator on the one service account to impersonate (google_service_account_iam_member), never project-wide." },
    RuleInfo { id: "IAM004", name: "broad-service-account-user", severity: Severity::High, summary: "iam.serviceAccounts.actAs granted at project/folder/organization level", hint: "Bind roles/iam.serviceAccountUser on the one runtime service account instead of the project." },
    RuleInfo { id: "IAM005", name: "broad-key-admin", severity: Severity::High, summary: "Service account key creation granted at project/folder/organization level", hint: "Avoid key creation; use impersonation or workload identity. If unavoidable, scope it to one service account." },
    RuleInfo { id: "IAM006", name: "public-member", severity: Severity::Critical, summary: "Public member (allUsers / allAuthenticatedUsers)", hint: "Remove the public member; grant named principals, or serve public content through signed URLs." },
    RuleInfo { id: "IAM007", name: "service-account-key", severity: Severity::High, summary: "Service account key created in code", hint: "Use workload identity federation or impersonation instead of long-lived keys." },
    RuleInfo { id: "IAM008", name: "hmac-or-api-key", severity: Severity::Medium, summary: "HMAC or API key created in code", hint: "Prefer OAuth/impersonation; if required, restrict the key and record an exception with an expiry." },
    RuleInfo { id: "IAM009", name: "org-policy-exception-unscoped", severity: Severity::High, summary: "Org Policy relaxed for a whole organization or folder", hint: "Scope the exception to one project or resource (a conditional rule on a tag), and resolve access via impersonation." },
    RuleInfo { id: "IAM010", name: "escalation-path", severity: Severity::High, summary: "Privilege escalation path to a more privileged principal", hint: "Remove or narrow the first binding of the path (scope it to an unrelated resource or drop the dangerous permission)." },
    RuleInfo { id: "IAM011", name: "self-escalation", severity: Severity::Critical, summary: "Principal can grant itself any role (self-escalation)", hint: "Do not give setIamPolicy / custom role update to principals that also hold roles there; use a separate, audited admin path." },
    RuleInfo { id: "IAM012", name: "unknown-role", severity: Severity::Low, summary: "Role not found in the catalogue nor defined in code", hint: "Check the role name, or pass --roles DIR with the full predefined role catalogue." },
    RuleInfo { id: "IAM013", name: "symbolic-binding", severity: Severity::Info, summary: "Binding value known only after plan", hint: "Give the variable a default or a tfvars value, or analyze a `tofu show -json` plan." },
    RuleInfo { id: "IAM014", name: "broad-secret-access", severity: Severity::Medium, summary: "Secret access granted at project/folder/organization level", hint: "Grant roles/secretmanager.secretAccessor on each secret (google_secret_manager_secret_iam_member)." },
    RuleInfo { id: "IAM015", name: "wif-provider-unconditioned", severity: Severity::Medium, summary: "Workload identity provider without attribute_condition", hint: "Set attribute_condition so only your repository/workload can federate." },
    RuleInfo { id: "SHAPE001", name: "variable-untyped", severity: Severity::Low, summary: "Module variable without a type", hint: "Add `type = ...` to the variable." },
    RuleInfo { id: "SHAPE002", name: "variable-undescribed", severity: Severity::Low, summary: "Module variable without a description", hint: "Add `description = \"...\"` to the variable." },
    RuleInfo { id: "SHAPE003", name: "output-undescribed", severity: Severity::Low, summary: "Module output without a description", hint: "Add `description = \"...\"` to the output." },
    RuleInfo { id: "SHAPE004", name: "providers-unpinned", severity: Severity::Medium, summary: "Providers not pinned in versions.tf", hint: "Declare terraform { required_providers { google = { source = \"hashicorp/google\", version = \"~> 6.0\" } } } in versions.tf." },
    RuleInfo { id: "SHAPE005", name: "provider-block-in-module", severity: Severity::Medium, summary: "Provider block inside a reusable module", hint: "Remove the provider block; configure providers in the root and pass them in." },
    RuleInfo { id: "SHAPE006", name: "readme-missing", severity: Severity::Low, summary: "Module without README.md", hint: "Add a README.md describing inputs, outputs and intent." },
    RuleInfo { id: "SHAPE007", name: "labels-missing", severity: Severity::Low, summary: "Labelable resource without labels", hint: "Set labels (e.g. from a `labels` variable merged with module defaults)." },
    RuleInfo { id: "EXC001", name: "exception-expired", severity: Severity::High, summary: "Policy exception expired", hint: "Renew it (new approval and ticket) or fix the finding it covered." },
    RuleInfo { id: "EXC002", name: "exception-unused", severity: Severity::Medium, summary: "Policy exception matches no finding", hint: "Remove the exception: what it covered is fixed (or its rule/resource/member is wrong)." },
    RuleInfo { id: "EXC003", name: "exception-malformed", severity: Severity::High, summary: "Policy exception malformed", hint: "Every [[exception]] needs rule, resource, member, justification, approver, ticket and expires (YYYY-MM-DD)." },
];

pub fn rule(id: &str) -> &'static RuleInfo {
    RULES.iter().find(|r| r.id == id).unwrap_or(&RULES[0])
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExceptedBy {
    pub ticket: String,
    pub approver: String,
    pub expires: String,
    pub justification: String,
    pub registry: String,
    pub line: u32,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    pub message: String,
    pub hint: &'static str,
    pub resource: String,
    pub member: String,
    pub address: String,
    pub location: Loc,
    /// Which root (environment) it comes from.
    pub root: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub symbolic: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excepted: Option<ExceptedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<EscalationPath>,
}

impl Finding {
    pub fn new(id: &'static str, message: String, loc: Loc) -> Finding {
        let r = rule(id);
        Finding {
            rule: r.id,
            name: r.name,
            severity: r.severity,
            message,
            hint: r.hint,
            resource: String::new(),
            member: String::new(),
            address: String::new(),
            location: loc,
            root: String::new(),
            symbolic: Vec::new(),
            excepted: None,
            path: None,
        }
    }

    fn on(mut self, b: &Binding) -> Finding {
        self.resource = b.target.key();
        self.member = b.member.clone();
        self.address = b.address.clone();
        self.symbolic = b.symbolic();
        self
    }

    /// Fails the check: not excepted and at least low severity.
    pub fn fails(&self) -> bool {
        self.excepted.is_none() && self.severity >= Severity::Low
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub roles_dir: Option<PathBuf>,
    /// Use only the built-in role subset (no catalogue discovery): reproducible tests.
    pub builtin_roles: bool,
    pub exceptions: Option<PathBuf>,
    pub no_exceptions: bool,
    pub today: Date,
    pub var_files: Vec<PathBuf>,
    pub vars: Vec<(String, String)>,
    pub broad_threshold: usize,
    /// For exported policies: the resource they belong to (`projects/x`, `folders/1`...).
    pub policy_resource: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            roles_dir: None,
            builtin_roles: false,
            exceptions: None,
            no_exceptions: false,
            today: Date::today_utc(),
            var_files: Vec::new(),
            vars: Vec::new(),
            broad_threshold: 50,
            policy_resource: None,
        }
    }
}

/// Results for one root (environment).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RootResult {
    pub root: String,
    pub files: usize,
    pub resources: usize,
    pub bindings: Vec<Binding>,
    /// Bindings whose condition has expired (not effective).
    pub inactive_bindings: Vec<Binding>,
    pub paths: Vec<EscalationPath>,
    #[serde(skip)]
    pub graph_dot: String,
    #[serde(skip)]
    pub graph_mermaid: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub input: String,
    pub today: String,
    pub roles: String,
    pub exceptions_registry: Option<String>,
    pub roots: Vec<RootResult>,
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// Input problems the analysis went on past (a dangling variables file): printed, exit
    /// code unchanged.
    pub warnings: Vec<Diagnostic>,
    pub truncated: bool,
}

impl Report {
    pub fn failing(&self) -> usize {
        self.findings.iter().filter(|f| f.fails()).count()
    }
    pub fn exit_code(&self) -> u8 {
        if !self.diagnostics.is_empty() {
            2
        } else if self.failing() > 0 {
            1
        } else {
            0
        }
    }
}

/// Bad input (path missing, unreadable catalogue, JSON that is neither a plan nor a policy).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

fn has_tf(dir: &Path) -> bool {
    crate::source::tf_files(dir).map(|f| !f.is_empty()).unwrap_or(false)
}

/// Looks for `shared/data/gcp-iam-roles` above `start` (the CI layout keeps shared/ beside the
/// clone). Bounded walk.
pub fn discover_catalogue(start: &Path) -> Option<PathBuf> {
    let mut dir = std::fs::canonicalize(start).ok()?;
    for _ in 0..8 {
        let candidate = dir.join("shared/data/gcp-iam-roles");
        if candidate.is_dir() {
            return Some(candidate);
        }
        if !dir.pop() {
            break;
        }
    }
    None
}

pub fn load_roles(opts: &Options, input: &Path) -> Result<RoleCatalog, InputError> {
    let dir = match &opts.roles_dir {
        Some(d) => Some(d.clone()),
        None if opts.builtin_roles => None,
        None => std::env::current_dir().ok().and_then(|c| discover_catalogue(&c)).or_else(|| discover_catalogue(input)),
    };
    match dir {
        Some(d) => RoleCatalog::load_dir(&d).map_err(|e| InputError(e.to_string())),
        None => Ok(RoleCatalog::builtin()),
    }
}

/// Analyzes `path` with an already loaded catalogue.
pub fn analyze(path: &Path, opts: &Options, base_roles: &RoleCatalog) -> Result<Report, InputError> {
    if !path.exists() {
        return Err(InputError(format!("{}: no such file or folder", path.display())));
    }
    let mut report = Report {
        input: path.display().to_string(),
        today: opts.today.to_string(),
        roles: base_roles.origin.clone(),
        exceptions_registry: None,
        roots: Vec::new(),
        findings: Vec::new(),
        notes: Vec::new(),
        diagnostics: Vec::new(),
        warnings: Vec::new(),
        truncated: false,
    };
    // Which inputs: a file (plan / policy JSON), a root folder, or a folder of roots.
    let inputs = if path.is_file() {
        vec![file_input(path, opts)?]
    } else {
        let roots = root_dirs(path)?;
        roots.iter().map(|root| hcl_input(root, opts, &mut report)).collect()
    };
    for input in inputs {
        analyze_root(input, base_roles, opts, &mut report);
    }
    apply_exceptions(&mut report, path, opts);
    report.findings.sort_by(|a, b| {
        (std::cmp::Reverse(a.severity), a.rule, &a.location, &a.member).cmp(&(
            std::cmp::Reverse(b.severity),
            b.rule,
            &b.location,
            &b.member,
        ))
    });
    Ok(report)
}

/// One root (environment) ready for the rules: its facts and how much was read.
struct RootInput {
    root: String,
    inv: Inventory,
    files: usize,
    resources: usize,
}

/// A `tofu show -json` plan or an exported IAM policy.
fn file_input(path: &Path, opts: &Options) -> Result<RootInput, InputError> {
    let text = std::fs::read_to_string(path).map_err(|e| InputError(format!("{}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        InputError(format!(
            "{}:{}: not JSON ({e}); pass a folder for Terraform code, or a `tofu show -json` plan, or an exported IAM policy",
            path.display(),
            e.line()
        ))
    })?;
    let file = path.display().to_string();
    let inv = if json.get("planned_values").is_some() || json.get("format_version").is_some() {
        Inventory::from_plan(&json, &file)
    } else if json.get("bindings").is_some() {
        let target = parent_target(opts.policy_resource.as_deref().unwrap_or("projects/(exported-policy)"));
        Inventory::from_policy(&json, &file, target)
    } else {
        return Err(InputError(format!(
            "{file}: JSON is neither a `tofu show -json` plan (planned_values) nor an IAM policy (bindings)"
        )));
    };
    Ok(RootInput { root: file, inv, files: 1, resources: 0 })
}

/// The folder itself when it holds .tf files, else its immediate sub-folders that do (sorted).
pub(crate) fn tf_dirs(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    if has_tf(path) {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut subs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| InputError(format!("{}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && has_tf(p))
        .collect();
    subs.sort();
    Ok(subs)
}

/// The roots to analyze: at least one.
fn root_dirs(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let roots = tf_dirs(path)?;
    if roots.is_empty() {
        return Err(InputError(format!("{}: no .tf files here nor in its immediate sub-folders", path.display())));
    }
    Ok(roots)
}

/// Evaluates one Terraform root; its diagnostics and notes go to the report.
fn hcl_input(root: &Path, opts: &Options, report: &mut Report) -> RootInput {
    let world = World::new();
    let inst = world.root(root, &opts.var_files, &opts.vars);
    let resources = world.all_resources(&inst);
    let project = crate::eval::Ev { world: &world, inst: &inst }
        .default_project()
        .to_symbolic_string()
        .unwrap_or_else(|| "${provider.project}".into());
    let inv = Inventory::from_resources(&resources, &project);
    report.diagnostics.extend(world.diagnostics.borrow().iter().cloned());
    report.warnings.extend(world.warnings.borrow().iter().cloned());
    report.notes.extend(world.notes.borrow().iter().cloned());
    let files: usize = world.sources().iter().map(|s| s.files.len()).sum();
    RootInput { root: crate::source::normalize(root).display().to_string(), inv, files, resources: resources.len() }
}

/// Rules and escalation paths of one root, appended to the report.
fn analyze_root(input: RootInput, base_roles: &RoleCatalog, opts: &Options, report: &mut Report) {
    let RootInput { root, inv, files, resources } = input;
    let mut roles = RoleCatalog::default();
    // Per root: custom roles of one environment must not leak into another.
    let mut merged = RoleCatalogView::new(base_roles, &mut roles);
    for cr in &inv.custom_roles {
        merged.add(&cr.name, cr.permissions.clone());
    }
    let (mut bindings, inactive): (Vec<Binding>, Vec<Binding>) =
        inv.bindings.iter().cloned().partition(|b| condition_verdict(b, opts.today) != Verdict::Never);
    for b in &mut bindings {
        b.conditional = condition_verdict(b, opts.today) == Verdict::Conditional;
    }
    let mut findings = binding_findings(&bindings, &merged, opts, &inv);
    findings.extend(resource_findings(&inv));
    let catalog = merged.into_catalog();
    let mut graph = EscalationGraph::build(&inv, &bindings, &catalog);
    let mut paths = graph.paths();
    let providers: Vec<&crate::model::WifProvider> = inv.wif_providers.iter().collect();
    for p in &mut paths {
        p.source_width = crate::model::federation_width(&p.from, &providers);
    }
    report.truncated |= graph.truncated;
    findings.extend(paths.iter().map(|p| path_finding(p, &root)));
    for f in &mut findings {
        f.root = root.clone();
    }
    // One finding per (rule, member, resource, location).
    let mut seen = BTreeSet::new();
    findings.retain(|f| seen.insert((f.rule, f.member.clone(), f.resource.clone(), f.location.clone())));
    report.findings.extend(findings);
    report.roots.push(RootResult {
        root,
        files,
        resources,
        graph_dot: graph.to_dot(&paths),
        graph_mermaid: graph.to_mermaid(),
        bindings,
        inactive_bindings: inactive,
        paths,
    });
}

/// IAM010 (act as a more privileged principal) or IAM011 (control of a resource), located at
/// the first binding of the witness.
fn path_finding(p: &EscalationPath, root: &str) -> Finding {
    let (id, what) = if p.self_escalation {
        ("IAM011", format!("{} can take control of {}", p.from, p.to))
    } else {
        ("IAM010", format!("{} can act as {}", p.from, p.to))
    };
    let chain: Vec<String> = p
        .steps
        .iter()
        .map(|s| {
            let at = s.evidence.first().map(|l| format!(" at {l}")).unwrap_or_default();
            format!("{} → {} via {} ({}){at}", s.from, s.to, s.method, s.permission)
        })
        .collect();
    let loc =
        p.steps.first().and_then(|s| s.evidence.first().cloned()).unwrap_or(Loc { file: root.to_string(), line: 0 });
    let certainty = if p.conditional { " (conditional: a step depends on an IAM condition)" } else { "" };
    let width = p.source_width.as_ref().map(|w| format!(" [federated source: {w}]")).unwrap_or_default();
    let mut f = Finding::new(id, format!("{what}{certainty}{width}: {}", chain.join("; ")), loc);
    f.member = p.from.clone();
    f.resource = p.to.clone();
    if is_symbolic(&p.from) || is_symbolic(&p.to) {
        f.symbolic.push("path endpoints include values known only after plan".into());
    }
    f.path = Some(p.clone());
    f
}

/// Base catalogue plus this root's custom roles, without copying the base.
struct RoleCatalogView<'a> {
    base: &'a RoleCatalog,
    extra: &'a mut RoleCatalog,
}

impl<'a> RoleCatalogView<'a> {
    fn new(base: &'a RoleCatalog, extra: &'a mut RoleCatalog) -> Self {
        RoleCatalogView { base, extra }
    }
    fn add(&mut self, name: &str, perms: BTreeSet<String>) {
        self.extra.add_custom(name, perms);
    }
    fn get(&self, name: &str) -> Option<&crate::roles::Role> {
        self.extra.get(name).or_else(|| self.base.get(name))
    }
    fn into_catalog(self) -> CombinedCatalog<'a> {
        CombinedCatalog { base: self.base, extra: self.extra }
    }
}

pub struct CombinedCatalog<'a> {
    base: &'a RoleCatalog,
    extra: &'a RoleCatalog,
}

impl crate::roles::RoleLookup for CombinedCatalog<'_> {
    fn role(&self, name: &str) -> Option<&crate::roles::Role> {
        self.extra.get(name).or_else(|| self.base.get(name))
    }
}

/// What a binding's IAM condition says today, when it can be decided from the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No condition, or one that holds today whatever the request.
    Always,
    /// It never holds (`false`, or an expiry before today): the binding is inactive.
    Never,
    /// It depends on the request (resource name, tags, time of day...): paths through it are
    /// reported as conditional.
    Conditional,
}

/// Decides a condition statically: `true`, `false`, and `request.time` against a timestamp,
/// joined by `&&`. Anything else is conditional.
pub fn condition_verdict(b: &Binding, today: Date) -> Verdict {
    let Some(c) = &b.condition else {
        return Verdict::Always;
    };
    let expr = c.expression.replace([' ', '\n', '\t'], "");
    if expr.contains("||") || expr.is_empty() {
        return if expr.is_empty() { Verdict::Always } else { Verdict::Conditional };
    }
    let mut verdict = Verdict::Always;
    for part in expr.split("&&") {
        let part = part.trim_matches(|ch| ch == '(' || ch == ')');
        let v = match part {
            "true" => Verdict::Always,
            "false" => Verdict::Never,
            _ => time_verdict(part, today),
        };
        verdict = match (verdict, v) {
            (Verdict::Never, _) | (_, Verdict::Never) => Verdict::Never,
            (Verdict::Conditional, _) | (_, Verdict::Conditional) => Verdict::Conditional,
            _ => Verdict::Always,
        };
    }
    verdict
}

/// `request.time < timestamp("YYYY-MM-DD…")` (or `>`): decided by the date against today;
/// a comparison on the day itself, or any other expression, is conditional.
fn time_verdict(part: &str, today: Date) -> Verdict {
    let Some(rest) = part.strip_prefix("request.time") else {
        return Verdict::Conditional;
    };
    let (before, rest) = match rest.strip_prefix("<=").or_else(|| rest.strip_prefix('<')) {
        Some(r) => (true, r),
        None => match rest.strip_prefix(">=").or_else(|| rest.strip_prefix('>')) {
            Some(r) => (false, r),
            None => return Verdict::Conditional,
        },
    };
    let Some(arg) = rest.strip_prefix("timestamp(") else {
        return Verdict::Conditional;
    };
    let Some(date) = Date::parse(arg.trim_start_matches(['"', '\'']).get(..10).unwrap_or("")) else {
        return Verdict::Conditional;
    };
    match (before, date.cmp(&today)) {
        (_, std::cmp::Ordering::Equal) => Verdict::Conditional,
        (true, std::cmp::Ordering::Greater) | (false, std::cmp::Ordering::Less) => Verdict::Always,
        _ => Verdict::Never,
    }
}

/// `request.time < timestamp("2024-01-01T00:00:00Z")` with that date before today.
pub fn condition_expired(b: &Binding, today: Date) -> bool {
    condition_verdict(b, today) == Verdict::Never
}

fn binding_findings(
    bindings: &[Binding],
    roles: &RoleCatalogView<'_>,
    opts: &Options,
    inv: &Inventory,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for b in bindings {
        let text = BindingText::new(b);
        member_findings(b, &text, &mut out);
        let Some(role) = roles.get(&b.role) else {
            if !is_symbolic(&b.role) && !is_basic_role(&b.role) {
                let message = format!("role {} (granted to {}) is unknown", b.role, b.member);
                out.push(Finding::new("IAM012", message, b.loc.clone()).on(b));
            }
            continue;
        };
        // A basic role is IAM001 already; its dangers are not repeated as IAM003/4/5/14/2.
        if is_basic_role(&b.role) {
            continue;
        }
        if b.target.is_container() {
            container_findings(b, role, &text, &mut out);
        }
        if !role.custom && role.permissions.len() >= opts.broad_threshold {
            out.push(broad_role_finding(b, role, &text, inv));
        }
    }
    out
}

/// The parts of a binding's messages shared by its findings.
struct BindingText {
    /// `role on resource`.
    at: String,
    /// ` (condition: title)`, or empty.
    cond: String,
}

impl BindingText {
    fn new(b: &Binding) -> BindingText {
        let cond = b
            .condition
            .as_ref()
            .map(|c| format!(" (condition: {})", if c.title.is_empty() { &c.expression } else { &c.title }))
            .unwrap_or_default();
        BindingText { at: format!("{} on {}", b.role, b.target.key()), cond }
    }
}

/// Findings that need no role catalogue: public member, symbolic values, basic role.
fn member_findings(b: &Binding, text: &BindingText, out: &mut Vec<Finding>) {
    let BindingText { at, cond } = text;
    if matches!(b.member.as_str(), "allUsers" | "allAuthenticatedUsers") {
        out.push(Finding::new("IAM006", format!("{} granted {at}{cond}", b.member), b.loc.clone()).on(b));
    }
    if is_symbolic(&b.member) || is_symbolic(&b.role) || is_symbolic(&b.target.id) {
        let message = format!("{} granted {at}: {}", b.member, b.symbolic().join("; "));
        out.push(Finding::new("IAM013", message, b.loc.clone()).on(b));
    }
    if is_basic_role(&b.role) {
        out.push(Finding::new("IAM001", format!("{} granted basic role {at}{cond}", b.member), b.loc.clone()).on(b));
    }
}

/// A dangerous permission granted on a whole project, folder or organization: it reaches
/// every service account (or secret) beneath.
struct ContainerRule {
    id: &'static str,
    dangers: &'static [Danger],
    /// What the member can do, e.g. `can act as every service account`.
    what: &'static str,
    /// The message lists the dangerous permissions the role holds.
    lists_permissions: bool,
}

/// In the order the findings are reported.
const CONTAINER_RULES: &[ContainerRule] = &[
    ContainerRule {
        id: "IAM003",
        dangers: &[
            Danger::TokenCreation,
            Danger::SignBlob,
            Danger::SignJwt,
            Danger::ImplicitDelegation,
            Danger::OpenIdToken,
        ],
        what: "can mint tokens for every service account",
        lists_permissions: true,
    },
    ContainerRule {
        id: "IAM004",
        dangers: &[Danger::ActAs],
        what: "can act as every service account",
        lists_permissions: false,
    },
    ContainerRule {
        id: "IAM005",
        dangers: &[Danger::KeyCreation],
        what: "can create keys for every service account",
        lists_permissions: false,
    },
    ContainerRule {
        id: "IAM014",
        dangers: &[Danger::SecretAccess],
        what: "can read every secret",
        lists_permissions: false,
    },
];

fn container_findings(b: &Binding, role: &crate::roles::Role, text: &BindingText, out: &mut Vec<Finding>) {
    assert!(b.target.is_container());
    for rule in CONTAINER_RULES {
        let held: Vec<&str> = role
            .permissions
            .iter()
            .filter(|p| danger_of(p).is_some_and(|x| rule.dangers.contains(&x)))
            .map(String::as_str)
            .collect();
        if held.is_empty() {
            continue;
        }
        let listed = if rule.lists_permissions { format!(" ({})", held.join(", ")) } else { String::new() };
        let message = format!("{} {} under {}: {}{listed}{}", b.member, rule.what, b.target.key(), b.role, text.cond);
        out.push(Finding::new(rule.id, message, b.loc.clone()).on(b));
    }
}

/// IAM002: a broad predefined role, with a narrower custom role of this code when there is one.
fn broad_role_finding(b: &Binding, role: &crate::roles::Role, text: &BindingText, inv: &Inventory) -> Finding {
    let dangerous = role.permissions.iter().filter(|p| danger_of(p).is_some()).count();
    let narrower = inv
        .custom_roles
        .iter()
        .filter(|c| !c.permissions.is_empty() && c.permissions.is_subset(&role.permissions))
        .min_by_key(|c| c.permissions.len())
        .map(|c| {
            format!("; custom role {} in this code grants a narrower set ({} permissions)", c.name, c.permissions.len())
        })
        .unwrap_or_default();
    let message = format!(
        "{} granted {}: {} permissions ({dangerous} dangerous){narrower}",
        b.member,
        text.at,
        role.permissions.len()
    );
    Finding::new("IAM002", message, b.loc.clone()).on(b)
}

fn resource_findings(inv: &Inventory) -> Vec<Finding> {
    let mut out = Vec::new();
    for k in &inv.keys {
        let (id, what) = match k.kind {
            "service-account-key" => ("IAM007", "service account key"),
            "hmac-key" => ("IAM008", "HMAC key"),
            _ => ("IAM008", "API key"),
        };
        let sa = k.service_account.clone().unwrap_or_default();
        let mut f = Finding::new(
            id,
            format!(
                "{what} created by {}{}",
                k.address,
                if sa.is_empty() { String::new() } else { format!(" for {sa}") }
            ),
            k.loc.clone(),
        );
        f.resource = if sa.is_empty() { k.address.clone() } else { format!("serviceAccount:{sa}") };
        f.address = k.address.clone();
        out.push(f);
    }
    for p in &inv.org_policies {
        if p.relaxes && !p.conditional && matches!(p.parent.kind, TargetKind::Organization | TargetKind::Folder) {
            let mut f = Finding::new(
                "IAM009",
                format!("{} relaxes constraint {} for all of {}", p.address, p.constraint, p.parent.key()),
                p.loc.clone(),
            );
            f.resource = p.parent.key();
            f.address = p.address.clone();
            out.push(f);
        }
    }
    for w in &inv.wif_providers {
        if !w.has_condition {
            let mut f = Finding::new(
                "IAM015",
                format!("{} (pool {}) accepts any identity of its issuer: no attribute_condition", w.address, w.pool),
                w.loc.clone(),
            );
            f.resource = w.address.clone();
            f.address = w.address.clone();
            out.push(f);
        }
    }
    out
}

/// Which exceptions the analysis can judge. Checking one root of a folder of roots
/// (`infra/envs/prod` of `infra/envs`) cannot tell whether an exception recorded for a sibling
/// root (`dev`, `staging`) is used: an exception whose resource and member are both absent from
/// the analyzed roots is out of scope there. Checking the whole folder judges every exception,
/// so a stale one still fails as EXC002.
fn exceptions_in_scope(report: &Report, input: &Path, reg: &Registry) -> Vec<bool> {
    let partial = has_tf(input)
        && input.parent().is_some_and(|parent| {
            tf_dirs(parent).is_ok_and(|roots| roots.iter().any(|r| r.file_name() != input.file_name()))
        });
    if !partial {
        return vec![true; reg.exceptions.len()];
    }
    let mut mentioned: BTreeSet<&str> = BTreeSet::new();
    for r in &report.roots {
        for b in r.bindings.iter().chain(&r.inactive_bindings) {
            mentioned.insert(&b.member);
            mentioned.insert(&b.target.id);
        }
        for p in &r.paths {
            mentioned.insert(&p.from);
            mentioned.insert(&p.to);
        }
    }
    for f in &report.findings {
        mentioned.insert(&f.member);
        mentioned.insert(&f.resource);
    }
    let known = |text: &str| {
        let bare = text.strip_prefix("serviceAccount:").unwrap_or(text);
        mentioned.contains(text)
            || mentioned.contains(bare)
            || mentioned.contains(format!("serviceAccounts/{bare}").as_str())
    };
    reg.exceptions.iter().map(|e| known(&e.resource) || known(&e.member)).collect()
}

fn apply_exceptions(report: &mut Report, input: &Path, opts: &Options) {
    if opts.no_exceptions {
        return;
    }
    let path = match &opts.exceptions {
        Some(p) => Some(p.clone()),
        None => Registry::discover(input),
    };
    let Some(path) = path else {
        return;
    };
    let file = path.display().to_string();
    report.exceptions_registry = Some(file.clone());
    let reg = match Registry::load(&path) {
        Ok(r) => r,
        Err(e) => {
            report.diagnostics.push(Diagnostic { loc: Loc { file, line: 0 }, message: e.to_string() });
            return;
        }
    };
    let in_scope = exceptions_in_scope(report, input, &reg);
    let out_of_scope = in_scope.iter().filter(|x| !**x).count();
    if out_of_scope > 0 {
        report.notes.push(format!(
            "{out_of_scope} exception(s) of {file} concern roots outside {} (out of scope, not judged)",
            input.display()
        ));
    }
    let mut used = vec![false; reg.exceptions.len()];
    for f in &mut report.findings {
        for (i, e) in reg.exceptions.iter().enumerate() {
            if !e.covers(f.rule, &f.resource, &f.address, &f.member) {
                continue;
            }
            used[i] = true;
            let valid = e.expires_date().is_some_and(|d| d >= opts.today);
            if valid && f.excepted.is_none() {
                f.excepted = Some(crate::analyze::ExceptedBy {
                    ticket: e.ticket.clone(),
                    approver: e.approver.clone(),
                    expires: e.expires.clone(),
                    justification: e.justification.clone(),
                    registry: file.clone(),
                    line: e.line,
                });
            }
        }
    }
    let mut extra = Vec::new();
    for (i, e) in reg.exceptions.iter().enumerate() {
        if !in_scope[i] {
            continue;
        }
        let loc = Loc { file: file.clone(), line: e.line };
        let expired = e.expires_date().is_none_or(|d| d < opts.today);
        let mut f = if expired {
            Finding::new(
                "EXC001",
                format!(
                    "exception for {} on {} / {} (ticket {}) expired on {}",
                    e.rule, e.resource, e.member, e.ticket, e.expires
                ),
                loc,
            )
        } else if !used[i] {
            Finding::new(
                "EXC002",
                format!(
                    "exception for {} on {} / {} (ticket {}) matches no finding",
                    e.rule, e.resource, e.member, e.ticket
                ),
                loc,
            )
        } else {
            continue;
        };
        f.resource = e.resource.clone();
        f.member = e.member.clone();
        extra.push(f);
    }
    for m in &reg.malformed {
        extra.push(Finding::new(
            "EXC003",
            format!("malformed exception: {}", m.problem),
            Loc { file: file.clone(), line: m.line },
        ));
    }
    report.findings.extend(extra);
}
