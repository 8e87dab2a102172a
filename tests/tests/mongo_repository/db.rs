//! A per-test MongoDB database holding the conformance entities'
//! collections: the MongoDB [`Fixture`] of the conformance suite.

use reposmith::{MongoBackend, MongoConfig};
use reposmith_mongo::MongoRepository;
use reposmith_tests::conformance::entities::{Doc, Event, Setting};
use reposmith_tests::conformance::{Capabilities, Fixture, Sizes};
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

    /// Smaller than [`Sizes::FULL`]: SecantusDB, the Python server the tests
    /// run against, stores some 6,000 documents a second and answers a
    /// query in about 10 ms, so the full sizes cost the suite two minutes
    /// (81 s and 31 s of one CI run). What the tests prove on MongoDB needs
    /// less, given `reposmith-mongo/src/bulk.rs`:
    ///
    /// - Both bulk calls exceed its `TRANSACTION_LIMIT` (10,000), so neither
    ///   runs in one transaction: they take the compensated path, in
    ///   several `insert` commands (a first of `FIRST_BATCH`, 1,000, then
    ///   at most ten times the previous one). 12,000 rows (30,000 with
    ///   `REPOSMITH_HEAVY=1`; 30,000 took 50 s of a loaded CI run) go in at
    ///   least three, the last sized by the measured pace. The failing call's
    ///   conflict is its 12,000th row, in its third command at the earliest,
    ///   so the 11,999 rows before it are stored (at least 1,000 by an
    ///   earlier command) and leaving nothing means undoing them, in twelve
    ///   `delete` commands of `UNDO_BATCH` (1,000) ids.
    /// - [`Sizes::MIN_PAGED`] rows for paging: the one-row walks (a query a
    ///   row, in six orders) are most of that test's time.
    fn sizes(&self) -> Sizes {
        Sizes {
            bulk: if reposmith_tests::heavy() {
                30_000
            } else {
                12_000
            },
            bulk_failing: 12_000,
            paged: Sizes::MIN_PAGED,
        }
    }
}
