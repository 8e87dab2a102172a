//! Each real service works end to end through the `Store`: pgvector in
//! PostgreSQL, transactions in MongoDB, a round trip in Redis. The
//! PostgreSQL replica and PgBouncer of `cargo xtask test` are checked with
//! plain connections: the replica is in recovery and shows a row committed
//! on the primary within seconds, catches up after being stopped, and
//! PgBouncer answers inside a transaction. Like the other services, these
//! fail (saying how to start them) when their variables are unset, unless
//! xtask said they cannot exist (`DATABASE_URL` is the user's server). Tests
//! that touch the replica have `replica` in their names: nextest runs them
//! one at a time (group `pg-replica`), so one that stops it stops nobody
//! else's.

use std::time::{Duration, Instant};

use reposmith::mongo::mongodb::bson::doc;
use reposmith::postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use reposmith::redis::AsyncCommands;
use reposmith::{Config, MongoConfig, RedisConfig, Store};
use reposmith_tests::pg_replica::{self, PGBOUNCER_REPLICA_URL, PGBOUNCER_URL, REPLICA_URL};
use reposmith_tests::{database_url, mongodb_url, redis_url, unique_name};

/// How soon a committed row must be readable on the replica.
const REPLICATION_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn pgvector_orders_by_distance_and_builds_an_hnsw_index() {
    let config = Config::new().with_postgres(reposmith_tests::pg_config(database_url()));
    let store = Store::connect(config).await.expect("connect to postgres");
    let pg = store.postgres().unwrap();
    let health = pg.ping().await.expect("ping");
    let major: u32 = health
        .server_version
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        major >= 13,
        "pgvector 0.8 needs PostgreSQL 13+, got {}",
        health.server_version
    );
    assert!(
        health.pgvector_available.is_some(),
        "no pgvector on this server: {health}"
    );

    let mut conn = pg.acquire().await.unwrap();
    // A temporary table is private to this connection and vanishes with it, so
    // a fixed name cannot collide with a concurrent test.
    sqlx::query("CREATE TEMP TABLE vec_probe (id int PRIMARY KEY, embedding vector(3))")
        .execute(&mut *conn)
        .await
        .expect("the vector type exists");
    for (id, vector) in [(1, "[1,0,0]"), (2, "[0,1,0]"), (3, "[0.9,0.1,0]")] {
        sqlx::query("INSERT INTO vec_probe VALUES ($1, $2::vector)")
            .bind(id)
            .bind(vector)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query("CREATE INDEX ON vec_probe USING hnsw (embedding vector_cosine_ops)")
        .execute(&mut *conn)
        .await
        .expect("hnsw index");
    let nearest: Vec<i32> =
        sqlx::query_scalar("SELECT id FROM vec_probe ORDER BY embedding <=> $1::vector LIMIT 2")
            .bind("[1,0,0]")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(nearest, vec![1, 3]);
    let installed: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_optional(&mut *conn)
            .await
            .unwrap();
    assert_eq!(installed, pg.ping().await.unwrap().pgvector_installed);
}

