//! The `copy_encoder` fuzz target's property (feature `fuzzing`, not API);
//! the suite replays its committed corpus through the same function.
//!
//! The encoder writes COPY's binary format, where every field carries its
//! byte length: there is no delimiter or escape to inject, but a wrong
//! length, a wrong array header or a value the server refuses (a NUL, a
//! timestamp beyond its range) would corrupt or fail the whole load. The
//! target reads the stream back with a reader of its own, written from
//! PostgreSQL's `COPY` documentation and the types' `recv` functions.

use chrono::{DateTime, NaiveDate, Utc};
use reposmith_core::fuzzing::{Input, all_same};
use reposmith_core::{ColumnDef, ColumnType, EntitySchema, Error, IdStrategy, ObjectId, Value};

use crate::copy::{HEADER, encode_row};

static TEXT: ColumnType = ColumnType::Text;
static BOOL: ColumnType = ColumnType::Bool;
static SMALLINT: ColumnType = ColumnType::SmallInt;
static BIGINT: ColumnType = ColumnType::BigInt;
static REAL: ColumnType = ColumnType::Real;
static UUID: ColumnType = ColumnType::Uuid;
static OBJECT_ID: ColumnType = ColumnType::ObjectId;
static TIMESTAMP: ColumnType = ColumnType::TimestampTz;
static DATE: ColumnType = ColumnType::Date;
static JSON: ColumnType = ColumnType::Json;

/// One column of each type COPY encodes (vectors have their own tests),
/// and a one-dimensional array of each element type.
static COLUMNS: &[ColumnDef] = &[
    ColumnDef::new("id", "id", ColumnType::Uuid, false),
    ColumnDef::new("title", "title", ColumnType::Text, false),
    ColumnDef::new(
        "status",
        "status",
        ColumnType::Enum(&["draft", "live"]),
        false,
    ),
    ColumnDef::new("flag", "flag", ColumnType::Bool, true),
    ColumnDef::new("small", "small", ColumnType::SmallInt, false),
    ColumnDef::new("count", "count", ColumnType::Int, true),
    ColumnDef::new("big", "big", ColumnType::BigInt, false),
    ColumnDef::new("ratio", "ratio", ColumnType::Real, true),
    ColumnDef::new("score", "score", ColumnType::Double, false),
    ColumnDef::new("owner", "owner", ColumnType::ObjectId, true),
    ColumnDef::new("at", "at", ColumnType::TimestampTz, false),
    ColumnDef::new("day", "day", ColumnType::Date, true),
    ColumnDef::new("meta", "meta", ColumnType::Json, false),
    ColumnDef::new("tags", "tags", ColumnType::Array(&TEXT), false),
    ColumnDef::new("flags", "flags", ColumnType::Array(&BOOL), false),
    ColumnDef::new("smalls", "smalls", ColumnType::Array(&SMALLINT), true),
    ColumnDef::new("bigs", "bigs", ColumnType::Array(&BIGINT), false),
    ColumnDef::new("reals", "reals", ColumnType::Array(&REAL), false),
    ColumnDef::new("uuids", "uuids", ColumnType::Array(&UUID), false),
    ColumnDef::new("owners", "owners", ColumnType::Array(&OBJECT_ID), false),
    ColumnDef::new("times", "times", ColumnType::Array(&TIMESTAMP), false),
    ColumnDef::new("days", "days", ColumnType::Array(&DATE), false),
    ColumnDef::new("docs", "docs", ColumnType::Array(&JSON), false),
];

/// The table the target's rows are encoded for.
pub static SCHEMA: EntitySchema =
    EntitySchema::new("Fuzz", "fuzz", COLUMNS, 0, IdStrategy::Assigned, &[]);

/// The COPY encoder target: one to four rows of values made from the input
/// (hostile text, float and integer edges, instants and days across
/// chrono's whole range, nested JSON, arrays with NULLs, now and then a
/// value of the wrong type) go through the encoder `insert_many` streams.
///
/// A row PostgreSQL would accept (every value of its column's type, no NUL
/// in text or JSON, instants and days inside PostgreSQL's ranges) is
/// encoded, and the stream reads back, field by field, as exactly those
/// values (instants at microsecond precision). Any other row is refused
/// with [`Error::InvalidInput`] naming a field, and nothing else.
pub fn copy_encoder(data: &[u8]) {
    let mut input = Input::new(data);
    let columns: Vec<usize> = (0..COLUMNS.len()).collect();
    let widths = vec![None; COLUMNS.len()];
    let mut stream = HEADER.to_vec();
    let mut sent = Vec::new();
    for _ in 0..1 + input.below(4) {
        let row: Vec<Value> = COLUMNS
            .iter()
            .map(|c| input.value(&c.ty, c.nullable))
            .collect();
        let storable = row.iter().zip(COLUMNS).all(|(v, c)| accepted(v, &c.ty));
        let before = stream.len();
        match encode_row(&SCHEMA, &columns, &widths, &row, &mut stream) {
            Ok(()) => {
                assert!(storable, "a row PostgreSQL refuses was encoded: {row:?}");
                sent.push(row);
            }
            Err(Error::InvalidInput { field, .. }) => {
                assert!(!storable, "a storable row was refused ({field}): {row:?}");
                assert!(COLUMNS.iter().any(|c| c.field == field), "{field}");
                // `copy_in` aborts the COPY here; nothing after it is sent.
                stream.truncate(before);
                break;
            }
            Err(other) => panic!("not an invalid-input error: {other:?} for {row:?}"),
        }
    }
    stream.extend_from_slice(&(-1i16).to_be_bytes());
    let read = read_stream(&stream).unwrap_or_else(|e| panic!("{e}: {sent:?}"));
    assert_eq!(read.len(), sent.len());
    for (read, sent) in read.iter().zip(&sent) {
        let expected: Vec<Value> = sent.iter().map(as_stored).collect();
        assert!(all_same(read, &expected), "sent {sent:?}, read {read:?}");
    }
}

