//! Vector, full-text and hybrid search on a real PostgreSQL with pgvector:
//! recall against exact neighbours computed here, filtered searches that
//! still return `k` rows, every pgvector type, client-side rejection of bad
//! vectors, knobs that do not leak, keyset pages, and the embedder.

#[path = "pg_search/data.rs"]
pub(crate) mod data;
#[path = "pg_search/db.rs"]
mod db;
#[path = "pg_search/embedder.rs"]
mod embedder;
#[path = "pg_search/fixture.rs"]
mod fixture;
#[path = "pg_search/fusion.rs"]
mod fusion;
#[path = "pg_search/types.rs"]
mod types;

use std::collections::HashSet;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use data::{Clustered, recall};
use db::SearchDb;
use reposmith::Vector;
use reposmith::prelude::*;

/// A point of the clustered data set: 128 dims, L2, HNSW.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "points")]
struct Point {
    #[repo(id)]
    id: i64,
    /// `id % 100`, indexed: the planner answers a filter on it exactly, from the btree.
    #[repo(index)]
    bucket: i32,
    /// `id % 100`, not indexed: a filter on it runs on the HNSW index with
    /// iterative scans, the case where recall used to collapse.
    shard: i32,
    #[repo(vector(
        dims = 128,
        distance = "l2",
        index = "hnsw",
        m = 16,
        ef_construction = 64
    ))]
    embedding: Vector,
}

/// [`Point`] keyed by a UUID, carrying its position in the data set: its
/// rows go in from several tasks at once, and integer ids are the
/// database's, handed out in insertion order, not the data set's.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "numbered_points")]
struct NumberedPoint {
    #[repo(id)]
    id: uuid::Uuid,
    position: i64,
    #[repo(vector(
        dims = 128,
        distance = "l2",
        index = "hnsw",
        m = 16,
        ef_construction = 64
    ))]
    embedding: Vector,
}

/// The same shape without an index: searches are exact, so pages can be compared.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "exact_points")]
struct ExactPoint {
    #[repo(id)]
    id: i64,
    bucket: i32,
    #[repo(vector(dims = 8, distance = "cosine", index = "none"))]
    embedding: Vector,
}

/// A document with a title and body in its full-text document and an embedding.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "articles")]
struct Article {
    #[repo(id)]
    id: uuid::Uuid,
    #[repo(full_text)]
    title: String,
    #[repo(full_text(language = "english"))]
    body: String,
    lang: String,
    #[repo(vector(dims = 3, distance = "cosine"))]
    embedding: Vector,
}

fn article(title: &str, body: &str, embedding: [f32; 3]) -> Article {
    Article {
        id: uuid::Uuid::nil(),
        title: title.to_owned(),
        body: body.to_owned(),
        lang: "en".to_owned(),
        embedding: Vector::from(embedding.to_vec()),
    }
}

/// Points of the recall test: 20,000 under `REPOSMITH_HEAVY=1`, else 8,000
/// (a 1 % filter then matches 80 rows, still far past what one HNSW scan of
/// `ef_search` 100 returns before iterating).
fn rows() -> usize {
    if reposmith_tests::heavy() {
        20_000
    } else {
        8_000
    }
}
const QUERIES: usize = 30;

