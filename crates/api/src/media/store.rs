//! Where media bytes live: one interface ([`MediaStore`]), two backends. Local files under
//! `FINTRAIL_HOME/media` are the embedded default (`fintrail up`, tests); `fintrail serve` uses
//! GCS ([`super::gcs`]) when `FINTRAIL_MEDIA_BUCKET` is set ([`MediaConfig::from_env`]).
//!
//! Both backends stage an upload on local disk first (streamed, hashed, bounded), then commit
//! it under a fresh random key; the handler writes the media row only after the commit, and
//! removes the object again when the row is refused, so no row names a missing object and no
//! object outlives a refused row.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use fintrail_db::home::owner_only;
use futures_util::future::BoxFuture;
use rand::RngCore;

use super::gcs::{self, Endpoint, GcsConfig, GcsStore, IamCredentialsSigner};

/// The bytes of one object, streamed.
pub type MediaReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object.
    #[error("no such media object")]
    NotFound,
    /// The store cannot be reached, or is throttling or failing (retry later: 503).
    #[error("media storage unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request for another reason (our configuration: 500).
    #[error("media storage refused the request: {0}")]
    Backend(String),
    /// A local file operation failed.
    #[error("media storage: {0}")]
    Io(#[from] io::Error),
}

impl From<StoreError> for crate::error::ApiError {
    fn from(e: StoreError) -> Self {
        use crate::error::ApiError;
        match e {
            StoreError::NotFound => ApiError::not_found("media object"),
            StoreError::Unavailable(why) => {
                tracing::warn!(log_class = "app", error = %why, "media storage unavailable");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "media storage is unavailable; retry later",
                )
            }
            StoreError::Io(e) if e.kind() == io::ErrorKind::NotFound => ApiError::not_found("media object"),
            other => ApiError::internal(other),
        }
    }
}

/// An object store for media.
pub trait MediaStore: Send + Sync {
    /// A fresh local path to stage an upload in (owner-only folder).
    fn staging_path(&self) -> PathBuf;
    /// Stores a fully written, hashed staging file as `key`; the staging file is gone afterwards
    /// (moved or uploaded, also when the commit failed).
    fn commit<'a>(
        &'a self,
        staged: &'a Path,
        key: &'a str,
        content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Opens `key` for reading ([`StoreError::NotFound`] when it does not exist).
    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<MediaReader, StoreError>>;
    /// Removes `key` (compensation when the database refused the upload's row).
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Which store the server uses.
#[derive(Debug, Clone, Default)]
pub enum MediaConfig {
    /// Local files under `FINTRAIL_HOME/media` (the embedded default).
    #[default]
    Local,
    /// A GCS bucket.
    Gcs(GcsConfig),
}

/// `FINTRAIL_MEDIA_BUCKET`: the GCS bucket; unset or empty means local files.
pub const ENV_BUCKET: &str = "FINTRAIL_MEDIA_BUCKET";
/// `FINTRAIL_MEDIA_SIGNER`: the service account whose `signBlob` signs the V4 URLs.
pub const ENV_SIGNER: &str = "FINTRAIL_MEDIA_SIGNER";
/// `FINTRAIL_GCS_ENDPOINT`: another GCS endpoint (an emulator on loopback).
pub const ENV_ENDPOINT: &str = "FINTRAIL_GCS_ENDPOINT";

impl MediaConfig {
    /// From the environment (`fintrail serve`); an error names the variable and what is wrong.
    pub fn from_env() -> anyhow::Result<MediaConfig> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// From any variable lookup (tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<MediaConfig> {
        let get = |k: &str| get(k).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let Some(bucket) = get(ENV_BUCKET) else {
            for k in [ENV_SIGNER, ENV_ENDPOINT] {
                anyhow::ensure!(
                    get(k).is_none(),
                    "{k} is set but {ENV_BUCKET} is not: set the bucket to store media in GCS, or unset {k} for local files"
                );
            }
            return Ok(MediaConfig::Local);
        };
        gcs::check_bucket_name(&bucket).map_err(|e| anyhow::anyhow!("{ENV_BUCKET}: {e}"))?;
        let signer = get(ENV_SIGNER).ok_or_else(|| {
            anyhow::anyhow!(
                "{ENV_BUCKET} is set: {ENV_SIGNER} must name the service account that signs media URLs (signBlob)"
            )
        })?;
        let local_ok = signer.split_once('@').is_some_and(|(a, d)| !a.is_empty() && d.contains('.'));
        anyhow::ensure!(
            local_ok && signer.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'-' | b'_')),
            "{ENV_SIGNER}: {signer:?} is not a service account email"
        );
        let endpoint = match get(ENV_ENDPOINT) {
            Some(e) => Endpoint::parse(&e).map_err(|why| anyhow::anyhow!("{ENV_ENDPOINT}: {why}"))?,
            None => Endpoint::default(),
        };
        Ok(MediaConfig::Gcs(GcsConfig { bucket, endpoint, signer: Arc::new(IamCredentialsSigner::new(signer)) }))
    }

    /// The store this configuration names, its local parts under `media_dir`.
    pub fn build(&self, media_dir: PathBuf) -> io::Result<Arc<dyn MediaStore>> {
        Ok(match self {
            MediaConfig::Local => Arc::new(LocalStore::new(media_dir)?),
            MediaConfig::Gcs(c) => Arc::new(GcsStore::new(c.clone(), &media_dir)?),
        })
    }

    /// `local` or `gcs:<bucket>` (logs).
    pub fn describe(&self) -> String {
        match self {
            MediaConfig::Local => "local".into(),
            MediaConfig::Gcs(c) => format!("gcs:{} at {}", c.bucket, c.endpoint.base_url()),
        }
    }
}

