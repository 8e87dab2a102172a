//! Partial updates: typed assignments to an entity's columns
//! (`Doc::STATUS.set(..)`, `Doc::VIEWS.add(1)`, `Doc::META.json_set(..)`),
//! collected in [`Changes`] and applied by
//! [`Repository::patch`](crate::Repository::patch) and
//! [`Repository::update_where`](crate::Repository::update_where) in one
//! statement (one command on MongoDB).
//!
//! Everything that does not depend on a database is here, once: the
//! assignment types, the checks run before anything is sent
//! ([`Changes::validate`]), the managed columns a write stamps
//! ([`updated_at_stamp`]) and the re-embedding of a changed
//! `#[repo(embed(from = ".."))]` source ([`embed_changes`]). Backends render
//! the checked assignments and bind every value.

use std::marker::PhantomData;

use crate::embed::Embedder;
use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::filter::{Column, JsonColumn};
use crate::json::MAX_JSON_DEPTH;
use crate::schema::{ColumnDef, ColumnRole, ColumnType, EntitySchema};
use crate::value::{FieldType, Value};

/// What one assignment does to its column.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AssignOp {
    /// `column = value` (`Value::Null` for NULL).
    Set(Value),
    /// `column = column + delta`, atomically on the server.
    Add(Value),
    /// Sets the value at `path` inside the JSON document, creating missing
    /// objects on the way (a NULL document becomes `{}` first).
    JsonSet {
        /// Object keys from the top of the document.
        path: Vec<String>,
        /// The value put there.
        value: serde_json::Value,
    },
    /// Removes the key at `path` from the JSON document; nothing when absent.
    JsonRemove {
        /// Object keys from the top of the document.
        path: Vec<String>,
    },
}

/// One assignment to a column of entity `E`; build it from the entity's
/// column constants (`Doc::TITLE.set("x")`).
pub struct Assignment<E> {
    column: usize,
    op: AssignOp,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for Assignment<E> {
    fn clone(&self) -> Self {
        Assignment::new(self.column, self.op.clone())
    }
}

impl<E> std::fmt::Debug for Assignment<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assignment")
            .field("column", &self.column)
            .field("op", &self.op)
            .finish()
    }
}

impl<E> Assignment<E> {
    fn new(column: usize, op: AssignOp) -> Self {
        Assignment {
            column,
            op,
            entity: PhantomData,
        }
    }

    /// The column's position in the schema.
    pub fn column(&self) -> usize {
        self.column
    }

    /// What the assignment does.
    pub fn op(&self) -> &AssignOp {
        &self.op
    }

    /// This assignment and `other`: `Doc::RANK.set(1).and(Doc::TITLE.set("x"))`.
    pub fn and(self, other: Assignment<E>) -> Changes<E> {
        Changes::new().and(self).and(other)
    }
}

/// The assignments of one partial update, applied together and atomically.
///
/// Build it with [`Changes::new`] and [`Changes::and`], from one
/// [`Assignment`], an array or a `Vec` of them (`[a, b].into()`), or by
/// collecting an iterator. Checked by [`Changes::validate`] before anything
/// is sent.
pub struct Changes<E> {
    assignments: Vec<Assignment<E>>,
}

impl<E> Clone for Changes<E> {
    fn clone(&self) -> Self {
        Changes {
            assignments: self.assignments.clone(),
        }
    }
}

impl<E> std::fmt::Debug for Changes<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.assignments).finish()
    }
}

impl<E> Default for Changes<E> {
    fn default() -> Self {
        Changes::new()
    }
}

impl<E> Changes<E> {
    /// No assignments yet (sending it as is is [`Error::InvalidInput`]).
    pub fn new() -> Self {
        Changes {
            assignments: Vec::new(),
        }
    }

    /// Adds `assignment` after the ones already given.
    pub fn and(mut self, assignment: Assignment<E>) -> Self {
        self.assignments.push(assignment);
        self
    }

    /// The assignments, in the order given.
    pub fn assignments(&self) -> &[Assignment<E>] {
        &self.assignments
    }

    /// True when there is no assignment.
    pub fn is_empty(&self) -> bool {
        self.assignments.is_empty()
    }

    /// The untyped assignments `(column, op)`, for backends.
    pub fn into_parts(self) -> Vec<(usize, AssignOp)> {
        self.assignments
            .into_iter()
            .map(|a| (a.column, a.op))
            .collect()
    }
}

