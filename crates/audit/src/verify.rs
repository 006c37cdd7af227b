//! `fintrail audit verify`: recompute every link, compare with the stored chain and with every
//! signed checkpoint, and name the first broken event.

use std::collections::BTreeMap;
use std::time::Instant;

use fintrail_domain::audit::{ChainBreak, Link, GENESIS};
use futures_util::TryStreamExt as _;

use super::checkpoint::{signature_valid, Checkpoint};
use super::EVENT_COLUMNS;
use fintrail_db::keys::Key;
use fintrail_db::DbRole;
use fintrail_domain::audit::AuditRecordRef;
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::types::Type;

/// Counters of a verification run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Events read.
    pub events: u64,
    /// Events whose link was recomputed and matched.
    pub linked: u64,
    /// Committed events not yet linked by the sequencer (after the chain head).
    pub pending: u64,
    /// Checkpoints whose signature and link were checked.
    pub checkpoints: usize,
    /// The last linked sequence number.
    pub head_seq: i64,
    /// Wall time, milliseconds.
    pub elapsed_ms: u128,
}

/// The verdict.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every link and checkpoint matches.
    Intact(Report),
    /// The first broken event (by sequence number) and why.
    Tampered {
        /// Counters up to the break.
        report: Report,
        /// The first broken event's sequence number.
        seq: i64,
        /// Human explanation naming the event.
        reason: String,
    },
    /// Verification could not be performed (exit 2).
    CannotCheck(String),
}

impl Outcome {
    /// The CLI exit code: 0 intact, 1 tampered, 2 cannot check.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Intact(_) => 0,
            Outcome::Tampered { .. } => 1,
            Outcome::CannotCheck(_) => 2,
        }
    }
}

/// Column types of [`EVENT_COLUMNS`] for binary COPY.
pub const EVENT_TYPES: [Type; 11] = [
    Type::INT8,
    Type::TIMESTAMPTZ,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// Borrows one binary COPY row as an event.
pub fn record_ref(row: &BinaryCopyOutRow) -> Result<AuditRecordRef<'_>, tokio_postgres::Error> {
    let at: chrono::DateTime<chrono::Utc> = row.try_get(1)?;
    Ok(AuditRecordRef {
        seq: row.try_get(0)?,
        at_unix_micros: at.timestamp_micros(),
        actor: row.try_get(2)?,
        on_behalf_of: row.try_get(3)?,
        action: row.try_get(4)?,
        subject: row.try_get(5)?,
        permission: row.try_get(6)?,
        allowed: row.try_get(7)?,
        request_id: row.try_get(8)?,
        before: row.try_get(9)?,
        after: row.try_get(10)?,
    })
}

