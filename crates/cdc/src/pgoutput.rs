//! The pgoutput logical-replication message format (protocol version 1), decoded by hand.
//!
//! Reference: PostgreSQL documentation, "Logical Replication Message Formats". Every
//! integer is big-endian; strings are NUL-terminated. The decoder never panics on bad
//! input: every read is bounds-checked and returns [`DecodeError`]. The encoder exists so
//! tests can build messages by hand and round-trip them (proptest).

use bytes::Bytes;

/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
pub const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Limits (TigerBeetle style: everything has one). PostgreSQL allows 1600 columns per table.
pub const MAX_COLUMNS: usize = 1600;
/// pgoutput batches TRUNCATE of many relations in one message; a database has far fewer.
pub const MAX_TRUNCATE_RELATIONS: usize = 65_536;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("pgoutput message truncated: needed {needed} more bytes at offset {offset}")]
    Truncated { offset: usize, needed: usize },
    #[error("pgoutput message has unknown tag {0:?}")]
    UnknownTag(char),
    #[error("pgoutput tuple column has unknown kind {0:?}")]
    UnknownColumnKind(char),
    #[error("pgoutput string is not NUL-terminated or not UTF-8 at offset {0}")]
    BadString(usize),
    #[error("pgoutput {what} count {count} is over the limit {limit}")]
    TooMany { what: &'static str, count: usize, limit: usize },
    #[error("pgoutput {0} message has unexpected marker byte {1:?}")]
    BadMarker(&'static str, char),
    #[error("pgoutput message has {0} trailing bytes")]
    Trailing(usize),
    #[error("empty pgoutput message")]
    Empty,
}

/// One column value in a tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datum {
    Null,
    /// An unchanged TOASTed value: pgoutput does not resend it; keep the sink's value.
    UnchangedToast,
    Text(Bytes),
    Binary(Bytes),
}

pub type Tuple = Vec<Datum>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (key) when true.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// 'd' default (primary key), 'n' nothing, 'f' full, 'i' index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