/// Whether PostgreSQL stores `value` in a column of `ty`, judged without
/// the encoder.
fn accepted(value: &Value, ty: &ColumnType) -> bool {
    match (value, ty) {
        (Value::Null, _) => true,
        (Value::Text(s), ColumnType::Text | ColumnType::Enum(_)) => !s.contains('\0'),
        (Value::Json(j), ColumnType::Json) => !json_has_nul(j),
        (Value::TimestampTz(t), ColumnType::TimestampTz) => {
            // PostgreSQL's first instant is 4714-11-24 BC (Julian day 0) at
            // midnight UTC; its end is 294277-01-01.
            let first = DateTime::from_timestamp(-210_866_803_200, 0).expect("in chrono's range");
            let end = DateTime::from_timestamp(9_224_318_016_000, 0);
            // A leap second at chrono's last instant counts past it: stored,
            // it would never read back.
            let reads_back = DateTime::from_timestamp_micros(t.timestamp_micros()).is_some();
            *t >= first && end.is_none_or(|end| *t < end) && reads_back
        }
        (Value::Date(d), ColumnType::Date) => {
            NaiveDate::from_ymd_opt(-4713, 11, 24).is_some_and(|first| *d >= first)
        }
        (Value::Array(items), ColumnType::Array(inner)) => {
            items.iter().all(|item| accepted(item, inner))
        }
        (Value::Bool(_), ColumnType::Bool)
        | (Value::I16(_), ColumnType::SmallInt)
        | (Value::I32(_), ColumnType::Int)
        | (Value::I64(_), ColumnType::BigInt)
        | (Value::F32(_), ColumnType::Real)
        | (Value::F64(_), ColumnType::Double)
        | (Value::Uuid(_), ColumnType::Uuid)
        | (Value::ObjectId(_), ColumnType::ObjectId) => true,
        _ => false,
    }
}

fn json_has_nul(json: &serde_json::Value) -> bool {
    match json {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v))
        }
        _ => false,
    }
}

/// `value` as the server keeps it: instants at microsecond precision.
fn as_stored(value: &Value) -> Value {
    match value {
        Value::TimestampTz(t) => Value::TimestampTz(
            DateTime::from_timestamp_micros(t.timestamp_micros()).expect("in range"),
        ),
        Value::Array(items) => Value::Array(items.iter().map(as_stored).collect()),
        other => other.clone(),
    }
}

