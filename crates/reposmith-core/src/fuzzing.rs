//! Fuzzing entry points (feature `fuzzing`, not part of the API): the
//! properties the cargo-fuzz targets in `fuzz/` check, as plain functions
//! of a byte string, so the suite replays the committed corpus through the
//! very same code on stable Rust.
//!
//! Each entry point panics when a property does not hold: that is how
//! libFuzzer learns of a failure. It never panics on input it merely
//! refuses.

use chrono::{DateTime, NaiveDate, Utc};

use crate::cursor::Cursor;
use crate::schema::ColumnType;
use crate::value::Value;
use crate::{Error, ObjectId};

/// A reader that turns fuzz bytes into choices; exhausted, it reads zeros,
/// so every input, the empty one included, is a valid case.
#[derive(Debug)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, or 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    /// A number in `0..n` (`n` at least 1).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n.max(1)
    }

    /// Eight bytes, big-endian, zeros past the end.
    pub fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }

    /// One bit of choice: whether the next byte is odd.
    pub fn odd(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// Up to `max` raw bytes, the count read first.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let wanted = self.below(max + 1).min(self.data.len());
        let (taken, rest) = self.data.split_at(wanted);
        self.data = rest;
        taken
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// Text that tends to be hostile: quotes, separators, backslashes, NUL,
    /// control characters, non-ASCII, or arbitrary bytes read as UTF-8.
    pub fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "", "a", "O'Brien", "\"", "\\", "\\N", "\t", "\n", "\r\n", ",", ";", "--", "\0", "NaN",
            "Infinity", "null", "[", "]", "{", "}", "$ne", "a.b", "é", "🦀", "\u{feff}", "\u{7f}",
            "\u{fffd}", " ", "1e400", "-0",
        ];
        let mut text = String::new();
        for _ in 0..self.below(6) {
            match self.below(4) {
                0 => text.push_str(&String::from_utf8_lossy(self.bytes(12))),
                _ => text.push_str(PIECES[self.below(PIECES.len())]),
            }
        }
        text
    }

    /// A float that is often an edge case: ±0, ±∞, NaN, the extremes,
    /// subnormals, or any bit pattern.
    pub fn f64(&mut self) -> f64 {
        const EDGES: &[f64] = &[
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            5e-324,
            1.0,
            0.1,
            f32::MAX as f64,
            1e39,
        ];
        match self.below(3) {
            0 => EDGES[self.below(EDGES.len())],
            _ => f64::from_bits(self.u64()),
        }
    }

    /// An integer that is often at a width's edge.
    pub fn i64(&mut self) -> i64 {
        const EDGES: &[i64] = &[
            0,
            1,
            -1,
            i16::MIN as i64,
            i16::MAX as i64,
            i32::MIN as i64,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ];
        match self.below(3) {
            0 => EDGES[self.below(EDGES.len())],
            _ => self.u64() as i64,
        }
    }

    /// An instant anywhere in chrono's range, often at its ends or at
    /// PostgreSQL's (4713 BC and 294276 AD) or at a four-digit year's end.
    pub fn timestamp(&mut self) -> DateTime<Utc> {
        const EDGES: &[i64] = &[
            0,
            253_402_300_799,    // 9999-12-31T23:59:59
            253_402_300_800,    // 10000-01-01
            -62_167_219_200,    // 0000-01-01
            -62_167_219_201,    // -0001-12-31T23:59:59
            -210_866_803_200,   // 4714-11-24 BC, PostgreSQL's first day
            9_224_318_016_000,  // 294277-01-01, past PostgreSQL's last
            8_210_266_876_799,  // 262142-12-31T23:59:59, chrono's last second
            -8_334_601_228_800, // -262143-01-01, chrono's first day
            946_684_800,        // 2000-01-01, PostgreSQL's epoch
        ];
        let seconds = match self.below(2) {
            0 => EDGES[self.below(EDGES.len())],
            _ => self.i64() % 8_400_000_000_000,
        };
        let nanos = match self.below(3) {
            0 => 0,
            1 => 1_999_999_999, // a leap second's
            _ => (self.u64() % 1_000_000_000) as u32,
        };
        DateTime::from_timestamp(seconds, nanos)
            .or_else(|| DateTime::from_timestamp(seconds, 0))
            .unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// A day anywhere in chrono's range.
    pub fn date(&mut self) -> NaiveDate {
        match self.below(3) {
            0 => NaiveDate::MIN,
            1 => NaiveDate::MAX,
            _ => self.timestamp().date_naive(),
        }
    }

    /// A JSON document: scalars, hostile keys and strings, nesting.
    pub fn json(&mut self, depth: u32) -> serde_json::Value {
        use serde_json::Value as J;
        match self.below(if depth == 0 { 4 } else { 6 }) {
            0 => J::Null,
            1 => J::Bool(!self.odd()),
            2 => match self.below(3) {
                0 => J::from(self.i64()),
                1 => J::from(self.u64()),
                _ => serde_json::Number::from_f64(self.f64()).map_or(J::Null, J::Number),
            },
            3 => J::String(self.text()),
            4 => J::Array((0..self.below(4)).map(|_| self.json(depth - 1)).collect()),
            _ => J::Object(
                (0..self.below(4))
                    .map(|_| (self.text(), self.json(depth - 1)))
                    .collect(),
            ),
        }
    }

    /// A value of `ty`, NULL when `nullable` says it may be, or now and
    /// then a value of the wrong type (which every encoder must refuse).
    /// Vectors are left to their own tests: none is made here.
    pub fn value(&mut self, ty: &ColumnType, nullable: bool) -> Value {
        match self.below(16) {
            0 if nullable => return Value::Null,
            1 => {
                let other = SCALARS[self.below(SCALARS.len())];
                return self.scalar(&other);
            }
            _ => {}
        }
        match ty {
            ColumnType::Array(inner) => Value::Array(
                (0..self.below(5))
                    .map(|_| self.value(inner, true))
                    .collect(),
            ),
            ColumnType::Enum(names) if !names.is_empty() && !self.odd() => {
                Value::Text(names[self.below(names.len())].to_owned())
            }
            scalar => self.scalar(scalar),
        }
    }

    fn scalar(&mut self, ty: &ColumnType) -> Value {
        match ty {
            ColumnType::Bool => Value::Bool(!self.odd()),
            ColumnType::SmallInt => Value::I16(self.i64() as i16),
            ColumnType::Int => Value::I32(self.i64() as i32),
            ColumnType::BigInt => Value::I64(self.i64()),
            ColumnType::Real => Value::F32(self.f64() as f32),
            ColumnType::Double => Value::F64(self.f64()),
            ColumnType::Uuid => Value::Uuid(uuid::Uuid::from_u64_pair(self.u64(), self.u64())),
            ColumnType::ObjectId => {
                let mut bytes = [0; 12];
                bytes.iter_mut().for_each(|b| *b = self.byte());
                Value::ObjectId(ObjectId::from_bytes(bytes))
            }
            ColumnType::TimestampTz => Value::TimestampTz(self.timestamp()),
            ColumnType::Date => Value::Date(self.date()),
            ColumnType::Json => Value::Json(self.json(3)),
            _ => Value::Text(self.text()),
        }
    }
}

