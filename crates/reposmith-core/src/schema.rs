//! The static description of an entity that `#[derive(Repository)]` emits.
//!
//! This is *data*, not code: backends render SQL or BSON from it at run time
//! and `reposmith-migrate` diffs it, so the derive needs to know no SQL. Every
//! item is `const`-constructible so the schema lives in a `static`.

use crate::backend::Backend;

/// How an entity's primary key gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdStrategy {
    /// A `Uuid` the repository generates (v7, time-ordered) when the entity's id is nil.
    ClientUuid,
    /// An [`ObjectId`](crate::ObjectId) the repository generates when the entity's id is zero.
    ClientObjectId,
    /// An integer the database assigns, as wide as the id column's type
    /// (`i64`, `i32` or `i16`: `bigint`, `integer` or `smallint` `GENERATED
    /// BY DEFAULT AS IDENTITY`; a counter per collection in MongoDB that
    /// never hands out a value beyond the type's maximum); insert returns it.
    Identity,
    /// A value the application supplies: a `String` key, or an integer id
    /// marked `#[repo(id(assigned))]`.
    Assigned,
}

/// The storage type of a column, independent of any database's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnType {
    /// UTF-8 text.
    Text,
    /// Boolean.
    Bool,
    /// 16-bit integer.
    SmallInt,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    BigInt,
    /// 32-bit float.
    Real,
    /// 64-bit float.
    Double,
    /// UUID.
    Uuid,
    /// MongoDB ObjectId (BSON ObjectId; 24 hex characters of text in Postgres).
    ObjectId,
    /// Instant in UTC (`timestamptz`).
    TimestampTz,
    /// Calendar date.
    Date,
    /// JSON document (`jsonb`; a sub-document in MongoDB).
    Json,
    /// Array of the inner type.
    Array(&'static ColumnType),
    /// A fieldless enum stored as text; the variants' stored names.
    Enum(&'static [&'static str]),
    /// A pgvector vector; its dimension and distance are in the column's [`VectorSpec`].
    Vector(VectorKind),
}

impl ColumnType {
    /// The smallest and largest value of an integer type (`SmallInt`, `Int`,
    /// `BigInt`); `None` for every other type.
    pub const fn integer_bounds(&self) -> Option<(i64, i64)> {
        match self {
            ColumnType::SmallInt => Some((i16::MIN as i64, i16::MAX as i64)),
            ColumnType::Int => Some((i32::MIN as i64, i32::MAX as i64)),
            ColumnType::BigInt => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }

    /// The Rust name of an integer type (`i16`, `i32`, `i64`), for messages.
    pub const fn integer_name(&self) -> Option<&'static str> {
        match self {
            ColumnType::SmallInt => Some("i16"),
            ColumnType::Int => Some("i32"),
            ColumnType::BigInt => Some("i64"),
            _ => None,
        }
    }

    /// True for types with a total order that `<`, `BETWEEN` and keyset pagination can use.
    pub const fn is_ordered(&self) -> bool {
        !matches!(
            self,
            ColumnType::Bool | ColumnType::Json | ColumnType::Array(_) | ColumnType::Vector(_)
        )
    }
}

/// What the repository does with a column beyond storing the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnRole {
    /// An ordinary field.
    Data,
    /// The primary key.
    Id,
    /// Optimistic-locking counter: checked and bumped by every update.
    Version,
    /// Set once, on insert.
    CreatedAt,
    /// Set on insert and on every update.
    UpdatedAt,
    /// When the row was soft-deleted (`#[repo(soft_delete)]`, an
    /// `Option<DateTime<Utc>>`): NULL while the row is live. `delete` sets
    /// it instead of removing the row, every read skips rows where it is
    /// set (see [`RowScope`](crate::scope::RowScope)), unique indexes cover
    /// only live rows, and `update` never writes it.
    SoftDelete,
    /// The tenant owning the row (`#[repo(tenant)]`: text, a UUID or an
    /// integer). Repositories of the entity come from a tenant's handle
    /// (`store.for_tenant(..)`): every write stamps the tenant, every read,
    /// update and delete is restricted to it (see
    /// [`RowScope`](crate::scope::RowScope)), and PostgreSQL's row-level
    /// security policy compares it with the session's tenant.
    Tenant,
}

