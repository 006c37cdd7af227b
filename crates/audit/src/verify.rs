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

/// The first broken event found and why.
#[derive(Debug, Clone)]
struct Break {
    seq: i64,
    reason: String,
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
    let mut events_conn = db.connect(DbRole::App).await?;
    let mut chain_conn = db.connect(DbRole::App).await?;
    let tx = begin_read_only(&mut events_conn).await?;
    let snapshot: String = tx.query_one("SELECT pg_export_snapshot()", &[]).await?.get(0);
    let ctx = begin_read_only(&mut chain_conn).await?;
    ctx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", snapshot.replace('\'', ""))).await?;
    let anchors: Vec<Anchor> = tx
        .query("SELECT id, purged_through_seq, anchor_link FROM fintrail.audit_retention ORDER BY id", &[])
        .await?
        .iter()
        .map(|r| Anchor { id: r.get(0), seq: r.get(1), link: r.get(2) })
        .collect();
    // 1. Every retention anchor against a signed checkpoint (a forged one names the erased
    //    range), then every checkpoint's signature.
    if let Some(outcome) = check_anchors(&anchors, checkpoints, key) {
        return Ok(outcome);
    }
    if let Some(outcome) = check_signatures(checkpoints, key) {
        return Ok(outcome);
    }
    let (purged_through, anchor): (i64, Link) = match anchors.last() {
        Some(a) => (a.seq, a.link.clone().try_into().unwrap_or(GENESIS)),
        None => (0, GENESIS),
    };
    let chain_max: i64 = tx.query_one("SELECT coalesce(max(seq), 0) FROM fintrail.audit_chain", &[]).await?.get(0);
    let mut walk = ChainWalk::new(checkpoints, purged_through, anchor, chain_max);
    let brk = stream_and_walk(&tx, &ctx, &mut walk).await?;
    // Read-only snapshot transactions: rolled back on drop (a COPY cut short is discarded).
    drop(ctx);
    drop(tx);
    let (mut report, brk) = walk.finish(brk);
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(match brk {
        None => Outcome::Intact(report),
        Some(Break { seq, reason }) => Outcome::Tampered { report, seq, reason },
    })
}

/// A retention anchor: events through `seq` were purged; the chain resumes from `link`.
struct Anchor {
    id: i64,
    seq: i64,
    link: Vec<u8>,
}

/// Every retention anchor must be a checkpoint signed by our key: the same seq and link as one
/// whose signature holds (from the database or, what the database cannot rewrite, a file).
/// Otherwise the events it erased were erased without a signed checkpoint (a forged anchor, or
/// a forged checkpoint fed to the purge): tampered, naming the range. Without the key no anchor
/// can be checked.
fn check_anchors(anchors: &[Anchor], checkpoints: &[Checkpoint], key: Option<&Key>) -> Option<Outcome> {
    if anchors.is_empty() {
        return None;
    }
    let Some(key) = key else {
        return Some(Outcome::CannotCheck(
            "events were purged but the checkpoint key is missing (FINTRAIL_HOME/keys): the retention anchors cannot be checked"
                .into(),
        ));
    };
    let mut erased_from = 1;
    for a in anchors {
        let signed = checkpoints
            .iter()
            .any(|cp| cp.seq == a.seq && cp.link.as_slice() == a.link.as_slice() && signature_valid(key, cp));
        if !signed {
            let first = erased_from.min(a.seq);
            return Some(Outcome::Tampered {
                report: Report::default(),
                seq: first,
                reason: format!(
                    "events {first}..={}: erased under retention anchor {} that matches no signed checkpoint (forged anchor or forged checkpoint)",
                    a.seq, a.id
                ),
            });
        }
        erased_from = a.seq + 1;
    }
    None
}

