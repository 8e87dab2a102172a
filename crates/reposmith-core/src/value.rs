//! [`Value`]: one stored field on its way to or from a backend, and
//! [`FieldType`]: which Rust types can be stored and how.
//!
//! Backends bind `Value`s as parameters and decode rows into them; the derive
//! converts each field with its `FieldType` impl. A value never becomes SQL
//! text: it is always a bound parameter.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::schema::{ColumnType, VectorKind};

/// The pgvector crate whose types vector fields hold.
pub use pgvector;

/// A field's value in backend-neutral form.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL `NULL` / BSON null: the column's type comes from the schema.
    Null,
    /// Boolean.
    Bool(bool),
    /// 16-bit integer.
    I16(i16),
    /// 32-bit integer.
    I32(i32),
    /// 64-bit integer.
    I64(i64),
    /// 32-bit float.
    F32(f32),
    /// 64-bit float.
    F64(f64),
    /// Text, also the stored form of enums.
    Text(String),
    /// UUID.
    Uuid(Uuid),
    /// MongoDB ObjectId.
    ObjectId(crate::ObjectId),
    /// Instant in UTC.
    TimestampTz(DateTime<Utc>),
    /// Calendar date.
    Date(NaiveDate),
    /// JSON document.
    Json(serde_json::Value),
    /// Array of values of one type.
    Array(Vec<Value>),
    /// pgvector `vector`.
    Vector(pgvector::Vector),
    /// pgvector `halfvec`.
    HalfVector(pgvector::HalfVector),
    /// pgvector `sparsevec`.
    SparseVector(pgvector::SparseVector),
    /// pgvector `bit`.
    Bit(pgvector::Bit),
}

impl Value {
    /// A short name of the variant, for decode errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::I16(_) => "i16",
            Value::I32(_) => "i32",
            Value::I64(_) => "i64",
            Value::F32(_) => "f32",
            Value::F64(_) => "f64",
            Value::Text(_) => "text",
            Value::Uuid(_) => "uuid",
            Value::ObjectId(_) => "objectid",
            Value::TimestampTz(_) => "timestamptz",
            Value::Date(_) => "date",
            Value::Json(_) => "json",
            Value::Array(_) => "array",
            Value::Vector(_) => "vector",
            Value::HalfVector(_) => "halfvec",
            Value::SparseVector(_) => "sparsevec",
            Value::Bit(_) => "bit",
        }
    }

    /// The integer an `I16`, `I32` or `I64` holds, whatever its width.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::I16(n) => Some(i64::from(*n)),
            Value::I32(n) => Some(i64::from(*n)),
            Value::I64(n) => Some(*n),
            _ => None,
        }
    }

    /// `n` as a value of the integer column type `ty` (`I16` for
    /// `SmallInt`, `I32` for `Int`, `I64` for `BigInt`), or `None` when it is
    /// outside that type's range or `ty` is not an integer type.
    pub fn integer_of(n: i64, ty: &ColumnType) -> Option<Value> {
        match ty {
            ColumnType::SmallInt => i16::try_from(n).ok().map(Value::I16),
            ColumnType::Int => i32::try_from(n).ok().map(Value::I32),
            ColumnType::BigInt => Some(Value::I64(n)),
            _ => None,
        }
    }
}

/// Reads an integer stored at any width into the width of the field's
/// integer column type `ty`: widening always succeeds, narrowing is checked.
/// A value too large or too small for the field is a [`DecodeError`] naming
/// `column` (the stored name), the value and the field type's range; it is
/// never truncated. Backends call this for every integer column they read,
/// so an `i64` field reads an `integer` column and an `i32` field reads a
/// `bigint` column whose values fit.
pub fn fit_integer(n: i64, ty: &ColumnType, column: &str) -> Result<Value, DecodeError> {
    Value::integer_of(n, ty).ok_or_else(|| match ty.integer_name() {
        Some(name) => DecodeError::out_of_range(name, ty, n, column),
        None => DecodeError {
            expected: "a column of the field's type",
            found: format!("the integer {n} in column \"{column}\""),
        },
    })
}

/// A stored value did not have the type the field expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct DecodeError {
    /// What the field type reads.
    pub expected: &'static str,
    /// What the backend returned.
    pub found: String,
}

impl DecodeError {
    /// `value` is not what a field of type `expected` reads.
    pub fn unexpected(expected: &'static str, value: &Value) -> Self {
        DecodeError {
            expected,
            found: value.kind().to_owned(),
        }
    }
}

