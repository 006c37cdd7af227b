//! Protocol Buffers wire format, by hand: the few messages of `tfplugin6.proto` the stand-in
//! reads and writes (field numbers from Terraform's `docs/plugin-protocol/tfplugin6.proto`).
//! Encoding skips default values, as proto3 does; decoding reads length-delimited and varint
//! fields and skips the rest.

/// Builds one message. Nested messages are encoded into their own `Msg` and appended.
#[derive(Default)]
pub struct Msg(pub Vec<u8>);

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Msg {
    fn key(&mut self, field: u32, wire: u8) {
        assert!(field > 0 && field < (1 << 29), "protobuf field numbers are 1..2^29");
        put_varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }
    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.key(field, 2);
        put_varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn string(&mut self, field: u32, s: &str) -> &mut Self {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
        self
    }
    pub fn message(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
    pub fn boolean(&mut self, field: u32, b: bool) -> &mut Self {
        if b {
            self.key(field, 0);
            self.0.push(1);
        }
        self
    }
    pub fn int64(&mut self, field: u32, v: i64) -> &mut Self {
        if v != 0 {
            self.key(field, 0);
            put_varint(&mut self.0, v as u64);
        }
        self
    }
}

/// A decoding error: the bytes are not the protobuf they claim to be.
#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

fn get_varint(b: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    // A varint is at most 10 bytes (64 bits, 7 per byte).
    for i in 0..10 {
        let byte = *b.get(*pos).ok_or(DecodeError("truncated varint"))?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint longer than 10 bytes"))
}

/// The first length-delimited field `field` of `msg` (proto3 singular: last one wins, but
/// Terraform sends each once), or `None` when absent.
pub fn field_bytes(msg: &[u8], field: u32) -> Result<Option<&[u8]>, DecodeError> {
    let mut pos = 0;
    let mut found = None;
    while pos < msg.len() {
        let key = get_varint(msg, &mut pos)?;
        let (number, wire) = ((key >> 3) as u32, (key & 7) as u8);
        match wire {
            0 => {
                get_varint(msg, &mut pos)?;
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = usize::try_from(get_varint(msg, &mut pos)?).map_err(|_| DecodeError("length overflows"))?;
                let end = pos.checked_add(len).ok_or(DecodeError("length overflows"))?;
                let value = msg.get(pos..end).ok_or(DecodeError("truncated field"))?;
                if number == field {
                    found = Some(value);
                }
                pos = end;
            }
            _ => return Err(DecodeError("unsupported wire type (groups are not used by tfplugin6)")),
        }
    }
    if pos != msg.len() {
        return Err(DecodeError("truncated fixed-width field"));
    }
    Ok(found)
}

/// A string field, empty when absent (proto3 default).
pub fn field_string(msg: &[u8], field: u32) -> Result<String, DecodeError> {
    let b = field_bytes(msg, field)?.unwrap_or_default();
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string field is not UTF-8"))
}

/// `DynamicValue.msgpack` (field 1) of the `DynamicValue` message in field `field`.
pub fn dynamic_value_msgpack(msg: &[u8], field: u32) -> Result<Option<&[u8]>, DecodeError> {
    match field_bytes(msg, field)? {
        None => Ok(None),
        Some(dv) => field_bytes(dv, 1),
    }
}

/// A `DynamicValue` message holding msgpack bytes.
pub fn dynamic_value(msgpack: &[u8]) -> Msg {
    let mut m = Msg::default();
    m.bytes(1, msgpack);
    m
}

/// A `Diagnostic` message of severity ERROR.
pub fn error_diagnostic(summary: &str, detail: &str) -> Msg {
    let mut m = Msg::default();
    m.int64(1, 1).string(2, summary).string(3, detail);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_round_trip_and_defaults_are_skipped() {
        let mut m = Msg::default();
        m.string(1, "google_redis_instance").message(3, &dynamic_value(&[0x80])).boolean(4, false).int64(5, 0);
        let type_name = field_string(&m.0, 1).unwrap();
        assert_eq!(type_name, "google_redis_instance");
        assert_eq!(dynamic_value_msgpack(&m.0, 3).unwrap(), Some(&[0x80u8][..]));
        assert_eq!(dynamic_value_msgpack(&m.0, 2).unwrap(), None);
        // false and 0 are proto3 defaults: not on the wire.
        assert_eq!(m.0.len(), 2 + 21 + 2 + 3);
    }

    #[test]
    fn truncated_messages_are_rejected() {
        let mut m = Msg::default();
        m.string(1, "abc");
        let cut = &m.0[..m.0.len() - 1];
        assert_eq!(field_bytes(cut, 1), Err(DecodeError("truncated field")));
        assert_eq!(field_bytes(&[0x80], 1), Err(DecodeError("truncated varint")));
        assert!(field_bytes(&[0x0b], 1).is_err(), "wire type 3 (group) is refused");
    }

    #[test]
    fn varints_use_seven_bits_a_byte() {
        let mut m = Msg::default();
        m.int64(1, 300);
        assert_eq!(m.0, vec![0x08, 0xac, 0x02]);
    }
}
