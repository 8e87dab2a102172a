//! `cargo xtask bench mongo`: reposmith's `MongoRepository` against the raw
//! `mongodb` driver doing the same work, in one process, on one database,
//! interleaved rounds (see [`crate::measure`]).
//!
//! Workloads: `insert_one`, get by id, find by an indexed field (about 10
//! documents, id order), and `insert_many` of 100k documents. The raw side
//! is what a careful hand-written data layer does: a typed `Collection`
//! with serde, the same document shape (uuid as binary subtype 4, created_at
//! as a date), an id generated on the client, an `_id` sort on the find.
//! Both sides share one client, so pool settings cannot differ; each side's
//! `insert_many` writes into its own collection, emptied before each round.
//!
//! Options: `--rounds N` (default 5), `--ops N` (default 500), `--bulk-rows N`
//! (default 100000), `--seed-rows N` (default 5000), `--quick` (2 rounds, 100
//! ops, 5000 bulk rows, 1000 seed rows), `--only LIST` (some of
//! `insert_one,get,find,insert_many`), `--server-pid PID` (adds the server
//! process's CPU time per operation; the bench's own is always shown),
//! `--commands` (runs each workload once per side under the server's
//! profiler, prints the commands with their server milliseconds, and
//! stops). Needs MONGODB_URL (`cargo xtask bench mongo` provides it).
//!
//! CPU time per operation is the steadier measure here: wall-clock ratios on
//! the shared 2-core machine move by ±0.1 between runs, and the server's
//! own speed drifts with its history (see below).
//!
//! Measured 2026-11-24 on the shared 2-core machine against SecantusDB
//! 0.7.0b3 (reports 8.2.11), defaults (5 rounds of 500 ops, 100k bulk),
//! `--server-pid`; "before" is reposmith-mongo before 02880d6 (commands
//! of 1,000 documents, `Document` encoding and decoding), "after" at
//! 02880d6, the same bench otherwise, run one after the other:
//!
//! | workload | before: ratio, median [min..max] | after: ratio | after: raw / reposmith rate | after: client CPU per op, raw / reposmith | after: server CPU per op, raw / reposmith |
//! |---|---|---|---|---|---|
//! | insert_one | 0.97 [0.89..1.11] | 0.98 [0.87..1.15] | 49 / 48 ops/s | 376 / 408 µs | 19.9 / 20.3 ms |
//! | get by id | 1.04 [0.81..1.10] | 0.99 [0.96..1.00] | 2,685 / 2,653 ops/s | 164 / 168 µs | 240 / 240 µs |
//! | find by indexed field (~10 docs) | 0.96 [0.91..1.01] | 1.05 [0.86..1.12] | 624 / 636 ops/s | 212 / 224 µs | 1,028 / 1,044 µs |
//! | insert_many of 100k | 0.82 [0.77..0.84] | 0.93 [0.89..0.95] | 6,957 / 6,443 docs/s | 1.8 / 2.0 µs per doc | 147 / 158 µs per doc |
//! | insert_many, both collections created explicitly (6 rounds) | | 0.97 [0.95..1.00] | 6,164 / 5,977 docs/s | 1.9 / 1.8 µs per doc | 176 / 177 µs per doc |
//!
//! What the measurements showed:
//!
//! - **Server per-command cost of retryable writes.** Every write outside a
//!   transaction is a retryable write (the driver's default). SecantusDB
//!   records each for 30 minutes, up to 10,000, and on every retryable write
//!   scans all records twice and, once full, sorts them. A one-document
//!   insert from pymongo cost the server 18-20 ms of CPU with retryable
//!   writes and 0.4-0.5 ms without (same minute); py-spy put 77% of the
//!   server's time in `TransactionRegistry.record_retryable`. This is why
//!   insert_one runs at ~50 ops/s here (741 ops/s on a fresh server, before
//!   10,000 retryable writes accumulate); both sides pay it per command.
//!   reposmith's `insert_many` used to send 100 commands of 1,000 documents
//!   where the raw driver sends one of 100k: 32 µs more server CPU per
//!   document (181 vs 149). It now sizes commands from the server's pace
//!   (7 commands for 100k; `--commands --bulk-rows 30000` shows 1,000,
//!   10,000 and 19,000): 158 vs 147.
//! - **Client encoding.** `insert_many` built a `Document` per entity, which
//!   the driver then serialized again: 22k client instructions per
//!   document against the raw side's 9.1k (callgrind, deterministic). It now
//!   encodes once to raw BSON: 11.4k.
//! - **Client decoding.** A find decoded each reply document into a
//!   `Document` (the driver's serde path through extended-JSON models) and
//!   then into values: 333k client instructions per find of 10 documents
//!   against 190k; now it decodes the raw reply directly: 192k. (`get` still
//!   takes the `Document` path, in repository.rs: 61k against 55k.)
//! - **Filter shapes.** reposmith sends `{tag: {$eq: v}}` and
//!   `{_id: {$eq: id}}` where the raw side sends `{tag: v}` and `{_id: id}`
//!   (`--commands`); the server plans them alike (IXSCAN `tag_1` then a
//!   SORT on `_id`; the `_id` point lookup) and their server CPU per
//!   operation is equal within the measurement. The `_id` sort itself costs
//!   the server about a third of a find (700 vs 480 µs in a pymongo probe),
//!   on both sides.
//! - **What remained in `insert_many`** after that (0.93, server CPU +11
//!   µs per document, client CPU equal) was the bench itself: reposmith's
//!   collection was created explicitly (`create_collections`: `create`,
//!   then `createIndexes`), the raw side's implicitly by `createIndex`, and
//!   SecantusDB inserted into the explicitly created one more slowly. With
//!   both created explicitly (as now) the server CPU per document is equal
//!   (176 vs 177 µs) and the ratio 0.97 [0.95..1.00]. In a pymongo probe on
//!   identical collections, one command of 100k against the 7 reposmith now
//!   sends cost the server 173 vs 178 µs per document, the difference spread
//!   over per-document insert work in py-spy, with no per-command hotspot.
//! - The server's speed drifts several-fold within minutes (retryable-write
//!   records, oplog pruning, other clients): the same pymongo probe measured
//!   150 µs and, 20 minutes later, 650 to 1,500 µs of server CPU per
//!   document, so single runs of the bulk workload move by ±0.1.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util_shim::collect;
use reposmith::mongo::mongodb::bson::{self, Document, doc};
use reposmith::mongo::mongodb::{Collection, IndexModel};
use reposmith::{MongoBackend, MongoConfig, MongoRepository, Repository};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Result;
use crate::measure::{Sample, Series, interleave, timed};

