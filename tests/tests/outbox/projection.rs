//! A PostgreSQL entity kept in step with a MongoDB collection through the
//! outbox: upserts and deletes arrive in order, and a message delivered
//! again (or late) does not roll a document back.

use reposmith::mongo::mongodb::bson::{Document, doc};
use reposmith::outbox::{Deliver, MongoProjection, OutboxMessage, Projection, Relay};
use reposmith::{MongoBackend, MongoConfig};
use reposmith_tests::{mongodb_url, unique_name};
use serde_json::json;

use super::drain;
use super::fixture::OutboxDb;

const TOPIC: &str = "outbox-test.projection";

#[tokio::test]
async fn a_projection_follows_commits_and_ignores_replays() {
    let db = OutboxDb::new().await;
    let config = MongoConfig::new(mongodb_url()).database(unique_name("projection"));
    let mongo = MongoBackend::connect(&config).await.unwrap();
    let projection = MongoProjection::new(&mongo, "doc_views").unwrap();
    let relay = Relay::new(&db.pg).topic(TOPIC, projection.clone()).unwrap();

    let publish = |projection: Projection| {
        let pg = db.pg.clone();
        async move {
            let unit = pg.begin().await.unwrap();
            unit.publish_on(TOPIC, &projection).unwrap();
            unit.commit().await.unwrap();
        }
    };
    publish(Projection::upsert("a", &json!({"title": "v1"})).unwrap()).await;
    publish(Projection::upsert("b", &json!({"title": "only"})).unwrap()).await;
    publish(Projection::upsert("a", &json!({"title": "v2"})).unwrap()).await;
    publish(Projection::delete("b").unwrap()).await;
    drain(&relay).await;

    let views = mongo.database().collection::<Document>("doc_views");
    let a = views.find_one(doc! {"_id": "a"}).await.unwrap().unwrap();
    assert_eq!(a.get_str("title").unwrap(), "v2");
    assert!(views.find_one(doc! {"_id": "b"}).await.unwrap().is_none());

    // The first upsert of "a" delivered again (a relay that crashed before
    // marking it done): the newer version stays.
    let stale = OutboxMessage::new(
        1,
        uuid::Uuid::now_v7(),
        reposmith::outbox::Destination::topic(TOPIC).unwrap(),
        serde_json::to_value(Projection::upsert("a", &json!({"title": "v1"})).unwrap()).unwrap(),
        chrono::Utc::now(),
    );
    let outcomes = projection.deliver(std::slice::from_ref(&stale)).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let a = views.find_one(doc! {"_id": "a"}).await.unwrap().unwrap();
    assert_eq!(
        a.get_str("title").unwrap(),
        "v2",
        "a replayed older message changes nothing"
    );

    // A document MongoDB cannot store is that message's error, named.
    let bad = Projection::upsert("c", &json!({"$where": "1"})).unwrap();
    let message = OutboxMessage::new(
        99,
        uuid::Uuid::now_v7(),
        reposmith::outbox::Destination::topic(TOPIC).unwrap(),
        serde_json::to_value(bad).unwrap(),
        chrono::Utc::now(),
    );
    let outcomes = projection.deliver(std::slice::from_ref(&message)).await;
    let error = outcomes[0].as_ref().unwrap_err();
    assert!(error.to_string().contains('$'), "{error}");

    mongo.database().drop().await.unwrap();
    db.cleanup().await;
}
