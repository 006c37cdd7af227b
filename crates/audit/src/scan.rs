//! The parallel read behind `audit verify`: the trail is cut into partitions of `seq` ranges;
//! readers (tokio tasks on the multi-thread runtime, each with its own pair of connections in the
//! shared snapshot) stream a partition's events and links with binary COPY, hash its events in
//! chunks, and hand the walk a compact summary in sequence order.
//!
//! Why events can be hashed out of order although link(n) depends on link(n-1): event n is
//! hashed with the *stored* link n-1. Up to the first break, stored and recomputed links are equal
//! (induction from the anchor), so the first event whose check fails is exactly the first one the
//! sequential recomputation flags; what follows a break is never looked at.

use std::time::{Duration, Instant};

use fintrail_db::DbRole;
use fintrail_domain::audit::{link_of_canonical, AuditRecordRef, Link};
use futures_util::TryStreamExt as _;
use tokio_postgres::CopyOutStream;

use super::copy_row;
use super::EVENT_COLUMNS;

/// Limits of the parallel read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Sequence numbers per partition (one pair of COPYs); a partition's summary holds at most
    /// this many steps.
    pub partition_seqs: i64,
    /// Concurrent readers; each holds two connections.
    pub readers: usize,
    /// Canonical bytes encoded before a chunk is hashed.
    pub chunk_bytes_max: usize,
    /// Summaries a reader may have ready ahead of the walk.
    pub queue_depth: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        // One reader per core: on the server each reader is one backend running its COPY, here
        // it is one task decoding and hashing; more readers than cores only add switching.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { partition_seqs: 65_536, readers: cores.clamp(1, READERS_MAX), chunk_bytes_max: 1 << 20, queue_depth: 2 }
    }
}

/// The most readers (connections: twice that).
pub const READERS_MAX: usize = 8;

impl ScanLimits {
    /// Refuses limits outside their bounds.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!((1..=1 << 24).contains(&self.partition_seqs), "partition_seqs must be 1..=16777216");
        anyhow::ensure!((1..=READERS_MAX).contains(&self.readers), "readers must be 1..={READERS_MAX}");
        anyhow::ensure!((1..=64 << 20).contains(&self.chunk_bytes_max), "chunk_bytes_max must be 1..=64 MiB");
        anyhow::ensure!((1..=16).contains(&self.queue_depth), "queue_depth must be 1..=16");
        Ok(())
    }
}

/// The sequence numbers `first_seq ..= last_seq`, the `index`-th partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partition {
    pub index: usize,
    pub first_seq: i64,
    pub last_seq: i64,
}

/// The most partitions of one verification: a trail whose sequence numbers spread further (a
/// forged event at a far-away `seq`) gets wider partitions, not an unbounded list.
pub const PARTITIONS_MAX: i64 = 1 << 16;

/// Cuts `first_seq ..= last_seq` into partitions of `width` sequence numbers (wider if that
/// would make more than [`PARTITIONS_MAX`]).
pub(crate) fn partitions(first_seq: i64, last_seq: i64, width: i64) -> Vec<Partition> {
    assert!(width > 0);
    // i128: the span of two far-apart i64s overflows i64.
    let (first, last) = (i128::from(first_seq), i128::from(last_seq));
    let per_partition_min = (last - first + i128::from(PARTITIONS_MAX)) / i128::from(PARTITIONS_MAX);
    let width = i128::from(width).max(per_partition_min);
    let mut out = Vec::new();
    let mut from = first;
    while from <= last {
        let to = (from + width - 1).min(last);
        // In range: first <= from <= to <= last.
        out.push(Partition { index: out.len(), first_seq: from as i64, last_seq: to as i64 });
        from = to + 1;
    }
    assert!(out.len() as i64 <= PARTITIONS_MAX);
    out
}

/// What the walk needs of a partition, in sequence order, up to the partition's first break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// `count` linked events whose links match, the last one `last_seq` with stored `link`.
    /// A run ends at every checkpoint's sequence number, so the walk sees each one's link.
    Linked { count: u64, last_seq: i64, link: Link },
    /// A linked event whose stored link is not the recomputed one.
    Mismatch(i64),
    /// An event without a link.
    Unlinked(i64),
    /// A link without its event.
    Missing(i64),
}

