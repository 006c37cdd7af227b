//! `fintrail audit verify`: recompute every link, compare with the stored chain and with every
//! signed checkpoint, and name the first broken event.

use std::collections::BTreeMap;
use std::time::Instant;

use fintrail_domain::audit::{ChainBreak, Link, GENESIS};

use super::checkpoint::{signature_valid, Checkpoint};
pub use super::scan::ScanLimits;
use super::scan::{self, Partition, Reader, ScanPlan, Step, Summary};
use fintrail_db::keys::Key;
use fintrail_db::DbRole;

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
    /// Where the time went.
    pub timing: Timing,
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

/// The first broken event found and why.
#[derive(Debug, Clone)]
struct Break {
    seq: i64,
    reason: String,
}

/// Verifies the whole trail in one snapshot with the default [`ScanLimits`].
pub async fn verify(
    db: &fintrail_db::Database,
    checkpoints: &[Checkpoint],
    key: Option<&Key>,
) -> anyhow::Result<Outcome> {
    verify_with(db, checkpoints, key, ScanLimits::default()).await
}

/// Verifies the whole trail in one snapshot: partitions of it are read and hashed by parallel
/// readers sharing an exported snapshot ([`crate::scan`]) and walked here in sequence order.
pub async fn verify_with(
    db: &fintrail_db::Database,
    checkpoints: &[Checkpoint],
    key: Option<&Key>,
    limits: ScanLimits,
) -> anyhow::Result<Outcome> {
    limits.check()?;
    let started = Instant::now();
    let mut conn = db.connect(DbRole::App).await?;
    let tx = begin_read_only(&mut conn).await?;
    let snapshot: String = tx.query_one("SELECT pg_export_snapshot()", &[]).await?.get(0);
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
    let bounds = tx
        .query_one(
            "SELECT (SELECT coalesce(max(seq), 0) FROM fintrail.audit_chain), \
                    least((SELECT min(seq) FROM fintrail.audit_events), (SELECT min(seq) FROM fintrail.audit_chain)), \
                    greatest((SELECT max(seq) FROM fintrail.audit_events), (SELECT max(seq) FROM fintrail.audit_chain))",
            &[],
        )
        .await?;
    let (chain_max, first, last): (i64, Option<i64>, Option<i64>) = (bounds.get(0), bounds.get(1), bounds.get(2));
    let mut walk = ChainWalk::new(checkpoints, purged_through, chain_max);
    let mut checkpoint_seqs: Vec<i64> = checkpoints.iter().map(|c| c.seq).collect();
    checkpoint_seqs.sort_unstable();
    checkpoint_seqs.dedup();
    let plan = ScanPlan { anchor, chain_max, checkpoint_seqs, hash: true, limits };
    let parts = match (first, last) {
        (Some(first), Some(last)) => scan::partitions(first, last, limits.partition_seqs),
        _ => Vec::new(),
    };
    let scanned = scan_and_walk(db, &snapshot, plan, parts, |steps| walk.apply(steps)).await?;
    // The readers' snapshot transactions ended with their connections; this one is read-only.
    drop(tx);
    let (mut report, brk) = walk.finish(scanned.brk);
    report.timing = scanned.timing;
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(match brk {
        None => Outcome::Intact(report),
        Some(Break { seq, reason }) => Outcome::Tampered { report, seq, reason },
    })
}

/// Reads the trail exactly as [`verify_with`] does (same readers, same COPYs, same decoding and
/// canonical encoding) without hashing and without the walk: the events read and the seconds
/// taken, the floor of any verifier on these connections.
pub async fn read_floor(db: &fintrail_db::Database, limits: ScanLimits) -> anyhow::Result<(u64, f64)> {
    limits.check()?;
    let mut conn = db.connect(DbRole::App).await?;
    let tx = begin_read_only(&mut conn).await?;
    let started = Instant::now();
    let snapshot: String = tx.query_one("SELECT pg_export_snapshot()", &[]).await?.get(0);
    let row =
        tx.query_one("SELECT coalesce(min(seq), 1), coalesce(max(seq), 0) FROM fintrail.audit_events", &[]).await?;
    let (first, last): (i64, i64) = (row.get(0), row.get(1));
    let plan = ScanPlan { anchor: GENESIS, chain_max: i64::MAX, checkpoint_seqs: Vec::new(), hash: false, limits };
    let mut events = 0u64;
    let parts = scan::partitions(first, last, limits.partition_seqs);
    scan_and_walk(db, &snapshot, plan, parts, |steps| {
        for s in steps {
            events += match s {
                Step::Linked { count, .. } => *count,
                _ => 1,
            };
        }
        None
    })
    .await?;
    Ok((events, started.elapsed().as_secs_f64()))
}

/// Where verification's time went, in seconds; the readers' figures are summed over readers
/// (they run at the same time, so they can exceed the wall time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Readers waiting for and decoding the COPY streams, and encoding events canonically.
    pub read_secs: f64,
    /// Readers hashing (SHA-256 of each event).
    pub hash_secs: f64,
    /// The walk folding the readers' summaries in sequence order (one thread).
    pub fold_secs: f64,
    /// The walk waiting for the next partition's summary.
    pub wait_secs: f64,
}

/// The walk's verdict and the timing.
struct Scanned {
    brk: Option<Break>,
    timing: Timing,
}

