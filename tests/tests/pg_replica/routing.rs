//! Where reads and writes land, vector search on the replica, and replica
//! URLs that are not replicas of this primary.

use std::time::Duration;

use reposmith::postgres::ReplicaConfig;
use reposmith::{ConnectionUrl, Error, PgBackend};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::pg_replica;
use reposmith_tests::{closed_port, database_url, with_credentials, with_host};

use super::db::{ReplicaDb, Servers, pause_replay, replica_url, resume_replay};

/// Pool reads land on the replica; `on_primary`, units and writes on the
/// primary. With replay paused the replica is frozen, so a row written
/// since is missing exactly where the read went to the replica.
#[tokio::test]
async fn reads_go_to_the_replica_writes_and_units_to_the_primary() {
    let Some(db) = ReplicaDb::new(|r| r).await else {
        return;
    };
    let docs = db.pg.repo::<Doc>();
    let old = docs.insert(&Doc::new("before the pause")).await.unwrap();
    db.caught_up().await;
    let (servers, _guard) = Servers::record();
    assert_eq!(docs.get(&old.id).await.unwrap(), Some(old.clone()));
    assert_eq!(docs.count(Filter::all()).await.unwrap(), 1);
    let replica = db.pg.replicas()[0].name.clone();
    assert_eq!(servers.answered(), vec![replica.clone(), replica.clone()]);

    pause_replay().await;
    let new = docs.insert(&Doc::new("after the pause")).await.unwrap();
    assert_eq!(
        docs.get(&new.id).await.unwrap(),
        None,
        "the frozen replica answered"
    );
    assert_eq!(docs.find(Filter::all()).await.unwrap().len(), 1);
    let primary = docs.clone().on_primary();
    assert_eq!(primary.get(&new.id).await.unwrap(), Some(new.clone()));
    let uow = db.pg.begin().await.unwrap();
    assert_eq!(uow.repo::<Doc>().count(Filter::all()).await.unwrap(), 2);
    uow.commit().await.unwrap();
    let answered = servers.answered();
    assert_eq!(answered[..2], [replica.clone(), replica.clone()]);
    assert!(answered[2..].iter().all(|s| s == "primary"), "{answered:?}");

    resume_replay().await;
    db.caught_up().await;
    assert_eq!(docs.get(&new.id).await.unwrap(), Some(new));
    db.cleanup().await;
}

/// `on_replica` reads a replica even past `max_lag` (the caller accepts
/// staleness); default reads then go to the primary.
#[tokio::test]
async fn on_replica_accepts_lag_that_default_reads_do_not() {
    let Some(db) = ReplicaDb::new(|r| r.max_lag(1)).await else {
        return;
    };
    let docs = db.pg.repo::<Doc>();
    pause_replay().await;
    let doc = docs.insert(&Doc::new("lagging")).await.unwrap();
    db.until_serving(false).await;
    assert_eq!(
        docs.get(&doc.id).await.unwrap(),
        Some(doc.clone()),
        "primary"
    );
    let stale = docs.clone().on_replica();
    assert_eq!(
        stale.get(&doc.id).await.unwrap(),
        None,
        "the paused replica"
    );
    db.cleanup().await;
}

/// A replica URL that names the primary, or a server of another cluster,
/// is refused at connect, naming it without its password; one that does
/// not answer starts down and reads go to the primary.
#[tokio::test]
async fn replica_urls_that_are_not_replicas_of_this_primary_are_refused() {
    if pg_replica::required(pg_replica::REPLICA_URL).is_none() {
        return;
    }
    let primary = database_url();
    let other_host = primary.replace("127.0.0.1", "localhost");
    let err = connect_with_replica(&other_host).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("not in recovery"), "{text}");
    assert!(!text.contains("reposmith-dev-password"), "{text}");

    // The machine's own PostgreSQL: another cluster altogether.
    let stranger = "postgres://postgres@127.0.0.1:5432/postgres";
    let err = connect_with_replica(stranger).await.unwrap_err();
    assert!(
        err.to_string().contains("another PostgreSQL cluster"),
        "{err}"
    );

    let gone = with_host(&replica_url(), &format!("127.0.0.1:{}", closed_port()));
    let Some(db) = ReplicaDb::new(|mut r| {
        r.urls = vec![ConnectionUrl::new(gone)];
        r
    })
    .await
    else {
        return;
    };
    assert!(!db.pg.replicas()[0].up);
    let docs = db.pg.repo::<Doc>();
    assert_eq!(docs.get(&uuid::Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(db.pg.read_stats().fallbacks, 1);
    db.cleanup().await;
}

async fn connect_with_replica(url: &str) -> reposmith::Result<PgBackend> {
    let config = reposmith_tests::pg_config(database_url())
        .connect_timeout(Duration::from_secs(3))
        .replicas(ReplicaConfig::new([url]));
    PgBackend::connect(&config).await
}

/// A write sent to a standby (the primary's URL names the replica) is a
/// configuration error naming the server, its password masked.
#[tokio::test]
async fn a_write_that_reaches_a_standby_is_a_configuration_error() {
    if pg_replica::required(pg_replica::REPLICA_URL).is_none() {
        return;
    }
    let canary = with_credentials(&replica_url(), "postgres", "reposmith-dev-password");
    let pg = PgBackend::connect(&reposmith_tests::pg_config(canary))
        .await
        .unwrap();
    let err = pg.create_tables::<Doc>().await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        text.contains("read-only") && text.contains("primary"),
        "{text}"
    );
    assert!(!text.contains("reposmith-dev-password"), "{text}");
    pg.close().await;
}

