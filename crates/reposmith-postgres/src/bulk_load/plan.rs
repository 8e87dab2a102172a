//! What a bulk load works with: the table's vector indexes as the catalog
//! has them, the rows already stored, the size of the vectors being loaded,
//! and the `maintenance_work_mem` each build gets.

use reposmith_core::{Entity, EntitySchema, Error, Result, Value};
use sqlx::PgConnection;

use crate::ddl::table_name;
use crate::embed::Fills;
use crate::validate::check_row;
use crate::write::stamp_new;

use super::{MIB, Memory};

/// Index access methods a bulk load builds after the rows: pgvector's.
const VECTOR_METHODS: &str = "'hnsw', 'ivfflat'";

/// One vector index of the table, as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct VectorIndex {
    /// Its name (`pg_class.relname`).
    pub(crate) name: String,
    /// Its name as a DDL target (`indexrelid::regclass::text`: quoted and
    /// schema-qualified as the search path needs).
    pub(crate) target: String,
    /// `pg_get_indexdef`: the `CREATE INDEX` that recreates it exactly.
    pub(crate) definition: String,
    /// `hnsw` or `ivfflat`.
    pub(crate) method: String,
    /// `pg_index.indisvalid`: searches can use it.
    pub(crate) valid: bool,
    /// The indexed column; `None` for an expression.
    pub(crate) column: Option<String>,
    /// Storage parameters such as `m=16`.
    pub(crate) options: Vec<String>,
}

impl VectorIndex {
    /// An INVALID index left by an interrupted `REINDEX ... CONCURRENTLY`
    /// (Postgres names the copies `<index>_ccnew[N]` and `<index>_ccold[N]`).
    pub(crate) fn is_leftover(&self) -> bool {
        !self.valid && is_leftover_name(&self.name)
    }

    fn option(&self, name: &str, default: u64) -> u64 {
        self.options
            .iter()
            .filter_map(|o| o.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(default)
    }
}

/// `idx_ccnew`, `idx_ccnew3`, `idx_ccold`: the names `REINDEX CONCURRENTLY` gives its copies.
pub(crate) fn is_leftover_name(name: &str) -> bool {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    stem.ends_with("_ccnew") || stem.ends_with("_ccold")
}

/// The table's pgvector indexes, by name.
pub(crate) async fn vector_indexes(
    connection: &mut PgConnection,
    schema: &EntitySchema,
) -> sqlx::Result<Vec<VectorIndex>> {
    let sql = format!(
        "SELECT c.relname::text, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), \
                am.amname::text, i.indisvalid, \
                (SELECT a.attname::text FROM pg_attribute a \
                  WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0] AND i.indkey[0] <> 0), \
                coalesce(c.reloptions, '{{}}')::text[] \
         FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_am am ON am.oid = c.relam \
         WHERE i.indrelid = $1::regclass AND am.amname IN ({VECTOR_METHODS}) \
         ORDER BY c.relname"
    );
    type Row = (
        String,
        String,
        String,
        String,
        bool,
        Option<String>,
        Vec<String>,
    );
    // Safe: a constant list of method names; the table is bound.
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(table_name(schema))
        .fetch_all(connection)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, target, definition, method, valid, column, options)| VectorIndex {
                name,
                target,
                definition,
                method,
                valid,
                column,
                options,
            },
        )
        .collect())
}

/// Every INVALID index of the table, of any method: (name, DDL target).
pub(crate) async fn invalid_indexes(
    connection: &mut PgConnection,
    schema: &EntitySchema,
) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT c.relname::text, i.indexrelid::regclass::text \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = $1::regclass AND NOT i.indisvalid ORDER BY c.relname",
    )
    .bind(table_name(schema))
    .fetch_all(connection)
    .await
}

/// Rows stored now (exact).
pub(crate) async fn count_rows(
    connection: &mut PgConnection,
    schema: &EntitySchema,
) -> sqlx::Result<u64> {
    let sql = format!("SELECT count(*) FROM {}", table_name(schema));
    // Safe: the table name from the schema, quoted.
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(connection)
        .await?;
    Ok(n.max(0) as u64)
}

/// True when the table holds no row.
pub(crate) async fn is_empty(
    connection: &mut PgConnection,
    schema: &EntitySchema,
) -> sqlx::Result<bool> {
    let sql = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", table_name(schema));
    // Safe: the table name from the schema, quoted.
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(connection)
        .await
}

/// The server's `maintenance_work_mem`, in bytes.
pub(crate) async fn server_memory(connection: &mut PgConnection) -> sqlx::Result<u64> {
    let kb: i64 = sqlx::query_scalar(
        "SELECT setting::int8 FROM pg_settings WHERE name = 'maintenance_work_mem'",
    )
    .fetch_one(connection)
    .await?;
    Ok(kb.max(0) as u64 * 1024)
}

