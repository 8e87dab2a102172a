//! `bulk_load` on a real PostgreSQL with pgvector: an empty table gets a
//! valid index matching exact search; a live table keeps answering
//! searches with a valid index throughout; interrupted loads (a dropped
//! future, a terminated backend) leave all rows or none and a usable index,
//! and their leftovers are repaired by the next call; bad rows fail before
//! anything is stored; units of work are refused.

use crate::pg_search::data;

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use data::{Clustered, recall};
use reposmith::postgres::PgPool;
use reposmith::postgres::bulk_load::{
    IndexOutcome, LoadMode, LoadPhase, LoadProgress, Rebuild, RepairAction,
};
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::prelude::*;
use reposmith::{BatchRow, HalfVector, PgBackend};
use reposmith_tests::{database_url, unique_name};

const DIMS: usize = 32;

/// A chunk of text with a 32-dimension halfvec embedding under HNSW.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "chunks")]
struct Chunk {
    #[repo(id)]
    id: i64,
    shard: i32,
    #[repo(vector(
        dims = 32,
        distance = "l2",
        index = "hnsw",
        m = 16,
        ef_construction = 64
    ))]
    embedding: HalfVector,
}

/// The same rows under IVFFlat, whose lists come from the rows of its build.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "list_chunks")]
struct ListChunk {
    #[repo(id)]
    id: i64,
    #[repo(vector(dims = 32, distance = "l2", index = "ivfflat", lists = 10))]
    embedding: HalfVector,
}

/// A schema of its own on the search path (then `public`, for pgvector's
/// types), the table created as `create_tables` makes it (HNSW included),
/// and an admin pool on the same schema for checks.
struct Db {
    pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl Db {
    async fn new() -> Db {
        Db::with_pool(reposmith_tests::pool_size(10)).await
    }

    /// With `connections` exactly, also in a pool-of-one run: for loads
    /// whose test reads their progress (polled on a second connection of
    /// the load's pool) or searches beside them.
    async fn with_pool(connections: u32) -> Db {
        let namespace = unique_name("bulkload");
        let base = own_database(&namespace, true).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{namespace}%2Cpublic");
        // The test's own instrument (progress views, lock checks, a
        // blocking transaction): never the pool under test.
        let admin = PgBackend::connect(
            &reposmith::PgConfig::new(url.clone()).application_name("bulk-admin"),
        )
        .await
        .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{namespace}\"")))
            .execute(admin.pool())
            .await
            .unwrap();
        let config = reposmith::PgConfig::new(url)
            .max_connections(connections)
            .application_name(namespace.clone());
        let pg = PgBackend::connect(&config).await.unwrap();
        pg.create_tables::<Chunk>().await.unwrap();
        Db {
            pg,
            admin,
            namespace,
        }
    }

    fn sql(&self) -> &PgPool {
        self.admin.pool()
    }

    async fn count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM chunks")
            .fetch_one(self.sql())
            .await
            .unwrap()
    }

    /// (name, valid) of every index of `chunks` using HNSW.
    async fn hnsw_indexes(&self) -> Vec<(String, bool)> {
        hnsw_indexes(self.sql()).await
    }

    /// Waits until no session holds a lock on `chunks` (a dropped load's
    /// rollback reaches the server when it sees the closed socket).
    async fn wait_unlocked(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.relation = 'chunks'::regclass AND a.application_name = $1",
            )
            .bind(&self.namespace)
            .fetch_one(self.sql())
            .await
            .unwrap();
            if held == 0 {
                return;
            }
            assert!(Instant::now() < deadline, "locks still held on chunks");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn cleanup(self) {
        self.pg.close().await;
        self.admin.close().await;
        let server = PgBackend::connect(&reposmith_tests::pg_config(database_url()))
            .await
            .unwrap();
        let drop = format!("DROP DATABASE \"{}\" WITH (FORCE)", self.namespace);
        sqlx::raw_sql(AssertSqlSafe(drop))
            .execute(server.pool())
            .await
            .unwrap();
        server.close().await;
    }
}