/// One stored field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColumnDef {
    /// The Rust field name.
    pub field: &'static str,
    /// The column (or document key) name.
    pub name: &'static str,
    /// Storage type.
    pub ty: ColumnType,
    /// True when the field is an `Option`.
    pub nullable: bool,
    /// What the repository manages about it.
    pub role: ColumnRole,
    /// A unique constraint covers this column alone.
    pub unique: bool,
    /// SQL default expression written by the user (`#[repo(default = "...")]`).
    pub default_sql: Option<&'static str>,
    /// Dimension, distance and index of a vector column (`#[repo(vector(..))]`).
    pub vector: Option<VectorSpec>,
    /// Text search configuration of a `#[repo(full_text)]` column, such as `"english"`.
    pub full_text: Option<&'static str>,
    /// The text column an [`Embedder`](crate::embed::Embedder) fills this vector from
    /// (`#[repo(embed(from = "..."))]`), by column name.
    pub embed_from: Option<&'static str>,
    /// The column's previous name (`#[repo(renamed_from = "...")]`), so a
    /// migration renames it instead of dropping and adding.
    pub renamed_from: Option<&'static str>,
    /// Rows expire this many seconds after this timestamp (`#[repo(ttl = "30d")]`):
    /// a TTL index in MongoDB, `purge_expired` in Postgres.
    pub ttl_seconds: Option<u64>,
    /// The entity this column's values are ids of (`#[repo(references(..))]`):
    /// a foreign key in PostgreSQL, a relation the loaders follow on both backends.
    pub references: Option<Reference>,
}

impl ColumnDef {
    /// A data column; the derive sets the rest with the `with_*` methods.
    pub const fn new(
        field: &'static str,
        name: &'static str,
        ty: ColumnType,
        nullable: bool,
    ) -> Self {
        ColumnDef {
            field,
            name,
            ty,
            nullable,
            role: ColumnRole::Data,
            unique: false,
            default_sql: None,
            vector: None,
            full_text: None,
            embed_from: None,
            renamed_from: None,
            ttl_seconds: None,
            references: None,
        }
    }

    /// A data column from `(type, nullable)`, as the derive's `column_meta` returns them.
    pub const fn from_meta(
        field: &'static str,
        name: &'static str,
        meta: (ColumnType, bool),
    ) -> Self {
        ColumnDef::new(field, name, meta.0, meta.1)
    }

    /// Sets the role.
    pub const fn with_role(mut self, role: ColumnRole) -> Self {
        self.role = role;
        self
    }

    /// Marks the column unique.
    pub const fn with_unique(mut self) -> Self {
        self.unique = true;
        self
    }

    /// Sets the SQL default expression.
    pub const fn with_default(mut self, sql: &'static str) -> Self {
        self.default_sql = Some(sql);
        self
    }

    /// Declares the column a vector of `spec`'s dimension.
    pub const fn with_vector(mut self, spec: VectorSpec) -> Self {
        self.vector = Some(spec);
        self
    }

    /// Includes the column in the entity's full-text document, parsed with
    /// the text search configuration `language`.
    pub const fn with_full_text(mut self, language: &'static str) -> Self {
        self.full_text = Some(language);
        self
    }

    /// Expires rows `seconds` after this timestamp column's value.
    pub const fn with_ttl(mut self, seconds: u64) -> Self {
        self.ttl_seconds = Some(seconds);
        self
    }

    /// Records the column's previous name.
    pub const fn with_renamed_from(mut self, old: &'static str) -> Self {
        self.renamed_from = Some(old);
        self
    }