impl DecodeError {
    /// A stored integer `n` from `column` outside the range of the field's
    /// integer type `ty` (named `expected`).
    pub fn out_of_range(expected: &'static str, ty: &ColumnType, n: i64, column: &str) -> Self {
        let range = ty
            .integer_bounds()
            .map(|(min, max)| format!(", outside {expected}'s range {min}..={max}"))
            .unwrap_or_default();
        DecodeError {
            expected,
            found: format!("{n} in column \"{column}\"{range}"),
        }
    }
}

/// A Rust type that can be stored in a column.
///
/// Implemented for `String`, `bool`, `i16`, `i32`, `i64`, `f32`, `f64`,
/// `Uuid`, [`ObjectId`](crate::ObjectId), `DateTime<Utc>`, `NaiveDate`, `serde_json::Value`, the pgvector
/// types `Vector`, `HalfVector`, `SparseVector` and `Bit` (with
/// `#[repo(vector(..))]`), `Option<T>` (nullable) and `Vec<T>` (array), and by `#[derive(DbEnum)]` for fieldless
/// enums. Any other `Serialize + DeserializeOwned` type is stored as JSON
/// with `#[repo(json)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a reposmith column",
    label = "unsupported field type",
    note = "supported: String, bool, i16, i32, i64, f32, f64, Uuid, ObjectId, DateTime<Utc>, NaiveDate, \
            serde_json::Value, pgvector Vector/HalfVector/SparseVector/Bit, Option<T>, Vec<T>, and enums with #[derive(DbEnum)]",
    note = "to store any Serialize + DeserializeOwned type as JSON, mark the field #[repo(json)]"
)]
pub trait FieldType: Sized + Send + Sync {
    /// The storage type.
    const COLUMN_TYPE: ColumnType;
    /// True for `Option<T>`.
    const NULLABLE: bool = false;
    /// The type filters compare this field with (`T` for `Option<T>`).
    type Scalar: FieldType;
    /// Converts the field for storage.
    fn to_value(&self) -> Value;
    /// Reads the field back.
    fn from_value(value: Value) -> Result<Self, DecodeError>;
}

/// Implements [`FieldType`] for a type that maps onto one `Value` variant.
macro_rules! scalar_field {
    ($ty:ty, $column:expr, $variant:ident, $name:literal) => {
        impl FieldType for $ty {
            const COLUMN_TYPE: ColumnType = $column;
            type Scalar = $ty;

            fn to_value(&self) -> Value {
                Value::$variant(self.clone())
            }

            fn from_value(value: Value) -> Result<Self, DecodeError> {
                match value {
                    Value::$variant(inner) => Ok(inner),
                    other => Err(DecodeError::unexpected($name, &other)),
                }
            }
        }
    };
}

scalar_field!(String, ColumnType::Text, Text, "text");
scalar_field!(bool, ColumnType::Bool, Bool, "bool");
/// Implements [`FieldType`] for an integer type: it reads any integer value
/// whose number fits, so a value stored at another width still reads
/// (widening always, narrowing when in range; see [`fit_integer`]).
macro_rules! integer_field {
    ($ty:ty, $column:expr, $variant:ident, $name:literal) => {
        impl FieldType for $ty {
            const COLUMN_TYPE: ColumnType = $column;
            type Scalar = $ty;

            fn to_value(&self) -> Value {
                Value::$variant(*self)
            }

            fn from_value(value: Value) -> Result<Self, DecodeError> {
                match value {
                    Value::$variant(inner) => Ok(inner),
                    other => match other.as_integer() {
                        Some(n) => <$ty>::try_from(n).map_err(|_| DecodeError {
                            expected: $name,
                            found: format!(
                                "{n}, outside {}'s range {}..={}",
                                $name,
                                <$ty>::MIN,
                                <$ty>::MAX
                            ),
                        }),
                        None => Err(DecodeError::unexpected($name, &other)),
                    },
                }
            }
        }
    };
}

