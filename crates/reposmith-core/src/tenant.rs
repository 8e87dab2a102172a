//! Tenants: who owns the rows of a `#[repo(tenant)]` entity.
//!
//! A [`Tenant`] is a validated tenant value (text, a UUID or an integer).
//! `store.for_tenant(t)` turns it into a [`RowScope`](crate::RowScope)
//! condition for each tenant-scoped entity (rendered by each backend's one
//! scope function, the value always bound) and into the stamp every write
//! applies ([`stamp_tenant`]). This module is the backend-free part: the
//! value, its checks, its conversion to the column's type, and the rule for
//! an entity's own tenant field on a write.
//!
//! **Carried along.** A tenant travels with what a tenant's unit of work
//! or queue handle sends elsewhere (outbox rows, queue jobs) as its
//! setting's text ([`Tenant::setting`], also its serde form). Read back it
//! is a text tenant, which converts to an integer or UUID column's type
//! when the text spells such a value, exactly as the row-level security
//! policy casts the setting: so `store.for_tenant(ctx.tenant())` in a job
//! handler reaches the rows of the tenant that enqueued the job.
//!
//! **The write rule.** An entity written through a tenant's repository
//! either carries that tenant, or carries the *unset* value of its type
//! (`""`, the nil UUID, `0`), which is replaced by the tenant; any other
//! value is refused with [`Error::InvalidInput`] naming the field, so a
//! caller can never write a row into another tenant.

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::schema::{ColumnDef, ColumnType, EntitySchema};
use crate::value::Value;

/// The longest tenant text accepted, in bytes.
pub const MAX_TENANT_LEN: usize = 128;

/// A tenant value, checked: non-empty text of at most [`MAX_TENANT_LEN`]
/// bytes without NUL or control characters, a non-nil UUID, or an integer.
///
/// ```
/// use reposmith_core::tenant::Tenant;
/// assert!(Tenant::new("acme").is_ok());
/// assert!(Tenant::new("").is_err());
/// assert!(Tenant::new("a\0b").is_err());
/// assert!(Tenant::new(uuid::Uuid::nil()).is_err());
/// assert_eq!(Tenant::new(42_i64).unwrap().setting(), "42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Tenant(TenantValue);

/// The stored forms a tenant can take.
#[derive(Clone, PartialEq, Eq, Hash)]
enum TenantValue {
    Text(String),
    Uuid(Uuid),
    Int(i64),
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tenant({})", self.setting())
    }
}

/// Values a [`Tenant`] can be made from: `&str`, `String`, `Uuid`, `i64`,
/// `i32`, `i16`, and a `Tenant` itself.
pub trait IntoTenant {
    /// The checked tenant.
    fn into_tenant(self) -> Result<Tenant>;
}

fn refuse(reason: impl Into<String>) -> Error {
    Error::invalid("tenant", "tenant", reason)
}

impl IntoTenant for Tenant {
    fn into_tenant(self) -> Result<Tenant> {
        Ok(self)
    }
}

impl IntoTenant for &str {
    fn into_tenant(self) -> Result<Tenant> {
        if self.is_empty() {
            return Err(refuse("a tenant is never empty"));
        }
        if self.len() > MAX_TENANT_LEN {
            return Err(refuse(format!(
                "a tenant is at most {MAX_TENANT_LEN} bytes, this one has {}",
                self.len()
            )));
        }
        if self.chars().any(char::is_control) {
            return Err(refuse("a tenant holds no NUL or other control character"));
        }
        Ok(Tenant(TenantValue::Text(self.to_owned())))
    }
}

impl IntoTenant for String {
    fn into_tenant(self) -> Result<Tenant> {
        self.as_str().into_tenant()
    }
}

impl IntoTenant for &String {
    fn into_tenant(self) -> Result<Tenant> {
        self.as_str().into_tenant()
    }
}

impl IntoTenant for Uuid {
    fn into_tenant(self) -> Result<Tenant> {
        if self.is_nil() {
            return Err(refuse("the nil UUID is the unset tenant, never a tenant"));
        }
        Ok(Tenant(TenantValue::Uuid(self)))
    }
}

