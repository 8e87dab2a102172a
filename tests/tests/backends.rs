//! `#[repo(backend = "..")]` and `#[repo(collection = "..")]` against real
//! servers: a MongoDB-only entity lives in its named collection (documents,
//! indexes, TTL index, identity counter, units of work, `Store::mongo_repo`),
//! and an entity stored by both backends keeps its table in PostgreSQL and
//! its collection in MongoDB. That the wrong backend's repository does not
//! compile is shown by the trybuild cases in `tests/ui/backend/`.

use chrono::{DateTime, Utc};
use reposmith::mongo::mongodb::bson::{Document, doc};
use reposmith::postgres::sqlx;
use reposmith::prelude::*;
use reposmith::{Backends, MongoBackend, MongoConfig, PgBackend};
use reposmith_tests::{database_url, mongodb_url, unique_name};

/// An LLM call trace, kept only in MongoDB, for 30 days.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "llm_traces")]
struct Trace {
    #[repo(id)]
    id: i64,
    #[repo(unique)]
    request_id: String,
    #[repo(index)]
    model: String,
    #[repo(created_at, ttl = "30d")]
    created_at: DateTime<Utc>,
}

/// A chat, stored by both backends under different names.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "be_chats", collection = "be_chat_history")]
struct Chat {
    #[repo(id)]
    id: uuid::Uuid,
    title: String,
}

fn trace(request: &str, model: &str) -> Trace {
    Trace {
        id: 0,
        request_id: request.to_owned(),
        model: model.to_owned(),
        created_at: DateTime::<Utc>::MIN_UTC,
    }
}

async fn mongo(prefix: &str) -> MongoBackend {
    let config = MongoConfig::new(mongodb_url()).database(unique_name(prefix));
    MongoBackend::connect(&config).await.unwrap()
}

async fn collection_names(mongo: &MongoBackend) -> Vec<String> {
    let mut names = mongo.database().list_collection_names().await.unwrap();
    names.sort();
    names
}

#[tokio::test]
async fn a_mongo_only_entity_lives_in_its_named_collection() {
    assert_eq!(Trace::SCHEMA.backends, Backends::Mongo);
    let mongo = mongo("backends").await;
    mongo.create_collections::<Trace>().await.unwrap();
    let repo = mongo.repo::<Trace>();
    let first = repo.insert(&trace("r1", "gpt")).await.unwrap();
    repo.insert_many(&[trace("r2", "claude"), trace("r3", "claude")])
        .await
        .unwrap();
    assert_eq!(repo.get(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(repo.find_all_by_model("claude").await.unwrap().len(), 2);
    let err = repo.insert(&trace("r1", "gpt")).await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Conflict {
                field: Some("request_id"),
                ..
            }
        ),
        "{err:?}"
    );

    let names = collection_names(&mongo).await;
    assert!(names.contains(&"llm_traces".to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "traces"),
        "nothing under the table name: {names:?}"
    );
    let raw = mongo.database().collection::<Document>("llm_traces");
    assert_eq!(raw.count_documents(doc! {}).await.unwrap(), 3);
    let indexes = raw.list_index_names().await.unwrap();
    assert!(
        indexes.iter().any(|i| i == "llm_traces_created_at_ttl"),
        "the TTL index is named after the collection: {indexes:?}"
    );
    assert!(
        indexes.iter().any(|i| i == "llm_traces_request_id_key"),
        "a MongoDB-only entity names its indexes after its collection: {indexes:?}"
    );
    let counter = mongo
        .database()
        .collection::<Document>(reposmith_mongo::COUNTERS)
        .find_one(doc! { "_id": "llm_traces" })
        .await
        .unwrap();
    assert!(counter.is_some(), "identity ids count per collection");

    let unit = mongo.begin().await.unwrap();
    unit.repo::<Trace>()
        .insert(&trace("r4", "gpt"))
        .await
        .unwrap();
    unit.commit().await.unwrap();
    assert_eq!(raw.count_documents(doc! {}).await.unwrap(), 4);
    mongo.database().drop().await.unwrap();
    mongo.close().await;
}

#[tokio::test]
async fn the_store_hands_out_mongo_repositories() {
    let database = unique_name("backends_store");
    let config = Config::new().with_mongo(MongoConfig::new(mongodb_url()).database(&database));
    let store = Store::connect(config).await.unwrap();
    store
        .mongo()
        .unwrap()
        .create_collections::<Trace>()
        .await
        .unwrap();
    let traces = store.repo::<Trace>().unwrap();
    traces.insert(&trace("s1", "gpt")).await.unwrap();
    let unit = store.begin::<Trace>().await.unwrap();
    unit.repo::<Trace>()
        .insert(&trace("s2", "gpt"))
        .await
        .unwrap();
    drop(unit);
    assert_eq!(
        traces.count(Filter::all()).await.unwrap(),
        1,
        "the dropped unit rolled back"
    );
    let stored = store
        .transaction::<Trace, _>(RetryPolicy::default(), |unit| {
            Box::pin(async move { unit.repo::<Trace>().insert(&trace("s3", "gpt")).await })
        })
        .await
        .unwrap();
    assert!(stored.id > 0);
    assert_eq!(traces.count(Filter::all()).await.unwrap(), 2, "committed");
    let err = store.postgres().unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    store.mongo().unwrap().database().drop().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn an_entity_of_both_backends_keeps_its_table_and_its_collection() {
    assert_eq!(Chat::SCHEMA.backends, Backends::Both);
    let chat = Chat {
        id: uuid::Uuid::nil(),
        title: "hello".into(),
    };

    let mongo = mongo("backends_both").await;
    mongo.create_collections::<Chat>().await.unwrap();
    let stored = mongo.repo::<Chat>().insert(&chat).await.unwrap();
    assert_eq!(
        collection_names(&mongo).await,
        ["be_chat_history".to_owned()]
    );
    let raw = mongo.database().collection::<Document>("be_chat_history");
    assert_eq!(
        raw.count_documents(doc! { "title": "hello" })
            .await
            .unwrap(),
        1
    );
    mongo.database().drop().await.unwrap();
    mongo.close().await;

    let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
        .await
        .unwrap();
    let namespace = unique_name("backends");
    let run = |sql: String| sqlx::raw_sql(sqlx::AssertSqlSafe(sql));
    run(format!("CREATE SCHEMA \"{namespace}\""))
        .execute(admin.pool())
        .await
        .unwrap();
    let url = database_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let pg = PgBackend::connect(&reposmith_tests::pg_config(format!(
        "{url}{sep}options=-c%20search_path%3D{namespace}"
    )))
    .await
    .unwrap();
    pg.create_tables::<Chat>().await.unwrap();
    let repo = pg.repo::<Chat>();
    repo.insert(&stored).await.unwrap();
    let titles: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT title FROM \"{namespace}\".be_chats"
    )))
    .fetch_all(admin.pool())
    .await
    .unwrap();
    assert_eq!(titles, ["hello"]);
    pg.close().await;
    run(format!("DROP SCHEMA \"{namespace}\" CASCADE"))
        .execute(admin.pool())
        .await
        .unwrap();
    admin.close().await;
}