impl<E> From<Assignment<E>> for Changes<E> {
    fn from(assignment: Assignment<E>) -> Self {
        Changes::new().and(assignment)
    }
}

impl<E> From<Vec<Assignment<E>>> for Changes<E> {
    fn from(assignments: Vec<Assignment<E>>) -> Self {
        Changes { assignments }
    }
}

impl<E, const N: usize> From<[Assignment<E>; N]> for Changes<E> {
    fn from(assignments: [Assignment<E>; N]) -> Self {
        Changes {
            assignments: assignments.into(),
        }
    }
}

impl<E> FromIterator<Assignment<E>> for Changes<E> {
    fn from_iter<I: IntoIterator<Item = Assignment<E>>>(iter: I) -> Self {
        Changes {
            assignments: iter.into_iter().collect(),
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// The field types [`Column::add`] accepts: integers and floats.
#[diagnostic::on_unimplemented(
    message = "`add` needs a numeric column, and `{Self}` is not numeric",
    label = "not an integer or float column",
    note = "`add` is for i16, i32, i64, f32 and f64 fields (and their Option); use `set` for other columns"
)]
pub trait Numeric: FieldType + sealed::Sealed {}

macro_rules! numeric {
    ($($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}
        impl Numeric for $ty {}
    )*};
}
numeric!(i16, i32, i64, f32, f64);

impl<E: Entity, T: FieldType> Column<E, T> {
    /// `column = value`. A `None` of an `Option` field is [`Column::set_null`].
    pub fn set(self, value: impl Into<T::Scalar>) -> Assignment<E> {
        Assignment::new(self.index(), AssignOp::Set(value.into().to_value()))
    }

    /// `column = column + delta`, computed by the server, so concurrent
    /// additions never lose one. Only numeric columns have it (a compile
    /// error otherwise). Adding to a NULL leaves NULL on PostgreSQL and is
    /// refused by MongoDB; an integer result outside the field's type is
    /// [`Error::InvalidInput`] on PostgreSQL (see the MongoDB crate's
    /// `patch` module for MongoDB).
    #[allow(
        clippy::should_implement_trait,
        reason = "`Doc::VIEWS.add(1)` is the spelling the issue asks for; it builds an assignment, not a sum"
    )]
    pub fn add(self, delta: impl Into<T::Scalar>) -> Assignment<E>
    where
        T::Scalar: Numeric,
    {
        Assignment::new(self.index(), AssignOp::Add(delta.into().to_value()))
    }
}

impl<E: Entity, T: FieldType> Column<E, Option<T>> {
    /// `column = NULL` (only `Option` fields have it).
    pub fn set_null(self) -> Assignment<E> {
        Assignment::new(self.index(), AssignOp::Set(Value::Null))
    }

    /// `column = value`, NULL for `None`.
    pub fn set_option(self, value: Option<impl Into<T::Scalar>>) -> Assignment<E> {
        let value = value.map_or(Value::Null, |v| v.into().to_value());
        Assignment::new(self.index(), AssignOp::Set(value))
    }
}

/// JSON path assignments of a `serde_json::Value` field.
impl<E: Entity, T: FieldType<Scalar = serde_json::Value>> Column<E, T> {
    /// Sets `value` at `path` inside the document; see [`AssignOp::JsonSet`].
    pub fn json_set<K: Into<String>>(
        self,
        path: impl IntoIterator<Item = K>,
        value: impl Into<serde_json::Value>,
    ) -> Assignment<E> {
        json_set(self.index(), path, value.into())
    }

    /// Removes the key at `path` inside the document.
    pub fn json_remove<K: Into<String>>(self, path: impl IntoIterator<Item = K>) -> Assignment<E> {
        json_remove(self.index(), path)
    }
}

/// Assignments of a `#[repo(json)]` field.
impl<E: Entity> JsonColumn<E> {
    /// `column = document`.
    pub fn set(self, document: impl Into<serde_json::Value>) -> Assignment<E> {
        let document = Value::Json(document.into());
        Assignment::new(self.index(), AssignOp::Set(document))
    }

    /// `column = NULL`; refused when the field is not an `Option`.
    pub fn set_null(self) -> Assignment<E> {
        Assignment::new(self.index(), AssignOp::Set(Value::Null))
    }

