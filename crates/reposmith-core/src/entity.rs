//! [`Entity`]: what `#[derive(Repository)]` implements for a struct.

use std::fmt::Debug;

use crate::schema::EntitySchema;
use crate::value::{FieldType, Value};
use crate::{Error, Result};

/// A struct stored by reposmith. Implemented by `#[derive(Repository)]`;
/// write it by hand only for types the derive cannot see.
pub trait Entity: Sized + Send + Sync + Unpin + 'static {
    /// The id field's type.
    type Id: FieldType + Clone + Debug + Send + Sync + 'static;

    /// Table, columns, indexes and id strategy.
    const SCHEMA: &'static EntitySchema;

    /// The id field.
    fn id(&self) -> &Self::Id;

    /// Every stored field in [`EntitySchema::columns`] order.
    ///
    /// Fails only for `#[repo(json)]` fields whose `Serialize` impl fails,
    /// with an invalid-input error naming the field.
    fn to_values(&self) -> Result<Vec<Value>>;

    /// Builds the entity from stored fields in [`EntitySchema::columns`]
    /// order; skipped fields take their `Default`.
    fn from_values(values: Vec<Value>) -> Result<Self>;
}

/// An entity PostgreSQL stores: every entity unless it is declared
/// `#[repo(backend = "mongo")]`. Postgres repositories require it, so the
/// mistake is caught at compile time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not stored in PostgreSQL",
    label = "not a PostgreSQL entity",
    note = "an entity declared #[repo(backend = \"mongo\")] has only a MongoDB repository \
            (`store.repo::<{Self}>()` picks it); remove `backend = \"mongo\"` to store it in \
            both, or in generic code bound the type by `PostgresEntity` or `StoredIn<U::Home>`"
)]
pub trait PostgresEntity: Entity {}

/// An entity MongoDB stores: every entity unless it is declared
/// `#[repo(backend = "postgres")]`. MongoDB repositories require it, so the
/// mistake is caught at compile time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not stored in MongoDB",
    label = "not a MongoDB entity",
    note = "an entity declared #[repo(backend = \"postgres\")] has only a PostgreSQL repository \
            (`store.repo::<{Self}>()` picks it); remove `backend = \"postgres\"` to store it in \
            both, or in generic code bound the type by `MongoEntity` or `StoredIn<U::Home>`"
)]
pub trait MongoEntity: Entity {}

/// Helpers the derive's generated code calls; not a stable API.
pub mod codegen {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    use super::*;

    /// A field type's storage type and nullability, in one bound check.
    pub const fn column_meta<T: FieldType>() -> (crate::schema::ColumnType, bool) {
        (T::COLUMN_TYPE, T::NULLABLE)
    }

    /// Reads the next stored field of `E` into a typed field.
    pub fn decode<E: Entity, T: FieldType>(
        values: &mut std::vec::IntoIter<Value>,
        field: &'static str,
    ) -> Result<T> {
        let value = values.next().unwrap_or(Value::Null);
        T::from_value(value).map_err(|source| Error::Decode {
            entity: E::SCHEMA.entity,
            field,
            source,
        })
    }

    /// Serializes a `#[repo(json)]` field. On a nullable (`Option`) field a
    /// JSON `null` is stored as NULL; on any other it is the JSON value `null`.
    /// NaN and ±Infinity are rejected with the path to them: `serde_json`
    /// would silently store them as `null`.
    pub fn encode_json<E: Entity, T: Serialize>(
        value: &T,
        field: &'static str,
        nullable: bool,
    ) -> Result<Value> {
        crate::finite::check(value).map_err(|e| {
            Error::invalid(
                E::SCHEMA.entity,
                field,
                format!("{e}: JSON has no NaN or Infinity"),
            )
        })?;
        let json = serde_json::to_value(value).map_err(|e| {
            Error::invalid(
                E::SCHEMA.entity,
                field,
                format!("not storable as JSON: {e}"),
            )
        })?;
        Ok(match json {
            serde_json::Value::Null if nullable => Value::Null,
            other => Value::Json(other),
        })
    }

    /// Reads a `#[repo(json)]` field back.
    pub fn decode_json<E: Entity, T: DeserializeOwned>(
        values: &mut std::vec::IntoIter<Value>,
        field: &'static str,
    ) -> Result<T> {
        let json = match values.next().unwrap_or(Value::Null) {
            Value::Json(json) => json,
            Value::Null => serde_json::Value::Null,
            other => {
                let source = crate::value::DecodeError::unexpected("json", &other);
                return Err(Error::Decode {
                    entity: E::SCHEMA.entity,
                    field,
                    source,
                });
            }
        };
        serde_json::from_value(json).map_err(|e| Error::Decode {
            entity: E::SCHEMA.entity,
            field,
            source: crate::value::DecodeError {
                expected: "JSON matching the field's type",
                found: e.to_string(),
            },
        })
    }
}
