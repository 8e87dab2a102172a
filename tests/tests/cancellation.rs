//! Cancellation: every public write path is polled N times and dropped, for
//! N = 1, 2, … until it completes, on a pool of ONE connection. After each
//! drop the connection must serve the next operation, no backend may be
//! `idle in transaction`, and the writes must exist all or not at all.
//! Streams must be droppable between batches.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::StreamExt;
use reposmith::postgres::sqlx;
use reposmith::{Filter, FindQuery, PgBackend, PgRepository, Repository, RetryPolicy};
use reposmith_tests::{database_url, unique_name};
use uuid::Uuid;

/// A row the cancelled operations write.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "cancel_items")]
struct Item {
    #[repo(id)]
    id: Uuid,
    #[repo(index)]
    batch: String,
    #[repo(version)]
    version: i64,
}

fn item(batch: &str) -> Item {
    Item {
        id: Uuid::nil(),
        batch: batch.to_owned(),
        version: 0,
    }
}

/// Polls the inner future at most `left` times, then drops it unfinished.
struct PollLimit<F: Future> {
    inner: Pin<Box<F>>,
    left: usize,
}

impl<F: Future> Future for PollLimit<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.inner.as_mut().poll(cx).map(Some)
    }
}

/// A schema of its own on a pool of one connection, plus an admin pool.
struct OneConnection {
    pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl OneConnection {
    async fn new() -> Self {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("cancel");
        let create = format!("CREATE SCHEMA \"{namespace}\"");
        sqlx::raw_sql(sqlx::AssertSqlSafe(create))
            .execute(admin.pool())
            .await
            .unwrap();
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-c%20search_path%3D{namespace}");
        let config = reposmith_tests::pg_config(url)
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .application_name(namespace.clone());
        let pg = PgBackend::connect(&config).await.unwrap();
        pg.create_tables::<Item>().await.unwrap();
        OneConnection {
            pg,
            admin,
            namespace,
        }
    }

    fn items(&self) -> PgRepository<Item> {
        self.pg.repo::<Item>()
    }

    /// Rows of `batch`, read through the single pooled connection: this also
    /// proves the connection came back usable.
    async fn count(&self, batch: &str) -> u64 {
        let items = self.items();
        let read = items.count(Item::BATCH.eq(batch));
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the one connection serves the next operation")
            .expect("count")
    }

    async fn idle_in_transaction(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND state LIKE 'idle in transaction%'",
        )
        .bind(&self.namespace)
        .fetch_one(self.admin.pool())
        .await
        .unwrap()
    }

    async fn cleanup(self) {
        self.pg.close().await;
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.namespace);
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
            .execute(self.admin.pool())
            .await
            .unwrap();
        self.admin.close().await;
    }
}

/// Runs `operation` (which writes `rows` rows of a fresh batch) cut off
/// after 1, 2, … polls until it completes, checking the invariants after each cut.
async fn cut_at_every_await<F, Fut>(db: &OneConnection, rows: u64, operation: F)
where
    F: Fn(PgBackend, String) -> Fut,
    Fut: Future<Output = reposmith::Result<()>>,
{
    for polls in 1..=500 {
        let batch = format!("b{polls}");
        let cut = PollLimit {
            inner: Box::pin(operation(db.pg.clone(), batch.clone())),
            left: polls,
        };
        let finished = cut.await;
        if let Some(result) = &finished {
            result.as_ref().expect("an uncut operation succeeds");
        }
        let stored = db.count(&batch).await;
        assert!(
            stored == 0 || stored == rows,
            "cut after {polls} polls: {stored} of {rows} rows written, not all or nothing"
        );
        if finished.is_some() {
            // How many polls an operation needs depends on how soon the server's
            // answers arrive (a debug build may find several already waiting);
            // every cut before this one was checked above.
            eprintln!("completed after {polls} polls; every earlier cut checked");
            assert_eq!(stored, rows, "a completed operation wrote everything");
            assert_eq!(db.idle_in_transaction().await, 0);
            return;
        }
        // The server may take a moment to see a discarded connection close.
        for _ in 0..50 {
            if db.idle_in_transaction().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            db.idle_in_transaction().await,
            0,
            "cut after {polls} polls left a transaction open"
        );
    }
    panic!("the operation never completed within 500 polls");
}

