//! Each real service works end to end through the `Store`: pgvector in
//! PostgreSQL, transactions in MongoDB, a round trip in Redis.

use reposmith::mongo::mongodb::bson::doc;
use reposmith::postgres::sqlx;
use reposmith::redis::AsyncCommands;
use reposmith::{Config, MongoConfig, PgConfig, RedisConfig, Store};
use reposmith_tests::{database_url, mongodb_url, redis_url, unique_name};

#[tokio::test]
async fn pgvector_orders_by_distance_and_builds_an_hnsw_index() {
    let config = Config::new().with_postgres(PgConfig::new(database_url()));
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