/// The old-row image an UPDATE or DELETE carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OldKind {
    /// 'K': only the replica identity (key) columns are set; the rest are NULL.
    Key,
    /// 'O': the whole old row (REPLICA IDENTITY FULL).
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Begin { final_lsn: u64, commit_ts_us: i64, xid: u32 },
    Commit { flags: u8, commit_lsn: u64, end_lsn: u64, commit_ts_us: i64 },
    Origin { lsn: u64, name: String },
    Relation(Relation),
    Type { oid: u32, namespace: String, name: String },
    Insert { rel: u32, new: Tuple },
    Update { rel: u32, old: Option<(OldKind, Tuple)>, new: Tuple },
    Delete { rel: u32, kind: OldKind, old: Tuple },
    Truncate { options: u8, rels: Vec<u32> },
    Message { transactional: bool, lsn: u64, prefix: String, content: Bytes },
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.len() - self.pos;
        if rest < n {
            return Err(DecodeError::Truncated { offset: self.pos, needed: n - rest });
        }
        let bytes: &'a Bytes = self.buf;
        let s = &bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i16(&mut self) -> Result<i16, DecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, DecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(self.i32()? as u32)
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(self.i64()? as u64)
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = &self.buf[start..];
        let nul = rest.iter().position(|&b| b == 0).ok_or(DecodeError::BadString(start))?;
        let s = std::str::from_utf8(&rest[..nul]).map_err(|_| DecodeError::BadString(start))?;
        self.pos += nul + 1;
        Ok(s.to_owned())
    }
    /// A zero-copy slice of the underlying buffer.
    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }
    fn tuple(&mut self) -> Result<Tuple, DecodeError> {
        let n = self.i16()?;
        let n =
            usize::try_from(n).map_err(|_| DecodeError::TooMany { what: "column", count: 0, limit: MAX_COLUMNS })?;
        if n > MAX_COLUMNS {
            return Err(DecodeError::TooMany { what: "column", count: n, limit: MAX_COLUMNS });
        }
        let mut t = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = self.u8()?;
            t.push(match kind {
                b'n' => Datum::Null,
                b'u' => Datum::UnchangedToast,
                b't' | b'b' => {
                    let len = self.i32()?;
                    let len =
                        usize::try_from(len).map_err(|_| DecodeError::Truncated { offset: self.pos, needed: 0 })?;
                    let v = self.bytes(len)?;
                    if kind == b't' {
                        Datum::Text(v)
                    } else {
                        Datum::Binary(v)
                    }
                }
                other => return Err(DecodeError::UnknownColumnKind(other as char)),
            });
        }
        Ok(t)
    }
    fn old_kind(&mut self, what: &'static str) -> Result<OldKind, DecodeError> {
        match self.u8()? {
            b'K' => Ok(OldKind::Key),
            b'O' => Ok(OldKind::Full),
            other => Err(DecodeError::BadMarker(what, other as char)),
        }
    }
    fn expect(&mut self, what: &'static str, marker: u8) -> Result<(), DecodeError> {
        let b = self.u8()?;
        if b == marker {
            Ok(())
        } else {
            Err(DecodeError::BadMarker(what, b as char))
        }
    }

    /// A Relation message after its tag.
    fn relation(&mut self) -> Result<Relation, DecodeError> {
        let oid = self.u32()?;
        let namespace = self.string()?;
        let name = self.string()?;
        let replica_identity = self.u8()?;
        let n = self.i16()?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > MAX_COLUMNS {
            return Err(DecodeError::TooMany { what: "column", count: n, limit: MAX_COLUMNS });
        }
        let mut columns = Vec::with_capacity(n);
        for _ in 0..n {
            let flags = self.u8()?;
            columns.push(RelationColumn {
                key: flags & 1 == 1,
                name: self.string()?,
                type_oid: self.u32()?,
                type_modifier: self.i32()?,
            });
        }
        Ok(Relation { oid, namespace, name, replica_identity, columns })
    }
    /// An Update message after its tag: the old image is optional ('K' key or 'O' full row).
    fn update(&mut self) -> Result<Message, DecodeError> {
        let rel = self.u32()?;
        let marker = self.u8()?;
        let old = match marker {
            b'K' | b'O' => {
                let kind = if marker == b'K' { OldKind::Key } else { OldKind::Full };
                let t = self.tuple()?;
                self.expect("update", b'N')?;
                Some((kind, t))
            }
            b'N' => None,
            other => return Err(DecodeError::BadMarker("update", other as char)),
        };
        Ok(Message::Update { rel, old, new: self.tuple()? })
    }
    /// A Truncate message after its tag.
    fn truncate(&mut self) -> Result<Message, DecodeError> {
        let n = self.i32()?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > MAX_TRUNCATE_RELATIONS {
            return Err(DecodeError::TooMany { what: "truncated relation", count: n, limit: MAX_TRUNCATE_RELATIONS });
        }
        let options = self.u8()?;
        let mut rels = Vec::with_capacity(n);
        for _ in 0..n {
            rels.push(self.u32()?);
        }
        Ok(Message::Truncate { options, rels })
    }
}

