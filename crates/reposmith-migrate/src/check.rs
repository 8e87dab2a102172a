//! `check`: the live database against the entities, from `pg_catalog`.
//!
//! Expected column types, defaults, generated expressions and `CHECK`s are
//! not compared as strings against what the entities wrote: Postgres prints
//! them back in its own normal form (`'{}'::text[]`, `timestamp with time
//! zone`). So the expected table is created as a temporary table inside a
//! transaction that is rolled back, and both are read back through the same
//! catalog query. Indexes are compared structurally: method, uniqueness, predicate,
//! columns, operator class, storage parameters, and `indisvalid` (an INVALID
//! index left by a failed `CREATE INDEX CONCURRENTLY`).

use std::collections::BTreeSet;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection as _};

use crate::apply::Connection;
use crate::error::Result;
use crate::model::{Index, Snapshot, Table};

// CHECK and PRIMARY KEY constraints are compared by definition
// (`CHECK (...)`, `PRIMARY KEY (id)`): a dropped primary key leaves the column
// NOT NULL, so only the constraint itself shows it.

/// One column as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveColumn {
    name: String,
    sql_type: String,
    not_null: bool,
    default: Option<String>,
    identity: String,
    generated: String,
}

/// One index as the catalog describes it.
#[derive(Debug, Clone)]
struct LiveIndex {
    name: String,
    unique: bool,
    valid: bool,
    method: String,
    columns: Vec<String>,
    opclasses: Vec<String>,
    default_opclass: Vec<bool>,
    options: Vec<String>,
    predicate: Option<String>,
}

const COLUMNS: &str = "\
SELECT a.attname::text AS name, format_type(a.atttypid, a.atttypmod) AS sql_type, \
       a.attnotnull AS not_null, pg_get_expr(d.adbin, d.adrelid) AS default, \
       a.attidentity::text AS identity, a.attgenerated::text AS generated \
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";

const CHECKS: &str = "\
SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = $1 AND contype IN ('c', 'p')";

/// Foreign keys: name, referencing column, referenced table, referenced
/// column, `ON DELETE` action code and whether the key is validated.
const FOREIGN_KEYS: &str = "\
SELECT c.conname::text, a.attname::text, c.confrelid, f.attname::text, c.confdeltype::text, \
       c.convalidated \
FROM pg_constraint c \
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
JOIN pg_attribute f ON f.attrelid = c.confrelid AND f.attnum = c.confkey[1] \
WHERE c.conrelid = $1 AND c.contype = 'f' AND cardinality(c.conkey) = 1 ORDER BY 1";

const INDEXES: &str = "\
SELECT i.relname::text AS name, ix.indisunique AS unique, ix.indisvalid AS valid, \
       am.amname::text AS method, \
       array(SELECT a.attname::text FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(n, o) \
             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n ORDER BY k.o) AS columns, \
       array(SELECT c.opcname::text FROM unnest(ix.indclass::oid[]) WITH ORDINALITY k(c, o) \
             JOIN pg_opclass c ON c.oid = k.c ORDER BY k.o) AS opclasses, \
       array(SELECT c.opcdefault FROM unnest(ix.indclass::oid[]) WITH ORDINALITY k(c, o) \
             JOIN pg_opclass c ON c.oid = k.c ORDER BY k.o) AS default_opclass, \
       coalesce(i.reloptions, '{}')::text[] AS options, \
       pg_get_expr(ix.indpred, ix.indrelid) AS predicate \
FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_am am ON am.oid = i.relam \
WHERE ix.indrelid = $1 AND NOT ix.indisprimary ORDER BY 1";

/// Every difference between the live database and `expected`, one readable
/// line each; empty when there is no drift.
pub async fn drift(db: &Connection, expected: &Snapshot) -> Result<Vec<String>> {
    let mut conn = db.connect().await?;
    let mut problems = Vec::new();
    for table in &expected.tables {
        problems.extend(table_drift(&mut conn, table).await?);
    }
    conn.close().await?;
    Ok(problems)
}

