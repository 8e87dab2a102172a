//! PostgreSQL behind PgBouncer in `pool_mode = transaction`
//! (`REPOSMITH_TEST_PGBOUNCER_URL`, which `cargo xtask services up
//! --pgbouncer` exports): the conformance suite and units of work in
//! `PoolerMode::Transaction`, concurrent queries that each check they got
//! their own row, and Direct mode refused at connect. The shape's cost on a
//! direct server is measured at the end.
//!
//! Where xtask says PgBouncer cannot exist (the user's own PostgreSQL),
//! the tests needing it return early, and the fixture runs Transaction
//! mode against PostgreSQL directly, which must be correct too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reposmith::postgres::{PoolerMode, sqlx};
use reposmith::postgres::{ReplicaConfig, Session};
use reposmith::{Error, Filter, PgBackend, PgConfig, PgRepository, Repository};
use reposmith_tests::conformance::entities::{Doc, Event, Setting};
use reposmith_tests::conformance::{Capabilities, Fixture};
use reposmith_tests::pg_replica::{self, PGBOUNCER_REPLICA_URL, PGBOUNCER_URL};
use reposmith_tests::{database_url, unique_name};

/// PgBouncer in transaction mode in front of the suite's PostgreSQL; `None`
/// (said on stdout) where it cannot run.
fn pgbouncer_url() -> Option<String> {
    pg_replica::required(PGBOUNCER_URL)
}

/// `url` with `search_path` set to `schema` through the URL's `options`,
/// which Transaction mode replays in every transaction.
fn in_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A schema of its own holding the conformance tables, reached through
/// PgBouncer in Transaction mode; created and dropped on a direct backend.
struct PoolerDb {
    pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl PoolerDb {
    async fn new() -> PoolerDb {
        PoolerDb::with(|config| config).await
    }

    async fn with(change: impl FnOnce(PgConfig) -> PgConfig) -> PoolerDb {
        let admin = PgBackend::connect(&PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("pgpooler");
        admin_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let server = pgbouncer_url().unwrap_or_else(database_url);
        let config = reposmith_tests::pg_config(in_schema(&server, &namespace))
            .pooler(PoolerMode::Transaction)
            .application_name(namespace.clone());
        let pg = PgBackend::connect(&change(config)).await.unwrap();
        pg.create_tables::<Doc>().await.unwrap();
        pg.create_tables::<Event>().await.unwrap();
        pg.create_tables::<Setting>().await.unwrap();
        PoolerDb {
            pg,
            admin,
            namespace,
        }
    }

    /// How many docs the schema holds, read directly (not through the pooler).
    async fn docs_stored(&self) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{}\".docs", self.namespace);
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(self.admin.pool())
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        self.pg.close().await;
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.namespace);
        admin_sql(&self.admin, &drop).await;
        self.admin.close().await;
    }
}

async fn admin_sql(admin: &PgBackend, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(admin.pool())
        .await
        .unwrap();
}

impl Fixture for PoolerDb {
    type Docs = PgRepository<Doc>;
    type Events = PgRepository<Event>;
    type Settings = PgRepository<Setting>;

    async fn setup() -> Self {
        PoolerDb::new().await
    }

    async fn teardown(self) {
        self.cleanup().await;
    }

    fn docs(&self) -> Self::Docs {
        self.pg.repo()
    }

    fn events(&self) -> Self::Events {
        self.pg.repo()
    }

