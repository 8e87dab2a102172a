//! The owned, serialisable schema model migrations diff: what the entities
//! ask of Postgres, rendered once with `reposmith-postgres`'s DDL helpers so
//! the snapshot records exactly the SQL the repositories would run.
//!
//! The core's [`EntitySchema`] borrows `'static` data and knows no SQL; a
//! snapshot read back from JSON needs owned values, and a diff needs the
//! Postgres spelling of every type and default. This module is that bridge.

use reposmith_core::{
    ColumnDef, ColumnRole, ColumnType, EntitySchema, FULL_TEXT_COLUMN, IdStrategy, IndexDef,
    IndexMethod,
};
use reposmith_postgres::{
    column_type_sql, foreign_key_clause, full_text_expression, index_opclass, index_predicate,
    index_sql, quote_ident,
};
use serde::{Deserialize, Serialize};

/// The schema state a set of migrations produces: the file committed as
/// `snapshot.json` beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format of this file; bumped when the model changes incompatibly.
    pub format: u32,
    /// Tables, in registration order.
    pub tables: Vec<Table>,
}

/// The snapshot format this crate writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// One table and its indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// The Rust type the table stores.
    pub entity: String,
    /// Database schema; `None` is the connection's search path.
    pub schema: Option<String>,
    /// Table name.
    pub name: String,
    /// Columns in declaration order, the generated full-text column last.
    pub columns: Vec<Column>,
    /// Indexes besides the primary key.
    pub indexes: Vec<Index>,
    /// The condition of the row-level security policy of a tenant-scoped
    /// table (`reposmith_postgres::tenant_policy_condition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_policy: Option<String>,
    /// Foreign keys (`#[repo(references(..))]`); absent from snapshots
    /// written before relations, and from tables without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign_keys: Vec<ForeignKey>,
}

/// One foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// Constraint name (`<table>_<column>_fkey`).
    pub name: String,
    /// The referencing column.
    pub column: String,
    /// The referenced table's database schema; `None`: the search path.
    pub target_schema: Option<String>,
    /// The referenced table.
    pub target_table: String,
    /// The referenced (primary key) column.
    pub target_column: String,
    /// `CASCADE`, `RESTRICT` or `SET NULL`.
    pub on_delete: String,
    /// `FOREIGN KEY (..) REFERENCES .. ON DELETE ..`, from `reposmith-postgres`.
    pub clause: String,
}

impl ForeignKey {
    /// The referenced table, schema-qualified when it names a schema, quoted.
    pub fn target_qualified(&self) -> String {
        match &self.target_schema {
            Some(namespace) => {
                format!(
                    "{}.{}",
                    quote_ident(namespace),
                    quote_ident(&self.target_table)
                )
            }
            None => quote_ident(&self.target_table),
        }
    }

    /// `ALTER TABLE .. ADD CONSTRAINT ..`, `NOT VALID` when asked (existing
    /// rows are then checked by [`ForeignKey::validate_sql`] later, without
    /// holding the lock that blocks writes).
    pub fn add_sql(&self, table: &Table, not_valid: bool) -> String {
        let suffix = if not_valid { " NOT VALID" } else { "" };
        format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}{suffix}",
            table.qualified(),
            quote_ident(&self.name),
            self.clause
        )
    }

    /// `ALTER TABLE .. VALIDATE CONSTRAINT ..`.
    pub fn validate_sql(&self, table: &Table) -> String {
        format!(
            "ALTER TABLE {} VALIDATE CONSTRAINT {}",
            table.qualified(),
            quote_ident(&self.name)
        )
    }

    /// `ALTER TABLE .. DROP CONSTRAINT IF EXISTS ..`.
    pub fn drop_sql(&self, table: &Table) -> String {
        format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            table.qualified(),
            quote_ident(&self.name)
        )
    }

    /// A readable `column -> table(id) ON DELETE ..` for messages.
    pub fn describe(&self) -> String {
        let target = match &self.target_schema {
            Some(namespace) => format!("{namespace}.{}", self.target_table),
            None => self.target_table.clone(),
        };
        format!(
            "{} -> {target}({}) ON DELETE {}",
            self.column, self.target_column, self.on_delete
        )
    }
}