impl IntoTenant for i64 {
    fn into_tenant(self) -> Result<Tenant> {
        if self == 0 {
            return Err(refuse("0 is the unset tenant, never a tenant"));
        }
        Ok(Tenant(TenantValue::Int(self)))
    }
}

impl IntoTenant for i32 {
    fn into_tenant(self) -> Result<Tenant> {
        i64::from(self).into_tenant()
    }
}

impl IntoTenant for i16 {
    fn into_tenant(self) -> Result<Tenant> {
        i64::from(self).into_tenant()
    }
}

impl Tenant {
    /// A checked tenant (see the type's docs for what is accepted).
    pub fn new(value: impl IntoTenant) -> Result<Tenant> {
        value.into_tenant()
    }

    /// The tenant as text: what PostgreSQL's `reposmith.tenant` setting
    /// holds (the row-level security policy casts it to the column's type).
    pub fn setting(&self) -> String {
        match &self.0 {
            TenantValue::Text(text) => text.clone(),
            TenantValue::Uuid(uuid) => uuid.to_string(),
            TenantValue::Int(n) => n.to_string(),
        }
    }

    /// The tenant as a value of `column`'s type: text for a text column, a
    /// UUID for a UUID column, an integer in range for an integer column;
    /// a text tenant also converts when its text spells a (non-unset)
    /// value of the column's type, as the row-level security policy casts
    /// the setting (a tenant read back from an outbox row or a queue job
    /// is text). Anything else is [`Error::InvalidInput`] naming
    /// `entity`'s field.
    pub fn value_for(&self, entity: &'static str, column: &ColumnDef) -> Result<Value> {
        let value = match (&self.0, &column.ty) {
            (TenantValue::Text(text), ColumnType::Text) => Some(Value::Text(text.clone())),
            (TenantValue::Text(text), ColumnType::Uuid) => Uuid::parse_str(text)
                .ok()
                .filter(|uuid| !uuid.is_nil())
                .map(Value::Uuid),
            (TenantValue::Text(text), ty) => text
                .parse::<i64>()
                .ok()
                .filter(|n| *n != 0)
                .and_then(|n| int_value(n, ty)),
            (TenantValue::Uuid(uuid), ColumnType::Uuid) => Some(Value::Uuid(*uuid)),
            (TenantValue::Int(n), ty) => int_value(*n, ty),
            _ => None,
        };
        value.ok_or_else(|| {
            Error::invalid(
                entity,
                column.field,
                format!(
                    "the tenant {:?} is not a value of this #[repo(tenant)] field's type",
                    self.setting()
                ),
            )
        })
    }
}

/// `n` as a value of the integer column type `ty`, if in range.
fn int_value(n: i64, ty: &ColumnType) -> Option<Value> {
    match ty {
        ColumnType::SmallInt => i16::try_from(n).ok().map(Value::I16),
        ColumnType::Int => i32::try_from(n).ok().map(Value::I32),
        ColumnType::BigInt => Some(Value::I64(n)),
        _ => None,
    }
}

/// Serialized as its setting's text ([`Tenant::setting`]).
impl serde::Serialize for Tenant {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.setting())
    }
}

/// Read as a text tenant, checked like [`Tenant::new`]: a stored tenant
/// that is empty, too long or holds a control character does not
/// deserialize.
impl<'de> serde::Deserialize<'de> for Tenant {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Tenant, D::Error> {
        let text = String::deserialize(deserializer)?;
        Tenant::new(text).map_err(serde::de::Error::custom)
    }
}

/// Whether `value` is the unset tenant of its type: `""`, the nil UUID, `0`.
fn is_unset(value: &Value) -> bool {
    match value {
        Value::Text(text) => text.is_empty(),
        Value::Uuid(uuid) => uuid.is_nil(),
        Value::I16(n) => *n == 0,
        Value::I32(n) => *n == 0,
        Value::I64(n) => *n == 0,
        _ => false,
    }
}