/// Average stored size of the values being loaded, per vector column.
#[derive(Debug, Clone, Default)]
pub(crate) struct VectorSizes {
    /// (column name, average bytes as Postgres holds the value in memory).
    columns: Vec<(&'static str, u64)>,
}

impl VectorSizes {
    /// Bytes one value of the index's column takes in a build: the loaded
    /// rows' average, else the largest vector column's (an expression index).
    pub(crate) fn of(&self, index: &VectorIndex) -> u64 {
        let found = index
            .column
            .as_deref()
            .and_then(|c| self.columns.iter().find(|(name, _)| *name == c));
        match found {
            Some((_, bytes)) => *bytes,
            None => self.columns.iter().map(|(_, b)| *b).max().unwrap_or(0),
        }
    }
}

/// Checks every row exactly as `COPY` will (stamped, embeddings filled,
/// NUL and vector checks, and the bind cap `limit` on the row's `columns`),
/// before anything is sent, naming the row of the first bad one; and
/// measures the vectors for sizing the builds.
pub(crate) fn check_rows<E: Entity>(
    rows: &[E],
    fills: &Fills,
    columns: &[usize],
    (limit, clock): (usize, &reposmith_core::Clock),
) -> Result<VectorSizes> {
    let schema = E::SCHEMA;
    let vectors: Vec<usize> = (0..schema.columns.len())
        .filter(|&i| schema.columns[i].vector.is_some())
        .collect();
    let mut totals = vec![(0u64, 0u64); vectors.len()];
    for (i, entity) in rows.iter().enumerate() {
        let row = || -> Result<Vec<Value>> {
            let mut values = entity.to_values()?;
            stamp_new(schema, &mut values, clock);
            fills.apply(i, &mut values);
            check_row(schema, &values)?;
            check_row_size(schema, &values, columns, limit)?;
            Ok(values)
        };
        let values = row().map_err(|e| e.at_row(i, rows.len()))?;
        for (slot, &column) in totals.iter_mut().zip(&vectors) {
            if let Some(bytes) = stored_size(&values[column]) {
                slot.0 += bytes;
                slot.1 += 1;
            }
        }
    }
    let columns = vectors
        .iter()
        .zip(totals)
        .map(|(&c, (bytes, n))| (schema.columns[c].name, bytes / n.max(1)))
        .collect();
    Ok(VectorSizes { columns })
}

/// Refuses a row whose `columns` bind more than `limit` bytes, naming its largest field.
fn check_row_size(
    schema: &EntitySchema,
    values: &[Value],
    columns: &[usize],
    limit: usize,
) -> Result<()> {
    let sizes = columns.iter().map(|&c| {
        (
            c,
            crate::bind::value_bound_size(&values[c], &schema.columns[c].ty),
        )
    });
    let size: usize = sizes.clone().map(|(_, n)| n).sum();
    if size <= limit {
        return Ok(());
    }
    let (largest, bytes) = sizes.max_by_key(|&(_, n)| n).unwrap_or((schema.id, 0));
    Err(Error::TooLarge {
        what: format!(
            "a {} row's values in COPY (the largest, `{}`, takes {bytes} bytes)",
            schema.entity, schema.columns[largest].field
        ),
        size,
        limit,
    })
}

/// The in-memory (varlena) size of a pgvector value: a 4-byte header, the
/// type's own header, then the elements.
fn stored_size(value: &Value) -> Option<u64> {
    let bytes = match value {
        Value::Vector(v) => 8 + 4 * v.as_slice().len(),
        Value::HalfVector(v) => 8 + 2 * v.as_slice().len(),
        Value::SparseVector(v) => 16 + 8 * v.indices().len(),
        Value::Bit(v) => 8 + v.len().div_ceil(8),
        _ => return None,
    };
    Some(bytes as u64)
}

/// Fixed room for a build beyond its graph: pgvector's own structures, the
/// 3 MiB it leaves for other objects and the 1 MiB margin of a parallel build.
const BUILD_BASE: u64 = 8 * MIB;
/// Headroom over the estimate (allocator overhead, level draws above average).
const HEADROOM: f64 = 1.15;

/// Bytes of `maintenance_work_mem` for `index` to be built over `rows` rows
/// of `value_bytes` each entirely in memory (pgvector's fast path).
///
/// HNSW keeps every element in memory while building: the value, a
/// 128-byte element header, and its neighbour lists: `2m` candidates of 16
/// bytes at layer 0 and `m` on each upper layer (1/(m-1) of them on average).
/// Measured against pgvector 0.8.5's notice: 2,251 bytes per 768-dimension
/// halfvec row at m = 16 (the graph stopped fitting in 64 MB after 29,807
/// rows); this formula gives 2,282 before headroom.
/// IVFFlat keeps only its k-means sample: `max(10,000, 50 * lists)` rows,
/// converted to single precision.
pub(crate) fn graph_bytes(index: &VectorIndex, rows: u64, value_bytes: u64) -> u64 {
    let per_row = match index.method.as_str() {
        "hnsw" => {
            let m = index.option("m", 16).clamp(2, 100) as f64;
            let upper_layers = 1.0 / (m - 1.0);
            let layer0 = 8.0 + 2.0 * m * 16.0;
            let upper = upper_layers * (8.0 + m * 16.0);
            let pointers = 8.0 * (1.0 + upper_layers);
            value_bytes as f64 + 128.0 + 64.0 + layer0 + upper + pointers
        }
        _ => {
            let lists = index.option("lists", 100);
            let samples = (50 * lists).max(10_000).min(rows.max(1)) + 4 * lists;
            let bytes = samples as f64 * (2 * value_bytes + 32) as f64;
            return BUILD_BASE + (bytes * HEADROOM) as u64;
        }
    };
    BUILD_BASE + (per_row * rows as f64 * HEADROOM) as u64
}

/// What one build runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemoryPlan {
    /// The `maintenance_work_mem` set for the build, in bytes.
    pub(crate) bytes: u64,
    /// The estimate of what the graph needs.
    pub(crate) needed: u64,
}