    fn settings(&self) -> Self::Settings {
        self.pg.repo()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
}

/// Every conformance test through PgBouncer, each on its own schema.
mod conformance {
    reposmith_tests::conformance_tests!(super::PoolerDb);
}

/// 2,000 queries from 32 tasks through PgBouncer, three statement shapes
/// interleaved (get by id, find by title, count below a rank), each
/// checking it got the answer for *its* row: a statement answered on
/// another client's server connection shows up as a wrong row or count.
/// sqlx's default named statements failed this behind the same PgBouncer
/// (294 wrong, 1,064 failed).
#[tokio::test]
async fn two_thousand_concurrent_queries_each_get_their_own_answer() {
    const ROWS: usize = 2_000;
    const TASKS: usize = 32;
    // What is checked is each answer, not the wait: PgBouncer's 20 server
    // connections are shared with the tests running beside this one, and on
    // a loaded machine a connection's first statement waited past the
    // default 5 s acquire timeout for one of them.
    let db = PoolerDb::with(|config| {
        config
            .max_connections(TASKS as u32)
            .acquire_timeout(Duration::from_secs(30))
    })
    .await;
    let repo = db.pg.repo::<Doc>();
    let docs: Vec<Doc> = (0..ROWS)
        .map(|i| Doc {
            rank: Some(i as i32),
            ..Doc::new(format!("doc-{i}"))
        })
        .collect();
    assert_eq!(repo.insert_many(&docs).await.unwrap(), ROWS as u64);
    let stored = Arc::new(repo.find(Filter::all()).await.unwrap());
    let tasks = (0..TASKS).map(|task| {
        let (repo, stored) = (repo.clone(), Arc::clone(&stored));
        tokio::spawn(async move {
            let (mut wrong, mut failed) = (0, 0);
            for doc in stored.iter().skip(task).step_by(TASKS) {
                match answered_right(&repo, doc).await {
                    Ok(true) => {}
                    Ok(false) => wrong += 1,
                    Err(error) => {
                        eprintln!("failed: {error}");
                        failed += 1;
                    }
                }
            }
            (wrong, failed)
        })
    });
    let mut totals = (0, 0);
    for outcome in futures_util::future::join_all(tasks).await {
        let (wrong, failed) = outcome.unwrap();
        totals = (totals.0 + wrong, totals.1 + failed);
    }
    assert_eq!(totals, (0, 0), "(wrong, failed) of {ROWS} queries");
    db.cleanup().await;
}

/// One query about `doc`, its shape picked by rank; whether the answer is `doc`'s.
async fn answered_right(repo: &PgRepository<Doc>, doc: &Doc) -> reposmith::Result<bool> {
    let rank = doc.rank.unwrap();
    Ok(match rank % 3 {
        0 => repo.get(&doc.id).await?.as_ref() == Some(doc),
        1 => {
            let found = repo.find(Doc::TITLE.eq(doc.title.clone())).one().await?;
            found.as_ref() == Some(doc)
        }
        _ => repo.count(Doc::RANK.lt(rank)).await? == rank as u64,
    })
}

/// Direct mode through PgBouncer is refused at connect, naming the setting,
/// also when reposmith has no session setting of its own to send.
#[tokio::test]
async fn direct_mode_through_pgbouncer_is_refused_at_connect() {
    let Some(pgbouncer) = pgbouncer_url() else {
        return;
    };
    for config in [
        reposmith_tests::pg_config(pgbouncer.clone()),
        reposmith_tests::pg_config(pgbouncer.clone())
            .statement_timeout(None)
            .iterative_scan(false),
    ] {
        let err = PgBackend::connect(&config).await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        for needle in [
            "PgConfig::pooler(PoolerMode::Transaction)",
            "REPOSMITH_PG_POOLER=transaction",
            "PgBouncer",
        ] {
            assert!(message.contains(needle), "{message}");
        }
    }
    // The same server reached directly is fine in Direct mode.
    PgBackend::connect(&reposmith_tests::pg_config(database_url()))
        .await
        .unwrap()
        .close()
        .await;
}

/// Units of work through PgBouncer commit and roll back, and run with the
/// configured session settings: the schema from the URL's `options`, and a
/// `statement_timeout` that ends a lock wait on the server (the client's
/// own deadline would take 5 s longer).
#[tokio::test]
async fn units_commit_roll_back_and_run_with_the_session_settings() {
    // A holder and a waiter unit at once: two connections.
    let db = PoolerDb::with(|config| {
        config
            .statement_timeout(Some(Duration::from_millis(300)))
            .max_connections(2)
    })
    .await;
    let unit = db.pg.begin().await.unwrap();
    let kept = unit.repo::<Doc>().insert(&Doc::new("kept")).await.unwrap();
    unit.commit().await.unwrap();
    let unit = db.pg.begin().await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("undone"))
        .await
        .unwrap();
    unit.rollback().await.unwrap();
    assert_eq!(db.docs_stored().await, 1);

    let holder = db.pg.begin().await.unwrap();
    holder.repo::<Doc>().update(&kept).await.unwrap();
    let waiter = db.pg.begin().await.unwrap();
    let started = Instant::now();
    let err = waiter.repo::<Doc>().update(&kept).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    assert!(
        waiter.commit().await.is_err(),
        "a failed statement poisons the unit"
    );
    holder.commit().await.unwrap();
    // The pool outside units runs with the same settings.
    let holder = db.pg.begin().await.unwrap();
    let current = db.pg.repo::<Doc>().get(&kept.id).await.unwrap().unwrap();
    holder.repo::<Doc>().update(&current).await.unwrap();
    let started = Instant::now();
    let err = db.pg.repo::<Doc>().update(&current).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    holder.rollback().await.unwrap();
    db.cleanup().await;
}

