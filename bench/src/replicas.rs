//! `cargo xtask bench replicas`: issue 16's read replicas, sides
//! interleaved in the same rounds (see [`crate::measure`]). What it can
//! honestly show on one machine: the primary and its replica share the
//! same cores, so routing reads to the replica cannot add capacity here;
//! the figures are the router's overhead, where the reads ran, and what
//! read-your-writes costs and guarantees.
//!
//! Two tables of the usual printer ([`crate::report`]):
//!
//! * **read mix** ([`reads`]): filtered top-10 vector searches and
//!   filtered counts from `--tasks` (32) tasks for `--seconds` per side per
//!   round: `primary only`, a `PgBackend` without replicas (the baseline),
//!   against `primary + replica (routed)`, one with the replica, whose pool
//!   reads the router sends there. Both with pools of `--tasks`
//!   connections (the routed backend has one on each server; both servers
//!   allow 200). Under the tables, the routed side's `read_stats()`:
//!   replica reads, primary reads and fallbacks.
//! * **read-your-writes** ([`ryw`]): insert a row, then get it back, from
//!   `--ryw-tasks` (8) tasks: `get on_primary()` (the baseline), `get in
//!   the Session` (waits on the replica for the commit's replay) and `get
//!   routed, no session` (may miss the row); the latencies are the get's,
//!   and the notes give each session read's wait, p50/p99, and every side's
//!   stale reads. 8 tasks, not 32: enough writers to keep the replica's
//!   replay busy, few enough that the latencies measure the wait for
//!   replay rather than the queue for two cores.
//!
//! The data ([`data`]): `--rows` (20,000) documents with a 64-dimension
//! embedding (cosine HNSW), one of 10 categories and a text body, loaded
//! with `insert_many` into `bench_replica_docs` in a schema of the bench's
//! own ([`data::NAMESPACE`], dropped at the end), and replayed by the
//! replica before the rounds start. Autovacuum is off on that table: its
//! cleanup, replayed on the test replica (`max_standby_streaming_delay =
//! 20ms`, no `hot_standby_feedback`), would cancel replica reads mid-round
//! and measure that setting rather than the router; the load is followed
//! by a `VACUUM ANALYZE` instead.
//!
//! Needs `DATABASE_URL` and `REPOSMITH_TEST_PG_REPLICA_URL`, a streaming
//! replica of it; `cargo xtask bench replicas` starts both. The load
//! average is printed at the start and the end.

mod data;
mod reads;
mod ryw;

use std::time::{Duration, Instant};

use reposmith::postgres::sqlx::{self, AssertSqlSafe, Connection, PgConnection};
use reposmith::postgres::{ReadStats, ReplicaConfig};
use reposmith::{ConnectionUrl, PgBackend, PgConfig};

use crate::Result;
use crate::args::Flags;
use crate::report::loadavg;
use data::{NAMESPACE, in_namespace};

/// What to run and how big.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Measured rounds of the read mix (after one warm-up round).
    pub(crate) rounds: usize,
    /// Length of one side's turn in a round of the read mix.
    pub(crate) seconds: Duration,
    /// Rows of the table.
    pub(crate) rows: usize,
    /// Tasks of the read mix, and the pools' size.
    pub(crate) tasks: usize,
    /// Measured rounds of read-your-writes (after one warm-up round).
    pub(crate) ryw_rounds: usize,
    /// Length of one side's turn in a round of read-your-writes.
    pub(crate) ryw_seconds: Duration,
    /// Tasks of read-your-writes.
    pub(crate) ryw_tasks: usize,
    /// Workloads to run: reads, ryw.
    pub(crate) only: Vec<String>,
}

/// Every workload's option name, in run order.
const WORKLOADS: [&str; 2] = ["reads", "ryw"];

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            rounds: 5,
            seconds: Duration::from_secs(5),
            rows: 20_000,
            tasks: 32,
            ryw_rounds: 5,
            ryw_seconds: Duration::from_secs(3),
            ryw_tasks: 8,
            only: Vec::new(),
        };
        let seconds = |n: usize| Duration::from_secs(n.max(1) as u64);
        let mut flags = Flags::new(args, "replicas");
        while let Some(flag) = flags.next_flag() {
            match flag {
                "--rounds" => o.rounds = flags.number(flag)?.max(1),
                "--seconds" => o.seconds = seconds(flags.number(flag)?),
                "--rows" => o.rows = flags.number(flag)?.max(1000),
                "--tasks" => o.tasks = flags.number(flag)?.clamp(1, 100),
                "--ryw-rounds" => o.ryw_rounds = flags.number(flag)?.max(1),
                "--ryw-seconds" => o.ryw_seconds = seconds(flags.number(flag)?),
                "--ryw-tasks" => o.ryw_tasks = flags.number(flag)?.clamp(1, 100),
                "--only" => o.only = flags.list(flag)?,
                "--quick" => {
                    (o.rounds, o.seconds, o.rows) = (2, Duration::from_secs(1), 5000);
                    (o.ryw_rounds, o.ryw_seconds) = (2, Duration::from_secs(1));
                }
                other => return Err(format!("replicas bench: unknown option {other}").into()),
            }
        }
        if let Some(bad) = o.only.iter().find(|w| !WORKLOADS.contains(&w.as_str())) {
            return Err(format!(
                "replicas bench: --only {bad}: not one of {}",
                WORKLOADS.join(",")
            )
            .into());
        }
        Ok(o)
    }

    fn runs(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }
}

