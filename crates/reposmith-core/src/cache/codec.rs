//! The binary form of cache entries.
//!
//! Compact and versioned: the first byte is [`FORMAT`], the next eight the
//! struct's shape (the derive's hash of it); an entry of another format or
//! another shape, a truncated one or one with trailing bytes is a [`CodecError`],
//! which the cache treats as a miss (and deletes the entry), never as an
//! error of the read. Written by hand rather than with a serde format so
//! the layout follows [`Value`] exactly (a vector is its `f32`s, a
//! timestamp its seconds and nanoseconds) and no dependency decides it.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::value::Value;

/// The entry format this build writes and reads.
pub const FORMAT: u8 = 1;

/// A cache entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// No row has this id (a negative entry).
    Absent,
    /// One row's stored values.
    Row(Vec<Value>),
    /// A query's rows in order, each with its score when the query ranks.
    Rows(Vec<CachedRow>),
}

/// One row of a cached query result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CachedRow {
    /// The row's stored values.
    pub values: Vec<Value>,
    /// A search's distance, if it has one.
    pub distance: Option<f64>,
    /// A search's text rank, if it has one.
    pub text_rank: Option<f64>,
    /// A search's score, if the query ranks.
    pub score: Option<f64>,
}

/// An entry that cannot be read by this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cache entry unreadable: {0}")]
pub struct CodecError(pub &'static str);

type Decoded<T> = Result<T, CodecError>;

/// The bytes of `entry`, written by a struct of shape `shape`.
pub fn encode(entry: &Entry, shape: u64) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend_from_slice(&shape.to_le_bytes());
    match entry {
        Entry::Absent => out.push(0),
        Entry::Row(values) => {
            out.push(1);
            put_values(&mut out, values);
        }
        Entry::Rows(rows) => {
            out.push(2);
            put_len(&mut out, rows.len());
            for row in rows {
                let scores = [row.distance, row.text_rank, row.score];
                let flags = scores
                    .iter()
                    .enumerate()
                    .fold(0u8, |f, (i, s)| f | (u8::from(s.is_some()) << i));
                out.push(flags);
                for score in scores.into_iter().flatten() {
                    out.extend_from_slice(&score.to_le_bytes());
                }
                put_values(&mut out, &row.values);
            }
        }
    }
    out
}

