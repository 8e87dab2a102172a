//! `migrations/rag` is current (generated from today's entities), and a
//! test's store has it applied, the traces' TTL index included.

use std::path::Path;

use reposmith::PgConfig;
use reposmith::testing::TestContext;
use reposmith_example_rag::domain::schemas;
use reposmith_example_rag::migrations;

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(super::support::MIGRATIONS)
}

#[test]
fn the_migrations_match_the_entities() {
    let schemas = schemas();
    let stale = reposmith::migrate::is_stale(&schemas, &dir()).unwrap();
    assert!(
        !stale,
        "the entities changed: run `cargo run -p reposmith-example-rag --bin rag-migrate -- generate <name>`"
    );
    let mongo = reposmith::migrate::mongo::is_mongo_stale(&schemas, &dir()).unwrap();
    assert!(
        !mongo,
        "the MongoDB collections changed: generate a migration"
    );
}

#[reposmith::test(migrations = "../../migrations/rag")]
async fn migrating_at_start_finds_everything_applied_and_traces_expire(ctx: TestContext) {
    let store = ctx.store();
    // What the service runs at start: against the test's database (built
    // from the same files), nothing is left to apply.
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let (base, query) = url
        .split_once('?')
        .map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a database in DATABASE_URL");
    let mut own = format!(
        "{server}/{}",
        ctx.database().expect("a PostgreSQL database")
    );
    if let Some(query) = query {
        own = format!("{own}?{query}");
    }
    let applied = migrations::apply(&dir(), &PgConfig::new(own), store)
        .await
        .unwrap();
    assert!(
        applied.postgres.is_empty() && applied.mongo.is_empty(),
        "{applied:?}"
    );
    let database = store.mongo().unwrap().database();
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
