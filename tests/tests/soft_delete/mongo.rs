//! The soft-delete paths on MongoDB (SecantusDB here), with a Redis cache
//! attached. Text and hybrid search are PostgreSQL's only.

use futures_util::TryStreamExt;
use reposmith::cache::CacheOptions;
use reposmith::{MongoBackend, MongoConfig, RedisBackend, RedisConfig};
use reposmith_core::Entity as _;
use reposmith_mongo::MongoRepository;
use reposmith_mongo::mongodb::bson::{Document, doc};
use reposmith_tests::{mongodb_url, redis_url, unique_name};

use super::Note;
use super::paths::{SoftFixture, soft_delete_tests};

/// A database of its own with the notes collection and its indexes.
pub(crate) struct MongoSoft {
    mongo: MongoBackend,
}

impl MongoSoft {
    /// The fixture's database, for raw commands.
    pub(crate) fn database(&self) -> &reposmith_mongo::mongodb::Database {
        self.mongo.database()
    }
}

impl SoftFixture for MongoSoft {
    type Repo = MongoRepository<Note>;

    async fn setup() -> Self {
        let config = MongoConfig::new(mongodb_url()).database(unique_name("soft"));
        let mongo = MongoBackend::connect(&config).await.unwrap();
        mongo.create_collections::<Note>().await.unwrap();
        let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
            .await
            .unwrap();
        let options = CacheOptions::default().prefix(unique_name("msoft"));
        let mongo = mongo.with_cache(redis.cache(options).unwrap());
        MongoSoft { mongo }
    }

    fn notes(&self) -> MongoRepository<Note> {
        self.mongo.repo()
    }

    async fn teardown(self) {
        self.mongo.database().drop().await.unwrap();
        self.mongo.close().await;
    }
}

soft_delete_tests!(MongoSoft;
    get, get_many, finder, find, count_and_exists, stream, keyset_pages,
    vector_search, writes, restore, purge, unique_key_reuse, cached_reads,
);

/// The unique index carries the partial filter the docs promise.
#[tokio::test]
async fn unique_indexes_are_partial() {
    let fx = MongoSoft::setup().await;
    let specs = reposmith_mongo::index_specs(Note::SCHEMA);
    let slug = specs.iter().find(|s| s.unique).expect("the slug index");
    let partial = slug.partial_filter.clone().expect("partial");
    assert_eq!(partial, doc! { "deleted_at": { "$type": "null" } });
    let collection = fx.mongo.database().collection::<Document>("soft_notes");
    let indexes: Vec<_> = collection
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let live = indexes
        .iter()
        .find(|i| i.options.as_ref().and_then(|o| o.unique) == Some(true))
        .expect("the unique index on the server");
    let options = live.options.as_ref().unwrap();
    assert_eq!(options.partial_filter_expression.as_ref(), Some(&partial));
    fx.teardown().await;
}
