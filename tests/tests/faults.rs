//! Faults survived (issue 17's list): PostgreSQL under load on a small
//! pool, sessions killed, replies lost and connections stalled, each against the real server, each loop
//! bounded in count and time; SecantusDB (MongoDB) killed mid-traffic and
//! stalled; reposmith's SQL interleaved by PostgreSQL's `isolationtester`.

#[path = "faults/mongo_proxy.rs"]
mod mongo_proxy;
#[path = "faults/mongo_server.rs"]
mod mongo_server;
#[path = "faults/pg_isolation.rs"]
mod pg_isolation;
#[path = "faults/pg_isolationtester.rs"]
mod pg_isolationtester;
#[path = "faults/pg_load.rs"]
mod pg_load;
#[path = "faults/pg_proxy.rs"]
mod pg_proxy;
#[path = "faults/pg_server.rs"]
mod pg_server;
#[path = "faults/pg_session.rs"]
mod pg_session;