#[tokio::test]
async fn mongo_transaction_commits_and_aborts() {
    let config = Config::new().with_mongo(MongoConfig::new(mongodb_url()));
    let store = Store::connect(config).await.expect("connect to mongodb");
    let mongo = store.mongo().unwrap();
    assert!(
        mongo.capabilities().transactions,
        "{:?}",
        mongo.capabilities()
    );

    let collection = mongo
        .database()
        .collection::<reposmith::mongo::mongodb::bson::Document>(&unique_name("txn_probe"));
    // Transactions cannot create collections on every server version: create it first.
    collection.insert_one(doc! { "seed": true }).await.unwrap();
    let mut session = mongo.client().start_session().await.unwrap();

    session.start_transaction().await.unwrap();
    collection
        .insert_one(doc! { "kind": "kept" })
        .session(&mut session)
        .await
        .unwrap();
    session.commit_transaction().await.unwrap();

    session.start_transaction().await.unwrap();
    collection
        .insert_one(doc! { "kind": "dropped" })
        .session(&mut session)
        .await
        .unwrap();
    let inside: u64 = collection
        .count_documents(doc! { "kind": "dropped" })
        .session(&mut session)
        .await
        .unwrap();
    assert_eq!(inside, 1, "the transaction sees its own write");
    let outside = collection
        .count_documents(doc! { "kind": "dropped" })
        .await
        .unwrap();
    assert_eq!(
        outside, 0,
        "uncommitted writes are invisible outside the transaction"
    );
    session.abort_transaction().await.unwrap();

    assert_eq!(
        collection
            .count_documents(doc! { "kind": "kept" })
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        collection
            .count_documents(doc! { "kind": "dropped" })
            .await
            .unwrap(),
        0
    );
    collection.drop().await.unwrap();
}

#[tokio::test]
async fn redis_round_trip_and_version() {
    let config = Config::new().with_redis(RedisConfig::new(redis_url()));
    let store = Store::connect(config).await.expect("connect to redis");
    let redis = store.redis().unwrap();
    let health = redis.ping().await.unwrap();
    assert!(
        health
            .server_version
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "{health}"
    );

    let key = unique_name("reposmith:test:roundtrip");
    let mut conn = redis.connection();
    let _: () = conn
        .set_ex(&key, "value \u{1F980} with unicode", 30)
        .await
        .unwrap();
    let back: String = conn.get(&key).await.unwrap();
    assert_eq!(back, "value \u{1F980} with unicode");
    let ttl: i64 = conn.ttl(&key).await.unwrap();
    assert!((1..=30).contains(&ttl), "ttl {ttl}");
    let _: () = conn.del(&key).await.unwrap();
    let gone: Option<String> = conn.get(&key).await.unwrap();
    assert_eq!(gone, None);
}

#[tokio::test]
async fn store_from_env_connects_all_three_and_reports_health() {
    let store = Store::connect(Config::from_env().unwrap())
        .await
        .expect("connect all");
    let health = store.ping().await;
    assert!(health.is_healthy(), "{health}");
    let report = health.to_string();
    for name in [
        "postgresql",
        "mongodb",
        "redis",
        "pgvector",
        "transactions supported",
    ] {
        assert!(report.contains(name), "{name} missing from:\n{report}");
    }
    store.close().await;
    let after_close = store.postgres().unwrap().ping().await.unwrap_err();
    assert!(
        matches!(after_close, reposmith::Error::Unavailable { .. }),
        "a closed pool is unavailable, got {after_close:?}"
    );
}

/// Creates a table on the primary; drops it on `drop_table`.
async fn probe_table(primary: &mut PgConnection) -> String {
    // A real table, not a temporary one: temporary tables are not replicated.
    let table = unique_name("replica_probe");
    let create = format!("CREATE TABLE {table} (id int PRIMARY KEY, note text NOT NULL)");
    sqlx::query(AssertSqlSafe(create))
        .execute(&mut *primary)
        .await
        .unwrap();
    table
}

async fn drop_table(primary: &mut PgConnection, table: &str) {
    sqlx::query(AssertSqlSafe(format!("DROP TABLE {table}")))
        .execute(primary)
        .await
        .unwrap();
}

/// Inserts row `id` on the primary with a fresh note; returns the note.
async fn insert_note(primary: &mut PgConnection, table: &str, id: i32) -> String {
    let note = unique_name("note");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} VALUES ($1, $2)"
    )))
    .bind(id)
    .bind(&note)
    .execute(primary)
    .await
    .unwrap();
    note
}