/// Media under a local directory (`FINTRAIL_HOME/media`).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Creates the directory layout (`objects/`, `staging/`) if missing, every folder
    /// owner-only (0700, also when it existed wider): ID documents and selfies are readable by
    /// no other OS user (issue 16, item 15). Files are 0600 (staged by the upload handler).
    pub fn new(root: PathBuf) -> io::Result<Self> {
        for dir in [root.clone(), root.join("objects"), root.join("staging")] {
            owner_only::create_dir(&dir).map_err(io::Error::other)?;
        }
        Ok(Self { root })
    }

    fn object_path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join("objects").join(key))
    }
}

/// Keys are generated by us ([a-z0-9/_-]); anything else is refused (no traversal, nothing a
/// URL or a path would read differently).
pub fn check_key(key: &str) -> io::Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'/' || b == b'_' || b == b'-')
        && !key.split('/').any(|p| p.is_empty() || p == "." || p == "..");
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid object key"))
    }
}

/// A new random object key (`media/<2 hex>/<32 hex>`).
pub fn new_key() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let h = hex::encode(b);
    format!("media/{}/{h}", &h[..2])
}

impl MediaStore for LocalStore {
    fn staging_path(&self) -> PathBuf {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        self.root.join("staging").join(hex::encode(b))
    }

    fn commit<'a>(
        &'a self,
        staged: &'a Path,
        key: &'a str,
        _content_type: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let moved = async {
                let dst = self.object_path(key)?;
                // Every folder from `objects/` down to the object's own is owner-only; the
                // staged file is already 0600 and keeps its mode through the rename.
                let objects = self.root.join("objects");
                let mut dir = dst.parent();
                while let Some(d) = dir.filter(|d| d.starts_with(&objects) && *d != objects.as_path()) {
                    owner_only::create_dir(d).map_err(io::Error::other)?;
                    dir = d.parent();
                }
                tokio::fs::rename(staged, &dst).await
            }
            .await;
            if moved.is_err() {
                let _ = tokio::fs::remove_file(staged).await;
            }
            Ok(moved?)
        })
    }

    fn open<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<MediaReader, StoreError>> {
        Box::pin(async move {
            match tokio::fs::File::open(self.object_path(key)?).await {
                Ok(f) => Ok(Box::pin(f) as MediaReader),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.object_path(key)?).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NotFound),
                Err(e) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn configuration_from_the_environment_fails_fast_and_names_the_variable() {
        assert!(matches!(MediaConfig::from_lookup(lookup(&[])), Ok(MediaConfig::Local)));
        assert!(matches!(MediaConfig::from_lookup(lookup(&[(ENV_BUCKET, " ")])), Ok(MediaConfig::Local)));
        let signer = "fintrail-dev-media-signer@fintrail-dev.iam.gserviceaccount.com";
        match MediaConfig::from_lookup(lookup(&[(ENV_BUCKET, "fintrail-dev-media-1a2b3c"), (ENV_SIGNER, signer)])) {
            Ok(MediaConfig::Gcs(c)) => {
                assert_eq!(c.bucket, "fintrail-dev-media-1a2b3c");
                assert_eq!(c.endpoint, Endpoint::default());
                assert_eq!(c.signer.email(), signer);
                // Production signs with IAM Credentials, never with a fake.
                assert!(format!("{:?}", c.signer).starts_with("IamCredentialsSigner"), "{:?}", c.signer);
            }
            other => panic!("{other:?}"),
        }
        let bad: [(&[(&str, &str)], &str); 6] = [
            (&[(ENV_SIGNER, signer)], ENV_SIGNER),
            (&[(ENV_ENDPOINT, "http://127.0.0.1:1")], ENV_ENDPOINT),
            (&[(ENV_BUCKET, "b")], ENV_BUCKET),
            (&[(ENV_BUCKET, "bucket")], ENV_SIGNER),
            (&[(ENV_BUCKET, "bucket"), (ENV_SIGNER, "not an email")], ENV_SIGNER),
            (&[(ENV_BUCKET, "bucket"), (ENV_SIGNER, signer), (ENV_ENDPOINT, "http://gcs.example.com")], ENV_ENDPOINT),
        ];
        for (vars, named) in bad {
            let e = MediaConfig::from_lookup(lookup(vars)).expect_err("refused").to_string();
            assert!(e.starts_with(named) || e.contains(named), "{vars:?}: {e}");
        }
    }

    #[test]
    fn keys_are_ours_only() {
        assert!(check_key(&new_key()).is_ok());
        for bad in ["", "../x", "media//x", "media/./x", "Media/x", "media/x?y", "media/x y", "/media/x"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
