//! The demo: connects to every backend named in the environment, prints
//! versions and capabilities, and proves each one works with a small round trip:
//! a pgvector distance in PostgreSQL, a committed and an aborted transaction in
//! MongoDB, a value written and read back in Redis.
//!
//! Run it with `cargo xtask demo`, which starts the services first.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reposmith::mongo::mongodb::bson::doc;
use reposmith::prelude::*;
use reposmith::redis::AsyncCommands;
use reposmith::{MongoBackend, PgBackend, RedisBackend};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo failed: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let store = Store::connect(Config::from_env()?).await?;
    let health = store.ping().await;
    println!("health:\n{health}");
    if let Ok(pg) = store.postgres() {
        postgres_round_trip(pg).await?;
    }
    if let Ok(mongo) = store.mongo() {
        mongo_transactions(mongo).await?;
    }
    if let Ok(redis) = store.redis() {
        redis_round_trip(redis).await?;
    }
    store.close().await;
    println!("\nall configured backends answered");
    Ok(())
}

/// Creates pgvector if the server has it and computes one distance in SQL.
async fn postgres_round_trip(pg: &PgBackend) -> Result<()> {
    let pool = pg.pool();
    reposmith::postgres::sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
        .execute(pool)
        .await
        .map_err(|e| pg.map_error(e))?;
    let distance: f64 =
        reposmith::postgres::sqlx::query_scalar("SELECT '[1,2,3]'::vector <-> '[4,6,3]'::vector")
            .fetch_one(pool)
            .await
            .map_err(|e| pg.map_error(e))?;
    println!("postgresql: pgvector L2 distance between [1,2,3] and [4,6,3] = {distance}");
    Ok(())
}

/// Commits one transaction and aborts another, then counts what is visible.
async fn mongo_transactions(mongo: &MongoBackend) -> Result<()> {
    if !mongo.capabilities().transactions {
        println!("mongodb: transactions unsupported on this deployment, skipped");
        return Ok(());
    }
    let run_id = unique_suffix();
    let events = mongo.database().collection("demo_events");
    let driver = |e| mongo.map_error(e);
    let mut session = mongo.client().start_session().await.map_err(driver)?;
    for (kind, commit) in [("committed", true), ("aborted", false)] {
        session.start_transaction().await.map_err(driver)?;
        let event = doc! { "run": &run_id, "kind": kind };
        events
            .insert_one(event)
            .session(&mut session)
            .await
            .map_err(driver)?;
        match commit {
            true => session.commit_transaction().await.map_err(driver)?,
            false => session.abort_transaction().await.map_err(driver)?,
        }
    }
    let visible = events
        .count_documents(doc! { "run": &run_id })
        .await
        .map_err(driver)?;
    events
        .delete_many(doc! { "run": &run_id })
        .await
        .map_err(driver)?;
    if visible != 1 {
        return Err(Error::Backend {
            backend: reposmith::Backend::Mongo,
            code: None,
            reason: format!("expected the committed document only, found {visible}"),
        });
    }
    println!(
        "mongodb: one transaction committed, one aborted; only the committed document is visible"
    );
    Ok(())
}

/// Writes a key with a TTL and reads it back.
async fn redis_round_trip(redis: &RedisBackend) -> Result<()> {
    let key = format!("reposmith:demo:{}", unique_suffix());
    let mut connection = redis.connection();
    let _: () = connection
        .set_ex(&key, "hello from reposmith", 60)
        .await
        .map_err(|e| redis.map_error(&e))?;
    let value: String = connection
        .get(&key)
        .await
        .map_err(|e| redis.map_error(&e))?;
    let _: () = connection
        .del(&key)
        .await
        .map_err(|e| redis.map_error(&e))?;
    println!("redis: wrote and read back {value:?}");
    Ok(())
}

fn unique_suffix() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    format!("{}-{}", std::process::id(), now.as_nanos())
}