/// Replicas behind PgBouncer too: a session's write on the primary, then
/// its read on the replica, which waits for the write to be replayed there
/// and runs in the same transaction shape.
#[tokio::test]
async fn a_session_reads_its_write_on_a_replica_behind_pgbouncer() {
    let (Some(primary), Some(replica)) =
        (pgbouncer_url(), pg_replica::required(PGBOUNCER_REPLICA_URL))
    else {
        return;
    };
    let admin = PgBackend::connect(&PgConfig::new(database_url()))
        .await
        .unwrap();
    let namespace = unique_name("pgpooler");
    admin_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
    let path = format!("{namespace},public");
    let config = reposmith_tests::pg_config(in_schema(&primary, &path))
        .pooler(PoolerMode::Transaction)
        // Other tests' WAL (template clones of `#[reposmith::test]`) must
        // not push this replica past the lag limit or the session's wait.
        .replicas(
            ReplicaConfig::new([in_schema(&replica, &path)])
                .max_lag(1 << 30)
                .read_your_writes_timeout(Duration::from_secs(10)),
        );
    let pg = PgBackend::connect(&config).await.unwrap();
    pg.create_tables::<Doc>().await.unwrap();
    let session = Session::new();
    let docs = pg.repo::<Doc>().in_session(&session);
    let doc = docs.insert(&Doc::new("replayed")).await.unwrap();
    assert_eq!(docs.get(&doc.id).await.unwrap(), Some(doc));
    let stats = pg.read_stats();
    assert_eq!((stats.replicas, stats.fallbacks), (1, 0), "{stats:?}");
    pg.close().await;
    admin_sql(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}

/// The outbox relay behind PgBouncer polls (`LISTEN` cannot work there):
/// a committed unit's event reaches its handler within a poll interval,
/// and the outbox's own statements (admin, purge) run in the pooler's shape.
#[tokio::test]
async fn the_outbox_relay_polls_and_delivers_behind_pgbouncer() {
    use reposmith::outbox::{Outbox, OutboxMessage, Relay, RelayOptions};
    let db = PoolerDb::new().await;
    db.pg.create_outbox_tables().await.unwrap();
    let (sent, mut received) = tokio::sync::mpsc::unbounded_channel();
    let relay = Relay::new(&db.pg)
        .handler("pooler-test.noted", move |message: OutboxMessage| {
            let sent = sent.clone();
            async move {
                let _ = sent.send(message.id);
                Ok(())
            }
        })
        .unwrap()
        .options(RelayOptions::default().poll_interval(Duration::from_millis(200)))
        .spawn();
    let unit = db.pg.begin().await.unwrap();
    let id = unit.publish_on("pooler-test.noted", &"hello").unwrap();
    unit.commit().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), received.recv())
        .await
        .expect("the polling relay delivered within seconds");
    assert_eq!(got, Some(id));
    relay.shutdown().await.unwrap();
    let outbox = Outbox::new(&db.pg);
    assert_eq!(outbox.stats().await.unwrap().pending, 0);
    assert_eq!(outbox.purge_done(Duration::ZERO).await.unwrap(), 1);
    db.cleanup().await;
}

/// A point with an HNSW index, for searches through PgBouncer.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "pooler_points", backend = "postgres")]
struct Point {
    #[repo(id)]
    id: i64,
    #[repo(vector(dims = 8, distance = "cosine", index = "hnsw"))]
    embedding: reposmith::Vector,
}

