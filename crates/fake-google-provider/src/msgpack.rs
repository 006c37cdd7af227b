//! MessagePack, as Terraform's cty library uses it for `DynamicValue.msgpack`: objects are maps
//! keyed by attribute name, numbers are ints or float64 (or a decimal string when neither is
//! exact), an unknown value is extension type 0, and a refined unknown is extension type 12.
//! Values are kept as decoded, so re-encoding changes nothing the stand-in did not touch.

/// Limits: deeper or longer input is refused (a plan value is never near these).
pub const MAX_DEPTH: usize = 64;
pub const MAX_ITEMS: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F32(f32),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    /// Keys in wire order (cty writes object keys sorted; order is kept as received).
    Map(Vec<(Value, Value)>),
    /// Extension type and payload: 0 is cty's unknown, 12 its refined unknown.
    Ext(i8, Vec<u8>),
}

impl Value {
    /// cty's wholly unknown value.
    pub fn unknown() -> Value {
        Value::Ext(0, vec![0])
    }
    #[cfg(test)]
    pub fn is_unknown(&self) -> bool {
        matches!(self, Value::Ext(0 | 12, _))
    }
    /// The value of attribute `name` of an object (a map with string keys).
    pub fn attr_mut(&mut self, name: &str) -> Option<&mut Value> {
        match self {
            Value::Map(entries) => {
                entries.iter_mut().find(|(k, _)| matches!(k, Value::Str(s) if s == name)).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| DecodeError(format!("truncated at byte {}", self.pos)))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }
    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        let len = usize::try_from(self.uint(n)?).map_err(|_| DecodeError("length overflows".into()))?;
        if len > self.b.len() {
            return Err(DecodeError(format!("length {len} exceeds the input")));
        }
        Ok(len)
    }
    fn string(&mut self, n: usize) -> Result<Value, DecodeError> {
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map(Value::Str).map_err(|_| DecodeError("string is not UTF-8".into()))
    }
    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        if n > MAX_ITEMS {
            return Err(DecodeError(format!("array of {n} items exceeds {MAX_ITEMS}")));
        }
        (0..n).map(|_| self.value(depth + 1)).collect::<Result<_, _>>().map(Value::Array)
    }
    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        if n > MAX_ITEMS {
            return Err(DecodeError(format!("map of {n} entries exceeds {MAX_ITEMS}")));
        }
        (0..n).map(|_| Ok((self.value(depth + 1)?, self.value(depth + 1)?))).collect::<Result<_, _>>().map(Value::Map)
    }
    fn ext(&mut self, n: usize) -> Result<Value, DecodeError> {
        let t = self.take(1)?[0] as i8;
        Ok(Value::Ext(t, self.take(n)?.to_vec()))
    }
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError(format!("nesting deeper than {MAX_DEPTH}")));
        }
        let tag = self.take(1)?[0];
        Ok(match tag {
            0x00..=0x7f => Value::Int(i64::from(tag)),
            0x80..=0x8f => return self.map(usize::from(tag & 0x0f), depth),
            0x90..=0x9f => return self.array(usize::from(tag & 0x0f), depth),
            0xa0..=0xbf => return self.string(usize::from(tag & 0x1f)),
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (tag - 0xc4))?;
                Value::Bin(self.take(n)?.to_vec())
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (tag - 0xc7))?;
                return self.ext(n);
            }
            0xca => Value::F32(f32::from_bits(self.uint(4)? as u32)),
            0xcb => Value::F64(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Value::UInt(self.uint(1 << (tag - 0xcc))?),
            0xd0 => Value::Int(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Int(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Int(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Int(self.uint(8)? as i64),
            0xd4..=0xd8 => return self.ext(1 << (tag - 0xd4)),
            0xd9..=0xdb => {
                let n = self.len(1 << (tag - 0xd9))?;
                return self.string(n);
            }
            0xdc | 0xdd => {
                let n = self.len(if tag == 0xdc { 2 } else { 4 })?;
                return self.array(n, depth);
            }
            0xde | 0xdf => {
                let n = self.len(if tag == 0xde { 2 } else { 4 })?;
                return self.map(n, depth);
            }
            0xe0..=0xff => Value::Int(i64::from(tag as i8)),
            0xc1 => return Err(DecodeError("0xc1 is never used in MessagePack".into())),
        })
    }
}

