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

    /// The schema of `E`, as a function a [`Reference`](crate::schema::Reference)
    /// can point at (a function breaks cycles between statics).
    pub fn schema_of<E: Entity>() -> &'static EntitySchema {
        E::SCHEMA
    }

    /// A reference field's value as the target's id (the identity: the
    /// bound is the check).
    pub fn reference_key<P: Entity, T: IdOf<P>>(value: &T) -> &P::Id {
        value.as_id()
    }

    /// Compiles only when `P` is stored in PostgreSQL.
    pub const fn reference_in_postgres<P: PostgresTarget>() {}

    /// Compiles only when `P` is stored in MongoDB.
    pub const fn reference_in_mongo<P: MongoTarget>() {}

    /// `Self` is the id type of entity `P`: what a field declared
    /// `#[repo(references(P))]` must hold. The derive implements it for
    /// each entity's id type (a blanket impl over `P::Id` would report a
    /// mismatch as a type projection error instead of this message).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not the id type of `{P}`",
        label = "this reference's field holds `{Self}`",
        note = "a field declared #[repo(references({P}))] holds `{P}`'s ids: give it the type of \
                `{P}`'s #[repo(id)] field (or an `Option` of it)"
    )]
    pub trait IdOf<P: Entity> {
        /// `self`, as `P`'s id.
        fn as_id(&self) -> &P::Id;
    }

    /// An entity a PostgreSQL entity may reference: one PostgreSQL stores.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not stored in PostgreSQL, so a PostgreSQL entity cannot reference it",
        label = "referenced here",
        note = "the referencing entity is stored in PostgreSQL and gets a foreign key to the \
                target's table: store `{Self}` in PostgreSQL too (remove its \
                `backend = \"mongo\"`), or pin the referencing entity to MongoDB"
    )]
    pub trait PostgresTarget: Entity {}

    impl<P: PostgresEntity> PostgresTarget for P {}

    /// An entity a MongoDB entity may reference: one MongoDB stores.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not stored in MongoDB, so a MongoDB entity cannot reference it",
        label = "referenced here",
        note = "the referencing entity is stored in MongoDB, where its relation loads the \
                target's documents: store `{Self}` in MongoDB too (remove its \
                `backend = \"postgres\"`), or pin the referencing entity to PostgreSQL"
    )]
    pub trait MongoTarget: Entity {}

    impl<P: MongoEntity> MongoTarget for P {}

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