/// One of each scalar column type.
pub const SCALARS: [ColumnType; 12] = [
    ColumnType::Text,
    ColumnType::Bool,
    ColumnType::SmallInt,
    ColumnType::Int,
    ColumnType::BigInt,
    ColumnType::Real,
    ColumnType::Double,
    ColumnType::Uuid,
    ColumnType::ObjectId,
    ColumnType::TimestampTz,
    ColumnType::Date,
    ColumnType::Json,
];

/// Values equal as stored: floats bit for bit (every NaN alike, since NaN
/// is not equal to itself), everything else by `==`.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (a, b) => a == b,
    }
}

/// Both lists hold the [`same`] values.
pub fn all_same(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
}

/// Whether `value` is a value a column of `ty` reads as.
fn fits(value: &Value, ty: &ColumnType) -> bool {
    matches!(
        (value, ty),
        (Value::Null, _)
            | (Value::Text(_), ColumnType::Text | ColumnType::Enum(_))
            | (Value::Bool(_), ColumnType::Bool)
            | (Value::I16(_), ColumnType::SmallInt)
            | (Value::I32(_), ColumnType::Int)
            | (Value::I64(_), ColumnType::BigInt)
            | (Value::F32(_), ColumnType::Real)
            | (Value::F64(_), ColumnType::Double)
            | (Value::Uuid(_), ColumnType::Uuid)
            | (Value::ObjectId(_), ColumnType::ObjectId)
            | (Value::TimestampTz(_), ColumnType::TimestampTz)
            | (Value::Date(_), ColumnType::Date)
    )
}

