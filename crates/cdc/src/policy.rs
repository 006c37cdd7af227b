//! The replication policy: default deny. `analytics/replication.toml` lists each table that
//! may leave the transactional database and, per column, `keep | pseudonymize | drop`.
//! A table or column not listed never reaches the sink. This module is the single place
//! that decides what a column becomes; the pipeline asks it for every column it sees.

use std::collections::BTreeMap;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Limits: a policy file is small, hand-written text.
pub const MAX_POLICY_BYTES: usize = 1 << 20;
pub const MAX_TABLES: usize = 1000;
/// A pseudonymization key shorter than this is refused (HMAC-SHA256 wants >= 32 bytes).
pub const MIN_KEY_BYTES: usize = 32;
/// The key's file under `FINTRAIL_HOME/keys` (hex).
pub const KEY_FILE: &str = "pseudonymize.key";

/// The checked-in default policy (so the binary works from any directory).
pub const DEFAULT_POLICY_TOML: &str = include_str!("../../../analytics/replication.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    Keep,
    Pseudonymize,
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    columns: BTreeMap<String, Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "default_schema")]
    schema: String,
    tables: BTreeMap<String, TableFile>,
}

fn default_schema() -> String {
    "fintrail".to_owned()
}

/// A parsed, validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub schema: String,
    tables: BTreeMap<String, BTreeMap<String, Rule>>,
}

/// What happens to one source column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Keep,
    Pseudonymize,
    /// Dropped by the policy, or not listed (default deny).
    Withhold {
        listed: bool,
    },
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl Policy {
    pub fn parse(text: &str) -> anyhow::Result<Policy> {
        if text.len() > MAX_POLICY_BYTES {
            anyhow::bail!("replication policy is {} bytes, over the limit {MAX_POLICY_BYTES}", text.len());
        }
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("replication policy is invalid: {e}"))?;
        if !valid_ident(&file.schema) {
            anyhow::bail!("replication policy: schema {:?} is not a plain lower-case identifier", file.schema);
        }
        if file.tables.len() > MAX_TABLES {
            anyhow::bail!("replication policy lists {} tables, over the limit {MAX_TABLES}", file.tables.len());
        }
        let mut tables = BTreeMap::new();
        for (name, t) in file.tables {
            // Identifiers are interpolated into SQL (quoted), but we still accept only plain
            // names so the policy file cannot smuggle anything odd into DDL.
            if !valid_ident(&name) {
                anyhow::bail!("replication policy: table {name:?} is not a plain lower-case identifier");
            }
            for c in t.columns.keys() {
                if !valid_ident(c) {
                    anyhow::bail!("replication policy: column {name}.{c:?} is not a plain lower-case identifier");
                }
            }
            if !t.columns.values().any(|r| *r != Rule::Drop) {
                anyhow::bail!("replication policy: table {name} keeps no column; remove it instead");
            }
            tables.insert(name, t.columns);
        }
        Ok(Policy { schema: file.schema, tables })
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Policy> {
        match path {
            None => Policy::parse(DEFAULT_POLICY_TOML),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read replication policy {}: {e}", p.display()))?;
                Policy::parse(&text)
            }
        }
    }

    /// The tables the policy lets out, in a stable order.
    pub fn tables(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    pub fn has_table(&self, table: &str) -> bool {
        self.tables.contains_key(table)
    }

    /// The columns the policy names for `table` (any rule), in a stable order.
    pub fn columns(&self, table: &str) -> impl Iterator<Item = &str> {
        self.tables.get(table).into_iter().flat_map(|t| t.keys().map(String::as_str))
    }

    /// Columns the policy names for `table` that the source table does not have. Each one is
    /// almost certainly a typo or a stale name, and it silently withholds the real column:
    /// the pipeline warns about it and the schema test fails on it.
    pub fn unknown_columns<'a>(&'a self, table: &str, source_columns: &[&str]) -> Vec<&'a str> {
        self.columns(table).filter(|c| !source_columns.contains(c)).collect()
    }

    /// Whether any form of the column may reach the sink (kept or pseudonymized).
    pub fn lets_out(&self, table: &str, column: &str) -> bool {
        !matches!(self.decide(table, column), Decision::Withhold { .. })
    }

    /// Default deny: a column is withheld unless listed as keep or pseudonymize.
    pub fn decide(&self, table: &str, column: &str) -> Decision {
        match self.tables.get(table).and_then(|t| t.get(column)) {
            Some(Rule::Keep) => Decision::Keep,
            Some(Rule::Pseudonymize) => Decision::Pseudonymize,
            Some(Rule::Drop) => Decision::Withhold { listed: true },
            None => Decision::Withhold { listed: false },
        }
    }
}

