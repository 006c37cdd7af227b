//! Rows of a binary `COPY ... TO STDOUT`, read in place: verification decodes a million rows,
//! and the generic row type of `tokio-postgres` allocates and type-checks per row and field.
//!
//! Format (PostgreSQL, "Binary Format" of COPY): a 19-byte header before the first row, then per
//! row an i16 field count and per field an i32 length (-1 = NULL) and the bytes; an i16 -1
//! trailer. The server sends each row as one CopyData message, the header with the first.

use fintrail_domain::audit::AuditRecordRef;

/// The header's fixed part: signature, flags, extension length.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), for `timestamptz`.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// The message with the header (which only the first message carries) removed.
pub(crate) fn skip_header(msg: &[u8]) -> anyhow::Result<&[u8]> {
    let rest = msg.strip_prefix(SIGNATURE.as_slice()).ok_or_else(|| anyhow::anyhow!("binary COPY: bad signature"))?;
    let (flags, rest) = split_i32(rest)?;
    // Bit 16: rows carry OIDs (never for a query's COPY).
    anyhow::ensure!(flags & (1 << 16) == 0, "binary COPY: rows with OIDs");
    let (extension_bytes, rest) = split_i32(rest)?;
    let extension_bytes = usize::try_from(extension_bytes).map_err(|_| anyhow::anyhow!("binary COPY: bad header"))?;
    anyhow::ensure!(rest.len() >= extension_bytes, "binary COPY: truncated header");
    Ok(&rest[extension_bytes..])
}

fn split_i32(buf: &[u8]) -> anyhow::Result<(i32, &[u8])> {
    let (head, rest) = buf.split_first_chunk::<4>().ok_or_else(|| anyhow::anyhow!("binary COPY: truncated row"))?;
    Ok((i32::from_be_bytes(*head), rest))
}

/// The `N` fields of one row (`None` = NULL), or `None` at the trailer.
pub(crate) fn fields<const N: usize>(row: &[u8]) -> anyhow::Result<Option<[Option<&[u8]>; N]>> {
    let (count, mut rest) =
        row.split_first_chunk::<2>().ok_or_else(|| anyhow::anyhow!("binary COPY: truncated row"))?;
    let count = i16::from_be_bytes(*count);
    if count == -1 {
        return Ok(None);
    }
    anyhow::ensure!(count as usize == N, "binary COPY: {count} fields, expected {N}");
    let mut out = [None; N];
    for slot in &mut out {
        let (len, after) = split_i32(rest)?;
        rest = after;
        if len >= 0 {
            let len = len as usize;
            anyhow::ensure!(rest.len() >= len, "binary COPY: truncated field");
            *slot = Some(&rest[..len]);
            rest = &rest[len..];
        }
    }
    anyhow::ensure!(rest.is_empty(), "binary COPY: trailing bytes after a row");
    Ok(Some(out))
}

/// An `int8`.
pub(crate) fn int8(field: Option<&[u8]>) -> anyhow::Result<i64> {
    let bytes = field.ok_or_else(|| anyhow::anyhow!("binary COPY: NULL bigint"))?;
    Ok(i64::from_be_bytes(bytes.try_into().map_err(|_| anyhow::anyhow!("binary COPY: bad bigint"))?))
}

fn text(field: Option<&[u8]>) -> anyhow::Result<Option<&str>> {
    field.map(|b| std::str::from_utf8(b).map_err(|_| anyhow::anyhow!("binary COPY: text is not UTF-8"))).transpose()
}

fn required(field: Option<&[u8]>) -> anyhow::Result<&str> {
    text(field)?.ok_or_else(|| anyhow::anyhow!("binary COPY: NULL in a NOT NULL column"))
}

/// An event row selected with [`crate::EVENT_COLUMNS`], borrowed from the message.
pub(crate) fn event(f: [Option<&[u8]>; 11]) -> anyhow::Result<AuditRecordRef<'_>> {
    let at_pg_micros = int8(f[1])?;
    let allowed = match f[7] {
        Some([b]) => *b != 0,
        _ => anyhow::bail!("binary COPY: bad boolean"),
    };
    Ok(AuditRecordRef {
        seq: int8(f[0])?,
        at_unix_micros: at_pg_micros
            .checked_add(PG_EPOCH_UNIX_MICROS)
            .ok_or_else(|| anyhow::anyhow!("binary COPY: timestamp out of range"))?,
        actor: required(f[2])?,
        on_behalf_of: text(f[3])?,
        action: required(f[4])?,
        subject: required(f[5])?,
        permission: text(f[6])?,
        allowed,
        request_id: text(f[8])?,
        before: text(f[9])?,
        after: text(f[10])?,
    })
}

#[cfg(test)]
mod tests {
    use super::{event, fields, int8, skip_header, SIGNATURE};

    fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = (values.len() as i16).to_be_bytes().to_vec();
        for v in values {
            match v {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
        out
    }

    #[test]
    fn an_event_row_decodes_in_place_and_bad_rows_are_refused() {
        let seq = 42i64.to_be_bytes();
        let at = 1i64.to_be_bytes();
        let values: [Option<&[u8]>; 11] = [
            Some(&seq),
            Some(&at),
            Some(b"a"),
            None,
            Some(b"x"),
            Some(b"s"),
            None,
            Some(&[1]),
            None,
            Some(b"{}"),
            None,
        ];
        let mut msg = SIGNATURE.to_vec();
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        msg.extend_from_slice(&row(&values));
        let body = skip_header(&msg).expect("header");
        let e = event(fields::<11>(body).expect("row").expect("not the trailer")).expect("event");
        assert_eq!(
            (e.seq, e.at_unix_micros, e.actor, e.on_behalf_of, e.allowed),
            (42, 946_684_800_000_001, "a", None, true)
        );
        assert_eq!((e.before, e.after), (Some("{}"), None));
        assert_eq!(fields::<11>(&(-1i16).to_be_bytes()).expect("trailer"), None);
        // Truncated, wrong field count, trailing bytes, NULL where none may be, bad header.
        assert!(fields::<11>(&body[..body.len() - 1]).is_err());
        assert!(fields::<2>(body).is_err());
        assert!(fields::<11>(&[body, &[0]].concat()).is_err());
        assert!(int8(None).is_err());
        assert!(skip_header(&msg[1..]).is_err());
        let mut null_actor = values;
        null_actor[2] = None;
        assert!(event(fields::<11>(&row(&null_actor)).expect("row").expect("row")).is_err());
    }
}
