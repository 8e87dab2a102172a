//! The recall monitor and `ef_search` tuner on a real PostgreSQL with
//! pgvector: seeded isotropic vectors under a deliberately weak HNSW index
//! (m = 8, ef_construction = 32) so that recall at a low `ef_search` is
//! clearly below 1, and exact neighbours computed here, in Rust.
//!
//! Checked: the monitor's recall equals recall computed here for the same
//! searches; its exact re-run never uses the index and the search does
//! (EXPLAIN); sampling is off the request path and bounded (a paused
//! monitor queues, then drops and counts); the tuner raises `ef_search` to
//! the smallest value reaching the target (within its resolution) and no
//! further, never past its ceiling; an explicit `.ef_search(n)` wins; the
//! monitor is off by default and then runs no query (the table's
//! `seq_scan` counter, which every exact re-run bumps, does not move).

use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::Duration;

use reposmith::prelude::*;

use crate::secrets::Captured;
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{PgBackend, PgConfig, PgRepository, PostgresEntity, Vector};
use reposmith_postgres::recall::{FieldRecall, Reason, RecallConfig, TuneConfig};

/// A point of the isotropic data set: 64 dims, L2, a small HNSW graph.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "recall_points")]
struct Point {
    #[repo(id)]
    id: i64,
    /// `id % 50`, not indexed: a filter on it runs through the HNSW index.
    bucket: i32,
    #[repo(vector(
        dims = 64,
        distance = "l2",
        index = "hnsw",
        m = 8,
        ef_construction = 32
    ))]
    embedding: Vector,
}

/// The same points under an IVFFlat index: the tuner moves `probes` here.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "recall_lists")]
struct Listed {
    #[repo(id)]
    id: i64,
    #[repo(vector(dims = 64, distance = "l2", index = "ivfflat", lists = 30))]
    embedding: Vector,
}

const ROWS: usize = 3000;
const DIMS: usize = 64;
/// Queries per cycle; the tuner's verdicts are over exactly one cycle.
const QUERIES: usize = 40;
const K: u32 = 10;
const TARGET: f64 = 0.9;
/// A mean of tenths equal to the target can be a hair below it in binary.
fn reaches(recall: f64) -> bool {
    recall >= TARGET - 1e-9
}
/// The tuner's ceiling: below `ef_search` ≈ 200, where the planner leaves the index.
const CEILING: u32 = 180;
/// Longest wait for the monitor to finish its queued re-runs.
const IDLE: Duration = Duration::from_secs(30);

/// SplitMix64 and Box-Muller: seeded isotropic Gaussian vectors, no crate.
struct Gaussian(u64);