#[tokio::test]
async fn insert_cut_anywhere_leaves_the_connection_usable() {
    let db = OneConnection::new().await;
    cut_at_every_await(&db, 1, |pg, batch| async move {
        pg.repo::<Item>().insert(&item(&batch)).await.map(drop)
    })
    .await;
    db.cleanup().await;
}

#[tokio::test]
async fn insert_many_cut_anywhere_is_all_or_nothing() {
    let db = OneConnection::new().await;
    // More rows than one batch, so the bulk path spans several statements.
    cut_at_every_await(&db, 25_000, |pg, batch| async move {
        let rows: Vec<Item> = (0..25_000).map(|_| item(&batch)).collect();
        pg.repo::<Item>().insert_many(&rows).await.map(drop)
    })
    .await;
    db.cleanup().await;
}

#[tokio::test]
async fn unit_of_work_cut_anywhere_is_all_or_nothing() {
    let db = OneConnection::new().await;
    cut_at_every_await(&db, 3, |pg, batch| async move {
        let uow = pg.begin().await?;
        for _ in 0..3 {
            uow.repo::<Item>().insert(&item(&batch)).await?;
        }
        uow.commit().await
    })
    .await;
    db.cleanup().await;
}

#[tokio::test]
async fn retried_transaction_cut_anywhere_is_all_or_nothing() {
    let db = OneConnection::new().await;
    cut_at_every_await(&db, 2, |pg, batch| async move {
        pg.transaction(RetryPolicy::default(), |uow| {
            let batch = batch.clone();
            Box::pin(async move {
                uow.repo::<Item>().insert(&item(&batch)).await?;
                uow.repo::<Item>().insert(&item(&batch)).await?;
                Ok(())
            })
        })
        .await
    })
    .await;
    db.cleanup().await;
}

#[tokio::test]
async fn update_and_delete_cut_anywhere_leave_the_connection_usable() {
    let db = OneConnection::new().await;
    // Each run first writes one row of its batch (counted), then updates and deletes
    // another one: cut anywhere, the counted row exists or not, never half.
    cut_at_every_await(&db, 1, |pg, batch| async move {
        let repo = pg.repo::<Item>();
        let scratch = repo.insert(&item("scratch")).await?;
        repo.update(&scratch).await?;
        repo.delete_where(Item::BATCH.eq("scratch")).await?;
        repo.insert(&item(&batch)).await.map(drop)
    })
    .await;
    db.cleanup().await;
}

#[tokio::test]
async fn streams_yield_every_row_once_and_can_be_dropped_between_batches() {
    let db = OneConnection::new().await;
    let rows: Vec<Item> = (0..1_234).map(|_| item("streamed")).collect();
    db.items().insert_many(&rows).await.unwrap();
    let repo = db.items();

    let mut ids: Vec<Uuid> = repo
        .find(Item::BATCH.eq("streamed"))
        .stream()
        .map(|row| row.expect("row").id)
        .collect()
        .await;
    assert_eq!(ids.len(), 1_234, "every row, across three batches");
    ids.dedup();
    assert_eq!(ids.len(), 1_234, "in id order, none repeated");

    let mut limited = FindQuery::new(Filter::all());
    limited.limit = Some(700);
    assert_eq!(repo.stream(limited).count().await, 700);

    // Take a few rows, drop the stream mid-way: the one connection is free again.
    let first: Vec<_> = repo.find(Filter::all()).stream().take(3).collect().await;
    assert_eq!(first.len(), 3);
    assert_eq!(db.count("streamed").await, 1_234);
    db.cleanup().await;
}