/// The URL of a new database named `name` on the test server. Each test
/// gets its own because a concurrent index build waits for every older
/// transaction in its database: on the shared one it waited for whatever
/// the other tests were doing (80 s of a loaded run).
async fn own_database(name: &str, with_pgvector: bool) -> String {
    let base = database_url();
    let server = PgBackend::connect(&reposmith_tests::pg_config(base.clone()))
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(server.pool())
        .await
        .unwrap();
    server.close().await;
    let (head, query) = match base.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (base.as_str(), String::new()),
    };
    let (server_part, _) = head.rsplit_once('/').expect("a database URL has a path");
    let url = format!("{server_part}/{name}{query}");
    if !with_pgvector {
        return url;
    }
    // Before any backend connects: a backend turns pgvector's iterative
    // scans on only when the extension exists at connect time, and without
    // them an HNSW search returns fewer than k rows while invisible rows of
    // a running load fill its candidate list.
    let new = PgBackend::connect(&reposmith_tests::pg_config(url.clone()))
        .await
        .unwrap();
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS vector")
        .execute(new.pool())
        .await
        .unwrap();
    new.close().await;
    url
}

async fn hnsw_indexes(pool: &PgPool) -> Vec<(String, bool)> {
    sqlx::query_as(
        "SELECT c.relname::text, i.indisvalid FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam \
         WHERE i.indrelid = 'chunks'::regclass AND am.amname = 'hnsw' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// `n` chunks of clustered data from `seed`, and the data set (its vectors
/// rounded to half precision, as stored) for exact neighbours.
fn chunks(n: usize, seed: u64) -> (Vec<Chunk>, Clustered) {
    let mut set = Clustered::generate(n, DIMS, 20, seed);
    let rows = set
        .vectors
        .iter_mut()
        .enumerate()
        .map(|(i, v)| {
            let half = HalfVector::from_f32_slice(v);
            *v = half.to_vec().iter().map(|x| x.to_f32()).collect();
            Chunk {
                id: 0,
                shard: (i % 10) as i32,
                embedding: half,
            }
        })
        .collect();
    (rows, set)
}

/// Records every progress event.
fn recorder() -> (
    Arc<Mutex<Vec<LoadProgress>>>,
    impl Fn(&LoadProgress) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    (seen, move |p: &LoadProgress| {
        sink.lock().unwrap().push(p.clone())
    })
}

#[tokio::test]
async fn into_an_empty_table_builds_a_valid_index_matching_exact_search() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Chunk>();
    let (rows, set) = chunks(3000, 5);
    let (seen, progress) = recorder();
    let report = repo
        .bulk_load(&rows)
        .progress(progress)
        .progress_interval(Duration::from_millis(20))
        .await
        .unwrap();
    assert_eq!(
        report.mode,
        LoadMode::Exclusive,
        "an empty table loads exclusively"
    );
    assert_eq!((report.rows, report.rows_before), (3000, 0));
    assert!(report.is_complete(), "{report:?}");
    let [index] = report.indexes.as_slice() else {
        panic!("{:?}", report.indexes)
    };
    assert_eq!((index.outcome, index.valid), (IndexOutcome::Built, true));
    assert!(index.memory >= index.memory_needed && index.memory_needed > 0);
    assert_eq!(db.count().await, 3000);
    assert_eq!(db.hnsw_indexes().await.len(), 1);
    // Ids are positions + 1 (identity, one COPY in order).
    let mut sum = 0.0;
    let queries = 30;
    for q in 0..queries {
        let query = set.query(q, 10_000 + q as u64);
        let half: Vec<f32> = HalfVector::from_f32_slice(&query)
            .to_vec()
            .iter()
            .map(|x| x.to_f32())
            .collect();
        let hits = repo
            .search_embedding(HalfVector::from_f32_slice(&query), 10)
            .ef_search(100)
            .await
            .unwrap();
        let exact = set.exact(&half, 10, |_| true);
        sum += recall(&exact, hits.iter().map(|h| h.entity.id as usize - 1));
    }
    let mean = sum / queries as f64;
    assert!(mean >= 0.95, "recall@10 {mean}");
    let phases: Vec<LoadPhase> = seen.lock().unwrap().iter().map(|p| p.phase).collect();
    for phase in [
        LoadPhase::Checking,
        LoadPhase::Copying,
        LoadPhase::Building,
        LoadPhase::Analyzing,
        LoadPhase::Done,
    ] {
        assert!(phases.contains(&phase), "{phase:?} not in {phases:?}");
    }
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((last.rows_copied, last.rows_total), (3000, 3000));
    // Nothing the load set reached a pooled connection: they show the
    // server's defaults, as a fresh session of the admin pool does.
    let settings = "SELECT current_setting('maintenance_work_mem') || ' ' || \
                    current_setting('max_parallel_maintenance_workers') || ' ' || \
                    current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')";
    let defaults: String = sqlx::query_scalar(settings)
        .fetch_one(db.sql())
        .await
        .unwrap();
    for _ in 0..3 {
        let mut c = db.pg.acquire().await.unwrap();
        let seen = sqlx::query_scalar::<_, String>(settings)
            .fetch_one(&mut *c)
            .await;
        c.settle(&seen);
        assert_eq!(seen.unwrap(), defaults);
    }
    db.cleanup().await;
}

#[tokio::test]
async fn on_a_live_table_searches_keep_working_and_an_index_exists_throughout() {
    let db = Db::with_pool(4).await;
    let repo = db.pg.repo::<Chunk>();
    let (rows, set) = chunks(5000, 9);
    repo.insert_many(&rows[..1000]).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for t in 0..3 {
        let (repo, stop, searches) = (repo.clone(), Arc::clone(&stop), Arc::clone(&searches));
        let query = HalfVector::from_f32_slice(&set.query(t, 500 + t as u64));
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let hits = repo.search_embedding(query.clone(), 10).await?;
                assert_eq!(hits.len(), 10);
                searches.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), Error>(())
        }));
    }
    let sampler = {
        let (pool, stop) = (db.sql().clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let valid = hnsw_indexes(&pool).await.iter().filter(|(_, v)| *v).count();
                samples.push(valid);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        })
    };
    let before = searches.load(Ordering::Relaxed);
    let report = repo
        .bulk_load(&rows[1000..])
        .rebuild(Rebuild::Always)
        .await
        .unwrap();
    let during = searches.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader
            .await
            .unwrap()
            .expect("every search during the load succeeds");
    }
    let samples = sampler.await.unwrap();
    assert_eq!(
        report.mode,
        LoadMode::Online,
        "a table with rows loads online"
    );
    assert_eq!((report.rows, report.rows_before), (4000, 1000));
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.indexes[0].outcome, IndexOutcome::Rebuilt);
    assert!(during > 0, "searches ran during the load");
    assert!(samples.len() > 5, "{} samples", samples.len());
    assert!(
        samples.iter().all(|&n| n >= 1),
        "a moment without a valid index: {samples:?}"
    );
    assert_eq!(db.hnsw_indexes().await.len(), 1, "no copy left behind");
    assert!(db.hnsw_indexes().await[0].1, "indisvalid after the load");
    assert_eq!(db.count().await, 5000);
    db.cleanup().await;
}