/// The benchmarked document.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_mongo_items")]
pub(crate) struct MongoItem {
    #[repo(id)]
    id: Uuid,
    /// `n % (seed_rows / 10)`: about ten documents per tag.
    #[repo(index)]
    tag: String,
    title: String,
    score: f64,
    #[repo(created_at)]
    created_at: DateTime<Utc>,
}

/// The same document, as the raw side writes and reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RawItem {
    #[serde(rename = "_id")]
    id: bson::Uuid,
    tag: String,
    title: String,
    score: f64,
    created_at: bson::DateTime,
}

/// `Stream::try_collect` without a futures dependency of the bench.
mod futures_util_shim {
    use reposmith::mongo::mongodb::Cursor;
    use serde::de::DeserializeOwned;

    /// Every document of `cursor`.
    pub(crate) async fn collect<T>(
        mut cursor: Cursor<T>,
    ) -> reposmith::mongo::mongodb::error::Result<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync + Unpin,
    {
        let mut out = Vec::new();
        while cursor.advance().await? {
            out.push(cursor.deserialize_current()?);
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Raw,
    Reposmith,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Raw => "raw mongodb driver",
            Side::Reposmith => "reposmith MongoRepository",
        }
    }
}

/// The four workloads, in the order they run.
const WORKLOADS: [&str; 4] = ["insert_one", "get", "find", "insert_many"];

struct Options {
    rounds: usize,
    ops: usize,
    bulk_rows: usize,
    seed_rows: usize,
    /// Workloads to run (names of [`WORKLOADS`]); empty: all.
    only: Vec<String>,
    /// The server's process id: its CPU time per operation is reported too.
    server_pid: Option<u32>,
    /// Print the commands each side sends, from the server's profiler, and stop.
    commands: bool,
}

