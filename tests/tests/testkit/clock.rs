//! The test's clock: every repository of the test's store stamps with the
//! context's clock, fixed at the test's start, so timestamps are asserted
//! exactly, and they move only when the test moves the clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reposmith::prelude::*;
use reposmith::testing::TestContext;

/// A row with both timestamps (its table is made by the test).
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "testkit_stamped", backend = "postgres")]
struct Stamped {
    #[repo(id)]
    id: i64,
    note: String,
    #[repo(created_at)]
    created_at: DateTime<Utc>,
    #[repo(updated_at)]
    updated_at: DateTime<Utc>,
}

#[reposmith::test(migrations = false, backends(postgres))]
async fn the_context_clock_stamps_exactly_and_moves_only_when_told(ctx: TestContext) -> Result<()> {
    let pg = ctx.store().postgres()?;
    pg.create_tables_for(&[<Stamped as Entity>::SCHEMA]).await?;
    let repo = pg.repo::<Stamped>();
    let start = ctx.clock().now();
    assert_eq!(
        start.timestamp_subsec_micros() % 1_000,
        0,
        "a whole millisecond"
    );
    let row = Stamped {
        id: 0,
        note: "a".into(),
        created_at: DateTime::UNIX_EPOCH,
        updated_at: DateTime::UNIX_EPOCH,
    };
    let row = repo.insert(&row).await?;
    assert_eq!((row.created_at, row.updated_at), (start, start));
    ctx.clock().advance(Duration::from_secs(90))?;
    let changed = Stamped {
        note: "b".into(),
        ..row.clone()
    };
    let changed = repo.update(&changed).await?;
    let later = start + chrono::Duration::seconds(90);
    assert_eq!((changed.created_at, changed.updated_at), (start, later));
    assert_eq!(repo.get(&row.id).await?, Some(changed));
    Ok(())
}
