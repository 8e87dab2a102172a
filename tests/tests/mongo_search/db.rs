//! A per-test MongoDB database for the search tests.

use reposmith::{MongoBackend, MongoConfig, MongoEntity};
use reposmith_tests::{mongodb_url, unique_name};

/// A database of its own, dropped at teardown.
pub(crate) struct SearchDb {
    pub(crate) mongo: MongoBackend,
}

impl SearchDb {
    pub(crate) async fn new() -> SearchDb {
        let config = MongoConfig::new(mongodb_url()).database(unique_name("mongosearch"));
        SearchDb {
            mongo: MongoBackend::connect(&config).await.unwrap(),
        }
    }

    /// Creates `E`'s collection and indexes from its schema.
    pub(crate) async fn create<E: MongoEntity>(&self) {
        self.mongo.create_collections::<E>().await.unwrap();
    }

    /// Drops the database and closes the client.
    pub(crate) async fn cleanup(self) {
        self.mongo.database().drop().await.unwrap();
        self.mongo.close().await;
    }
}
