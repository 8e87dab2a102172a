//! `migrations/rag` is current (generated from today's entities), and a
//! test's store has it applied, the traces' TTL index included.

use std::path::Path;

use reposmith::testing::TestContext;
use reposmith_example_rag::domain::schemas;

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(super::support::MIGRATIONS)
}

#[test]
fn the_migrations_match_the_entities() {
    let schemas = schemas();
    let stale = reposmith::migrate::is_stale(&schemas, &dir()).unwrap();
    assert!(
        !stale,
        "the entities changed: run `cargo run -p reposmith-example-rag --bin migrate -- generate <name>`"
    );
    let mongo = reposmith::migrate::mongo::is_mongo_stale(&schemas, &dir()).unwrap();
    assert!(
        !mongo,
        "the MongoDB collections changed: generate a migration"
    );
}

#[reposmith::test(migrations = "../../migrations/rag")]
async fn the_mongo_migrations_are_applied_with_the_traces_ttl(ctx: TestContext) {
    let store = ctx.store();
    let database = store.mongo().unwrap().database();
    let applied = reposmith::migrate::mongo::apply_mongo(
        &reposmith::migrate::mongo::dir(&dir()),
        database,
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert!(applied.versions.is_empty(), "{:?}", applied.versions);
    // The traces' TTL index exists: MongoDB drops them after 7 days.
    let indexes: Vec<String> = {
        use futures_util::TryStreamExt;
        let cursor = database
            .collection::<reposmith::mongo::mongodb::bson::Document>("rag_traces")
            .list_indexes()
            .await
            .unwrap();
        cursor
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .filter(|i| i.options.as_ref().and_then(|o| o.expire_after).is_some())
            .map(|i| format!("{:?}", i.keys))
            .collect()
    };
    assert_eq!(indexes.len(), 1, "{indexes:?}");
}
