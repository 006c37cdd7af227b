//! Signed checkpoints of the chain head: HMAC-SHA256 over (seq, link) with the key in
//! `FINTRAIL_HOME/keys/audit-checkpoint.key`, stored in `audit_checkpoints` *and* as a JSON
//! file under `FINTRAIL_HOME/audit-checkpoints/` (copy those files off the machine: they are
//! what makes truncation or a recomputed chain detectable).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use fintrail_db::{Context, DbRole};
use fintrail_domain::audit::{Link, GENESIS};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::chain::{head, Sequencer};
use fintrail_db::keys::{self, Key};

/// Domain separation of checkpoint signatures.
const CHECKPOINT_DOMAIN: &[u8] = b"fintrail.audit.checkpoint.v1\0";
/// Most checkpoint files read by `verify` (bounds work on a polluted directory).
pub const MAX_CHECKPOINT_FILES: usize = 100_000;

/// One checkpoint, from the database or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain position covered.
    pub seq: i64,
    /// The link at `seq`.
    pub link: Link,
    /// The signing key's id.
    pub key_id: String,
    /// HMAC-SHA256.
    pub signature: [u8; 32],
    /// Where it was read from (`db:<id>` or a file path), for reports.
    pub source: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    seq: i64,
    link: String,
    key_id: String,
    signature: String,
    created_at: String,
}

fn mac(key: &Key, seq: i64, link: &Link) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key.secret()).expect("HMAC accepts any key length");
    m.update(CHECKPOINT_DOMAIN);
    m.update(&seq.to_be_bytes());
    m.update(link);
    m
}

/// Signs (seq, link).
pub fn sign(key: &Key, seq: i64, link: &Link) -> [u8; 32] {
    mac(key, seq, link).finalize().into_bytes().into()
}

/// Whether `cp` carries a valid signature by `key` (constant-time comparison).
pub fn signature_valid(key: &Key, cp: &Checkpoint) -> bool {
    cp.key_id == key.id && mac(key, cp.seq, &cp.link).verify_slice(&cp.signature).is_ok()
}

/// Where checkpoint files go.
pub fn checkpoint_dir(home: &fintrail_db::Home) -> PathBuf {
    home.root().join("audit-checkpoints")
}

/// Links what is committed (unless a running server is the sequencer), then signs the head
/// and stores the checkpoint in the database and in `dir`. Returns it and the file path.
pub async fn write(ctx: &Context, dir: &Path) -> anyhow::Result<(Checkpoint, PathBuf)> {
    let key = keys::load_or_create(&ctx.home.keys_dir(), keys::AUDIT_CHECKPOINT_KEY)?;
    if let Some(mut seq) = Sequencer::try_open(&ctx.db).await? {
        seq.run_once().await?;
    }
    // The sequencer's role: the only one that may write checkpoints.
    let client = ctx.db.connect(DbRole::Sequencer).await?;
    let (seq, link) = head(&client).await?;
    anyhow::ensure!(seq > 0 || link != GENESIS, "the audit trail is empty: nothing to checkpoint");
    let signature = sign(&key, seq, &link);
    let row = client
        .query_one(
            "INSERT INTO fintrail.audit_checkpoints (seq, link, key_id, signature) VALUES ($1, $2, $3, $4) \
             RETURNING id, created_at",
            &[&seq, &link.as_slice(), &key.id, &signature.as_slice()],
        )
        .await?;
    let id: i64 = row.get(0);
    let created_at: chrono::DateTime<chrono::Utc> = row.get(1);
    let path = dir.join(format!("checkpoint-{seq:020}-{id}.json"));
    let file = CheckpointFile {
        seq,
        link: hex::encode(link),
        key_id: key.id.clone(),
        signature: hex::encode(signature),
        created_at: created_at.to_rfc3339(),
    };
    // Owner-only and synced: the evidence `verify` checks the database against. The name
    // carries the row id, so an existing file is another checkpoint's, never overwritten.
    let written = fintrail_db::home::owner_only::create_file(&path, &serde_json::to_vec_pretty(&file)?)?;
    anyhow::ensure!(written, "{} exists already: not overwriting a checkpoint file", path.display());
    tracing::info!(log_class = "audit", seq, key_id = %key.id, file = %path.display(), "audit checkpoint written");
    Ok((Checkpoint { seq, link, key_id: key.id, signature, source: format!("db:{id}") }, path))
}

const CHECKPOINT_COLUMNS: &str = "id, seq, link, key_id, signature";

/// A row selected with [`CHECKPOINT_COLUMNS`].
fn from_row(row: &tokio_postgres::Row) -> anyhow::Result<Checkpoint> {
    let id: i64 = row.get(0);
    let link: Vec<u8> = row.get(2);
    let sig: Vec<u8> = row.get(4);
    Ok(Checkpoint {
        seq: row.get(1),
        link: link.try_into().map_err(|_| anyhow::anyhow!("checkpoint db:{id}: bad link length"))?,
        key_id: row.get(3),
        signature: sig.try_into().map_err(|_| anyhow::anyhow!("checkpoint db:{id}: bad signature length"))?,
        source: format!("db:{id}"),
    })
}

/// Checkpoint row `id` of the database, if it exists (one row: not the whole set and the files
/// that [`load_all`] reads for `verify`).
pub async fn load_row(client: &tokio_postgres::Client, id: i64) -> anyhow::Result<Option<Checkpoint>> {
    let row = client
        .query_opt(&format!("SELECT {CHECKPOINT_COLUMNS} FROM fintrail.audit_checkpoints WHERE id = $1"), &[&id])
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Every checkpoint in the database and in `dir` (missing directory = none).
pub async fn load_all(client: &tokio_postgres::Client, dir: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let mut out = Vec::new();
    for row in
        client.query(&format!("SELECT {CHECKPOINT_COLUMNS} FROM fintrail.audit_checkpoints ORDER BY seq"), &[]).await?
    {
        out.push(from_row(&row)?);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries.take(MAX_CHECKPOINT_FILES) {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let f: CheckpointFile =
            serde_json::from_slice(&text).with_context(|| format!("{}: not a checkpoint", path.display()))?;
        let link: Link = hex::decode(&f.link)
            .ok()
            .and_then(|v| v.try_into().ok())
            .with_context(|| format!("{}: bad link", path.display()))?;
        let signature: [u8; 32] = hex::decode(&f.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .with_context(|| format!("{}: bad signature", path.display()))?;
        out.push(Checkpoint { seq: f.seq, link, key_id: f.key_id, signature, source: path.display().to_string() });
    }
    out.sort_by_key(|c| c.seq);
    Ok(out)
}
