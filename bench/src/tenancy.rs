//! The cost of tenant scoping: the same reads of one tenant's rows, by hand
//! on the table owner's pool (no row-level security, the tenant condition
//! written by the caller) against a `for_tenant` repository on the table
//! owner (the scope's condition only) and on an application role without
//! BYPASSRLS (the scope's condition and the policy, the tenant set on the
//! session), interleaved.
//!
//! `cargo xtask bench tenancy [-- --quick] [--rounds N] [--ops N]`:
//! 10 tenants of 1,000 rows each (16-dimensional vectors, HNSW); workloads
//! get by id and a filtered vector top-10 (`category = c` within the
//! tenant). `--quick`: 3 rounds of 100 ops.

use std::time::Instant;

use reposmith::{PgBackend, PgConfig, PgRepository, Repository, Vector};

use crate::Result;
use crate::args::Flags;
use crate::bench::{Side, Table};
use crate::measure::{interleave, timed};

/// A tenant's row, as the application sees it.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_tenant_docs", backend = "postgres")]
pub(crate) struct TenantDoc {
    #[repo(id(assigned))]
    pub(crate) id: i64,
    #[repo(tenant)]
    pub(crate) org: String,
    #[repo(index)]
    pub(crate) category: i32,
    #[repo(vector(dims = 16, distance = "l2", index = "hnsw"))]
    pub(crate) embedding: Vector,
}

/// The same table without the tenant attribute: the by-hand baseline.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_tenant_docs", backend = "postgres")]
pub(crate) struct PlainDoc {
    #[repo(id(assigned))]
    pub(crate) id: i64,
    pub(crate) org: String,
    #[repo(index)]
    pub(crate) category: i32,
    #[repo(vector(dims = 16, distance = "l2", index = "hnsw"))]
    pub(crate) embedding: Vector,
}

const TENANTS: i64 = 10;
const ROWS_PER_TENANT: i64 = 1_000;
const DIMS: usize = 16;
/// The tenant every read is for.
const TENANT: &str = "t3";

struct Options {
    rounds: usize,
    ops: usize,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rounds: 10,
        ops: 500,
    };
    let mut flags = Flags::new(args, "tenancy");
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--rounds" => o.rounds = flags.number(flag)?.max(1),
            "--ops" => o.ops = flags.number(flag)?.max(1),
            "--quick" => {
                o.rounds = 3;
                o.ops = 100;
            }
            other => return Err(format!("tenancy: unknown option {other}").into()),
        }
    }
    Ok(o)
}

/// Deterministic pseudo-random numbers (SplitMix64), so both sides and
/// every run read the same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn vector(&mut self) -> Vector {
        let unit = |r: &mut Rng| (r.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        Vector::from((0..DIMS).map(|_| unit(self)).collect::<Vec<f32>>())
    }
}

/// The three ways of reading one tenant's rows.
struct Sides {
    by_hand: PgRepository<PlainDoc>,
    scoped_owner: PgRepository<TenantDoc>,
    scoped_rls: PgRepository<TenantDoc>,
}