    /// Sets `value` at `path` inside the document; see [`AssignOp::JsonSet`].
    pub fn json_set<K: Into<String>>(
        self,
        path: impl IntoIterator<Item = K>,
        value: impl Into<serde_json::Value>,
    ) -> Assignment<E> {
        json_set(self.index(), path, value.into())
    }

    /// Removes the key at `path` inside the document.
    pub fn json_remove<K: Into<String>>(self, path: impl IntoIterator<Item = K>) -> Assignment<E> {
        json_remove(self.index(), path)
    }
}

fn keys<K: Into<String>>(path: impl IntoIterator<Item = K>) -> Vec<String> {
    path.into_iter().map(Into::into).collect()
}

fn json_set<E, K: Into<String>>(
    column: usize,
    path: impl IntoIterator<Item = K>,
    value: serde_json::Value,
) -> Assignment<E> {
    let path = keys(path);
    Assignment::new(column, AssignOp::JsonSet { path, value })
}

fn json_remove<E, K: Into<String>>(
    column: usize,
    path: impl IntoIterator<Item = K>,
) -> Assignment<E> {
    let path = keys(path);
    Assignment::new(column, AssignOp::JsonRemove { path })
}

impl<E: Entity> Changes<E> {
    /// Checks the changes against `E`'s schema before anything is sent;
    /// every refusal is [`Error::InvalidInput`] naming `Entity.field`:
    ///
    /// * no assignment at all;
    /// * an assignment to the id, the version, `created_at` or
    ///   `updated_at` (the repository manages them);
    /// * two assignments to one column, except JSON path assignments to
    ///   paths where neither is a prefix of the other;
    /// * NULL for a field that is not an `Option`;
    /// * an integer outside the column's type, a float delta that is NaN or
    ///   infinite, `add` on a column that is not numeric;
    /// * a vector that does not fit its column's `VectorSpec` (dimensions,
    ///   NaN, infinities, the index's limits);
    /// * a JSON path that is empty, or a key that is empty, holds a NUL or a
    ///   `.`, or starts with `$` (MongoDB would read it as a path or an
    ///   operator), or a value nested deeper than
    ///   [`MAX_JSON_DEPTH`] once placed at its path.
    ///
    /// What a backend cannot store (NUL in text on PostgreSQL, `$` keys in
    /// JSON on MongoDB) is refused by the backend as on insert, also before
    /// anything is sent.
    pub fn validate(&self) -> Result<()> {
        validate_parts(
            E::SCHEMA,
            self.assignments.iter().map(|a| (a.column, &a.op)),
        )
    }
}

/// [`Changes::validate`] over untyped assignments.
pub fn validate_parts<'a>(
    schema: &'static EntitySchema,
    parts: impl Iterator<Item = (usize, &'a AssignOp)> + Clone,
) -> Result<()> {
    if parts.clone().next().is_none() {
        return Err(Error::invalid(
            schema.entity,
            "changes",
            "no assignment: give at least one, such as Entity::FIELD.set(value)",
        ));
    }
    for (column, op) in parts.clone() {
        let def = schema.columns.get(column).ok_or_else(|| {
            Error::invalid(
                schema.entity,
                "changes",
                format!("no column at position {column}"),
            )
        })?;
        check_one(def, op).map_err(|reason| invalid(schema, def, reason))?;
    }
    let all: Vec<(usize, &AssignOp)> = parts.collect();
    for (i, (column, op)) in all.iter().enumerate() {
        for (other_column, other) in &all[i + 1..] {
            if column == other_column && overlap(op, other) {
                let def = &schema.columns[*column];
                let reason = "is assigned twice in one change (or two JSON paths overlap); \
                              give each column (or path) one assignment";
                return Err(invalid(schema, def, reason.to_owned()));
            }
        }
    }
    Ok(())
}

fn invalid(schema: &EntitySchema, def: &ColumnDef, reason: String) -> Error {
    Error::invalid(schema.entity, def.field, reason)
}

/// Whether two assignments to one column conflict: only JSON path
/// assignments to disjoint paths combine.
fn overlap(a: &AssignOp, b: &AssignOp) -> bool {
    match (json_path(a), json_path(b)) {
        (Some(a), Some(b)) => a.starts_with(b) || b.starts_with(a),
        _ => true,
    }
}