/// A partition's steps and where its reader's time went.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub steps: Vec<Step>,
    /// Reading: waiting for and decoding the COPYs, canonical encoding.
    pub read: Duration,
    /// SHA-256 of the chunks.
    pub hash: Duration,
}

/// What every reader shares.
#[derive(Debug, Clone)]
pub(crate) struct ScanPlan {
    /// The link before the first event (retention anchor or genesis).
    pub anchor: Link,
    /// The highest linked sequence number: an unlinked event at or below it is a break.
    pub chain_max: i64,
    /// Sequence numbers of checkpoints, ascending, without duplicates.
    pub checkpoint_seqs: Vec<i64>,
    /// Off only for the benchmark's I/O floor: every link is taken as matching.
    pub hash: bool,
    pub limits: ScanLimits,
}

/// Events of a chunk: canonical encodings back to back, and per event where it ends.
struct Chunk {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

struct Entry {
    seq: i64,
    /// End of this event's encoding in `Chunk::bytes`.
    end: usize,
    stored: Link,
}

/// Builds one partition's summary.
struct Folder<'p> {
    plan: &'p ScanPlan,
    summary: Summary,
    /// The stored link of the last linked event.
    prev: Link,
    /// Index of the next checkpoint sequence number not passed yet.
    checkpoint_next: usize,
}

impl Folder<'_> {
    /// Hashes the chunk and records its run (and its first mismatch); false at a mismatch.
    fn flush(&mut self, chunk: &mut Chunk) -> bool {
        let started = Instant::now();
        let mut start = 0;
        let mut bad = None;
        for (i, e) in chunk.entries.iter().enumerate() {
            if self.plan.hash && link_of_canonical(&self.prev, &chunk.bytes[start..e.end]) != e.stored {
                bad = Some(i);
                break;
            }
            self.prev = e.stored;
            start = e.end;
        }
        self.summary.hash += started.elapsed();
        let good = bad.unwrap_or(chunk.entries.len());
        if let Some(last) = good.checked_sub(1).map(|i| &chunk.entries[i]) {
            self.summary.steps.push(Step::Linked { count: good as u64, last_seq: last.seq, link: last.stored });
        }
        if let Some(i) = bad {
            self.summary.steps.push(Step::Mismatch(chunk.entries[i].seq));
        }
        chunk.bytes.clear();
        chunk.entries.clear();
        bad.is_none()
    }

    /// Whether `seq` is a checkpoint's (called in ascending `seq` order).
    fn at_checkpoint(&mut self, seq: i64) -> bool {
        let seqs = &self.plan.checkpoint_seqs;
        while self.checkpoint_next < seqs.len() && seqs[self.checkpoint_next] < seq {
            self.checkpoint_next += 1;
        }
        seqs.get(self.checkpoint_next) == Some(&seq)
    }

    /// Adds a linked event to the chunk; false when reading must stop (a break).
    fn linked(&mut self, chunk: &mut Chunk, record: AuditRecordRef<'_>, stored: Option<&[u8]>) -> bool {
        let Some(Ok(stored)) = stored.map(Link::try_from) else {
            // A stored link of the wrong length matches nothing: a mismatch here, after the
            // chunk's own (earlier) events are checked.
            if self.flush(chunk) {
                self.summary.steps.push(Step::Mismatch(record.seq));
            }
            return false;
        };
        record.canonical_into(&mut chunk.bytes);
        chunk.entries.push(Entry { seq: record.seq, end: chunk.bytes.len(), stored });
        if chunk.bytes.len() >= self.plan.limits.chunk_bytes_max || self.at_checkpoint(record.seq) {
            return self.flush(chunk);
        }
        true
    }
}

/// Two connections in the exported snapshot: events and links of the same partitions.
pub(crate) struct Reader {
    events: tokio_postgres::Client,
    links: tokio_postgres::Client,
}