/// The sort-key types a cursor can hold, with JSON (which no cursor holds)
/// to check it is refused.
const KEY_TYPES: [ColumnType; 13] = [
    ColumnType::Text,
    ColumnType::Enum(&["draft", "published"]),
    ColumnType::Bool,
    ColumnType::SmallInt,
    ColumnType::Int,
    ColumnType::BigInt,
    ColumnType::Real,
    ColumnType::Double,
    ColumnType::Uuid,
    ColumnType::ObjectId,
    ColumnType::TimestampTz,
    ColumnType::Date,
    ColumnType::Json,
];

/// The cursor target. The first byte picks the mode:
///
/// - even: a client's cursor. One to four sort-key types from the next
///   bytes, the rest of the input is the cursor text (as UTF-8, lossily,
///   as it arrives in a URL). Decoding either fails with
///   [`Error::InvalidInput`] or yields one value of each key's type, which
///   encodes to a cursor that decodes to the same values and encodes to
///   the same text again.
/// - odd: a page's last row. Values of the chosen types are made from the
///   input; the cursor encoded from them decodes to exactly them (floats
///   bit for bit), or a next page would skip or repeat rows.
pub fn cursor_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let from_row = input.odd();
    let types: Vec<ColumnType> = (0..1 + input.below(4))
        .map(|_| KEY_TYPES[input.below(KEY_TYPES.len())])
        .collect();
    if from_row {
        // Only ordered types are sort keys (`Keyset::new` refuses the others).
        let keys: Vec<ColumnType> = types.into_iter().filter(ColumnType::is_ordered).collect();
        let values: Vec<Value> = keys
            .iter()
            .map(|ty| match input.value(ty, true) {
                v if fits(&v, ty) => v,
                _ => Value::Null,
            })
            .collect();
        let cursor = Cursor::encode(&values);
        let back = cursor
            .decode("Fuzz", &keys)
            .unwrap_or_else(|e| panic!("the cursor of {values:?} does not decode: {e}"));
        assert!(
            all_same(&values, &back),
            "{values:?} came back as {back:?} via {cursor}"
        );
        return;
    }
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    match Cursor::parse(text.clone()).decode("Fuzz", &types) {
        Ok(values) => {
            assert_eq!(values.len(), types.len(), "{text:?}");
            for (value, ty) in values.iter().zip(&types) {
                assert!(fits(value, ty), "{text:?} gave {value:?} for a {ty:?} key");
            }
            let again = Cursor::encode(&values);
            let back = again
                .decode("Fuzz", &types)
                .unwrap_or_else(|e| panic!("{text:?} decoded, its re-encoding {again} not: {e}"));
            assert!(all_same(&values, &back), "{text:?} → {values:?} → {back:?}");
            assert_eq!(Cursor::encode(&back), again, "{text:?}");
        }
        Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "cursor"),
        Err(other) => panic!("{text:?}: not an invalid-input error: {other:?}"),
    }
}
