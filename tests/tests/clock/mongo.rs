//! The clock on MongoDB: a database of its own.

use reposmith::prelude::*;
use reposmith::{Clock, MongoBackend, MongoConfig};
use reposmith_tests::{mongodb_url, unique_name};

use super::{Stamped, every_path_stamps_the_clock, start};

async fn setup(clock: &Clock) -> MongoBackend {
    let config = MongoConfig::new(mongodb_url())
        .database(unique_name("clock"))
        .clock(clock.clone());
    let mongo = MongoBackend::connect(&config).await.unwrap();
    mongo.create_collections::<Stamped>().await.unwrap();
    mongo
}

#[tokio::test]
async fn a_fixed_clock_stamps_every_write_path() {
    let clock = Clock::fixed(start());
    let mongo = setup(&clock).await;
    every_path_stamps_the_clock(&mongo.repo::<Stamped>(), &clock).await;
    mongo.database().drop().await.unwrap();
    mongo.close().await;
}

/// An update the clock was not advanced for still moves `updated_at`, by
/// the millisecond that keeps it growing with every version.
#[tokio::test]
async fn an_update_without_advancing_moves_updated_at_one_millisecond() {
    let clock = Clock::fixed(start());
    let mongo = setup(&clock).await;
    let repo = mongo.repo::<Stamped>();
    let row = repo.insert(&Stamped::new("same")).await.unwrap();
    let row = repo.update(&row).await.unwrap();
    let step = chrono::TimeDelta::milliseconds(1);
    assert_eq!((row.created_at, row.updated_at), (start(), start() + step));
    mongo.database().drop().await.unwrap();
    mongo.close().await;
}
