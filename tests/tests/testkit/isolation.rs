//! MongoDB and Redis isolation and teardown, driven by hand through
//! `reposmith::testing::setup`: the store's cache, a limiter and a queue
//! write under the test's prefix; a pass drops the MongoDB database and
//! deletes every key under the prefix, and leaves other prefixes alone;
//! fixtures land in both databases.

use std::time::Duration;

use reposmith::limit::{Limit, Policy};
use reposmith::prelude::*;
use reposmith::queue::{Job, Queue};
use reposmith::redis::AsyncCommands;
use reposmith::testing::{Migrations, TestArgs, TestContext, setup};
use serde::{Deserialize, Serialize};

use super::{MongoItem, PgItem, PgItemRepository};

#[derive(Debug, Serialize, Deserialize)]
struct Tick;

impl Job for Tick {
    const QUEUE: &'static str = "testkit.tick";
}

fn args(name: &'static str) -> TestArgs {
    let mut args = TestArgs::new(name, env!("CARGO_MANIFEST_DIR"));
    args.migrations = Migrations::Path(super::MIGRATIONS);
    args
}

/// Every key under `prefix` (both shapes).
async fn keys_under(store: &Store, prefix: &str) -> Vec<String> {
    let mut conn = store.redis().unwrap().connection();
    let mut keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    let tagged: Vec<String> = conn.keys(format!("{{{prefix}:*")).await.unwrap();
    keys.extend(tagged);
    keys
}

#[tokio::test]
async fn cache_limiter_and_queue_use_the_prefix_and_a_pass_removes_everything() {
    let session = setup(&args("testkit::isolation::by_hand")).await.unwrap();
    let ctx = session.context();
    let store = ctx.store().clone();
    let prefix = ctx.key_prefix().to_owned();
    // The cache: a read by id fills `<prefix>:c:..`.
    let items = store.repo::<PgItem>().unwrap();
    let row = items
        .insert(&PgItem {
            id: 0,
            slug: "a".into(),
            body: "b".into(),
        })
        .await
        .unwrap();
    items.get(&row.id).await.unwrap().unwrap();
    // The limiter and the queue with the context's options.
    let redis = store.redis().unwrap();
    let policy = Policy::new("testkit").with(Limit::requests("rpm", 60, Duration::from_secs(60)));
    let limiter = redis.limiter(policy, ctx.limiter_options()).unwrap();
    limiter.check("subject", 1).await.unwrap();
    Queue::<Tick>::with_options(redis, ctx.queue_options())
        .unwrap()
        .enqueue(&Tick)
        .await
        .unwrap();
    let keys = keys_under(&store, &prefix).await;
    for part in [":c:", ":l:", ":q:"] {
        assert!(
            keys.iter().any(|k| k.contains(part)),
            "no {part} key in {keys:?}"
        );
    }
    // A key of someone else's, which teardown must not touch.
    let mut conn = redis.connection();
    let other = format!("{prefix}x:other");
    let () = conn.set(&other, 1).await.unwrap();
    // MongoDB: the migration's unique index refuses a second slug.
    let mongo = store.repo::<MongoItem>().unwrap();
    mongo
        .insert(&MongoItem {
            id: 1,
            slug: "a".into(),
            body: "b".into(),
        })
        .await
        .unwrap();
    let twin = mongo
        .insert(&MongoItem {
            id: 2,
            slug: "a".into(),
            body: "c".into(),
        })
        .await;
    assert!(matches!(twin, Err(Error::Conflict { .. })), "{twin:?}");
    let mongo_db = ctx.mongo_database().unwrap().to_owned();
    let observer = Store::connect(Config::from_env().unwrap()).await.unwrap();
    session.teardown().await.unwrap();

    assert_eq!(keys_under(&observer, &prefix).await, Vec::<String>::new());
    let mut conn = observer.redis().unwrap().connection();
    let kept: Option<i64> = conn.get(&other).await.unwrap();
    assert_eq!(kept, Some(1), "a key outside the prefix was deleted");
    let () = conn.del(&other).await.unwrap();
    let names = observer
        .mongo()
        .unwrap()
        .client()
        .list_database_names()
        .await
        .unwrap();
    assert!(
        !names.contains(&mongo_db),
        "{mongo_db} survived the teardown"
    );
    observer.close().await;
}

#[reposmith::test(
    migrations = "tests/testkit/migrations",
    fixtures(
        "tests/testkit/fixtures/items.sql",
        "tests/testkit/fixtures/items.json"
    ),
    pool_size = 2,
    flavor = "multi_thread"
)]
async fn fixtures_are_applied_to_both_databases(ctx: TestContext) -> Result<()> {
    let pg = ctx.store().repo::<PgItem>()?;
    let row = pg
        .find_by_slug("fixture")
        .await?
        .expect("the SQL fixture's row");
    assert_eq!(row.body, "from items.sql");
    let mongo = ctx.store().repo::<MongoItem>()?;
    assert_eq!(
        mongo.get(&1000).await?.expect("the JSON fixture").body,
        "from items.json"
    );
    Ok(())
}

#[reposmith::test(backends(postgres))]
async fn backends_limits_the_store(store: Store) {
    assert!(store.postgres().is_ok());
    assert!(store.mongo().is_err() && store.redis().is_err());
}
