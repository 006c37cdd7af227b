//! Every folder under tests/fixtures is a small Terraform root with an `expected.json` next
//! to it: the escalation paths (from, to, methods of the shortest witness) and the failing
//! rule ids. The analyzer must produce exactly those (built-in role subset, fixed date).

use fintrail_iam::analyze::{analyze, Options};
use fintrail_iam::catalogue::STRUCTURAL_STEPS;
use fintrail_iam::date::Date;
use fintrail_iam::roles::RoleCatalog;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The catalogue's size: distinct methods (structural steps aside), each with a positive and a
/// negative fixture. The test fails if coverage drops below it.
const MIN_METHODS: usize = 45;

#[derive(serde::Deserialize)]
struct Expected {
    description: String,
    today: String,
    paths: Vec<ExpectedPath>,
    rules: Vec<String>,
    /// A negative fixture: the methods whose shape it has, lacking one permission or with the
    /// permission on an unrelated resource. It must give no path and no failing rule.
    #[serde(default)]
    negative_of: Vec<String>,
}

#[derive(serde::Deserialize, PartialEq, Eq, PartialOrd, Ord, Debug, Clone)]
struct ExpectedPath {
    from: String,
    to: String,
    methods: Vec<String>,
    /// The path depends on an IAM condition the analyzer cannot decide.
    #[serde(default)]
    conditional: bool,
}

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_fixture_matches_its_expected_result() {
    let dirs = fixture_dirs();
    assert!(dirs.len() >= 2 * MIN_METHODS, "fixture suite shrank: {}", dirs.len());
    let roles = RoleCatalog::builtin();
    let mut failures = Vec::new();
    let mut methods_seen = BTreeSet::new();
    let mut negated = BTreeSet::new();
    for dir in &dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
        let expected: Expected =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).expect("read"))
                .expect("expected.json parses");
        assert!(!expected.description.is_empty());
        let opts =
            Options { today: Date::parse(&expected.today).expect("date"), no_exceptions: true, ..Options::default() };
        let report = analyze(dir, &opts, &roles).expect("analyzes");
        assert!(report.diagnostics.is_empty(), "{name}: {:?}", report.diagnostics);
        let got: BTreeSet<ExpectedPath> = report
            .roots
            .iter()
            .flat_map(|r| r.paths.iter())
            .map(|p| ExpectedPath {
                from: p.from.clone(),
                to: p.to.clone(),
                methods: p.methods(),
                conditional: p.conditional,
            })
            .collect();
        let want: BTreeSet<ExpectedPath> = expected.paths.iter().cloned().collect();
        if got != want {
            failures.push(format!("{name}: paths\n  want {want:?}\n  got  {got:?}"));
        }
        let got_rules: BTreeSet<String> =
            report.findings.iter().filter(|f| f.fails()).map(|f| f.rule.to_string()).collect();
        let want_rules: BTreeSet<String> = expected.rules.iter().cloned().collect();
        if got_rules != want_rules {
            let msgs: Vec<String> = report.findings.iter().map(|f| format!("{} {}", f.rule, f.message)).collect();
            failures.push(format!("{name}: rules want {want_rules:?} got {got_rules:?}\n    {}", msgs.join("\n    ")));
        }
        // Negative fixtures must be clean; positive ones must exit 1.
        let clean = want.is_empty() && want_rules.is_empty();
        if report.exit_code() != if clean { 0 } else { 1 } {
            failures.push(format!("{name}: exit code {}", report.exit_code()));
        }
        for p in &want {
            methods_seen.extend(p.methods.iter().filter(|m| !STRUCTURAL_STEPS.contains(&m.as_str())).cloned());
        }
        assert!(expected.negative_of.is_empty() || clean, "{name}: a negative fixture expects nothing");
        negated.extend(expected.negative_of.iter().cloned());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        methods_seen.len() >= MIN_METHODS,
        "at least {MIN_METHODS} distinct escalation methods covered, got {}: {methods_seen:?}",
        methods_seen.len()
    );
    let without_negative: Vec<&String> = methods_seen.difference(&negated).collect();
    assert!(without_negative.is_empty(), "methods without a negative fixture: {without_negative:?}");
    let without_positive: Vec<&String> = negated.difference(&methods_seen).collect();
    assert!(without_positive.is_empty(), "negative fixtures of methods no positive shows: {without_positive:?}");
}
