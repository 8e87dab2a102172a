//! Relations on MongoDB: the same declarations give the same loaders (by
//! `$in`), and no constraint: MongoDB has no foreign keys.

use reposmith::{MongoBackend, Relations, Repository, Store};
use uuid::Uuid;

use super::entities::{RelChunk, RelDoc, RelNode};
use super::loading;

/// The test's MongoDB backend, with the relation collections.
async fn collections(store: &Store) -> MongoBackend {
    let mongo = store.mongo().unwrap().clone();
    mongo.create_collections::<RelDoc>().await.unwrap();
    mongo.create_collections::<RelChunk>().await.unwrap();
    mongo.create_collections::<RelNode>().await.unwrap();
    mongo
}

#[reposmith::test(backends(mongo))]
async fn loading_500_parents_is_one_query_per_relation(store: Store) {
    let mongo = collections(&store).await;
    loading::one_query_per_relation(&mongo.repo::<RelDoc>(), &mongo.repo::<RelChunk>()).await;
}

#[reposmith::test(backends(mongo))]
async fn loading_500_parents_is_one_query_per_relation_in_a_unit(store: Store) {
    let mongo = collections(&store).await;
    let unit = mongo.begin().await.unwrap();
    loading::one_query_per_relation(&unit.repo::<RelDoc>(), &unit.repo::<RelChunk>()).await;
    unit.rollback().await.unwrap();
}

#[reposmith::test(backends(mongo))]
async fn loading_keeps_order_filters_and_duplicates(store: Store) {
    let mongo = collections(&store).await;
    loading::order_filter_duplicates_and_empty_pages(
        &mongo.repo::<RelDoc>(),
        &mongo.repo::<RelChunk>(),
    )
    .await;
}

#[reposmith::test(backends(mongo))]
async fn loading_a_self_referencing_tree(store: Store) {
    let mongo = collections(&store).await;
    loading::tree(&mongo.repo::<RelNode>()).await;
}

/// No constraint on MongoDB: a chunk of a missing document is stored, and
/// its parent loads as `None`.
#[reposmith::test(backends(mongo))]
async fn mongo_enforces_no_reference(store: Store) {
    let mongo = collections(&store).await;
    let chunks = mongo.repo::<RelChunk>();
    let orphan = RelChunk {
        id: Uuid::now_v7(),
        doc_id: Uuid::now_v7(),
        seq: 0,
    };
    chunks.insert(&orphan).await.unwrap();
    let parents = mongo
        .repo::<RelDoc>()
        .parents_of(std::slice::from_ref(&orphan), RelChunk::DOC)
        .await
        .unwrap();
    assert_eq!(parents, [None]);
}
