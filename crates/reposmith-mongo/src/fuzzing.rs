//! The `bson_codec` fuzz target's property (feature `fuzzing`, not API);
//! the suite replays its committed corpus through the same function.

use mongodb::bson::{Document, RawDocument, RawDocumentBuf};
use reposmith_core::fuzzing::{Input, all_same};
use reposmith_core::{ColumnDef, ColumnType, EntitySchema, Error, IdStrategy, Value};

use crate::codec;

static TEXT: ColumnType = ColumnType::Text;
static BIGINT: ColumnType = ColumnType::BigInt;
static DOUBLE: ColumnType = ColumnType::Double;
static TIMESTAMP: ColumnType = ColumnType::TimestampTz;
static JSON: ColumnType = ColumnType::Json;

/// One column of each type the codec maps (vectors have their own tests),
/// nullable and not.
static COLUMNS: &[ColumnDef] = &[
    ColumnDef::new("id", "id", ColumnType::Uuid, false),
    ColumnDef::new("title", "title", ColumnType::Text, false),
    ColumnDef::new("small", "small", ColumnType::SmallInt, true),
    ColumnDef::new("count", "count", ColumnType::Int, false),
    ColumnDef::new("big", "big", ColumnType::BigInt, true),
    ColumnDef::new("ratio", "ratio", ColumnType::Real, false),
    ColumnDef::new("score", "score", ColumnType::Double, true),
    ColumnDef::new("flag", "flag", ColumnType::Bool, false),
    ColumnDef::new("owner", "owner", ColumnType::ObjectId, true),
    ColumnDef::new("at", "at", ColumnType::TimestampTz, false),
    ColumnDef::new("day", "day", ColumnType::Date, true),
    ColumnDef::new("meta", "meta", ColumnType::Json, false),
    ColumnDef::new("extra", "extra", ColumnType::Json, true),
    ColumnDef::new("tags", "tags", ColumnType::Array(&TEXT), false),
    ColumnDef::new("counts", "counts", ColumnType::Array(&BIGINT), true),
    ColumnDef::new("weights", "weights", ColumnType::Array(&DOUBLE), false),
    ColumnDef::new("times", "times", ColumnType::Array(&TIMESTAMP), false),
    ColumnDef::new("docs", "docs", ColumnType::Array(&JSON), false),
    ColumnDef::new(
        "status",
        "status",
        ColumnType::Enum(&["draft", "live"]),
        false,
    ),
];

/// The schema both halves of the target read and write.
pub static SCHEMA: EntitySchema =
    EntitySchema::new("Fuzz", "fuzz", COLUMNS, 0, IdStrategy::Assigned, &[]);

/// The BSON codec target. The first byte picks the mode:
///
/// - even: the rest is a stored document as the server would send it.
///   Reading it never panics; it yields one value per column that fits the
///   column's type, or [`Error::Decode`]. The raw reader the repositories
///   use and the reader of an owned `Document` agree on every document the
///   driver can parse.
/// - odd: an entity's values made from the input. Encoding refuses them
///   with [`Error::InvalidInput`] (a JSON key MongoDB would read as an
///   operator or a path, an integer beyond i64) or the document reads back
///   as the same values (timestamps at BSON's millisecond precision); the
///   raw and the owned encoders write the same bytes.
pub fn bson_codec(data: &[u8]) {
    let mut input = Input::new(data);
    if !input.odd() {
        stored_document(input.rest());
    } else {
        round_trip(&mut input);
    }
}

fn stored_document(bytes: &[u8]) {
    let Ok(raw) = RawDocument::from_bytes(bytes) else {
        return;
    };
    let read = codec::decode_raw(&SCHEMA, raw);
    match &read {
        Ok(values) => check_types(values),
        Err(Error::Decode { .. }) => {}
        Err(other) => panic!("reading a stored document: not a decode error: {other:?}"),
    }
    let Ok(doc) = Document::from_reader(bytes) else {
        return;
    };
    // A document with a repeated key reads the last occurrence as the
    // owned `Document` keeps it, but the raw reader also checks the earlier
    // ones: no server stores such a document, so only the rest must agree.
    if has_repeated_key(raw) {
        return;
    }
    let owned = codec::decode(&SCHEMA, &doc);
    match (&read, &owned) {
        (Ok(raw), Ok(owned)) => assert!(all_same(raw, owned), "raw {raw:?}, owned {owned:?}"),
        (Err(_), Err(_)) => {}
        _ => panic!("the raw and the owned reader disagree: {read:?} vs {owned:?}"),
    }
}

fn has_repeated_key(doc: &RawDocument) -> bool {
    let mut keys: Vec<&str> = doc
        .iter()
        .filter_map(|e| e.ok())
        .map(|(k, _)| k.as_str())
        .collect();
    let count = keys.len();
    keys.sort_unstable();
    keys.dedup();
    keys.len() != count
}