    /// Declares the column a reference to another entity's id.
    pub const fn with_references(mut self, reference: Reference) -> Self {
        self.references = Some(reference);
        self
    }

    /// Lets an embedder fill this vector column from the text column `source`.
    pub const fn with_embed_from(mut self, source: &'static str) -> Self {
        self.embed_from = Some(source);
        self
    }
}

/// What the database does to referencing rows when the referenced row is
/// deleted (`#[repo(references(Target, on_delete = ".."))]`).
///
/// PostgreSQL enforces it with the foreign key's `ON DELETE` action. MongoDB
/// has no foreign keys: there the declaration only gives the relation
/// loaders, and nothing happens to referencing documents on delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnDelete {
    /// The delete is refused while rows reference it (`ON DELETE RESTRICT`;
    /// the default): [`Error::ForeignKey`](crate::Error::ForeignKey).
    #[default]
    Restrict,
    /// Referencing rows are deleted with it (`ON DELETE CASCADE`).
    Cascade,
    /// Referencing rows keep living with the column set to NULL
    /// (`ON DELETE SET NULL`); the field must be an `Option`.
    SetNull,
}

impl OnDelete {
    /// The SQL action (`CASCADE`, `RESTRICT`, `SET NULL`).
    pub const fn sql(self) -> &'static str {
        match self {
            OnDelete::Restrict => "RESTRICT",
            OnDelete::Cascade => "CASCADE",
            OnDelete::SetNull => "SET NULL",
        }
    }

    /// The attribute spelling (`"set_null"`), for messages and docs.
    pub const fn name(self) -> &'static str {
        match self {
            OnDelete::Restrict => "restrict",
            OnDelete::Cascade => "cascade",
            OnDelete::SetNull => "set_null",
        }
    }
}

/// A column's reference to another entity's id (`#[repo(references(..))]`).
///
/// The target is a function returning its schema rather than the schema
/// itself, so entities that reference each other (or themselves: a tree's
/// `parent_id`) compile: statics may not form a cycle of references, a
/// function pointer breaks it.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct Reference {
    /// The referenced entity's schema; the column holds its ids.
    pub target: fn() -> &'static EntitySchema,
    /// What deleting a referenced row does.
    pub on_delete: OnDelete,
}

impl Reference {
    /// A reference to the entity whose schema `target` returns.
    pub const fn new(target: fn() -> &'static EntitySchema, on_delete: OnDelete) -> Self {
        Reference { target, on_delete }
    }

    /// The referenced entity's schema.
    pub fn target(&self) -> &'static EntitySchema {
        (self.target)()
    }
}

impl std::fmt::Debug for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reference")
            .field("target", &self.target().entity)
            .field("on_delete", &self.on_delete)
            .finish()
    }
}

/// Two references are equal when they name the same table (namespace and
/// name) with the same action; the function pointers themselves are not
/// compared, since one function may have several addresses.
impl PartialEq for Reference {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.target(), other.target());
        (a.schema, a.table, a.entity) == (b.schema, b.table, b.entity)
            && self.on_delete == other.on_delete
    }
}

impl Eq for Reference {}

/// The name of the foreign key of `column` in `table`: `<table>_<column>_fkey`,
/// PostgreSQL's own default, so errors and `check` can name it.
pub fn foreign_key_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_fkey")
}

/// Which pgvector type a vector column has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VectorKind {
    /// `vector`: 32-bit floats (`pgvector::Vector`).
    Dense,
    /// `halfvec`: 16-bit floats (`pgvector::HalfVector`).
    Half,
    /// `sparsevec`: index/value pairs (`pgvector::SparseVector`).
    Sparse,
    /// `bit`: a bit string (`pgvector::Bit`), compared by hamming or jaccard distance.
    Bit,
}