#[tokio::test]
async fn an_online_load_rebuilds_ivfflat_lists_and_keeps_a_grown_hnsw_graph() {
    let db = Db::new().await;
    db.pg.create_tables::<ListChunk>().await.unwrap();
    let (rows, _) = chunks(2000, 23);
    let lists: Vec<ListChunk> = rows
        .iter()
        .map(|c| ListChunk {
            id: 0,
            embedding: c.embedding.clone(),
        })
        .collect();
    // Tables with rows: the online path; a load of 3/4 of the table.
    let hnsw = db.pg.repo::<Chunk>();
    hnsw.insert_many(&rows[..500]).await.unwrap();
    let report = hnsw.bulk_load(&rows[500..]).await.unwrap();
    assert_eq!(report.mode, LoadMode::Online);
    assert_eq!(report.indexes[0].outcome, IndexOutcome::Kept, "{report:?}");
    let ivf = db.pg.repo::<ListChunk>();
    ivf.insert_many(&lists[..500]).await.unwrap();
    let report = ivf.bulk_load(&lists[500..]).await.unwrap();
    assert_eq!(report.mode, LoadMode::Online);
    let [index] = report.indexes.as_slice() else {
        panic!("{report:?}")
    };
    assert_eq!(
        (index.method.as_str(), index.outcome),
        ("ivfflat", IndexOutcome::Rebuilt)
    );
    assert!(index.valid && report.is_complete(), "{report:?}");
    // A small load keeps the lists.
    let report = ivf.bulk_load(&lists[..100]).await.unwrap();
    assert_eq!(report.indexes[0].outcome, IndexOutcome::Kept);
    db.cleanup().await;
}

