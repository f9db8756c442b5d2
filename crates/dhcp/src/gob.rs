//! Just enough of Go's `encoding/gob` for `net/rpc` calls of the reference dhcp plugin:
//! a schema-driven encoder and a generic decoder over [`Val`] trees (bool, int, uint,
//! bytes, string, struct, slice, and types with Go text/binary marshalers).
//!
//! Wire facts (from the encoding/gob package documentation): a stream is a sequence of
//! messages `uint(length) int(typeId) payload`; a negative id defines type `-id` with a
//! `wireType` payload; unsigned ints are one byte below 128, else a negated byte count
//! and big-endian bytes; signed ints are folded (`n<<1` or `(^n<<1)|1`); strings and
//! byte slices are a count and bytes; structs are (field-number delta, value) pairs ended
//! by 0, zero fields left out; slices are a count and elements. Predefined ids: bool 1,
//! int 2, uint 3, float 4, bytes 5, string 6, wireType 16, arrayType 17, CommonType 18,
//! sliceType 19, structType 20, fieldType 21, []fieldType 22, mapType 23.

use std::collections::HashMap;
use std::io::{Read, Write};

/// A decoded (or to-be-encoded) gob value.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    /// Fields by name, in any order (the schema orders them on the wire).
    Struct(Vec<(String, Val)>),
    Slice(Vec<Val>),
    /// A value of a type with its own marshaler (Go's `net.IP` is a TextMarshaler).
    Marshaled(Vec<u8>),
}

impl Val {
    pub fn field(&self, name: &str) -> Option<&Val> {
        match self {
            Val::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Val::Bytes(b) | Val::Marshaled(b) => Some(b),
            Val::Str(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Uint(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }
}

pub const BOOL: i64 = 1;
pub const INT: i64 = 2;
pub const UINT: i64 = 3;
pub const FLOAT: i64 = 4;
pub const BYTES: i64 = 5;
pub const STRING: i64 = 6;
const WIRE_TYPE: i64 = 16;
const ARRAY_TYPE: i64 = 17;
const COMMON_TYPE: i64 = 18;
const SLICE_TYPE: i64 = 19;
const STRUCT_TYPE: i64 = 20;
const FIELD_TYPE: i64 = 21;
const FIELD_SLICE: i64 = 22;
const MAP_TYPE: i64 = 23;
/// `gobEncoderType`'s id never travels (it is only reached through wireType's fields).
const ENCODER_TYPE: i64 = 24;
/// Ids we hand out for our own types (Go's first user id is 64).
const FIRST_USER_ID: i64 = 65;
/// Largest message accepted.
const MAX_MESSAGE: u64 = 1 << 20;

/// A type as described on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    Struct(Vec<(String, i64)>),
    Slice(i64),
    Array(i64),
    Map(i64, i64),
    /// GobEncoder/BinaryMarshaler/TextMarshaler: the value is a byte string.
    Marshaled,
}

#[derive(Debug, thiserror::Error)]
pub enum GobError {
    #[error("gob: {0}")]
    Io(#[from] std::io::Error),
    #[error("gob: {0}")]
    Format(String),
}

fn bad(msg: impl Into<String>) -> GobError {
    GobError::Format(msg.into())
}

fn builtin_schema() -> HashMap<i64, Wire> {
    let s = |f: &[(&str, i64)]| Wire::Struct(f.iter().map(|(n, t)| (n.to_string(), *t)).collect());
    HashMap::from([
        (
            WIRE_TYPE,
            s(&[
                ("ArrayT", ARRAY_TYPE),
                ("SliceT", SLICE_TYPE),
                ("StructT", STRUCT_TYPE),
                ("MapT", MAP_TYPE),
                ("GobEncoderT", ENCODER_TYPE),
                ("BinaryMarshalerT", ENCODER_TYPE),
                ("TextMarshalerT", ENCODER_TYPE),
            ]),
        ),
        (
            ARRAY_TYPE,
            s(&[("CommonType", COMMON_TYPE), ("Elem", INT), ("Len", INT)]),
        ),
        (COMMON_TYPE, s(&[("Name", STRING), ("Id", INT)])),
        (SLICE_TYPE, s(&[("CommonType", COMMON_TYPE), ("Elem", INT)])),
        (
            STRUCT_TYPE,
            s(&[("CommonType", COMMON_TYPE), ("Field", FIELD_SLICE)]),
        ),
        (FIELD_TYPE, s(&[("Name", STRING), ("Id", INT)])),
        (FIELD_SLICE, Wire::Slice(FIELD_TYPE)),
        (
            MAP_TYPE,
            s(&[("CommonType", COMMON_TYPE), ("Key", INT), ("Elem", INT)]),
        ),
        (ENCODER_TYPE, s(&[("CommonType", COMMON_TYPE)])),
    ])
}

fn put_uint(out: &mut Vec<u8>, v: u64) {
    if v < 128 {
        out.push(v as u8);
        return;
    }
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let n = bytes.len() - skip;
    out.push((256 - n) as u8);
    out.extend_from_slice(bytes.get(skip..).unwrap_or(&[]));
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    let u = if v < 0 {
        ((!v as u64) << 1) | 1
    } else {
        (v as u64) << 1
    };
    put_uint(out, u);
}

/// A cursor over one message.
struct Buf<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Buf<'_> {
    fn byte(&mut self) -> Result<u8, GobError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| bad("truncated message"))?;
        self.pos += 1;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, GobError> {
        let b = self.byte()?;
        if b < 128 {
            return Ok(u64::from(b));
        }
        let n = 256 - usize::from(b);
        if n > 8 {
            return Err(bad("uint too long"));
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 8) | u64::from(self.byte()?);
        }
        Ok(v)
    }

