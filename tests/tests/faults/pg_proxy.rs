//! PostgreSQL through the fault proxy: a lost COMMIT reply, a stalled
//! connection mid-query, a reset mid-query. Each test runs on a pool of one
//! connection through a [`FaultProxy`], reads the truth directly (not
//! through the proxy), and is bounded in time.

use std::future::Future;
use std::time::{Duration, Instant};

use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{Error, Filter, PgBackend, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::fault_proxy::{FaultProxy, Matcher, Mode, ReplyLoss, Wire};
use reposmith_tests::{database_url, host_port, run_sql, unique_name, with_host, with_search_path};

/// No single step of these tests may take longer.
const STEP: Duration = Duration::from_secs(20);

/// The client-side deadline's slack over `statement_timeout` (the
/// executor's `CLIENT_DEADLINE_SLACK`).
const SLACK: Duration = Duration::from_secs(5);

/// A schema of its own, a pool of one connection through the proxy, and a
/// direct admin pool that reads the truth.
struct Proxied {
    proxy: FaultProxy,
    pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl Proxied {
    async fn new(statement_timeout: Option<Duration>) -> Self {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("faultproxy");
        run_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let proxy = FaultProxy::start(host_port(&database_url()), Wire::Postgres).await;
        let url = with_host(&database_url(), &proxy.host_port());
        let url = with_search_path(&url, &namespace);
        let config = reposmith_tests::pg_config(url)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .statement_timeout(statement_timeout)
            .application_name(namespace.clone());
        let pg = PgBackend::connect(&config).await.unwrap();
        pg.create_tables::<Doc>().await.unwrap();
        Proxied {
            proxy,
            pg,
            admin,
            namespace,
        }
    }

    /// Rows titled `title`, read directly.
    async fn rows(&self, title: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM \"{}\".docs WHERE title = $1",
            self.namespace
        );
        sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(title)
            .fetch_one(self.admin.pool())
            .await
            .unwrap()
    }

    /// This pool's sessions on the server: (all, idle in transaction, active).
    async fn sessions(&self) -> (i64, i64, i64) {
        sqlx::query_as(
            "SELECT count(*), \
                    count(*) FILTER (WHERE state LIKE 'idle in transaction%'), \
                    count(*) FILTER (WHERE state = 'active') \
             FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&self.namespace)
        .fetch_one(self.admin.pool())
        .await
        .unwrap()
    }

    /// Waits (at most 5 s) until at most one session of this pool is left
    /// and none is in a transaction or active; the last counts seen.
    async fn settled(&self) -> (i64, i64, i64) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let seen = self.sessions().await;
            if (seen.0 <= 1 && seen.1 == 0 && seen.2 == 0) || Instant::now() > until {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cleanup(self) {
        self.pg.close().await;
        drop(self.proxy);
        run_sql(
            &self.admin,
            &format!("DROP SCHEMA \"{}\" CASCADE", self.namespace),
        )
        .await;
        self.admin.close().await;
    }
}

/// `step`, or a panic naming it if it takes longer than [`STEP`].
async fn bounded<T>(what: &str, step: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, step)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {STEP:?}"))
}

/// The reply to a unit's COMMIT is lost (the server committed, the
/// connection is closed before the client hears it): `commit()` says the
/// outcome is unknown, never "rolled back"; the row is there; the next unit
/// runs on a fresh connection.
#[tokio::test]
async fn a_lost_commit_reply_is_outcome_unknown_and_the_row_is_committed() {
    let db = Proxied::new(None).await;
    let commits = Matcher::postgres_query("COMMIT");
    db.proxy
        .set_mode(Mode::LoseReply(ReplyLoss::new(commits).times(1)));
    let unit = bounded("begin", db.pg.begin()).await.unwrap();
    bounded("insert", unit.repo::<Doc>().insert(&Doc::new("lost-reply")))
        .await
        .unwrap();
    let outcome = bounded("commit", unit.commit()).await;
    assert!(
        matches!(outcome, Err(Error::CommitOutcomeUnknown { .. })),
        "{outcome:?}"
    );
    let stats = db.proxy.stats();
    assert_eq!((stats.matched, stats.lost), (1, 1), "{stats:?}");
    assert_eq!(db.rows("lost-reply").await, 1, "the server committed");
    let unit = bounded("next begin", db.pg.begin()).await.unwrap();
    bounded("next insert", unit.repo::<Doc>().insert(&Doc::new("next")))
        .await
        .unwrap();
    bounded("next commit", unit.commit()).await.unwrap();
    assert_eq!(db.rows("next").await, 1);
    let connections = db.proxy.stats().connections;
    assert!(
        connections >= 2,
        "{connections} connections: reused the cut one"
    );
    println!(
        "commit reply lost: outcome unknown, row present, next unit ok on a new connection \
         ({connections} connections)"
    );
    db.cleanup().await;
}

/// The reply to an autocommit insert through the pool is lost: the row is
/// committed, the pool's next write works. What the caller is told is
/// printed: today `ConnectionLost`, which the error table describes as
/// "connection broke mid-operation", though the write did happen.
#[tokio::test]
async fn a_lost_reply_to_a_pool_insert_leaves_the_row_and_the_pool_working() {
    let db = Proxied::new(None).await;
    let marker = b"lost-pool-reply".to_vec();
    // The Bind message carries the title; the reply (BindComplete,
    // CommandComplete, ReadyForQuery) only leaves the server at Sync, after
    // the autocommit transaction committed.
    let binds = Matcher::new(move |m| {
        m.first() == Some(&b'B') && m.windows(marker.len()).any(|w| w == marker)
    });
    db.proxy
        .set_mode(Mode::LoseReply(ReplyLoss::new(binds).times(1)));
    let docs = db.pg.repo::<Doc>();
    let outcome = bounded("insert", docs.insert(&Doc::new("lost-pool-reply"))).await;
    assert_eq!(db.proxy.stats().lost, 1, "{:?}", db.proxy.stats());
    // The statement was its own COMMIT: the caller must not take "lost
    // before commit" for an answer and retry into a duplicate.
    assert!(
        matches!(outcome, Err(Error::CommitOutcomeUnknown { .. })),
        "{outcome:?}"
    );
    assert_eq!(db.rows("lost-pool-reply").await, 1, "the server committed");
    bounded("next insert", docs.insert(&Doc::new("next")))
        .await
        .unwrap();
    println!(
        "pool insert reply lost: caller told {}, row present, next insert ok",
        first_line(&outcome.unwrap_err())
    );
    db.cleanup().await;
}

/// A connection that goes silent mid-query (the server answered, the proxy
/// holds the reply): the server's `statement_timeout` cannot fire, the
/// client-side deadline does, within deadline + 1 s; the connection is
/// discarded, the pool's next operation works on a new one, and no session
/// stays active or in a transaction.
#[tokio::test]
async fn a_stalled_query_times_out_at_the_client_deadline_and_its_connection_is_discarded() {
    let timeout = Duration::from_millis(500);
    let db = Proxied::new(Some(timeout)).await;
    let docs = db.pg.repo::<Doc>();
    docs.insert(&Doc::new("before")).await.unwrap();
    db.proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = bounded("stalled count", docs.count(Filter::all())).await;
    let took = started.elapsed();
    db.proxy.set_mode(Mode::Pass);
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    let deadline = timeout + SLACK;
    assert!(took < deadline + Duration::from_secs(1), "{took:?}");
    assert_eq!(
        bounded("next count", docs.count(Filter::all()))
            .await
            .unwrap(),
        1
    );
    let connections = db.proxy.stats().connections;
    let (sessions, in_transaction, active) = db.settled().await;
    assert_eq!((in_transaction, active), (0, 0), "{sessions} sessions");
    assert_eq!(sessions, 1, "the stalled session is gone");
    assert!(connections >= 2, "the stalled connection was reused");
    println!(
        "stalled query: Timeout after {took:.2?} (deadline {deadline:?}), next operation ok, \
         {connections} connections, {sessions} session left, 0 in transaction"
    );
    db.cleanup().await;
}

/// A unit whose statement is cut by the client deadline on a stalled
/// connection is poisoned: commit refuses, nothing it wrote is stored, no
/// transaction stays open, and the pool's next unit works.
#[tokio::test]
async fn a_unit_cut_by_a_stall_is_poisoned_and_leaves_no_open_transaction() {
    let timeout = Duration::from_millis(500);
    let db = Proxied::new(Some(timeout)).await;
    let unit = bounded("begin", db.pg.begin()).await.unwrap();
    let docs = unit.repo::<Doc>();
    bounded("first insert", docs.insert(&Doc::new("unit-1")))
        .await
        .unwrap();
    db.proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = bounded("stalled insert", docs.insert(&Doc::new("unit-2"))).await;
    let took = started.elapsed();
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert!(took < timeout + SLACK + Duration::from_secs(1), "{took:?}");
    // Still stalled: ending the cut unit must not wait on the connection
    // (a ROLLBACK sent into it would wait a second deadline).
    let ending = Instant::now();
    let committed = bounded("commit", unit.commit()).await;
    let ended_in = ending.elapsed();
    db.proxy.set_mode(Mode::Pass);
    assert!(committed.is_err(), "a cut unit committed: {committed:?}");
    assert!(
        ended_in < Duration::from_secs(1),
        "ending the cut unit took {ended_in:?}"
    );
    assert_eq!(db.rows("unit-1").await + db.rows("unit-2").await, 0);
    let (sessions, in_transaction, active) = db.settled().await;
    assert_eq!((in_transaction, active), (0, 0), "{sessions} sessions");
    let unit = bounded("next begin", db.pg.begin()).await.unwrap();
    bounded("next insert", unit.repo::<Doc>().insert(&Doc::new("next")))
        .await
        .unwrap();
    bounded("next commit", unit.commit()).await.unwrap();
    assert_eq!(db.rows("next").await, 1);
    println!(
        "stalled unit: Timeout after {took:.2?}, commit refused ({}), nothing written, \
         0 in transaction, next unit ok",
        first_line(&committed.unwrap_err())
    );
    db.cleanup().await;
}

/// A connection reset (RST) while a query waits for its reply: a typed
/// `ConnectionLost` at once, and the pool's next operation works.
#[tokio::test]
async fn a_reset_mid_query_is_connection_lost_and_the_next_operation_works() {
    let db = Proxied::new(None).await;
    let docs = db.pg.repo::<Doc>();
    docs.insert(&Doc::new("before")).await.unwrap();
    db.proxy.set_mode(Mode::Stall);
    let sent_before = db.proxy.stats().bytes_up;
    let pending = tokio::spawn({
        let docs = db.pg.repo::<Doc>();
        async move {
            let started = Instant::now();
            (docs.count(Filter::all()).await, started.elapsed())
        }
    });
    // Reset once the query has reached the proxy (held there), not after
    // a guess at how long that takes.
    let waited = Instant::now();
    while db.proxy.stats().bytes_up == sent_before {
        assert!(
            waited.elapsed() < Duration::from_secs(5),
            "the query never reached the proxy"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    db.proxy.set_mode(Mode::Reset);
    let (outcome, took) = bounded("reset count", pending).await.unwrap();
    db.proxy.set_mode(Mode::Pass);
    assert!(
        matches!(outcome, Err(Error::ConnectionLost { .. })),
        "{outcome:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        bounded("next count", docs.count(Filter::all()))
            .await
            .unwrap(),
        1
    );
    let (_, in_transaction, active) = db.settled().await;
    assert_eq!((in_transaction, active), (0, 0));
    println!("reset mid-query: ConnectionLost after {took:.2?}, next operation ok");
    db.cleanup().await;
}

/// A COMMIT sent into a stalled connection: the client-side deadline ends
/// the wait and the caller is told the outcome is unknown (COMMIT was
/// sent), not a plain timeout; nothing is left in a transaction once the
/// network comes back, and the next unit works.
#[tokio::test]
async fn a_commit_into_a_stalled_connection_is_outcome_unknown_at_the_deadline() {
    let timeout = Duration::from_millis(500);
    let db = Proxied::new(Some(timeout)).await;
    let unit = bounded("begin", db.pg.begin()).await.unwrap();
    bounded(
        "insert",
        unit.repo::<Doc>().insert(&Doc::new("stalled-commit")),
    )
    .await
    .unwrap();
    db.proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = bounded("stalled commit", unit.commit()).await;
    let took = started.elapsed();
    db.proxy.set_mode(Mode::Pass);
    let (sessions, in_transaction, active) = db.settled().await;
    let rows = db.rows("stalled-commit").await;
    println!(
        "stalled commit: {outcome:?} after {took:.2?}, {rows} row(s), {sessions} session(s), \
         {in_transaction} in transaction, {active} active"
    );
    assert!(
        matches!(outcome, Err(Error::CommitOutcomeUnknown { .. })),
        "{outcome:?}"
    );
    assert!(took < timeout + SLACK + Duration::from_secs(1), "{took:?}");
    assert_eq!((in_transaction, active), (0, 0), "{sessions} sessions");
    let unit = bounded("next begin", db.pg.begin()).await.unwrap();
    bounded("next insert", unit.repo::<Doc>().insert(&Doc::new("next")))
        .await
        .unwrap();
    bounded("next commit", unit.commit()).await.unwrap();
    db.cleanup().await;
}

/// BEGIN sent into a stalled connection: the client-side deadline ends the
/// wait with `Timeout`, and the pool's next unit works once the network is
/// back.
#[tokio::test]
async fn a_begin_into_a_stalled_connection_times_out_at_the_deadline() {
    let timeout = Duration::from_millis(500);
    let db = Proxied::new(Some(timeout)).await;
    bounded("warm", db.pg.repo::<Doc>().count(Filter::all()))
        .await
        .unwrap();
    db.proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = bounded("stalled begin", db.pg.begin()).await.map(drop);
    let took = started.elapsed();
    db.proxy.set_mode(Mode::Pass);
    println!("stalled begin: {outcome:?} after {took:.2?}");
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert!(took < timeout + SLACK + Duration::from_secs(1), "{took:?}");
    let unit = bounded("next begin", db.pg.begin()).await.unwrap();
    bounded("next commit", unit.commit()).await.unwrap();
    db.cleanup().await;
}

/// The first line of `error`'s message, for a one-line figure.
fn first_line(error: &Error) -> String {
    error.to_string().lines().next().unwrap_or("").to_owned()
}

/// A cached entity: a unit that writes it carries a cache invalidation,
/// which its commit makes durable in the outbox (table lookup, then write).
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "proxied_notes", backend = "postgres", cache(ttl = "1m"))]
struct CachedNote {
    #[repo(id)]
    id: i64,
    body: String,
}

/// A commit whose durable cache invalidation meets a stalled connection:
/// the outbox lookup on the unit's own connection is held to the
/// client-side deadline, the unit ends with `Timeout` (nothing committed:
/// COMMIT was never sent), the stalled connection is closed rather than
/// pooled, and the next unit commits once the network is back.
#[tokio::test]
async fn a_commit_whose_cache_invalidation_meets_a_stall_times_out_at_the_deadline() {
    let timeout = Duration::from_millis(500);
    let db = Proxied::new(Some(timeout)).await;
    let redis = reposmith::RedisBackend::connect(&reposmith::RedisConfig::new(
        reposmith_tests::redis_url(),
    ))
    .await
    .unwrap();
    let store = std::sync::Arc::new(redis.cache_store(&reposmith::cache::CacheOptions::default()));
    let options = reposmith::cache::CacheOptions::default().prefix(unique_name("t"));
    let cache = reposmith::cache::Cache::new(store, options).unwrap();
    let pg = db.pg.clone().with_cache(cache);
    bounded("tables", pg.create_tables::<CachedNote>())
        .await
        .unwrap();
    bounded("outbox", pg.create_outbox_tables()).await.unwrap();
    let unit = bounded("begin", pg.begin()).await.unwrap();
    let note = CachedNote {
        id: 0,
        body: "stalled-invalidation".into(),
    };
    bounded("insert", unit.repo::<CachedNote>().insert(&note))
        .await
        .unwrap();
    db.proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = bounded("stalled commit", unit.commit()).await;
    let took = started.elapsed();
    db.proxy.set_mode(Mode::Pass);
    let (sessions, in_transaction, active) = db.settled().await;
    let sql = format!("SELECT count(*) FROM \"{}\".proxied_notes", db.namespace);
    let rows: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(db.admin.pool())
        .await
        .unwrap();
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert!(took >= timeout, "{took:?}");
    assert!(took < timeout + SLACK + STEP / 4, "{took:?}");
    assert_eq!(rows, 0, "COMMIT was never sent");
    assert_eq!((in_transaction, active), (0, 0), "{sessions} sessions");
    let unit = bounded("next begin", pg.begin()).await.unwrap();
    bounded("next insert", unit.repo::<CachedNote>().insert(&note))
        .await
        .unwrap();
    bounded("next commit", unit.commit()).await.unwrap();
    println!(
        "a commit carrying a cache invalidation into a stalled connection: Timeout after \
         {took:.2?} (statement_timeout {timeout:?} + slack), 0 rows, the next unit committed"
    );
    db.cleanup().await;
}