impl Reader {
    /// Connects both sides and joins the snapshot (read-only, repeatable read).
    pub async fn connect(db: &fintrail_db::Database, snapshot: &str) -> anyhow::Result<Self> {
        let join = format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            snapshot.replace('\'', "")
        );
        let events = db.connect(DbRole::App).await?;
        events.batch_execute(&join).await?;
        let links = db.connect(DbRole::App).await?;
        links.batch_execute(&join).await?;
        Ok(Self { events, links })
    }

    /// The stored link of the last linked event before `seq` (the anchor if none).
    async fn link_through(&self, seq: i64, anchor: Link) -> anyhow::Result<Link> {
        let row = self
            .links
            .query_opt("SELECT link FROM fintrail.audit_chain WHERE seq < $1 ORDER BY seq DESC LIMIT 1", &[&seq])
            .await?;
        // A malformed link: the hash of the next event against it fails, naming that event,
        // and an earlier partition names the malformed one first.
        Ok(row.map_or(anchor, |r| r.get::<_, &[u8]>(0).try_into().unwrap_or([0xFF; 32])))
    }

    /// Reads, hashes and summarizes one partition, stopping at its first break.
    pub async fn read(&self, plan: &ScanPlan, part: Partition) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let prev = if part.index == 0 { plan.anchor } else { self.link_through(part.first_seq, plan.anchor).await? };
        let (a, b) = (part.first_seq, part.last_seq);
        // Binary COPY: no per-row protocol round and no text parsing; the range keeps each COPY
        // an index range scan.
        let events = self
            .events
            .copy_out(&format!(
                "COPY (SELECT {EVENT_COLUMNS} FROM fintrail.audit_events e WHERE e.seq >= {a} AND e.seq <= {b} ORDER BY e.seq) TO STDOUT (FORMAT binary)"
            ))
            .await?;
        let links = self
            .links
            .copy_out(&format!(
                "COPY (SELECT seq, link FROM fintrail.audit_chain WHERE seq >= {a} AND seq <= {b} ORDER BY seq) TO STDOUT (FORMAT binary)"
            ))
            .await?;
        let checkpoint_next = plan.checkpoint_seqs.partition_point(|&s| s < a);
        let mut folder = Folder { plan, summary: Summary::default(), prev, checkpoint_next };
        merge(&mut folder, Box::pin(events), Box::pin(links)).await?;
        let mut summary = folder.summary;
        assert!(
            summary.steps.len() as i128 <= i128::from(b) - i128::from(a) + 1,
            "at most one step per sequence number"
        );
        summary.read = started.elapsed().saturating_sub(summary.hash);
        Ok(summary)
    }
}

type RowStream = std::pin::Pin<Box<CopyOutStream>>;

/// The next row of a binary COPY stream (the header removed from the first message); `None`
/// after the trailer. Rows are parsed in place ([`copy_row`]) by the caller.
async fn next_row(
    stream: &mut RowStream,
    first: &mut bool,
) -> anyhow::Result<Option<impl std::ops::Deref<Target = [u8]>>> {
    let Some(msg) = stream.try_next().await? else {
        anyhow::bail!("binary COPY: the stream ended without its trailer")
    };
    let header_bytes = if std::mem::take(first) { msg.len() - copy_row::skip_header(&msg)?.len() } else { 0 };
    let row = msg.slice(header_bytes..);
    // The trailer is a field count of -1; rows are checked field by field when parsed.
    Ok((row.get(..2) != Some(&[0xFF, 0xFF][..])).then_some(row))
}

