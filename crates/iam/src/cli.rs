//! `fintrail iam ...` command line. Exit codes: 0 clean, 1 findings, 2 usage or input error.

use crate::analyze::{self, Options, Report};
use crate::date::Date;
use crate::exceptions;
use crate::graph::EscalationPath;
use crate::report;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Arguments of `fintrail iam`.
#[derive(Debug, clap::Args)]
pub struct IamArgs {
    #[command(subcommand)]
    pub command: IamCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum IamCommand {
    /// Least-privilege rules and escalation paths for a Terraform/OpenTofu root (or plan/policy JSON)
    Check(CheckArgs),
    /// List privilege-escalation paths (shortest witness first); draw them with --dot/--svg/--mermaid
    Paths(PathsArgs),
    /// Effective IAM bindings per environment (member, role, resource, condition, file:line)
    Bindings(CheckArgs),
    /// Check the module contract (types, descriptions, pinned providers, README, labels)
    Shape(ShapeArgs),
    /// Policy exceptions registry
    #[command(subcommand)]
    Exception(ExceptionCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Terraform/OpenTofu root or module folder, a folder of roots (e.g. infra/envs),
    /// a `tofu show -json` plan file, or an exported IAM policy JSON
    pub path: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Predefined role catalogue: a folder of `gcloud iam roles describe --format=json` files
    /// (default: shared/data/gcp-iam-roles found above the current folder, else a built-in subset)
    #[arg(long, env = "FINTRAIL_IAM_ROLES")]
    pub roles: Option<PathBuf>,
    /// Use only the built-in subset of predefined roles (no catalogue lookup)
    #[arg(long, conflicts_with = "roles")]
    pub builtin_roles: bool,
    /// Exceptions registry (default: policy/exceptions.toml or infra/policy/exceptions.toml above PATH)
    #[arg(long)]
    pub exceptions: Option<PathBuf>,
    /// Ignore any exceptions registry
    #[arg(long, conflicts_with = "exceptions")]
    pub no_exceptions: bool,
    /// Today's date for expiry decisions (YYYY-MM-DD; default: the system clock, UTC)
    #[arg(long, env = "FINTRAIL_TODAY")]
    pub today: Option<String>,
    /// Root variable value, NAME=VALUE (HCL literal or raw string); repeatable
    #[arg(long = "var")]
    pub vars: Vec<String>,
    /// Extra variables file (.tfvars or .tfvars.json); repeatable
    #[arg(long = "var-file")]
    pub var_files: Vec<PathBuf>,
    /// A predefined role with at least this many permissions is "broad" (IAM002)
    #[arg(long, default_value_t = 50)]
    pub broad_threshold: usize,
    /// For an exported IAM policy: the resource it belongs to (projects/ID, folders/ID, organizations/ID)
    #[arg(long)]
    pub policy_resource: Option<String>,
    /// Write the report to this file instead of standard output
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PathsArgs {
    #[command(flatten)]
    pub check: CheckArgs,
    /// Print the escalation graph as Graphviz DOT
    #[arg(long, group = "draw")]
    pub dot: bool,
    /// Print the escalation graph as a Mermaid flowchart
    #[arg(long, group = "draw")]
    pub mermaid: bool,
    /// Render the escalation graph to this SVG file (needs Graphviz `dot` on PATH)
    #[arg(long, group = "draw")]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ShapeArgs {
    /// A module folder, or a folder of modules (e.g. infra/modules)
    pub path: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ExceptionCommand {
    /// Record a policy exception (validated, appended to the registry)
    Add(ExceptionAddArgs),
    /// List the registry's exceptions and their state
    List(ExceptionListArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExceptionAddArgs {
    /// Rule id (e.g. IAM003)
    #[arg(long)]
    pub rule: String,
    /// Resource as reported by the finding (e.g. projects/p) or its resource address
    #[arg(long)]
    pub resource: String,
    /// Member as reported (e.g. serviceAccount:ci@p.iam.gserviceaccount.com), or * for resource findings
    #[arg(long)]
    pub member: String,
    #[arg(long)]
    pub justification: String,
    #[arg(long)]
    pub approver: String,
    #[arg(long)]
    pub ticket: String,
    /// Expiry date, YYYY-MM-DD (must not be in the past)
    #[arg(long)]
    pub expires: String,
    /// Registry file
    #[arg(long, default_value = "infra/policy/exceptions.toml")]
    pub exceptions: PathBuf,
    #[arg(long, env = "FINTRAIL_TODAY")]
    pub today: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExceptionListArgs {
    #[arg(long, default_value = "infra/policy/exceptions.toml")]
    pub exceptions: PathBuf,
    #[arg(long, env = "FINTRAIL_TODAY")]
    pub today: Option<String>,
}

fn today(arg: Option<&str>) -> Result<Date, String> {
    match arg {
        None => Ok(Date::today_utc()),
        Some(t) => Date::parse(t)
            .filter(|_| t.trim().len() == 10)
            .ok_or_else(|| format!("--today {t:?} is not a YYYY-MM-DD date")),
    }
}

fn options(a: &CheckArgs) -> Result<Options, String> {
    let mut vars = Vec::new();
    for v in &a.vars {
        let (k, val) = v.split_once('=').ok_or_else(|| format!("--var {v:?} must be NAME=VALUE"))?;
        vars.push((k.trim().to_string(), val.to_string()));
    }
    Ok(Options {
        roles_dir: a.roles.clone(),
        builtin_roles: a.builtin_roles,
        exceptions: a.exceptions.clone(),
        no_exceptions: a.no_exceptions,
        today: today(a.today.as_deref())?,
        var_files: a.var_files.clone(),
        vars,
        broad_threshold: a.broad_threshold.max(1),
        policy_resource: a.policy_resource.clone(),
    })
}

fn emit(output: Option<&Path>, text: &str, out: &mut dyn Write, err: &mut dyn Write) -> bool {
    match output {
        Some(p) => match std::fs::write(p, text) {
            Ok(()) => true,
            Err(e) => {
                let _ = writeln!(err, "fintrail iam: cannot write {}: {e}", p.display());
                false
            }
        },
        None => {
            let _ = out.write_all(text.as_bytes());
            true
        }
    }
}

fn run_analysis(a: &CheckArgs, err: &mut dyn Write) -> Result<Report, u8> {
    let opts = options(a).map_err(|e| {
        let _ = writeln!(err, "fintrail iam: {e}");
        2u8
    })?;
    let roles = analyze::load_roles(&opts, &a.path).map_err(|e| {
        let _ = writeln!(err, "fintrail iam: {e}");
        2u8
    })?;
    analyze::analyze(&a.path, &opts, &roles).map_err(|e| {
        let _ = writeln!(err, "fintrail iam: {e}");
        2u8
    })
}

fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => report::text(report),
        Format::Json => report::json(report),
        Format::Sarif => report::sarif(report),
    }
}

/// Runs `fintrail iam` writing to the given streams; returns the exit code.
pub fn run_with(args: IamArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match args.command {
        IamCommand::Check(a) => check(&a, out, err),
        IamCommand::Bindings(a) => bindings(&a, out, err),
        IamCommand::Paths(p) => paths(&p, out, err),
        IamCommand::Shape(s) => shape(&s, out, err),
        IamCommand::Exception(ExceptionCommand::Add(a)) => exception_add(&a, out, err),
        IamCommand::Exception(ExceptionCommand::List(a)) => exception_list(&a, out, err),
    }
}

fn print_diagnostics(report: &Report, err: &mut dyn Write) {
    for d in &report.diagnostics {
        let _ = writeln!(err, "error: {}: {}", d.loc, d.message);
    }
    for d in &report.warnings {
        let _ = writeln!(err, "warning: {}: {}", d.loc, d.message);
    }
}

/// `fintrail iam check`: the report; exit 0 clean, 1 findings, 2 input error.
fn check(a: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let report = match run_analysis(a, err) {
        Ok(r) => r,
        Err(code) => return code,
    };
    if !emit(a.output.as_deref(), &render(&report, a.format), out, err) {
        return 2;
    }
    print_diagnostics(&report, err);
    report.exit_code()
}

/// `fintrail iam bindings`: a listing, not a verdict, so findings do not change the exit code.
fn bindings(a: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let report = match run_analysis(a, err) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let text = match a.format {
        Format::Text => bindings_text(&report),
        Format::Json | Format::Sarif => bindings_json(&report),
    };
    if !emit(a.output.as_deref(), &text, out, err) {
        return 2;
    }
    if report.diagnostics.is_empty() {
        0
    } else {
        2
    }
}

fn bindings_text(report: &Report) -> String {
    let mut s = String::new();
    for r in &report.roots {
        s.push_str(&format!("# {} ({} effective bindings)\n", r.root, r.bindings.len()));
        for b in &r.bindings {
            let cond = b.condition.as_ref().map(|c| format!("  if {}", c.expression)).unwrap_or_default();
            s.push_str(&format!("{}\t{}\t{}\t{}{cond}\n", b.member, b.role, b.target.key(), b.loc));
        }
        for b in &r.inactive_bindings {
            s.push_str(&format!("(expired) {}\t{}\t{}\t{}\n", b.member, b.role, b.target.key(), b.loc));
        }
    }
    s
}

fn bindings_json(report: &Report) -> String {
    let roots: Vec<serde_json::Value> = report
        .roots
        .iter()
        .map(|r| serde_json::json!({"root": r.root, "bindings": r.bindings, "inactive_bindings": r.inactive_bindings}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({"roots": roots})).unwrap_or_default()
}

/// `fintrail iam paths`: exit 1 when there is any escalation path, whatever the other findings.
fn paths(p: &PathsArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let report = match run_analysis(&p.check, err) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let paths: Vec<EscalationPath> = report.roots.iter().flat_map(|r| r.paths.iter().cloned()).collect();
    let text = if p.dot {
        graph_dot(&report)
    } else if p.mermaid {
        report.roots.iter().map(|r| r.graph_mermaid.clone()).collect::<Vec<_>>().join("\n")
    } else if let Some(svg) = &p.svg {
        match render_svg(&graph_dot(&report), svg) {
            Ok(()) => format!("wrote {}\n", svg.display()),
            Err(e) => {
                let _ = writeln!(err, "fintrail iam paths: {e}");
                return 2;
            }
        }
    } else {
        paths_listing(&report, &paths, p.check.format)
    };
    if !emit(p.check.output.as_deref(), &text, out, err) {
        return 2;
    }
    print_diagnostics(&report, err);
    if !report.diagnostics.is_empty() {
        2
    } else if paths.is_empty() {
        0
    } else {
        1
    }
}

fn graph_dot(report: &Report) -> String {
    report.roots.iter().map(|r| r.graph_dot.clone()).collect::<Vec<_>>().join("\n")
}

fn paths_listing(report: &Report, paths: &[EscalationPath], format: Format) -> String {
    match format {
        Format::Text => {
            if paths.is_empty() {
                "no escalation paths\n".to_string()
            } else {
                report::paths_text(paths)
            }
        }
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({"paths": paths})).unwrap_or_default(),
        Format::Sarif => {
            let mut only = report.clone();
            only.findings.retain(|f| f.path.is_some());
            report::sarif(&only)
        }
    }
}

/// `fintrail iam shape`: the module contract report.
fn shape(s: &ShapeArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let report = match crate::shape::shape(&s.path) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "fintrail iam shape: {e}");
            return 2;
        }
    };
    let text = match s.format {
        Format::Text => report::text(&report).replacen("fintrail iam check", "fintrail iam shape", 1),
        f => render(&report, f),
    };
    if !emit(s.output.as_deref(), &text, out, err) {
        return 2;
    }
    report.exit_code()
}

/// `fintrail iam exception add`: validates, then appends to the registry.
fn exception_add(a: &ExceptionAddArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let today = match today(a.today.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "fintrail iam exception add: {e}");
            return 2;
        }
    };
    let exc = exceptions::Exception {
        rule: a.rule.clone(),
        resource: a.resource.clone(),
        member: a.member.clone(),
        justification: a.justification.clone(),
        approver: a.approver.clone(),
        ticket: a.ticket.clone(),
        expires: a.expires.clone(),
        line: 0,
    };
    if !analyze::RULES.iter().any(|r| r.id == exc.rule) {
        let _ = writeln!(err, "fintrail iam exception add: unknown rule {:?}", exc.rule);
        return 2;
    }
    match exceptions::add(&a.exceptions, &exc, today) {
        Ok(()) => {
            let _ = writeln!(
                out,
                "recorded exception {} on {} / {} (ticket {}, expires {}) in {}",
                exc.rule,
                exc.resource,
                exc.member,
                exc.ticket,
                exc.expires,
                a.exceptions.display()
            );
            0
        }
        Err(e) => {
            let _ = writeln!(err, "fintrail iam exception add: {e}");
            2
        }
    }
}

