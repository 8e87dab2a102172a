//! The integration suite as one test binary: each module is one area, run
//! against the real PostgreSQL, MongoDB and Redis servers. One binary links
//! the whole tree once; sixteen binaries linked it sixteen times, which on
//! a 2-core machine cost minutes of every CI run. nextest still runs each
//! test in a process of its own, so tests share no state.
//!
//! `derive` (a hygiene proof that must be a crate of its own) and `ui`
//! (the derive's must-compile cases from `tests/ui/pass`) stay separate
//! binaries; the compile-fail cases are the `reposmith-ui-tests` package.

mod backends;
mod bad_input;
mod cache;
mod cancellation;
mod clock;
mod connection;
mod fault_proxy;
mod faults;
mod fuzz_corpus;
mod least_privilege;
mod limit;
mod migrate;
mod mongo_bson_mapping;
mod mongo_bulk_report;
mod mongo_repository;
mod mongo_search;
mod mongo_unit;
mod object_ids;
mod one_api;
mod outbox;
mod pg_bulk_load;
mod pg_pooler;
mod pg_recall;
mod pg_replica;
mod pg_repository;
mod pg_search;
mod queue;
mod queue_crash;
mod relations;
mod secrets;
mod services;
mod small_ids;
mod soft_delete;
mod tenancy;
mod testkit;
mod tls;
mod versions;
