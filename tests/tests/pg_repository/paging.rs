//! Bulk inserts on Postgres' second path: entities with array columns cannot
//! go through UNNEST and take multi-row VALUES. (Keyset pagination, the
//! UNNEST path and concurrent writers are in the conformance suite.)

use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;

use super::db::Db;

#[tokio::test]
async fn insert_many_of_array_entities_takes_the_values_path_all_or_nothing() {
    let db = Db::new().await;
    // Entities with array columns take the VALUES path, also all or nothing.
    let docs = db.pg.repo::<Doc>();
    let mut batch: Vec<Doc> = (0..2_500).map(|i| Doc::new(format!("d{i}"))).collect();
    assert_eq!(docs.insert_many(&batch).await.unwrap(), 2_500);
    batch.truncate(3);
    assert!(docs.insert_many(&batch).await.is_err());
    assert_eq!(docs.count(Filter::all()).await.unwrap(), 2_500);
    db.cleanup().await;
}