async fn table_drift(conn: &mut PgConnection, table: &Table) -> Result<Vec<String>> {
    let name = table.display_name();
    let Some(oid) = relation(conn, &table.qualified()).await? else {
        return Ok(vec![format!("table {name}: missing")]);
    };
    let live = columns(conn, oid).await?;
    let (want, want_checks) = expected_columns(conn, table).await?;
    let mut problems = compare_columns(&name, &want, &live);
    let live_checks = checks(conn, oid).await?;
    for check in want_checks.difference(&live_checks) {
        problems.push(format!("table {name}: missing constraint {check}"));
    }
    for check in live_checks.difference(&want_checks) {
        problems.push(format!("table {name}: extra constraint {check}"));
    }
    type Row = (
        String,
        bool,
        bool,
        String,
        Vec<String>,
        Vec<String>,
        Vec<bool>,
        Vec<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(INDEXES)
        .bind(oid)
        .fetch_all(&mut *conn)
        .await?;
    let indexes: Vec<LiveIndex> = rows
        .into_iter()
        .map(|r| LiveIndex {
            name: r.0,
            unique: r.1,
            valid: r.2,
            method: r.3,
            columns: r.4,
            opclasses: r.5,
            default_opclass: r.6,
            options: r.7,
            predicate: r.8,
        })
        .collect();
    problems.extend(compare_indexes(&name, &table.indexes, &indexes));
    problems.extend(policy_drift(conn, table, oid).await?);
    problems.extend(foreign_key_drift(conn, table, oid).await?);
    Ok(problems)
}

/// Missing, different, unvalidated and extra foreign keys of `table`.
async fn foreign_key_drift(
    conn: &mut PgConnection,
    table: &Table,
    oid: sqlx::postgres::types::Oid,
) -> Result<Vec<String>> {
    type Row = (
        String,
        String,
        sqlx::postgres::types::Oid,
        String,
        String,
        bool,
    );
    let live: Vec<Row> = sqlx::query_as(FOREIGN_KEYS)
        .bind(oid)
        .fetch_all(&mut *conn)
        .await?;
    let name = table.display_name();
    let mut problems = Vec::new();
    for key in &table.foreign_keys {
        let Some(found) = live.iter().find(|r| r.0 == key.name) else {
            problems.push(format!(
                "table {name}: missing foreign key {} ({})",
                key.name,
                key.describe()
            ));
            continue;
        };
        let target = relation(conn, &key.target_qualified()).await?;
        let action = match found.4.as_str() {
            "c" => "CASCADE",
            "r" => "RESTRICT",
            "n" => "SET NULL",
            "d" => "SET DEFAULT",
            _ => "NO ACTION",
        };
        let same = found.1 == key.column
            && Some(found.2) == target
            && found.3 == key.target_column
            && action == key.on_delete;
        if !same {
            problems.push(format!(
                "table {name}: foreign key {} is {} -> table oid {}({}) ON DELETE {action}, \
                 expected {}",
                key.name,
                found.1,
                found.2.0,
                found.3,
                key.describe()
            ));
        } else if !found.5 {
            problems.push(format!(
                "table {name}: foreign key {} is NOT VALID: run its VALIDATE CONSTRAINT migration",
                key.name
            ));
        }
    }
    for extra in live.iter().filter(|r| table.foreign_key(&r.0).is_none()) {
        problems.push(format!(
            "table {name}: extra foreign key {} on {}",
            extra.0, extra.1
        ));
    }
    Ok(problems)
}

/// Whether row-level security is on and the table's tenant policy is live,
/// on the column and setting the entity names, with `USING` and
/// `WITH CHECK` alike; a policy where none is declared is reported too.
async fn policy_drift(
    conn: &mut PgConnection,
    table: &Table,
    oid: sqlx::postgres::types::Oid,
) -> Result<Vec<String>> {
    let name = table.display_name();
    let (enabled,): (bool,) = sqlx::query_as("SELECT relrowsecurity FROM pg_class WHERE oid = $1")
        .bind(oid)
        .fetch_one(&mut *conn)
        .await?;
    let live: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) \
         FROM pg_policy WHERE polrelid = $1 AND polname = $2",
    )
    .bind(oid)
    .bind(reposmith_postgres::TENANT_POLICY)
    .fetch_optional(&mut *conn)
    .await?;
    let policy = reposmith_postgres::TENANT_POLICY;
    let mut problems = Vec::new();
    match (&table.tenant_policy, live) {
        (None, None) => {}
        (None, Some(_)) => problems.push(format!("table {name}: extra policy {policy}")),
        (Some(_), None) => problems.push(format!("table {name}: missing policy {policy}")),
        (Some(_), Some((using, check))) => {
            let column = table_tenant_column(table);
            let names = |e: &Option<String>| {
                e.as_deref().is_some_and(|e| {
                    e.contains(reposmith_postgres::TENANT_SETTING) && e.contains(&column)
                })
            };
            if !names(&using) || using != check {
                problems.push(format!(
                    "table {name}: policy {policy} differs (USING {}, WITH CHECK {})",
                    using.unwrap_or_default(),
                    check.unwrap_or_default()
                ));
            }
        }
    }
    if table.tenant_policy.is_some() && !enabled {
        problems.push(format!("table {name}: row level security is not enabled"));
    }
    Ok(problems)
}