/// The replica's URL, or why there is none.
fn replica_url() -> Result<String> {
    if let Ok(url) = std::env::var("REPOSMITH_TEST_PG_REPLICA_URL") {
        return Ok(url);
    }
    Err(match std::env::var("REPOSMITH_TEST_PG_EXTRAS_SKIPPED") {
        Ok(why) => format!("replicas bench: no replica to measure: {why}").into(),
        Err(_) => "replicas bench: REPOSMITH_TEST_PG_REPLICA_URL is not set; \
                   `cargo xtask bench replicas` starts the replica and sets it"
            .into(),
    })
}

/// Drops the bench's schema, and creates it again when `create`.
async fn namespace(admin: &PgBackend, create: bool) -> Result<()> {
    let mut statement = format!("DROP SCHEMA IF EXISTS {NAMESPACE} CASCADE");
    if create {
        statement.push_str(&format!("; CREATE SCHEMA {NAMESPACE}"));
    }
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(admin.pool())
        .await?;
    Ok(())
}

/// Runs the replicas benchmark and prints its tables; the bench's schema
/// is dropped whatever happens in between.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let o = Options::parse(args)?;
    let started = Instant::now();
    println!("load average at start: {}", loadavg());
    let replica = replica_url()?;
    let config = crate::vector::pg_config()?;
    let admin = PgBackend::connect(&config.clone().max_connections(2)).await?;
    namespace(&admin, true).await?;
    let outcome = measure(&o, &config, &replica).await;
    let dropped = namespace(&admin, false).await;
    admin.close().await;
    outcome?;
    dropped?;
    println!("\nload average at end: {}", loadavg());
    println!("replicas bench: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The value of `setting` on the server at `url`.
async fn show(url: &str, setting: &str) -> Result<String> {
    let mut c = PgConnection::connect(url).await?;
    let value: String = sqlx::query_scalar(AssertSqlSafe(format!("SHOW {setting}")))
        .fetch_one(&mut c)
        .await?;
    c.close().await?;
    Ok(value)
}

/// Waits until the router lets default reads go to the replica.
async fn serving(routed: &PgBackend) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !routed.replicas().iter().all(|r| r.serving) {
        if Instant::now() > deadline {
            return Err(format!("the replica is not serving: {:?}", routed.replicas()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Loads the table, connects both sides, runs the workloads, prints.
async fn measure(o: &Options, config: &PgConfig, replica: &str) -> Result<()> {
    let url = in_namespace(config.url.expose());
    let replica_url = in_namespace(replica);
    let pool = u32::try_from(o.tasks)?;
    let mut primary_config = config.clone().max_connections(pool);
    primary_config.url = ConnectionUrl::new(url.clone());
    let primary = PgBackend::connect(&primary_config).await?;
    let at = Instant::now();
    let data = data::load(&primary, &url, o.rows).await?;
    eprintln!(
        "  load: {} rows inserted and indexed in {:.1} s",
        o.rows,
        at.elapsed().as_secs_f64()
    );
    let lag = data::replayed(&primary, &replica_url, Duration::from_secs(120)).await?;
    eprintln!(
        "  the replica replayed the load {:.2} s after it was committed",
        lag.as_secs_f64()
    );
    let replicas = ReplicaConfig::new([replica_url.clone()]);
    let routed = PgBackend::connect(&primary_config.clone().replicas(replicas)).await?;
    serving(&routed).await?;
    let name = routed.replicas().first().map(|r| r.name.clone());
    println!(
        "reposmith-bench replicas: PostgreSQL {} and its streaming replica {} on {} cores; \
         max_connections {} and {}; {} rows x 64 dims (cosine HNSW), 10 categories",
        show(&url, "server_version").await?,
        name.unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        show(&url, "max_connections").await?,
        show(&replica_url, "max_connections").await?,
        o.rows,
    );
    println!(
        "  read mix: {} rounds (+1 warm-up) of {} s per side, {} tasks, pools of {} (the routed \
         side: one on each server); read-your-writes: {} rounds (+1) of {} s per side, {} tasks",
        o.rounds,
        o.seconds.as_secs(),
        o.tasks,
        pool,
        o.ryw_rounds,
        o.ryw_seconds.as_secs(),
        o.ryw_tasks,
    );
    let mut tables = Vec::new();
    let mut routed_reads = None;
    if o.runs("reads") {
        let work = reads::run(o, &primary, &routed, &data);
        let (table, stats) = crate::step("read mix", work).await?;
        tables.push(table);
        routed_reads = Some(stats);
    }
    let mut ryw = None;
    if o.runs("ryw") {
        let (table, notes) = crate::step("read-your-writes", ryw::run(o, &routed, &data)).await?;
        tables.push(table);
        ryw = Some(notes);
    }
    crate::report::print_tables(&tables);
    if let Some(stats) = routed_reads {
        print_routed(&stats);
    }
    if let (Some(notes), Some(table)) = (&ryw, tables.last()) {
        ryw::print(table, notes);
    }
    for r in routed.replicas() {
        println!(
            "\nreplica {} at the end: up {}, serving {}, {} bytes of WAL behind, {} reads answered",
            r.name, r.up, r.serving, r.lag_bytes, r.reads
        );
    }
    println!(
        "note: one machine; the replica shares the primary's {} cores, so routing reads to it \
         cannot add capacity here: the ratio is the router's overhead (and the replica's \
         processes competing for the same cores), not the scale a replica on its own host adds",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    primary.close().await;
    routed.close().await;
    Ok(())
}

/// Where the routed side's measured reads ran.
fn print_routed(stats: &ReadStats) {
    let all = (stats.replicas + stats.primary).max(1);
    println!(
        "\nrouted side, read_stats() over the measured rounds: {} reads on the replica ({:.2}%), \
         {} on the primary, {} fallbacks; every count equalled the primary's",
        stats.replicas,
        100.0 * stats.replicas as f64 / all as f64,
        stats.primary,
        stats.fallbacks,
    );
}