/// Recall@10 of HNSW against exact L2 neighbours, unfiltered and with a
/// filter matching 1 % of the rows (which must still return 10 rows).
#[tokio::test]
async fn hnsw_recall_holds_unfiltered_and_under_a_selective_filter() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Point>().await;
    let set = Clustered::generate(rows(), 128, 40, 7);
    let points: Vec<Point> = set
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            id: i as i64 + 1,
            bucket: (i % 100) as i32,
            shard: (i % 100) as i32,
            embedding: Vector::from(v.clone()),
        })
        .collect();
    let repo = db.pg.repo::<Point>();
    // COPY, then one index build: the graph is the one a bulk build makes,
    // which is what this test measures the recall of.
    let report = repo.bulk_load(&points).await.unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), rows() as u64);
    db.analyze("points").await;

    let mut unfiltered = Vec::new();
    let mut filtered = Vec::new();
    for q in 0..QUERIES {
        let query = set.query(q, 1000 + q as u64);
        let exact = set.exact(&query, 10, |_| true);
        let hits = repo
            .search_embedding(Vector::from(query.clone()), 10)
            .ef_search(100)
            .await
            .unwrap();
        assert_eq!(hits.len(), 10);
        assert!(
            hits.windows(2).all(|w| w[0].score <= w[1].score),
            "closest first"
        );
        unfiltered.push(recall(
            &exact,
            hits.iter().map(|h| h.entity.id as usize - 1),
        ));

        // Through the HNSW index with iterative scans: `shard` has no index.
        let shard = (q % 100) as i32;
        let exact = set.exact(&query, 10, |i| i % 100 == shard as usize);
        let hits = repo
            .search_embedding(Vector::from(query.clone()), 10)
            .filter(Point::SHARD.eq(shard))
            .ef_search(100)
            .await
            .unwrap();
        assert_eq!(hits.len(), 10, "a 1 % filter still returns k rows");
        assert!(hits.iter().all(|h| h.entity.shard == shard));
        filtered.push(recall(
            &exact,
            hits.iter().map(|h| h.entity.id as usize - 1),
        ));

        // Through the btree on `bucket`: the planner answers exactly.
        let by_bucket = repo
            .search_embedding(Vector::from(query), 10)
            .filter(Point::BUCKET.eq(shard))
            .await
            .unwrap();
        let ids: HashSet<usize> = by_bucket.iter().map(|h| h.entity.id as usize - 1).collect();
        assert_eq!(
            ids,
            exact.iter().copied().collect(),
            "exact through the btree"
        );
    }
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (unfiltered, filtered) = (mean(&unfiltered), mean(&filtered));
    println!("recall@10 unfiltered {unfiltered:.3}, 1% filter {filtered:.3}");
    // Usually 1.000 here; 0.937 and 0.967 were seen when the random levels
    // of pgvector's HNSW graph left a cluster unreachable (a query at 0/10
    // costs 0.033 of the mean), which no ef_search repairs. The bar catches
    // a search path that loses its knobs, not pgvector's graph lottery.
    assert!(unfiltered >= 0.9, "unfiltered recall@10 {unfiltered}");
    assert!(filtered >= 0.9, "filtered recall@10 {filtered}");
    db.cleanup().await;
}

/// Which insert batches of [`recall_holds_while_rows_are_inserted`] are
/// committed and which are on their way.
#[derive(Default)]
struct Batches {
    committed: HashSet<usize>,
    in_flight: HashSet<usize>,
}

