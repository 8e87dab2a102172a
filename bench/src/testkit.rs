//! The per-test setup of `#[reposmith::test]` against `#[sqlx::test]`'s
//! own machinery, on the same server in the same run, interleaved.
//!
//! `cargo xtask bench testkit [-- --tests N] [--quick]`: N tests (default
//! 100) per side, each run the way its attribute runs it (a runtime of its
//! own on a plain thread, setup, an empty body, teardown), with the
//! quickstart's migrations (`migrations/quickstart`: pgvector tables, the
//! outbox):
//!
//! - `sqlx::test`: `sqlx::testing::TestFn::run_test` with a `Migrator`,
//!   what `#[sqlx::test(migrations = ..)]` expands to: `CREATE DATABASE`,
//!   then every migration on it;
//! - `reposmith pg`: `reposmith::testing::run` with `backends(postgres)`:
//!   `CREATE DATABASE .. TEMPLATE` of the migrated template, and the
//!   store's pool;
//! - `reposmith all`: the same with MongoDB (a database, its migrations)
//!   and Redis (a prefix, deleted after) as well.
//!
//! Setup is the time from calling the runner to the body's first line;
//! teardown from the body's end to the runner's return. Also timed alone:
//! the `CREATE DATABASE .. TEMPLATE` statement (and its `DROP`), both
//! strategies.

use std::cell::Cell;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reposmith::Backend;
use reposmith::PgConfig;
use reposmith::testing::{Migrations, TestArgs, TestContext};

use crate::Result;
use crate::args::Flags;
use crate::measure::quantile;
use crate::report::duration;

thread_local! {
    /// When the runner was called, and when the body started and ended.
    static MARKS: Cell<(Option<Instant>, Option<Instant>, Option<Instant>)> =
        const { Cell::new((None, None, None)) };
}

fn mark_start() {
    MARKS.with(|m| m.set((Some(Instant::now()), None, None)));
}

fn mark_body() {
    MARKS.with(|m| {
        let (start, _, _) = m.get();
        m.set((start, Some(Instant::now()), None));
    });
}

fn mark_body_end() {
    MARKS.with(|m| {
        let (start, body, _) = m.get();
        m.set((start, body, Some(Instant::now())));
    });
}

/// (setup, teardown) of the run just ended.
fn marks() -> (Duration, Duration) {
    let end = Instant::now();
    MARKS.with(|m| match m.get() {
        (Some(start), Some(body), Some(body_end)) => (body - start, end - body_end),
        _ => (Duration::ZERO, Duration::ZERO),
    })
}

/// The quickstart's migrations, as a path from the bench crate.
fn migrations() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations/quickstart")
}

/// One `#[sqlx::test]`, as its expansion runs it.
fn sqlx_test(
    migrator: &'static sqlx::migrate::Migrator,
    path: &'static str,
) -> (Duration, Duration) {
    use sqlx::testing::TestFn;
    async fn body(pool: sqlx::PgPool) {
        mark_body();
        drop(pool);
        mark_body_end();
    }
    let mut args = sqlx::testing::TestArgs::new(path);
    args.migrator(migrator);
    mark_start();
    let f: fn(sqlx::PgPool) -> _ = body;
    f.run_test(args);
    marks()
}

/// One `#[reposmith::test]` with `backends`.
fn reposmith_test(backends: Option<&'static [Backend]>) -> (Duration, Duration) {
    let mut args = TestArgs::new("bench::testkit", env!("CARGO_MANIFEST_DIR"));
    args.migrations = Migrations::Path("../migrations/quickstart");
    args.backends = backends;
    mark_start();
    reposmith::testing::run(args, |ctx: TestContext| async move {
        mark_body();
        drop(ctx);
        mark_body_end();
    });
    marks()
}

/// `cargo xtask bench testkit`.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let mut tests = 100;
    let mut flags = Flags::new(args, "testkit");
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--tests" => tests = flags.number(flag)?.max(1),
            "--quick" => tests = 10,
            other => return Err(format!("testkit: unknown option {other}").into()),
        }
    }
    println!("load average at start: {}", crate::report::loadavg());
    let migrator: &'static sqlx::migrate::Migrator =
        Box::leak(Box::new(sqlx::migrate::Migrator::new(migrations()).await?));
    let mut sides: [(&str, Vec<Duration>, Vec<Duration>); 3] = [
        ("sqlx::test", vec![], vec![]),
        ("reposmith pg", vec![], vec![]),
        ("reposmith all", vec![], vec![]),
    ];
    // A warm-up of each (the template is built here, once), then interleaved.
    for i in 0..=tests {
        let path: &'static str = Box::leak(format!("bench::testkit::t{i}").into_boxed_str());
        let runs = tokio::task::spawn_blocking(move || {
            [
                sqlx_test(migrator, path),
                reposmith_test(Some(&[Backend::Postgres])),
                reposmith_test(None),
            ]
        })
        .await?;
        if i == 0 {
            continue;
        }
        for (side, (setup, teardown)) in sides.iter_mut().zip(runs) {
            side.1.push(setup);
            side.2.push(teardown);
        }
    }
    println!("\nper-test setup and teardown, {tests} tests per side (quickstart migrations)");
    println!(
        "{:<16} {:>12} {:>12} {:>14}",
        "side", "setup p50", "setup p90", "teardown p50"
    );
    for (name, setup, teardown) in &sides {
        println!(
            "{name:<16} {:>12} {:>12} {:>14}",
            duration(quantile(setup.clone(), 0.5)),
            duration(quantile(setup.clone(), 0.9)),
            duration(quantile(teardown.clone(), 0.5)),
        );
    }
    clone_cost(tests).await?;
    // sqlx's side records its databases in a schema of its own in the
    // bench's database; it dropped every database of a passing test.
    let url = std::env::var("DATABASE_URL")?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    sqlx::raw_sql("DROP SCHEMA IF EXISTS _sqlx_test CASCADE")
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// `CREATE DATABASE .. TEMPLATE` alone (and its `DROP .. WITH (FORCE)`), with
/// each strategy, on the template the runs above built.
async fn clone_cost(tests: usize) -> Result<()> {
    use reposmith_test::postgres::{PgAdmin, ensure_template};
    let url = std::env::var("DATABASE_URL")?;
    let mut admin = PgAdmin::connect(&PgConfig::new(url.clone())).await?;
    let template = ensure_template(&mut admin, Some(&migrations())).await?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
    println!(
        "\nCREATE DATABASE .. TEMPLATE {} alone, {tests} times each",
        template.name
    );
    for strategy in ["WAL_LOG", "FILE_COPY"] {
        let (mut create, mut drop) = (Vec::new(), Vec::new());
        for i in 0..tests {
            let name = format!("reposmith_bench_clone_{}_{i}", std::process::id());
            let sql = format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{}\" STRATEGY {strategy}",
                template.name
            );
            let at = Instant::now();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            create.push(at.elapsed());
            let at = Instant::now();
            let sql = format!("DROP DATABASE \"{name}\" WITH (FORCE)");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            drop.push(at.elapsed());
        }
        println!(
            "  STRATEGY {strategy:<9} create p50 {:>10} p90 {:>10}   drop p50 {:>10}",
            duration(quantile(create.clone(), 0.5)),
            duration(quantile(create, 0.9)),
            duration(quantile(drop, 0.5)),
        );
    }
    admin.close().await?;
    Ok(())
}
