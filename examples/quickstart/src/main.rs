//! # Quickstart: a small RAG knowledge base on reposmith
//!
//! A crawler hands us documents; we store them, split them into chunks, and
//! look them up the way a retrieval service would. The domain lives in
//! `src/domain.rs` as plain structs with `#[derive(Repository)]`; this file is the
//! service code, written against the `Repository` trait and the typed column
//! constants the derive generates. Run it with `cargo xtask demo`, which
//! starts PostgreSQL with pgvector first, or with `DATABASE_URL` set.
//!
//! What it shows, in order:
//! 1. tables created from the structs' schemas (`cargo xtask migrate`
//!    generates versioned files from the same schemas);
//! 2. `insert` returning the stored row, `insert_many` in one statement;
//! 3. a unique violation as a typed `Conflict` naming the field;
//! 4. a generated finder, typed filters on columns and JSON paths, `count`;
//! 5. keyset pagination that neither skips nor repeats rows;
//! 6. optimistic locking: a stale copy cannot overwrite a newer one;
//! 7. a unit of work: several repositories on one transaction, committed,
//!    and one dropped uncommitted that leaves nothing behind;
//! 8. retrieval: chunks embedded on insert by an application `Embedder`,
//!    then found by vector similarity (HNSW), by full text, and by both fused;
//! 9. LLM traces in MongoDB, from the same kind of struct: an unordered bulk
//!    insert reporting the one duplicate, JSON sub-document filters, search
//!    by meaning, and a MongoDB unit of work (skipped without `MONGODB_URL`);
//! 10. one service written only against the core traits (`src/service.rs`),
//!     run on the PostgreSQL chunks and on the MongoDB traces unchanged;
//! 11. a job born with its write: storing a document enqueues its embedding
//!     job in the same unit of work (the transactional outbox), the relay
//!     moves it to a Redis queue after COMMIT, and a worker embeds the
//!     chunks (`src/jobs.rs`); the job's journey is printed (skipped
//!     without `REDIS_URL`);
//! 12. the repository cache: `Document` declares `#[repo(cache(..))]`, so a
//!     get misses once and then hits Redis, and an update in a unit of work
//!     invalidates after its COMMIT: the next get reads the new version;
//! 13. a Redis outage: a store on a `redis-server` of the demo's own, which
//!     it stops; reads keep answering from PostgreSQL;
//! 14. rate limits: a tenant's requests, tokens per minute, calls in flight
//!     and daily tokens checked at once; each call reserves its tokens and
//!     reconciles with the real usage, until the tokens-per-minute limit
//!     denies a call with its retry-after and headers (`src/limits.rs`);
//! 15. a streaming replica: reads go to it, and a write in a `Session` is
//!     read back on the replica once it has replayed the commit, never
//!     missing (`src/replicas.rs`; skipped without a replica).

use std::process::ExitCode;

use std::sync::Arc;

use reposmith::config_source::Env;
use reposmith::prelude::*;
use reposmith::{PgConfig, PgRepository, Store};
use serde_json::json;

use reposmith_example_quickstart::domain::{
    Chunk, ChunkRepository, Document, DocumentRepository, Status, Trace, TraceRepository,
};
use reposmith_example_quickstart::embedder::HashingEmbedder;
use reposmith_example_quickstart::jobs::{self, EmbedDocument};
use reposmith_example_quickstart::service;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart failed: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let store = Store::connect(Config::from_env()?).await?;
    let (docs, chunks) = prepare(&store).await?;
    let intro = ingest(&docs).await?;
    search(&docs).await?;
    paginate(&docs).await?;
    optimistic_locking(&docs, &intro).await?;
    unit_of_work(&store, &chunks, &intro).await?;
    retrieval(&chunks, &intro).await?;
    traces(&store).await?;
    one_service(&store, &intro).await?;
    background_embedding(&store).await?;
    caching(&store, &intro).await?;
    cache_outage(&intro).await?;
    match store.redis() {
        Ok(redis) => reposmith_example_quickstart::limits::token_budget(redis).await?,
        Err(_) => println!("14. skipped: REDIS_URL is not set"),
    }
    match std::env::var("REPOSMITH_DEMO_REPLICA_URL") {
        Ok(replica) => {
            let primary = PgConfig::from_env(&Env::process())?
                .ok_or_else(|| Error::config("quickstart", "DATABASE_URL is not set"))?;
            reposmith_example_quickstart::replicas::read_your_writes(&primary, &replica).await?
        }
        Err(_) => println!(
            "15. skipped: no replica (`cargo xtask services up --replica` exports \
             REPOSMITH_DEMO_REPLICA_URL)"
        ),
    }
    store.close().await;
    println!("\nquickstart finished: every step behaved as described");
    Ok(())
}