/// Recall@10 of HNSW searches that run while other tasks insert into the
/// same index. A search sees the rows of the batches committed before its
/// snapshot; which of the batches in flight around it made it in is not
/// known, so its recall counts against the best of those few possible
/// snapshots. A hit outside every possible snapshot fails the test.
#[tokio::test]
async fn recall_holds_while_rows_are_inserted() {
    const BASE: usize = 3_000;
    const BATCH: usize = 200;
    const BATCHES_PER_TASK: usize = 8;
    const INSERTERS: usize = 2;
    const EF_SEARCH: u32 = 100;
    let total = BASE + BATCH * BATCHES_PER_TASK * INSERTERS;
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<NumberedPoint>().await;
    let set = std::sync::Arc::new(Clustered::generate(total, 128, 40, 11));
    let point = |i: usize| NumberedPoint {
        id: uuid::Uuid::nil(),
        position: i as i64,
        embedding: Vector::from(set.vectors[i].clone()),
    };
    let repo = db.pg.repo::<NumberedPoint>();
    let base: Vec<NumberedPoint> = (0..BASE).map(point).collect();
    repo.insert_many(&base).await.unwrap();
    db.analyze("numbered_points").await;

    let batch_of = |i: usize| (i >= BASE).then(|| (i - BASE) / BATCH);
    let state = std::sync::Arc::new(std::sync::Mutex::new(Batches::default()));
    let inserting = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(INSERTERS));
    let mut inserters = Vec::new();
    for task in 0..INSERTERS {
        let (repo, state, inserting) = (
            db.pg.repo::<NumberedPoint>(),
            state.clone(),
            inserting.clone(),
        );
        let batches: Vec<(usize, Vec<NumberedPoint>)> = (0..BATCHES_PER_TASK)
            .map(|n| n * INSERTERS + task)
            .map(|b| {
                (
                    b,
                    (BASE + b * BATCH..BASE + (b + 1) * BATCH)
                        .map(point)
                        .collect(),
                )
            })
            .collect();
        inserters.push(tokio::spawn(async move {
            for (b, rows) in batches {
                state.lock().unwrap().in_flight.insert(b);
                repo.insert_many(&rows).await.unwrap();
                let mut state = state.lock().unwrap();
                state.in_flight.remove(&b);
                state.committed.insert(b);
            }
            inserting.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }

    let mut recalls = Vec::new();
    let mut q = 0;
    while inserting.load(std::sync::atomic::Ordering::SeqCst) > 0 || q < QUERIES {
        let query = set.query(q, 5000 + q as u64);
        let before = {
            let state = state.lock().unwrap();
            (state.committed.clone(), state.in_flight.clone())
        };
        let hits = repo
            .search_embedding(Vector::from(query.clone()), 10)
            .ef_search(EF_SEARCH)
            .await
            .unwrap();
        let after = {
            let state = state.lock().unwrap();
            (state.committed.clone(), state.in_flight.clone())
        };
        // Committed before the search began: surely seen. In flight at
        // either end, or committed by its end: maybe seen.
        let maybe: Vec<usize> = before
            .1
            .iter()
            .chain(&after.0)
            .chain(&after.1)
            .filter(|b| !before.0.contains(b))
            .copied()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        assert!(
            maybe.len() <= 8,
            "{} batches around one search",
            maybe.len()
        );
        let found: Vec<usize> = hits.iter().map(|h| h.entity.position as usize).collect();
        let best = (0..1usize << maybe.len())
            .map(|subset| {
                let seen = |i: usize| match batch_of(i) {
                    None => true,
                    Some(b) => {
                        before.0.contains(&b)
                            || maybe
                                .iter()
                                .enumerate()
                                .any(|(n, m)| *m == b && subset >> n & 1 == 1)
                    }
                };
                if !found.iter().all(|i| seen(*i)) {
                    return None;
                }
                Some(recall(&set.exact(&query, 10, seen), found.iter().copied()))
            })
            .fold(None::<f64>, |best, r| match (best, r) {
                (Some(b), Some(r)) => Some(b.max(r)),
                (b, r) => b.or(r),
            });
        let best = best.unwrap_or_else(|| {
            let batches: Vec<Option<usize>> = found.iter().map(|i| batch_of(*i)).collect();
            panic!(
                "search {q} returned a row of no batch it could see: rows {found:?} of batches \
                 {batches:?}; committed before {:?}, in flight before {:?}, committed after \
                 {:?}, in flight after {:?}",
                before.0, before.1, after.0, after.1
            )
        });
        recalls.push(best);
        q += 1;
    }
    for inserter in inserters {
        inserter.await.unwrap();
    }
    assert_eq!(repo.count(Filter::all()).await.unwrap(), total as u64);
    // The same queries on the settled index, for comparison.
    let mut settled = Vec::new();
    for q in 0..QUERIES {
        let query = set.query(q, 5000 + q as u64);
        let hits = repo
            .search_embedding(Vector::from(query.clone()), 10)
            .ef_search(EF_SEARCH)
            .await
            .unwrap();
        let exact = set.exact(&query, 10, |_| true);
        settled.push(recall(
            &exact,
            hits.iter().map(|h| h.entity.position as usize),
        ));
    }
    let settled = settled.iter().sum::<f64>() / settled.len() as f64;
    let mean = recalls.iter().sum::<f64>() / recalls.len() as f64;
    let worst = recalls.iter().copied().fold(1.0, f64::min);
    // The same bar as the settled index's recall test, for the same reason.
    assert!(mean >= 0.9, "recall@10 under concurrent inserts {mean:.3}");
    eprintln!(
        "{} searches while {} rows went in as {} concurrent batches: mean recall@10 {mean:.3}, \
         worst {worst:.1}; {settled:.3} on the settled index",
        recalls.len(),
        total - BASE,
        BATCHES_PER_TASK * INSERTERS
    );
    db.cleanup().await;
}

/// The reported distance is pgvector's, and `max_distance` drops farther hits.
#[tokio::test]
async fn distances_are_reported_and_bounded() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<ExactPoint>().await;
    let repo = db.pg.repo::<ExactPoint>();
    let rows = exact_rows(50);
    repo.insert_many(&rows).await.unwrap();
    let query = rows[3].embedding.to_vec();
    let hits = repo
        .search_embedding(Vector::from(query.clone()), 5)
        .await
        .unwrap();
    assert_eq!(
        hits[0].entity.id, rows[3].id,
        "a row is its own nearest neighbour"
    );
    assert!(hits[0].distance.unwrap().abs() < 1e-6);
    for hit in &hits {
        let expected = data::cosine_distance(&query, hit.entity.embedding.as_slice());
        assert!((hit.distance.unwrap() - expected).abs() < 1e-5, "{hit:?}");
    }
    let bound = hits[2].score;
    let near = repo
        .search_embedding(Vector::from(query), 50)
        .max_distance(bound)
        .await
        .unwrap();
    assert!(near.len() >= 3 && near.iter().all(|h| h.score <= bound));
    db.cleanup().await;
}

fn exact_rows(n: usize) -> Vec<ExactPoint> {
    let set = Clustered::generate(n, 8, 5, 11);
    set.vectors
        .iter()
        .enumerate()
        .map(|(i, v)| ExactPoint {
            id: i as i64 + 1,
            bucket: (i % 3) as i32,
            embedding: Vector::from(v.clone()),
        })
        .collect()
}

/// Pages of 7 over an exact search are the single search of 35, in order,
/// without repeats, and the last page has no next cursor.
#[tokio::test]
async fn search_pages_are_stable_and_complete() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<ExactPoint>().await;
    let repo = db.pg.repo::<ExactPoint>();
    let mut rows = exact_rows(30);
    // Duplicates tie on distance: the id decides their order across pages.
    for i in 0..5 {
        let mut twin = rows[i].clone();
        twin.id = 100 + i as i64;
        rows.push(twin);
    }
    repo.insert_many(&rows).await.unwrap();
    let query = Vector::from(rows[0].embedding.to_vec());
    let all: Vec<i64> = repo
        .search_embedding(query.clone(), 35)
        .await
        .unwrap()
        .iter()
        .map(|h| h.entity.id)
        .collect();
    let mut paged = Vec::new();
    let mut cursor = None;
    loop {
        let page = repo
            .search_embedding(query.clone(), 7)
            .page_after(cursor)
            .await
            .unwrap();
        paged.extend(page.items.iter().map(|h| h.entity.id));
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(paged, all);
    assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 35);
    let tampered = repo
        .search_embedding(query, 7)
        .page_after(Some(Cursor::parse("[\"x\", 1]")))
        .await
        .unwrap_err();
    assert!(matches!(tampered, Error::InvalidInput { .. }), "{tampered}");
    db.cleanup().await;
}