/// Merges the partition's events and links in sequence order into `folder`, until both end or
/// the first break. Dropping the streams early discards the rest of the COPYs.
async fn merge(folder: &mut Folder<'_>, mut events: RowStream, mut links: RowStream) -> anyhow::Result<()> {
    let mut chunk = Chunk {
        bytes: Vec::with_capacity(folder.plan.limits.chunk_bytes_max + 4096),
        entries: Vec::with_capacity(4096),
    };
    let (mut events_first, mut links_first) = (true, true);
    let mut next_event = next_row(&mut events, &mut events_first).await?;
    let mut next_link = next_row(&mut links, &mut links_first).await?;
    loop {
        let event = next_event.as_deref().map(|r| copy_row::fields::<11>(r)).transpose()?.flatten();
        let link = next_link.as_deref().map(|r| copy_row::fields::<2>(r)).transpose()?.flatten();
        let e_seq = event.map(|f| copy_row::int8(f[0])).transpose()?;
        let c_seq = link.map(|f| copy_row::int8(f[0])).transpose()?;
        let Some((seq, heads)) = merge_step(e_seq, c_seq) else {
            folder.flush(&mut chunk);
            return Ok(());
        };
        let go_on = match (heads, event, link) {
            (Heads::Both, Some(event), Some(link)) => folder.linked(&mut chunk, copy_row::event(event)?, link[1]),
            (Heads::Both, ..) => unreachable!("both present"),
            (Heads::EventOnly, ..) => {
                // Earlier events first: a mismatch among them is the first break.
                folder.flush(&mut chunk) && {
                    folder.summary.steps.push(Step::Unlinked(seq));
                    seq > folder.plan.chain_max
                }
            }
            (Heads::LinkOnly, ..) => {
                if folder.flush(&mut chunk) {
                    folder.summary.steps.push(Step::Missing(seq));
                }
                false
            }
        };
        if !go_on {
            return Ok(());
        }
        if heads != Heads::LinkOnly {
            next_event = next_row(&mut events, &mut events_first).await?;
        }
        if heads == Heads::Both {
            next_link = next_row(&mut links, &mut links_first).await?;
        }
    }
}

/// Which streams' heads carry the next sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heads {
    /// An event and its link.
    Both,
    /// An event without a link.
    EventOnly,
    /// A link without its event.
    LinkOnly,
}

/// The next sequence number of the merge of two ascending streams with heads `e_seq` (events)
/// and `c_seq` (links), and which heads carry it; `None` when both ended.
pub(crate) fn merge_step(e_seq: Option<i64>, c_seq: Option<i64>) -> Option<(i64, Heads)> {
    match (e_seq, c_seq) {
        (None, None) => None,
        (Some(e), Some(c)) if e == c => Some((e, Heads::Both)),
        (Some(e), Some(c)) if e < c => Some((e, Heads::EventOnly)),
        (Some(_), Some(c)) => Some((c, Heads::LinkOnly)),
        (Some(e), None) => Some((e, Heads::EventOnly)),
        (None, Some(c)) => Some((c, Heads::LinkOnly)),
    }
}

#[cfg(test)]
mod tests {
    use super::{merge_step, partitions, Heads, Partition, PARTITIONS_MAX};

    #[test]
    fn the_merge_takes_the_lower_head_and_says_which_streams_carry_it() {
        assert_eq!(merge_step(None, None), None);
        assert_eq!(merge_step(Some(3), Some(3)), Some((3, Heads::Both)));
        assert_eq!(merge_step(Some(3), Some(5)), Some((3, Heads::EventOnly)));
        assert_eq!(merge_step(Some(5), Some(3)), Some((3, Heads::LinkOnly)));
        assert_eq!(merge_step(Some(7), None), Some((7, Heads::EventOnly)));
        assert_eq!(merge_step(None, Some(7)), Some((7, Heads::LinkOnly)));
    }

    #[test]
    fn partitions_cover_the_range_once_in_order() {
        assert_eq!(partitions(6, 5, 10), vec![]);
        assert_eq!(
            partitions(1, 25, 10),
            vec![
                Partition { index: 0, first_seq: 1, last_seq: 10 },
                Partition { index: 1, first_seq: 11, last_seq: 20 },
                Partition { index: 2, first_seq: 21, last_seq: 25 },
            ]
        );
        assert_eq!(partitions(i64::MAX - 3, i64::MAX, 10).len(), 1);
        // A forged event far away widens the partitions instead of multiplying them.
        let far = partitions(i64::MIN, i64::MAX, 10);
        assert_eq!(far.len() as i64, PARTITIONS_MAX);
        assert_eq!((far[0].first_seq, far[far.len() - 1].last_seq), (i64::MIN, i64::MAX));
        assert!(far.windows(2).all(|w| w[1].first_seq == w[0].last_seq + 1));
    }
}