/// A byte cursor over the stream; every read checks its bounds.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.data.len() {
            return Err(format!("{n} bytes wanted, {} left", self.data.len()));
        }
        let (taken, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(taken)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn i16(&mut self) -> Result<i16, String> {
        self.array().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, String> {
        self.array().map(i32::from_be_bytes)
    }
}

/// The rows of a binary COPY stream: the 11-byte signature, flags and
/// header extension (both zero here), then per row a field count and per
/// field a length (-1 for NULL) and that many bytes, then -1.
fn read_stream(stream: &[u8]) -> Result<Vec<Vec<Value>>, String> {
    let mut reader = Reader { data: stream };
    if reader.take(11)? != b"PGCOPY\n\xff\r\n\0" {
        return Err("not the binary COPY signature".into());
    }
    if reader.i32()? != 0 || reader.i32()? != 0 {
        return Err("flags or a header extension".into());
    }
    let mut rows = Vec::new();
    loop {
        let count = reader.i16()?;
        if count == -1 {
            break;
        }
        if usize::try_from(count).ok() != Some(COLUMNS.len()) {
            return Err(format!("a row of {count} fields"));
        }
        let row = COLUMNS
            .iter()
            .map(|c| read_field(&mut reader, &c.ty))
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(row);
    }
    if !reader.data.is_empty() {
        return Err(format!("{} bytes after the trailer", reader.data.len()));
    }
    Ok(rows)
}

fn read_field(reader: &mut Reader<'_>, ty: &ColumnType) -> Result<Value, String> {
    let length = reader.i32()?;
    if length == -1 {
        return Ok(Value::Null);
    }
    let length = usize::try_from(length).map_err(|_| format!("a length of {length}"))?;
    let mut field = Reader {
        data: reader.take(length)?,
    };
    let value = read_value(&mut field, ty)?;
    if !field.data.is_empty() {
        return Err(format!("{} bytes left in a {ty:?} field", field.data.len()));
    }
    Ok(value)
}

/// One field's bytes as the type's `recv` function reads them.
fn read_value(field: &mut Reader<'_>, ty: &ColumnType) -> Result<Value, String> {
    Ok(match ty {
        ColumnType::Text | ColumnType::Enum(_) => {
            let text = std::str::from_utf8(field.rest()).map_err(|e| e.to_string())?;
            if text.contains('\0') {
                return Err("NUL in text".into());
            }
            Value::Text(text.to_owned())
        }
        ColumnType::Bool => match field.array::<1>()? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            [b] => return Err(format!("bool byte {b}")),
        },
        ColumnType::SmallInt => Value::I16(field.i16()?),
        ColumnType::Int => Value::I32(field.i32()?),
        ColumnType::BigInt => Value::I64(i64::from_be_bytes(field.array()?)),
        ColumnType::Real => Value::F32(f32::from_be_bytes(field.array()?)),
        ColumnType::Double => Value::F64(f64::from_be_bytes(field.array()?)),
        ColumnType::Uuid => Value::Uuid(uuid::Uuid::from_bytes(field.array()?)),
        ColumnType::ObjectId => {
            let hex = std::str::from_utf8(field.rest()).map_err(|e| e.to_string())?;
            Value::ObjectId(hex.parse::<ObjectId>().map_err(|e| e.to_string())?)
        }
        ColumnType::TimestampTz => {
            let micros = i64::from_be_bytes(field.array()?);
            // `MIN_TIMESTAMP` and `END_TIMESTAMP` of PostgreSQL's timestamp.h.
            if !(-211_813_488_000_000_000..9_223_371_331_200_000_000).contains(&micros) {
                return Err(format!("timestamp {micros} out of PostgreSQL's range"));
            }
            let unix = micros + 946_684_800_000_000;
            Value::TimestampTz(
                DateTime::<Utc>::from_timestamp_micros(unix).ok_or("beyond chrono's range")?,
            )
        }
        ColumnType::Date => {
            let days = field.i32()?;
            // Julian days 0 to `DATE_END_JULIAN`, from PostgreSQL's epoch (2451545).
            if !(-2_451_545..2_145_031_949).contains(&days) {
                return Err(format!("date {days} out of PostgreSQL's range"));
            }
            let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).ok_or("no epoch")?;
            Value::Date(
                epoch
                    .checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
                    .ok_or("beyond chrono's range")?,
            )
        }
        ColumnType::Json => {
            if field.array::<1>()? != [1] {
                return Err("jsonb version is not 1".into());
            }
            let json: serde_json::Value =
                serde_json::from_slice(field.rest()).map_err(|e| e.to_string())?;
            Value::Json(json)
        }
        ColumnType::Array(inner) => read_array(field, inner)?,
        other => return Err(format!("no reader for {other:?}")),
    })
}

/// `array_recv`: dimensions (1), a has-NULL flag, the element type's OID,
/// then per dimension its length and lower bound (1), then the elements.
fn read_array(field: &mut Reader<'_>, element: &ColumnType) -> Result<Value, String> {
    let dims = field.i32()?;
    let has_null = field.i32()?;
    let oid = field.i32()?;
    let expected_oid = match element {
        ColumnType::Text | ColumnType::Enum(_) | ColumnType::ObjectId => 25,
        ColumnType::Bool => 16,
        ColumnType::SmallInt => 21,
        ColumnType::Int => 23,
        ColumnType::BigInt => 20,
        ColumnType::Real => 700,
        ColumnType::Double => 701,
        ColumnType::Uuid => 2950,
        ColumnType::TimestampTz => 1184,
        ColumnType::Date => 1082,
        ColumnType::Json => 3802,
        other => return Err(format!("no array of {other:?}")),
    };
    if dims != 1 || oid != expected_oid {
        return Err(format!("array header: {dims} dims, element OID {oid}"));
    }
    let length = usize::try_from(field.i32()?).map_err(|_| "a negative array length")?;
    if field.i32()? != 1 {
        return Err("an array not starting at 1".into());
    }
    let items = (0..length)
        .map(|_| read_field(field, element))
        .collect::<Result<Vec<_>, _>>()?;
    let nulls = items.iter().any(|v| matches!(v, Value::Null));
    if i32::from(nulls) != has_null {
        return Err(format!("has-NULL flag {has_null}, NULLs present: {nulls}"));
    }
    Ok(Value::Array(items))
}