/// Drops the load's future when the load reaches `phase`.
async fn load_dropped_at(repo: &ChunkRepo, rows: &[Chunk], mode: LoadMode, phase: LoadPhase) {
    let reached = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&reached);
    let load = repo
        .bulk_load(rows)
        .mode(mode)
        .progress(move |p: &LoadProgress| {
            if p.phase == phase {
                notify.notify_one();
            }
        })
        .into_future();
    tokio::select! {
        outcome = load => panic!("the load finished before {phase:?}: {outcome:?}"),
        () = reached.notified() => {}
    }
}

type ChunkRepo = reposmith::PgRepository<Chunk>;

#[tokio::test]
async fn an_exclusive_load_dropped_midway_leaves_no_row_and_the_index_as_it_was() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Chunk>();
    let (rows, _) = chunks(3000, 13);
    repo.insert_many(&rows[..200]).await.unwrap();
    for phase in [LoadPhase::Copying, LoadPhase::Building] {
        load_dropped_at(&repo, &rows[200..], LoadMode::Exclusive, phase).await;
        db.wait_unlocked().await;
        assert_eq!(
            db.count().await,
            200,
            "dropped while {phase:?}: no row of the load"
        );
        let indexes = db.hnsw_indexes().await;
        assert_eq!(indexes.len(), 1, "{indexes:?}");
        assert!(indexes[0].1, "the index is back and valid");
    }
    // The table and its index serve the next load and searches.
    let report = repo
        .bulk_load(&rows[200..])
        .mode(LoadMode::Exclusive)
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(db.count().await, 3000);
    let hits = repo
        .search_embedding(rows[5].embedding.clone(), 3)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3);
    db.cleanup().await;
}

/// A connection of its own holding a transaction that has written to
/// `chunks`: concurrent index builds wait for it ("waiting for writers").
async fn blocker(db: &Db) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut c = db.sql().acquire().await.unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE chunks IN ROW EXCLUSIVE MODE")
        .execute(&mut *c)
        .await
        .unwrap();
    c
}

async fn release(mut blocker: sqlx::pool::PoolConnection<sqlx::Postgres>) {
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .unwrap();
}

/// Terminates the backend running a concurrent index build on `chunks`
/// once it waits in `phase`; returns its pid.
async fn terminate_build_waiting(db: &Db, phase: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_progress_create_index \
             WHERE relid = 'chunks'::regclass AND phase = $1",
        )
        .bind(phase)
        .fetch_optional(db.sql())
        .await
        .unwrap();
        if let Some(pid) = pid {
            let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(db.sql())
                .await
                .unwrap();
            assert!(done);
            return pid;
        }
        assert!(Instant::now() < deadline, "no build reached {phase}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_online_load_whose_rebuild_is_killed_keeps_every_row_and_a_valid_index() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Chunk>();
    let (rows, _) = chunks(2500, 17);
    repo.insert_many(&rows[..500]).await.unwrap();
    let hold = blocker(&db).await;
    let load = {
        let repo = repo.clone();
        let rows = rows[500..].to_vec();
        tokio::spawn(async move {
            repo.bulk_load(&rows)
                .mode(LoadMode::Online)
                .rebuild(Rebuild::Always)
                .await
        })
    };
    terminate_build_waiting(&db, "waiting for writers before build").await;
    release(hold).await;
    let report = load
        .await
        .unwrap()
        .expect("the rows were committed before the rebuild");
    assert_eq!(report.rows, 2000);
    assert_eq!(report.indexes.len(), 1, "{report:?}");
    assert_eq!(report.indexes[0].outcome, IndexOutcome::RebuildFailed);
    assert!(report.indexes[0].valid, "the old index still serves");
    assert!(!report.is_complete());
    let problem = &report.problems[0];
    assert!(problem.step.starts_with("rebuild "), "{problem:?}");
    assert!(
        matches!(problem.error, Error::ConnectionLost { .. }),
        "{problem:?}"
    );
    // The copy the killed REINDEX left was dropped by the same call.
    assert!(
        report
            .repaired
            .iter()
            .any(|r| r.action == RepairAction::DroppedLeftover && r.index.contains("_ccnew")),
        "{report:?}"
    );
    assert_eq!(db.count().await, 2500, "every row of the load is stored");
    let indexes = db.hnsw_indexes().await;
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(indexes[0].1);
    let hits = repo
        .search_embedding(rows[2000].embedding.clone(), 5)
        .await
        .unwrap();
    assert_eq!(hits.len(), 5);
    db.cleanup().await;
}

