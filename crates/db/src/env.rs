//! Configuration from the environment, the production way (12-factor): a reader that turns
//! variables into typed values and collects every missing or malformed one, each named, so a
//! process that is misconfigured says all of it at once and stops before doing anything.
//!
//! Secrets come as Cloud Run hands them over from Secret Manager: as the variable itself, or as
//! a mounted file named by `<NAME>_FILE` (never both). A secret's value never appears in a
//! message. An empty variable counts as unset. The variables are listed in
//! `docs/configuration.md`.

use std::ffi::OsString;
use std::fmt;

/// One thing wrong with one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The variable.
    pub var: String,
    /// What is wrong with it, and what a good value looks like.
    pub message: String,
}

/// Every problem found in one reading of the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<Problem>);

impl ConfigError {
    /// The variables named, in order.
    pub fn vars(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.var.as_str()).collect()
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} configuration problem{} in the environment:", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  {}: {}", p.var, p.message)?;
        }
        write!(f, "\n(every variable is described in docs/configuration.md)")
    }
}

impl std::error::Error for ConfigError {}

/// Looks a variable up (the process environment, or a map in tests).
type Lookup<'a> = Box<dyn Fn(&str) -> Option<OsString> + 'a>;

/// Reads variables through a lookup (the process environment, or a map in tests) and collects
/// problems; [`EnvReader::finish`] turns them into one [`ConfigError`].
pub struct EnvReader<'a> {
    lookup: Lookup<'a>,
    problems: Vec<Problem>,
}

impl fmt::Debug for EnvReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvReader").field("problems", &self.problems).finish_non_exhaustive()
    }
}

impl EnvReader<'static> {
    /// The process environment.
    pub fn process() -> Self {
        EnvReader::new(|name| std::env::var_os(name))
    }
}

impl<'a> EnvReader<'a> {
    /// Any lookup (tests pass a map).
    pub fn new(lookup: impl Fn(&str) -> Option<OsString> + 'a) -> Self {
        EnvReader { lookup: Box::new(lookup), problems: Vec::new() }
    }

    /// Records a problem with `var`.
    pub fn problem(&mut self, var: &str, message: impl Into<String>) {
        self.problems.push(Problem { var: var.to_owned(), message: message.into() });
    }

    /// Whether any problem was recorded so far.
    pub fn has_problems(&self) -> bool {
        !self.problems.is_empty()
    }

    /// Whether a problem with `var` was recorded.
    pub fn has_problem_for(&self, var: &str) -> bool {
        self.problems.iter().any(|p| p.var == var)
    }

    /// The problems recorded so far as one error (taking them), `None` when there are none.
    pub fn take_error(&mut self) -> Option<ConfigError> {
        (!self.problems.is_empty()).then(|| ConfigError(std::mem::take(&mut self.problems)))
    }

    /// `Ok` when no problem was recorded.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.problems))
        }
    }

    /// Whether `var` is set to something non-empty (its value is not checked).
    pub fn is_set(&self, var: &str) -> bool {
        (self.lookup)(var).is_some_and(|v| !v.is_empty())
    }

    /// The value of `var`, `None` when unset or empty (a problem when not UTF-8).
    pub fn optional(&mut self, var: &str) -> Option<String> {
        let raw = (self.lookup)(var)?;
        match raw.into_string() {
            Ok(s) if s.is_empty() => None,
            Ok(s) => Some(s),
            Err(_) => {
                self.problem(var, "is not valid UTF-8");
                None
            }
        }
    }

    /// The value of `var`; a problem when unset. `what` says what it is, for the message.
    pub fn required(&mut self, var: &str, what: &str) -> Option<String> {
        let v = self.optional(var);
        if v.is_none() && !self.has_problem_for(var) {
            self.problem(var, format!("is missing: {what}"));
        }
        v
    }

    /// An optional value parsed by `parse` (whose error says what a good value looks like);
    /// `default` when unset.
    pub fn parsed<T>(&mut self, var: &str, default: T, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        match self.optional(var) {
            None => Some(default),
            Some(v) => match parse(&v) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.problem(var, format!("{v:?} {e}"));
                    None
                }
            },
        }
    }

    /// A secret: the variable itself, or the content of the file `<var>_FILE` names (a Secret
    /// Manager secret mounted as a file; one trailing newline is dropped). Never both. `None`
    /// when neither is set (no problem recorded: see [`EnvReader::required_secret`]).
    pub fn secret(&mut self, var: &str) -> Option<String> {
        let file_var = format!("{var}_FILE");
        let direct = self.optional(var);
        let path = self.optional(&file_var);
        match (direct, path) {
            (Some(_), Some(_)) => {
                self.problem(var, format!("is set both directly and through {file_var}: set one"));
                None
            }
            (Some(v), None) => Some(v),
            (None, Some(path)) => match std::fs::read(&path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(mut s) => {
                        if s.ends_with('\n') {
                            s.pop();
                            if s.ends_with('\r') {
                                s.pop();
                            }
                        }
                        if s.is_empty() {
                            self.problem(&file_var, format!("names {path}, which is empty"));
                            None
                        } else {
                            Some(s)
                        }
                    }
                    Err(_) => {
                        self.problem(&file_var, format!("names {path}, which is not UTF-8 text"));
                        None
                    }
                },
                Err(e) => {
                    self.problem(&file_var, format!("names {path}, which cannot be read: {e}"));
                    None
                }
            },
            (None, None) => None,
        }
    }

    /// A secret that must be given (directly or as `<var>_FILE`).
    pub fn required_secret(&mut self, var: &str, what: &str) -> Option<String> {
        let before = self.problems.len();
        let v = self.secret(var);
        if v.is_none() && self.problems.len() == before {
            self.problem(var, format!("is missing (or {var}_FILE): {what}"));
        }
        v
    }
}

