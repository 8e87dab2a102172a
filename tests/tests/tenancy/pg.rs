//! The tenancy paths on PostgreSQL, with a Redis cache attached so the
//! cached paths run.

use std::sync::Arc;

use reposmith::cache::{Cache, CacheOptions};
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{PgBackend, RedisBackend, RedisConfig};
use reposmith_tests::{database_url, redis_url, unique_name};

use super::cache::{CacheFixture, tenant_cache_tests};
use super::paths::{TenantFixture, tenancy_tests};
use super::{Passage, patient_cache};

/// A schema of its own with the passages table and the outbox, and a
/// backend with a Redis cache attached.
pub(crate) struct PgTenancy {
    pub(crate) pg: PgBackend,
    pub(crate) admin: PgBackend,
    pub(crate) namespace: String,
}

impl TenantFixture for PgTenancy {
    type Store = PgBackend;

    async fn setup() -> Self {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("tenant");
        run(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let url =
            reposmith_tests::with_search_path(&database_url(), &format!("{namespace},public"));
        let pg = PgBackend::connect(&reposmith_tests::pg_config(url))
            .await
            .unwrap();
        pg.create_tables::<Passage>().await.unwrap();
        pg.create_outbox_tables().await.unwrap();
        let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
            .await
            .unwrap();
        let store = Arc::new(redis.cache_store(&CacheOptions::default()));
        let options = patient_cache(unique_name("tenant"));
        let pg = pg.with_cache(Cache::new(store, options).unwrap());
        PgTenancy {
            pg,
            admin,
            namespace,
        }
    }

    fn unscoped(&self) -> PgBackend {
        self.pg.clone()
    }

    fn tenant(&self, tenant: &str) -> PgBackend {
        self.pg.for_tenant(tenant).unwrap()
    }

    async fn teardown(self) {
        self.pg.close().await;
        run(
            &self.admin,
            &format!("DROP SCHEMA \"{}\" CASCADE", self.namespace),
        )
        .await;
        self.admin.close().await;
    }
}

pub(crate) async fn run(backend: &PgBackend, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(backend.pool())
        .await
        .unwrap();
}

impl CacheFixture for PgTenancy {
    /// As the table's owner, whom row-level security does not bind.
    async fn write_behind(&self, org: &str, topic: &str, body: &str) {
        sqlx::query("UPDATE tenant_passages SET body = $1 WHERE org = $2 AND topic = $3")
            .bind(body)
            .bind(org)
            .bind(topic)
            .execute(self.pg.pool())
            .await
            .unwrap();
    }
}

tenant_cache_tests!(PgTenancy;
    cached_reads, repository_writes_invalidate_their_tenant, unit_writes_invalidate_their_tenant,
);

tenancy_tests!(PgTenancy;
    reads, vector_search, text_and_hybrid_search, writes, deletes, units, without_a_tenant,
    partial_updates,
);

/// Tenant values are checked before any handle exists.
#[tokio::test]
async fn tenant_values_are_validated() {
    let fx = PgTenancy::setup().await;
    for bad in ["", "a\0b", &"x".repeat(129)] {
        assert!(matches!(
            fx.pg.for_tenant(bad),
            Err(reposmith::Error::InvalidInput { .. })
        ));
    }
    assert!(fx.pg.for_tenant(uuid::Uuid::nil()).is_err());
    // A tenant of the wrong type for the column is refused on use.
    let wrong = fx.pg.for_tenant(7_i64).unwrap().repo::<Passage>();
    assert!(matches!(
        reposmith::Repository::count(&wrong, reposmith::Filter::all()).await,
        Err(reposmith::Error::InvalidInput { .. })
    ));
    fx.teardown().await;
}

/// A pinned tenant entity, for the facade's `Store`.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "tenant_facade_notes", backend = "postgres")]
struct FacadeNote {
    #[repo(id)]
    id: i64,
    #[repo(tenant)]
    org: uuid::Uuid,
    body: String,
}

/// `Store::repo` refuses a tenant entity without a tenant at once;
/// `Store::for_tenant` hands out scoped repositories, units and
/// transactions, here with a UUID tenant.
#[tokio::test]
async fn the_store_refuses_a_tenant_entity_without_a_tenant() {
    use reposmith::prelude::*;
    let fx = PgTenancy::setup().await;
    fx.pg.create_tables::<FacadeNote>().await.unwrap();
    let url =
        reposmith_tests::with_search_path(&database_url(), &format!("{},public", fx.namespace));
    let store = Store::connect(Config::new().with_postgres(reposmith_tests::pg_config(url)))
        .await
        .unwrap();
    assert!(matches!(
        store.repo::<FacadeNote>(),
        Err(Error::InvalidInput { .. })
    ));
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let note = |body: &str| FacadeNote {
        id: 0,
        org: uuid::Uuid::nil(),
        body: body.into(),
    };
    let first = store.for_tenant(a).unwrap();
    let stored = first
        .repo::<FacadeNote>()
        .unwrap()
        .insert(&note("a"))
        .await
        .unwrap();
    assert_eq!(stored.org, a);
    let second = store.for_tenant(b).unwrap();
    second
        .repo::<FacadeNote>()
        .unwrap()
        .insert(&note("b"))
        .await
        .unwrap();
    let unit = first.begin::<FacadeNote>().await.unwrap();
    assert_eq!(
        unit.repo::<FacadeNote>()
            .count(Filter::all())
            .await
            .unwrap(),
        1
    );
    unit.rollback().await.unwrap();
    let seen = second
        .transaction::<FacadeNote, _>(RetryPolicy::default(), |uow| {
            Box::pin(async move { uow.repo::<FacadeNote>().find(Filter::all()).await })
        })
        .await
        .unwrap();
    assert_eq!(
        seen.iter().map(|n| n.body.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    assert!(matches!(
        first.repo::<FacadeNote>().unwrap().get(&stored.id).await,
        Ok(Some(_))
    ));
    assert_eq!(
        second
            .repo::<FacadeNote>()
            .unwrap()
            .get(&stored.id)
            .await
            .unwrap(),
        None
    );
    store.close().await;
    fx.teardown().await;
}

/// The durable path: the invalidation a tenant's write records in the
/// outbox carries the tenant and names the tenant's entries only; replayed
/// by the relay, it drops acme's entries and leaves globex's.
#[tokio::test]
async fn durable_invalidations_carry_and_replay_only_the_tenants_entries() {
    use reposmith::cache::{INVALIDATION_TOPIC, Invalidation, InvalidationReplay};
    use reposmith::outbox::Relay;
    use reposmith::prelude::*;

    let fx = PgTenancy::setup().await;
    let s = super::paths::seed(&fx).await;
    let (mine, canary) = (&s.mine[0], &s.canaries[0]);
    s.acme
        .patch(&mine.id, Passage::BODY.set("patched"))
        .await
        .unwrap();
    let (seq, tenant, payload): (i64, Option<String>, serde_json::Value) = sqlx::query_as(
        "SELECT seq, tenant, payload FROM reposmith_outbox WHERE destination = $1 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(format!("topic:{INVALIDATION_TOPIC}"))
    .fetch_one(fx.pg.pool())
    .await
    .unwrap();
    assert_eq!(tenant.as_deref(), Some("acme"));
    let invalidation: Invalidation = serde_json::from_value(payload).unwrap();
    assert_eq!(invalidation.rows.len(), 1, "{invalidation:?}");
    assert!(
        invalidation.rows[0].contains(":t:acme:r:"),
        "{invalidation:?}"
    );
    assert!(!invalidation.scopes.is_empty());
    assert!(
        invalidation
            .scopes
            .iter()
            .all(|s| s.0.ends_with(":t:acme}")),
        "{invalidation:?}"
    );
    // Only the patch's invalidation is left to replay.
    sqlx::query("DELETE FROM reposmith_outbox WHERE seq <> $1")
        .bind(seq)
        .execute(fx.pg.pool())
        .await
        .unwrap();
    // Both tenants' entries filled, then their rows changed behind the back.
    let body = |p: Option<Passage>| p.map(|p| p.body);
    assert_eq!(
        body(s.acme.get(&mine.id).await.unwrap()).as_deref(),
        Some("patched")
    );
    assert_eq!(
        body(s.globex.get(&canary.id).await.unwrap()),
        Some(canary.body.clone())
    );
    fx.write_behind("acme", "a", "behind").await;
    fx.write_behind("globex", "a", "behind").await;
    assert_eq!(
        body(s.acme.get(&mine.id).await.unwrap()).as_deref(),
        Some("patched"),
        "acme's entry hits until the replay"
    );

    let cache = fx.pg.cache().unwrap().clone();
    let relay = Relay::new(&fx.pg)
        .topic(INVALIDATION_TOPIC, InvalidationReplay::new(cache))
        .unwrap();
    while relay.relay_once().await.unwrap().taken > 0 {}
    assert_eq!(
        body(s.acme.get(&mine.id).await.unwrap()).as_deref(),
        Some("behind"),
        "the replay dropped acme's entry"
    );
    assert_eq!(
        body(s.globex.get(&canary.id).await.unwrap()),
        Some(canary.body.clone()),
        "the replay left globex's entry"
    );
    fx.teardown().await;
}