/// `ef_search` set for one search is gone for the next query on the same
/// (only) connection, on the pool and inside a unit of work. With iterative
/// scans off, HNSW returns at most `ef_search` rows, which makes the setting
/// observable.
#[tokio::test]
async fn ef_search_does_not_leak_to_the_next_query_on_the_connection() {
    let config = reposmith_tests::pg_config(reposmith_tests::database_url())
        .max_connections(1)
        .iterative_scan(false);
    let db = SearchDb::new(config).await;
    db.create::<Point>().await;
    let repo = db.pg.repo::<Point>();
    let set = Clustered::generate(3_000, 128, 5, 3);
    let points: Vec<Point> = set
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            id: i as i64 + 1,
            bucket: 0,
            shard: 0,
            embedding: Vector::from(v.clone()),
        })
        .collect();
    repo.insert_many(&points).await.unwrap();
    db.analyze("points").await;
    let query = Vector::from(set.query(0, 9));
    let narrow = repo
        .search_embedding(query.clone(), 20)
        .ef_search(2)
        .await
        .unwrap();
    assert!(
        narrow.len() <= 2,
        "ef_search 2 returns at most 2 rows, got {}",
        narrow.len()
    );
    let next = repo.search_embedding(query.clone(), 20).await.unwrap();
    assert_eq!(next.len(), 20, "the default ef_search (40) is back");

    let unit = db.pg.begin().await.unwrap();
    let in_unit = unit.repo::<Point>();
    let narrow = in_unit
        .search_embedding(query.clone(), 20)
        .ef_search(2)
        .await
        .unwrap();
    assert!(narrow.len() <= 2);
    let next = in_unit.search_embedding(query.clone(), 20).await.unwrap();
    assert_eq!(
        next.len(),
        20,
        "the savepoint rollback restored ef_search in the unit"
    );
    let written = in_unit.insert(&points[0]).await.unwrap();
    unit.commit().await.unwrap();
    assert!(
        repo.get(&written.id).await.unwrap().is_some(),
        "the unit's writes survive"
    );
    db.cleanup().await;
}