/// The tenant column a table's policy compares, as its condition starts.
fn table_tenant_column(table: &Table) -> String {
    let condition = table.tenant_policy.as_deref().unwrap_or_default();
    let quoted = condition.split(" = ").next().unwrap_or_default();
    quoted.trim_matches('"').replace("\"\"", "\"")
}

async fn relation(
    conn: &mut PgConnection,
    qualified: &str,
) -> Result<Option<sqlx::postgres::types::Oid>> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1)::oid")
        .bind(qualified)
        .fetch_one(&mut *conn)
        .await?)
}

async fn columns(
    conn: &mut PgConnection,
    oid: sqlx::postgres::types::Oid,
) -> Result<Vec<LiveColumn>> {
    type Row = (String, String, bool, Option<String>, String, String);
    let rows: Vec<Row> = sqlx::query_as(COLUMNS)
        .bind(oid)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| LiveColumn {
            name: r.0,
            sql_type: r.1,
            not_null: r.2,
            default: r.3,
            identity: r.4,
            generated: r.5,
        })
        .collect())
}

async fn checks(
    conn: &mut PgConnection,
    oid: sqlx::postgres::types::Oid,
) -> Result<BTreeSet<String>> {
    let rows: Vec<String> = sqlx::query_scalar(CHECKS)
        .bind(oid)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The entity's columns and `CHECK`s as Postgres normalises them: created as
/// a temporary table of the same name in a transaction that is rolled back.
async fn expected_columns(
    conn: &mut PgConnection,
    table: &Table,
) -> Result<(Vec<LiveColumn>, BTreeSet<String>)> {
    let mut tx = conn.begin().await?;
    let definitions: Vec<String> = table.columns.iter().map(|c| c.definition()).collect();
    let temp = format!("pg_temp.{}", reposmith_postgres::quote_ident(&table.name));
    let sql = format!("CREATE TEMP TABLE {temp} ({})", definitions.join(", "));
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    let oid = relation(&mut tx, &temp)
        .await?
        .expect("the temporary table was just created");
    let want = columns(&mut tx, oid).await?;
    let checks = checks(&mut tx, oid).await?;
    tx.rollback().await?;
    Ok((want, checks))
}

fn compare_columns(table: &str, want: &[LiveColumn], live: &[LiveColumn]) -> Vec<String> {
    let mut problems = Vec::new();
    for column in want {
        let Some(found) = live.iter().find(|c| c.name == column.name) else {
            problems.push(format!(
                "table {table}: missing column {} {}",
                column.name, column.sql_type
            ));
            continue;
        };
        let mut differ = |what: &str, live: String, want: String| {
            if live != want {
                problems.push(format!(
                    "table {table}: column {} has {what} {live}, the entity wants {want}",
                    column.name
                ));
            }
        };
        differ("type", found.sql_type.clone(), column.sql_type.clone());
        let nullability = |c: &LiveColumn| if c.not_null { "NOT NULL" } else { "NULL" }.to_owned();
        differ("nullability", nullability(found), nullability(column));
        let default = |c: &LiveColumn| c.default.clone().unwrap_or_else(|| "no default".to_owned());
        differ("default", default(found), default(column));
        differ("identity", found.identity.clone(), column.identity.clone());
        differ(
            "generated kind",
            found.generated.clone(),
            column.generated.clone(),
        );
    }
    for column in live {
        if !want.iter().any(|c| c.name == column.name) {
            problems.push(format!(
                "table {table}: extra column {} {}",
                column.name, column.sql_type
            ));
        }
    }
    problems
}

fn compare_indexes(table: &str, want: &[Index], live: &[LiveIndex]) -> Vec<String> {
    let mut problems = Vec::new();
    for index in want {
        let Some(found) = live.iter().find(|i| i.name == index.name) else {
            problems.push(format!("table {table}: missing index {}", index.name));
            continue;
        };
        if !found.valid {
            problems.push(format!(
                "table {table}: index {} is INVALID (a failed CREATE INDEX CONCURRENTLY?): \
                 DROP INDEX CONCURRENTLY it and apply again",
                index.name
            ));
        }
        let shown = describe_live(found, index.opclass.is_some());
        let wanted = describe_model(index);
        if shown != wanted {
            problems.push(format!(
                "table {table}: index {} is {shown}, the entity wants {wanted}",
                index.name
            ));
        }
    }
    for index in live {
        if !want.iter().any(|i| i.name == index.name) {
            problems.push(format!(
                "table {table}: extra index {} ({})",
                index.name,
                describe_live(index, false)
            ));
        }
    }
    problems
}

/// `UNIQUE btree (a, b)` / `hnsw (embedding vector_cosine_ops) WITH (ef_construction=64, m=16)`.
fn describe(
    unique: bool,
    method: &str,
    columns: &[String],
    opclass: Option<&str>,
    params: &BTreeSet<String>,
    predicate: Option<&str>,
) -> String {
    let unique = if unique { "UNIQUE " } else { "" };
    let opclass = opclass.map(|o| format!(" {o}")).unwrap_or_default();
    let columns: Vec<String> = columns.iter().map(|c| format!("{c}{opclass}")).collect();
    let with = if params.is_empty() {
        String::new()
    } else {
        format!(
            " WITH ({})",
            params.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    // Compared without quotes and parentheses: the catalog deparses
    // `"deleted_at" IS NULL` as `(deleted_at IS NULL)`.
    let predicate = predicate
        .map(|p| format!(" WHERE {}", p.replace(['"', '(', ')'], "")))
        .unwrap_or_default();
    format!("{unique}{method} ({}){with}{predicate}", columns.join(", "))
}

/// The live index; its operator class is shown when the entity names one
/// or when it is not the type's default (what an index without one gets).
fn describe_live(index: &LiveIndex, named: bool) -> String {
    let opclass = index
        .opclasses
        .iter()
        .zip(&index.default_opclass)
        .find(|(_, default)| named || !**default)
        .map(|(name, _)| name.as_str());
    let params = index.options.iter().cloned().collect();
    describe(
        index.unique,
        &index.method,
        &index.columns,
        opclass,
        &params,
        index.predicate.as_deref(),
    )
}

fn describe_model(index: &Index) -> String {
    let params = index
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    describe(
        index.unique,
        &index.method,
        &index.columns,
        index.opclass.as_deref(),
        &params,
        index.predicate.as_deref(),
    )
}
