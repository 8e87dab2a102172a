//! The clock on PostgreSQL: a schema of its own, the pool and a unit of work.

use reposmith::prelude::*;
use reposmith::{Clock, PgBackend, PgConfig};
use reposmith_tests::{database_url, run_sql, unique_name, with_search_path};

use super::{Stamped, every_path_stamps_the_clock, start, tick};

/// A backend on a fresh schema holding the table, stamping with `clock`,
/// and the admin backend that drops the schema afterwards.
async fn setup(clock: &Clock) -> (PgBackend, PgBackend, String) {
    let admin = PgBackend::connect(&PgConfig::new(database_url()))
        .await
        .unwrap();
    let namespace = unique_name("clock");
    run_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
    let url = with_search_path(&database_url(), &format!("{namespace},public"));
    let config = reposmith_tests::pg_config(url).clock(clock.clone());
    let pg = PgBackend::connect(&config).await.unwrap();
    pg.create_tables::<Stamped>().await.unwrap();
    (pg, admin, namespace)
}

async fn teardown(pg: PgBackend, admin: PgBackend, namespace: &str) {
    pg.close().await;
    run_sql(&admin, &format!("DROP SCHEMA \"{namespace}\" CASCADE")).await;
    admin.close().await;
}

#[tokio::test]
async fn a_fixed_clock_stamps_every_write_path() {
    let clock = Clock::fixed(start());
    let (pg, admin, namespace) = setup(&clock).await;
    every_path_stamps_the_clock(&pg.repo::<Stamped>(), &clock).await;
    teardown(pg, admin, &namespace).await;
}

/// A unit of work's repositories stamp with the backend's clock too.
#[tokio::test]
async fn a_unit_of_work_stamps_with_the_backends_clock() {
    let clock = Clock::fixed(start());
    let (pg, admin, namespace) = setup(&clock).await;
    let uow = pg.begin().await.unwrap();
    let row = uow
        .repo::<Stamped>()
        .insert(&Stamped::new("u"))
        .await
        .unwrap();
    let later = tick(&clock);
    let row = uow.repo::<Stamped>().update(&row).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!((row.created_at, row.updated_at), (start(), later));
    let read = pg.repo::<Stamped>().get(&row.id).await.unwrap().unwrap();
    assert_eq!(read, row);
    teardown(pg, admin, &namespace).await;
}
