//! The soft-delete paths on PostgreSQL, with a Redis cache attached so the
//! cache paths run; plus a unit of work and the DDL's partial index.

use std::sync::Arc;

use reposmith::cache::{Cache, CacheOptions};
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::prelude::*;
use reposmith::{PgBackend, PgRepository, RedisBackend, RedisConfig};
use reposmith_tests::{database_url, redis_url, unique_name};

use super::Note;
use super::paths::{SoftFixture, seed, soft_delete_tests};

/// A schema of its own with the notes table and the outbox (durable
/// invalidations), and a backend with a Redis cache attached.
pub(crate) struct PgSoft {
    pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl SoftFixture for PgSoft {
    type Repo = PgRepository<Note>;

    async fn setup() -> Self {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("soft");
        run(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let url =
            reposmith_tests::with_search_path(&database_url(), &format!("{namespace},public"));
        let pg = PgBackend::connect(&reposmith_tests::pg_config(url))
            .await
            .unwrap();
        pg.create_tables::<Note>().await.unwrap();
        pg.create_outbox_tables().await.unwrap();
        let redis = RedisBackend::connect(&RedisConfig::new(redis_url()))
            .await
            .unwrap();
        let store = Arc::new(redis.cache_store(&CacheOptions::default()));
        let options = CacheOptions::default().prefix(unique_name("soft"));
        let pg = pg.with_cache(Cache::new(store, options).unwrap());
        PgSoft {
            pg,
            admin,
            namespace,
        }
    }

    fn notes(&self) -> PgRepository<Note> {
        self.pg.repo()
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

async fn run(backend: &PgBackend, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(backend.pool())
        .await
        .unwrap();
}

soft_delete_tests!(PgSoft;
    get, get_many, finder, find, count_and_exists, stream, keyset_pages,
    vector_search, text_search, hybrid_search, writes, restore, purge,
    unique_key_reuse, cached_reads,
);

/// Restore, purge and soft delete inside a unit of work; a rollback undoes
/// them.
#[tokio::test]
async fn soft_delete_in_units() {
    let fx = PgSoft::setup().await;
    let s = seed(&fx.notes()).await;
    let unit = fx.pg.begin().await.unwrap();
    let notes = unit.repo::<Note>();
    assert!(notes.restore(&s.b.id).await.unwrap());
    assert!(notes.delete(&s.a.id).await.unwrap());
    assert_eq!(
        notes.count(Filter::all()).await.unwrap(),
        2,
        "b and c in the unit"
    );
    unit.rollback().await.unwrap();
    assert_eq!(
        fx.notes().count(Filter::all()).await.unwrap(),
        2,
        "a and c after rollback"
    );
    let unit = fx.pg.begin().await.unwrap();
    let notes = unit.repo::<Note>();
    assert!(notes.purge(&s.b.id).await.unwrap());
    assert_eq!(notes.delete_where(Note::SLUG.eq("c")).await.unwrap(), 1);
    unit.commit().await.unwrap();
    let left = fx.notes().with_deleted().find(Filter::all()).await.unwrap();
    assert_eq!(left.len(), 2, "a live, c deleted, b gone");
    fx.teardown().await;
}

/// The DDL's unique index is partial, and `upsert_on` a unique key infers it.
#[tokio::test]
async fn unique_indexes_are_partial_and_upsert_on_infers_them() {
    let fx = PgSoft::setup().await;
    let ddl = reposmith_postgres::create_table_sql(Note::SCHEMA).join(";\n");
    assert!(
        ddl.contains("(\"slug\") WHERE \"deleted_at\" IS NULL"),
        "{ddl}"
    );
    let notes = fx.notes();
    let s = seed(&notes).await;
    let mut b = Note::new("b", 4.0);
    b.body = "second b".into();
    let stored = notes.upsert_on(&b, Note::SLUG).await.unwrap();
    assert_ne!(stored.id, s.b.id, "the deleted b is not the conflict");
    let mut again = Note::new("b", 4.0);
    again.body = "third b".into();
    let updated = notes.upsert_on(&again, Note::SLUG).await.unwrap();
    assert_eq!((updated.id, updated.body.as_str()), (stored.id, "third b"));
    fx.teardown().await;
}