/// Full-text search ranks with the title's weight; hybrid search puts the
/// document matching both text and vector above those matching one.
#[tokio::test]
async fn text_and_hybrid_search_rank_as_documented() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Article>().await;
    let repo = db.pg.repo::<Article>();
    let both = repo
        .insert(&article(
            "Rust ownership",
            "borrowing explained",
            [1.0, 0.0, 0.0],
        ))
        .await
        .unwrap();
    let text_only = repo
        .insert(&article(
            "Cooking",
            "rust on cast iron pans, ownership of pans",
            [0.0, 1.0, 0.0],
        ))
        .await
        .unwrap();
    let vector_only = repo
        .insert(&article("Gardening", "tomatoes", [0.99, 0.1, 0.0]))
        .await
        .unwrap();
    repo.insert(&article("Unrelated", "nothing here", [0.0, 0.0, 1.0]))
        .await
        .unwrap();

    let text = repo.search_text("rust ownership", 10).await.unwrap();
    let ids: Vec<_> = text.iter().map(|h| h.entity.id).collect();
    assert_eq!(
        ids,
        [both.id, text_only.id],
        "title matches (weight A) outrank body matches"
    );
    assert!(text[0].text_rank.unwrap() > text[1].text_rank.unwrap());

    let hybrid = repo
        .search_hybrid("rust ownership", Vector::from(vec![1.0, 0.0, 0.0]), 3)
        .await
        .unwrap();
    assert_eq!(hybrid[0].entity.id, both.id, "{hybrid:?}");
    assert!(hybrid[0].distance.is_some() && hybrid[0].text_rank.is_some());
    let rest: HashSet<_> = hybrid[1..].iter().map(|h| h.entity.id).collect();
    assert_eq!(rest, HashSet::from([text_only.id, vector_only.id]));
    assert!(hybrid.windows(2).all(|w| w[0].score >= w[1].score));

    let weighted = repo
        .search_hybrid("rust ownership", Vector::from(vec![1.0, 0.0, 0.0]), 3)
        .weights(0.0, 1.0)
        .await
        .unwrap();
    assert_eq!(
        weighted[1].entity.id, vector_only.id,
        "text weight 0: vector order"
    );

    let filtered = repo
        .search_hybrid("rust", Vector::from(vec![1.0, 0.0, 0.0]), 3)
        .filter(Article::TITLE.ne("Rust ownership"))
        .await
        .unwrap();
    assert!(
        filtered.iter().all(|h| h.entity.id != both.id),
        "filters apply to both sides"
    );
    db.cleanup().await;
}