/// Aborts the readers when the walk ends (early at a break): their connections close, which
/// ends their COPYs and snapshot transactions.
struct Readers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Starts the readers (reader `r` takes partitions `r`, `r + readers`, ...) and feeds their
/// summaries to `fold` in partition order, until the end or the first break `fold` returns.
async fn scan_and_walk(
    db: &fintrail_db::Database,
    snapshot: &str,
    plan: ScanPlan,
    parts: Vec<Partition>,
    mut fold: impl FnMut(&[Step]) -> Option<Break>,
) -> anyhow::Result<Scanned> {
    let readers_n = plan.limits.readers.min(parts.len()).max(1);
    let plan = std::sync::Arc::new(plan);
    let mut queues = Vec::with_capacity(readers_n);
    let mut handles = Readers(Vec::with_capacity(readers_n));
    for r in 0..readers_n {
        let (tx, rx) = tokio::sync::mpsc::channel::<anyhow::Result<Summary>>(plan.limits.queue_depth);
        let mine: Vec<Partition> = parts.iter().copied().skip(r).step_by(readers_n).collect();
        let (db, snapshot, plan) = (db.clone(), snapshot.to_owned(), plan.clone());
        handles.0.push(tokio::spawn(async move {
            let reader = match Reader::connect(&db, &snapshot).await {
                Ok(reader) => reader,
                Err(e) => return drop(tx.send(Err(e)).await),
            };
            for part in mine {
                let summary = reader.read(&plan, part).await;
                let failed = summary.is_err();
                // The walk stopped (a break) or this reader failed: nothing more to read.
                if tx.send(summary).await.is_err() || failed {
                    return;
                }
            }
        }));
        queues.push(rx);
    }
    let mut timing = Timing::default();
    for part in &parts {
        let waited = Instant::now();
        let summary = queues[part.index % readers_n]
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("a verification reader ended early (partition {})", part.index))??;
        let folded = Instant::now();
        timing.wait_secs += (folded - waited).as_secs_f64();
        timing.read_secs += summary.read.as_secs_f64();
        timing.hash_secs += summary.hash.as_secs_f64();
        let brk = fold(&summary.steps);
        timing.fold_secs += folded.elapsed().as_secs_f64();
        if brk.is_some() {
            return Ok(Scanned { brk, timing });
        }
    }
    Ok(Scanned { brk: None, timing })
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

/// The chain walk over the readers' summaries, in sequence order: the comparison rules, with no
/// I/O and no hashing (done by [`crate::scan`]).
struct ChainWalk<'c> {
    report: Report,
    /// Checkpoints after the purged prefix not reached yet, by sequence number.
    expected: BTreeMap<i64, Vec<&'c Checkpoint>>,
    /// The last sequence number a checkpoint confirmed (the purged prefix's end at first).
    last_checkpoint_seq: i64,
    /// The highest linked sequence number in the snapshot: an event after it is pending.
    chain_max: i64,
}

impl<'c> ChainWalk<'c> {
    fn new(checkpoints: &'c [Checkpoint], purged_through: i64, chain_max: i64) -> Self {
        let mut expected: BTreeMap<i64, Vec<&Checkpoint>> = BTreeMap::new();
        for cp in checkpoints.iter().filter(|c| c.seq > purged_through) {
            expected.entry(cp.seq).or_default().push(cp);
        }
        Self { report: Report::default(), expected, last_checkpoint_seq: purged_through, chain_max }
    }

    /// Folds a partition's steps; the first break, if any.
    fn apply(&mut self, steps: &[Step]) -> Option<Break> {
        for step in steps {
            let checked = match *step {
                Step::Linked { count, last_seq, ref link } => self.linked(count, last_seq, link),
                Step::Mismatch(seq) => {
                    self.report.events += 1;
                    Err(Break { seq, reason: ChainBreak::LinkMismatch { seq }.to_string() })
                }
                Step::Unlinked(seq) => self.unlinked(seq),
                Step::Missing(seq) => Err(Break { seq, reason: ChainBreak::MissingEvent { seq }.to_string() }),
            };
            if let Err(brk) = checked {
                return Some(brk);
            }
        }
        None
    }

    /// `count` events whose links matched, the last one `seq` with `link`: checks the
    /// checkpoints at `seq` (a run ends at every checkpoint's sequence number).
    fn linked(&mut self, count: u64, seq: i64, link: &Link) -> Result<(), Break> {
        assert!(count > 0, "runs are non-empty");
        self.report.events += count;
        self.report.linked += count;
        self.report.head_seq = seq;
        if let Some(cps) = self.expected.remove(&seq) {
            self.report.checkpoints += cps.len();
            if let Some(cp) = cps.iter().find(|cp| &cp.link != link) {
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
    verify_trail_with(ctx, dir, ScanLimits::default()).await
}

/// [`verify_trail`] with these limits (tests cut small partitions and chunks).
pub async fn verify_trail_with(ctx: &fintrail_db::Context, dir: &std::path::Path, limits: ScanLimits) -> Outcome {
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
    match verify_with(&ctx.db, &cps, key.as_ref(), limits).await {
        Ok(o) => o,
        Err(e) => Outcome::CannotCheck(format!("{e:#}")),
    }
}
