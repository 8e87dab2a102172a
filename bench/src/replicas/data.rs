//! The replicas bench's table and data: `--rows` documents with a small
//! embedding (64 dimensions, cosine HNSW), a low-cardinality `category`
//! and a text `body`, in a schema of the bench's own; the queries the read
//! mix draws from; and the wait until the replica has replayed the load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reposmith::postgres::create_table_sql;
use reposmith::postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use reposmith::postgres::{WalPosition, index_sql};
use reposmith::prelude::*;
use reposmith::{Entity, IndexMethod, PgBackend, Vector};

use crate::Result;
use crate::vector::data::{Clustered, SplitMix};

/// The schema the table lives in, created at the start and dropped
/// (`CASCADE`) at the end; never `public`.
pub(crate) const NAMESPACE: &str = "reposmith_bench_replicas";

/// A document with its embedding. `category` is deliberately not indexed,
/// as in the vector and cache benches: a filter on it runs on the HNSW
/// index with iterative scans, and a count on it scans the table.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_replica_docs")]
pub(crate) struct ReplicaDoc {
    #[repo(id)]
    pub(crate) id: i64,
    /// One of [`CATEGORIES`]: a filter on it keeps a tenth of the rows.
    pub(crate) category: i32,
    /// [`WORDS_PER_BODY`] words of [`WORDS`].
    pub(crate) body: String,
    #[repo(vector(
        dims = 64,
        distance = "cosine",
        index = "hnsw",
        m = 16,
        ef_construction = 64
    ))]
    pub(crate) embedding: Vector,
}

const DIMS: usize = 64;
/// Distinct `category` values.
pub(crate) const CATEGORIES: usize = 10;
const CLUSTERS: usize = 50;
const SEED: u64 = 16;
/// Rows per `insert_many` call of the load.
const LOAD_BATCH: usize = 5000;
/// The vocabulary of `body`: no word contains another, so `contains(w)`
/// matches the word only.
const WORDS: [&str; 20] = [
    "amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "iris", "juniper",
    "kelp", "lagoon", "meadow", "nectar", "orchid", "prairie", "quartz", "reef", "sierra",
    "tundra",
];
const WORDS_PER_BODY: usize = 8;
/// Distinct read-mix queries (vector, category, word).
const QUERIES: usize = 200;
/// Distinct embeddings the read-your-writes inserts cycle through.
const FRESH: usize = 256;

/// One read of the mix: a filtered top-10 near `vector` in `category`, or
/// a count of `category`'s rows whose body contains `word`.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) vector: Vector,
    pub(crate) category: i32,
    pub(crate) word: &'static str,
}

/// What the workloads draw from.
#[derive(Debug, Clone)]
pub(crate) struct Data {
    pub(crate) queries: Arc<Vec<Query>>,
    /// Embeddings for the rows the read-your-writes sides insert.
    pub(crate) fresh: Arc<Vec<Vector>>,
}

/// `url` with `search_path` set to [`NAMESPACE`] (then `public`, where
/// pgvector's types live) on every session, as the replica tests do.
pub(crate) fn in_namespace(url: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{NAMESPACE}%2Cpublic")
}

/// A body of [`WORDS_PER_BODY`] words drawn by `rng`.
fn body(rng: &mut SplitMix) -> String {
    let words: Vec<&str> = (0..WORDS_PER_BODY)
        .map(|_| WORDS[rng.below(WORDS.len())])
        .collect();
    words.join(" ")
}

/// A new, unsaved document (id 0: the database assigns one).
pub(crate) fn doc(embedding: Vector, rng: &mut SplitMix) -> ReplicaDoc {
    ReplicaDoc {
        id: 0,
        category: rng.below(CATEGORIES) as i32,
        body: body(rng),
        embedding,
    }
}

/// Creates the table (no HNSW index yet; autovacuum off, see
/// [`crate::replicas`]), loads `rows` rows with `insert_many`, builds the
/// index, `VACUUM ANALYZE`s; returns the queries. `pg`'s sessions and
/// `url` must have [`NAMESPACE`] first on their `search_path`.
pub(crate) async fn load(pg: &PgBackend, url: &str, rows: usize) -> Result<Data> {
    let schema = ReplicaDoc::SCHEMA;
    let hnsw: Vec<String> = schema
        .indexes
        .iter()
        .filter(|i| matches!(i.method, IndexMethod::Hnsw { .. }))
        .map(|i| index_sql(schema, i))
        .collect();
    let pool = pg.pool();
    for statement in create_table_sql(schema)
        .into_iter()
        .filter(|s| !hnsw.contains(s))
    {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(pool)
            .await?;
    }
    sqlx::raw_sql("ALTER TABLE bench_replica_docs SET (autovacuum_enabled = off)")
        .execute(pool)
        .await?;
    let mut rng = SplitMix::new(SEED);
    let set = Clustered::new(DIMS, CLUSTERS, &mut rng);
    let repo = pg.repo::<ReplicaDoc>();
    let mut done = 0;
    while done < rows {
        let n = LOAD_BATCH.min(rows - done);
        let batch: Vec<ReplicaDoc> = (0..n)
            .map(|_| doc(Vector::from(set.point(&mut rng)), &mut rng))
            .collect();
        repo.insert_many(&batch).await?;
        done += n;
    }
    let mut session = PgConnection::connect(url).await?;
    sqlx::raw_sql("SET maintenance_work_mem = '256MB'")
        .execute(&mut session)
        .await?;
    for statement in hnsw {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut session)
            .await?;
    }
    sqlx::raw_sql("VACUUM ANALYZE bench_replica_docs")
        .execute(&mut session)
        .await?;
    session.close().await?;
    let queries = (0..QUERIES)
        .map(|i| Query {
            vector: Vector::from(set.query(i, 1_000_000 + i as u64)),
            category: (i % CATEGORIES) as i32,
            word: WORDS[(i * 7) % WORDS.len()],
        })
        .collect();
    let fresh = (0..FRESH)
        .map(|_| Vector::from(set.point(&mut rng)))
        .collect();
    Ok(Data {
        queries: Arc::new(queries),
        fresh: Arc::new(fresh),
    })
}

/// Waits until the replica at `replica_url` has replayed every commit of
/// `pg`'s primary so far (`committed_position()` against the replica's
/// `pg_last_wal_replay_lsn()`), at most `limit`; returns how long it took.
pub(crate) async fn replayed(
    pg: &PgBackend,
    replica_url: &str,
    limit: Duration,
) -> Result<Duration> {
    let target = pg.committed_position().await?;
    let mut replica = PgConnection::connect(replica_url).await?;
    let started = Instant::now();
    loop {
        let text: String = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
            .fetch_one(&mut replica)
            .await?;
        if text.parse::<WalPosition>()? >= target {
            replica.close().await?;
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "the replica replayed {text} of {target} in {} s",
                limit.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