impl Options {
    fn runs(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rounds: 5,
        ops: 500,
        bulk_rows: 100_000,
        seed_rows: 5_000,
        only: Vec::new(),
        server_pid: None,
        commands: false,
    };
    let mut it = args.iter().filter(|a| *a != "mongo");
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--only" => {
                let list = it.next().ok_or("--only needs a workload list")?;
                for w in list.split(',') {
                    if !WORKLOADS.contains(&w) {
                        let known = WORKLOADS.join(", ");
                        return Err(format!("--only: unknown workload {w} (known: {known})").into());
                    }
                    o.only.push(w.to_owned());
                }
                continue;
            }
            "--commands" => {
                o.commands = true;
                continue;
            }
            _ => {}
        }
        let mut value = || -> Result<usize> {
            let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            Ok(v.parse().map_err(|_| format!("{arg}: not a number: {v}"))?)
        };
        match arg.as_str() {
            "--rounds" => o.rounds = value()?.max(1),
            "--ops" => o.ops = value()?.max(1),
            "--bulk-rows" => o.bulk_rows = value()?.max(1),
            "--seed-rows" => o.seed_rows = value()?.max(100),
            "--server-pid" => o.server_pid = Some(u32::try_from(value()?)?),
            "--quick" => (o.rounds, o.ops, o.bulk_rows, o.seed_rows) = (2, 100, 5_000, 1_000),
            other => return Err(format!("mongo bench: unknown option {other}").into()),
        }
    }
    Ok(o)
}

fn item(n: usize, tags: usize) -> MongoItem {
    MongoItem {
        id: Uuid::nil(),
        tag: format!("tag-{}", n % tags),
        title: format!("item {n} with a title of a typical length"),
        score: n as f64 * 0.5,
        created_at: DateTime::<Utc>::MIN_UTC,
    }
}

/// What the raw side does before an insert: a v7 id and the time, as reposmith stamps them.
fn raw(item: &MongoItem) -> RawItem {
    RawItem {
        id: bson::Uuid::from_bytes(Uuid::now_v7().into_bytes()),
        tag: item.tag.clone(),
        title: item.title.clone(),
        score: item.score,
        created_at: bson::DateTime::now(),
    }
}

/// One workload's result: per side its rounds and its CPU time.
struct Table {
    workload: String,
    unit: &'static str,
    series: Vec<Series<Side>>,
    cpu: [Cpu; 2],
}

struct Bench {
    mongo: MongoBackend,
    repo: MongoRepository<MongoItem>,
    raw: Collection<RawItem>,
    ids: Vec<Uuid>,
    tags: usize,
    server_pid: Option<u32>,
    /// CPU used by the measured rounds of the current workload, per side.
    cpu: RefCell<[Cpu; 2]>,
}

/// CPU time of the bench process and of the server during measured rounds.
///
/// Wall-clock ratios on a shared machine move by ±0.1 between runs; CPU
/// time per operation moves far less, and splits a gap into client work
/// (encoding, decoding, reposmith's checks) and server work (what the
/// commands cost the server).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    client: Duration,
    server: Option<Duration>,
    units: u64,
}