/// Parses a TCP port (1-65535).
pub fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err("is not a port number (1-65535)".into()),
    }
}

/// Parses a 32-byte key given as 64 hex digits (what `openssl rand -hex 32` prints).
pub fn parse_hex_key(s: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(s.trim()).map_err(|_| String::from("must be 64 hex digits (openssl rand -hex 32)"))?;
    bytes.try_into().map_err(|_| String::from("must be 64 hex digits (32 bytes; openssl rand -hex 32)"))
}

/// Parses key material given as hex, or else as raw text, of at least `min` bytes (the
/// pseudonymization key's historical format).
pub fn parse_key_material(s: &str, min: usize) -> Result<Vec<u8>, String> {
    let bytes = hex::decode(s.trim()).unwrap_or_else(|_| s.as_bytes().to_vec());
    if bytes.len() < min {
        return Err(format!("is too short: at least {min} bytes are required (openssl rand -hex {min})"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reader(vars: &[(&str, &str)]) -> EnvReader<'static> {
        let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| ((*k).to_owned(), OsString::from(v))).collect();
        EnvReader::new(move |k| map.get(k).cloned())
    }

    #[test]
    fn every_problem_is_collected_and_named() {
        let mut env = reader(&[("PORTX", "http"), ("EMPTY", "")]);
        assert_eq!(env.required("MISSING", "the host"), None);
        assert_eq!(env.required("EMPTY", "the name"), None);
        assert_eq!(env.parsed("PORTX", 5432, parse_port), None);
        let err = env.finish().unwrap_err();
        assert_eq!(err.vars(), vec!["MISSING", "EMPTY", "PORTX"]);
        let text = err.to_string();
        assert!(text.starts_with("3 configuration problems"), "{text}");
        assert!(text.contains("MISSING: is missing: the host"), "{text}");
        assert!(text.contains("PORTX: \"http\" is not a port number"), "{text}");
    }

    #[test]
    fn defaults_apply_only_when_unset() {
        let mut env = reader(&[("P", "6543")]);
        assert_eq!(env.parsed("P", 5432, parse_port), Some(6543));
        assert_eq!(env.parsed("Q", 5432, parse_port), Some(5432));
        assert!(env.finish().is_ok());
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
    }

    #[test]
    fn secrets_come_from_the_variable_or_a_mounted_file_never_both_and_are_never_printed() {
        let dir = std::env::temp_dir().join(format!("fintrail-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let path = file.display().to_string();

        let mut env = reader(&[("S", "direct-value"), ("T_FILE", &path)]);
        assert_eq!(env.required_secret("S", "a password").as_deref(), Some("direct-value"));
        assert_eq!(env.required_secret("T", "a password").as_deref(), Some("from-file"));
        assert!(env.finish().is_ok());

        let mut env = reader(&[("S", "direct-value"), ("S_FILE", &path), ("U_FILE", "/nonexistent/x")]);
        assert_eq!(env.required_secret("S", "a password"), None);
        assert_eq!(env.required_secret("U", "a password"), None);
        assert_eq!(env.required_secret("V", "a password"), None);
        let text = env.finish().unwrap_err().to_string();
        assert!(text.contains("S: is set both directly and through S_FILE"), "{text}");
        assert!(text.contains("U_FILE: names /nonexistent/x, which cannot be read"), "{text}");
        assert!(text.contains("V: is missing (or V_FILE)"), "{text}");
        assert!(!text.contains("direct-value") && !text.contains("from-file"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hex_keys_are_exactly_32_bytes() {
        assert_eq!(parse_hex_key(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_hex_key("abcd").is_err());
        assert!(parse_hex_key(&"zz".repeat(32)).is_err());
    }
}