/// Verifies the whole trail in one snapshot. Events and links are streamed by two connections
/// sharing an exported snapshot (two index scans in parallel, no server-side join or sort) and
/// merged here in sequence order.
pub async fn verify(
    db: &fintrail_db::Database,
    checkpoints: &[Checkpoint],
    key: Option<&Key>,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut report = Report::default();
    // 1. Checkpoint signatures.
    if !checkpoints.is_empty() {
        let Some(key) = key else {
            return Ok(Outcome::CannotCheck(
                "checkpoints exist but the checkpoint key is missing (FINTRAIL_HOME/keys)".into(),
            ));
        };
        for cp in checkpoints {
            if cp.key_id != key.id {
                return Ok(Outcome::CannotCheck(format!(
                    "checkpoint {} is signed by unknown key {}",
                    cp.source, cp.key_id
                )));
            }
            if !signature_valid(key, cp) {
                return Ok(Outcome::Tampered {
                    report,
                    seq: cp.seq,
                    reason: format!(
                        "event {}: checkpoint {} has an invalid signature (forged or altered)",
                        cp.seq, cp.source
                    ),
                });
            }
        }
    }
    let mut events_conn = db.connect(DbRole::App).await?;
    let mut chain_conn = db.connect(DbRole::App).await?;
    let tx = events_conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let snapshot: String = tx.query_one("SELECT pg_export_snapshot()", &[]).await?.get(0);
    let ctx = chain_conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    ctx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", snapshot.replace('\'', ""))).await?;
    let (purged_through, mut prev): (i64, Link) = match tx
        .query_opt("SELECT purged_through_seq, anchor_link FROM fintrail.audit_retention ORDER BY id DESC LIMIT 1", &[])
        .await?
    {
        Some(row) => {
            let l: Vec<u8> = row.get(1);
            (row.get(0), l.try_into().unwrap_or(GENESIS))
        }
        None => (0, GENESIS),
    };
    let chain_max: i64 = tx.query_one("SELECT coalesce(max(seq), 0) FROM fintrail.audit_chain", &[]).await?.get(0);
    let mut expected: BTreeMap<i64, Vec<&Checkpoint>> = BTreeMap::new();
    for cp in checkpoints.iter().filter(|c| c.seq > purged_through) {
        expected.entry(cp.seq).or_default().push(cp);
    }
    let mut last_checkpoint_seq = purged_through;
    let mut brk: Option<(i64, String)> = None;
    // Binary COPY: the cheapest way to move a million rows (no per-row protocol round, no
    // text parsing); rows are hashed straight from the receive buffers.
    let events = tx
        .copy_out(&format!(
            "COPY (SELECT {EVENT_COLUMNS} FROM fintrail.audit_events e ORDER BY e.seq) TO STDOUT (FORMAT binary)"
        ))
        .await?;
    // Boxed (not stack-pinned) so they can be dropped, ending the COPYs, before the snapshot
    // transactions end (early on a break).
    let mut events = Box::pin(BinaryCopyOutStream::new(events, &EVENT_TYPES));
    let links = ctx
        .copy_out("COPY (SELECT seq, link FROM fintrail.audit_chain ORDER BY seq) TO STDOUT (FORMAT binary)")
        .await?;
    let mut links = Box::pin(BinaryCopyOutStream::new(links, &[Type::INT8, Type::BYTEA]));
    let mut scratch = Vec::with_capacity(1024);
    let mut next_event = events.try_next().await?;
    let mut next_link = links.try_next().await?;
    loop {
        let e_seq: Option<i64> = next_event.as_ref().map(|r| r.try_get(0)).transpose()?;
        let c_seq: Option<i64> = next_link.as_ref().map(|r| r.try_get(0)).transpose()?;
        let seq = match (e_seq, c_seq) {
            (None, None) => break,
            (Some(e), Some(c)) => e.min(c),
            (Some(e), None) => e,
            (None, Some(c)) => c,
        };
        match (e_seq == Some(seq), c_seq == Some(seq)) {
            (true, true) => {
                report.events += 1;
                let (Some(erow), Some(crow)) = (&next_event, &next_link) else { unreachable!("both present") };
                let link = record_ref(erow)?.link(&prev, &mut scratch);
                let stored: &[u8] = crow.try_get(1)?;
                if stored != link {
                    brk = Some((seq, ChainBreak::LinkMismatch { seq }.to_string()));
                    break;
                }
                prev = link;
                report.linked += 1;
                report.head_seq = seq;
                if let Some(cps) = expected.remove(&seq) {
                    report.checkpoints += cps.len();
                    if let Some(cp) = cps.iter().find(|cp| cp.link != link) {
                        brk = Some((
                            last_checkpoint_seq + 1,
                            format!(
                                "events {}..={seq}: checkpoint {} does not match the trail (events rewritten and the chain recomputed); the first broken event is in this range",
                                last_checkpoint_seq + 1,
                                cp.source
                            ),
                        ));
                        break;
                    }
                    last_checkpoint_seq = seq;
                }
                next_event = events.try_next().await?;
                next_link = links.try_next().await?;
            }
            (true, false) => {
                report.events += 1;
                if seq <= chain_max {
                    brk = Some((seq, ChainBreak::UnchainedEvent { seq }.to_string()));
                    break;
                }
                report.pending += 1;
                next_event = events.try_next().await?;
            }
            (false, true) => {
                brk = Some((seq, ChainBreak::MissingEvent { seq }.to_string()));
                break;
            }
            (false, false) => unreachable!("seq is one of the two heads"),
        }
    }
    drop(events);
    drop(links);
    // Read-only snapshot transactions: rolled back on drop (a COPY cut short is discarded).
    drop(ctx);
    drop(tx);
    // Checkpoints never reached: the trail ends (or has a hole) where they say events were.
    // An earlier such hole beats a later link mismatch (the mismatch is its consequence).
    let limit = brk.as_ref().map_or(i64::MAX, |(s, _)| *s);
    if let Some((&seq, cps)) = expected.iter().next().filter(|(s, _)| **s < limit || brk.is_none()) {
        let first_missing = if seq > report.head_seq { report.head_seq + 1 } else { seq };
        if brk.is_none() || first_missing < limit {
            brk = Some((
                first_missing,
                format!(
                    "event {first_missing}: missing, but checkpoint {} covers the trail up to event {seq} (trail truncated)",
                    cps[0].source
                ),
            ));
        }
    }
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(match brk {
        None => Outcome::Intact(report),
        Some((seq, reason)) => Outcome::Tampered { report, seq, reason },
    })
}
/// Runs the verification, mapping every failure to check into [`Outcome::CannotCheck`].
pub async fn verify_trail(ctx: &fintrail_db::Context, dir: &std::path::Path) -> Outcome {
    let client = match ctx.db.connect(DbRole::App).await {
        Ok(c) => c,
        Err(e) => return Outcome::CannotCheck(format!("cannot connect: {e:#}")),
    };
    let cps = match super::checkpoint::load_all(&client, dir).await {
        Ok(c) => c,
        Err(e) => return Outcome::CannotCheck(format!("cannot read checkpoints: {e:#}")),
    };
    let key = match fintrail_db::keys::load(&ctx.home.keys_dir(), fintrail_db::keys::AUDIT_CHECKPOINT_KEY) {
        Ok(k) => k,
        Err(e) => return Outcome::CannotCheck(format!("cannot read the checkpoint key: {e:#}")),
    };
    drop(client);
    match verify(&ctx.db, &cps, key.as_ref()).await {
        Ok(o) => o,
        Err(e) => Outcome::CannotCheck(format!("{e:#}")),
    }
}