/// Step 1: tables from the schemas, emptied so the demo can run again.
/// The chunk repository gets the embedder that fills missing embeddings.
async fn prepare(store: &Store) -> Result<(PgRepository<Document>, PgRepository<Chunk>)> {
    let pg = store.postgres()?;
    pg.create_tables::<Document>().await?;
    pg.create_tables::<Chunk>().await?;
    // Jobs (step 11) and the cache's durable invalidations (step 12) go
    // through the transactional outbox.
    pg.create_outbox_tables().await?;
    // Every repository of Chunk, on the pool or in a unit of work, embeds
    // missing vectors with the application's model.
    pg.set_embedder::<Chunk>(Arc::new(HashingEmbedder));
    let (docs, chunks) = (store.repo::<Document>()?, store.repo::<Chunk>()?);
    let old = chunks.delete_where(Filter::all()).await? + docs.delete_where(Filter::all()).await?;
    println!("1. tables qs_documents and qs_chunks ready ({old} rows from an earlier run removed)");
    Ok((docs, chunks))
}

/// Steps 2 and 3: single and bulk inserts, and a duplicate URL refused.
async fn ingest(docs: &PgRepository<Document>) -> Result<Document> {
    let intro = docs
        .insert(&Document::fetched(
            "https://example.com/rust-intro",
            "An introduction to Rust",
            "en",
            &["rust", "intro"],
        ))
        .await?;
    println!(
        "2. inserted {:?} as id {} (version {}, created {})",
        intro.title, intro.id, intro.version, intro.created_at
    );
    let crawl: Vec<Document> = (0..40)
        .map(|i| {
            let (lang, topics): (&str, &[&str]) = match i % 4 {
                0 => ("de", &["rust"]),
                1 => ("en", &["python"]),
                _ => ("en", &["rust", "async"]),
            };
            let url = format!("https://example.com/page-{i:02}");
            Document::fetched(&url, &format!("Page {i}"), lang, topics)
        })
        .collect();
    let stored = docs.insert_many(&crawl).await?;
    println!("   inserted {stored} more documents in one statement");

    let duplicate = Document::fetched(&intro.source_url, "Same URL again", "en", &[]);
    match docs.insert(&duplicate).await {
        Err(Error::Conflict {
            field, constraint, ..
        }) => println!(
            "3. a second row for the same URL is refused: conflict on {} ({constraint})",
            field.unwrap_or("?")
        ),
        other => return Err(unexpected("a conflict on source_url", other.map(|_| ()))),
    }
    Ok(intro)
}

/// Step 4: a generated finder, typed filters, count.
async fn search(docs: &PgRepository<Document>) -> Result<()> {
    let found = docs
        .find_by_source_url("https://example.com/rust-intro")
        .await?;
    println!("4. find_by_source_url -> {:?}", found.map(|d| d.title));
    let english_rust = Document::METADATA.path("lang").eq("en")
        & Document::METADATA.contains(json!({ "topics": ["rust"] }));
    let total = docs.count(english_rust.clone()).await?;
    let newest = docs
        .find(english_rust & Document::TITLE.starts_with("Page"))
        .order_by(Document::CREATED_AT.desc())
        .limit(3)
        .await?;
    let titles: Vec<&str> = newest.iter().map(|d| d.title.as_str()).collect();
    println!("   {total} English documents about Rust; the newest pages: {titles:?}");
    Ok(())
}

