//! Stage 1: `#[repo(...)]` attributes parsed into plain structs that keep the
//! user's spans. darling rejects unknown keys and values outside a closed
//! vocabulary (see `kinds`), with a "did you mean" hint, and collects every
//! parse error; nothing here builds tokens.

use darling::util::{Override, SpannedValue};
use darling::{Error, FromDeriveInput, FromField, FromMeta, Result, ast};
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Generics, Ident, Meta, Type, Visibility};

use super::kinds::{BackendChoice, Distance, IndexKind, Reads};

/// The struct and its `#[repo(...)]` options.
#[derive(FromDeriveInput)]
#[darling(attributes(repo), supports(struct_named))]
pub(crate) struct RepoInput {
    pub(crate) ident: Ident,
    pub(crate) vis: Visibility,
    pub(crate) generics: Generics,
    pub(crate) data: ast::Data<(), RepoField>,
    /// `table = "..."`: the table name (and the collection's, unless
    /// `collection` is given).
    pub(crate) table: Option<SpannedValue<String>>,
    /// `schema = "..."`: the database schema (namespace).
    pub(crate) schema: Option<SpannedValue<String>>,
    /// `backend = "postgres" | "mongo"`: the one backend storing the entity
    /// (default: both, as their features allow).
    #[darling(default, with = parse_backend)]
    pub(crate) backend: Option<SpannedValue<BackendChoice>>,
    /// `collection = "..."`: the MongoDB collection (default: the table name).
    pub(crate) collection: Option<SpannedValue<String>>,
    /// `cache(ttl = "5m", negative_ttl = "30s")`: reads go through the
    /// repository cache. Collected rather than refused by darling when
    /// repeated, so `cache_rules` says why only one is allowed.
    #[darling(multiple)]
    pub(crate) cache: Vec<CacheKey>,
    /// `reads = "replica" | "primary"`: where the PostgreSQL backend sends
    /// pool reads when it has read replicas (default: a replica).
    #[darling(default, with = parse_reads)]
    pub(crate) reads: Option<SpannedValue<Reads>>,
}

/// One field and its `#[repo(...)]` options.
#[derive(FromField)]
#[darling(attributes(repo))]
pub(crate) struct RepoField {
    pub(crate) ident: Option<Ident>,
    pub(crate) ty: Type,
    /// `id` or `id(assigned)`: the primary key; `assigned` makes an integer
    /// id the application's instead of a database identity.
    pub(crate) id: Option<SpannedValue<Override<IdAttr>>>,
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
    /// `soft_delete`: set by `delete` instead of removing the row; an
    /// `Option<DateTime<Utc>>`.
    pub(crate) soft_delete: Flag,
    /// `tenant`: the tenant owning the row; `String`, `Uuid` or an integer.
    pub(crate) tenant: Flag,
    /// `skip`: not stored; `Default` when read.
    pub(crate) skip: Flag,
    /// `default = "..."`: SQL default expression.
    pub(crate) default: Option<SpannedValue<String>>,
    /// `vector(dims = N, ..)`: a pgvector column and its index.
    pub(crate) vector: Option<SpannedValue<VectorAttr>>,
    /// `full_text` or `full_text(language = "..")`: part of the full-text document.
    pub(crate) full_text: Option<SpannedValue<Override<FullTextAttr>>>,
    /// `embed(from = "field")`: filled by an embedder from a text field.
    pub(crate) embed: Option<SpannedValue<EmbedAttr>>,
    /// `renamed_from = "old"`: the column's previous name, for migrations.
    pub(crate) renamed_from: Option<SpannedValue<String>>,
    /// `ttl = "30d"`: rows expire this long after this timestamp.
    pub(crate) ttl: Option<SpannedValue<String>>,
    /// `references(Document, on_delete = "cascade")`: the field holds ids of
    /// another entity (see `relation_rules`).
    pub(crate) references: Option<super::relation_rules::ReferencesAttr>,
}

/// `vector(dims = 384, distance = "cosine", index = "hnsw", m = 16, ef_construction = 64, lists = 100)`.
#[derive(FromMeta)]
pub(crate) struct VectorAttr {
    /// Number of dimensions (bits for `Bit`).
    pub(crate) dims: SpannedValue<u32>,
    /// `cosine`, `l2`, `inner_product`, `l1`; `hamming`, `jaccard` for bits.
    #[darling(default, with = parse_distance)]
    pub(crate) distance: Option<SpannedValue<Distance>>,
    /// `hnsw` (default), `ivfflat` or `none`.
    #[darling(default, with = parse_index)]
    pub(crate) index: Option<SpannedValue<IndexKind>>,
    /// HNSW links per node.
    pub(crate) m: Option<SpannedValue<u32>>,
    /// HNSW build candidate list size.
    pub(crate) ef_construction: Option<SpannedValue<u32>>,
    /// IVFFlat list count.
    pub(crate) lists: Option<SpannedValue<u32>>,
}

