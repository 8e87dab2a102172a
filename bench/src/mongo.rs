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
//! ops, 5000 bulk rows, 1000 seed rows). Needs MONGODB_URL (`cargo xtask
//! bench mongo` provides it).
//!
//! Measured 2026-11-24 on the shared 2-core machine against SecantusDB
//! 0.7.0b3 (reports 8.2.11), defaults (5 rounds of 500 ops, 100k bulk):
//!
//! | workload | raw driver | reposmith | ratio, median [min..max] |
//! |---|---|---|---|
//! | insert_one | 741 ops/s | 743 ops/s | 1.04 [0.82..1.12] |
//! | get by id | 2,647 ops/s | 2,465 ops/s | 0.95 [0.88..0.96] |
//! | find by indexed field (~10 docs) | 767 ops/s | 688 ops/s | 0.91 [0.85..0.95] |
//! | insert_many of 100k | 5,638 docs/s | 5,103 docs/s | 0.85 [0.83..1.03] |
//!
//! The server (one Python process) dominates every latency; ratios move by
//! ±0.1 between runs with the other builders' load (a 3-round run gave 0.94,
//! 1.06, 1.00 and 0.88). `insert_many` sends 1,000 documents per command
//! where the raw driver sends one message; 10,000 per command measured the
//! same within noise (0.88).

use std::time::Instant;

use chrono::{DateTime, Utc};
use futures_util_shim::collect;
use reposmith::mongodb::bson::{self, Document, doc};
use reposmith::mongodb::{Collection, IndexModel};
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
    use reposmith::mongodb::Cursor;
    use serde::de::DeserializeOwned;

    /// Every document of `cursor`.
    pub(crate) async fn collect<T>(
        mut cursor: Cursor<T>,
    ) -> reposmith::mongodb::error::Result<Vec<T>>
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

struct Options {
    rounds: usize,
    ops: usize,
    bulk_rows: usize,
    seed_rows: usize,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rounds: 5,
        ops: 500,
        bulk_rows: 100_000,
        seed_rows: 5_000,
    };
    let mut it = args.iter().filter(|a| *a != "mongo");
    while let Some(arg) = it.next() {
        let mut value = || -> Result<usize> {
            let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
            Ok(v.parse().map_err(|_| format!("{arg}: not a number: {v}"))?)
        };
        match arg.as_str() {
            "--rounds" => o.rounds = value()?.max(1),
            "--ops" => o.ops = value()?.max(1),
            "--bulk-rows" => o.bulk_rows = value()?.max(1),
            "--seed-rows" => o.seed_rows = value()?.max(100),
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

struct Bench {
    mongo: MongoBackend,
    repo: MongoRepository<MongoItem>,
    raw: Collection<RawItem>,
    ids: Vec<Uuid>,
    tags: usize,
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
    };
    let mut tables = Vec::new();
    tables.push(("insert_one", "ops", bench.insert_one(&o).await?));
    tables.push(("get by id", "ops", bench.get(&o).await?));
    tables.push((
        "find by indexed field (~10 docs)",
        "ops",
        bench.find(&o).await?,
    ));
    let bulk = format!("insert_many of {} docs", o.bulk_rows);
    tables.push((bulk.as_str(), "docs", bench.insert_many(&o).await?));
    print_table(&tables);
    bench.mongo.database().drop().await?;
    println!("\nmongo bench: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

impl Bench {
    async fn insert_one(&self, o: &Options) -> Result<Vec<Series<Side>>> {
        let items: Vec<MongoItem> = (0..o.ops).map(|n| item(n, self.tags)).collect();
        interleave(
            &[Side::Raw, Side::Reposmith],
            o.rounds,
            async |side, _| match side {
                Side::Raw => {
                    timed(o.ops, async |i| {
                        self.raw.insert_one(raw(&items[i])).await?;
                        Ok(())
                    })
                    .await
                }
                Side::Reposmith => {
                    timed(o.ops, async |i| {
                        self.repo.insert(&items[i]).await?;
                        Ok(())
                    })
                    .await
                }
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
                match side {
                    Side::Raw => {
                        timed(o.ops, async |i| {
                            let key = bson::Uuid::from_bytes(id(i).into_bytes());
                            let found = self.raw.find_one(doc! { "_id": key }).await?;
                            found.ok_or("raw get: missing")?;
                            Ok(())
                        })
                        .await
                    }
                    Side::Reposmith => {
                        timed(o.ops, async |i| {
                            self.repo.get(&id(i)).await?.ok_or("get: missing")?;
                            Ok(())
                        })
                        .await
                    }
                }
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
                match side {
                    Side::Raw => {
                        timed(o.ops, async |i| {
                            let cursor = self
                                .raw
                                .find(doc! { "tag": tag(i) })
                                .sort(doc! { "_id": 1 });
                            let found = collect(cursor.await?).await?;
                            if found.is_empty() {
                                return Err("raw find: nothing".into());
                            }
                            Ok(())
                        })
                        .await
                    }
                    Side::Reposmith => {
                        timed(o.ops, async |i| {
                            let found = self.repo.find_all_by_tag(tag(i)).await?;
                            if found.is_empty() {
                                return Err("find: nothing".into());
                            }
                            Ok(())
                        })
                        .await
                    }
                }
            },
        )
        .await
    }

    async fn insert_many(&self, o: &Options) -> Result<Vec<Series<Side>>> {
        let items: Vec<MongoItem> = (0..o.bulk_rows).map(|n| item(n, self.tags)).collect();
        let raw_target: Collection<RawItem> = self.mongo.database().collection("bench_mongo_raw");
        let index = IndexModel::builder().keys(doc! { "tag": 1 }).build();
        interleave(&[Side::Raw, Side::Reposmith], o.rounds, async |side, _| {
            // Each side writes into an emptied collection with the same index.
            match side {
                Side::Raw => {
                    raw_target.drop().await?;
                    raw_target.create_index(index.clone()).await?;
                    let start = Instant::now();
                    let docs: Vec<RawItem> = items.iter().map(raw).collect();
                    raw_target.insert_many(&docs).await?;
                    Ok(bulk_sample(start, o.bulk_rows))
                }
                Side::Reposmith => {
                    self.raw.drop().await?;
                    self.mongo.create_collections::<MongoItem>().await?;
                    let start = Instant::now();
                    self.repo.insert_many(&items).await?;
                    Ok(bulk_sample(start, o.bulk_rows))
                }
            }
        })
        .await
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

fn print_table(tables: &[(&str, &str, Vec<Series<Side>>)]) {
    println!(
        "\n{:<36} {:<26} {:>14} {:>10} {:>10}  reposmith ÷ raw: median [min..max] of rounds",
        "workload", "side", "rate", "p50", "p99"
    );
    println!("{}", "-".repeat(130));
    for (workload, unit, series) in tables {
        let base = &series[0];
        for (i, s) in series.iter().enumerate() {
            let ratio = match s.side {
                Side::Raw => "1.00 (baseline)".to_owned(),
                Side::Reposmith => {
                    let (median, min, max) = s.ratio_to(base);
                    format!("{median:.2} [{min:.2}..{max:.2}]")
                }
            };
            println!(
                "{:<36} {:<26} {:>9.0} {unit}/s {:>10} {:>10}  {ratio}",
                if i == 0 { *workload } else { "" },
                s.side.label(),
                s.rate(),
                format!("{:.2?}", s.latency(0.5)),
                format!("{:.2?}", s.latency(0.99)),
            );
        }
    }
}