/// Polls a future at most `left` times, then drops it unfinished.
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

/// A search with `ef_search` (BEGIN, set_config, SELECT, COMMIT on the pool)
/// cut after every poll: the one connection serves the next search, no
/// session is left idle in a transaction, and the narrow `ef_search` never
/// reaches the next search.
#[tokio::test]
async fn a_search_cut_anywhere_leaves_no_transaction_and_no_setting() {
    let config = reposmith_tests::pg_config(reposmith_tests::database_url())
        .max_connections(1)
        .iterative_scan(false);
    let db = SearchDb::new(config).await;
    db.create::<Point>().await;
    let repo = db.pg.repo::<Point>();
    let set = Clustered::generate(3_000, 128, 3, 5);
    let points: Vec<Point> = set
        .vectors
        .iter()
        .map(|v| Point {
            id: 0,
            bucket: 0,
            shard: 0,
            embedding: Vector::from(v.clone()),
        })
        .collect();
    repo.insert_many(&points).await.unwrap();
    let query = Vector::from(set.query(1, 4));
    for polls in 1..=200 {
        let search = repo.search_embedding(query.clone(), 20).ef_search(2);
        let cut = PollLimit {
            inner: Box::pin(search.into_future()),
            left: polls,
        };
        let finished = cut.await;
        let next = tokio::time::timeout(
            Duration::from_secs(10),
            repo.search_embedding(query.clone(), 20),
        )
        .await
        .expect("the one connection serves the next search")
        .unwrap();
        assert_eq!(next.len(), 20, "cut after {polls} polls: ef_search leaked");
        for _ in 0..50 {
            if db.idle_in_transaction().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(db.idle_in_transaction().await, 0, "cut after {polls} polls");
        if let Some(result) = finished {
            assert!(result.unwrap().len() <= 2);
            eprintln!("completed after {polls} polls; every earlier cut checked");
            db.cleanup().await;
            return;
        }
    }
    panic!("the search never completed within 200 polls");
}

/// Span fields of every `reposmith.query` span, as `name=value` strings.
#[derive(Clone, Default)]
struct SpanFields(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl tracing::field::Visit for SpanFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let entry = format!("{}={value:?}", field.name());
        self.0.lock().unwrap().push(entry);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanFields {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "reposmith.query" {
            attrs.record(&mut self.clone());
        }
    }

    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut self.clone());
    }
}