/// `cargo xtask bench tenancy`.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let started = Instant::now();
    println!("load average at start: {}", crate::report::loadavg());
    // Both roles' backends from the same `PgConfig::new`, so only the role
    // and the scope differ between the sides.
    let url = std::env::var("DATABASE_URL")?;
    let owner = PgBackend::connect(&PgConfig::new(url.clone())).await?;
    let role = format!("bench_tenant_app_{}", std::process::id());
    let app = setup(&owner, &role, &url).await?;
    let sides = Sides {
        by_hand: owner.repo::<PlainDoc>(),
        scoped_owner: owner.for_tenant(TENANT)?.repo::<TenantDoc>(),
        scoped_rls: app.for_tenant(TENANT)?.repo::<TenantDoc>(),
    };
    let ids: Vec<i64> = (0..ROWS_PER_TENANT).map(|i| 3 + i * TENANTS + 1).collect();
    check_sides_agree(&sides, &ids).await?;
    println!(
        "reposmith-bench tenancy: {} rounds (+1 warm-up) of {} ops per side; {TENANTS} tenants \
         of {ROWS_PER_TENANT} rows",
        o.rounds, o.ops
    );
    let order = [Side::Unscoped, Side::TenantOwner, Side::TenantRls];
    let gets = interleave(&order, o.rounds, async |side, _| {
        let mut rng = Rng(7);
        timed(o.ops, async |_| {
            let id = ids[(rng.next() % ids.len() as u64) as usize];
            let found = match side {
                Side::Unscoped => sides.by_hand.get(&id).await?.map(|d| d.id),
                Side::TenantOwner => sides.scoped_owner.get(&id).await?.map(|d| d.id),
                _ => sides.scoped_rls.get(&id).await?.map(|d| d.id),
            };
            if found != Some(id) {
                return Err(format!("{}: row {id} not found", side.label()).into());
            }
            Ok(())
        })
        .await
    })
    .await?;
    let searches = interleave(&order, o.rounds, async |side, _| {
        let mut rng = Rng(11);
        timed(o.ops, async |_| {
            let (query, category) = (rng.vector(), (rng.next() % 4) as i32);
            let hits = search(&sides, side, query, category).await?;
            std::hint::black_box(hits);
            Ok(())
        })
        .await
    })
    .await?;
    crate::report::print_tables(&[
        Table {
            workload: format!("get by id ({TENANT}'s rows)"),
            unit: "op",
            series: gets,
            baseline: 0,
        },
        Table {
            workload: "filtered vector top-10 (category within the tenant)".to_owned(),
            unit: "op",
            series: searches,
            baseline: 0,
        },
    ]);
    app.close().await;
    teardown(&owner, &role).await?;
    owner.close().await;
    println!("\nload average at end: {}", crate::report::loadavg());
    println!("tenancy bench: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Top-10 ids of `query` among the tenant's rows of `category`, on `side`.
async fn search(sides: &Sides, side: Side, query: Vector, category: i32) -> Result<Vec<i64>> {
    Ok(match side {
        Side::Unscoped => {
            let filter = PlainDoc::ORG.eq(TENANT) & PlainDoc::CATEGORY.eq(category);
            let hits = sides
                .by_hand
                .search_embedding(query, 10)
                .filter(filter)
                .await?;
            hits.into_iter().map(|h| h.entity.id).collect()
        }
        Side::TenantOwner | Side::TenantRls => {
            let repo = match side {
                Side::TenantOwner => &sides.scoped_owner,
                _ => &sides.scoped_rls,
            };
            let filter = TenantDoc::CATEGORY.eq(category);
            let hits = repo.search_embedding(query, 10).filter(filter).await?;
            hits.into_iter().map(|h| h.entity.id).collect()
        }
        other => return Err(format!("tenancy: no side {}", other.label()).into()),
    })
}

/// The sides must return the same rows: the same ids by get, the same
/// top-10 by search.
async fn check_sides_agree(sides: &Sides, ids: &[i64]) -> Result<()> {
    let foreign = ids[0] + 1;
    if sides.scoped_rls.get(&foreign).await?.is_some() {
        return Err("tenancy: the scoped side read another tenant's row".into());
    }
    let mut rng = Rng(5);
    for _ in 0..5 {
        let (query, category) = (rng.vector(), (rng.next() % 4) as i32);
        let mut all = Vec::new();
        for side in [Side::Unscoped, Side::TenantOwner, Side::TenantRls] {
            all.push(search(sides, side, query.clone(), category).await?);
        }
        if all[0] != all[1] || all[0] != all[2] || all[0].len() != 10 {
            return Err(format!("tenancy: sides disagree: {all:?}").into());
        }
    }
    Ok(())
}

/// A fresh table (row-level security on, from the tenant entity's DDL) with
/// every tenant's rows, and an application role without BYPASSRLS; returns
/// the backend connected as that role.
async fn setup(owner: &PgBackend, role: &str, url: &str) -> Result<PgBackend> {
    sqlx::query("DROP TABLE IF EXISTS bench_tenant_docs")
        .execute(owner.pool())
        .await?;
    owner.create_tables::<TenantDoc>().await?;
    let mut rng = Rng(3);
    let rows: Vec<PlainDoc> = (0..TENANTS * ROWS_PER_TENANT)
        .map(|i| PlainDoc {
            id: i + 1,
            org: format!("t{}", i % TENANTS),
            category: ((i / TENANTS) % 4) as i32,
            embedding: rng.vector(),
        })
        .collect();
    let plain = owner.repo::<PlainDoc>();
    for chunk in rows.chunks(1_000) {
        plain.insert_many(chunk).await?;
    }
    sqlx::query("ANALYZE bench_tenant_docs")
        .execute(owner.pool())
        .await?;
    let password = format!("pw{}", std::process::id());
    // Bench-made names and password, no outside value: safe to format.
    let sql = format!(
        "DROP ROLE IF EXISTS \"{role}\"; \
         CREATE ROLE \"{role}\" LOGIN NOBYPASSRLS PASSWORD '{password}'; \
         GRANT SELECT ON bench_tenant_docs TO \"{role}\""
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(owner.pool())
        .await?;
    let app = PgBackend::connect(&PgConfig::new(with_credentials(url, role, &password)?)).await?;
    Ok(app)
}

async fn teardown(owner: &PgBackend, role: &str) -> Result<()> {
    let sql = format!(
        "DROP TABLE IF EXISTS bench_tenant_docs; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\""
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(owner.pool())
        .await?;
    Ok(())
}

/// `url` with its user and password replaced.
fn with_credentials(url: &str, user: &str, password: &str) -> Result<String> {
    let (scheme, rest) = url.split_once("://").ok_or("DATABASE_URL has no scheme")?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Ok(format!("{scheme}://{user}:{password}@{host}"))
}
