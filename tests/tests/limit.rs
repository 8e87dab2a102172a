//! The rate limiter against real Redis servers: the script's semantics
//! (`basics`), and the heavier tests with processes, outages and a cluster
//! in the submodules.

#[path = "limit/basics.rs"]
mod basics;
#[path = "limit/cluster.rs"]
mod cluster;
#[path = "limit/outages.rs"]
mod outages;
