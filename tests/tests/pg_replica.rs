//! Read replicas against a real primary and streaming replica (`cargo xtask
//! services up --replica`): routing, read-your-writes with replay paused
//! (deterministic staleness, no sleeps standing in for lag), a replica
//! stopped mid-run, lag past `max_lag`, recovery conflicts, bad replica
//! URLs, and vector search on the replica.
//!
//! These tests pause replay, stop the replica or flood it with WAL, so
//! they run one at a time (the `pg-replica` test group in
//! `.config/nextest.toml`), and each resumes replay when it starts.

#[path = "pg_replica/db.rs"]
mod db;
#[path = "pg_replica/faults.rs"]
mod faults;
#[path = "pg_replica/routing.rs"]
mod routing;
#[path = "pg_replica/session.rs"]
mod session;
