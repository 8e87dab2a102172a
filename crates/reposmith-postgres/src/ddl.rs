//! DDL from an entity schema: `CREATE TABLE` and `CREATE INDEX`, the
//! statements tests and the quickstart run now and migrations diff later.
//!
//! Identifiers come from the schema and are quoted like Postgres'
//! `quote_ident`; the only SQL text from elsewhere is a column's
//! `default_sql`, which the user wrote in their source code.

use reposmith_core::{
    ColumnDef, ColumnRole, ColumnType, Distance, EntitySchema, FULL_TEXT_COLUMN, IdStrategy,
    IndexDef, IndexMethod, PostgresEntity, Reference, Result, VectorKind, foreign_key_name,
};
use sqlx::AssertSqlSafe;

use crate::PgBackend;

/// `CREATE TABLE IF NOT EXISTS` then one `CREATE [UNIQUE] INDEX IF NOT EXISTS`
/// per index. Unique constraints are the named unique indexes, so a 23505
/// names an index that [`EntitySchema::field_of_constraint`] maps to a field.
///
/// An entity with vector columns starts with `CREATE EXTENSION IF NOT EXISTS
/// vector`; one with `#[repo(full_text)]` columns gets the generated
/// [`FULL_TEXT_COLUMN`] and its GIN index.
pub fn create_table_sql(schema: &EntitySchema) -> Vec<String> {
    let table = table_name(schema);
    let mut columns: Vec<String> = schema
        .columns
        .iter()
        .map(|c| column_sql(schema, c))
        .collect();
    columns.extend(full_text_column_sql(schema));
    let mut statements = Vec::new();
    if schema.columns.iter().any(|c| c.vector.is_some()) {
        statements.push("CREATE EXTENSION IF NOT EXISTS vector".to_owned());
    }
    statements.push(format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n    {}\n)",
        columns.join(",\n    ")
    ));
    statements.extend(schema.indexes.iter().map(|index| index_sql(schema, index)));
    statements.extend(tenant_policy_sql(schema));
    statements
}

/// The PostgreSQL setting that carries a session's or a transaction's
/// tenant to the row-level security policy.
pub const TENANT_SETTING: &str = "reposmith.tenant";

/// The name of the row-level security policy of a tenant-scoped table.
pub const TENANT_POLICY: &str = "reposmith_tenant";

/// The condition of a tenant-scoped table's policy: the `#[repo(tenant)]`
/// column equals the `reposmith.tenant` setting cast to the column's type.
/// An unset setting (never set: NULL; set then reset: `''`) becomes NULL,
/// so the comparison is never true: no rows, and never a cast error.
/// `None` for an entity without a tenant column.
pub fn tenant_policy_condition(schema: &EntitySchema) -> Option<String> {
    let (_, column) = schema.tenant_column()?;
    Some(format!(
        "{} = NULLIF(current_setting({}, true), '')::{}",
        quote_ident(column.name),
        quote_literal(TENANT_SETTING),
        sql_type(&column.ty),
    ))
}

/// Row-level security of a `#[repo(tenant)]` entity's table: `ENABLE` (not
/// `FORCE`: the table's owner, the migration role, bypasses it) and the
/// policy [`TENANT_POLICY`] whose `USING` and `WITH CHECK` are
/// [`tenant_policy_condition`]. Empty for an entity without a tenant column.
pub fn tenant_policy_sql(schema: &EntitySchema) -> Vec<String> {
    match tenant_policy_condition(schema) {
        Some(condition) => tenant_policy_statements(&table_name(schema), &condition),
        None => Vec::new(),
    }
}

/// The statements enabling row-level security on `table` (quoted, maybe
/// schema-qualified) with the tenant policy on `condition`: what
/// [`tenant_policy_sql`] and generated migrations run.
pub fn tenant_policy_statements(table: &str, condition: &str) -> Vec<String> {
    vec![
        format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        format!("DROP POLICY IF EXISTS {TENANT_POLICY} ON {table}"),
        format!(
            "CREATE POLICY {TENANT_POLICY} ON {table} USING ({condition}) WITH CHECK ({condition})"
        ),
    ]
}

/// The statements undoing [`tenant_policy_statements`] on `table`.
pub fn drop_tenant_policy_statements(table: &str) -> Vec<String> {
    vec![
        format!("DROP POLICY IF EXISTS {TENANT_POLICY} ON {table}"),
        format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"),
    ]
}