/// One column, in Postgres terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Declared type, as `reposmith-postgres` spells it (`vector(384)`, `text[]`).
    pub sql_type: String,
    /// `NULL` allowed.
    pub nullable: bool,
    /// `DEFAULT` expression, as written in the entity.
    pub default: Option<String>,
    /// `GENERATED BY DEFAULT AS IDENTITY`.
    pub identity: bool,
    /// The primary key.
    pub primary_key: bool,
    /// Allowed values of an enum column (a `CHECK (col IN (..))`).
    pub enum_values: Option<Vec<String>>,
    /// Expression of a `GENERATED ALWAYS AS (..) STORED` column (the full-text document).
    pub generated: Option<String>,
    /// The name this column had before (`#[repo(renamed_from = "...")]`).
    /// Read from the entity, never written to the snapshot: once the rename
    /// is generated the old name is history.
    #[serde(default, skip_serializing)]
    pub renamed_from: Option<String>,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Index name.
    pub name: String,
    /// Indexed columns.
    pub columns: Vec<String>,
    /// A unique index.
    pub unique: bool,
    /// Access method: `btree`, `gin`, `hnsw` or `ivfflat`.
    pub method: String,
    /// Operator class of the indexed column; `None`: the type's default.
    pub opclass: Option<String>,
    /// Storage parameters (`WITH (m = 16, ...)`), in declaration order.
    pub params: Vec<(String, u32)>,
    /// The `WHERE` of a partial index: a unique index of a soft-deleting
    /// entity covers live rows only. Absent from snapshots of full indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
    /// The `CREATE INDEX IF NOT EXISTS` statement, from `reposmith-postgres`.
    pub sql: String,
}

impl Snapshot {
    /// The model of `schemas`, in order.
    pub fn from_schemas<'a>(schemas: impl IntoIterator<Item = &'a EntitySchema>) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            tables: schemas.into_iter().map(Table::from_schema).collect(),
        }
    }

    /// The table named `name` in database schema `schema`.
    pub fn table(&self, schema: Option<&str>, name: &str) -> Option<&Table> {
        self.tables
            .iter()
            .find(|t| t.name == name && t.schema.as_deref() == schema)
    }

    /// The same model without what the snapshot file does not keep
    /// (renames), for "is the snapshot current" comparisons.
    pub fn as_stored(&self) -> Snapshot {
        let mut copy = self.clone();
        for column in copy.tables.iter_mut().flat_map(|t| t.columns.iter_mut()) {
            column.renamed_from = None;
        }
        copy
    }

    /// True when any table has a pgvector column.
    pub fn uses_vector(&self) -> bool {
        self.tables.iter().any(Table::uses_vector)
    }
}

impl Table {
    /// The model of one entity schema.
    pub fn from_schema(schema: &EntitySchema) -> Table {
        let mut columns: Vec<Column> = schema
            .columns
            .iter()
            .map(|c| Column::from_def(schema, c))
            .collect();
        if let Some(expression) = full_text_expression(schema) {
            columns.push(Column::full_text(expression));
        }
        Table {
            entity: schema.entity.to_owned(),
            schema: schema.schema.map(str::to_owned),
            name: schema.table.to_owned(),
            columns,
            indexes: schema
                .indexes
                .iter()
                .map(|i| Index::from_def(schema, i))
                .collect(),
            foreign_keys: schema
                .references()
                .map(|(column, reference)| {
                    let target = reference.target();
                    ForeignKey {
                        name: reposmith_core::foreign_key_name(schema.table, column.name),
                        column: column.name.to_owned(),
                        target_schema: target.schema.map(str::to_owned),
                        target_table: target.table.to_owned(),
                        target_column: target.id_column().name.to_owned(),
                        on_delete: reference.on_delete.sql().to_owned(),
                        clause: foreign_key_clause(column, reference),
                    }
                })
                .collect(),
            tenant_policy: reposmith_postgres::tenant_policy_condition(schema),
        }
    }

    /// Row-level security with the tenant policy, when the table has one.
    pub fn policy_sql(&self) -> Vec<String> {
        match &self.tenant_policy {
            Some(condition) => {
                reposmith_postgres::tenant_policy_statements(&self.qualified(), condition)
            }
            None => Vec::new(),
        }
    }