impl VectorKind {
    /// The Postgres type name.
    pub const fn sql_type(self) -> &'static str {
        match self {
            VectorKind::Dense => "vector",
            VectorKind::Half => "halfvec",
            VectorKind::Sparse => "sparsevec",
            VectorKind::Bit => "bit",
        }
    }

    /// The most dimensions an HNSW or IVFFlat index accepts for this type
    /// (for `sparsevec`, HNSW limits non-zero elements, not dimensions).
    pub const fn max_indexed_dims(self) -> Option<u32> {
        match self {
            VectorKind::Dense => Some(2_000),
            VectorKind::Half => Some(4_000),
            VectorKind::Bit => Some(64_000),
            VectorKind::Sparse => None,
        }
    }

    /// Whether `distance` is defined on this type.
    pub const fn supports(self, distance: Distance) -> bool {
        match self {
            VectorKind::Bit => matches!(distance, Distance::Hamming | Distance::Jaccard),
            _ => !matches!(distance, Distance::Hamming | Distance::Jaccard),
        }
    }
}

/// How two vectors are compared. Smaller is closer for every distance;
/// inner product is reported negated, as pgvector's `<#>` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Distance {
    /// `1 - cos(a, b)`.
    Cosine,
    /// Euclidean distance.
    L2,
    /// Negative inner product: `-(a · b)`.
    InnerProduct,
    /// Manhattan (taxicab) distance.
    L1,
    /// Number of differing bits (`bit` only).
    Hamming,
    /// `1 - |a ∩ b| / |a ∪ b|` over set bits (`bit` only).
    Jaccard,
}

impl Distance {
    /// The pgvector operator computing this distance.
    pub const fn operator(self) -> &'static str {
        match self {
            Distance::Cosine => "<=>",
            Distance::L2 => "<->",
            Distance::InnerProduct => "<#>",
            Distance::L1 => "<+>",
            Distance::Hamming => "<~>",
            Distance::Jaccard => "<%>",
        }
    }

    /// The attribute spelling (`"inner_product"`), for messages and docs.
    pub const fn name(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::L2 => "l2",
            Distance::InnerProduct => "inner_product",
            Distance::L1 => "l1",
            Distance::Hamming => "hamming",
            Distance::Jaccard => "jaccard",
        }
    }
}

/// The approximate-nearest-neighbour index of a vector column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VectorIndex {
    /// No index: searches scan exactly.
    None,
    /// HNSW graph; `m` links per node, `ef_construction` candidates while building.
    Hnsw {
        /// Links per node (pgvector default 16).
        m: u32,
        /// Candidate list size while building (pgvector default 64).
        ef_construction: u32,
    },
    /// IVFFlat inverted lists; build it after loading data.
    IvfFlat {
        /// Number of lists (pgvector default 100).
        lists: u32,
    },
}

/// A vector column's dimension, distance and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct VectorSpec {
    /// The pgvector type.
    pub kind: VectorKind,
    /// Number of dimensions (bits for `bit`); every stored and query vector has exactly this many.
    pub dims: u32,
    /// The distance searches order by and the index is built for.
    pub distance: Distance,
    /// The index searches use.
    pub index: VectorIndex,
}

impl VectorSpec {
    /// A vector column of `kind` with `dims` dimensions compared by `distance`.
    pub const fn new(kind: VectorKind, dims: u32, distance: Distance, index: VectorIndex) -> Self {
        VectorSpec {
            kind,
            dims,
            distance,
            index,
        }
    }
}

/// Index access method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexMethod {
    /// B-tree: equality, ranges, ordering.
    BTree,
    /// GIN: JSON containment and key existence, full text.
    Gin,
    /// pgvector HNSW with its build parameters.
    Hnsw {
        /// Links per node.
        m: u32,
        /// Candidate list size while building.
        ef_construction: u32,
    },
    /// pgvector IVFFlat with its number of lists.
    IvfFlat {
        /// Number of inverted lists.
        lists: u32,
    },
}

/// An index the schema asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexDef {
    /// Index name, unique within the database schema.
    pub name: &'static str,
    /// Indexed columns, by column name.
    pub columns: &'static [&'static str],
    /// A unique index.
    pub unique: bool,
    /// Access method. An HNSW or IVFFlat index is built for its vector
    /// column's distance: the Postgres backend derives the operator class.
    pub method: IndexMethod,
}