/// The memory for a build needing about `needed` bytes on a server whose
/// own setting is `server` bytes: never below the server's; under
/// [`Memory::Auto`], the estimate rounded up to a MiB, refused past the cap
/// (a build that no longer fits goes on disk and takes several times
/// longer, which nobody should find out from a server notice); under
/// [`Memory::Exactly`], what the caller said.
pub(crate) fn plan_memory(
    memory: Memory,
    needed: u64,
    server: u64,
    index: &str,
    rows: u64,
) -> Result<MemoryPlan> {
    let bytes = match memory {
        Memory::Exactly(bytes) => bytes,
        Memory::Auto { cap } => {
            let want = needed.div_ceil(MIB) * MIB;
            if want > cap.max(server) {
                let reason = format!(
                    "the build of index {index} over {rows} rows needs about {} MiB to stay in \
                     memory, above the cap of {} MiB: raise it with .maintenance_work_mem_cap(..) \
                     (the server must have that memory free), or set .maintenance_work_mem(..) \
                     explicitly to build with less (pgvector then finishes the graph on disk, \
                     several times slower)",
                    want / MIB,
                    cap / MIB
                );
                return Err(Error::invalid("bulk_load", "maintenance_work_mem", reason));
            }
            want.max(server)
        }
    };
    Ok(MemoryPlan { bytes, needed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(method: &str, options: &[&str]) -> VectorIndex {
        VectorIndex {
            name: "docs_embedding_idx".into(),
            target: "docs_embedding_idx".into(),
            definition: String::new(),
            method: method.into(),
            valid: true,
            column: Some("embedding".into()),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
        }
    }

    #[test]
    fn leftovers_are_the_invalid_copies_of_a_concurrent_reindex() {
        for name in ["idx_ccnew", "idx_ccnew1", "idx_ccold", "idx_ccold12"] {
            assert!(is_leftover_name(name), "{name}");
        }
        for name in ["idx", "idx_ccnewer", "ccnew_idx", "idx_cc"] {
            assert!(!is_leftover_name(name), "{name}");
        }
        let mut leftover = index("hnsw", &[]);
        leftover.name = "docs_embedding_idx_ccnew".into();
        assert!(!leftover.is_leftover(), "a valid index is never a leftover");
        leftover.valid = false;
        assert!(leftover.is_leftover());
    }

    #[test]
    fn the_hnsw_estimate_covers_what_pgvector_measured() {
        // 768-dimension halfvec at m = 16: pgvector 0.8.5 ran out of 64 MB
        // after 29,807 rows, i.e. 2,251 bytes a row.
        let hnsw = index("hnsw", &["m=16", "ef_construction=64"]);
        let per_row = (graph_bytes(&hnsw, 100_000, 8 + 2 * 768) - BUILD_BASE) / 100_000;
        assert!((2_251..2_251 * 13 / 10).contains(&per_row), "{per_row}");
        // More links per node, more memory.
        let dense = index("hnsw", &["m=32"]);
        assert!(graph_bytes(&dense, 1000, 1544) > graph_bytes(&hnsw, 1000, 1544));
        // IVFFlat's sample does not grow with the table.
        let ivf = index("ivfflat", &["lists=100"]);
        assert_eq!(
            graph_bytes(&ivf, 1_000_000, 1544),
            graph_bytes(&ivf, 2_000_000, 1544)
        );
    }

    #[test]
    fn memory_is_sized_from_the_estimate_and_refused_past_the_cap() {
        let auto = Memory::Auto { cap: 1024 * MIB };
        let plan = plan_memory(auto, 100 * MIB + 1, 64 * MIB, "i", 1).unwrap();
        assert_eq!(plan.bytes, 101 * MIB);
        // Never below the server's own setting.
        let plan = plan_memory(auto, MIB, 64 * MIB, "i", 1).unwrap();
        assert_eq!(plan.bytes, 64 * MIB);
        let refused = plan_memory(auto, 2048 * MIB, 64 * MIB, "docs_idx", 900_000).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("docs_idx") && text.contains("2048 MiB"),
            "{text}"
        );
        // An explicit size is the caller's choice, even below the estimate.
        let exact = plan_memory(Memory::Exactly(32 * MIB), 100 * MIB, 64 * MIB, "i", 1).unwrap();
        assert_eq!((exact.bytes, exact.needed), (32 * MIB, 100 * MIB));
    }
}