/// Decodes exactly one value; trailing bytes are an error.
pub fn decode(b: &[u8]) -> Result<Value, DecodeError> {
    let mut r = Reader { b, pos: 0 };
    let v = r.value(0)?;
    if r.pos != b.len() {
        return Err(DecodeError(format!("{} trailing bytes", b.len() - r.pos)));
    }
    Ok(v)
}

fn put_len(out: &mut Vec<u8>, n: usize, small_tag: Option<(u8, usize)>, tags: [u8; 3]) {
    match small_tag {
        Some((base, max)) if n <= max => out.push(base | n as u8),
        _ if n <= 0xff && tags[0] != 0 => out.extend([tags[0], n as u8]),
        _ if n <= 0xffff => {
            out.push(tags[1]);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(tags[2]);
            out.extend(u32::try_from(n).expect("MessagePack lengths are at most 2^32-1").to_be_bytes());
        }
    }
}

pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => {
            out.push(0xd3);
            out.extend(i.to_be_bytes());
        }
        Value::UInt(u) => {
            out.push(0xcf);
            out.extend(u.to_be_bytes());
        }
        Value::F32(f) => {
            out.push(0xca);
            out.extend(f.to_bits().to_be_bytes());
        }
        Value::F64(f) => {
            out.push(0xcb);
            out.extend(f.to_bits().to_be_bytes());
        }
        Value::Str(s) => {
            put_len(out, s.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb]);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bin(b) => {
            put_len(out, b.len(), None, [0xc4, 0xc5, 0xc6]);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            put_len(out, items.len(), Some((0x90, 15)), [0, 0xdc, 0xdd]);
            items.iter().for_each(|i| encode(i, out));
        }
        Value::Map(entries) => {
            put_len(out, entries.len(), Some((0x80, 15)), [0, 0xde, 0xdf]);
            for (k, v) in entries {
                encode(k, out);
                encode(v, out);
            }
        }
        Value::Ext(t, data) => {
            match data.len() {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                n => put_len(out, n, None, [0xc7, 0xc8, 0xc9]),
            }
            out.push(*t as u8);
            out.extend_from_slice(data);
        }
    }
}

pub fn to_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (Value::Str((*k).into()), v.clone())).collect())
    }

    #[test]
    fn every_kind_round_trips_including_floats_and_unknowns() {
        let v = obj(&[
            ("flow_sampling", Value::F64(0.5)),
            ("name", Value::Str("x".repeat(300))),
            ("count", Value::Int(-3)),
            ("big", Value::UInt(u64::MAX)),
            ("on", Value::Bool(true)),
            ("none", Value::Nil),
            ("later", Value::unknown()),
            ("refined", Value::Ext(12, vec![0x81, 0x01, 0xc3])),
            ("list", Value::Array((0..20).map(Value::Int).collect())),
        ]);
        let bytes = to_bytes(&v);
        assert_eq!(decode(&bytes).unwrap(), v);
        assert!(decode(&bytes).unwrap().attr_mut("later").unwrap().is_unknown());
    }

    #[test]
    fn compact_forms_from_other_encoders_decode() {
        // {"a": 1, "b": [true, nil], "c": -1, "d": 0.5 as f32} in the shortest forms.
        let b = [
            0x84, 0xa1, b'a', 0x01, 0xa1, b'b', 0x92, 0xc3, 0xc0, 0xa1, b'c', 0xff, 0xa1, b'd', 0xca, 0x3f, 0x00, 0x00,
            0x00,
        ];
        let v = decode(&b).unwrap();
        assert_eq!(
            v,
            obj(&[
                ("a", Value::Int(1)),
                ("b", Value::Array(vec![Value::Bool(true), Value::Nil])),
                ("c", Value::Int(-1)),
                ("d", Value::F32(0.5))
            ])
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(decode(&[0xc1]).is_err());
        assert!(decode(&[0xa3, b'a']).is_err(), "truncated string");
        assert!(decode(&[0xc0, 0xc0]).is_err(), "trailing bytes");
        assert!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err(), "length beyond input");
        let deep = vec![0x91; MAX_DEPTH + 2];
        assert!(decode(&deep).is_err(), "depth limit");
    }
}