    fn int(&mut self) -> Result<i64, GobError> {
        let u = self.uint()?;
        Ok(if u & 1 == 1 {
            !((u >> 1) as i64)
        } else {
            (u >> 1) as i64
        })
    }

    fn take(&mut self, n: u64) -> Result<&[u8], GobError> {
        let n = usize::try_from(n).map_err(|_| bad("length"))?;
        let end = self.pos.checked_add(n).ok_or_else(|| bad("length"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| bad("truncated string"))?;
        self.pos = end;
        Ok(s)
    }
}

/// One side of a gob stream: the types seen or defined so far.
#[derive(Debug)]
pub struct Codec {
    types: HashMap<i64, Wire>,
    next_id: i64,
    /// Our own type definitions already sent on this stream, by name.
    sent: HashMap<String, i64>,
}

impl Default for Codec {
    fn default() -> Self {
        Codec {
            types: builtin_schema(),
            next_id: FIRST_USER_ID,
            sent: HashMap::new(),
        }
    }
}

/// A type to define on the encoding side.
#[derive(Debug, Clone)]
pub enum Def<'a> {
    Struct(&'a str, Vec<(&'a str, i64)>),
    Slice(&'a str, i64),
    /// A type with a TextMarshaler (Go's `net.IP`).
    Text(&'a str),
}

impl Codec {
    fn decode_val(&self, b: &mut Buf<'_>, id: i64, depth: u32) -> Result<Val, GobError> {
        if depth > 32 {
            return Err(bad("nesting too deep"));
        }
        Ok(match id {
            BOOL => Val::Bool(b.uint()? != 0),
            INT => Val::Int(b.int()?),
            UINT => Val::Uint(b.uint()?),
            FLOAT => Val::Float(f64::from_bits(b.uint()?.swap_bytes())),
            BYTES => {
                let n = b.uint()?;
                Val::Bytes(b.take(n)?.to_vec())
            }
            STRING => {
                let n = b.uint()?;
                Val::Str(String::from_utf8_lossy(b.take(n)?).into_owned())
            }
            _ => match self.types.get(&id) {
                Some(Wire::Struct(fields)) => {
                    let mut out = Vec::new();
                    let mut field: i64 = -1;
                    // Bounded by the message length: every turn consumes bytes.
                    loop {
                        let delta = b.uint()?;
                        if delta == 0 {
                            break;
                        }
                        field = i64::try_from(delta)
                            .ok()
                            .and_then(|d| field.checked_add(d))
                            .ok_or_else(|| bad("field delta"))?;
                        let (name, tid) =
                            usize::try_from(field)
                                .ok()
                                .and_then(|i| fields.get(i))
                                .ok_or_else(|| bad(format!("field {field} out of range")))?;
                        out.push((name.clone(), self.decode_val(b, *tid, depth + 1)?));
                    }
                    Val::Struct(out)
                }
                Some(Wire::Slice(elem)) | Some(Wire::Array(elem)) => {
                    let n = b.uint()?;
                    if n > MAX_MESSAGE {
                        return Err(bad("slice too long"));
                    }
                    let mut out = Vec::new();
                    for _ in 0..n {
                        out.push(self.decode_val(b, *elem, depth + 1)?);
                    }
                    Val::Slice(out)
                }
                Some(Wire::Map(k, v)) => {
                    let n = b.uint()?;
                    let mut out = Vec::new();
                    for _ in 0..n.min(MAX_MESSAGE) {
                        let key = self.decode_val(b, *k, depth + 1)?;
                        let val = self.decode_val(b, *v, depth + 1)?;
                        out.push(Val::Slice(vec![key, val]));
                    }
                    Val::Slice(out)
                }
                Some(Wire::Marshaled) => {
                    let n = b.uint()?;
                    Val::Marshaled(b.take(n)?.to_vec())
                }
                None => return Err(bad(format!("unknown type id {id}"))),
            },
        })
    }

    fn register(&mut self, id: i64, wt: &Val) -> Result<(), GobError> {
        let common_id = |v: &Val| {
            v.field("CommonType")
                .and_then(|c| c.field("Id"))
                .and_then(Val::int)
        };
        let wire = if let Some(st) = wt.field("StructT") {
            let mut fields = Vec::new();
            if let Some(Val::Slice(list)) = st.field("Field") {
                for f in list {
                    let name = f.field("Name").and_then(Val::str).unwrap_or("").to_string();
                    let tid = f.field("Id").and_then(Val::int).unwrap_or(0);
                    fields.push((name, tid));
                }
            }
            Wire::Struct(fields)
        } else if let Some(sl) = wt.field("SliceT") {
            Wire::Slice(
                sl.field("Elem")
                    .and_then(Val::int)
                    .ok_or_else(|| bad("slice without elem"))?,
            )
        } else if let Some(ar) = wt.field("ArrayT") {
            Wire::Array(
                ar.field("Elem")
                    .and_then(Val::int)
                    .ok_or_else(|| bad("array without elem"))?,
            )
        } else if let Some(m) = wt.field("MapT") {
            Wire::Map(
                m.field("Key").and_then(Val::int).unwrap_or(0),
                m.field("Elem").and_then(Val::int).unwrap_or(0),
            )
        } else if ["GobEncoderT", "BinaryMarshalerT", "TextMarshalerT"]
            .iter()
            .any(|k| wt.field(k).is_some())
        {
            Wire::Marshaled
        } else {
            return Err(bad("empty wireType"));
        };
        let _ = wt
            .field("StructT")
            .or_else(|| wt.field("SliceT"))
            .and_then(common_id);
        self.types.insert(id, wire);
        Ok(())
    }

    /// Read messages until a value arrives (registering type definitions on the way).
    pub fn read_value(&mut self, r: &mut impl Read) -> Result<Val, GobError> {
        // Bounded: a peer could define types forever, so cap the definitions per value.
        for _ in 0..256 {
            let len = read_stream_uint(r)?;
            if len > MAX_MESSAGE {
                return Err(bad("message too long"));
            }
            let mut msg = vec![0u8; usize::try_from(len).map_err(|_| bad("length"))?];
            r.read_exact(&mut msg)?;
            let mut b = Buf { data: &msg, pos: 0 };
            let id = b.int()?;
            if id < 0 {
                let wt = self.decode_val(&mut b, WIRE_TYPE, 0)?;
                self.register(-id, &wt)?;
                continue;
            }
            let v = self.decode_val(&mut b, id, 0)?;
            return Ok(v);
        }
        Err(bad("too many type definitions"))
    }

    /// Define a type (once per stream) and return its id, writing the definition.
    pub fn define(&mut self, out: &mut Vec<u8>, def: &Def<'_>) -> i64 {
        let name = match def {
            Def::Struct(n, _) | Def::Slice(n, _) | Def::Text(n) => n.to_string(),
        };
        if let Some(id) = self.sent.get(&name) {
            return *id;
        }
        let id = self.next_id;
        self.next_id += 1;
        let common = Val::Struct(vec![
            ("Name".into(), Val::Str(name.clone())),
            ("Id".into(), Val::Int(id)),
        ]);
        let (wt, wire) = match def {
            Def::Struct(_, fields) => (
                Val::Struct(vec![(
                    "StructT".into(),
                    Val::Struct(vec![
                        ("CommonType".into(), common),
                        (
                            "Field".into(),
                            Val::Slice(
                                fields
                                    .iter()
                                    .map(|(n, t)| {
                                        Val::Struct(vec![
                                            ("Name".into(), Val::Str(n.to_string())),
                                            ("Id".into(), Val::Int(*t)),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ),
                    ]),
                )]),
                Wire::Struct(fields.iter().map(|(n, t)| (n.to_string(), *t)).collect()),
            ),
            Def::Slice(_, elem) => (
                Val::Struct(vec![(
                    "SliceT".into(),
                    Val::Struct(vec![
                        ("CommonType".into(), common),
                        ("Elem".into(), Val::Int(*elem)),
                    ]),
                )]),
                Wire::Slice(*elem),
            ),
            Def::Text(_) => (
                Val::Struct(vec![(
                    "TextMarshalerT".into(),
                    Val::Struct(vec![("CommonType".into(), common)]),
                )]),
                Wire::Marshaled,
            ),
        };
        let mut body = Vec::new();
        put_int(&mut body, -id);
        // The builtin schema always knows these types.
        let _ = self.encode_val(&mut body, WIRE_TYPE, &wt);
        put_uint(out, body.len() as u64);
        out.extend_from_slice(&body);
        self.types.insert(id, wire);
        self.sent.insert(name, id);
        id
    }

    fn encode_val(&self, out: &mut Vec<u8>, id: i64, v: &Val) -> Result<(), GobError> {
        match (id, v) {
            (BOOL, Val::Bool(b)) => put_uint(out, u64::from(*b)),
            (INT, Val::Int(i)) => put_int(out, *i),
            (UINT, Val::Uint(u)) => put_uint(out, *u),
            (BYTES, Val::Bytes(b)) | (STRING, Val::Bytes(b)) => {
                put_uint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            (STRING, Val::Str(s)) => {
                put_uint(out, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            _ => match (self.types.get(&id), v) {
                (Some(Wire::Struct(fields)), Val::Struct(vals)) => {
                    let mut last: i64 = -1;
                    for (i, (name, tid)) in fields.iter().enumerate() {
                        let Some((_, fv)) = vals.iter().find(|(n, _)| n == name) else {
                            continue;
                        };
                        let i = i as i64;
                        put_uint(out, (i - last) as u64);
                        last = i;
                        self.encode_val(out, *tid, fv)?;
                    }
                    out.push(0);
                }
                (Some(Wire::Slice(elem)), Val::Slice(items)) => {
                    put_uint(out, items.len() as u64);
                    for it in items {
                        self.encode_val(out, *elem, it)?;
                    }
                }
                (Some(Wire::Marshaled), Val::Marshaled(b) | Val::Bytes(b)) => {
                    put_uint(out, b.len() as u64);
                    out.extend_from_slice(b);
                }
                _ => return Err(bad(format!("cannot encode {v:?} as type {id}"))),
            },
        }
        Ok(())
    }

    /// Append a value message of type `id`.
    pub fn value(&self, out: &mut Vec<u8>, id: i64, v: &Val) -> Result<(), GobError> {
        let mut body = Vec::new();
        put_int(&mut body, id);
        self.encode_val(&mut body, id, v)?;
        put_uint(out, body.len() as u64);
        out.extend_from_slice(&body);
        Ok(())
    }
}

fn read_stream_uint(r: &mut impl Read) -> Result<u64, GobError> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    if b[0] < 128 {
        return Ok(u64::from(b[0]));
    }
    let n = 256 - usize::from(b[0]);
    if n > 8 {
        return Err(bad("uint too long"));
    }
    let mut buf = [0u8; 8];
    let dst = buf.get_mut(8 - n..).ok_or_else(|| bad("uint"))?;
    r.read_exact(dst)?;
    Ok(u64::from_be_bytes(buf))
}

/// Write `buf` and flush.
pub fn send(w: &mut impl Write, buf: &[u8]) -> Result<(), GobError> {
    w.write_all(buf)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_documented_point_example() {
        // encoding/gob's doc: type Point struct {X, Y int}; Point{22, 33} with id 65.
        let mut c = Codec::default();
        let mut out = Vec::new();
        let id = c.define(
            &mut out,
            &Def::Struct("Point", vec![("X", INT), ("Y", INT)]),
        );
        assert_eq!(id, 65);
        c.value(
            &mut out,
            id,
            &Val::Struct(vec![("X".into(), Val::Int(22)), ("Y".into(), Val::Int(33))]),
        )
        .unwrap();
        let expect: Vec<u8> = vec![
            0x1f, 0xff, 0x81, 0x03, 0x01, 0x01, 0x05, b'P', b'o', b'i', b'n', b't', 0x01, 0xff,
            0x82, 0x00, 0x01, 0x02, 0x01, 0x01, b'X', 0x01, 0x04, 0x00, 0x01, 0x01, b'Y', 0x01,
            0x04, 0x00, 0x00, 0x00, 0x07, 0xff, 0x82, 0x01, 0x2c, 0x01, 0x42, 0x00,
        ];
        assert_eq!(out, expect);
        let mut d = Codec::default();
        let v = d.read_value(&mut &out[..]).unwrap();
        assert_eq!(v.field("X"), Some(&Val::Int(22)));
        assert_eq!(v.field("Y"), Some(&Val::Int(33)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut c = Codec::default();
        let mut out = Vec::new();
        let id = c.define(&mut out, &Def::Struct("P", vec![("X", INT), ("S", STRING)]));
        c.value(
            &mut out,
            id,
            &Val::Struct(vec![("S".into(), Val::Str("abc".into()))]),
        )
        .unwrap();
        // Every truncation, and every single-byte corruption, of a valid stream.
        for n in 0..out.len() {
            let _ = Codec::default().read_value(&mut &out[..n]);
        }
        let mut seed = 0x9e37_79b9u32;
        for i in 0..out.len() {
            for _ in 0..16 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let mut bad = out.clone();
                bad[i] = seed as u8;
                let _ = Codec::default().read_value(&mut &bad[..]);
            }
        }
        let huge = [0xf8u8, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Codec::default().read_value(&mut &huge[..]).is_err());
    }

    #[test]
    fn round_trips_nested_values() {
        let mut c = Codec::default();
        let mut out = Vec::new();
        let ip = c.define(&mut out, &Def::Text("net.IP"));
        let strs = c.define(&mut out, &Def::Slice("[]string", STRING));
        let inner = c.define(
            &mut out,
            &Def::Struct("In", vec![("IP", ip), ("Mask", BYTES)]),
        );
        let list = c.define(&mut out, &Def::Slice("[]In", inner));
        let top = c.define(
            &mut out,
            &Def::Struct(
                "Top",
                vec![("S", strs), ("L", list), ("U", UINT), ("N", INT)],
            ),
        );
        let v = Val::Struct(vec![
            ("S".into(), Val::Slice(vec![Val::Str("a".into())])),
            (
                "L".into(),
                Val::Slice(vec![Val::Struct(vec![
                    ("IP".into(), Val::Marshaled(b"198.18.0.1".to_vec())),
                    ("Mask".into(), Val::Bytes(vec![255, 255, 255, 0])),
                ])]),
            ),
            ("U".into(), Val::Uint(300)),
            ("N".into(), Val::Int(-5)),
        ]);
        c.value(&mut out, top, &v).unwrap();
        let mut d = Codec::default();
        assert_eq!(d.read_value(&mut &out[..]).unwrap(), v);
    }
}
