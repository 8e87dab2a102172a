//! The repository cache against real servers: the Redis store's lease
//! protocol (`store`), the near cache (`near`), the PostgreSQL wiring
//! (`pg`), the MongoDB wiring (`mongo`), and the heavy tests with races,
//! outages and processes (`race`).

#[path = "cache/mongo.rs"]
mod mongo;
#[path = "cache/near.rs"]
mod near;
#[path = "cache/pg.rs"]
mod pg;
#[path = "cache/race.rs"]
mod race;
#[path = "cache/store.rs"]
mod store;