#[tokio::test]
async fn an_online_load_dropped_during_its_rebuild_keeps_the_rows_and_the_next_call_cleans_up() {
    let db = Db::with_pool(4).await;
    let repo = db.pg.repo::<Chunk>();
    let (rows, _) = chunks(2000, 19);
    repo.insert_many(&rows[..500]).await.unwrap();
    let name = db.hnsw_indexes().await[0].0.clone();
    // Dropped before the copy commits: none of the rows.
    load_dropped_at(
        &repo,
        &rows[500..1500],
        LoadMode::Online,
        LoadPhase::Copying,
    )
    .await;
    db.wait_unlocked().await;
    assert_eq!(db.count().await, 500);
    // Dropped while REINDEX CONCURRENTLY waits: the rows are in, and the
    // server cancels the rebuild when it sees the client gone
    // (client_connection_check_interval), leaving its INVALID copy.
    let hold = blocker(&db).await;
    let waiting = Arc::new(tokio::sync::Notify::new());
    let notify = Arc::clone(&waiting);
    let load = repo
        .bulk_load(&rows[500..1500])
        .rebuild(Rebuild::Always)
        .progress_interval(Duration::from_millis(10))
        .progress(move |p: &LoadProgress| {
            if p.build
                .as_ref()
                .is_some_and(|b| b.server_phase.starts_with("waiting for writers"))
            {
                notify.notify_one();
            }
        })
        .into_future();
    tokio::select! {
        outcome = load => panic!("the load finished while its rebuild waited: {outcome:?}"),
        () = waiting.notified() => {}
        () = tokio::time::sleep(Duration::from_secs(60)) => {
            panic!("no progress reading showed the rebuild waiting for writers within 60 s")
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let building: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = 'chunks'::regclass",
        )
        .fetch_one(db.sql())
        .await
        .unwrap();
        if building == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rebuild went on without its client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release(hold).await;
    assert_eq!(db.count().await, 1500, "the committed rows stay");
    let ccnew = format!("{name}_ccnew");
    assert_eq!(
        db.hnsw_indexes().await,
        [(name.clone(), true), (ccnew.clone(), false)]
    );
    let report = repo.bulk_load(&rows[1500..]).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert!(
        report
            .repaired
            .iter()
            .any(|r| r.index == ccnew && r.action == RepairAction::DroppedLeftover),
        "{report:?}"
    );
    assert_eq!(db.hnsw_indexes().await, [(name, true)]);
    assert_eq!(db.count().await, 2000);
    db.cleanup().await;
}

/// Runs `sql` (a concurrent index build) on its own connection and kills
/// it while it waits for writers, leaving the INVALID index it was building.
async fn killed_concurrent_build(db: &Db, sql: &'static str) {
    let hold = blocker(db).await;
    let pool = db.sql().clone();
    let build = tokio::spawn(async move { sqlx::raw_sql(sql).execute(&pool).await });
    terminate_build_waiting(db, "waiting for writers before build").await;
    assert!(build.await.unwrap().is_err(), "the build was killed");
    release(hold).await;
}

#[tokio::test]
async fn leftovers_of_killed_concurrent_builds_are_repaired_by_the_next_call() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Chunk>();
    let (rows, _) = chunks(1500, 21);
    repo.insert_many(&rows[..500]).await.unwrap();
    let name = db.hnsw_indexes().await[0].0.clone();
    // An interrupted REINDEX CONCURRENTLY leaves `<index>_ccnew`, INVALID.
    let reindex: &'static str =
        Box::leak(format!("REINDEX INDEX CONCURRENTLY \"{name}\"").into_boxed_str());
    killed_concurrent_build(&db, reindex).await;
    let indexes = db.hnsw_indexes().await;
    assert!(
        indexes.contains(&(format!("{name}_ccnew"), false)),
        "{indexes:?}"
    );
    // The next bulk load drops it first (a ready copy would slow every insert).
    let report = repo.bulk_load(&rows[500..1000]).await.unwrap();
    assert_eq!(report.mode, LoadMode::Online);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(
        report.repaired[0].action,
        RepairAction::DroppedLeftover,
        "{report:?}"
    );
    assert_eq!(db.hnsw_indexes().await, [(name.clone(), true)]);
    // repair_indexes deals with both kinds: a leftover copy is dropped, an
    // index left INVALID by a killed CREATE INDEX CONCURRENTLY is rebuilt.
    killed_concurrent_build(&db, reindex).await;
    killed_concurrent_build(
        &db,
        "CREATE INDEX CONCURRENTLY chunks_shard_idx ON chunks (shard)",
    )
    .await;
    let mut repaired = repo.repair_indexes().await.unwrap();
    repaired.sort_by(|a, b| a.index.cmp(&b.index));
    let actions: Vec<(&str, RepairAction)> = repaired
        .iter()
        .map(|r| (r.index.as_str(), r.action))
        .collect();
    let ccnew = format!("{name}_ccnew");
    let mut expected = vec![
        (ccnew.as_str(), RepairAction::DroppedLeftover),
        ("chunks_shard_idx", RepairAction::Rebuilt),
    ];
    expected.sort_by(|a, b| a.0.cmp(b.0));
    assert_eq!(actions, expected);
    let invalid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_index WHERE indrelid = 'chunks'::regclass AND NOT indisvalid",
    )
    .fetch_one(db.sql())
    .await
    .unwrap();
    assert_eq!(invalid, 0);
    assert!(
        repo.repair_indexes().await.unwrap().is_empty(),
        "nothing left to do"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn bad_rows_fail_before_anything_is_stored_naming_row_and_field() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Chunk>();
    let (mut rows, _) = chunks(50, 3);
    repo.insert_many(&rows[..10]).await.unwrap();
    let mut nan = vec![0.5f32; DIMS];
    nan[4] = f32::NAN;
    rows[17].embedding = HalfVector::from_f32_slice(&nan);
    let err = repo.bulk_load(&rows).await.unwrap_err();
    match &err {
        Error::InvalidInput { field, row, .. } => {
            assert_eq!(field, "embedding");
            assert_eq!(*row, Some(BatchRow { index: 17, of: 50 }));
        }
        other => panic!("{other:?}"),
    }
    rows[17].embedding = rows[16].embedding.clone();
    rows[3].embedding = HalfVector::from_f32_slice(&[1.0; 31]);
    for mode in [LoadMode::Exclusive, LoadMode::Online] {
        let err = repo.bulk_load(&rows).mode(mode).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, row: Some(BatchRow { index: 3, .. }), .. } if field == "embedding"),
            "{err}"
        );
        assert!(err.to_string().contains("at index 3 of 50 rows"), "{err}");
    }
    assert_eq!(db.count().await, 10, "nothing stored");
    assert_eq!(db.hnsw_indexes().await.len(), 1);
    db.cleanup().await;
}