/// The entry in `bytes`, if a struct of shape `shape` wrote it.
pub fn decode(bytes: &[u8], shape: u64) -> Decoded<Entry> {
    let mut r = Reader {
        bytes,
        at: 0,
        depth: 0,
    };
    if r.byte()? != FORMAT {
        return Err(CodecError("written in another format"));
    }
    if u64::from_le_bytes(r.array()?) != shape {
        return Err(CodecError("written by another shape of the struct"));
    }
    let entry = match r.byte()? {
        0 => Entry::Absent,
        1 => Entry::Row(r.values()?),
        2 => {
            let n = r.len()?;
            let mut rows = Vec::with_capacity(n.min(4096));
            for _ in 0..n {
                let flags = r.byte()?;
                if flags > 0b111 {
                    return Err(CodecError("bad score flags"));
                }
                let mut scores = [None; 3];
                for (i, score) in scores.iter_mut().enumerate() {
                    if flags & (1 << i) != 0 {
                        *score = Some(f64::from_le_bytes(r.array()?));
                    }
                }
                let [distance, text_rank, score] = scores;
                rows.push(CachedRow {
                    values: r.values()?,
                    distance,
                    text_rank,
                    score,
                });
            }
            Entry::Rows(rows)
        }
        _ => return Err(CodecError("unknown entry kind")),
    };
    match r.at == bytes.len() {
        true => Ok(entry),
        false => Err(CodecError("trailing bytes")),
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    // LEB128.
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_values(out: &mut Vec<u8>, values: &[Value]) {
    put_len(out, values.len());
    for value in values {
        put_value(out, value);
    }
}

fn put_f32s(out: &mut Vec<u8>, values: impl ExactSizeIterator<Item = f32>) {
    put_len(out, values.len());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.push(0),
        Value::Bool(b) => out.extend_from_slice(&[1, u8::from(*b)]),
        Value::I16(n) => {
            out.push(2);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::I32(n) => {
            out.push(3);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::I64(n) => {
            out.push(4);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::F32(n) => {
            out.push(5);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::F64(n) => {
            out.push(6);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Text(s) => {
            out.push(7);
            put_bytes(out, s.as_bytes());
        }
        Value::Uuid(u) => {
            out.push(8);
            out.extend_from_slice(u.as_bytes());
        }
        Value::ObjectId(o) => {
            out.push(9);
            out.extend_from_slice(&o.bytes());
        }
        Value::TimestampTz(t) => {
            out.push(10);
            out.extend_from_slice(&t.timestamp().to_le_bytes());
            out.extend_from_slice(&t.timestamp_subsec_nanos().to_le_bytes());
        }
        Value::Date(d) => {
            out.push(11);
            out.extend_from_slice(&d.to_epoch_days().to_le_bytes());
        }
        Value::Json(json) => {
            out.push(12);
            // A serde_json::Value always serializes.
            put_bytes(
                out,
                serde_json::to_string(json).unwrap_or_default().as_bytes(),
            );
        }
        Value::Array(items) => {
            out.push(13);
            put_values(out, items);
        }
        Value::Vector(v) => {
            out.push(14);
            put_f32s(out, v.as_slice().iter().copied());
        }
        Value::HalfVector(v) => {
            out.push(15);
            put_f32s(out, v.as_slice().iter().map(|h| h.to_f32()));
        }
        Value::SparseVector(v) => {
            out.push(16);
            out.extend_from_slice(&v.dimensions().to_le_bytes());
            put_len(out, v.indices().len());
            for (i, x) in v.indices().iter().zip(v.values()) {
                out.extend_from_slice(&i.to_le_bytes());
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        Value::Bit(b) => {
            out.push(17);
            put_len(out, b.len());
            put_bytes(out, b.as_bytes());
        }
    }
}

/// How deep arrays may nest in an entry: a crafted or damaged entry must be
/// an error, not a stack overflow.
const MAX_DEPTH: usize = 32;

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Arrays entered so far.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Decoded<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(CodecError("truncated"))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Decoded<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Decoded<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn len(&mut self) -> Decoded<usize> {
        let mut n: usize = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                // No length can exceed what is left to read.
                return match n <= self.bytes.len() {
                    true => Ok(n),
                    false => Err(CodecError("length beyond the entry")),
                };
            }
        }
        Err(CodecError("length too long"))
    }

    fn text(&mut self) -> Decoded<String> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError("text is not UTF-8"))
    }

    fn f32s(&mut self) -> Decoded<Vec<f32>> {
        let n = self.len()?;
        (0..n)
            .map(|_| Ok(f32::from_le_bytes(self.array()?)))
            .collect()
    }

    fn values(&mut self) -> Decoded<Vec<Value>> {
        let n = self.len()?;
        let mut values = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            values.push(self.value()?);
        }
        Ok(values)
    }

    fn value(&mut self) -> Decoded<Value> {
        Ok(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(self.byte()? != 0),
            2 => Value::I16(i16::from_le_bytes(self.array()?)),
            3 => Value::I32(i32::from_le_bytes(self.array()?)),
            4 => Value::I64(i64::from_le_bytes(self.array()?)),
            5 => Value::F32(f32::from_le_bytes(self.array()?)),
            6 => Value::F64(f64::from_le_bytes(self.array()?)),
            7 => Value::Text(self.text()?),
            8 => Value::Uuid(Uuid::from_bytes(self.array()?)),
            9 => Value::ObjectId(crate::ObjectId::from_bytes(self.array()?)),
            10 => {
                let secs = i64::from_le_bytes(self.array()?);
                let nanos = u32::from_le_bytes(self.array()?);
                let at = DateTime::<Utc>::from_timestamp(secs, nanos);
                Value::TimestampTz(at.ok_or(CodecError("timestamp out of range"))?)
            }
            11 => {
                let days = i32::from_le_bytes(self.array()?);
                let date = NaiveDate::from_epoch_days(days);
                Value::Date(date.ok_or(CodecError("date out of range"))?)
            }
            12 => {
                let text = self.text()?;
                let json = serde_json::from_str(&text).map_err(|_| CodecError("bad JSON"))?;
                Value::Json(json)
            }
            13 => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(CodecError("arrays nested too deep"));
                }
                let items = self.values()?;
                self.depth -= 1;
                Value::Array(items)
            }
            14 => Value::Vector(pgvector::Vector::from(self.f32s()?)),
            15 => Value::HalfVector(pgvector::HalfVector::from_f32_slice(&self.f32s()?)),
            16 => {
                let dim = i32::from_le_bytes(self.array()?);
                let n = self.len()?;
                let mut pairs = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    let i = i32::from_le_bytes(self.array()?);
                    let x = f32::from_le_bytes(self.array()?);
                    pairs.push((i, x));
                }
                let map = pairs.iter().map(|(i, x)| (i, x));
                Value::SparseVector(pgvector::SparseVector::from_map(map, dim))
            }
            17 => {
                let bits = self.len()?;
                let n = self.len()?;
                let bytes = self.take(n)?;
                if bits.div_ceil(8) != n {
                    return Err(CodecError("bit length does not match its bytes"));
                }
                let flags: Vec<bool> = (0..bits)
                    .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
                    .collect();
                Value::Bit(pgvector::Bit::new(&flags))
            }
            _ => return Err(CodecError("unknown value tag")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Bool(true),
            Value::I16(-7),
            Value::I32(1 << 30),
            Value::I64(i64::MIN),
            Value::F32(1.5),
            Value::F64(-0.1),
            Value::Text("héllo\u{0}".into()),
            Value::Uuid(Uuid::now_v7()),
            Value::ObjectId(crate::ObjectId::new()),
            Value::TimestampTz(DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap()),
            Value::Date(NaiveDate::from_ymd_opt(1969, 12, 31).unwrap()),
            Value::Json(serde_json::json!({"a": [1, 2.5, null], "b": "x"})),
            Value::Array(vec![Value::Text("a".into()), Value::Null]),
            Value::Vector(pgvector::Vector::from(vec![0.25, -1.0, 3.0])),
            Value::HalfVector(pgvector::HalfVector::from_f32_slice(&[0.5, -2.0])),
            Value::SparseVector(pgvector::SparseVector::from_dense(&[0.0, 1.0, 0.0, 2.5])),
            Value::Bit(pgvector::Bit::new(&[
                true, false, true, true, false, false, true, false, true, true,
            ])),
        ]
    }

    #[test]
    fn every_value_kind_round_trips() {
        for entry in [
            Entry::Absent,
            Entry::Row(every_kind()),
            Entry::Rows(vec![
                CachedRow {
                    values: every_kind(),
                    distance: Some(0.5),
                    text_rank: None,
                    score: Some(0.125),
                },
                CachedRow {
                    values: vec![Value::I64(1)],
                    ..CachedRow::default()
                },
            ]),
        ] {
            assert_eq!(decode(&encode(&entry, 7), 7), Ok(entry));
        }
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        let bytes = encode(&Entry::Row(every_kind()), 7);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 7).is_err(), "prefix of {cut} bytes");
        }
        let mut other = bytes.clone();
        other[0] = FORMAT + 1;
        assert_eq!(
            decode(&other, 7),
            Err(CodecError("written in another format"))
        );
        assert_eq!(
            decode(&bytes, 8),
            Err(CodecError("written by another shape of the struct"))
        );
        let mut trailing = bytes;
        trailing.push(0);
        assert!(decode(&trailing, 7).is_err());
        // A huge length is refused before anything is allocated for it.
        let mut huge = vec![FORMAT];
        huge.extend_from_slice(&7u64.to_le_bytes());
        huge.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode(&huge, 7).is_err());
        // Arrays nested deeper than any column type are refused, not recursed.
        let mut deep = vec![FORMAT];
        deep.extend_from_slice(&7u64.to_le_bytes());
        deep.extend_from_slice(&[1, 1]);
        for _ in 0..300_000 {
            deep.extend_from_slice(&[13, 1]);
        }
        deep.push(0);
        assert_eq!(decode(&deep, 7), Err(CodecError("arrays nested too deep")));
    }
}