impl IndexDef {
    /// An index on `columns`.
    pub const fn new(
        name: &'static str,
        columns: &'static [&'static str],
        unique: bool,
        method: IndexMethod,
    ) -> Self {
        IndexDef {
            name,
            columns,
            unique,
            method,
        }
    }
}

/// The stored, generated `tsvector` column holding an entity's full-text
/// document: every `#[repo(full_text)]` column, weighted A, B, C, D in
/// declaration order (later ones share D).
pub const FULL_TEXT_COLUMN: &str = "search_tsv";

/// Which backends store an entity: both (when their features are enabled)
/// unless `#[repo(backend = "postgres" | "mongo")]` pins it to one.
///
/// The derive also implements the marker traits
/// [`PostgresEntity`](crate::entity::PostgresEntity) and
/// [`MongoEntity`](crate::entity::MongoEntity) accordingly, so asking for
/// the repository of an entity on a backend that does not store it is a
/// compile error rather than a run-time surprise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backends {
    /// PostgreSQL and MongoDB.
    Both,
    /// PostgreSQL only.
    Postgres,
    /// MongoDB only.
    Mongo,
}

impl Backends {
    /// Whether `backend` stores the entity.
    pub const fn includes(self, backend: Backend) -> bool {
        matches!(
            (self, backend),
            (Backends::Both, Backend::Postgres | Backend::Mongo)
                | (Backends::Postgres, Backend::Postgres)
                | (Backends::Mongo, Backend::Mongo)
        )
    }
}

/// Where pool reads of an entity go when the PostgreSQL backend has read
/// replicas (`#[repo(reads = "..")]`).
///
/// Pool reads are the reads a repository makes outside a unit of work:
/// `get`, finders, `count`, queries, searches and streams. Reads inside a
/// unit of work, and every write, always go to the primary. A backend reads
/// the preference from the schema, `E::SCHEMA.reads`.
///
/// Only PostgreSQL repositories route by it: an entity stored in both
/// backends may declare it, and its MongoDB repository reads as the
/// `readPreference` in `MONGODB_URL` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReadPreference {
    /// A healthy replica when one is configured (the default); the primary
    /// otherwise. A replica may lag the primary: a read can miss a write
    /// that committed just before it.
    #[default]
    Replica,
    /// Always the primary: for tables that must never be read stale.
    Primary,
}

/// Everything a backend needs to store one entity type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntitySchema {
    /// The Rust type name.
    pub entity: &'static str,
    /// Database schema (namespace); `None`: the connection's search path.
    pub schema: Option<&'static str>,
    /// Table name; also the collection name unless `collection` says otherwise.
    pub table: &'static str,
    /// MongoDB collection name (`#[repo(collection = "..")]`, else the table name).
    pub collection: &'static str,
    /// Which backends store the entity (`#[repo(backend = "..")]`).
    pub backends: Backends,
    /// Stored fields in declaration order.
    pub columns: &'static [ColumnDef],
    /// Position of the id column in `columns`.
    pub id: usize,
    /// How the id gets its value.
    pub id_strategy: IdStrategy,
    /// Indexes besides the primary key.
    pub indexes: &'static [IndexDef],
    /// The read cache `#[repo(cache(..))]` declares, if any.
    pub cache: Option<crate::cache::CacheSpec>,
    /// Where the PostgreSQL backend sends pool reads when it has read
    /// replicas (`#[repo(reads = "..")]`; default [`ReadPreference::Replica`]).
    pub reads: ReadPreference,
}

impl EntitySchema {
    /// A schema in the connection's default namespace.
    pub const fn new(
        entity: &'static str,
        table: &'static str,
        columns: &'static [ColumnDef],
        id: usize,
        id_strategy: IdStrategy,
        indexes: &'static [IndexDef],
    ) -> Self {
        EntitySchema {
            entity,
            schema: None,
            table,
            collection: table,
            backends: Backends::Both,
            columns,
            id,
            id_strategy,
            indexes,
            cache: None,
            reads: ReadPreference::Replica,
        }
    }