fn json_path(op: &AssignOp) -> Option<&[String]> {
    match op {
        AssignOp::JsonSet { path, .. } | AssignOp::JsonRemove { path } => Some(path),
        _ => None,
    }
}

/// Why `op` cannot be applied to `def`, as a phrase following the field name.
fn check_one(def: &ColumnDef, op: &AssignOp) -> std::result::Result<(), String> {
    if def.role != ColumnRole::Data {
        return Err(format!(
            "is managed by the repository (the {}) and cannot be assigned",
            role_name(def.role)
        ));
    }
    match op {
        AssignOp::Set(value) => check_set(def, value),
        AssignOp::Add(delta) => check_add(def, delta),
        AssignOp::JsonSet { path, value } => {
            check_path(def, path)?;
            let depth = path.len() + crate::json::json_depth(value);
            if depth > MAX_JSON_DEPTH {
                return Err(format!(
                    "would hold JSON nested {depth} levels deep at that path; at most \
                     {MAX_JSON_DEPTH} are accepted"
                ));
            }
            Ok(())
        }
        AssignOp::JsonRemove { path } => check_path(def, path),
    }
}

fn role_name(role: ColumnRole) -> &'static str {
    match role {
        ColumnRole::Id => "id",
        ColumnRole::Version => "version",
        ColumnRole::CreatedAt => "created_at timestamp",
        ColumnRole::UpdatedAt => "updated_at timestamp",
        ColumnRole::SoftDelete => "soft-delete timestamp; use delete and restore",
        ColumnRole::Tenant => "tenant; rows never move between tenants",
        _ => "managed column",
    }
}

fn check_set(def: &ColumnDef, value: &Value) -> std::result::Result<(), String> {
    if matches!(value, Value::Null) {
        return match def.nullable {
            true => Ok(()),
            false => Err("is not an Option, so it cannot be set to NULL".to_owned()),
        };
    }
    if let Some(n) = value.as_integer() {
        check_integer(def, n)?;
    }
    if let Some(spec) = &def.vector {
        crate::vector::check_value(spec, value).map_err(|reason| format!("the vector {reason}"))?;
    }
    Ok(())
}

fn check_integer(def: &ColumnDef, n: i64) -> std::result::Result<(), String> {
    match (def.ty.integer_bounds(), def.ty.integer_name()) {
        (Some((min, max)), Some(name)) if n < min || n > max => Err(format!(
            "is an {name} column; {n} is outside its range {min}..={max}"
        )),
        _ => Ok(()),
    }
}

fn check_add(def: &ColumnDef, delta: &Value) -> std::result::Result<(), String> {
    let numeric = matches!(
        def.ty,
        ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Real
            | ColumnType::Double
    );
    if !numeric {
        return Err("is not numeric, so it cannot be added to".to_owned());
    }
    match delta {
        Value::F32(x) if !x.is_finite() => Err(format!("cannot be added {x}: not finite")),
        Value::F64(x) if !x.is_finite() => Err(format!("cannot be added {x}: not finite")),
        Value::I16(_) | Value::I32(_) | Value::I64(_) => {
            check_integer(def, delta.as_integer().unwrap_or(0))
        }
        Value::F32(_) | Value::F64(_) => Ok(()),
        other => Err(format!("cannot be added a {}", other.kind())),
    }
}

fn check_path(def: &ColumnDef, path: &[String]) -> std::result::Result<(), String> {
    if def.ty != ColumnType::Json {
        return Err("is not a JSON column, so it has no paths".to_owned());
    }
    if path.is_empty() {
        return Err("JSON path is empty; give at least one key (or use set)".to_owned());
    }
    for key in path {
        let reason = if key.is_empty() {
            "is empty"
        } else if key.contains('\0') {
            "contains a NUL character (\\u0000)"
        } else if key.contains('.') {
            "contains `.`, which MongoDB reads as a path separator"
        } else if key.starts_with('$') {
            "starts with `$`, which MongoDB reads as an operator"
        } else {
            continue;
        };
        return Err(format!("JSON path key {key:?} {reason}"));
    }
    Ok(())
}

