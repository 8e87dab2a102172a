//! A per-test MongoDB database holding the conformance entities'
//! collections: the MongoDB [`Fixture`] of the conformance suite.

use reposmith::{MongoBackend, MongoConfig};
use reposmith_mongo::MongoRepository;
use reposmith_tests::conformance::entities::{Doc, Event, Setting};
use reposmith_tests::conformance::{Capabilities, Fixture};
use reposmith_tests::{mongodb_url, unique_name};

/// A database of its own, dropped at teardown, with the three collections
/// and their unique indexes created from the entity schemas.
pub(crate) struct MongoDb {
    pub(crate) mongo: MongoBackend,
}

impl MongoDb {
    pub(crate) async fn new() -> MongoDb {
        let config = MongoConfig::new(mongodb_url()).database(unique_name("mongorepo"));
        let mongo = MongoBackend::connect(&config).await.unwrap();
        mongo.create_collections::<Doc>().await.unwrap();
        mongo.create_collections::<Event>().await.unwrap();
        mongo.create_collections::<Setting>().await.unwrap();
        MongoDb { mongo }
    }

    /// Drops the database and closes the client.
    pub(crate) async fn cleanup(self) {
        self.mongo.database().drop().await.unwrap();
        self.mongo.close().await;
    }
}

impl Fixture for MongoDb {
    type Docs = MongoRepository<Doc>;
    type Events = MongoRepository<Event>;
    type Settings = MongoRepository<Setting>;

    async fn setup() -> Self {
        MongoDb::new().await
    }

    async fn teardown(self) {
        self.cleanup().await;
    }

    fn docs(&self) -> Self::Docs {
        self.mongo.repo()
    }

    fn events(&self) -> Self::Events {
        self.mongo.repo()
    }

    fn settings(&self) -> Self::Settings {
        self.mongo.repo()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }
}