/// `CREATE [UNIQUE] INDEX IF NOT EXISTS name ON table USING method (columns [opclass]) [WITH (..)]`.
pub fn index_sql(schema: &EntitySchema, index: &IndexDef) -> String {
    let (method, with) = match index.method {
        IndexMethod::Gin => ("gin", String::new()),
        IndexMethod::Hnsw { m, ef_construction } => (
            "hnsw",
            format!(" WITH (m = {m}, ef_construction = {ef_construction})"),
        ),
        IndexMethod::IvfFlat { lists } => ("ivfflat", format!(" WITH (lists = {lists})")),
        _ => ("btree", String::new()),
    };
    let unique = if index.unique { "UNIQUE " } else { "" };
    let opclass = index_opclass(schema, index)
        .map(|o| format!(" {}", quote_ident(&o)))
        .unwrap_or_default();
    let cols: Vec<String> = index
        .columns
        .iter()
        .map(|c| format!("{}{opclass}", quote_ident(c)))
        .collect();
    let predicate = index_predicate(schema, index)
        .map(|p| format!(" WHERE {p}"))
        .unwrap_or_default();
    format!(
        "CREATE {unique}INDEX IF NOT EXISTS {} ON {} USING {method} ({}){with}{predicate}",
        quote_ident(index.name),
        table_name(schema),
        cols.join(", ")
    )
}

/// The predicate of a partial index: a unique index of an entity with
/// `#[repo(soft_delete)]` covers live rows only (`"deleted_at" IS NULL`),
/// so a new row may reuse a deleted row's key. `None` for every other index.
pub fn index_predicate(schema: &EntitySchema, index: &IndexDef) -> Option<String> {
    let (_, deleted) = schema.soft_delete_column()?;
    index
        .unique
        .then(|| format!("{} IS NULL", quote_ident(deleted.name)))
}

/// The operator class of an HNSW or IVFFlat index on one vector column,
/// from the column's type and distance (see [`vector_opclass`]); `None` for
/// every other index, which takes its type's default operator class.
pub fn index_opclass(schema: &EntitySchema, index: &IndexDef) -> Option<String> {
    if !matches!(
        index.method,
        IndexMethod::Hnsw { .. } | IndexMethod::IvfFlat { .. }
    ) {
        return None;
    }
    let [column] = index.columns else { return None };
    let spec = schema.columns.iter().find(|c| c.name == *column)?.vector?;
    Some(vector_opclass(spec.kind, spec.distance))
}

/// pgvector's operator class for `kind` compared by `distance`:
/// `<type>_<cosine|l2|ip|l1|hamming|jaccard>_ops`, such as `halfvec_cosine_ops`.
/// An index is built for one distance; a search by another cannot use it.
pub fn vector_opclass(kind: VectorKind, distance: Distance) -> String {
    let distance = match distance {
        Distance::Cosine => "cosine",
        Distance::L2 => "l2",
        Distance::InnerProduct => "ip",
        Distance::L1 => "l1",
        Distance::Hamming => "hamming",
        Distance::Jaccard => "jaccard",
        // A distance added to core later: pgvector names most classes by it.
        other => other.name(),
    };
    format!("{}_{distance}_ops", kind.sql_type())
}

/// The generated `tsvector` column over the `#[repo(full_text)]` columns,
/// weighted A, B, C, D in declaration order so a title outranks a body.
pub fn full_text_column_sql(schema: &EntitySchema) -> Option<String> {
    let expression = full_text_expression(schema)?;
    Some(format!(
        "{} tsvector GENERATED ALWAYS AS ({expression}) STORED",
        quote_ident(FULL_TEXT_COLUMN)
    ))
}