/// A search's span carries k, the knobs, whether it was filtered, and the rows.
#[tokio::test]
async fn a_search_span_records_k_knobs_filter_and_rows() {
    use tracing_subscriber::layer::SubscriberExt;
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<ExactPoint>().await;
    let repo = db.pg.repo::<ExactPoint>();
    repo.insert_many(&exact_rows(20)).await.unwrap();
    let fields = SpanFields::default();
    let subscriber = tracing_subscriber::registry().with(fields.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let query = Vector::from(exact_rows(1)[0].embedding.to_vec());
    repo.search_embedding(query, 4)
        .filter(ExactPoint::BUCKET.eq(1))
        .ef_search(64)
        .await
        .unwrap();
    let seen = fields.0.lock().unwrap().clone();
    for expected in [
        "db.operation=\"search\"",
        "search.kind=\"vector\"",
        "search.k=4",
        "search.ef_search=64",
        "search.filtered=true",
        "db.rows_affected=4",
    ] {
        assert!(
            seen.iter().any(|f| f == expected),
            "{expected} missing from {seen:?}"
        );
    }
    assert!(
        !seen.iter().any(|f| f.starts_with("search.probes")),
        "an unset knob is left empty: {seen:?}"
    );
    drop(_guard);
    db.cleanup().await;
}

/// A trace kept for a day, by its `recorded_at`.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "traces")]
struct Trace {
    #[repo(id)]
    id: uuid::Uuid,
    prompt: String,
    #[repo(ttl = "1d")]
    recorded_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Postgres has no TTL: `purge_expired` deletes what the lifetime says is
/// gone, keeps the rest and rows without a timestamp.
#[tokio::test]
async fn purge_expired_deletes_rows_past_their_ttl() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Trace>().await;
    let repo = db.pg.repo::<Trace>();
    let now = chrono::Utc::now();
    let trace = |prompt: &str, hours: Option<i64>| Trace {
        id: uuid::Uuid::nil(),
        prompt: prompt.to_owned(),
        recorded_at: hours.map(|h| now - chrono::TimeDelta::hours(h)),
    };
    for row in [
        trace("old", Some(25)),
        trace("older", Some(24 * 40)),
        trace("fresh", Some(23)),
        trace("undated", None),
    ] {
        repo.insert(&row).await.unwrap();
    }
    assert_eq!(repo.purge_expired().await.unwrap(), 2);
    let mut left: Vec<String> = repo
        .find(Filter::all())
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.prompt)
        .collect();
    left.sort();
    assert_eq!(left, ["fresh", "undated"]);
    assert_eq!(repo.purge_expired().await.unwrap(), 0);
    db.cleanup().await;
}

/// 40 identical vectors tie at distance 0: pages of 7 through the HNSW index
/// return each exactly once (the cursor carries the tie group's ids), and a
/// `max_distance` bound on the indexed column trims without scanning away.
#[tokio::test]
async fn tie_groups_larger_than_a_page_are_paged_completely_through_hnsw() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Point>().await;
    let repo = db.pg.repo::<Point>();
    let set = Clustered::generate(300, 128, 4, 21);
    let twin = set.query(0, 77);
    let mut rows: Vec<Point> = (0..40)
        .map(|_| Point {
            id: 0,
            bucket: 1,
            shard: 1,
            embedding: Vector::from(twin.clone()),
        })
        .collect();
    rows.extend(set.vectors.iter().map(|v| Point {
        id: 0,
        bucket: 0,
        shard: 0,
        embedding: Vector::from(v.clone()),
    }));
    repo.insert_many(&rows).await.unwrap();
    db.analyze("points").await;

    let (mut seen, mut cursor, mut distances) = (Vec::new(), None, Vec::new());
    for _ in 0..10 {
        let page = repo
            .search_embedding(Vector::from(twin.clone()), 7)
            .ef_search(100)
            .page_after(cursor)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|h| h.entity.id));
        distances.extend(page.items.iter().map(|h| h.score));
        cursor = page.next;
    }
    assert_eq!(seen.len(), 70);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        70,
        "no hit twice"
    );
    let twins: HashSet<i64> = (1..=40).collect();
    assert!(
        twins.iter().all(|id| seen.contains(id)),
        "every tied row came back"
    );
    assert!(distances[..40].iter().all(|d| *d < 1e-6));
    assert!(distances.windows(2).all(|w| w[0] <= w[1]));

    let near = repo
        .search_embedding(Vector::from(twin), 50)
        .max_distance(1e-6)
        .ef_search(100)
        .await
        .unwrap();
    assert_eq!(near.len(), 40, "the bound keeps exactly the tie group");
    db.cleanup().await;
}