/// The `updated_at` column and its new value, stamped at `now` (the backend
/// passes its clock at the precision it stores), if the entity has one.
pub fn updated_at_stamp(
    schema: &EntitySchema,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(usize, Value)> {
    schema
        .column_with_role(ColumnRole::UpdatedAt)
        .map(|(i, _)| (i, Value::TimestampTz(now)))
}

/// Re-embeds what a change to a `#[repo(embed(from = ".."))]` source makes
/// stale: when `parts` set a source text and not its vector, the vector is
/// set too: to the embedding of the new text with an `embedder`, else to
/// NULL when the vector field is an `Option` (a missing embedding, for code
/// that embeds later), else the change is [`Error::InvalidInput`]. A text
/// set to NULL or "" sets a nullable vector to NULL. The embedder's answer
/// is checked like on insert ([`Error::Embedding`]).
pub async fn embed_changes(
    schema: &'static EntitySchema,
    embedder: Option<&dyn Embedder>,
    parts: &mut Vec<(usize, AssignOp)>,
) -> Result<()> {
    for (vector, def) in crate::embed::embedded_columns(schema) {
        let source = def
            .embed_from
            .and_then(|name| schema.columns.iter().position(|c| c.name == name));
        let Some(source) = source else { continue };
        if parts.iter().any(|(c, _)| *c == vector) {
            continue;
        }
        let text = parts.iter().find_map(|(c, op)| match op {
            AssignOp::Set(value) if *c == source => Some(value.clone()),
            _ => None,
        });
        let Some(text) = text else { continue };
        let value = match (text, embedder) {
            (Value::Text(text), Some(embedder)) if !text.is_empty() => {
                crate::embed::embed_query(schema, Some(embedder), vector, &text).await?
            }
            _ if def.nullable => Value::Null,
            _ => {
                return Err(Error::invalid(
                    schema.entity,
                    def.field,
                    format!(
                        "is embedded from {}, which this change sets, and is not an Option: give \
                         the repository an embedder (.with_embedder(..)) or set {} in the same change",
                        schema.columns[source].field, def.field
                    ),
                ));
            }
        };
        parts.push((vector, AssignOp::Set(value)));
    }
    Ok(())
}

/// The version column and the expected version of a patch as a value of
/// its width, when one was given: refused on an entity without
/// `#[repo(version)]` and when the number does not fit the field.
pub fn expected_version(
    schema: &'static EntitySchema,
    expected: Option<i64>,
) -> Result<Option<(usize, Value)>> {
    let Some(expected) = expected else {
        return Ok(None);
    };
    let Some((i, def)) = schema.version_column() else {
        return Err(Error::invalid(
            schema.entity,
            "if_version",
            format!("{} has no #[repo(version)] field to compare", schema.entity),
        ));
    };
    match Value::integer_of(expected, &def.ty) {
        Some(value) => Ok(Some((i, value))),
        None => Err(invalid(
            schema,
            def,
            format!("cannot hold the expected version {expected}"),
        )),
    }
}

/// The stored values an integer `add` may start from: the result of
/// adding `delta` to a value in `low..=high` fits the column's type.
///
/// Backends put this in the condition of the write (a NULL passes, as the
/// add itself decides what NULL becomes), so an add that would leave the
/// type writes nothing: PostgreSQL would refuse the result, and MongoDB
/// would store a wider integer that then fails every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddRange {
    /// The column's position in the schema.
    pub column: usize,
    /// The smallest stored value the add accepts.
    pub low: i64,
    /// The largest stored value the add accepts.
    pub high: i64,
    /// What is added.
    pub delta: i64,
}

/// The [`AddRange`]s of the integer `add`s in checked `parts` (an add of
/// zero, or to a float column, has none).
pub fn add_ranges(schema: &EntitySchema, parts: &[(usize, AssignOp)]) -> Vec<AddRange> {
    parts
        .iter()
        .filter_map(|(column, op)| {
            let AssignOp::Add(delta) = op else {
                return None;
            };
            let delta = delta.as_integer().filter(|d| *d != 0)?;
            let (min, max) = schema.columns.get(*column)?.ty.integer_bounds()?;
            let (low, high) = match delta > 0 {
                true => (min, max.saturating_sub(delta)),
                false => (min.saturating_sub(delta), max),
            };
            Some(AddRange {
                column: *column,
                low,
                high,
                delta,
            })
        })
        .collect()
}

impl AddRange {
    /// Whether an add to the stored `value` stays in the column's type.
    pub fn admits(&self, value: i64) -> bool {
        (self.low..=self.high).contains(&value)
    }