/// Keyed HMAC-SHA256: deterministic (joins still work) and not reversible without the key.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key withheld>)")
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> anyhow::Result<Pseudonymizer> {
        if key.len() < MIN_KEY_BYTES {
            anyhow::bail!("pseudonymization key is {} bytes; at least {MIN_KEY_BYTES} are required", key.len());
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|e| anyhow::anyhow!("pseudonymization key rejected: {e}"))?;
        Ok(Pseudonymizer { mac })
    }

    /// The key from `FINTRAIL_PSEUDONYMIZE_KEY` (hex or raw text), else
    /// `FINTRAIL_HOME/keys/pseudonymize.key`, created with mode 0600 when missing.
    pub fn from_env_or_home(home_root: &Path) -> anyhow::Result<Pseudonymizer> {
        if let Ok(v) = std::env::var("FINTRAIL_PSEUDONYMIZE_KEY") {
            let key = hex::decode(v.trim()).unwrap_or_else(|_| v.into_bytes());
            return Pseudonymizer::new(&key);
        }
        let dir = home_root.join("keys");
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            // Owner-only file in an owner-only `keys/`; a concurrent creator's key wins.
            fintrail_db::home::owner_only::create_file(&path, hex::encode(key).as_bytes())?;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let key = hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("{} is not hex", path.display()))?;
        Pseudonymizer::new(&key)
    }

    /// Hex HMAC of the value's text form. Independent of table and column, so
    /// `customers.id` and `kyc_cases.customer_id` pseudonymize to the same value.
    pub fn apply(&self, value: &[u8]) -> String {
        let mut m = self.mac.clone();
        m.update(value);
        hex::encode(m.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_policy_parses_and_drops_secrets() {
        let p = Policy::parse(DEFAULT_POLICY_TOML).unwrap();
        assert_eq!(p.schema, "fintrail");
        for t in ["customers", "transfers", "wallets", "kyc_cases", "api_tokens", "media_objects"] {
            assert!(p.has_table(t), "{t} missing from the policy");
        }
        assert_eq!(p.decide("api_tokens", "token_hash"), Decision::Withhold { listed: true });
        assert_eq!(p.decide("customers", "email"), Decision::Pseudonymize);
        assert_eq!(p.decide("transfers", "amount_minor"), Decision::Keep);
        assert_eq!(p.decide("customers", "no_such_column"), Decision::Withhold { listed: false });
        assert_eq!(p.decide("no_such_table", "id"), Decision::Withhold { listed: false });
    }

    #[test]
    fn unknown_columns_are_the_listed_ones_the_source_lacks() {
        let p = Policy::parse("[tables.t.columns]\nid = \"keep\"\ncreated_at = \"keep\"\nemial = \"drop\"\n").unwrap();
        assert_eq!(p.columns("t").collect::<Vec<_>>(), vec!["created_at", "emial", "id"]);
        assert_eq!(p.unknown_columns("t", &["id", "email", "created_at"]), vec!["emial"]);
        assert!(p.unknown_columns("t", &["id", "emial", "created_at", "extra"]).is_empty());
        assert_eq!(p.columns("nope").count(), 0);
    }

    #[test]
    fn bad_policies_are_clear_errors() {
        assert!(Policy::parse("tables = 3").is_err());
        let e = Policy::parse("[tables.t.columns]\nid = \"maybe\"\n").unwrap_err().to_string();
        assert!(e.contains("invalid"), "{e}");
        let e = Policy::parse("[tables.\"T x\".columns]\nid = \"keep\"\n").unwrap_err().to_string();
        assert!(e.contains("identifier"), "{e}");
        let e = Policy::parse("[tables.t.columns]\nid = \"drop\"\n").unwrap_err().to_string();
        assert!(e.contains("keeps no column"), "{e}");
        assert!(Policy::parse("[tables.t]\ncolumns = {id = \"keep\"}\nextra = 1\n").is_err());
    }

    #[test]
    fn pseudonyms_are_keyed_deterministic_and_not_the_value() {
        let a = Pseudonymizer::new(&[7u8; 32]).unwrap();
        let b = Pseudonymizer::new(&[8u8; 32]).unwrap();
        assert_eq!(a.apply(b"alice@example.com"), a.apply(b"alice@example.com"));
        assert_ne!(a.apply(b"alice@example.com"), a.apply(b"bob@example.com"));
        assert_ne!(a.apply(b"alice@example.com"), b.apply(b"alice@example.com"));
        assert_eq!(a.apply(b"x").len(), 64);
        assert!(!a.apply(b"alice@example.com").contains("alice"));
        assert!(Pseudonymizer::new(b"short").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("fintrail-cdc-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // The env var would override the file; this test runs without it.
        if std::env::var("FINTRAIL_PSEUDONYMIZE_KEY").is_ok() {
            return;
        }
        let p1 = Pseudonymizer::from_env_or_home(&dir).unwrap();
        let p2 = Pseudonymizer::from_env_or_home(&dir).unwrap();
        assert_eq!(p1.apply(b"v"), p2.apply(b"v"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("keys/pseudonymize.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(dir.join("keys")).unwrap().permissions().mode();
            assert_eq!(dir_mode & 0o777, 0o700, "keys/ is owner-only");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