    /// The foreign key named `name`.
    pub fn foreign_key(&self, name: &str) -> Option<&ForeignKey> {
        self.foreign_keys.iter().find(|k| k.name == name)
    }

    /// The table, schema-qualified when it names a schema, quoted.
    pub fn qualified(&self) -> String {
        match &self.schema {
            Some(namespace) => format!("{}.{}", quote_ident(namespace), quote_ident(&self.name)),
            None => quote_ident(&self.name),
        }
    }

    /// A readable `schema.table` for messages.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(namespace) => format!("{namespace}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The index named `name`.
    pub fn index(&self, name: &str) -> Option<&Index> {
        self.indexes.iter().find(|i| i.name == name)
    }

    /// True when a column has a pgvector type or an index uses pgvector's
    /// access methods (a `bit` column is built in, its HNSW index is not).
    pub fn uses_vector(&self) -> bool {
        self.columns.iter().any(Column::is_vector)
            || self
                .indexes
                .iter()
                .any(|i| matches!(i.method.as_str(), "hnsw" | "ivfflat"))
    }

    /// `CREATE TABLE IF NOT EXISTS` with every column, as
    /// `reposmith_postgres::create_table_sql` renders it (a unit test holds
    /// the two equal); used to recreate a table from a snapshot.
    pub fn create_sql(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(Column::definition).collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    {}\n)",
            self.qualified(),
            columns.join(",\n    ")
        )
    }
}

impl Column {
    fn from_def(schema: &EntitySchema, def: &ColumnDef) -> Column {
        let identity = def.role == ColumnRole::Id && schema.id_strategy == IdStrategy::Identity;
        Column {
            name: def.name.to_owned(),
            sql_type: column_type_sql(def),
            nullable: def.nullable,
            default: def.default_sql.map(str::to_owned),
            identity,
            primary_key: def.role == ColumnRole::Id,
            enum_values: match def.ty {
                ColumnType::Enum(values) => Some(values.iter().map(|v| (*v).to_owned()).collect()),
                _ => None,
            },
            generated: None,
            renamed_from: def.renamed_from.map(str::to_owned),
        }
    }

    fn full_text(expression: String) -> Column {
        Column {
            name: FULL_TEXT_COLUMN.to_owned(),
            sql_type: "tsvector".to_owned(),
            nullable: true,
            default: None,
            identity: false,
            primary_key: false,
            enum_values: None,
            generated: Some(expression),
            renamed_from: None,
        }
    }

    /// True for pgvector's `vector`, `halfvec` and `sparsevec` (`bit` is built in).
    pub fn is_vector(&self) -> bool {
        ["vector", "halfvec", "sparsevec"]
            .iter()
            .any(|t| self.sql_type.starts_with(&format!("{t}(")) || self.sql_type == *t)
    }

    /// The column's definition inside `CREATE TABLE` or `ADD COLUMN`.
    pub fn definition(&self) -> String {
        let name = quote_ident(&self.name);
        if let Some(expression) = &self.generated {
            return format!(
                "{name} {} GENERATED ALWAYS AS ({expression}) STORED",
                self.sql_type
            );
        }
        let mut sql = format!("{name} {}", self.sql_type);
        if self.identity {
            sql.push_str(" GENERATED BY DEFAULT AS IDENTITY");
        }
        if !self.nullable {
            sql.push_str(" NOT NULL");
        }
        if let Some(default) = &self.default {
            sql.push_str(&format!(" DEFAULT {default}"));
        }
        if self.primary_key {
            sql.push_str(" PRIMARY KEY");
        }
        if let Some(check) = self.check_sql() {
            sql.push_str(&format!(" {check}"));
        }
        sql
    }

    /// `CHECK (col IN ('a', 'b'))` of an enum column.
    pub fn check_sql(&self) -> Option<String> {
        let values = self.enum_values.as_ref()?;
        let listed: Vec<String> = values
            .iter()
            .map(|v| reposmith_postgres::quote_literal(v))
            .collect();
        Some(format!(
            "CHECK ({} IN ({}))",
            quote_ident(&self.name),
            listed.join(", ")
        ))
    }
}