/// Polls the replica until row `id` of `table` is there; panics after
/// [`REPLICATION_WITHIN`]. Returns its note and how long it took.
async fn await_on_replica(replica: &mut PgConnection, table: &str, id: i32) -> (String, Duration) {
    let started = Instant::now();
    let read = format!("SELECT note FROM {table} WHERE id = {id}");
    loop {
        // Until the CREATE TABLE replays, the table is unknown: not yet.
        let row: Result<Option<String>, _> = sqlx::query_scalar(AssertSqlSafe(read.clone()))
            .persistent(false)
            .fetch_optional(&mut *replica)
            .await;
        if let Ok(Some(note)) = row {
            return (note, started.elapsed());
        }
        assert!(
            started.elapsed() < REPLICATION_WITHIN,
            "row {id} was not on the replica {REPLICATION_WITHIN:?} after its commit (last: {row:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_replica_is_in_recovery_and_shows_a_primary_commit_within_seconds() {
    let Some(replica_url) = pg_replica::required(REPLICA_URL) else {
        return;
    };
    let mut primary = PgConnection::connect(&database_url())
        .await
        .expect("connect to the primary");
    let mut replica = PgConnection::connect(&replica_url)
        .await
        .expect("connect to the replica");
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut replica)
        .await
        .unwrap();
    assert!(in_recovery, "the replica is not in recovery (promoted?)");
    let receiver: Option<String> = sqlx::query_scalar("SELECT status FROM pg_stat_wal_receiver")
        .fetch_optional(&mut replica)
        .await
        .unwrap();
    assert_eq!(receiver.as_deref(), Some("streaming"), "WAL receiver");

    let table = probe_table(&mut primary).await;
    let note = insert_note(&mut primary, &table, 1).await;
    let (seen, took) = await_on_replica(&mut replica, &table, 1).await;
    assert_eq!(seen, note);
    println!("replicated in {took:?}");
    drop_table(&mut primary, &table).await;
}

#[tokio::test]
async fn a_stopped_replica_comes_back_in_recovery_and_catches_up_from_its_slot() {
    let Some(replica_url) = pg_replica::required(REPLICA_URL) else {
        return;
    };
    let mut primary = PgConnection::connect(&database_url()).await.unwrap();
    let table = probe_table(&mut primary).await;
    let started = Instant::now();
    tokio::task::spawn_blocking(pg_replica::stop_replica)
        .await
        .unwrap();
    let stopped = started.elapsed();
    assert!(
        PgConnection::connect(&replica_url).await.is_err(),
        "the replica still answers after stop_replica"
    );
    // Committed while the replica is down: its slot keeps the WAL.
    let note = insert_note(&mut primary, &table, 1).await;
    let restarted = Instant::now();
    tokio::task::spawn_blocking(pg_replica::start_replica)
        .await
        .unwrap();
    let started_in = restarted.elapsed();
    let mut replica = PgConnection::connect(&replica_url).await.unwrap();
    let (seen, took) = await_on_replica(&mut replica, &table, 1).await;
    assert_eq!(seen, note);
    println!("stopped in {stopped:?}, started in {started_in:?}, caught up {took:?} later");
    drop_table(&mut primary, &table).await;
}

#[tokio::test]
async fn pgbouncer_answers_inside_a_transaction_on_the_primary_and_the_replica() {
    for (variable, recovery) in [(PGBOUNCER_URL, false), (PGBOUNCER_REPLICA_URL, true)] {
        let Some(url) = pg_replica::required(variable) else {
            return;
        };
        let mut conn = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect through PgBouncer ({variable}): {e}"));
        // Unnamed statements only: PgBouncer 1.18 does not track prepared
        // statements, and a server connection outlives its client, so sqlx's
        // named `sqlx_s_1` of an earlier client is still on the server that
        // this transaction gets ("prepared statement \"sqlx_s_1\" already
        // exists", seen on the second run).
        let mut tx = conn.begin().await.unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .persistent(false)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(one, 1);
        assert_eq!(in_recovery, recovery, "{variable} reaches the wrong server");
        conn.close().await.unwrap();
    }
}