/// Stamps `tenant` (already of the column's type) on an entity's values
/// before a write through a tenant's repository: an unset tenant field
/// gets it, a field holding it is kept, any other tenant is
/// [`Error::InvalidInput`] naming the field.
pub fn stamp_tenant(
    schema: &EntitySchema,
    column: usize,
    tenant: &Value,
    values: &mut [Value],
) -> Result<()> {
    let held = &mut values[column];
    if is_unset(held) {
        *held = tenant.clone();
        return Ok(());
    }
    if held == tenant {
        return Ok(());
    }
    Err(Error::invalid(
        schema.entity,
        schema.columns[column].field,
        "the entity belongs to another tenant than this repository's: a tenant's repository \
         writes only its own rows (leave the field unset to have it stamped)",
    ))
}

/// The error of an operation on a tenant-scoped entity through a
/// repository taken without a tenant.
pub fn no_tenant(schema: &EntitySchema) -> Error {
    let field = schema.tenant_column().map_or("tenant", |(_, c)| c.field);
    Error::invalid(
        schema.entity,
        field,
        "the entity is tenant-scoped (#[repo(tenant)]): take its repository or unit of work \
         from `store.for_tenant(..)`",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnRole, IdStrategy};

    static COLUMNS: [ColumnDef; 2] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("org", "org", ColumnType::Text, false).with_role(ColumnRole::Tenant),
    ];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::Identity, &[]);

    #[test]
    fn tenants_are_checked() {
        assert!(Tenant::new("x".repeat(MAX_TENANT_LEN)).is_ok());
        assert!(Tenant::new("x".repeat(MAX_TENANT_LEN + 1)).is_err());
        assert!(Tenant::new("a\nb").is_err());
        assert!(Tenant::new(0_i32).is_err());
        assert_eq!(Tenant::new(7_i16).unwrap(), Tenant::new(7_i64).unwrap());
    }

    #[test]
    fn values_convert_to_the_column_type_or_fail_naming_the_field() {
        let text = Tenant::new("acme").unwrap();
        assert_eq!(
            text.value_for("T", &COLUMNS[1]).unwrap(),
            Value::Text("acme".into())
        );
        let small = ColumnDef::new("org", "org", ColumnType::SmallInt, false);
        let big = Tenant::new(1_i64 << 40).unwrap();
        assert!(big.value_for("T", &small).is_err());
        let err = text.value_for("T", &small).unwrap_err().to_string();
        assert!(err.contains("T.org"), "{err}");
    }

    #[test]
    fn text_read_back_converts_to_the_columns_type() {
        let uuid = Uuid::now_v7();
        let uuid_column = ColumnDef::new("org", "org", ColumnType::Uuid, false);
        let big = ColumnDef::new("org", "org", ColumnType::BigInt, false);
        let small = ColumnDef::new("org", "org", ColumnType::SmallInt, false);
        for (tenant, column) in [
            (Tenant::new(uuid).unwrap(), &uuid_column),
            (Tenant::new(42_i64).unwrap(), &big),
        ] {
            let json = serde_json::to_string(&tenant).unwrap();
            let back: Tenant = serde_json::from_str(&json).unwrap();
            assert_eq!(back.setting(), tenant.setting());
            assert_eq!(
                back.value_for("T", column).unwrap(),
                tenant.value_for("T", column).unwrap()
            );
        }
        let text = |t: &str| Tenant::new(t).unwrap();
        assert_eq!(text("7").value_for("T", &small).unwrap(), Value::I16(7));
        assert!(text("0").value_for("T", &big).is_err(), "0 is unset");
        assert!(text("70000").value_for("T", &small).is_err());
        assert!(
            text(&Uuid::nil().to_string())
                .value_for("T", &uuid_column)
                .is_err()
        );
        assert!(text("acme").value_for("T", &uuid_column).is_err());
        assert!(serde_json::from_str::<Tenant>(r#""a\u0000b""#).is_err());
        assert!(serde_json::from_str::<Tenant>(r#""""#).is_err());
    }

    #[test]
    fn writes_stamp_unset_keep_own_and_refuse_other_tenants() {
        let acme = Value::Text("acme".into());
        let mut values = vec![Value::I64(1), Value::Text(String::new())];
        stamp_tenant(&SCHEMA, 1, &acme, &mut values).unwrap();
        assert_eq!(values[1], acme);
        stamp_tenant(&SCHEMA, 1, &acme, &mut values).unwrap();
        values[1] = Value::Text("other".into());
        assert!(stamp_tenant(&SCHEMA, 1, &acme, &mut values).is_err());
    }
}
