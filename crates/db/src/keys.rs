//! Secret keys under `FINTRAIL_HOME/keys` (created on first use, mode 0600): the media URL
//! signing key and the audit checkpoint key. A key id is the first 8 bytes of SHA-256(key),
//! hex: it names the key in signatures without revealing it.

use anyhow::Context as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;

/// A 32-byte HMAC key and its id.
#[derive(Clone)]
pub struct Key {
    /// `hex(SHA-256(secret)[..8])`.
    pub id: String,
    secret: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish_non_exhaustive()
    }
}

impl Key {
    /// A key from raw bytes.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(secret)[..8]);
        Self { id, secret }
    }
    /// The secret (for HMAC).
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

/// Loads `dir/name` (hex), creating it with a fresh random key when missing.
pub fn load_or_create(dir: &Path, name: &str) -> anyhow::Result<Key> {
    let path = dir.join(name);
    if let Some(k) = load(dir, name)? {
        return Ok(k);
    }
    crate::home::owner_only::create_dir(dir)?;
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    crate::home::owner_only::create_file(&path, hex::encode(secret).as_bytes())?;
    // Another process may have won the race: whatever is on disk now is the key.
    load(dir, name)?.context("key file vanished after creation")
}

/// Loads `dir/name` if it exists.
pub fn load(dir: &Path, name: &str) -> anyhow::Result<Option<Key>> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let bytes = hex::decode(text.trim()).with_context(|| format!("{}: not hex", path.display()))?;
    let secret: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("{}: expected 32 bytes", path.display()))?;
    Ok(Some(Key::from_secret(secret)))
}

/// Puts a key given in the environment (production: Secret Manager) at `dir/name`, hex, where
/// every reader of that key finds it ([`load`]). A file already there must hold the same key:
/// two keys for one purpose on one home is an error, never a silent replacement.
pub fn install(dir: &Path, name: &str, secret: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(name);
    let text = hex::encode(secret);
    if crate::home::owner_only::create_file(&path, text.as_bytes())? {
        return Ok(());
    }
    let found = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        found.trim().eq_ignore_ascii_case(&text),
        "{} holds another key than the one configured: remove it or fix the configuration",
        path.display()
    );
    Ok(())
}

/// File name of the media URL signing key.
pub const MEDIA_URL_KEY: &str = "media-url.key";
/// File name of the audit checkpoint signing key.
pub const AUDIT_CHECKPOINT_KEY: &str = "audit-checkpoint.key";

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn keys_are_created_owner_only_and_stay_the_same() {
        let dir = std::env::temp_dir().join(format!("fintrail-keys-test-{}", std::process::id())).join("keys");
        let a = super::load_or_create(&dir, "k.key").unwrap();
        let b = super::load_or_create(&dir, "k.key").unwrap();
        assert_eq!(a.secret(), b.secret(), "a second call loads the same key");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700, "the keys directory is owner-only");
        assert_eq!(mode(&dir.join("k.key")), 0o600, "a key file is owner-only");
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn an_installed_key_is_what_load_reads_and_is_never_replaced() {
        let dir = std::env::temp_dir().join(format!("fintrail-keys-install-{}", std::process::id())).join("keys");
        super::install(&dir, "k.key", &[7u8; 32]).unwrap();
        super::install(&dir, "k.key", &[7u8; 32]).expect("the same key again is fine");
        assert_eq!(super::load(&dir, "k.key").unwrap().unwrap().secret(), &[7u8; 32]);
        let err = super::install(&dir, "k.key", &[8u8; 32]).unwrap_err();
        assert!(err.to_string().contains("holds another key"), "{err}");
        let mode = std::fs::metadata(dir.join("k.key")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
}