/// Decode one pgoutput message (the payload of one XLogData).
pub fn decode(buf: &Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let tag = r.u8().map_err(|_| DecodeError::Empty)?;
    let msg = match tag {
        b'B' => Message::Begin { final_lsn: r.u64()?, commit_ts_us: r.i64()?, xid: r.u32()? },
        b'C' => Message::Commit { flags: r.u8()?, commit_lsn: r.u64()?, end_lsn: r.u64()?, commit_ts_us: r.i64()? },
        b'O' => Message::Origin { lsn: r.u64()?, name: r.string()? },
        b'R' => Message::Relation(r.relation()?),
        b'Y' => Message::Type { oid: r.u32()?, namespace: r.string()?, name: r.string()? },
        b'I' => {
            let rel = r.u32()?;
            r.expect("insert", b'N')?;
            Message::Insert { rel, new: r.tuple()? }
        }
        b'U' => r.update()?,
        b'D' => {
            let rel = r.u32()?;
            let kind = r.old_kind("delete")?;
            Message::Delete { rel, kind, old: r.tuple()? }
        }
        b'T' => r.truncate()?,
        b'M' => {
            let flags = r.u8()?;
            let lsn = r.u64()?;
            let prefix = r.string()?;
            let len = usize::try_from(r.i32()?).map_err(|_| DecodeError::Truncated { offset: r.pos, needed: 0 })?;
            Message::Message { transactional: flags & 1 == 1, lsn, prefix, content: r.bytes(len)? }
        }
        other => return Err(DecodeError::UnknownTag(other as char)),
    };
    let trailing = buf.len() - r.pos;
    if trailing != 0 {
        return Err(DecodeError::Trailing(trailing));
    }
    Ok(msg)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn put_tuple(out: &mut Vec<u8>, t: &Tuple) {
    out.extend_from_slice(&(t.len() as i16).to_be_bytes());
    for d in t {
        match d {
            Datum::Null => out.push(b'n'),
            Datum::UnchangedToast => out.push(b'u'),
            Datum::Text(b) | Datum::Binary(b) => {
                out.push(if matches!(d, Datum::Text(_)) { b't' } else { b'b' });
                out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

fn put_relation(out: &mut Vec<u8>, r: &Relation) {
    out.push(b'R');
    out.extend_from_slice(&r.oid.to_be_bytes());
    put_str(out, &r.namespace);
    put_str(out, &r.name);
    out.push(r.replica_identity);
    out.extend_from_slice(&(r.columns.len() as i16).to_be_bytes());
    for c in &r.columns {
        out.push(u8::from(c.key));
        put_str(out, &c.name);
        out.extend_from_slice(&c.type_oid.to_be_bytes());
        out.extend_from_slice(&c.type_modifier.to_be_bytes());
    }
}

/// Encode a message the way the walsender does (used by tests and the fake sources).
pub fn encode(msg: &Message) -> Bytes {
    let mut o = Vec::with_capacity(64);
    match msg {
        Message::Begin { final_lsn, commit_ts_us, xid } => {
            o.push(b'B');
            o.extend_from_slice(&final_lsn.to_be_bytes());
            o.extend_from_slice(&commit_ts_us.to_be_bytes());
            o.extend_from_slice(&xid.to_be_bytes());
        }
        Message::Commit { flags, commit_lsn, end_lsn, commit_ts_us } => {
            o.push(b'C');
            o.push(*flags);
            o.extend_from_slice(&commit_lsn.to_be_bytes());
            o.extend_from_slice(&end_lsn.to_be_bytes());
            o.extend_from_slice(&commit_ts_us.to_be_bytes());
        }
        Message::Origin { lsn, name } => {
            o.push(b'O');
            o.extend_from_slice(&lsn.to_be_bytes());
            put_str(&mut o, name);
        }
        Message::Relation(r) => put_relation(&mut o, r),
        Message::Type { oid, namespace, name } => {
            o.push(b'Y');
            o.extend_from_slice(&oid.to_be_bytes());
            put_str(&mut o, namespace);
            put_str(&mut o, name);
        }
        Message::Insert { rel, new } => {
            o.push(b'I');
            o.extend_from_slice(&rel.to_be_bytes());
            o.push(b'N');
            put_tuple(&mut o, new);
        }
        Message::Update { rel, old, new } => {
            o.push(b'U');
            o.extend_from_slice(&rel.to_be_bytes());
            if let Some((kind, t)) = old {
                o.push(if *kind == OldKind::Key { b'K' } else { b'O' });
                put_tuple(&mut o, t);
            }
            o.push(b'N');
            put_tuple(&mut o, new);
        }
        Message::Delete { rel, kind, old } => {
            o.push(b'D');
            o.extend_from_slice(&rel.to_be_bytes());
            o.push(if *kind == OldKind::Key { b'K' } else { b'O' });
            put_tuple(&mut o, old);
        }
        Message::Truncate { options, rels } => {
            o.push(b'T');
            o.extend_from_slice(&(rels.len() as i32).to_be_bytes());
            o.push(*options);
            for r in rels {
                o.extend_from_slice(&r.to_be_bytes());
            }
        }
        Message::Message { transactional, lsn, prefix, content } => {
            o.push(b'M');
            o.push(u8::from(*transactional));
            o.extend_from_slice(&lsn.to_be_bytes());
            put_str(&mut o, prefix);
            o.extend_from_slice(&(content.len() as i32).to_be_bytes());
            o.extend_from_slice(content);
        }
    }
    Bytes::from(o)
}

/// Format an LSN the way PostgreSQL prints it (`16/B374D848`).
pub fn lsn_to_string(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parse PostgreSQL's LSN text form.
pub fn parse_lsn(s: &str) -> anyhow::Result<u64> {
    let (hi, lo) = s.trim().split_once('/').ok_or_else(|| anyhow::anyhow!("bad LSN {s:?}"))?;
    let hi = u64::from_str_radix(hi, 16).map_err(|_| anyhow::anyhow!("bad LSN {s:?}"))?;
    let lo = u64::from_str_radix(lo, 16).map_err(|_| anyhow::anyhow!("bad LSN {s:?}"))?;
    if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
        anyhow::bail!("bad LSN {s:?}");
    }
    Ok((hi << 32) | lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Datum {
        Datum::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn decodes_a_hand_built_insert() {
        // 'I', oid 16384, 'N', 3 columns: text "42", null, unchanged toast.
        let mut raw = vec![b'I'];
        raw.extend_from_slice(&16384u32.to_be_bytes());
        raw.push(b'N');
        raw.extend_from_slice(&3i16.to_be_bytes());
        raw.push(b't');
        raw.extend_from_slice(&2i32.to_be_bytes());
        raw.extend_from_slice(b"42");
        raw.push(b'n');
        raw.push(b'u');
        let m = decode(&Bytes::from(raw)).unwrap();
        assert_eq!(m, Message::Insert { rel: 16384, new: vec![text("42"), Datum::Null, Datum::UnchangedToast] });
    }

    #[test]
    fn decodes_a_hand_built_relation_and_commit() {
        let mut raw = vec![b'R'];
        raw.extend_from_slice(&7u32.to_be_bytes());
        raw.extend_from_slice(b"fintrail\0wallets\0d");
        raw.extend_from_slice(&2i16.to_be_bytes());
        raw.push(1);
        raw.extend_from_slice(b"id\0");
        raw.extend_from_slice(&20u32.to_be_bytes());
        raw.extend_from_slice(&(-1i32).to_be_bytes());
        raw.push(0);
        raw.extend_from_slice(b"currency\0");
        raw.extend_from_slice(&25u32.to_be_bytes());
        raw.extend_from_slice(&(-1i32).to_be_bytes());
        let Message::Relation(r) = decode(&Bytes::from(raw)).unwrap() else { panic!("not a relation") };
        assert_eq!(r.name, "wallets");
        assert_eq!(r.namespace, "fintrail");
        assert!(r.columns[0].key && !r.columns[1].key);
        assert_eq!(r.columns[1].type_oid, 25);

        let mut raw = vec![b'C', 0];
        raw.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        raw.extend_from_slice(&0x1_0000_0040u64.to_be_bytes());
        raw.extend_from_slice(&5i64.to_be_bytes());
        assert_eq!(
            decode(&Bytes::from(raw)).unwrap(),
            Message::Commit { flags: 0, commit_lsn: 0x1_0000_0010, end_lsn: 0x1_0000_0040, commit_ts_us: 5 }
        );
    }

    #[test]
    fn update_with_key_image_and_delete_and_truncate() {
        let upd = Message::Update {
            rel: 9,
            old: Some((OldKind::Key, vec![text("1"), Datum::Null])),
            new: vec![text("2"), Datum::UnchangedToast],
        };
        assert_eq!(decode(&encode(&upd)).unwrap(), upd);
        let del = Message::Delete { rel: 9, kind: OldKind::Key, old: vec![text("2"), Datum::Null] };
        assert_eq!(decode(&encode(&del)).unwrap(), del);
        let tr = Message::Truncate { options: 1, rels: vec![9, 10] };
        assert_eq!(decode(&encode(&tr)).unwrap(), tr);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(decode(&Bytes::new()), Err(DecodeError::Empty));
        assert_eq!(decode(&Bytes::from_static(b"Z")), Err(DecodeError::UnknownTag('Z')));
        assert!(matches!(decode(&Bytes::from_static(b"B\0\0")), Err(DecodeError::Truncated { .. })));
        // Insert with a bad column kind.
        let raw = Bytes::from_static(b"I\0\0\0\x01N\0\x01x");
        assert_eq!(decode(&raw), Err(DecodeError::UnknownColumnKind('x')));
        // Negative text length.
        let raw = Bytes::from_static(b"I\0\0\0\x01N\0\x01t\xff\xff\xff\xff");
        assert!(decode(&raw).is_err());
        // Trailing garbage.
        let mut v = encode(&Message::Truncate { options: 0, rels: vec![1] }).to_vec();
        v.push(0);
        assert_eq!(decode(&Bytes::from(v)), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn lsn_text_round_trip() {
        assert_eq!(lsn_to_string(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848").unwrap(), 0x16_B374_D848);
        assert!(parse_lsn("nope").is_err());
        assert!(parse_lsn("1/100000000").is_err());
    }

    fn datum() -> impl Strategy<Value = Datum> {
        prop_oneof![
            Just(Datum::Null),
            Just(Datum::UnchangedToast),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| Datum::Text(Bytes::from(v))),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| Datum::Binary(Bytes::from(v))),
        ]
    }
    fn name() -> impl Strategy<Value = String> {
        "[a-z_][a-z0-9_]{0,20}"
    }
    fn message() -> impl Strategy<Value = Message> {
        let tuple = || proptest::collection::vec(datum(), 0..12);
        prop_oneof![
            (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_ts_us, xid)| Message::Begin {
                final_lsn,
                commit_ts_us,
                xid
            }),
            (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
                |(flags, commit_lsn, end_lsn, commit_ts_us)| {
                    Message::Commit { flags, commit_lsn, end_lsn, commit_ts_us }
                }
            ),
            (any::<u64>(), name()).prop_map(|(lsn, name)| Message::Origin { lsn, name }),
            (
                any::<u32>(),
                name(),
                name(),
                proptest::collection::vec((any::<bool>(), name(), any::<u32>(), any::<i32>()), 0..10)
            )
                .prop_map(|(oid, namespace, name, cols)| Message::Relation(Relation {
                    oid,
                    namespace,
                    name,
                    replica_identity: b'd',
                    columns: cols
                        .into_iter()
                        .map(|(key, name, type_oid, type_modifier)| RelationColumn {
                            key,
                            name,
                            type_oid,
                            type_modifier
                        })
                        .collect(),
                })),
            (any::<u32>(), name(), name()).prop_map(|(oid, namespace, name)| Message::Type { oid, namespace, name }),
            (any::<u32>(), tuple()).prop_map(|(rel, new)| Message::Insert { rel, new }),
            (any::<u32>(), proptest::option::of((any::<bool>(), tuple())), tuple()).prop_map(|(rel, old, new)| {
                Message::Update { rel, old: old.map(|(k, t)| (if k { OldKind::Key } else { OldKind::Full }, t)), new }
            }),
            (any::<u32>(), any::<bool>(), tuple()).prop_map(|(rel, k, old)| Message::Delete {
                rel,
                kind: if k { OldKind::Key } else { OldKind::Full },
                old
            }),
            (any::<u8>(), proptest::collection::vec(any::<u32>(), 0..8))
                .prop_map(|(options, rels)| Message::Truncate { options, rels }),
            (any::<bool>(), any::<u64>(), name(), proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
                |(transactional, lsn, prefix, c)| Message::Message {
                    transactional,
                    lsn,
                    prefix,
                    content: Bytes::from(c)
                }
            ),
        ]
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        #[test]
        fn encode_then_decode_is_identity(m in message()) {
            prop_assert_eq!(decode(&encode(&m)).unwrap(), m);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(v in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&Bytes::from(v));
        }

        #[test]
        fn every_strict_prefix_is_rejected(m in message()) {
            let full = encode(&m);
            for cut in 0..full.len() {
                prop_assert!(decode(&full.slice(..cut)).is_err());
            }
        }
    }
}
