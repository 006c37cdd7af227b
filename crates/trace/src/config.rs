//! What counts as a task reference, which paths are sensitive, and who may approve.
//!
//! Sources, later wins: built-in defaults → `trace.toml` at the repository root (optional,
//! checked in, so every clone and CI agree) or `--config FILE` → command-line flags.

use crate::glob::GlobSet;
use regex::Regex;
use serde::Deserialize;
use std::path::Path;

/// The file looked up at the repository root when `--config` is not given.
pub const CONFIG_FILE_NAME: &str = "trace.toml";
/// Upper bound on the configuration file size: it is a small, human-written file.
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;
/// Upper bound on the number of patterns of each kind (keeps per-commit work bounded).
pub const MAX_PATTERNS: usize = 64;

pub const DEFAULT_TASK_TRAILERS: &[&str] = &["Task"];
/// `#123` issue references, not preceded by a word character, `&` (HTML entities) or `/`
/// (URL fragments). Group 1 is the reference as it is reported.
pub const DEFAULT_TASK_PATTERNS: &[&str] = &[r"(?:^|[^\w&/])(#[0-9]+)\b"];
pub const DEFAULT_SENSITIVE_PATHS: &[&str] = &["infra/**", "**/migrations/**", "**/*permission*", "**/*role*"];
pub const DEFAULT_APPROVER_TRAILERS: &[&str] = &["Reviewed-by", "Approved-by"];

/// The file format of `trace.toml`. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub references: FileReferences,
    #[serde(default)]
    pub sensitive: FileSensitive,
    #[serde(default)]
    pub merges: FileMerges,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReferences {
    /// Trailer keys whose values are task ids (`Task: CU-86b1x2`), case-insensitive.
    pub trailers: Option<Vec<String>>,
    /// Regular expressions searched in the whole message; group 1 (else the match) is the id.
    pub patterns: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSensitive {
    /// Globs of sensitive paths (see `glob`).
    pub paths: Option<Vec<String>>,
    /// Trailer keys that name an approver.
    pub approver_trailers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMerges {
    /// When true, every merge must carry its own task reference, clean or not.
    pub require_reference: Option<bool>,
}

/// Command-line overrides; `None`/empty means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub task_trailers: Vec<String>,
    pub task_patterns: Vec<String>,
    pub sensitive_paths: Vec<String>,
    pub approver_trailers: Vec<String>,
    pub merges_require_reference: bool,
}

/// The effective, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub task_trailers: Vec<String>,
    pub task_patterns: Vec<Regex>,
    pub sensitive: GlobSet,
    pub approver_trailers: Vec<String>,
    pub merges_require_reference: bool,
    /// Where the file part came from, for the report header (None: defaults only).
    pub source: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self::build(FileConfig::default(), &Overrides::default(), None).expect("the built-in defaults are valid")
    }
}

fn strings(defaults: &[&str]) -> Vec<String> {
    defaults.iter().map(|s| (*s).to_owned()).collect()
}