/// `setweight(to_tsvector('english'::regconfig, coalesce("title", '')), 'A') || ...`.
pub fn full_text_expression(schema: &EntitySchema) -> Option<String> {
    let parts: Vec<String> = schema
        .full_text_columns()
        .enumerate()
        .map(|(i, c)| {
            let weight = ["A", "B", "C", "D"][i.min(3)];
            format!(
                "setweight(to_tsvector({}::regconfig, coalesce({}, '')), '{weight}')",
                quote_literal(c.full_text.unwrap_or("simple")),
                quote_ident(c.name)
            )
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join(" || "))
}

/// The Postgres spelling of a column type (arrays as `t[]`, enums as `text`).
pub fn sql_type(ty: &ColumnType) -> String {
    match ty {
        ColumnType::Text | ColumnType::Enum(_) => "text".to_owned(),
        ColumnType::Bool => "boolean".to_owned(),
        ColumnType::SmallInt => "smallint".to_owned(),
        ColumnType::Int => "integer".to_owned(),
        ColumnType::BigInt => "bigint".to_owned(),
        ColumnType::Real => "real".to_owned(),
        ColumnType::Double => "double precision".to_owned(),
        ColumnType::Uuid => "uuid".to_owned(),
        ColumnType::ObjectId => "text".to_owned(),
        ColumnType::TimestampTz => "timestamptz".to_owned(),
        ColumnType::Date => "date".to_owned(),
        ColumnType::Array(inner) => format!("{}[]", sql_type(inner)),
        ColumnType::Vector(kind) => kind.sql_type().to_owned(),
        _ => "jsonb".to_owned(),
    }
}

/// One statement per `#[repo(references(..))]` column adding its foreign
/// key ([`foreign_key_clause`], named by
/// [`foreign_key_name`]) unless the table already has a constraint of that name, so it can
/// run again. Separate from [`create_table_sql`] because the referenced
/// table must exist first: [`PgBackend::create_tables_for`] creates every
/// table, then every foreign key, so entities may reference each other in
/// any order (and themselves).
pub fn foreign_key_sql(schema: &EntitySchema) -> Vec<String> {
    let table = table_name(schema);
    schema
        .references()
        .map(|(column, reference)| {
            let name = foreign_key_name(schema.table, column.name);
            format!(
                "DO $reposmith$ BEGIN\n\
                 IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = {} AND conrelid = {}::regclass) THEN\n\
                 ALTER TABLE {table} ADD CONSTRAINT {} {};\n\
                 END IF;\n\
                 END $reposmith$",
                quote_literal(&name),
                quote_literal(&table),
                quote_ident(&name),
                foreign_key_clause(column, reference),
            )
        })
        .collect()
}

/// `FOREIGN KEY ("col") REFERENCES "target" ("id") ON DELETE ACTION`.
pub fn foreign_key_clause(column: &ColumnDef, reference: Reference) -> String {
    let target = reference.target();
    format!(
        "FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {}",
        quote_ident(column.name),
        table_name(target),
        quote_ident(target.id_column().name),
        reference.on_delete.sql()
    )
}

/// The type of a column as declared: vectors carry their dimension (`vector(384)`).
pub fn column_type_sql(column: &ColumnDef) -> String {
    match (&column.ty, &column.vector) {
        (ColumnType::Vector(kind), Some(spec)) => format!("{}({})", kind.sql_type(), spec.dims),
        (ty, _) => sql_type(ty),
    }
}

fn column_sql(schema: &EntitySchema, column: &ColumnDef) -> String {
    let mut sql = format!("{} {}", quote_ident(column.name), column_type_sql(column));
    if column.role == ColumnRole::Id && schema.id_strategy == IdStrategy::Identity {
        sql.push_str(" GENERATED BY DEFAULT AS IDENTITY");
    }
    if !column.nullable {
        sql.push_str(" NOT NULL");
    }
    if let Some(default) = column.default_sql {
        sql.push_str(&format!(" DEFAULT {default}"));
    }
    if column.role == ColumnRole::Id {
        sql.push_str(" PRIMARY KEY");
    }
    if let ColumnType::Enum(variants) = column.ty {
        sql.push_str(&enum_check(column, variants));
    }
    sql
}

/// `CHECK (col IN ('a', 'b'))` for an enum column; NULL passes a CHECK by itself.
fn enum_check(column: &ColumnDef, variants: &[&str]) -> String {
    let listed: Vec<String> = variants.iter().map(|v| quote_literal(v)).collect();
    format!(
        " CHECK ({} IN ({}))",
        quote_ident(column.name),
        listed.join(", ")
    )
}

/// The table, schema-qualified when the entity names a schema.
pub fn table_name(schema: &EntitySchema) -> String {
    match schema.schema {
        Some(namespace) => format!("{}.{}", quote_ident(namespace), quote_ident(schema.table)),
        None => quote_ident(schema.table),
    }
}

/// A double-quoted identifier with inner quotes doubled, as Postgres' `quote_ident`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted literal with inner quotes doubled (enum variant names,
/// text search configuration names: both from the schema).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl PgBackend {
    /// Runs [`create_table_sql`] and [`foreign_key_sql`] for `E` in one
    /// transaction. The tables `E` references must exist already (or be
    /// `E`'s own); for entities that reference each other use
    /// [`PgBackend::create_tables_for`].
    pub async fn create_tables<E: PostgresEntity>(&self) -> Result<()> {
        self.create_schema_tables(&[E::SCHEMA]).await
    }

    /// Creates the tables of `schemas` (`&[Document::SCHEMA, Chunk::SCHEMA]`)
    /// in one transaction: every table and index first, then every foreign
    /// key, so the order of `schemas` does not matter. Idempotent.
    pub async fn create_tables_for(&self, schemas: &[&EntitySchema]) -> Result<()> {
        self.create_schema_tables(schemas).await
    }

    /// Creates the transactional outbox's tables (the outbox and the job
    /// receipts), for applications and tests that create tables without
    /// migrations; with migrations, register them with `Schemas::with_outbox`.
    pub async fn create_outbox_tables(&self) -> Result<()> {
        use reposmith_core::outbox::{RECEIPTS_SCHEMA, SCHEMA};
        self.create_schema_tables(&[&SCHEMA, &RECEIPTS_SCHEMA])
            .await
    }

    /// Whether the outbox table exists (in the connection's search path).
    pub async fn has_outbox_tables(&self) -> Result<bool> {
        self.on_pool(|held| Box::pin(crate::cache::outbox_table_exists(held)))
            .await
    }

    /// Runs [`create_table_sql`] for `schemas` in one transaction.
    async fn create_schema_tables(&self, schemas: &[&EntitySchema]) -> Result<()> {
        let unit = self.begin().await?;
        {
            let mut connection = unit.connection().await?;
            let tables = schemas.iter().flat_map(|schema| create_table_sql(schema));
            let keys = schemas.iter().flat_map(|schema| foreign_key_sql(schema));
            for sql in tables.chain(keys) {
                // Safe: identifiers from the schema, quoted; defaults are the user's source code.
                sqlx::raw_sql(AssertSqlSafe(sql))
                    .execute(&mut *connection)
                    .await
                    .map_err(|e| self.map_error(e))?;
            }
        }
        unit.commit().await?;
        // The DDL may have created pgvector just now.
        self.refresh_iterative_scan().await
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::IndexDef;

    use super::*;

    static STATES: [&str; 2] = ["draft", "it's live"];
    static COLUMNS: [ColumnDef; 4] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("name", "na\"me", ColumnType::Text, false).with_unique(),
        ColumnDef::new("tags", "tags", ColumnType::Array(&ColumnType::Text), true)
            .with_default("'{}'"),
        ColumnDef::new("state", "state", ColumnType::Enum(&STATES), false),
    ];
    static INDEXES: [IndexDef; 1] = [IndexDef::new(
        "t_name_key",
        &["na\"me"],
        true,
        IndexMethod::BTree,
    )];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::Identity, &INDEXES);

    #[test]
    fn small_integer_ids_are_identities_of_their_width_unless_assigned() {
        static SEAT: [ColumnDef; 1] =
            [ColumnDef::new("id", "id", ColumnType::Int, false).with_role(ColumnRole::Id)];
        static LEVEL: [ColumnDef; 1] =
            [
                ColumnDef::new("level", "level", ColumnType::SmallInt, false)
                    .with_role(ColumnRole::Id),
            ];
        let seats = EntitySchema::new("Seat", "seats", &SEAT, 0, IdStrategy::Identity, &[]);
        let flags = EntitySchema::new("Flag", "flags", &LEVEL, 0, IdStrategy::Identity, &[]);
        let levels = EntitySchema::new("Level", "levels", &LEVEL, 0, IdStrategy::Assigned, &[]);
        assert_eq!(
            create_table_sql(&seats)[0],
            "CREATE TABLE IF NOT EXISTS \"seats\" (\n    \
             \"id\" integer GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY\n)"
        );
        assert_eq!(
            create_table_sql(&flags)[0],
            "CREATE TABLE IF NOT EXISTS \"flags\" (\n    \
             \"level\" smallint GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY\n)"
        );
        assert_eq!(
            create_table_sql(&levels)[0],
            "CREATE TABLE IF NOT EXISTS \"levels\" (\n    \"level\" smallint NOT NULL PRIMARY KEY\n)"
        );
    }

    #[test]
    fn vector_indexes_take_the_operator_class_of_their_type_and_distance() {
        use reposmith_core::{VectorIndex, VectorSpec};

        static VECTORS: [ColumnDef; 2] = [
            ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
            ColumnDef::new("e", "e", ColumnType::Vector(VectorKind::Half), false).with_vector(
                VectorSpec::new(
                    VectorKind::Half,
                    3,
                    Distance::InnerProduct,
                    VectorIndex::IvfFlat { lists: 4 },
                ),
            ),
        ];
        static VECTOR_INDEXES: [IndexDef; 2] = [
            IndexDef::new("v_e_idx", &["e"], false, IndexMethod::IvfFlat { lists: 4 }),
            IndexDef::new("v_id_idx", &["id"], false, IndexMethod::BTree),
        ];
        let schema =
            EntitySchema::new("V", "v", &VECTORS, 0, IdStrategy::Identity, &VECTOR_INDEXES);
        assert_eq!(
            index_sql(&schema, &VECTOR_INDEXES[0]),
            "CREATE INDEX IF NOT EXISTS \"v_e_idx\" ON \"v\" USING ivfflat (\"e\" \"halfvec_ip_ops\") \
             WITH (lists = 4)"
        );
        assert_eq!(index_opclass(&schema, &VECTOR_INDEXES[1]), None);
        assert_eq!(
            vector_opclass(VectorKind::Bit, Distance::Jaccard),
            "bit_jaccard_ops"
        );
        assert_eq!(
            vector_opclass(VectorKind::Dense, Distance::Cosine),
            "vector_cosine_ops"
        );
    }

    #[test]
    fn renders_types_identity_defaults_checks_and_indexes() {
        let sql = create_table_sql(&SCHEMA.with_schema("app"));
        assert_eq!(
            sql[0],
            "CREATE TABLE IF NOT EXISTS \"app\".\"t\" (\n    \
             \"id\" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY,\n    \
             \"na\"\"me\" text NOT NULL,\n    \
             \"tags\" text[] DEFAULT '{}',\n    \
             \"state\" text NOT NULL CHECK (\"state\" IN ('draft', 'it''s live'))\n)"
        );
        assert_eq!(
            sql[1],
            "CREATE UNIQUE INDEX IF NOT EXISTS \"t_name_key\" ON \"app\".\"t\" USING btree (\"na\"\"me\")"
        );
    }

    fn tree() -> &'static EntitySchema {
        &TREE
    }

    static TREE_COLUMNS: [ColumnDef; 2] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("parent_id", "parent", ColumnType::BigInt, true)
            .with_references(Reference::new(tree, reposmith_core::OnDelete::SetNull)),
    ];
    static TREE: EntitySchema = EntitySchema::new(
        "Node",
        "no\"des",
        &TREE_COLUMNS,
        0,
        IdStrategy::Identity,
        &[],
    );

    /// A self reference: the key is named like PostgreSQL's default,
    /// quoted, idempotent, and absent from `create_table_sql` (it runs
    /// after every table exists).
    #[test]
    fn renders_foreign_keys_after_tables() {
        assert!(
            create_table_sql(&TREE)
                .iter()
                .all(|s| !s.contains("FOREIGN KEY"))
        );
        assert_eq!(
            foreign_key_clause(&TREE_COLUMNS[1], TREE_COLUMNS[1].references.unwrap()),
            "FOREIGN KEY (\"parent\") REFERENCES \"no\"\"des\" (\"id\") ON DELETE SET NULL"
        );
        let sql = foreign_key_sql(&TREE.with_schema("app"));
        assert_eq!(sql.len(), 1);
        assert!(
            sql[0].contains(
                "WHERE conname = 'no\"des_parent_fkey' AND conrelid = '\"app\".\"no\"\"des\"'::regclass"
            ),
            "{}",
            sql[0]
        );
        assert!(
            sql[0].contains(
                "ALTER TABLE \"app\".\"no\"\"des\" ADD CONSTRAINT \"no\"\"des_parent_fkey\""
            ),
            "{}",
            sql[0]
        );
    }
}
