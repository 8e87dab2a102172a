//! The rate limiter against real Redis servers: the script's semantics
//! (`basics`), exactness against a model from four processes
//! (`exactness`), clocks moved ±5 minutes (`skew`), crashes between
//! reserve and reconcile (`crashes`), a stopped, paused and restarted
//! server under both failure policies (`outages`), and a Redis Cluster
//! with a master killed mid-run (`cluster`).

#[path = "limit/basics.rs"]
mod basics;
#[path = "limit/cluster.rs"]
mod cluster;
#[path = "limit/crashes.rs"]
mod crashes;
#[path = "limit/exactness.rs"]
mod exactness;
#[path = "limit/outages.rs"]
mod outages;
#[path = "limit/skew.rs"]
mod skew;