/// Checks every checkpoint's key and signature: the verdict when one fails, `None` when all hold.
fn check_signatures(checkpoints: &[Checkpoint], key: Option<&Key>) -> Option<Outcome> {
    if checkpoints.is_empty() {
        return None;
    }
    let Some(key) = key else {
        return Some(Outcome::CannotCheck(
            "checkpoints exist but the checkpoint key is missing (FINTRAIL_HOME/keys)".into(),
        ));
    };
    for cp in checkpoints {
        if cp.key_id != key.id {
            return Some(Outcome::CannotCheck(format!(
                "checkpoint {} is signed by unknown key {}",
                cp.source, cp.key_id
            )));
        }
        if !signature_valid(key, cp) {
            return Some(Outcome::Tampered {
                report: Report::default(),
                seq: cp.seq,
                reason: format!(
                    "event {}: checkpoint {} has an invalid signature (forged or altered)",
                    cp.seq, cp.source
                ),
            });
        }
    }
    None
}

/// A read-only repeatable-read transaction (one side of the shared snapshot).
async fn begin_read_only(
    client: &mut tokio_postgres::Client,
) -> Result<tokio_postgres::Transaction<'_>, tokio_postgres::Error> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
}

/// Streams events (`tx`) and links (`ctx`) in sequence order into `walk`; the first break, if
/// any. The COPYs end when this returns, before the snapshot transactions do.
async fn stream_and_walk(
    tx: &tokio_postgres::Transaction<'_>,
    ctx: &tokio_postgres::Transaction<'_>,
    walk: &mut ChainWalk<'_>,
) -> anyhow::Result<Option<Break>> {
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
    let mut next_event = events.try_next().await?;
    let mut next_link = links.try_next().await?;
    loop {
        let e_seq: Option<i64> = next_event.as_ref().map(|r| r.try_get(0)).transpose()?;
        let c_seq: Option<i64> = next_link.as_ref().map(|r| r.try_get(0)).transpose()?;
        let Some((seq, heads)) = merge_step(e_seq, c_seq) else { return Ok(None) };
        let step = match heads {
            Heads::Both => {
                let (Some(erow), Some(crow)) = (&next_event, &next_link) else { unreachable!("both present") };
                walk.linked(seq, record_ref(erow)?, crow.try_get(1)?)
            }
            Heads::EventOnly => walk.unlinked(seq),
            Heads::LinkOnly => Err(ChainWalk::missing_event(seq)),
        };
        // Stop reading at the first break: the rest of the COPYs is discarded.
        if let Err(brk) = step {
            return Ok(Some(brk));
        }
        if heads != Heads::LinkOnly {
            next_event = events.try_next().await?;
        }
        if heads == Heads::Both {
            next_link = links.try_next().await?;
        }
    }
}

/// Which streams' heads carry the next sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heads {
    /// An event and its link.
    Both,
    /// An event without a link.
    EventOnly,
    /// A link without its event.
    LinkOnly,
}

/// The next sequence number of the merge of two ascending streams with heads `e_seq` (events)
/// and `c_seq` (links), and which heads carry it; `None` when both ended.
fn merge_step(e_seq: Option<i64>, c_seq: Option<i64>) -> Option<(i64, Heads)> {
    match (e_seq, c_seq) {
        (None, None) => None,
        (Some(e), Some(c)) if e == c => Some((e, Heads::Both)),
        (Some(e), Some(c)) if e < c => Some((e, Heads::EventOnly)),
        (Some(_), Some(c)) => Some((c, Heads::LinkOnly)),
        (Some(e), None) => Some((e, Heads::EventOnly)),
        (None, Some(c)) => Some((c, Heads::LinkOnly)),
    }
}

/// The chain walk over records already read, in sequence order: the comparison rules, with no
/// I/O (the COPY streams are read by [`stream_and_walk`]).
struct ChainWalk<'c> {
    report: Report,
    /// The link of the last linked event (the retention anchor, or genesis, before the first).
    prev: Link,
    /// Checkpoints after the purged prefix not reached yet, by sequence number.
    expected: BTreeMap<i64, Vec<&'c Checkpoint>>,
    /// The last sequence number a checkpoint confirmed (the purged prefix's end at first).
    last_checkpoint_seq: i64,
    /// The highest linked sequence number in the snapshot: an event after it is pending.
    chain_max: i64,
    /// Hashing buffer, reused for every event.
    scratch: Vec<u8>,
}