    /// The refusal of this add to the stored `value`.
    pub fn refusal(&self, schema: &EntitySchema, value: i64) -> Error {
        let def = &schema.columns[self.column];
        let (min, max) = def.ty.integer_bounds().unwrap_or((i64::MIN, i64::MAX));
        let name = def.ty.integer_name().unwrap_or("integer");
        invalid(
            schema,
            def,
            format!(
                "is {value}; adding {} would leave the {name} range {min}..={max}, so nothing \
                 was written",
                self.delta
            ),
        )
    }
}

/// Why a patch of the row `id` wrote nothing, from what is stored now:
/// `stored` is `None` when the row is gone, else the stored integers of
/// the version column and of the columns in `ranges`.
///
/// No row is [`Error::NotFound`]; a version other than the `expected` one
/// is [`Error::StaleVersion`]; an `add` whose stored value is outside its
/// [`AddRange`] is [`Error::InvalidInput`] naming the field. A row that now
/// passes every condition changed in between (deleted and stored again):
/// reported as [`Error::NotFound`], as it was when the write looked.
pub fn patch_miss(
    schema: &EntitySchema,
    id: String,
    expected: Option<&(usize, Value)>,
    ranges: &[AddRange],
    stored: Option<&[(usize, Option<i64>)]>,
) -> Error {
    let not_found = || Error::NotFound {
        entity: schema.entity,
        id: id.clone(),
    };
    let Some(stored) = stored else {
        return not_found();
    };
    let now = |column: usize| {
        stored
            .iter()
            .find_map(|(c, value)| (*c == column).then_some(*value).flatten())
    };
    if let Some((column, version)) = expected {
        let expected = version.as_integer().unwrap_or(0);
        if now(*column) != Some(expected) {
            return Error::StaleVersion {
                entity: schema.entity,
                id,
                expected,
            };
        }
    }
    for range in ranges {
        match now(range.column) {
            Some(value) if !range.admits(value) => return range.refusal(schema, value),
            _ => {}
        }
    }
    not_found()
}