integer_field!(i16, ColumnType::SmallInt, I16, "i16");
integer_field!(i32, ColumnType::Int, I32, "i32");
integer_field!(i64, ColumnType::BigInt, I64, "i64");
scalar_field!(f32, ColumnType::Real, F32, "f32");
scalar_field!(f64, ColumnType::Double, F64, "f64");
scalar_field!(Uuid, ColumnType::Uuid, Uuid, "uuid");
scalar_field!(crate::ObjectId, ColumnType::ObjectId, ObjectId, "objectid");
scalar_field!(
    DateTime<Utc>,
    ColumnType::TimestampTz,
    TimestampTz,
    "timestamptz"
);
scalar_field!(NaiveDate, ColumnType::Date, Date, "date");
scalar_field!(serde_json::Value, ColumnType::Json, Json, "json");
scalar_field!(
    pgvector::Vector,
    ColumnType::Vector(VectorKind::Dense),
    Vector,
    "vector"
);
scalar_field!(
    pgvector::HalfVector,
    ColumnType::Vector(VectorKind::Half),
    HalfVector,
    "halfvec"
);
scalar_field!(
    pgvector::SparseVector,
    ColumnType::Vector(VectorKind::Sparse),
    SparseVector,
    "sparsevec"
);
scalar_field!(
    pgvector::Bit,
    ColumnType::Vector(VectorKind::Bit),
    Bit,
    "bit"
);

impl<T: FieldType> FieldType for Option<T> {
    const COLUMN_TYPE: ColumnType = T::COLUMN_TYPE;
    const NULLABLE: bool = true;
    type Scalar = T::Scalar;

    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, T::to_value)
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

impl<T: FieldType> FieldType for Vec<T> {
    const COLUMN_TYPE: ColumnType = ColumnType::Array(&T::COLUMN_TYPE);
    type Scalar = Vec<T>;

    fn to_value(&self) -> Value {
        Value::Array(self.iter().map(T::to_value).collect())
    }

    fn from_value(value: Value) -> Result<Self, DecodeError> {
        match value {
            Value::Array(items) => items.into_iter().map(T::from_value).collect(),
            other => Err(DecodeError::unexpected("array", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: FieldType + PartialEq + std::fmt::Debug>(value: T) {
        let stored = value.to_value();
        assert_eq!(T::from_value(stored).unwrap(), value);
    }

    #[test]
    fn every_scalar_round_trips() {
        round_trip("héllo 🦀".to_owned());
        round_trip(true);
        round_trip(i16::MIN);
        round_trip(i32::MAX);
        round_trip(i64::MIN);
        round_trip(1.5f32);
        round_trip(-2.25f64);
        round_trip(Uuid::from_u128(7));
        round_trip(DateTime::<Utc>::from_timestamp(1_700_000_000, 5).unwrap());
        round_trip(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
        round_trip(serde_json::json!({"a": [1, "x", null]}));
        round_trip(Some(3i64));
        round_trip(None::<String>);
        round_trip(vec!["a".to_owned(), "b".to_owned()]);
        round_trip(vec![Some(1i32), None]);
    }

    #[test]
    fn schema_types_follow_the_rust_types() {
        assert_eq!(
            <Option<Vec<i64>>>::COLUMN_TYPE,
            ColumnType::Array(&ColumnType::BigInt)
        );
        const { assert!(<Option<String>>::NULLABLE) };
        const { assert!(!<Vec<String>>::NULLABLE) };
    }

    #[test]
    fn integers_widen_and_narrow_only_when_they_fit() {
        assert_eq!(i64::from_value(Value::I32(-7)).unwrap(), -7);
        assert_eq!(i64::from_value(Value::I16(i16::MIN)).unwrap(), -32_768);
        assert_eq!(
            i32::from_value(Value::I64(2_147_483_647)).unwrap(),
            i32::MAX
        );
        assert_eq!(i16::from_value(Value::I32(12)).unwrap(), 12);
        let err = i32::from_value(Value::I64(3_000_000_000)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected i32, found 3000000000, outside i32's range -2147483648..=2147483647"
        );
        assert!(<Option<i16>>::from_value(Value::I32(40_000)).is_err());
        assert_eq!(<Option<i16>>::from_value(Value::I64(5)).unwrap(), Some(5));

        assert_eq!(
            fit_integer(3, &ColumnType::SmallInt, "n").unwrap(),
            Value::I16(3)
        );
        assert_eq!(
            fit_integer(i64::MAX, &ColumnType::BigInt, "n").unwrap(),
            Value::I64(i64::MAX)
        );
        let err = fit_integer(-40_000, &ColumnType::SmallInt, "small_n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected i16, found -40000 in column \"small_n\", outside i16's range -32768..=32767"
        );
    }

    #[test]
    fn wrong_kind_is_a_decode_error() {
        let err = i64::from_value(Value::Text("7".into())).unwrap_err();
        assert_eq!(err.to_string(), "expected i64, found text");
        assert!(<Option<i64>>::from_value(Value::Bool(true)).is_err());
    }
}
