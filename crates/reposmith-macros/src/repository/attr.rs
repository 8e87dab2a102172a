//! Stage 1: `#[repo(...)]` attributes parsed into plain structs that keep the
//! user's spans. darling rejects unknown keys (with a "did you mean" hint) and
//! collects every parse error; nothing here builds tokens.

use darling::util::{Flag, SpannedValue};
use darling::{FromDeriveInput, FromField, ast};
use syn::{Generics, Ident, Type, Visibility};

/// The struct and its `#[repo(...)]` options.
#[derive(FromDeriveInput)]
#[darling(attributes(repo), supports(struct_named))]
pub(crate) struct RepoInput {
    pub(crate) ident: Ident,
    pub(crate) vis: Visibility,
    pub(crate) generics: Generics,
    pub(crate) data: ast::Data<(), RepoField>,
    /// `table = "..."`: the table or collection name.
    pub(crate) table: Option<SpannedValue<String>>,
    /// `schema = "..."`: the database schema (namespace).
    pub(crate) schema: Option<SpannedValue<String>>,
}

/// One field and its `#[repo(...)]` options.
#[derive(FromField)]
#[darling(attributes(repo))]
pub(crate) struct RepoField {
    pub(crate) ident: Option<Ident>,
    pub(crate) ty: Type,
    /// `id`: the primary key.
    pub(crate) id: Flag,
    /// `column = "..."`: the stored name, when it differs from the field's.
    pub(crate) column: Option<SpannedValue<String>>,
    /// `unique`: unique index, and a `find_by_<field>` finder.
    pub(crate) unique: Flag,
    /// `index`: plain index, and a `find_all_by_<field>` finder.
    pub(crate) index: Flag,
    /// `json`: stored as JSON, any `Serialize + DeserializeOwned` type.
    pub(crate) json: Flag,
    /// `version`: optimistic-locking counter.
    pub(crate) version: Flag,
    /// `created_at`: set on insert.
    pub(crate) created_at: Flag,
    /// `updated_at`: set on insert and update.
    pub(crate) updated_at: Flag,
    /// `skip`: not stored; `Default` when read.
    pub(crate) skip: Flag,
    /// `default = "..."`: SQL default expression.
    pub(crate) default: Option<SpannedValue<String>>,
}

impl RepoInput {
    /// The named fields (darling's `supports(struct_named)` guarantees the shape).
    pub(crate) fn fields(&self) -> &[RepoField] {
        match &self.data {
            ast::Data::Struct(fields) => &fields.fields,
            ast::Data::Enum(_) => &[],
        }
    }
}
