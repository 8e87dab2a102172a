//! A failing test keeps its stores and names them: the suite runs
//! `deliberately_fails` in a child process of this binary with
//! `REPOSMITH_TESTKIT_FAIL=1`, reads the names it prints, finds the
//! PostgreSQL database, the MongoDB database and the Redis keys still
//! there, then removes them with `reposmith_test::cleanup::remove`.
//! Without the variable `deliberately_fails` passes (and cleans up), so the
//! suite's own run of it is green.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reposmith::prelude::*;
use reposmith::redis::AsyncCommands;
use reposmith::testing::TestContext;
use reposmith_test::cleanup::{CleanupOptions, cleanup, remove};

use super::{MongoItem, PgItem};

const FAIL: &str = "REPOSMITH_TESTKIT_FAIL";

#[reposmith::test(migrations = "tests/testkit/migrations")]
async fn deliberately_fails(ctx: TestContext) -> Result<()> {
    let store = ctx.store();
    store
        .repo::<PgItem>()?
        .insert(&PgItem {
            id: 0,
            slug: "kept".into(),
            body: "b".into(),
        })
        .await?;
    store
        .repo::<MongoItem>()?
        .insert(&MongoItem {
            id: 7,
            slug: "kept".into(),
            body: "b".into(),
        })
        .await?;
    let redis = store.redis()?;
    let mut conn = redis.connection();
    let key = format!("{}:kept", ctx.key_prefix());
    let () = conn
        .set(&key, "yes")
        .await
        .map_err(|e| redis.map_error(&e))?;
    if std::env::var_os(FAIL).is_some() {
        panic!("deliberate failure");
    }
    Ok(())
}

/// Runs `deliberately_fails` failing, in a child process, bounded.
fn run_failing_child() -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary");
    let mut child = Command::new(exe)
        .args([
            "testkit::failing::deliberately_fails",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(FAIL, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).ok();
        text
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the failing child ran over two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), reader.join().expect("stderr reader"))
}

/// The name printed after `label` on its own line.
fn printed(text: &str, label: &str) -> String {
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in the child's output:\n{text}"));
    line.split_whitespace().next().expect("a name").to_owned()
}

#[tokio::test]
async fn a_failing_test_keeps_its_stores_and_names_them() {
    let (passed, text) = tokio::task::spawn_blocking(run_failing_child)
        .await
        .unwrap();
    assert!(!passed, "the child should fail:\n{text}");
    assert!(text.contains("deliberate failure"), "{text}");
    assert!(
        text.contains("reposmith-test-cleanup"),
        "no cleanup command:\n{text}"
    );
    let pg_db = printed(&text, "PostgreSQL database:");
    let mongo_db = printed(&text, "MongoDB database:");
    let prefix = printed(&text, "Redis key prefix:");
    assert!(pg_db.starts_with("reposmith_test_"), "{pg_db}");
    assert!(
        text.contains(&format!("--id {pg_db}")),
        "no per-test cleanup command:\n{text}"
    );

    let store = Store::connect(Config::from_env().unwrap()).await.unwrap();
    // PostgreSQL: the database is there with the test's row.
    let pg = store.postgres().unwrap();
    let exists: bool = reposmith::postgres::sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
    )
    .bind(&pg_db)
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert!(exists, "{pg_db} was dropped");
    // MongoDB: the database holds the document.
    let mongo = store.mongo().unwrap();
    let docs = mongo
        .client()
        .database(&mongo_db)
        .collection::<reposmith::mongo::mongodb::bson::Document>("testkit_items")
        .count_documents(reposmith::mongo::mongodb::bson::doc! {})
        .await
        .unwrap();
    assert_eq!(docs, 1);
    // Redis: the key is there.
    let redis = store.redis().unwrap();
    let mut conn = redis.connection();
    let kept: Option<String> = conn.get(format!("{prefix}:kept")).await.unwrap();
    assert_eq!(kept.as_deref(), Some("yes"));

    // A cleanup of leftovers older than an hour spares them (they are new).
    let report = cleanup(CleanupOptions {
        older_than: Duration::from_secs(3600),
        templates: false,
    })
    .await
    .unwrap();
    assert!(!report.postgres.contains(&pg_db) && !report.mongo.contains(&mongo_db));
    // Removing that one test's stores leaves nothing behind.
    remove(&pg_db).await.unwrap();
    let exists: bool = reposmith::postgres::sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
    )
    .bind(&pg_db)
    .fetch_one(pg.pool())
    .await
    .unwrap();
    assert!(!exists);
    let names = mongo.client().list_database_names().await.unwrap();
    assert!(!names.contains(&mongo_db));
    let kept: Option<String> = conn.get(format!("{prefix}:kept")).await.unwrap();
    assert_eq!(kept, None);
    store.close().await;
}