/// User plus system CPU time of process `pid` (`self` for this one), all
/// threads, exited ones included, from `/proc/<pid>/stat`; `None` off Linux.
/// The kernel counts in ticks of 1/100 s (USER_HZ, fixed at 100 on Linux).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is the first,
    // utime the 12th and stime the 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Runs the MongoDB benchmark and prints its table.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let url = std::env::var("MONGODB_URL").map_err(|_| "MONGODB_URL is not set")?;
    let config = MongoConfig::new(url).database("reposmith_bench");
    let mongo = MongoBackend::connect(&config).await?;
    let started = Instant::now();
    println!(
        "reposmith-bench mongo: {} rounds (+1 warm-up), {} ops per side per round, {} seeded \
         documents, insert_many of {}; server {}",
        o.rounds,
        o.ops,
        o.seed_rows,
        o.bulk_rows,
        mongo.capabilities().server_version
    );
    mongo.database().drop().await?;
    mongo.create_collections::<MongoItem>().await?;
    let tags = (o.seed_rows / 10).max(1);
    let seed: Vec<MongoItem> = (0..o.seed_rows).map(|n| item(n, tags)).collect();
    let repo = mongo.repo::<MongoItem>();
    repo.insert_many(&seed).await?;
    let ids = collect(
        mongo
            .database()
            .collection::<Document>("bench_mongo_items")
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .await?,
    )
    .await?
    .iter()
    .filter_map(|d| match d.get("_id") {
        Some(bson::Bson::Binary(b)) => Uuid::from_slice(&b.bytes).ok(),
        _ => None,
    })
    .collect();
    let bench = Bench {
        raw: mongo.database().collection("bench_mongo_items"),
        repo,
        mongo,
        ids,
        tags,
        server_pid: o.server_pid,
        cpu: RefCell::default(),
    };
    if o.commands {
        bench.show_commands(&o).await?;
        bench.mongo.database().drop().await?;
        return Ok(());
    }
    let mut tables = Vec::new();
    if o.runs("insert_one") {
        let series = bench.insert_one(&o).await?;
        tables.push(Table {
            workload: "insert_one".to_owned(),
            unit: "ops",
            series,
            cpu: bench.take_cpu(),
        });
    }
    if o.runs("get") {
        let series = bench.get(&o).await?;
        tables.push(Table {
            workload: "get by id".to_owned(),
            unit: "ops",
            series,
            cpu: bench.take_cpu(),
        });
    }
    if o.runs("find") {
        let series = bench.find(&o).await?;
        let name = "find by indexed field (~10 docs)".to_owned();
        tables.push(Table {
            workload: name,
            unit: "ops",
            series,
            cpu: bench.take_cpu(),
        });
    }
    if o.runs("insert_many") {
        let series = bench.insert_many(&o).await?;
        let name = format!("insert_many of {} docs", o.bulk_rows);
        tables.push(Table {
            workload: name,
            unit: "docs",
            series,
            cpu: bench.take_cpu(),
        });
    }
    print_table(&tables);
    bench.mongo.database().drop().await?;
    println!("\nmongo bench: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

impl Bench {
    /// Runs `work`, one side's timed part of a round, and adds the CPU it
    /// took to that side's totals, unless `round` is the warm-up.
    async fn metered(
        &self,
        side: Side,
        round: usize,
        work: impl Future<Output = Result<Sample>>,
    ) -> Result<Sample> {
        let server = || self.server_pid.and_then(|pid| cpu_time(&pid.to_string()));
        let before = (cpu_time("self"), server());
        let sample = work.await?;
        let after = (cpu_time("self"), server());
        // `interleave` numbers the warm-up round usize::MAX.
        if round != usize::MAX {
            let total = &mut self.cpu.borrow_mut()[side as usize];
            if let (Some(a), Some(b)) = (after.0, before.0) {
                total.client += a.saturating_sub(b);
            }
            if let (Some(a), Some(b)) = (after.1, before.1) {
                total.server = Some(total.server.unwrap_or_default() + a.saturating_sub(b));
            }
            total.units += sample.units;
        }
        Ok(sample)
    }

    /// The CPU totals of the workload just run, reset for the next one.
    fn take_cpu(&self) -> [Cpu; 2] {
        std::mem::take(&mut *self.cpu.borrow_mut())
    }

    async fn insert_one(&self, o: &Options) -> Result<Vec<Series<Side>>> {
        let items: Vec<MongoItem> = (0..o.ops).map(|n| item(n, self.tags)).collect();
        interleave(
            &[Side::Raw, Side::Reposmith],
            o.rounds,
            async |side, round| {
                let work = timed(o.ops, async |i| {
                    match side {
                        Side::Raw => {
                            self.raw.insert_one(raw(&items[i])).await?;
                        }
                        Side::Reposmith => {
                            self.repo.insert(&items[i]).await?;
                        }
                    }
                    Ok(())
                });
                self.metered(side, round, work).await
            },
        )
        .await
    }

    async fn get(&self, o: &Options) -> Result<Vec<Series<Side>>> {
        let n = self.ids.len();
        interleave(
            &[Side::Raw, Side::Reposmith],
            o.rounds,
            async |side, round| {
                let id = |i: usize| self.ids[(round.wrapping_mul(7919) + i * 31) % n];
                let work = timed(o.ops, async |i| match side {
                    Side::Raw => {
                        let key = bson::Uuid::from_bytes(id(i).into_bytes());
                        let found = self.raw.find_one(doc! { "_id": key }).await?;
                        found.ok_or("raw get: missing")?;
                        Ok(())
                    }
                    Side::Reposmith => {
                        self.repo.get(&id(i)).await?.ok_or("get: missing")?;
                        Ok(())
                    }
                });
                self.metered(side, round, work).await
            },
        )
        .await
    }

    async fn find(&self, o: &Options) -> Result<Vec<Series<Side>>> {
        let tags = self.tags;
        interleave(
            &[Side::Raw, Side::Reposmith],
            o.rounds,
            async |side, round| {
                let tag = |i: usize| format!("tag-{}", (round.wrapping_mul(131) + i * 17) % tags);
                let work = timed(o.ops, async |i| {
                    let found = match side {
                        Side::Raw => self.raw_find(tag(i)).await?.len(),
                        Side::Reposmith => self.repo.find_all_by_tag(tag(i)).await?.len(),
                    };
                    if found == 0 {
                        return Err(format!("{side:?} find: nothing").into());
                    }
                    Ok(())
                });
                self.metered(side, round, work).await
            },
        )
        .await
    }

    /// The raw side's find: the documents with `tag`, in id order.
    async fn raw_find(&self, tag: String) -> Result<Vec<RawItem>> {
        let cursor = self
            .raw
            .find(doc! { "tag": tag })
            .sort(doc! { "_id": 1 })
            .await?;
        Ok(collect(cursor).await?)
    }

    async fn insert_many(&self, o: &Options) -> Result<Vec<Series<Side>>> {
        let items: Vec<MongoItem> = (0..o.bulk_rows).map(|n| item(n, self.tags)).collect();
        interleave(
            &[Side::Raw, Side::Reposmith],
            o.rounds,
            async |side, round| {
                // Each side writes into an emptied collection with the same index.
                self.empty_bulk_target(side).await?;
                let work = async {
                    let start = Instant::now();
                    self.bulk_insert(side, &items).await?;
                    Ok(bulk_sample(start, items.len()))
                };
                self.metered(side, round, work).await
            },
        )
        .await
    }

    /// The raw side's `insert_many` target.
    fn raw_bulk(&self) -> Collection<RawItem> {
        self.mongo.database().collection("bench_mongo_raw")
    }

    /// Drops `side`'s `insert_many` collection and recreates its index.
    async fn empty_bulk_target(&self, side: Side) -> Result<()> {
        match side {
            Side::Raw => {
                let target = self.raw_bulk();
                target.drop().await?;
                // Created explicitly, as `create_collections` does for reposmith.
                let db = self.mongo.database();
                db.create_collection("bench_mongo_raw").await?;
                let index = IndexModel::builder().keys(doc! { "tag": 1 }).build();
                target.create_index(index).await?;
            }
            Side::Reposmith => {
                self.raw.drop().await?;
                self.mongo.create_collections::<MongoItem>().await?;
            }
        }
        Ok(())
    }

    /// One `insert_many` of `items`; the raw side stamps ids and times as
    /// it converts, as reposmith does.
    async fn bulk_insert(&self, side: Side, items: &[MongoItem]) -> Result<()> {
        match side {
            Side::Raw => {
                let docs: Vec<RawItem> = items.iter().map(raw).collect();
                self.raw_bulk().insert_many(&docs).await?;
            }
            Side::Reposmith => {
                self.repo.insert_many(items).await?;
            }
        }
        Ok(())
    }

    /// Runs each workload once per side (`insert_many` of `--bulk-rows`
    /// documents) under the server's profiler and prints the commands it
    /// recorded, with their server-side milliseconds: the exact shapes and
    /// batches the two sides send.
    async fn show_commands(&self, o: &Options) -> Result<()> {
        let db = self.mongo.database();
        let items: Vec<MongoItem> = (0..o.bulk_rows).map(|n| item(n, self.tags)).collect();
        let tag = || "tag-1".to_owned();
        db.run_command(doc! { "profile": 2 }).await?;
        for side in [Side::Raw, Side::Reposmith] {
            if o.runs("insert_one") {
                match side {
                    Side::Raw => {
                        self.raw.insert_one(raw(&items[0])).await?;
                    }
                    Side::Reposmith => {
                        self.repo.insert(&items[0]).await?;
                    }
                }
            }
            if o.runs("get") {
                let id = self.ids[0];
                match side {
                    Side::Raw => {
                        let key = bson::Uuid::from_bytes(id.into_bytes());
                        drop(self.raw.find_one(doc! { "_id": key }).await?);
                    }
                    Side::Reposmith => {
                        self.repo.get(&id).await?;
                    }
                }
            }
            if o.runs("find") {
                match side {
                    Side::Raw => {
                        self.raw_find(tag()).await?;
                    }
                    Side::Reposmith => {
                        self.repo.find_all_by_tag(tag()).await?;
                    }
                }
            }
            if o.runs("insert_many") {
                self.bulk_insert(side, &items).await?;
            }
        }
        db.run_command(doc! { "profile": 0 }).await?;
        let profile = db.collection::<Document>("system.profile");
        for entry in collect(profile.find(doc! {}).sort(doc! { "ts": 1 }).await?).await? {
            let Ok(command) = entry.get_document("command") else {
                continue;
            };
            let mut shown = Document::new();
            for (key, value) in command {
                match (key.as_str(), value) {
                    // Session and cluster plumbing, the same on both sides.
                    ("lsid" | "$clusterTime" | "$db" | "txnNumber", _) => {}
                    ("documents", bson::Bson::Array(docs)) => {
                        shown.insert("documents", format!("[{} documents]", docs.len()));
                    }
                    _ => {
                        shown.insert(key, value.clone());
                    }
                }
            }
            let millis = entry.get("millis").cloned().unwrap_or(bson::Bson::Null);
            println!("{millis:>4} ms  {shown}");
        }
        Ok(())
    }
}

fn bulk_sample(start: Instant, rows: usize) -> Sample {
    let wall = start.elapsed();
    Sample {
        wall,
        latencies: vec![wall],
        units: rows as u64,
    }
}

fn print_table(tables: &[Table]) {
    println!(
        "\n{:<36} {:<26} {:>14} {:>10} {:>10} {:>11} {:>11}  reposmith ÷ raw: median [min..max] of rounds",
        "workload", "side", "rate", "p50", "p99", "client CPU", "server CPU"
    );
    println!("{}", "-".repeat(154));
    for Table {
        workload,
        unit,
        series,
        cpu,
    } in tables
    {
        let base = &series[0];
        for (i, s) in series.iter().enumerate() {
            let ratio = match s.side {
                Side::Raw => "1.00 (baseline)".to_owned(),
                Side::Reposmith => {
                    let (median, min, max) = s.ratio_to(base);
                    format!("{median:.2} [{min:.2}..{max:.2}]")
                }
            };
            let cpu = cpu[s.side as usize];
            let per_unit = |d: Duration| {
                let micros = d.as_secs_f64() * 1e6 / cpu.units.max(1) as f64;
                format!("{micros:.1} µs")
            };
            println!(
                "{:<36} {:<26} {:>9.0} {unit}/s {:>10} {:>10} {:>11} {:>11}  {ratio}",
                if i == 0 { workload.as_str() } else { "" },
                s.side.label(),
                s.rate(),
                format!("{:.2?}", s.latency(0.5)),
                format!("{:.2?}", s.latency(0.99)),
                per_unit(cpu.client),
                cpu.server.map_or("-".to_owned(), per_unit),
            );
        }
    }
    println!(
        "\nCPU columns: CPU time per {{op, doc}} over the measured rounds, from /proc \
         (client: this process; server: --server-pid)"
    );
}