impl<'c> ChainWalk<'c> {
    fn new(checkpoints: &'c [Checkpoint], purged_through: i64, anchor: Link, chain_max: i64) -> Self {
        let mut expected: BTreeMap<i64, Vec<&Checkpoint>> = BTreeMap::new();
        for cp in checkpoints.iter().filter(|c| c.seq > purged_through) {
            expected.entry(cp.seq).or_default().push(cp);
        }
        Self {
            report: Report::default(),
            prev: anchor,
            expected,
            last_checkpoint_seq: purged_through,
            chain_max,
            scratch: Vec::with_capacity(1024),
        }
    }

    /// Event `seq` with its stored link: recomputes the link and checks the checkpoints at `seq`.
    fn linked(&mut self, seq: i64, record: AuditRecordRef<'_>, stored: &[u8]) -> Result<(), Break> {
        self.report.events += 1;
        let link = record.link(&self.prev, &mut self.scratch);
        if stored != link {
            return Err(Break { seq, reason: ChainBreak::LinkMismatch { seq }.to_string() });
        }
        self.prev = link;
        self.report.linked += 1;
        self.report.head_seq = seq;
        if let Some(cps) = self.expected.remove(&seq) {
            self.report.checkpoints += cps.len();
            if let Some(cp) = cps.iter().find(|cp| cp.link != link) {
                let first = self.last_checkpoint_seq + 1;
                return Err(Break {
                    seq: first,
                    reason: format!(
                        "events {first}..={seq}: checkpoint {} does not match the trail (events rewritten and the chain recomputed); the first broken event is in this range",
                        cp.source
                    ),
                });
            }
            self.last_checkpoint_seq = seq;
        }
        Ok(())
    }

    /// Event `seq` without a link: pending after the chain head, a break before it.
    fn unlinked(&mut self, seq: i64) -> Result<(), Break> {
        self.report.events += 1;
        if seq <= self.chain_max {
            return Err(Break { seq, reason: ChainBreak::UnchainedEvent { seq }.to_string() });
        }
        self.report.pending += 1;
        Ok(())
    }

    /// A link without its event `seq`.
    fn missing_event(seq: i64) -> Break {
        Break { seq, reason: ChainBreak::MissingEvent { seq }.to_string() }
    }

    /// The counters and the first break, given the walk's own break `brk`.
    fn finish(self, mut brk: Option<Break>) -> (Report, Option<Break>) {
        let report = self.report;
        debug_assert!(report.linked + report.pending <= report.events);
        // Checkpoints never reached: the trail ends (or has a hole) where they say events were.
        // An earlier such hole beats a later link mismatch (the mismatch is its consequence).
        let limit = brk.as_ref().map_or(i64::MAX, |b| b.seq);
        if let Some((&seq, cps)) = self.expected.iter().next().filter(|(s, _)| **s < limit || brk.is_none()) {
            let first_missing = if seq > report.head_seq { report.head_seq + 1 } else { seq };
            if brk.is_none() || first_missing < limit {
                brk = Some(Break {
                    seq: first_missing,
                    reason: format!(
                        "event {first_missing}: missing, but checkpoint {} covers the trail up to event {seq} (trail truncated)",
                        cps[0].source
                    ),
                });
            }
        }
        (report, brk)
    }
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

#[cfg(test)]
mod tests {
    use super::{merge_step, Heads};

    #[test]
    fn the_merge_takes_the_lower_head_and_says_which_streams_carry_it() {
        assert_eq!(merge_step(None, None), None);
        assert_eq!(merge_step(Some(3), Some(3)), Some((3, Heads::Both)));
        assert_eq!(merge_step(Some(3), Some(5)), Some((3, Heads::EventOnly)));
        assert_eq!(merge_step(Some(5), Some(3)), Some((3, Heads::LinkOnly)));
        assert_eq!(merge_step(Some(7), None), Some((7, Heads::EventOnly)));
        assert_eq!(merge_step(None, Some(7)), Some((7, Heads::LinkOnly)));
    }
}