impl Gaussian {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIMS)
            .map(|_| {
                let (u, v) = (self.uniform().max(f64::MIN_POSITIVE), self.uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    }
}

/// A schema of its own holding the loaded table, and the data in Rust.
struct Db {
    admin: PgBackend,
    namespace: String,
    vectors: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
    /// The exact neighbours of each query, unfiltered.
    truth: Vec<Vec<usize>>,
}

impl Db {
    async fn new() -> Db {
        let admin =
            PgBackend::connect(&reposmith_tests::pg_config(reposmith_tests::database_url()))
                .await
                .unwrap();
        let namespace = reposmith_tests::unique_name("recall");
        run(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let mut rng = Gaussian(17);
        let vectors: Vec<Vec<f32>> = (0..ROWS).map(|_| rng.vector()).collect();
        let queries = (0..QUERIES).map(|_| rng.vector()).collect();
        let mut db = Db {
            admin,
            namespace,
            vectors,
            queries,
            truth: Vec::new(),
        };
        db.truth = (0..QUERIES)
            .map(|q| db.exact(&db.queries[q], K as usize, |_| true))
            .collect();
        let loader = db
            .backend(reposmith_tests::pg_config(reposmith_tests::database_url()))
            .await;
        loader.create_tables::<Point>().await.unwrap();
        let points: Vec<Point> = (0..ROWS)
            .map(|i| Point {
                id: i as i64 + 1,
                bucket: ((i + 1) % 50) as i32,
                embedding: Vector::from(db.vectors[i].clone()),
            })
            .collect();
        let stored = loader.repo::<Point>().insert_many(&points).await.unwrap();
        assert_eq!(stored, ROWS as u64);
        loader.close().await;
        run(
            &db.admin,
            &format!("ANALYZE \"{}\".recall_points", db.namespace),
        )
        .await;
        db
    }

    /// A backend whose sessions see this schema first.
    async fn backend(&self, config: PgConfig) -> PgBackend {
        let base = reposmith_tests::database_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        let ns = &self.namespace;
        let mut config = config.application_name(ns.clone());
        config.url = reposmith::ConnectionUrl::new(format!(
            "{base}{sep}options=-c%20search_path%3D{ns}%2Cpublic"
        ));
        PgBackend::connect(&config).await.unwrap()
    }

    /// Positions of the exact `k` nearest rows (L2) among those `keep` accepts.
    fn exact(&self, query: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
        let l2 = |v: &[f32]| {
            query
                .iter()
                .zip(v)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
        };
        let mut scored: Vec<(f32, usize)> = (0..ROWS)
            .filter(|i| keep(*i))
            .map(|i| (l2(&self.vectors[i]), i))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, i)| i).collect()
    }

    /// Recall@k of `hits` against the exact neighbours of query `q` among the rows `keep` accepts.
    fn recall(&self, q: usize, hits: &[Scored<Point>], keep: impl Fn(usize) -> bool) -> f64 {
        let exact = self.exact(&self.queries[q], K as usize, keep);
        share_found(&exact, hits)
    }

    /// Mean recall@10 over the query set at `ef`, searched with an explicit knob.
    async fn recall_at(&self, repo: &PgRepository<Point>, ef: u32) -> f64 {
        let mut sum = 0.0;
        for q in 0..QUERIES {
            let hits = search(repo, q, self).ef_search(ef).await.unwrap();
            sum += share_found(&self.truth[q], &hits);
        }
        sum / QUERIES as f64
    }

    async fn seq_scans(&self) -> i64 {
        let sql = format!(
            "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = '\"{}\".recall_points'::regclass",
            self.namespace
        );
        sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
            .fetch_one(self.admin.pool())
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        run(
            &self.admin,
            &format!("DROP SCHEMA \"{}\" CASCADE", self.namespace),
        )
        .await;
        self.admin.close().await;
    }
}

/// The share of the `exact` positions (ids minus one) among `hits`.
fn share_found(exact: &[usize], hits: &[Scored<Point>]) -> f64 {
    let found = exact
        .iter()
        .filter(|i| hits.iter().any(|h| h.entity.id as usize == **i + 1))
        .count();
    found as f64 / exact.len() as f64
}

async fn run(pg: &PgBackend, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pg.pool())
        .await
        .unwrap();
}

type PointSearch<'r> =
    reposmith::Search<'r, Point, PgRepository<Point>, reposmith::search::ByVector>;

fn search<'r>(repo: &'r PgRepository<Point>, q: usize, db: &Db) -> PointSearch<'r> {
    repo.search_embedding(Vector::from(db.queries[q].clone()), K)
}

/// The monitor's settings for these tests: every search sampled.
fn monitored() -> RecallConfig {
    let mut recall = RecallConfig::sampled(1.0);
    (recall.window, recall.queue) = (1000, 64);
    recall
}

/// Sessions at `ef_search` 10: recall there is clearly below the target.
fn config(recall: RecallConfig) -> PgConfig {
    // The recall monitor samples on connections of its own and must leave
    // searches one (checked by its config), so not a pool of one.
    reposmith::PgConfig::new(reposmith_tests::database_url())
        .ef_search(10)
        .recall(recall)
}

async fn idle(pg: &PgBackend) {
    tokio::time::timeout(IDLE, pg.recall().idle())
        .await
        .expect("the monitor's queue drains");
}

fn the_field(pg: &PgBackend) -> FieldRecall {
    let report = pg.recall().report();
    assert_eq!(report.fields.len(), 1, "{report:?}");
    report.fields.into_iter().next().unwrap()
}

/// What the process-wide tracing subscriber wrote, set up on first use.
///
/// Process-wide rather than a thread's default: a callsite another test
/// registered first can stay silent to a thread-local subscriber. Lines
/// carry their thread's id, so a test reads only its own (a current-thread
/// runtime runs the monitor's tasks on the test's thread).
fn tracing_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .with_thread_ids(true)
            .with_env_filter("reposmith::recall=info")
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