/// `cache(ttl = "5m", negative_ttl = "30s")`.
#[derive(FromMeta)]
pub(crate) struct CacheAttr {
    /// How long a found row (or a `.cached(..)` query's result) stays cached.
    pub(crate) ttl: SpannedValue<String>,
    /// How long "no such row" stays cached; absent: not cached.
    pub(crate) negative_ttl: Option<SpannedValue<String>>,
}

/// One `cache(..)` and where its `cache` key is written, for the error
/// about a second one.
pub(crate) struct CacheKey {
    pub(crate) span: Span,
    pub(crate) attr: CacheAttr,
}

impl FromMeta for CacheKey {
    fn from_meta(meta: &Meta) -> Result<Self> {
        Ok(CacheKey {
            span: meta.path().span(),
            attr: CacheAttr::from_meta(meta)?,
        })
    }
}

/// `id(assigned)`.
#[derive(FromMeta, Default)]
pub(crate) struct IdAttr {
    /// The application supplies every id of an integer id field; the
    /// column is a plain primary key, not an identity.
    pub(crate) assigned: Flag,
}

/// `full_text(language = "english")`.
#[derive(FromMeta, Default)]
pub(crate) struct FullTextAttr {
    /// A Postgres text search configuration name.
    pub(crate) language: Option<SpannedValue<String>>,
}

/// `embed(from = "body")`.
#[derive(FromMeta)]
pub(crate) struct EmbedAttr {
    /// The text field the vector is computed from.
    pub(crate) from: SpannedValue<String>,
}

/// A bare word (`#[repo(unique)]`): present or not, and where.
///
/// darling's own `util::Flag` (0.24.1) panics on an empty list such as
/// `#[repo(version())]`: it takes the error of `()`'s parser with
/// `unwrap_err`, and `()` accepts an empty list. A panicking derive shows
/// the user "proc-macro derive panicked" with no span, so this one answers
/// every non-word form with an error on it (found by the `never_panics`
/// property test).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Flag(Option<Span>);

impl Flag {
    /// Whether the word was written.
    pub(crate) fn is_present(&self) -> bool {
        self.0.is_some()
    }

    /// The word's span, or the call site when it is absent.
    pub(crate) fn span(&self) -> Span {
        self.0.unwrap_or_else(Span::call_site)
    }
}

impl FromMeta for Flag {
    fn from_none() -> Option<Self> {
        Some(Flag(None))
    }

    fn from_meta(meta: &Meta) -> Result<Self> {
        match meta {
            Meta::Path(path) => Ok(Flag(Some(path.span()))),
            // darling's message for `word = value` and `word(x)`, where it has one.
            other => Err(<()>::from_meta(other).err().unwrap_or_else(|| {
                let word = other
                    .path()
                    .get_ident()
                    .map_or_else(|| "this attribute".to_owned(), |i| format!("`{i}`"));
                Error::custom(format!("{word} takes no arguments: write it alone")).with_span(other)
            })),
        }
    }
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

/// A value of a closed vocabulary (see `kinds`), its key named in the error:
/// darling's message names the value and its closest valid spelling (or
/// lists them) and points at the value, but does not say which key it is.
/// The `parse_*` functions are the fields' `with` parsers, named apart from
/// the fields because darling's generated code binds locals by field name.
fn vocabulary<T: FromMeta>(meta: &Meta, key: &str) -> Result<Option<SpannedValue<T>>> {
    SpannedValue::from_meta(meta).map(Some).map_err(|error| {
        let span = error.span();
        Error::custom(format!("`{key}`: {error}")).with_span(&span)
    })
}

fn parse_backend(meta: &Meta) -> Result<Option<SpannedValue<BackendChoice>>> {
    vocabulary(meta, "backend")
}

/// `reads = ".."`, by hand rather than as a darling vocabulary: its two
/// values are few enough for the message to name both.
fn parse_reads(meta: &Meta) -> Result<Option<SpannedValue<Reads>>> {
    let value = SpannedValue::<String>::from_meta(meta).map_err(|error| {
        let span = error.span();
        Error::custom(format!("`reads`: {error}")).with_span(&span)
    })?;
    let span = value.span();
    match Reads::from_name(value.as_str()) {
        Some(reads) => Ok(Some(SpannedValue::new(reads, span))),
        None => {
            let message = format!(
                "unknown read preference {:?}: use \"primary\" or \"replica\"",
                value.as_str()
            );
            Err(Error::custom(message).with_span(&span))
        }
    }
}

fn parse_distance(meta: &Meta) -> Result<Option<SpannedValue<Distance>>> {
    vocabulary(meta, "distance")
}

fn parse_index(meta: &Meta) -> Result<Option<SpannedValue<IndexKind>>> {
    vocabulary(meta, "index")
}