/// Step 5: walk every document in pages of 12 by title.
async fn paginate(docs: &PgRepository<Document>) -> Result<()> {
    let (mut cursor, mut pages, mut seen) = (None, 0, Vec::new());
    loop {
        let page = docs
            .find(Filter::all())
            .order_by(Document::TITLE.asc())
            .page_after(cursor, 12)
            .await?;
        pages += 1;
        seen.extend(page.items.into_iter().map(|d| d.id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    println!(
        "5. paged through {} documents in {pages} pages, {} distinct: none skipped or repeated",
        seen.len(),
        unique.len()
    );
    Ok(())
}

/// Step 6: two editors load the same row; the second save is refused.
async fn optimistic_locking(docs: &PgRepository<Document>, intro: &Document) -> Result<()> {
    let mut first = docs.get(&intro.id).await?.expect("inserted above");
    let mut second = first.clone();
    first.title = "An introduction to Rust (2nd edition)".into();
    let saved = docs.update(&first).await?;
    second.title = "A stale edit".into();
    match docs.update(&second).await {
        Err(Error::StaleVersion { expected, .. }) => println!(
            "6. first editor saved version {}; the second, holding version {expected}, is refused",
            saved.version
        ),
        other => return Err(unexpected("a stale version", other.map(|_| ()))),
    }
    Ok(())
}

/// Step 7: chunk a document and mark it indexed in one transaction.
async fn unit_of_work(store: &Store, chunks: &PgRepository<Chunk>, intro: &Document) -> Result<()> {
    let uow = store.begin::<Document>().await?;
    let mut doc = uow
        .repo::<Document>()
        .get(&intro.id)
        .await?
        .expect("inserted above");
    let passages = [
        "Rust is a systems language.",
        "Ownership makes it safe.",
        "Async is zero-cost.",
    ];
    let rows: Vec<Chunk> = passages
        .iter()
        .enumerate()
        .map(|(i, body)| Chunk::new(doc.id, i as i32, body))
        .collect();
    uow.repo::<Chunk>().insert_many(&rows).await?;
    doc.status = Status::Indexed;
    uow.repo::<Document>().update(&doc).await?;
    uow.commit().await?;
    let stored = chunks.find_all_by_document_id(intro.id).await?;
    println!(
        "7. committed: {} chunks stored and the document marked indexed",
        stored.len()
    );

    {
        let abandoned = store.begin::<Chunk>().await?;
        let extra = Chunk::new(intro.id, 99, "never kept");
        abandoned.repo::<Chunk>().insert(&extra).await?;
        // Dropped without commit: rolled back, its connection never reused mid-transaction.
    }
    let after = chunks.count(Chunk::DOCUMENT_ID.eq(intro.id)).await?;
    println!("   a unit dropped without commit left nothing: still {after} chunks");
    Ok(())
}

/// Step 8: more passages, embedded on insert; then the three kinds of search.
async fn retrieval(chunks: &PgRepository<Chunk>, intro: &Document) -> Result<()> {
    let passages = [
        "The borrow checker enforces ownership rules at compile time.",
        "Memory safety without a garbage collector comes from ownership.",
        "Tokio runs async tasks on a work-stealing scheduler.",
        "Python uses reference counting and a cycle collector.",
        "Vector databases answer nearest-neighbour queries.",
    ];
    let rows: Vec<Chunk> = passages
        .iter()
        .enumerate()
        .map(|(i, body)| Chunk::new(intro.id, 10 + i as i32, body))
        .collect();
    chunks.insert_many(&rows).await?;
    let embedded = chunks.count(Chunk::EMBEDDING.is_not_null()).await?;
    println!(
        "8. {embedded} chunks carry an embedding computed on insert by the application's embedder"
    );

    let question = "how does rust keep memory safe without a garbage collector";
    let similar = chunks.search_embedding_by_text(question, 3).await?;
    for hit in &similar {
        println!("   vector  {:.3}  {}", hit.score, hit.entity.body);
    }
    let words = chunks
        .search_text("ownership -python", 3)
        .filter(Chunk::DOCUMENT_ID.eq(intro.id))
        .await?;
    for hit in &words {
        println!("   text    {:.3}  {}", hit.score, hit.entity.body);
    }
    let query = HashingEmbedder::vector(question);
    let fused = chunks
        .search_hybrid("ownership", Vector::from(query), 3)
        .await?;
    for hit in &fused {
        println!("   hybrid  {:.4}  {}", hit.score, hit.entity.body);
    }
    if fused.is_empty() || words.is_empty() || similar.is_empty() {
        return Err(unexpected("hits from every search", Ok(())));
    }
    Ok(())
}

/// Step 11: a document stored with its chunks unembedded and its embedding
/// job recorded in the same unit of work; the relay and a worker do the rest.
async fn background_embedding(store: &Store) -> Result<()> {
    use reposmith::outbox::{Outbox, QueueDestination, Relay};
    use reposmith::queue::{Queue, Worker};
    use std::time::{Duration, Instant};

    let Ok(redis) = store.redis() else {
        println!("11. skipped: REDIS_URL is not set (cargo xtask demo uses the local Redis)");
        return Ok(());
    };
    let pg = store.postgres()?;
    pg.create_outbox_tables().await?;
    let queue = Queue::<EmbedDocument>::new(redis)?;
    let relay = Relay::new(pg)
        .queue(EmbedDocument::QUEUE, QueueDestination::new(redis))?
        .spawn();
    let (journal, mut entries) = tokio::sync::mpsc::unbounded_channel();
    let worker_pg = pg.clone();
    let worker = Worker::new(queue.clone())
        .concurrency(2)
        .run(move |ctx| {
            let (pg, journal) = (worker_pg.clone(), journal.clone());
            async move {
                let delivered = Instant::now();
                let embedded = jobs::embed_document(&pg, &ctx).await?;
                let _ = journal.send((ctx.id(), ctx.attempt(), delivered, embedded));
                Ok(())
            }
        })
        .await?;

    let unit = store.begin::<Document>().await?;
    let doc = unit
        .repo::<Document>()
        .insert(&Document::fetched(
            "https://example.com/ownership-in-depth",
            "Ownership in depth",
            "en",
            &["rust"],
        ))
        .await?;
    let bodies = ["Moves transfer ownership.", "Borrows lend it for a scope."];
    let rows: Vec<Chunk> = (0..)
        .zip(bodies)
        .map(|(i, body)| Chunk::new(doc.id, i, body))
        .collect();
    // Stored as given: the worker embeds them after the request returns.
    unit.repo::<Chunk>()
        .without_embedder()
        .insert_many(&rows)
        .await?;
    let job = unit.enqueue(&EmbedDocument {
        document_id: doc.id,
    })?;
    unit.commit().await?;
    let committed = Instant::now();
    println!(
        "11. stored {:?} with {} unembedded chunks and job {job} in one unit of work",
        doc.title,
        rows.len()
    );

    let entry = tokio::time::timeout(Duration::from_secs(10), entries.recv()).await;
    let Ok(Some((id, attempt, delivered, embedded))) = entry else {
        return Err(unexpected("the embedding job to run within 10 s", Ok(())));
    };
    let report = worker.shutdown(Duration::from_secs(5)).await;
    relay.shutdown().await?;
    let chunks = store.repo::<Chunk>()?;
    let done = Chunk::DOCUMENT_ID.eq(doc.id) & Chunk::EMBEDDING.is_not_null();
    println!(
        "    committed → relayed to Redis → delivered to a worker (attempt {attempt}) after {:?}",
        delivered.duration_since(committed)
    );
    println!(
        "    the worker embedded {embedded} chunks and acked job {id}; {} of {} chunks now have a vector",
        chunks.count(done).await?,
        rows.len()
    );
    let pending = Outbox::new(pg).stats().await?.pending;
    println!(
        "    outbox rows still pending: {pending}; worker: {} completed, {} retried",
        report.counts.completed, report.counts.retried
    );
    if id != job || embedded != rows.len() {
        return Err(unexpected("the committed job to embed every chunk", Ok(())));
    }
    Ok(())
}

/// Step 12: `Document` declares `#[repo(cache(..))]`: a read by id misses
/// once and then hits Redis; an update in a unit of work invalidates after
/// its COMMIT, so the next read sees the new version.
async fn caching(store: &Store, intro: &Document) -> Result<()> {
    use std::time::Instant;

    let Some(cache) = store.cache() else {
        println!("12. skipped: REDIS_URL is not set (cargo xtask demo uses the local Redis)");
        return Ok(());
    };
    let docs = store.repo::<Document>()?;
    let before = cache.stats();
    let started = Instant::now();
    let first = docs
        .get(&intro.id)
        .await?
        .ok_or_else(|| missing("the intro"))?;
    let miss = started.elapsed();
    let started = Instant::now();
    let again = docs
        .get(&intro.id)
        .await?
        .ok_or_else(|| missing("the intro"))?;
    let hit = started.elapsed();
    let after = cache.stats();
    println!(
        "12. cached get: {} miss ({miss:.1?}, from PostgreSQL), then {} hit ({hit:.1?}, from Redis)",
        after.misses - before.misses,
        after.hits - before.hits
    );
    if first != again {
        return Err(unexpected(
            "the same document twice",
            Err(missing("equality")),
        ));
    }
    let uow = store.begin::<Document>().await?;
    let edited = Document {
        title: "An introduction to Rust (2nd edition)".into(),
        ..again
    };
    let saved = uow.repo::<Document>().update(&edited).await?;
    uow.commit().await?;
    let read = docs
        .get(&intro.id)
        .await?
        .ok_or_else(|| missing("the intro"))?;
    println!(
        "    updated in a unit of work (version {} -> {}); the next get reads version {}: {:?}",
        edited.version, saved.version, read.version, read.title
    );
    if read.version != saved.version {
        return Err(unexpected(
            "the committed version",
            Err(missing("a fresh read")),
        ));
    }
    Ok(())
}

/// Step 13: a store whose Redis goes away: reads still answer, from
/// PostgreSQL, and only the first pays Redis's response timeout.
async fn cache_outage(intro: &Document) -> Result<()> {
    use std::time::Instant;

    let Some(mut redis) = reposmith_example_quickstart::own_redis::OwnRedis::start() else {
        println!("13. skipped: no redis-server on PATH to start and stop");
        return Ok(());
    };
    let config = Config::from_env()?.with_redis(reposmith::RedisConfig::new(redis.url()));
    let store = Store::connect(config).await?;
    let docs = store.repo::<Document>()?;
    docs.get(&intro.id).await?;
    redis.stop();
    let started = Instant::now();
    let mut served = 0;
    for _ in 0..20 {
        served += usize::from(docs.get(&intro.id).await?.is_some());
    }
    let stats = store.cache().map(|c| c.stats()).unwrap_or_default();
    println!(
        "13. Redis stopped: {served}/20 reads answered from PostgreSQL in {:.1?} \
         ({} skipped Redis while its circuit breaker was open)",
        started.elapsed(),
        stats.bypassed
    );
    store.close().await;
    match served {
        20 => Ok(()),
        _ => Err(missing("a read while Redis is down")),
    }
}

fn missing(what: &str) -> Error {
    Error::config("quickstart", format!("{what} was not found"))
}

/// Step 9: the gateway's LLM traces, a MongoDB-only entity in its own
/// collection, embedded on insert like the chunks.
async fn traces(store: &Store) -> Result<()> {
    let Ok(mongo) = store.mongo() else {
        println!("9. skipped: MONGODB_URL is not set (cargo xtask demo starts MongoDB)");
        return Ok(());
    };
    mongo.create_collections::<Trace>().await?;
    mongo.set_embedder::<Trace>(Arc::new(HashingEmbedder));
    let traces = store.repo::<Trace>()?;
    traces.delete_where(Filter::all()).await?;

    let calls = [
        Trace::new(
            "req-1",
            "gpt-4o",
            "why does the borrow checker reject this loop",
            (412, 180),
        ),
        Trace::new(
            "req-2",
            "claude",
            "summarise the ownership chapter",
            (1_930, 240),
        ),
        Trace::new("req-3", "gpt-4o", "explain async tasks in tokio", (388, 0)),
        Trace::new(
            "req-1",
            "gpt-4o",
            "why does the borrow checker reject this loop",
            (412, 180),
        ),
    ];
    let report = traces.insert_many_unordered(&calls).await?;
    println!(
        "9. {} traces stored in MongoDB (collection qs_llm_traces, 30-day TTL); refused:",
        report.inserted
    );
    for failure in &report.failures {
        println!("   #{} {}", failure.index, failure.error);
    }
    if report.failed_indexes() != [3] {
        return Err(unexpected("the retried req-1 refused alone", Ok(())));
    }

    let gpt = traces.find_all_by_model("gpt-4o").await?.len();
    let cached = traces.count(Trace::USAGE.path("cached").eq(true)).await?;
    println!("   {gpt} traces of gpt-4o; {cached} answered from the cache (a JSON path filter)");
    let similar = traces
        .search_embedding_by_text("borrow checker errors in loops", 1)
        .await?;
    for hit in &similar {
        println!("   similar  {:.3}  {}", hit.score, hit.entity.prompt);
    }

    let unit = store.begin::<Trace>().await?;
    let purged = unit
        .repo::<Trace>()
        .delete_where(Trace::MODEL.eq("claude"))
        .await?;
    unit.commit().await?;
    let left = traces.count(Filter::all()).await?;
    println!("   a MongoDB unit of work purged {purged} claude trace; {left} left");
    Ok(())
}

/// Step 10: one service, written against the core traits only (see
/// `service.rs`), run on the PostgreSQL chunks and on the MongoDB traces.
async fn one_service(store: &Store, intro: &Document) -> Result<()> {
    let question = "which passage is about keyset pages";
    let texts = [
        "svc: keyset pages",
        "svc: a retried unit",
        "svc: rolled back",
    ];
    let chunks = texts.iter().enumerate();
    let chunks = chunks.map(|(i, t)| Chunk::new(intro.id, 100 + i as i32, t));
    let report = service::run(
        store.backend_of::<Chunk>()?,
        "svc:",
        chunks.collect(),
        question,
    );
    check_service("PostgreSQL chunks", report.await?)?;
    if store.mongo().is_err() {
        println!("   (MongoDB not configured: the traces run is skipped)");
        return Ok(());
    }
    let traces = texts.iter().enumerate();
    let traces = traces.map(|(i, t)| Trace::new(&format!("svc-{i}"), "svc-model", t, (1, 1)));
    let report = service::run(
        store.backend_of::<Trace>()?,
        "svc:",
        traces.collect(),
        question,
    );
    check_service("MongoDB traces", report.await?)
}

fn check_service(on: &str, report: service::Report) -> Result<()> {
    println!(
        "10. one generic service on {on}: stored {}, pages {:?}, closest {:?}, \
         a unit over its limit rolled back ({} kept), then {} deleted",
        report.stored,
        report.pages,
        report.closest.as_ref().map(|(text, _)| text),
        report.kept_by_rollback,
        report.deleted
    );
    let expected = (3, vec![2, 1], 3, 3);
    let got = (
        report.stored,
        report.pages.clone(),
        report.kept_by_rollback,
        report.deleted,
    );
    if got != expected || report.closest.is_none() {
        return Err(unexpected(
            "3 stored, pages [2, 1], 3 kept then 3 deleted",
            Ok(()),
        ));
    }
    Ok(())
}

fn unexpected(wanted: &str, got: Result<()>) -> Error {
    let got = match got {
        Ok(()) => "success".to_owned(),
        Err(error) => error.to_string(),
    };
    Error::Backend {
        backend: reposmith::Backend::Postgres,
        code: None,
        reason: format!("expected {wanted}, got {got}"),
    }
}