/// `fintrail iam exception list`: exit 1 when any exception is expired or malformed.
fn exception_list(a: &ExceptionListArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let loaded = today(a.today.as_deref())
        .and_then(|t| exceptions::Registry::load(&a.exceptions).map(|r| (t, r)).map_err(|e| e.to_string()));
    let (today, reg) = match loaded {
        Ok(x) => x,
        Err(e) => {
            let _ = writeln!(err, "fintrail iam exception list: {e}");
            return 2;
        }
    };
    let valid = |e: &exceptions::Exception| e.expires_date().is_some_and(|d| d >= today);
    for e in &reg.exceptions {
        let state = if valid(e) { "valid" } else { "EXPIRED" };
        let _ = writeln!(
            out,
            "{}:{}\t{state}\t{}\t{}\t{}\tticket {}\tapprover {}\texpires {}",
            a.exceptions.display(),
            e.line,
            e.rule,
            e.resource,
            e.member,
            e.ticket,
            e.approver,
            e.expires
        );
    }
    for m in &reg.malformed {
        let _ = writeln!(out, "{}:{}\tMALFORMED\t{}", a.exceptions.display(), m.line, m.problem);
    }
    if reg.malformed.is_empty() && reg.exceptions.iter().all(valid) {
        0
    } else {
        1
    }
}

fn render_svg(dot: &str, svg: &Path) -> Result<(), String> {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join("dot").is_file())).unwrap_or(false);
    if !found {
        return Err("--svg needs Graphviz `dot` on PATH (apt-get install graphviz); use --dot or --mermaid to get the graph as text".into());
    }
    let mut child = std::process::Command::new("dot")
        .args(["-Tsvg", "-o"])
        .arg(svg)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run dot: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(dot.as_bytes()).map_err(|e| format!("writing to dot: {e}"))?;
    }
    let status = child.wait().map_err(|e| format!("dot: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("dot exited with {status}"))
    }
}

/// Runs `fintrail iam`; returns the process exit code.
pub fn run(args: IamArgs) -> u8 {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    run_with(args, &mut out, &mut err)
}
