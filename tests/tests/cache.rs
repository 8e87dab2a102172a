//! The repository cache against real servers: the Redis store's lease
//! protocol (`store`), the near cache (`near`), the PostgreSQL wiring
//! (`pg`) and the MongoDB wiring (`mongo`).

#[path = "cache/mongo.rs"]
mod mongo;
#[path = "cache/near.rs"]
mod near;
#[path = "cache/pg.rs"]
mod pg;
#[path = "cache/store.rs"]
mod store;