impl Config {
    /// Loads `explicit` if given (it must exist), else `<root>/trace.toml` if it exists.
    pub fn load(root: &Path, explicit: Option<&Path>, overrides: &Overrides) -> Result<Self, String> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (root.join(CONFIG_FILE_NAME), false),
        };
        let file = match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.len() > MAX_CONFIG_BYTES {
                    return Err(format!(
                        "{}: larger than {MAX_CONFIG_BYTES} bytes; is this the right file?",
                        path.display()
                    ));
                }
                let text =
                    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let parsed: FileConfig = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                Some(parsed)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let source = file.as_ref().map(|_| path.display().to_string());
        Self::build(file.unwrap_or_default(), overrides, source)
    }

    /// Merges defaults, file and flags, and validates the result.
    pub fn build(file: FileConfig, o: &Overrides, source: Option<String>) -> Result<Self, String> {
        let pick = |flag: &Vec<String>, file: Option<Vec<String>>, default: &[&str]| {
            if !flag.is_empty() {
                flag.clone()
            } else {
                file.unwrap_or_else(|| strings(default))
            }
        };
        let task_trailers = pick(&o.task_trailers, file.references.trailers, DEFAULT_TASK_TRAILERS);
        let pattern_sources = pick(&o.task_patterns, file.references.patterns, DEFAULT_TASK_PATTERNS);
        let sensitive_paths = pick(&o.sensitive_paths, file.sensitive.paths, DEFAULT_SENSITIVE_PATHS);
        let approver_trailers = pick(&o.approver_trailers, file.sensitive.approver_trailers, DEFAULT_APPROVER_TRAILERS);
        for (what, list) in [
            ("task trailers", &task_trailers),
            ("task patterns", &pattern_sources),
            ("sensitive paths", &sensitive_paths),
            ("approver trailers", &approver_trailers),
        ] {
            if list.len() > MAX_PATTERNS {
                return Err(format!("too many {what}: {} (at most {MAX_PATTERNS})", list.len()));
            }
        }
        if task_trailers.is_empty() && pattern_sources.is_empty() {
            return Err("no task trailer and no task pattern: nothing could ever count as a task reference".into());
        }
        for key in task_trailers.iter().chain(&approver_trailers) {
            if !crate::message::is_trailer_key(key) {
                return Err(format!(
                    "`{key}` is not a trailer key (letters, digits and `-`, e.g. `Task` or `Reviewed-by`)"
                ));
            }
        }
        let task_patterns = pattern_sources
            .iter()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .multi_line(true)
                    // Bound the compiled size: a pattern is configuration, not code.
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("task pattern `{p}` is not a valid regular expression: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sensitive = GlobSet::new(&sensitive_paths)?;
        Ok(Self {
            task_trailers,
            task_patterns,
            sensitive,
            approver_trailers,
            merges_require_reference: o.merges_require_reference || file.merges.require_reference.unwrap_or(false),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_replace_defaults_and_flags_replace_file() {
        let file: FileConfig = toml::from_str(
            r#"
            [references]
            trailers = ["Ticket"]
            [sensitive]
            paths = ["deploy/**"]
            [merges]
            require_reference = true
            "#,
        )
        .unwrap();
        let o = Overrides { sensitive_paths: vec!["k8s/**".into()], ..Overrides::default() };
        let c = Config::build(file, &o, None).unwrap();
        assert_eq!(c.task_trailers, vec!["Ticket"]);
        assert_eq!(c.task_patterns.len(), 1, "default pattern kept");
        assert_eq!(c.sensitive.patterns().collect::<Vec<_>>(), vec!["k8s/**"]);
        assert!(c.merges_require_reference);
        assert_eq!(c.approver_trailers, vec!["Reviewed-by", "Approved-by"]);
    }

    #[test]
    fn bad_configuration_is_an_error_not_a_panic() {
        let bad_regex = Overrides { task_patterns: vec!["(".into()], ..Overrides::default() };
        assert!(Config::build(FileConfig::default(), &bad_regex, None)
            .unwrap_err()
            .contains("not a valid regular expression"));
        let bad_key = Overrides { task_trailers: vec!["Task id".into()], ..Overrides::default() };
        assert!(Config::build(FileConfig::default(), &bad_key, None).unwrap_err().contains("not a trailer key"));
        assert!(toml::from_str::<FileConfig>("[references]\ntrailer = [\"x\"]").is_err());
    }

    #[test]
    fn missing_default_file_is_fine_missing_explicit_file_is_not() {
        let dir = std::env::temp_dir().join(format!("fintrail-trace-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Config::load(&dir, None, &Overrides::default()).is_ok());
        let err = Config::load(&dir, Some(&dir.join("nope.toml")), &Overrides::default()).unwrap_err();
        assert!(err.contains("nope.toml"));
        std::fs::write(dir.join(CONFIG_FILE_NAME), "[sensitive]\npaths = [\"/abs\"]\n").unwrap();
        assert!(Config::load(&dir, None, &Overrides::default()).unwrap_err().contains("absolute"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
