//! Generated passwords for the private cluster's roles, kept under `FINTRAIL_HOME/secrets`
//! with mode 0600. Why files: the private cluster is a local default; production passwords
//! come from Secret Manager through the environment, never from here.

use std::{fs, path::Path};

use anyhow::Context as _;
use rand::RngCore;

/// Length of a generated password in random bytes (hex-encoded: twice as many characters).
const PASSWORD_BYTES: usize = 24;

/// Reads the password in `dir/name.password`, creating it (random, 0600) when missing.
pub fn get_or_create(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(format!("{name}.password"));
    if let Ok(existing) = fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        anyhow::ensure!(!existing.is_empty(), "{} is empty: delete it to regenerate", path.display());
        return Ok(existing);
    }
    let mut bytes = [0u8; PASSWORD_BYTES];
    rand::thread_rng().fill_bytes(&mut bytes);
    let password = hex::encode(bytes);
    if !crate::home::owner_only::create_file(&path, password.as_bytes())? {
        // Another process created it first: use theirs.
        return read(dir, name);
    }
    Ok(password)
}

/// Reads an existing password file.
pub fn read(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(format!("{name}.password"));
    let s = fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run `fintrail db start` first)", path.display()))?;
    Ok(s.trim().to_string())
}
