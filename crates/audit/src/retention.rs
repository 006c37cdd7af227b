//! Retention: events are removed only up to a signed checkpoint, only by the database's
//! `audit_purge_through` (migration 0034). It checks the checkpoint's HMAC with the key given
//! here, checks the checkpoint lies on the stored chain, deletes events and links through its
//! seq and records the checkpoint as the anchor `audit verify` resumes from — and checks
//! against the signed checkpoints again.

use anyhow::Context as _;
use fintrail_db::keys::{self, AUDIT_CHECKPOINT_KEY};
use fintrail_db::{Context, DbRole};

/// Purges every event through checkpoint `checkpoint_id`'s seq; returns how many events went.
/// Runs as the owner (operators only: the app role may not execute the procedure), passing the
/// checkpoint key so that the database checks the signature itself.
pub async fn purge_through(ctx: &Context, checkpoint_id: i64) -> anyhow::Result<i64> {
    let key = keys::load(&ctx.home.keys_dir(), AUDIT_CHECKPOINT_KEY)?
        .context("no checkpoint key (FINTRAIL_HOME/keys): retention needs the key that signed the checkpoint")?;
    let client = ctx.db.connect(DbRole::Admin).await?;
    client.batch_execute("SET ROLE fintrail_owner").await?;
    let purged: i64 = client
        .query_one("SELECT fintrail.audit_purge_through($1, $2)", &[&checkpoint_id, &key.secret().as_slice()])
        .await
        .with_context(|| format!("purging the audit trail through checkpoint {checkpoint_id}"))?
        .get(0);
    debug_assert!(purged >= 0);
    tracing::info!(log_class = "audit", checkpoint_id, purged, "audit events purged through a signed checkpoint");
    Ok(purged)
}