    /// Caches the entity's reads as `spec` says (`#[repo(cache(..))]`).
    pub const fn with_cache(mut self, spec: crate::cache::CacheSpec) -> Self {
        self.cache = Some(spec);
        self
    }

    /// Places the table in database schema `schema`.
    pub const fn with_schema(mut self, schema: &'static str) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Stores the entity in MongoDB collection `collection` instead of one
    /// named like the table.
    pub const fn with_collection(mut self, collection: &'static str) -> Self {
        self.collection = collection;
        self
    }

    /// Restricts the entity to `backends`.
    pub const fn with_backends(mut self, backends: Backends) -> Self {
        self.backends = backends;
        self
    }

    /// Sends the entity's pool reads where `reads` says when the PostgreSQL
    /// backend has read replicas (`#[repo(reads = "primary")]`).
    pub const fn with_reads(mut self, reads: ReadPreference) -> Self {
        self.reads = reads;
        self
    }

    /// The id column.
    pub const fn id_column(&self) -> &ColumnDef {
        &self.columns[self.id]
    }

    /// The first column with `role`, if any.
    pub fn column_with_role(&self, role: ColumnRole) -> Option<(usize, &ColumnDef)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.role == role)
    }

    /// The column of field `field`.
    pub fn column_of_field(&self, field: &str) -> Option<(usize, &ColumnDef)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.field == field)
    }

    /// The columns declared `#[repo(references(..))]`, with their references.
    pub fn references(&self) -> impl Iterator<Item = (&ColumnDef, Reference)> + '_ {
        self.columns
            .iter()
            .filter_map(|c| c.references.map(|r| (c, r)))
    }

    /// The referencing column whose foreign key is named `constraint`
    /// (see [`foreign_key_name`]).
    pub fn reference_of_constraint(&self, constraint: &str) -> Option<(&ColumnDef, Reference)> {
        self.references()
            .find(|(c, _)| foreign_key_name(self.table, c.name) == constraint)
    }

    /// The `#[repo(ttl = "..")]` column and its lifetime in seconds, if any.
    pub fn ttl_column(&self) -> Option<(usize, &ColumnDef, u64)> {
        self.columns
            .iter()
            .enumerate()
            .find_map(|(i, c)| c.ttl_seconds.map(|ttl| (i, c, ttl)))
    }

    /// The `#[repo(full_text)]` columns, in declaration order.
    pub fn full_text_columns(&self) -> impl Iterator<Item = &ColumnDef> + '_ {
        self.columns.iter().filter(|c| c.full_text.is_some())
    }

    /// The `#[repo(soft_delete)]` column, if rows are soft-deleted.
    pub fn soft_delete_column(&self) -> Option<(usize, &ColumnDef)> {
        self.column_with_role(ColumnRole::SoftDelete)
    }

    /// The `#[repo(tenant)]` column, if rows belong to tenants.
    pub fn tenant_column(&self) -> Option<(usize, &ColumnDef)> {
        self.column_with_role(ColumnRole::Tenant)
    }

    /// The optimistic-locking column, if the entity is versioned.
    pub fn version_column(&self) -> Option<(usize, &ColumnDef)> {
        self.column_with_role(ColumnRole::Version)
    }

    /// The column a unique constraint or index named `name` covers, for
    /// naming the field in a conflict error.
    pub fn field_of_constraint(&self, name: &str) -> Option<&'static str> {
        let primary = format!("{}_pkey", self.table);
        if name == primary {
            return Some(self.id_column().field);
        }
        let index = self.indexes.iter().find(|i| i.name == name)?;
        let column = index.columns.first()?;
        self.columns
            .iter()
            .find(|c| c.name == *column)
            .map(|c| c.field)
    }
}