/// Vector searches through PgBouncer answer what the same searches answer
/// on PostgreSQL directly, with the session's `ef_search` and with their
/// own, from eight connections at once: each new connection has sqlx look
/// up pgvector's type OIDs, inside the operation's transaction.
#[tokio::test]
async fn vector_searches_through_pgbouncer_match_direct_ones() {
    use reposmith::prelude::*;
    let Some(pgbouncer) = pgbouncer_url() else {
        return;
    };
    let admin = PgBackend::connect(&PgConfig::new(database_url()))
        .await
        .unwrap();
    let namespace = unique_name("pgpooler");
    admin_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
    // pgvector's types live in `public`.
    let path = format!("{namespace},public");
    let pooled = reposmith_tests::pg_config(in_schema(&pgbouncer, &path))
        .pooler(PoolerMode::Transaction)
        .max_connections(reposmith_tests::pool_size(8));
    let pooled = PgBackend::connect(&pooled).await.unwrap();
    let direct = reposmith_tests::pg_config(in_schema(&database_url(), &path));
    let direct = PgBackend::connect(&direct).await.unwrap();
    pooled.create_tables::<Point>().await.unwrap();
    let points: Vec<Point> = (0..500)
        .map(|i| Point {
            id: i + 1,
            embedding: (0..8)
                .map(|d| (i as f32 * 0.37 + d as f32).sin() + 1.1)
                .collect::<Vec<f32>>()
                .into(),
        })
        .collect();
    pooled.repo::<Point>().insert_many(&points).await.unwrap();
    let searches = (0..16).map(|n| {
        let (pooled, direct) = (pooled.repo::<Point>(), direct.repo::<Point>());
        let query = points[n * 31].embedding.clone();
        async move {
            let ids = |hits: Vec<Scored<Point>>| {
                hits.into_iter().map(|h| h.entity.id).collect::<Vec<_>>()
            };
            let ef = if n % 2 == 0 { 40 } else { 80 };
            let through = pooled
                .search_embedding(query.clone(), 5)
                .ef_search(ef)
                .await
                .unwrap();
            let straight = direct
                .search_embedding(query, 5)
                .ef_search(ef)
                .await
                .unwrap();
            assert_eq!(ids(through), ids(straight), "search {n}, ef_search {ef}");
        }
    });
    futures_util::future::join_all(searches).await;
    pooled.close().await;
    direct.close().await;
    admin_sql(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}

/// Transaction mode names no statement and sets nothing for the session:
/// on a direct server (where one session serves every operation, so a
/// named statement or a session setting would stay), after reads, writes
/// and a unit, `pg_prepared_statements` is empty and `statement_timeout`
/// is the server's again.
#[tokio::test]
async fn transaction_mode_leaves_no_statement_or_setting_behind() {
    let namespace = unique_name("pgpooler");
    let admin = PgBackend::connect(&PgConfig::new(database_url()))
        .await
        .unwrap();
    admin_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
    let config = reposmith_tests::pg_config(in_schema(&database_url(), &namespace))
        .pooler(PoolerMode::Transaction)
        .statement_timeout(Some(Duration::from_secs(7)))
        .max_connections(1);
    let pg = PgBackend::connect(&config).await.unwrap();
    pg.create_tables::<Doc>().await.unwrap();
    let repo = pg.repo::<Doc>();
    let doc = repo.insert(&Doc::new("one")).await.unwrap();
    assert_eq!(repo.get(&doc.id).await.unwrap(), Some(doc.clone()));
    assert_eq!(repo.count(Doc::TITLE.eq("one")).await.unwrap(), 1);
    let unit = pg.begin().await.unwrap();
    unit.repo::<Doc>().delete(&doc.id).await.unwrap();
    unit.commit().await.unwrap();
    let mut connection = pg.acquire().await.unwrap();
    let left = "SELECT (SELECT count(*) FROM pg_prepared_statements), \
                current_setting('statement_timeout')";
    let left = sqlx::query_as::<_, (i64, String)>(left)
        .fetch_one(&mut *connection)
        .await;
    connection.settle(&left);
    let (named, timeout) = left.unwrap();
    assert_eq!(named, 0);
    assert_ne!(timeout, "7s", "a SET LOCAL outlived its transaction");
    drop(connection);
    pg.close().await;
    admin_sql(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}

/// The price of the shape, measured rather than asserted: get-by-id on
/// one connection, Direct and Transaction mode on the direct server, and
/// Transaction mode through PgBouncer when it runs. Run with
/// `--nocapture` to see it.
#[tokio::test]
async fn transaction_mode_cost_on_a_direct_server() {
    let namespace = unique_name("pgpooler");
    let admin = PgBackend::connect(&PgConfig::new(database_url()))
        .await
        .unwrap();
    admin_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
    let direct = in_schema(&database_url(), &namespace);
    let mut runs = vec![
        ("Direct", direct.clone(), PoolerMode::Direct),
        ("Transaction", direct, PoolerMode::Transaction),
    ];
    if let Some(pgbouncer) = pgbouncer_url() {
        let through = in_schema(&pgbouncer, &namespace);
        runs.push((
            "Transaction through PgBouncer",
            through,
            PoolerMode::Transaction,
        ));
    }
    let mut rates = Vec::new();
    for (label, url, mode) in runs {
        let rate = gets_per_second(reposmith_tests::pg_config(url).pooler(mode), label).await;
        eprintln!("{label}: {rate:.0} get-by-id/s on one connection");
        rates.push(rate);
    }
    eprintln!(
        "Transaction mode: {:.2}x Direct's rate on the direct server",
        rates[1] / rates[0]
    );
    admin_sql(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}

/// Get-by-id calls a second with `config` on one connection: 2,000 calls
/// under `REPOSMITH_HEAVY=1`, 300 otherwise (the figure is printed, not
/// asserted; CI needs each mode to work, the benchmark measures it).
async fn gets_per_second(config: PgConfig, title: &str) -> f64 {
    let gets: u32 = if reposmith_tests::heavy() { 2_000 } else { 300 };
    let pg = PgBackend::connect(&config.max_connections(1))
        .await
        .unwrap();
    pg.create_tables::<Doc>().await.unwrap();
    let repo = pg.repo::<Doc>();
    let doc = repo.insert(&Doc::new(title)).await.unwrap();
    repo.get(&doc.id).await.unwrap();
    let started = Instant::now();
    for _ in 0..gets {
        assert!(repo.get(&doc.id).await.unwrap().is_some());
    }
    let rate = f64::from(gets) / started.elapsed().as_secs_f64();
    pg.close().await;
    rate
}
