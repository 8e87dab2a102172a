//! Fifty tests in one binary write the same unique keys (a PostgreSQL
//! row, a MongoDB document, Redis cache entries, a limiter's and a
//! queue's keys, a raw counter) and each sees only its own: run in
//! parallel (nextest's processes, or `cargo test`'s threads), any sharing
//! would be a unique violation, a count above one or a counter above one.

use reposmith::prelude::*;
use reposmith::queue::{Job, Queue};
use reposmith::redis::AsyncCommands;
use reposmith::testing::TestContext;
use serde::{Deserialize, Serialize};

use super::{MongoItem, PgItem};

/// A job of the tests' queue.
#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u32,
}

impl Job for Ping {
    const QUEUE: &'static str = "testkit.ping";
}

/// The body every one of the fifty tests runs.
async fn write_conflicting(ctx: TestContext) -> Result<()> {
    let store = ctx.store();
    // PostgreSQL: the same unique slug in every test; read back through the cache.
    let pg = store.repo::<PgItem>()?;
    let row = pg
        .insert(&PgItem {
            id: 0,
            slug: "same".into(),
            body: ctx.key_prefix().into(),
        })
        .await?;
    assert_eq!(pg.count(Filter::all()).await?, 1);
    let cached = pg.get(&row.id).await?.expect("the row");
    assert_eq!(
        cached.body,
        ctx.key_prefix(),
        "another test's row came back"
    );
    // MongoDB: the same id and unique slug.
    let mongo = store.repo::<MongoItem>()?;
    mongo
        .insert(&MongoItem {
            id: 1,
            slug: "same".into(),
            body: ctx.key_prefix().into(),
        })
        .await?;
    assert_eq!(mongo.count(Filter::all()).await?, 1);
    // Redis: a raw counter under the prefix, a queue and the cache's keys.
    let redis = store.redis()?;
    let mut conn = redis.connection();
    let counter = format!("{}:counter", ctx.key_prefix());
    let n: i64 = conn
        .incr(&counter, 1)
        .await
        .map_err(|e| redis.map_error(&e))?;
    assert_eq!(n, 1, "the counter was shared");
    let queue = Queue::<Ping>::with_options(redis, ctx.queue_options())?;
    queue.enqueue(&Ping { n: 1 }).await?;
    assert_eq!(queue.stats().await?.waiting, 1, "the queue was shared");
    Ok(())
}

macro_rules! conflicting_tests {
    ($($name:ident)*) => {$(
        #[reposmith::test(migrations = "tests/testkit/migrations")]
        async fn $name(ctx: TestContext) -> Result<()> {
            write_conflicting(ctx).await
        }
    )*};
}

conflicting_tests! {
    t01 t02 t03 t04 t05 t06 t07 t08 t09 t10 t11 t12 t13 t14 t15 t16 t17 t18 t19 t20
    t21 t22 t23 t24 t25 t26 t27 t28 t29 t30 t31 t32 t33 t34 t35 t36 t37 t38 t39 t40
    t41 t42 t43 t44 t45 t46 t47 t48 t49 t50
}
