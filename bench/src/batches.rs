//! Small batches: Diesel's bench-suite scenario `insert_users` (rows of
//! `name` and a nullable `hair_color` under a database-assigned key),
//! `insert_many` of 1 and of 100 rows against hand-written sqlx sending one
//! multi-row `INSERT` on the same pool, interleaved. Both scenarios also run
//! in the default (`crud`) benchmark, so a small-batch regression (sqlx
//! 0.9.0's lost `TCP_NODELAY` made them 100x slower) cannot come back unseen.
//!
//! `cargo xtask bench batches` runs them alone and adds the crossover table
//! that chose `insert_many`'s COPY threshold: raw multi-row `INSERT` against
//! raw binary COPY (both one statement on the pool, no transaction) and
//! reposmith, at sizes around it.

use reposmith::{PgRepository, Repository, Store};
use sqlx::{PgPool, QueryBuilder};

use crate::Result;
use crate::args::Options;
use crate::bench::{Side, Table, connect};
use crate::measure::{interleave, timed};

/// The scenario's row; `id` is an identity column the database fills.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_users")]
pub(crate) struct User {
    #[repo(id)]
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) hair_color: Option<String>,
}

/// Batch sizes of the crossover table.
const CROSSOVER: [usize; 6] = [10, 100, 250, 500, 1_000, 4_000];
/// Rows inserted per side per round in the crossover table, whatever the size.
const CROSSOVER_ROWS: usize = 20_000;
/// Postgres' binary COPY signature, flags and header extension length.
const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// The two `insert_users` tables, for the `crud` run.
pub(crate) async fn insert_users(opts: &Options) -> Result<Vec<Table>> {
    let store = setup().await?;
    let repo = store.postgres()?.repo::<User>();
    let raw = store.postgres()?.pool().clone();
    let mut tables = Vec::new();
    for size in [1, 100] {
        // Statements per side per round: a 100-row statement costs more.
        let ops = (opts.ops / size.min(10)).max(1);
        tables.push(scenario(&repo, &raw, size, ops, opts.rounds).await?);
    }
    store.close().await;
    Ok(tables)
}

/// `cargo xtask bench batches`: the two scenarios, then the crossover.
pub(crate) async fn run(opts: &Options) -> Result<Vec<Table>> {
    let mut tables = insert_users(opts).await?;
    let store = setup().await?;
    let repo = store.postgres()?.repo::<User>();
    let raw = store.postgres()?.pool().clone();
    let sides = [Side::Reposmith, Side::Raw, Side::RawBinary];
    for size in CROSSOVER {
        let statements = (CROSSOVER_ROWS / size).max(1);
        let batch = users(size);
        let series = interleave(&sides, opts.rounds, async |side, _| {
            let mut sample = timed(statements, async |_| match side {
                Side::Reposmith => exactly(size, repo.insert_many(&batch).await?),
                Side::Raw => exactly(size, values(&raw, &batch).await?),
                _ => exactly(size, copy_binary(&raw, &batch).await?),
            })
            .await?;
            sample.units = (statements * size) as u64;
            Ok(sample)
        })
        .await?;
        tables.push(Table {
            workload: format!("crossover: {size} rows per statement"),
            unit: "row",
            series,
            baseline: 1,
        });
    }
    store.close().await;
    Ok(tables)
}

/// One `insert_users_<size>` table: reposmith against raw multi-row INSERT.
async fn scenario(
    repo: &PgRepository<User>,
    raw: &PgPool,
    size: usize,
    ops: usize,
    rounds: usize,
) -> Result<Table> {
    let batch = users(size);
    let series = interleave(&[Side::Reposmith, Side::Raw], rounds, async |side, _| {
        timed(ops, async |_| match side {
            Side::Reposmith => exactly(size, repo.insert_many(&batch).await?),
            _ => exactly(size, values(raw, &batch).await?),
        })
        .await
    })
    .await?;
    Ok(Table {
        workload: format!("insert_users_{size} (insert_many of {size})"),
        unit: "op",
        series,
        baseline: 1,
    })
}

/// A store with an empty `bench_users` table made from the entity.
async fn setup() -> Result<Store> {
    let store = connect(None).await?;
    let pg = store.postgres()?;
    sqlx::query("DROP TABLE IF EXISTS bench_users")
        .execute(pg.pool())
        .await?;
    pg.create_tables::<User>().await?;
    Ok(store)
}

/// `size` new users, every other one without a hair colour.
fn users(size: usize) -> Vec<User> {
    (0..size)
        .map(|i| User {
            id: 0,
            name: format!("User {i}"),
            hair_color: (i % 2 == 0).then(|| "brown".to_owned()),
        })
        .collect()
}

fn exactly(size: usize, stored: u64) -> Result<()> {
    match stored == size as u64 {
        true => Ok(()),
        false => Err(format!("{stored} rows stored of {size}").into()),
    }
}

/// What a hand-written sqlx user writes: one multi-row INSERT on the pool.
async fn values(pool: &PgPool, batch: &[User]) -> Result<u64> {
    let mut insert = QueryBuilder::new("INSERT INTO bench_users (name, hair_color) ");
    insert.push_values(batch, |mut row, user| {
        row.push_bind(&user.name).push_bind(&user.hair_color);
    });
    Ok(insert.build().execute(pool).await?.rows_affected())
}

/// One binary COPY on a pooled connection, no transaction (one statement).
async fn copy_binary(pool: &PgPool, batch: &[User]) -> Result<u64> {
    let mut buffer = Vec::with_capacity(BINARY_HEADER.len() + batch.len() * 32);
    buffer.extend_from_slice(BINARY_HEADER);
    for user in batch {
        buffer.extend_from_slice(&2i16.to_be_bytes());
        field(&mut buffer, Some(&user.name));
        field(&mut buffer, user.hair_color.as_deref());
    }
    buffer.extend_from_slice(&(-1i16).to_be_bytes());
    let mut connection = pool.acquire().await?;
    let mut copy = connection
        .copy_in_raw("COPY bench_users (name, hair_color) FROM STDIN (FORMAT binary)")
        .await?;
    copy.send(buffer).await?;
    Ok(copy.finish().await?)
}

/// A text field of a binary COPY row: its length, then its bytes (-1: NULL).
fn field(buffer: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            let len = i32::try_from(text.len()).unwrap_or(i32::MAX);
            buffer.extend_from_slice(&len.to_be_bytes());
            buffer.extend_from_slice(text.as_bytes());
        }
        None => buffer.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}
