//! The rate limiter against real Redis servers: the script's semantics
//! (`basics`), and the heavier tests with processes, outages and a cluster
//! in the submodules.

#[path = "limit/basics.rs"]
mod basics;
#[path = "limit/crashes.rs"]
mod crashes;
#[path = "limit/exactness.rs"]
mod exactness;
#[path = "limit/skew.rs"]
mod skew;