#[tokio::test]
async fn the_monitor_agrees_with_recall_computed_against_exact_neighbours() {
    let log = tracing_log();
    let db = Db::new().await;
    let pg = db.backend(config(monitored())).await;
    let repo = pg.repo::<Point>();
    let mut expected = Vec::new();
    for q in 0..QUERIES {
        let hits = search(&repo, q, &db).await.unwrap();
        idle(&pg).await;
        expected.push(db.recall(q, &hits, |_| true));
    }
    // A filter matching 4 rows: the exact run returns 4, the denominator.
    let hits = search(&repo, 0, &db).filter(Point::ID.le(4)).await.unwrap();
    idle(&pg).await;
    expected.push(db.recall(0, &hits, |i| i < 4));

    let field = the_field(&pg);
    let measured: Vec<f64> = field.recent.iter().map(|s| s.recall).collect();
    assert_eq!(measured.len(), expected.len(), "{field:?}");
    for (q, (m, e)) in measured.iter().zip(&expected).enumerate() {
        assert!((m - e).abs() < 1e-12, "query {q}: monitor {m}, here {e}");
    }
    let last = field.recent.last().unwrap();
    assert_eq!((last.exact_rows, last.k, last.knob), (4, K, Some(10)));
    let mean = expected.iter().sum::<f64>() / expected.len() as f64;
    assert!((field.recall.unwrap() - mean).abs() < 1e-12);
    assert!(
        mean < 0.9,
        "the weak index must miss at ef_search 10: {mean}"
    );
    assert_eq!((field.failed, field.empty, field.dropped), (0, 0, 0));
    // A search inside a unit of work is not sampled: the exact re-run, on
    // another connection, could not see the unit's own writes.
    let sampled = pg.recall().report().sampled;
    let unit = pg.begin().await.unwrap();
    search(&unit.repo::<Point>(), 5, &db).await.unwrap();
    unit.rollback().await.unwrap();
    assert_eq!(pg.recall().report().sampled, sampled);
    // One event per sample, named for a tracing-to-metrics layer.
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    // As the fmt layer prints it: `ThreadId(02)`.
    let id = format!("{:?}", std::thread::current().id());
    let n: u64 = id
        .trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .unwrap();
    let thread = format!("ThreadId({n:02})");
    let events: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&thread) && l.contains("recall sample"))
        .collect();
    assert_eq!(events.len(), expected.len(), "{log}");
    for field in [
        "reposmith::recall",
        "db.collection=\"recall_points\"",
        "vector.field=\"embedding\"",
        "gauge.reposmith.recall=",
        "histogram.reposmith.recall.sample=",
        "gauge.reposmith.recall.knob=10",
    ] {
        assert!(events[0].contains(field), "{field} missing: {}", events[0]);
    }
    println!(
        "recall@10 at ef_search 10: {mean:.3} (monitor and exact agree on {} searches)",
        expected.len()
    );
    pg.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn the_exact_path_never_uses_the_index_and_the_search_does() {
    let db = Db::new().await;
    let pg = db.backend(config(monitored())).await;
    let repo = pg.repo::<Point>();
    for filtered in [false, true] {
        let query = |db: &Db| {
            let s = search(&repo, 1, db);
            match filtered {
                true => s.filter(Point::BUCKET.ne(7)).into_query(),
                false => s.into_query(),
            }
        };
        let ann = repo.explain_search(query(&db)).await.unwrap();
        assert!(
            ann.contains("Index Scan using recall_points_embedding"),
            "{ann}"
        );
        let exact = repo.explain_exact_search(query(&db)).await.unwrap();
        assert!(exact.contains("Seq Scan on recall_points"), "{exact}");
        assert!(!exact.contains("Index"), "{exact}");
    }
    pg.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sampling_is_off_the_request_path_and_bounded() {
    let db = Db::new().await;
    let mut recall = RecallConfig::sampled(1.0);
    recall.queue = 2;
    let pg = db.backend(config(recall)).await;
    let repo = pg.repo::<Point>();
    // Every slot held: no exact re-run can start.
    pg.recall().pause().await;
    for q in 0..5 {
        let search = search(&repo, q, &db).into_future();
        let hits = tokio::time::timeout(Duration::from_secs(10), search)
            .await
            .expect("a search returns while its sample waits")
            .unwrap();
        assert_eq!(hits.len(), K as usize);
    }
    let report = pg.recall().report();
    assert!(report.paused && report.enabled);
    assert_eq!((report.sampled, report.waiting, report.running), (5, 2, 0));
    assert_eq!(report.dropped, 3, "queue full: dropped and counted");
    let field = &report.fields[0];
    assert_eq!((field.samples, field.dropped), (0, 3));

    pg.recall().resume();
    idle(&pg).await;
    let report = pg.recall().report();
    assert_eq!((report.waiting, report.running, report.dropped), (0, 0, 3));
    assert_eq!(report.fields[0].samples, 2, "the two queued samples ran");
    pg.close().await;
    db.cleanup().await;
}

/// Runs the query set in order, one search at a time, until the tuner
/// settles and holds for a full cycle (or `cycles` run out).
async fn tune<E: PostgresEntity>(
    pg: &PgBackend,
    cycles: usize,
    search: impl AsyncFn(&PgRepository<E>, usize),
) -> FieldRecall {
    let repo = pg.repo::<E>();
    let mut moves = usize::MAX;
    for _ in 0..cycles {
        for q in 0..QUERIES {
            search(&repo, q).await;
            idle(pg).await;
        }
        let field = the_field(pg);
        let tuning = field.tuning.as_ref().unwrap();
        if tuning.settled && tuning.changes.len() == moves {
            return field;
        }
        moves = tuning.changes.len();
    }
    the_field(pg)
}

/// One search of query `q` on points, as the tuning tests run it.
async fn point_search(db: &Db, repo: &PgRepository<Point>, q: usize) {
    search(repo, q, db).await.unwrap();
}

/// Tuning whose verdicts are over exactly one cycle of the query set.
fn tuning(ceiling: u32) -> RecallConfig {
    let mut tune = TuneConfig::new(TARGET);
    tune.ef_search = (10, ceiling);
    (tune.min_samples, tune.max_samples, tune.confidence) = (QUERIES, QUERIES, 0.0);
    let mut recall = monitored();
    recall.tune = Some(tune);
    recall
}

#[tokio::test]
async fn the_tuner_raises_ef_search_to_the_smallest_value_reaching_the_target() {
    let db = Db::new().await;
    let pg = db.backend(config(tuning(CEILING))).await;
    let field = tune(&pg, 30, async |r, q| point_search(&db, r, q).await).await;
    let tuning = field.tuning.clone().unwrap();
    let settled = field.current.unwrap();
    assert!(tuning.settled && tuning.reachable, "{tuning:?}");

    // Recall at every value up to the highest the tuner tried, each search
    // with an explicit knob, on a backend of its own without the monitor.
    let plain = db.backend(config(RecallConfig::default())).await;
    let top = tuning
        .changes
        .iter()
        .map(|c| c.from.max(c.to))
        .max()
        .unwrap_or(settled);
    let mut curve = Vec::new();
    for ef in 10..=top.max(settled) {
        curve.push((ef, db.recall_at(&plain.repo::<Point>(), ef).await));
    }
    plain.close().await;
    let repo = pg.repo::<Point>();
    let at = |ef: u32| {
        curve
            .iter()
            .find(|(e, _)| *e == ef)
            .map(|(_, r)| *r)
            .unwrap()
    };
    let smallest = curve.iter().find(|(_, r)| reaches(*r)).unwrap().0;
    let step = (f64::from(settled) * 0.1).ceil() as u32;
    println!(
        "ef_search 10 -> {settled} (smallest reaching {TARGET}: {smallest}, recall there {:.3}); \
         moves {:?}",
        at(settled),
        tuning
            .changes
            .iter()
            .map(|c| (c.from, c.to, c.recall))
            .collect::<Vec<_>>()
    );
    assert!(
        reaches(at(settled)),
        "recall at {settled} is {}",
        at(settled)
    );
    assert!(
        settled - smallest <= step,
        "{settled} vs {smallest}: more than one step ({step}) higher"
    );
    // Every raise left a value measured below the target, measured right.
    for change in &tuning.changes {
        let here = at(change.from);
        assert!((change.recall - here).abs() < 1e-12, "{change:?} vs {here}");
        assert_eq!(
            change.reason == Reason::BelowTarget,
            !reaches(here),
            "{change:?}"
        );
    }
    assert!(!reaches(at(tuning.too_low.unwrap())));

    // A search that sets no knob runs at the tuned value: same hits as asking for it.
    let tuned = search(&repo, 3, &db).await.unwrap();
    let asked = search(&repo, 3, &db).ef_search(settled).await.unwrap();
    assert_eq!(tuned, asked);
    idle(&pg).await;
    // An explicit `.ef_search(n)` wins, and its sample does not move the tuner.
    let low = search(&repo, 3, &db).ef_search(11).await.unwrap();
    idle(&pg).await;
    let field = the_field(&pg);
    assert_eq!(field.recent.last().unwrap().knob, Some(11));
    assert_eq!(field.current, Some(settled));
    let expected = db.recall(3, &low, |_| true);
    assert!((field.recent.last().unwrap().recall - expected).abs() < 1e-12);
    pg.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn the_tuner_never_passes_its_ceiling() {
    let db = Db::new().await;
    let pg = db.backend(config(tuning(14))).await;
    let field = tune(&pg, 10, async |r, q| point_search(&db, r, q).await).await;
    let tuning = field.tuning.unwrap();
    assert_eq!(field.current, Some(14));
    assert!(tuning.settled && !tuning.reachable, "{tuning:?}");
    assert!(
        tuning.changes.iter().all(|c| c.to <= 14),
        "{:?}",
        tuning.changes
    );
    pg.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn the_monitor_is_off_by_default_and_then_runs_no_query() {
    let db = Db::new().await;
    let before = db.seq_scans().await;
    let off = db
        .backend(reposmith_tests::pg_config(reposmith_tests::database_url()))
        .await;
    assert_eq!(off.recall().config(), &RecallConfig::default());
    let repo = off.repo::<Point>();
    for q in 0..QUERIES {
        search(&repo, q, &db).await.unwrap();
    }
    let report = off.recall().report();
    assert!(!report.enabled && report.fields.is_empty());
    assert_eq!((report.sampled, report.dropped, report.waiting), (0, 0, 0));
    // Closing flushes the sessions' table statistics.
    off.close().await;

    // The control: one sampled search is one sequential scan.
    let on = db.backend(config(monitored())).await;
    search(&on.repo::<Point>(), 0, &db).await.unwrap();
    idle(&on).await;
    assert_eq!(the_field(&on).samples, 1);
    on.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while db.seq_scans().await < before + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        db.seq_scans().await,
        before + 1,
        "only the one exact re-run scanned the table"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn the_tuner_raises_probes_on_an_ivfflat_field() {
    let db = Db::new().await;
    let loader = db
        .backend(reposmith_tests::pg_config(reposmith_tests::database_url()))
        .await;
    loader.create_tables::<Listed>().await.unwrap();
    let rows: Vec<Listed> = (0..ROWS)
        .map(|i| Listed {
            id: i as i64 + 1,
            embedding: Vector::from(db.vectors[i].clone()),
        })
        .collect();
    loader.repo::<Listed>().insert_many(&rows).await.unwrap();
    // The lists were made on an empty table: build them from the data.
    run(&loader, "REINDEX TABLE recall_lists").await;
    run(&loader, "ANALYZE recall_lists").await;
    loader.close().await;

    let mut recall = tuning(CEILING);
    recall.tune.as_mut().unwrap().probes = (1, 30);
    let pg = db.backend(config(recall)).await;
    let field = tune(&pg, 20, async |repo: &PgRepository<Listed>, q| {
        let query = Vector::from(db.queries[q].clone());
        repo.search_embedding(query, K).await.unwrap();
    })
    .await;
    let repo = pg.repo::<Listed>();
    let listed = |q: usize| repo.search_embedding(Vector::from(db.queries[q].clone()), K);
    let tuning = field.tuning.clone().unwrap();
    let settled = field.current.unwrap();
    assert!(tuning.settled && tuning.reachable, "{tuning:?}");
    assert!(field.recent.iter().all(|s| s.knob.is_some_and(|p| p <= 30)));
    // Recall at every probes value up to the tuned one, asked for explicitly.
    let mut curve = Vec::new();
    for probes in 1..=settled {
        let mut sum = 0.0;
        for q in 0..QUERIES {
            let hits = listed(q).probes(probes).await.unwrap();
            let found: Vec<usize> = hits.iter().map(|h| h.entity.id as usize - 1).collect();
            sum += db.truth[q].iter().filter(|i| found.contains(i)).count() as f64 / K as f64;
        }
        curve.push(sum / QUERIES as f64);
    }
    idle(&pg).await;
    let smallest = curve.iter().position(|r| reaches(*r)).unwrap() as u32 + 1;
    println!("probes 1 -> {settled} (smallest reaching {TARGET}: {smallest}); curve {curve:.3?}");
    assert!(reaches(curve[settled as usize - 1]));
    assert!(settled - smallest <= (f64::from(settled) * 0.1).ceil() as u32);
    pg.close().await;
    db.cleanup().await;
}
