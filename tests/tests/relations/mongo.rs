//! Relations on MongoDB: the same declarations give the same loaders (by
//! `$in`), and no constraint: MongoDB has no foreign keys.

use reposmith::{MongoBackend, MongoConfig, Relations, Repository};
use reposmith_tests::{mongodb_url, unique_name};
use uuid::Uuid;

use super::entities::{RelChunk, RelDoc, RelNode};
use super::loading;

async fn mongo() -> MongoBackend {
    let config = MongoConfig::new(mongodb_url()).database(unique_name("mongorel"));
    let mongo = MongoBackend::connect(&config).await.unwrap();
    mongo.create_collections::<RelDoc>().await.unwrap();
    mongo.create_collections::<RelChunk>().await.unwrap();
    mongo.create_collections::<RelNode>().await.unwrap();
    mongo
}

async fn cleanup(mongo: MongoBackend) {
    mongo.database().drop().await.unwrap();
    mongo.close().await;
}

#[tokio::test]
async fn loading_500_parents_is_one_query_per_relation() {
    let mongo = mongo().await;
    loading::one_query_per_relation(&mongo.repo::<RelDoc>(), &mongo.repo::<RelChunk>()).await;
    cleanup(mongo).await;
}

#[tokio::test]
async fn loading_500_parents_is_one_query_per_relation_in_a_unit() {
    let mongo = mongo().await;
    let unit = mongo.begin().await.unwrap();
    loading::one_query_per_relation(&unit.repo::<RelDoc>(), &unit.repo::<RelChunk>()).await;
    unit.rollback().await.unwrap();
    cleanup(mongo).await;
}

#[tokio::test]
async fn loading_keeps_order_filters_and_duplicates() {
    let mongo = mongo().await;
    loading::order_filter_duplicates_and_empty_pages(
        &mongo.repo::<RelDoc>(),
        &mongo.repo::<RelChunk>(),
    )
    .await;
    cleanup(mongo).await;
}

#[tokio::test]
async fn loading_a_self_referencing_tree() {
    let mongo = mongo().await;
    loading::tree(&mongo.repo::<RelNode>()).await;
    cleanup(mongo).await;
}

/// No constraint on MongoDB: a chunk of a missing document is stored, and
/// its parent loads as `None`.
#[tokio::test]
async fn mongo_enforces_no_reference() {
    let mongo = mongo().await;
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
    cleanup(mongo).await;
}