impl Index {
    fn from_def(schema: &EntitySchema, def: &IndexDef) -> Index {
        let (method, params) = match def.method {
            IndexMethod::Gin => ("gin", vec![]),
            IndexMethod::Hnsw { m, ef_construction } => (
                "hnsw",
                vec![
                    ("m".to_owned(), m),
                    ("ef_construction".to_owned(), ef_construction),
                ],
            ),
            IndexMethod::IvfFlat { lists } => ("ivfflat", vec![("lists".to_owned(), lists)]),
            _ => ("btree", vec![]),
        };
        Index {
            name: def.name.to_owned(),
            columns: def.columns.iter().map(|c| (*c).to_owned()).collect(),
            unique: def.unique,
            method: method.to_owned(),
            opclass: index_opclass(schema, def),
            params,
            predicate: index_predicate(schema, def),
            sql: index_sql(schema, def),
        }
    }

    /// Everything but the name and the rendered statement, for "same
    /// definition" comparisons.
    pub fn same_definition(&self, other: &Index) -> bool {
        self.columns == other.columns
            && self.unique == other.unique
            && self.method == other.method
            && self.opclass == other.opclass
            && self.predicate == other.predicate
            && self.params == other.params
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::{Distance, VectorIndex, VectorKind, VectorSpec};
    use reposmith_postgres::create_table_sql;

    use super::*;

    static STATES: [&str; 2] = ["draft", "it's live"];
    static COLUMNS: [ColumnDef; 5] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("tags", "tags", ColumnType::Array(&ColumnType::Text), true)
            .with_default("'{}'"),
        ColumnDef::new("state", "state", ColumnType::Enum(&STATES), false),
        ColumnDef::new("body", "body", ColumnType::Text, false).with_full_text("english"),
        ColumnDef::new("emb", "emb", ColumnType::Vector(VectorKind::Half), true).with_vector(
            VectorSpec::new(
                VectorKind::Half,
                3,
                Distance::L2,
                VectorIndex::IvfFlat { lists: 4 },
            ),
        ),
    ];
    static INDEXES: [IndexDef; 1] = [IndexDef::new(
        "t_emb_idx",
        &["emb"],
        false,
        IndexMethod::IvfFlat { lists: 4 },
    )];
    static SCHEMA: EntitySchema =
        EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::Identity, &INDEXES);

    /// The snapshot's CREATE TABLE (used to recreate a dropped table on
    /// revert) is byte for byte what the repositories' DDL creates.
    #[test]
    fn create_sql_matches_reposmith_postgres() {
        for schema in [SCHEMA, SCHEMA.with_schema("app")] {
            let ddl = create_table_sql(&schema);
            let table = Table::from_schema(&schema);
            assert_eq!(ddl[0], "CREATE EXTENSION IF NOT EXISTS vector");
            assert_eq!(ddl[1], table.create_sql());
            assert_eq!(ddl[2], table.indexes[0].sql);
        }
    }

    /// An `i32` or `i16` identity id is an identity column of its width in
    /// migrations too; an assigned one is a plain key.
    #[test]
    fn small_integer_ids_keep_their_width() {
        static SEAT: [ColumnDef; 1] =
            [ColumnDef::new("id", "id", ColumnType::Int, false).with_role(ColumnRole::Id)];
        static LEVEL: [ColumnDef; 1] =
            [ColumnDef::new("id", "id", ColumnType::SmallInt, false).with_role(ColumnRole::Id)];
        for (columns, strategy, definition) in [
            (
                &SEAT,
                IdStrategy::Identity,
                "\"id\" integer GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY",
            ),
            (
                &LEVEL,
                IdStrategy::Identity,
                "\"id\" smallint GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY",
            ),
            (
                &LEVEL,
                IdStrategy::Assigned,
                "\"id\" smallint NOT NULL PRIMARY KEY",
            ),
        ] {
            let schema = EntitySchema::new("T", "t", columns, 0, strategy, &[]);
            let table = Table::from_schema(&schema);
            assert_eq!(table.columns[0].definition(), definition);
            assert_eq!(create_table_sql(&schema)[0], table.create_sql());
        }
    }

    /// The snapshot keeps everything but renames through JSON.
    #[test]
    fn snapshot_round_trips_through_json() {
        let snapshot = Snapshot::from_schemas([&SCHEMA]);
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snapshot.as_stored());
    }
}