fn check_types(values: &[Value]) {
    assert_eq!(values.len(), COLUMNS.len());
    for (value, column) in values.iter().zip(COLUMNS) {
        assert!(fits(value, &column.ty), "{:?} read as {value:?}", column.ty);
        if matches!(value, Value::Null) && column.ty == ColumnType::Json {
            assert!(column.nullable, "a NOT NULL JSON column read as NULL");
        }
    }
}

fn fits(value: &Value, ty: &ColumnType) -> bool {
    match (value, ty) {
        (Value::Null, _) => true,
        (Value::Array(items), ColumnType::Array(inner)) => items.iter().all(|v| fits(v, inner)),
        (Value::Text(_), ColumnType::Text | ColumnType::Enum(_)) => true,
        (Value::Bool(_), ColumnType::Bool) => true,
        (Value::I16(_), ColumnType::SmallInt) => true,
        (Value::I32(_), ColumnType::Int) => true,
        (Value::I64(_), ColumnType::BigInt) => true,
        (Value::F32(_), ColumnType::Real) => true,
        (Value::F64(_), ColumnType::Double) => true,
        (Value::Uuid(_), ColumnType::Uuid) => true,
        (Value::ObjectId(_), ColumnType::ObjectId) => true,
        (Value::TimestampTz(_), ColumnType::TimestampTz) => true,
        (Value::Date(_), ColumnType::Date) => true,
        (Value::Json(_), ColumnType::Json) => true,
        _ => false,
    }
}

fn round_trip(input: &mut Input<'_>) {
    // Entities hand the codec values of their columns' types (the derive
    // makes `to_values`): values of another type are not this target's.
    let values: Vec<Value> = COLUMNS
        .iter()
        .map(|c| match input.value(&c.ty, c.nullable) {
            Value::Null if c.nullable => Value::Null,
            v if v != Value::Null && fits(&v, &c.ty) => v,
            _ => default_of(&c.ty),
        })
        .collect();
    let raw = codec::encode_raw(&SCHEMA, &values);
    let owned = codec::encode(&SCHEMA, &values);
    let raw = match (raw, owned) {
        (Ok(raw), Ok(owned)) => {
            let bytes = RawDocumentBuf::try_from(&owned).expect("an encoded document serializes");
            assert_eq!(
                raw.as_bytes(),
                bytes.as_bytes(),
                "the raw and the owned encoders differ for {values:?}"
            );
            raw
        }
        (Err(Error::InvalidInput { field, .. }), Err(Error::InvalidInput { .. })) => {
            assert!(COLUMNS.iter().any(|c| c.field == field), "{field}");
            return;
        }
        (raw, owned) => panic!("encoders disagree on {values:?}: {raw:?} vs {owned:?}"),
    };
    let back = codec::decode_raw(&SCHEMA, &raw)
        .unwrap_or_else(|e| panic!("{values:?} was written but does not read back: {e}"));
    let expected: Vec<Value> = values
        .iter()
        .zip(COLUMNS)
        .map(|(v, c)| stored(v, &c.ty, c.nullable))
        .collect();
    assert!(
        all_same(&back, &expected),
        "{values:?} read back as {back:?}"
    );
}

/// What a column gives back for `value`: BSON dates hold milliseconds; in
/// a JSON column BSON null is NULL when the column is nullable, JSON `null`
/// when it is not (an array's elements read with their column's nullability).
fn stored(value: &Value, ty: &ColumnType, nullable: bool) -> Value {
    match (value, ty) {
        (Value::TimestampTz(at), _) => Value::TimestampTz(codec::to_millis(*at)),
        (Value::Json(serde_json::Value::Null), ColumnType::Json) if nullable => Value::Null,
        (Value::Null, ColumnType::Json) if !nullable => Value::Json(serde_json::Value::Null),
        (Value::Array(items), ColumnType::Array(inner)) => {
            Value::Array(items.iter().map(|v| stored(v, inner, nullable)).collect())
        }
        (other, _) => other.clone(),
    }
}

fn default_of(ty: &ColumnType) -> Value {
    match ty {
        ColumnType::Array(_) => Value::Array(Vec::new()),
        ColumnType::Json => Value::Json(serde_json::Value::Null),
        ColumnType::Bool => Value::Bool(false),
        ColumnType::SmallInt => Value::I16(0),
        ColumnType::Int => Value::I32(0),
        ColumnType::BigInt => Value::I64(0),
        ColumnType::Real => Value::F32(0.0),
        ColumnType::Double => Value::F64(0.0),
        ColumnType::Uuid => Value::Uuid(uuid::Uuid::nil()),
        ColumnType::ObjectId => Value::ObjectId(reposmith_core::ObjectId::ZERO),
        ColumnType::TimestampTz => Value::TimestampTz(chrono::DateTime::UNIX_EPOCH),
        ColumnType::Date => Value::Date(chrono::NaiveDate::default()),
        _ => Value::Text(String::new()),
    }
}