/// Bad input on every other search and write path is refused before sending.
#[tokio::test]
async fn bad_queries_and_updates_are_refused_before_sending() {
    let db = SearchDb::new(reposmith_tests::pg_config(reposmith_tests::database_url())).await;
    db.create::<Article>().await;
    let repo = db.pg.repo::<Article>();
    let stored = repo
        .insert(&article("A", "b", [1.0, 0.0, 0.0]))
        .await
        .unwrap();
    let invalid = |e: Error, field: &str| match e {
        Error::InvalidInput { field: f, .. } => assert_eq!(f, field),
        other => panic!("{other}"),
    };
    let nan = Article {
        embedding: Vector::from(vec![f32::NAN, 0.0, 0.0]),
        ..stored.clone()
    };
    invalid(repo.update(&nan).await.unwrap_err(), "embedding");
    invalid(repo.search_text("nul\0", 3).await.unwrap_err(), "text");
    let v = || Vector::from(vec![1.0, 0.0, 0.0]);
    invalid(
        repo.search_hybrid("ok", Vector::from(vec![1.0]), 3)
            .await
            .unwrap_err(),
        "embedding",
    );
    invalid(
        repo.search_hybrid("ok", v(), 3)
            .weights(0.0, 0.0)
            .await
            .unwrap_err(),
        "weights",
    );
    invalid(
        repo.search_hybrid("ok", v(), 3)
            .weights(f64::NAN, 1.0)
            .await
            .unwrap_err(),
        "weights",
    );
    invalid(
        repo.search_embedding(v(), 3)
            .max_distance(-0.5)
            .await
            .unwrap_err(),
        "max_distance",
    );
    invalid(
        repo.search_embedding(v(), 3)
            .max_distance(f64::NAN)
            .await
            .unwrap_err(),
        "max_distance",
    );
    invalid(
        repo.search_embedding(v(), 3)
            .ef_search(0)
            .await
            .unwrap_err(),
        "ef_search",
    );
    invalid(repo.search_embedding(v(), 100_000).await.unwrap_err(), "k");
    let null_cursor = Some(Cursor::parse("[null, null]"));
    invalid(
        repo.search_embedding(v(), 3)
            .page_after(null_cursor)
            .await
            .unwrap_err(),
        "cursor",
    );
    let text_cursor = Some(Cursor::parse("[0.5]"));
    invalid(
        repo.search_text("b", 3)
            .page_after(text_cursor)
            .await
            .unwrap_err(),
        "cursor",
    );
    assert_eq!(
        repo.get(&stored.id).await.unwrap(),
        Some(stored),
        "nothing changed"
    );
    db.cleanup().await;
}

/// `PgConfig::ef_search` is the sessions' own: a search asking for it runs
/// as one statement under it, and a search needing more candidates than it
/// raises `ef_search` for itself.
#[tokio::test]
async fn the_session_ef_search_applies_and_larger_k_raises_it() {
    let config = reposmith_tests::pg_config(reposmith_tests::database_url())
        .max_connections(1)
        .iterative_scan(false)
        .ef_search(3);
    let db = SearchDb::new(config).await;
    db.create::<Point>().await;
    let repo = db.pg.repo::<Point>();
    // Large enough that the planner prefers the HNSW index to a scan.
    let set = Clustered::generate(3_000, 128, 4, 8);
    let points: Vec<Point> = set
        .vectors
        .iter()
        .map(|v| Point {
            id: 0,
            bucket: 0,
            shard: 0,
            embedding: Vector::from(v.clone()),
        })
        .collect();
    repo.insert_many(&points).await.unwrap();
    db.analyze("points").await;
    let query = Vector::from(set.query(2, 5));
    // Explicitly the session's value: no transaction, and the session's 3 is in effect.
    let session = repo
        .search_embedding(query.clone(), 10)
        .ef_search(3)
        .await
        .unwrap();
    assert!(
        session.len() <= 3,
        "{} rows: the session's ef_search is not in effect",
        session.len()
    );
    let capped = repo.search_embedding(query.clone(), 2).await.unwrap();
    assert!(capped.len() <= 2);
    let raised = repo.search_embedding(query, 25).await.unwrap();
    assert_eq!(
        raised.len(),
        25,
        "k above the session's ef_search raises it"
    );
    db.cleanup().await;
}
