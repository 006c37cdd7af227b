//! The sequencer: links committed audit events into the hash chain, in sequence order, after
//! commit, in batches. Exactly one sequencer runs per database (session advisory lock).
//!
//! Commit order differs from sequence order: event 7 may commit before event 6, and a rolled
//! back transaction leaves 6 missing for ever. The sequencer chains only a gap-free prefix; on
//! a gap it remembers the snapshot in which it saw the gap. The insert trigger takes the
//! writer's transaction id *before* its sequence number, so whoever holds a missing number was
//! already running (with an xid) when the later event committed, hence is listed as in
//! progress in that snapshot. Once every transaction in progress in that snapshot has ended,
//! a number still missing can never appear: the gap is skipped (the next link covers the
//! previous link, so the skip itself is part of the chain).

use fintrail_db::{Database, DbRole};
use fintrail_domain::audit::{Link, GENESIS};

use super::{record_from_row, EVENT_COLUMNS};

/// Advisory lock key of the sequencer ("ftaudit\0").
pub const SEQUENCER_LOCK_KEY: i64 = 0x6674_6175_6469_7400;
/// Events read and linked per round (bounds memory and transaction size).
pub const BATCH_EVENTS: i64 = 20_000;

/// A gap seen after `after_seq`, and the snapshot in which it was seen.
#[derive(Debug, Clone)]
struct Gap {
    after_seq: i64,
    snapshot: String,
}

/// The sequencer's statements, prepared once per connection: a round then sends no Parse
/// and PostgreSQL plans nothing again (measured: with the trail on, the sequencer's backend
/// was ~70 us of PostgreSQL CPU per event at ~300 events/s, a third of it parsing and
/// planning the same five statements every round).
struct Statements {
    gap_settled: tokio_postgres::Statement,
    snapshot: tokio_postgres::Statement,
    read: tokio_postgres::Statement,
    link: tokio_postgres::Statement,
}

impl Statements {
    async fn prepare(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let read =
            format!("SELECT {EVENT_COLUMNS} FROM fintrail.audit_events e WHERE e.seq > $1 ORDER BY e.seq LIMIT $2");
        let (gap_settled, snapshot, read, link) = tokio::try_join!(
            client.prepare(
                "SELECT coalesce(bool_and(pg_xact_status(x) IS DISTINCT FROM 'in progress'), true) \
                 FROM pg_snapshot_xip($1::text::pg_snapshot) AS x"
            ),
            client.prepare("SELECT pg_current_snapshot()::text"),
            client.prepare(&read),
            client.prepare(
                "INSERT INTO fintrail.audit_chain (seq, link) SELECT * FROM unnest($1::bigint[], $2::bytea[])"
            ),
        )?;
        Ok(Self { gap_settled, snapshot, read, link })
    }
}

/// The single chain writer.
pub struct Sequencer {
    client: tokio_postgres::Client,
    statements: Statements,
    last_seq: i64,
    last_link: Link,
    gap: Option<Gap>,
    scratch: Vec<u8>,
}

/// The current head of the chain.
pub async fn head(client: &tokio_postgres::Client) -> Result<(i64, Link), tokio_postgres::Error> {
    if let Some(row) =
        client.query_opt("SELECT seq, link FROM fintrail.audit_chain ORDER BY seq DESC LIMIT 1", &[]).await?
    {
        let link: Vec<u8> = row.get(1);
        return Ok((row.get(0), link.try_into().unwrap_or(GENESIS)));
    }
    if let Some(row) = client
        .query_opt("SELECT purged_through_seq, anchor_link FROM fintrail.audit_retention ORDER BY id DESC LIMIT 1", &[])
        .await?
    {
        let link: Vec<u8> = row.get(1);
        return Ok((row.get(0), link.try_into().unwrap_or(GENESIS)));
    }
    Ok((0, GENESIS))
}

impl Sequencer {
    /// Connects as the sequencer role (the only one that may write links) and takes the
    /// sequencer lock; `None` if another process (a running server) is the sequencer.
    pub async fn try_open(db: &Database) -> anyhow::Result<Option<Self>> {
        anyhow::ensure!(
            db.has_credentials(DbRole::Sequencer),
            "no credentials for {} (FINTRAIL_SEQUENCER_PASSWORD): the audit chain is not being linked",
            DbRole::Sequencer
        );
        let client = db.connect(DbRole::Sequencer).await?;
        let locked: bool = client.query_one("SELECT pg_try_advisory_lock($1)", &[&SEQUENCER_LOCK_KEY]).await?.get(0);
        if !locked {
            return Ok(None);
        }
        // Links are a pure function of committed events: after a crash the sequencer recomputes
        // the same ones from the head, so its own commits need not wait for the WAL flush.
        client.batch_execute("SET synchronous_commit = off").await?;
        let (last_seq, last_link) = head(&client).await?;
        let statements = Statements::prepare(&client).await?;
        Ok(Some(Self { client, statements, last_seq, last_link, gap: None, scratch: Vec::with_capacity(1024) }))
    }

    /// The last chained sequence number.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    async fn gap_settled(&self) -> Result<bool, tokio_postgres::Error> {
        let Some(gap) = &self.gap else { return Ok(false) };
        if gap.after_seq != self.last_seq {
            return Ok(false);
        }
        let row = self.client.query_one(&self.statements.gap_settled, &[&gap.snapshot]).await?;
        Ok(row.get(0))
    }

    /// Links as many committed events as possible; returns how many were linked.
    pub async fn run_once(&mut self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.round().await?;
            total += n;
            if n < BATCH_EVENTS as usize {
                return Ok(total);
            }
        }
    }

    async fn round(&mut self) -> anyhow::Result<usize> {
        // Checked before the read below, so a number committed meanwhile is visible to it.
        let settled = self.gap_settled().await?;
        let tx = self
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let snapshot: String = tx.query_one(&self.statements.snapshot, &[]).await?.get(0);
        let rows = tx.query(&self.statements.read, &[&self.last_seq, &BATCH_EVENTS]).await?;
        tx.commit().await?;
        let mut seqs = Vec::with_capacity(rows.len());
        let mut links: Vec<Vec<u8>> = Vec::with_capacity(rows.len());
        let (mut last_seq, mut last_link) = (self.last_seq, self.last_link);
        for row in &rows {
            let rec = record_from_row(row, 0)?;
            if rec.seq != last_seq + 1 {
                let may_skip =
                    settled && seqs.is_empty() && self.gap.as_ref().is_some_and(|g| g.after_seq == self.last_seq);
                if !may_skip {
                    if self.gap.as_ref().is_none_or(|g| g.after_seq != last_seq) {
                        self.gap = Some(Gap { after_seq: last_seq, snapshot: snapshot.clone() });
                    }
                    break;
                }
            }
            let link = rec.link(&last_link, &mut self.scratch);
            seqs.push(rec.seq);
            links.push(link.to_vec());
            last_seq = rec.seq;
            last_link = link;
        }
        if seqs.is_empty() {
            return Ok(0);
        }
        self.client.execute(&self.statements.link, &[&seqs, &links]).await?;
        // A gap behind the new head was skipped (settled) or filled: forget it.
        if self.gap.as_ref().is_some_and(|g| g.after_seq < last_seq) {
            self.gap = None;
        }
        self.last_seq = last_seq;
        self.last_link = last_link;
        tracing::debug!(log_class = "app", linked = seqs.len(), head = last_seq, "audit chain advanced");
        Ok(seqs.len())
    }
}
