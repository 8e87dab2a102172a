//! The checked model of an entity: what stage 3 generates from. Built only by
//! `check`, so every value here already obeys the rules.

use proc_macro2::Span;
use syn::{Ident, Type, Visibility};

use super::kinds::{BackendChoice, Distance, Reads, VectorKind};

/// An entity ready for code generation.
pub(crate) struct Entity {
    pub(crate) ident: Ident,
    pub(crate) vis: Visibility,
    pub(crate) table: String,
    pub(crate) schema: Option<String>,
    /// `collection = ".."` when it differs from the table name.
    pub(crate) collection: Option<String>,
    /// The backends storing the entity.
    pub(crate) backends: BackendChoice,
    /// Every field in declaration order, skipped ones included.
    pub(crate) fields: Vec<Field>,
    pub(crate) id_kind: IdKind,
    /// `#[repo(cache(..))]`, checked.
    pub(crate) cache: Option<CacheModel>,
    /// `#[repo(reads = "..")]`; `Replica` when absent.
    pub(crate) reads: Reads,
}

impl Entity {
    /// The stored fields, in schema column order.
    pub(crate) fn columns(&self) -> impl Iterator<Item = &Field> {
        self.fields.iter().filter(|f| f.storage != Storage::Skipped)
    }

    /// The id field.
    pub(crate) fn id_field(&self) -> &Field {
        self.columns()
            .find(|f| f.role == Role::Id)
            .expect("check guarantees exactly one id")
    }

    /// Position of the id among the stored columns.
    pub(crate) fn id_position(&self) -> usize {
        self.columns()
            .position(|f| f.role == Role::Id)
            .expect("check guarantees exactly one id")
    }
}

/// A checked `#[repo(cache(..))]`: what `CacheSpec::new` takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct CacheModel {
    /// How long a found row stays cached, in milliseconds.
    pub(crate) ttl_ms: u64,
    /// How long an absent row stays cached, in milliseconds; 0: not cached.
    pub(crate) negative_ttl_ms: u64,
    /// The struct's shape hash (see `shape`).
    pub(crate) shape: u64,
}

/// One struct field.
pub(crate) struct Field {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    pub(crate) column: String,
    pub(crate) role: Role,
    pub(crate) storage: Storage,
    pub(crate) unique: bool,
    pub(crate) index: bool,
    pub(crate) default_sql: Option<String>,
    /// `#[repo(vector(..))]`, checked.
    pub(crate) vector: Option<VectorModel>,
    /// The text search configuration of a `#[repo(full_text)]` field.
    pub(crate) full_text: Option<String>,
    /// The column an embedder fills this vector from.
    pub(crate) embed_from: Option<String>,
    /// The column's previous name.
    pub(crate) renamed_from: Option<String>,
    /// Lifetime of rows after this timestamp, in seconds.
    pub(crate) ttl_seconds: Option<u64>,
    /// `#[repo(references(..))]`, checked.
    pub(crate) references: Option<ReferenceModel>,
    /// Where errors about the field's type point.
    pub(crate) span: Span,
}

/// What the repository manages about a field.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    Data,
    Id,
    Version,
    CreatedAt,
    UpdatedAt,
    SoftDelete,
    Tenant,
}

impl Role {
    /// The `#[repo(...)]` key that gives a field this role.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::Id => "id",
            Role::Version => "version",
            Role::CreatedAt => "created_at",
            Role::UpdatedAt => "updated_at",
            Role::SoftDelete => "soft_delete",
            Role::Tenant => "tenant",
        }
    }
}

/// How a field is stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Storage {
    /// Through its `FieldType` impl.
    Typed,
    /// As JSON through serde.
    Json,
    /// Not stored.
    Skipped,
}

/// The id's type, which decides how ids are assigned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IdKind {
    /// Generated client-side.
    Uuid,
    /// Generated client-side, MongoDB's 12 bytes.
    ObjectId,
    /// An integer (`i64`, `i32`, `i16`) assigned by the database.
    Identity,
    /// Supplied by the application: a `String`, or an integer marked `id(assigned)`.
    Assigned,
}

/// A checked `#[repo(references(Target, on_delete = ".."))]`.
#[derive(Clone)]
pub(crate) struct ReferenceModel {
    /// The referenced entity (`Self` already replaced by the struct's name).
    pub(crate) target: syn::Path,
    /// `Restrict`, `Cascade` or `SetNull`: the core's `OnDelete` variant.
    pub(crate) on_delete: &'static str,
    /// The relation constant's name (`DOCUMENT` for `document_id`).
    pub(crate) constant: String,
    /// Where errors about the reference point: the target's path.
    pub(crate) span: Span,
}

/// A checked `#[repo(vector(..))]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct VectorModel {
    pub(crate) kind: VectorKind,
    pub(crate) dims: u32,
    pub(crate) distance: Distance,
    pub(crate) index: VectorIndexModel,
}

/// A checked vector index choice.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VectorIndexModel {
    None,
    Hnsw { m: u32, ef_construction: u32 },
    IvfFlat { lists: u32 },
}