/// The error of a JSON-path `json_set` the server could not apply because
/// a key on the way holds a scalar (setting `a.b` where `a` is a number:
/// PostgreSQL's SQLSTATE 22023, MongoDB's PathNotViable, code 28), or
/// `None` when `parts` set no JSON path. One error on both backends:
/// [`Error::InvalidInput`] naming the field and the path (every path set
/// on the field, when several were: the server does not say which one).
pub fn json_path_through_scalar(
    schema: &EntitySchema,
    parts: &[(usize, AssignOp)],
) -> Option<Error> {
    let mut fields: Vec<(usize, Vec<String>)> = Vec::new();
    for (column, op) in parts {
        let AssignOp::JsonSet { path, .. } = op else {
            continue;
        };
        let path = path.join(".");
        match fields.iter_mut().find(|(c, _)| c == column) {
            Some((_, paths)) => paths.push(path),
            None => fields.push((*column, vec![path])),
        }
    }
    if fields.is_empty() {
        return None;
    }
    let field = fields
        .iter()
        .map(|(c, _)| schema.columns[*c].field)
        .collect::<Vec<_>>()
        .join(" or ");
    let paths = fields
        .iter()
        .flat_map(|(_, paths)| paths.iter().map(|p| format!("`{p}`")))
        .collect::<Vec<_>>()
        .join(", ");
    Some(Error::invalid(
        schema.entity,
        field,
        format!(
            "cannot set the JSON path {paths}: a key on the way holds a scalar, not an object \
             (set the key's parent to an object first)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Distance, IdStrategy, VectorIndex, VectorKind, VectorSpec};

    static COLUMNS: [ColumnDef; 6] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("small", "small", ColumnType::SmallInt, false),
        ColumnDef::new("score", "score", ColumnType::Double, true),
        ColumnDef::new("meta", "meta", ColumnType::Json, true),
        ColumnDef::new("v", "v", ColumnType::Vector(VectorKind::Dense), true).with_vector(
            VectorSpec::new(VectorKind::Dense, 3, Distance::L2, VectorIndex::None),
        ),
        ColumnDef::new("version", "version", ColumnType::Int, false).with_role(ColumnRole::Version),
    ];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::Identity, &[]);

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    fn refused(parts: &[(usize, AssignOp)]) -> Option<String> {
        match validate_parts(&SCHEMA, parts.iter().map(|(c, op)| (*c, op))) {
            Ok(()) => None,
            Err(Error::InvalidInput { field, .. }) => Some(field),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn disjoint_json_paths_combine_and_overlapping_ones_do_not() {
        let set = |keys: &[&str]| AssignOp::JsonSet {
            path: path(keys),
            value: serde_json::json!(1),
        };
        assert_eq!(
            refused(&[(3, set(&["a", "b"])), (3, set(&["a", "c"]))]),
            None
        );
        assert_eq!(
            refused(&[(3, set(&["a"])), (3, set(&["a", "c"]))]).as_deref(),
            Some("meta")
        );
        let remove = AssignOp::JsonRemove { path: path(&["a"]) };
        assert_eq!(
            refused(&[(3, remove), (3, set(&["a"]))]).as_deref(),
            Some("meta")
        );
    }

    #[test]
    fn widths_deltas_vectors_and_managed_columns_are_checked() {
        assert_eq!(
            refused(&[(1, AssignOp::Set(Value::I64(70_000)))]).as_deref(),
            Some("small")
        );
        assert_eq!(refused(&[(1, AssignOp::Add(Value::I16(1)))]), None);
        assert_eq!(
            refused(&[(2, AssignOp::Add(Value::F64(f64::NAN)))]).as_deref(),
            Some("score")
        );
        assert_eq!(
            refused(&[(3, AssignOp::Add(Value::I64(1)))]).as_deref(),
            Some("meta")
        );
        let short = Value::Vector(pgvector::Vector::from(vec![1.0, 2.0]));
        assert_eq!(refused(&[(4, AssignOp::Set(short))]).as_deref(), Some("v"));
        assert_eq!(refused(&[(4, AssignOp::Set(Value::Null))]), None);
        assert_eq!(
            refused(&[(5, AssignOp::Add(Value::I32(1)))]).as_deref(),
            Some("version")
        );
        assert_eq!(
            refused(&[(0, AssignOp::Set(Value::I64(1)))]).as_deref(),
            Some("id")
        );
        assert_eq!(
            refused(&[(1, AssignOp::Set(Value::Null))]).as_deref(),
            Some("small")
        );
        assert_eq!(refused(&[]).as_deref(), Some("changes"));
    }

    #[test]
    fn a_value_placed_deep_in_a_path_counts_the_path() {
        let deep =
            (0..MAX_JSON_DEPTH - 1).fold(serde_json::json!(1), |v, _| serde_json::json!([v]));
        let at = |keys: &[&str]| {
            let op = AssignOp::JsonSet {
                path: path(keys),
                value: deep.clone(),
            };
            refused(&[(3, op)])
        };
        assert_eq!(at(&["a"]), None);
        assert_eq!(at(&["a", "b"]).as_deref(), Some("meta"));
    }

    #[test]
    fn add_ranges_keep_the_result_in_the_type_and_misses_are_classified() {
        let parts = vec![
            (1, AssignOp::Add(Value::I16(2))),
            (5, AssignOp::Add(Value::I32(-3))),
            (2, AssignOp::Add(Value::F64(1.0))),
            (1, AssignOp::Add(Value::I16(0))),
        ];
        let ranges = add_ranges(&SCHEMA, &parts);
        assert_eq!(
            ranges,
            [
                AddRange {
                    column: 1,
                    low: i64::from(i16::MIN),
                    high: i64::from(i16::MAX) - 2,
                    delta: 2
                },
                AddRange {
                    column: 5,
                    low: i64::from(i32::MIN) + 3,
                    high: i64::from(i32::MAX),
                    delta: -3
                },
            ]
        );
        let id = || "7".to_owned();
        let expected = (5, Value::I32(4));
        let miss = |stored: Option<&[(usize, Option<i64>)]>| {
            patch_miss(&SCHEMA, id(), Some(&expected), &ranges, stored)
        };
        assert!(matches!(miss(None), Error::NotFound { .. }));
        assert!(matches!(
            miss(Some(&[(5, Some(5)), (1, Some(0))])),
            Error::StaleVersion { expected: 4, .. }
        ));
        let high = Some(i64::from(i16::MAX) - 1);
        assert!(matches!(
            miss(Some(&[(5, Some(4)), (1, high)])),
            Error::InvalidInput { ref field, .. } if field == "small"
        ));
        assert!(matches!(
            miss(Some(&[(5, Some(4)), (1, None)])),
            Error::NotFound { .. }
        ));
    }
}