/// A point with an HNSW index, for searches on the replica.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "replica_points", backend = "postgres")]
struct Point {
    #[repo(id)]
    id: i64,
    #[repo(vector(dims = 8, distance = "cosine", index = "hnsw"))]
    embedding: reposmith::Vector,
}

/// HNSW indexes replicate: a search on the replica, with its `ef_search`
/// set the same way, returns the primary's top 5.
#[tokio::test]
async fn vector_search_on_the_replica_returns_the_primarys_top_hits() {
    use reposmith::prelude::*;
    let Some(db) = ReplicaDb::new(|r| r).await else {
        return;
    };
    db.pg.create_tables::<Point>().await.unwrap();
    let points: Vec<Point> = (0..500)
        .map(|i| {
            let x = i as f32;
            let v = (0..8)
                .map(|d| (x * 0.37 + d as f32).sin() + 1.1)
                .collect::<Vec<_>>();
            Point {
                id: i + 1,
                embedding: Vector::from(v),
            }
        })
        .collect();
    let repo = db.pg.repo::<Point>();
    repo.insert_many(&points).await.unwrap();
    db.caught_up().await;
    let (servers, _guard) = Servers::record();
    for probe in [3, 77, 250] {
        let query = points[probe].embedding.clone();
        let ids =
            |hits: Vec<Scored<Point>>| hits.into_iter().map(|h| h.entity.id).collect::<Vec<_>>();
        let on_replica = repo
            .search_embedding(query.clone(), 5)
            .ef_search(80)
            .await
            .unwrap();
        let primary = repo.clone().on_primary();
        let on_primary = primary
            .search_embedding(query, 5)
            .ef_search(80)
            .await
            .unwrap();
        assert_eq!(ids(on_replica), ids(on_primary));
    }
    let answered = servers.answered();
    let replica = db.pg.replicas()[0].name.clone();
    assert_eq!(
        answered.iter().filter(|s| **s == replica).count(),
        3,
        "{answered:?}"
    );
    db.cleanup().await;
}

/// An entity whose reads must never be stale.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "replica_balances", backend = "postgres", reads = "primary")]
struct Balance {
    #[repo(id)]
    id: i64,
    cents: i64,
}

/// `#[repo(reads = "primary")]` keeps an entity's pool reads on the
/// primary; `on_replica()` still reaches the replica for a caller that
/// accepts staleness.
#[tokio::test]
async fn an_entity_declaring_reads_primary_is_read_on_the_primary() {
    let Some(db) = ReplicaDb::new(|r| r).await else {
        return;
    };
    db.pg.create_tables::<Balance>().await.unwrap();
    db.caught_up().await;
    let balances = db.pg.repo::<Balance>();
    pause_replay().await;
    let stored = balances
        .insert(&Balance { id: 1, cents: 500 })
        .await
        .unwrap();
    let (servers, _guard) = Servers::record();
    assert_eq!(balances.get(&1).await.unwrap(), Some(stored));
    assert_eq!(servers.answered(), vec!["primary".to_owned()]);
    assert_eq!(balances.clone().on_replica().get(&1).await.unwrap(), None);
    db.cleanup().await;
}

/// In Direct mode a replica URL leading to PgBouncer is refused at connect,
/// as a primary URL would be: its reads would use named statements there.
#[tokio::test]
async fn a_replica_behind_pgbouncer_is_refused_in_direct_mode() {
    let Some(bounced) = pg_replica::required(pg_replica::PGBOUNCER_REPLICA_URL) else {
        return;
    };
    let config = reposmith_tests::pg_config(database_url())
        .statement_timeout(None)
        .iterative_scan(false)
        .replicas(ReplicaConfig::new([bounced]));
    let err = PgBackend::connect(&config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        text.contains("replica") && text.contains("pooler"),
        "{text}"
    );
    assert!(!text.contains("reposmith-dev-password"), "{text}");
}