#[tokio::test]
async fn refused_inside_a_unit_of_work_and_bad_options_are_named() {
    let db = Db::new().await;
    let (rows, _) = chunks(20, 4);
    let unit = db.pg.begin().await.unwrap();
    let err = unit.repo::<Chunk>().bulk_load(&rows).await.unwrap_err();
    match &err {
        Error::InvalidInput {
            entity,
            field,
            reason,
            ..
        } => {
            assert_eq!((*entity, field.as_str()), ("unit of work", "bulk_load"));
            assert!(reason.contains("CONCURRENTLY"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let err = unit.repo::<Chunk>().repair_indexes().await.unwrap_err();
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "repair_indexes"));
    // The unit is untouched by the refusals.
    unit.repo::<Chunk>().insert(&rows[0]).await.unwrap();
    unit.commit().await.unwrap();
    let repo = db.pg.repo::<Chunk>();
    let refusals = [
        repo.bulk_load(&rows).build_timeout(Duration::ZERO).await,
        repo.bulk_load(&rows)
            .mode(LoadMode::Exclusive)
            .rebuild(Rebuild::Never)
            .await,
        repo.bulk_load(&rows).maintenance_work_mem(1).await,
        repo.bulk_load(&rows).parallel_workers(100_000).await,
    ];
    let fields: Vec<String> = refusals
        .into_iter()
        .map(|r| match r {
            Err(Error::InvalidInput { entity, field, .. }) => format!("{entity}.{field}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fields,
        [
            "bulk_load.build_timeout",
            "bulk_load.rebuild",
            "bulk_load.maintenance_work_mem",
            "bulk_load.parallel_workers"
        ]
    );
    assert_eq!(db.count().await, 1);
    db.cleanup().await;
}

/// A backend that connected before pgvector existed (a new database whose
/// tables `create_tables` makes) turns iterative scans on once the DDL has
/// created the extension: every session afterwards runs with them, so a
/// filtered search still returns k rows.
#[tokio::test]
async fn iterative_scans_follow_pgvector_created_after_connect() {
    let name = unique_name("lateext");
    let url = own_database(&name, false).await;
    let pg = PgBackend::connect(&reposmith_tests::pg_config(url))
        .await
        .unwrap();
    let setting = "SELECT coalesce(current_setting('hnsw.iterative_scan', true), 'unset')";
    let mut held = pg.acquire().await.unwrap();
    let before: String = sqlx::query_scalar(setting)
        .fetch_one(&mut *held)
        .await
        .unwrap();
    assert_ne!(
        before, "relaxed_order",
        "no pgvector yet, no iterative scans"
    );
    held.settle(&Ok::<(), sqlx::Error>(()));
    drop(held);
    pg.create_tables::<Chunk>().await.unwrap();
    for _ in 0..3 {
        let mut c = pg.acquire().await.unwrap();
        let now: String = sqlx::query_scalar(setting)
            .fetch_one(&mut *c)
            .await
            .unwrap();
        c.settle(&Ok::<(), sqlx::Error>(()));
        assert_eq!(now, "relaxed_order");
    }
    pg.close().await;
    let server = PgBackend::connect(&reposmith_tests::pg_config(database_url()))
        .await
        .unwrap();
    let drop = format!("DROP DATABASE \"{name}\" WITH (FORCE)");
    sqlx::raw_sql(AssertSqlSafe(drop))
        .execute(server.pool())
        .await
        .unwrap();
    server.close().await;
}

#[tokio::test]
async fn an_exclusive_load_drops_leftovers_with_the_indexes_and_builds_only_the_originals() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Chunk>();
    let (rows, _) = chunks(1000, 29);
    repo.insert_many(&rows[..300]).await.unwrap();
    let name = db.hnsw_indexes().await[0].0.clone();
    let reindex: &'static str =
        Box::leak(format!("REINDEX INDEX CONCURRENTLY \"{name}\"").into_boxed_str());
    killed_concurrent_build(&db, reindex).await;
    let ccnew = format!("{name}_ccnew");
    assert!(db.hnsw_indexes().await.contains(&(ccnew.clone(), false)));
    let report = repo
        .bulk_load(&rows[300..])
        .mode(LoadMode::Exclusive)
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.rows_before, 300);
    assert_eq!(
        report
            .repaired
            .iter()
            .map(|r| (r.index.as_str(), r.action))
            .collect::<Vec<_>>(),
        [(ccnew.as_str(), RepairAction::DroppedLeftover)]
    );
    let built: Vec<(&str, IndexOutcome)> = report
        .indexes
        .iter()
        .map(|i| (i.name.as_str(), i.outcome))
        .collect();
    assert_eq!(built, [(name.as_str(), IndexOutcome::Built)]);
    assert_eq!(db.hnsw_indexes().await, [(name, true)]);
    assert_eq!(db.count().await, 1000);
    db.cleanup().await;
}
