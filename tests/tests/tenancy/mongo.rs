//! The tenancy paths on MongoDB (SecantusDB here), with a Redis cache
//! attached. MongoDB has no row-level security: the repository's filter is
//! the guard. Text and hybrid search are PostgreSQL's only.

use reposmith::mongo::mongodb::bson::{Document, doc};
use reposmith::{MongoBackend, MongoConfig, RedisBackend, RedisConfig};
use reposmith_tests::{mongodb_url, redis_url, unique_name};

use super::cache::{CacheFixture, tenant_cache_tests};
use super::paths::{TenantFixture, tenancy_tests};
use super::{Passage, patient_cache};

/// A database of its own with the passages collection and its indexes.
pub(crate) struct MongoTenancy {
    mongo: MongoBackend,
}

impl TenantFixture for MongoTenancy {
    type Store = MongoBackend;

    async fn setup() -> Self {
        let config = MongoConfig::new(mongodb_url()).database(unique_name("tenant"));
        let mongo = MongoBackend::connect(&config).await.unwrap();
        mongo.create_collections::<Passage>().await.unwrap();
        let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
            .await
            .unwrap();
        let options = patient_cache(unique_name("mtenant"));
        let mongo = mongo.with_cache(redis.cache(options).unwrap());
        MongoTenancy { mongo }
    }

    fn unscoped(&self) -> MongoBackend {
        self.mongo.clone()
    }

    fn tenant(&self, tenant: &str) -> MongoBackend {
        self.mongo.for_tenant(tenant).unwrap()
    }

    async fn teardown(self) {
        self.mongo.database().drop().await.unwrap();
        self.mongo.close().await;
    }
}

impl CacheFixture for MongoTenancy {
    async fn write_behind(&self, org: &str, topic: &str, body: &str) {
        self.mongo
            .database()
            .collection::<Document>("tenant_passages")
            .update_many(
                doc! { "org": org, "topic": topic },
                doc! { "$set": { "body": body } },
            )
            .await
            .unwrap();
    }
}

tenant_cache_tests!(MongoTenancy;
    cached_reads, repository_writes_invalidate_their_tenant, unit_writes_invalidate_their_tenant,
);

tenancy_tests!(MongoTenancy;
    reads, vector_search, writes, deletes, units, without_a_tenant, partial_updates,
);
