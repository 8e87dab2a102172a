//! `rag-eval`: how well the RAG example retrieves, measured.
//!
//! Embeds every passage of the PostgreSQL manual with all-MiniLM-L6-v2
//! (cached in `target/rag/cache`, keyed by model and corpus), loads them
//! into PostgreSQL through reposmith (`eval_passages` with an HNSW index and
//! a full-text body, `eval_passages_exact` without a vector index), runs
//! the title queries through exact, HNSW, full-text and hybrid search, tunes
//! the hybrid's fusion on half of the queries and prints a Markdown table.
//! Run it with `cargo xtask eval rag` (release build, services up).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use reposmith::search::FusionMethod;
use reposmith::{
    Config, Embedder, Filter, PgRepository, Repository, Scored, Store, Vector, VectorSearch,
};
use reposmith_example_rag::corpus::{self, Corpus, Query};
use reposmith_example_rag::embed::{self, DIMS, MiniLm};
use reposmith_example_rag::eval::fusion::Norm;
use reposmith_example_rag::eval::{
    self, EvalPassage, EvalPassageExact, EvalPassageExactRepository, EvalPassageRepository,
    Outcome, Rrf, Scores, VectorCache, explore, fusion,
};

const USAGE: &str = "\
rag-eval [--ef-high N] [--reload] [--throughput] [--passages N]

  --ef-high N     the higher hnsw.ef_search to measure (default 200)
  --reload        reload the tables even when they hold these vectors
  --throughput    also time embedding 2,000 sentences and 1,000 passages
  --passages N    only the first N passages (a quick run; queries whose
                  page has none are dropped)

Needs DATABASE_URL, the model (RAG_MODEL_DIR or target/rag/model) and the
manual (RAG_DOC_DIR or target/rag/doc/...): `cargo xtask eval rag` sees to all three.";

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    ef_high: u32,
    reload: bool,
    throughput: bool,
    passages: Option<usize>,
}

use reposmith_example_rag::cli::{self, Failure as AnyError};

fn main() -> ExitCode {
    cli::tune_allocator("rag-eval");
    let options = match cli::options("rag-eval", USAGE, parse(std::env::args().skip(1))) {
        Ok(options) => options,
        Err(status) => return status,
    };
    println!(
        "allocator: GLIBC_TUNABLES={}",
        std::env::var("GLIBC_TUNABLES").unwrap_or_default()
    );
    cli::run("rag-eval", run(options))
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        ef_high: 200,
        reload: false,
        throughput: false,
        passages: None,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .ok_or(format!("{name} takes a positive number"))
        };
        match arg.as_str() {
            "--ef-high" => {
                options.ef_high = u32::try_from(number("--ef-high")?.min(1000)).unwrap_or(1000)
            }
            "--passages" => options.passages = Some(number("--passages")?),
            "--reload" => options.reload = true,
            "--throughput" => options.throughput = true,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Some(options))
}

async fn run(options: Options) -> Result<(), AnyError> {
    let corpus = load_corpus(options.passages)?;
    let model_dir = embed::model_dir();
    let model = MiniLm::load(&model_dir)?;
    if options.throughput {
        throughput(&model, &corpus).await?;
    }
    let vectors = passage_vectors(&model, &model_dir, &corpus).await?;
    let queries = query_vectors(&model, &corpus.queries).await?;
    let store = Store::connect(Config::from_env()?).await?;
    let repos = Repos {
        hnsw: store.repo::<EvalPassage>()?,
        exact: store.repo::<EvalPassageExact>()?,
    };
    load_tables(&store, &repos, &corpus, &vectors, options.reload).await?;
    let pool = store.postgres()?.pool();
    let report = evaluate(&repos, pool, &corpus, &vectors, &queries, options.ef_high).await?;
    println!("{report}");
    store.close().await;
    Ok(())
}

fn load_corpus(limit: Option<usize>) -> Result<Corpus, AnyError> {
    let dir = corpus::doc_dir();
    let mut corpus = Corpus::load(&dir)?;
    if let Some(n) = limit {
        corpus.passages.truncate(n);
        let pages: std::collections::HashSet<String> =
            corpus.passages.iter().map(|p| p.page.clone()).collect();
        corpus.queries.retain(|q| pages.contains(&q.page));
    }
    let package = std::fs::read_to_string(dir.join("../../../../../reposmith-package.txt"))
        .unwrap_or_else(|_| "postgresql-doc-15 (version unknown)".into());
    println!(
        "corpus: {} passages from {} pages, {} title queries ({})",
        corpus.passages.len(),
        corpus
            .passages
            .iter()
            .map(|p| &p.page)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        corpus.queries.len(),
        package.trim()
    );
    Ok(corpus)
}

/// Embeds `texts` through the `Embedder` trait (on the blocking pool);
/// returns the vectors and the seconds it took.
async fn timed_embed(model: &MiniLm, texts: &[String]) -> Result<(Vec<Vec<f32>>, f64), AnyError> {
    let start = Instant::now();
    let vectors = Embedder::embed(model, texts).await?;
    Ok((vectors, start.elapsed().as_secs_f64()))
}

/// Sentences/s and passages/s on fixed samples of the corpus.
async fn throughput(model: &MiniLm, corpus: &Corpus) -> Result<(), AnyError> {
    let sentences: Vec<String> = corpus
        .passages
        .iter()
        .flat_map(|p| p.text.split(". "))
        .filter(|s| s.split_whitespace().count() >= 3)
        .take(2000)
        .map(str::to_owned)
        .collect();
    let passages: Vec<String> = corpus
        .passages
        .iter()
        .take(1000)
        .map(|p| p.text.clone())
        .collect();
    for (what, texts) in [("sentences", sentences), ("passages", passages)] {
        let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
        let (_, secs) = timed_embed(model, &texts).await?;
        println!(
            "throughput: {} {what} ({:.1} words each) in {secs:.1} s: {:.1} {what}/s",
            texts.len(),
            words as f64 / texts.len().max(1) as f64,
            texts.len() as f64 / secs
        );
    }
    Ok(())
}

/// Every passage's vector, from the cache when it matches.
async fn passage_vectors(
    model: &MiniLm,
    model_dir: &std::path::Path,
    corpus: &Corpus,
) -> Result<Vec<Vec<f32>>, AnyError> {
    let cache_dir = embed::workspace_root().join("target/rag/cache");
    let cache = VectorCache::new(&cache_dir, model_dir, corpus)?;
    if let Some(vectors) = cache.load(corpus.passages.len(), DIMS) {
        println!("passages: vectors from {}", cache.path().display());
        return Ok(vectors);
    }
    let texts: Vec<String> = corpus.passages.iter().map(|p| p.text.clone()).collect();
    let mut vectors = Vec::with_capacity(texts.len());
    let start = Instant::now();
    // Chunks of 1,024 keep batches length-sorted and show progress.
    for (i, chunk) in texts.chunks(1024).enumerate() {
        vectors.extend(Embedder::embed(model, chunk).await?);
        eprintln!(
            "  embedded {}/{} passages, {:.0} s",
            (i * 1024 + chunk.len()),
            texts.len(),
            start.elapsed().as_secs_f64()
        );
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "passages: {} embedded in {secs:.0} s ({:.1} passages/s); cached in {}",
        texts.len(),
        texts.len() as f64 / secs,
        cache.path().display()
    );
    cache.store(&vectors)?;
    Ok(vectors)
}

/// The queries' vectors, all at once, and the latency of embedding one alone.
async fn query_vectors(model: &MiniLm, queries: &[Query]) -> Result<Vec<Vector>, AnyError> {
    let texts: Vec<String> = queries.iter().map(|q| q.text.clone()).collect();
    let (vectors, secs) = timed_embed(model, &texts).await?;
    let mut alone = Vec::new();
    for text in texts.iter().take(50) {
        let (_, secs) = timed_embed(model, std::slice::from_ref(text)).await?;
        alone.push(Duration::from_secs_f64(secs));
    }
    alone.sort();
    println!(
        "queries: {} embedded in {secs:.1} s; one query alone: p50 {:.1} ms",
        texts.len(),
        ms(eval::percentile(&alone, 0.5))
    );
    Ok(vectors.into_iter().map(Vector::from).collect())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Repos {
    hnsw: PgRepository<EvalPassage>,
    exact: PgRepository<EvalPassageExact>,
}

/// Creates both tables and loads them, unless they already hold exactly
/// these passages and vectors (checked on the count and the last row).
async fn load_tables(
    store: &Store,
    repos: &Repos,
    corpus: &Corpus,
    vectors: &[Vec<f32>],
    reload: bool,
) -> Result<(), AnyError> {
    let pg = store.postgres()?;
    pg.create_tables::<EvalPassage>().await?;
    pg.create_tables::<EvalPassageExact>().await?;
    let n = corpus.passages.len();
    let last = i64::try_from(n)? - 1;
    let current = async {
        let counts: (u64, u64) = (
            repos.hnsw.count(Filter::all()).await?,
            repos.exact.count(Filter::all()).await?,
        );
        let row = repos.hnsw.get(&last).await?;
        let same = row.is_some_and(|r| {
            r.body == corpus.passages[n - 1].text && r.embedding.as_slice() == vectors[n - 1]
        });
        Ok::<bool, reposmith::Error>(counts == (n as u64, n as u64) && same)
    };
    if !reload && current.await? {
        println!("tables: eval_passages and eval_passages_exact already hold these {n} rows");
        return Ok(());
    }
    let rows: Vec<EvalPassage> = corpus
        .passages
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (p, v))| EvalPassage {
            id: i as i64,
            page: p.page.clone(),
            title: p.title.clone(),
            body: p.text.clone(),
            embedding: Vector::from(v.clone()),
        })
        .collect();
    let exact: Vec<EvalPassageExact> = rows
        .iter()
        .map(|r| EvalPassageExact {
            id: r.id,
            page: r.page.clone(),
            embedding: r.embedding.clone(),
        })
        .collect();
    repos.hnsw.delete_where(Filter::all()).await?;
    repos.exact.delete_where(Filter::all()).await?;
    let start = Instant::now();
    let report = repos.hnsw.bulk_load(&rows).await?;
    println!(
        "tables: {n} rows into eval_passages (COPY, then HNSW m 16 ef_construction 64 and GIN) in {:.1} s{}",
        start.elapsed().as_secs_f64(),
        if report.is_complete() {
            ""
        } else {
            " (an index is not valid!)"
        }
    );
    repos.exact.bulk_load(&exact).await?;
    Ok(())
}

/// The ways a query is searched.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Method {
    /// `eval_passages_exact`: no vector index, a sequential scan.
    Exact,
    /// The HNSW index, at the sessions' `ef_search` or this one.
    Hnsw(Option<u32>),
    /// Full text: all the title's words, or any of them.
    Text { any: bool },
    /// Hybrid: text query kind and fusion.
    Hybrid { any: bool, fusion: Fused },
}

/// A hybrid search's fusion settings, as the library takes them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fused {
    /// The library's defaults (reciprocal rank fusion, k 60, 1:1).
    Default,
    /// Reciprocal rank fusion with these settings.
    Rrf(Rrf),
    /// `FusionMethod::Convex` with this vector share (weights `1 − w`, `w`)
    /// and candidates per side, or the library's default candidates.
    Convex {
        vector_weight: f64,
        candidates: Option<usize>,
    },
}

impl Method {
    fn label(&self, ef_default: u32) -> String {
        let words = |any: bool| if any { "any word" } else { "all words" };
        match self {
            Method::Exact => "vector, exact (no index)".into(),
            Method::Hnsw(ef) => format!("vector, HNSW ef_search {}", ef.unwrap_or(ef_default)),
            Method::Text { any } => format!("full text, {}", words(*any)),
            Method::Hybrid { any, fusion } => format!("{}, text {}", fusion.label(), words(*any)),
        }
    }

    /// The ids of the top `k` hits for `query`.
    async fn search(
        &self,
        repos: &Repos,
        query: &Query,
        vector: &Vector,
        k: u32,
    ) -> Result<Vec<i64>, reposmith::Error> {
        let text = |any: bool| {
            if any {
                eval::any_word_query(&query.text)
            } else {
                query.text.clone()
            }
        };
        let hits: Vec<i64> = match *self {
            Method::Exact => ids(repos.exact.search_embedding(vector.clone(), k).await?),
            Method::Hnsw(ef) => {
                let search = repos.hnsw.search_embedding(vector.clone(), k);
                ids(match ef {
                    Some(ef) => search.ef_search(ef).await?,
                    None => search.await?,
                })
            }
            Method::Text { any } => ids(repos.hnsw.search_text(text(any), k).await?),
            Method::Hybrid { any, fusion } => {
                let search = repos.hnsw.search_hybrid(text(any), vector.clone(), k);
                let n = |c: usize| u32::try_from(c).unwrap_or(u32::MAX);
                ids(match fusion {
                    Fused::Default => search.await?,
                    Fused::Rrf(r) => {
                        let search = search.weights(r.text_weight, 1.0).rrf_k(r.k);
                        search.candidates(n(r.candidates)).await?
                    }
                    Fused::Convex {
                        vector_weight: w,
                        candidates,
                    } => {
                        let search = search.fusion(FusionMethod::Convex).weights(1.0 - w, w);
                        match candidates {
                            Some(c) => search.candidates(n(c)).await?,
                            None => search.await?,
                        }
                    }
                })
            }
        };
        Ok(hits)
    }
}

impl Fused {
    fn label(&self) -> String {
        match self {
            Fused::Default => "hybrid RRF default (k 60, 1:1)".into(),
            Fused::Rrf(r) => format!(
                "hybrid RRF tuned (k {}, text weight {}, {} candidates)",
                r.k, r.text_weight, r.candidates
            ),
            Fused::Convex {
                vector_weight,
                candidates: None,
            } => format!("hybrid convex default (min-max, ts_rank, vector weight {vector_weight})"),
            Fused::Convex {
                vector_weight,
                candidates: Some(c),
            } => format!(
                "hybrid convex tuned (min-max, ts_rank, vector weight {vector_weight}, {c} candidates)"
            ),
        }
    }
}

trait HasId {
    fn row_id(&self) -> i64;
}
impl HasId for EvalPassage {
    fn row_id(&self) -> i64 {
        self.id
    }
}
impl HasId for EvalPassageExact {
    fn row_id(&self) -> i64 {
        self.id
    }
}

fn ids<E: HasId>(hits: Vec<Scored<E>>) -> Vec<i64> {
    hits.iter().map(|h| h.entity.row_id()).collect()
}

/// One method's outcome per query, and the ids it returned.
async fn measure(
    repos: &Repos,
    method: Method,
    corpus: &Corpus,
    queries: &[Vector],
) -> Result<(Vec<Outcome>, Vec<Vec<i64>>), reposmith::Error> {
    let mut outcomes = Vec::with_capacity(queries.len());
    let mut all_ids = Vec::with_capacity(queries.len());
    for (query, vector) in corpus.queries.iter().zip(queries) {
        let start = Instant::now();
        let ids = method.search(repos, query, vector, 10).await?;
        let latency = start.elapsed();
        let pages = ids
            .iter()
            .map(|&id| corpus.passages[id as usize].page.as_str());
        outcomes.push(Outcome::of(query, pages, latency));
        all_ids.push(ids);
    }
    Ok((outcomes, all_ids))
}

async fn evaluate(
    repos: &Repos,
    pool: &reposmith::postgres::PgPool,
    corpus: &Corpus,
    vectors: &[Vec<f32>],
    queries: &[Vector],
    ef_high: u32,
) -> Result<String, AnyError> {
    let held_out: Vec<bool> = corpus
        .queries
        .iter()
        .map(|q| !eval::in_tuning_half(q))
        .collect();
    println!(
        "split: {} queries to tune on, {} held out",
        held_out.iter().filter(|h| !**h).count(),
        held_out.iter().filter(|h| **h).count()
    );
    // Warm the caches (index pages, plans) so the first method measured is not penalised.
    for method in [
        Method::Exact,
        Method::Hnsw(None),
        Method::Text { any: true },
    ] {
        measure(repos, method, corpus, queries).await?;
    }
    let tuned = tune(pool, corpus, vectors, queries, &held_out).await?;
    let methods = [
        Method::Exact,
        Method::Hnsw(None),
        Method::Hnsw(Some(ef_high)),
        Method::Text { any: false },
        Method::Text { any: true },
        Method::Hybrid {
            any: false,
            fusion: Fused::Default,
        },
        Method::Hybrid {
            any: true,
            fusion: Fused::Default,
        },
        Method::Hybrid {
            any: tuned.rrf.0,
            fusion: Fused::Rrf(tuned.rrf.1),
        },
        Method::Hybrid {
            any: false,
            fusion: Fused::Convex {
                vector_weight: 0.5,
                candidates: None,
            },
        },
        Method::Hybrid {
            any: true,
            fusion: Fused::Convex {
                vector_weight: 0.5,
                candidates: None,
            },
        },
        Method::Hybrid {
            any: tuned.convex.0,
            fusion: Fused::Convex {
                vector_weight: tuned.convex.1.vector_weight,
                candidates: Some(tuned.convex.1.candidates),
            },
        },
    ];
    let mut table = String::from(
        "| search | hit@1 | hit@10 | MRR@10 | MRR@10 held-out | recall@10 vs exact | p50 ms | p99 ms |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut exact_ids: Vec<Vec<i64>> = Vec::new();
    for method in methods {
        let (outcomes, ids) = measure(repos, method, corpus, queries).await?;
        if method == Method::Exact {
            check_exact(vectors, queries, &ids);
            exact_ids = ids.clone();
        }
        let all = Scores::of(&outcomes);
        let held: Vec<Outcome> = outcomes
            .iter()
            .zip(&held_out)
            .filter(|(_, h)| **h)
            .map(|(o, _)| *o)
            .collect();
        table.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {:.1} | {:.1} |\n",
            method.label(40),
            all.hit1,
            all.hit10,
            all.mrr10,
            Scores::of(&held).mrr10,
            recall(&exact_ids, &ids),
            ms(all.p50),
            ms(all.p99)
        ));
    }
    Ok(table)
}

/// The share of exact top-10 ids a method also returned, as text.
fn recall(exact: &[Vec<i64>], ids: &[Vec<i64>]) -> String {
    let total: usize = exact.iter().map(Vec::len).sum();
    if total == 0 {
        return "—".into();
    }
    let found: usize = exact
        .iter()
        .zip(ids)
        .map(|(e, got)| e.iter().filter(|id| got.contains(id)).count())
        .sum();
    format!("{:.3}", found as f64 / total as f64)
}

/// PostgreSQL's exact search against a brute-force search in memory: they
/// must agree (ties and float rounding aside).
fn check_exact(vectors: &[Vec<f32>], queries: &[Vector], ids: &[Vec<i64>]) {
    let agree: usize = queries
        .iter()
        .zip(ids)
        .map(|(q, got)| {
            let mine = eval::brute_force(vectors, q.as_slice(), 10);
            mine.iter().filter(|id| got.contains(id)).count()
        })
        .sum();
    let total: usize = ids.iter().map(Vec::len).sum();
    println!(
        "check: PostgreSQL's exact top 10 vs brute force in memory: {agree}/{total} ids agree"
    );
}

/// Explores the fusions in memory (see `eval::explore`), prints their
/// table, and returns the best on the tuning half of those the library's
/// hybrid search offers (its text rank is `ts_rank_cd`) for each method.
async fn tune(
    pool: &reposmith::postgres::PgPool,
    corpus: &Corpus,
    vectors: &[Vec<f32>],
    queries: &[Vector],
    held_out: &[bool],
) -> Result<Library, AnyError> {
    let start = Instant::now();
    let slices: Vec<&[f32]> = queries.iter().map(Vector::as_slice).collect();
    let text_of = |i: usize, any: bool| {
        let title = &corpus.queries[i].text;
        if any {
            eval::any_word_query(title)
        } else {
            title.clone()
        }
    };
    let materials = explore::gather(pool, vectors, &slices, text_of).await?;
    let mut tuned: Vec<explore::Tuned> = explore::variants()
        .iter()
        .filter_map(|v| explore::tune(corpus, &materials, held_out, v))
        .collect();
    tuned.sort_by(|a, b| b.tuning.total_cmp(&a.tuning));
    println!(
        "tuning: {} variants explored in {:.0} s, best on the tuning half first:\n\n{}",
        tuned.len(),
        start.elapsed().as_secs_f64(),
        explore::table(&tuned)
    );
    // The text ranks the library's fusions use: ts_rank_cd for RRF, ts_rank for convex.
    let uses = |name: &'static str| move |t: &&explore::Tuned| fusion::TEXT_SCORES[t.score] == name;
    let rrf = tuned
        .iter()
        .filter(uses("ts_rank_cd"))
        .find_map(|t| match t.setting {
            explore::Setting::Rrf(r) => Some((t.any, r)),
            _ => None,
        })
        .ok_or("no query to tune on")?;
    let convex = tuned
        .iter()
        .filter(uses("ts_rank"))
        .find_map(|t| match t.setting {
            explore::Setting::Convex(c)
                if c.vector_norm == Norm::MinMax && c.text_norm == Norm::MinMax =>
            {
                Some((t.any, c))
            }
            _ => None,
        })
        .ok_or("no query to tune on")?;
    Ok(Library { rrf, convex })
}

/// The tuned settings of the library's fusions.
struct Library {
    /// Reciprocal rank fusion: any word?, settings.
    rrf: (bool, Rrf),
    /// Convex fusion with min-max normalisation: any word?, settings.
    convex: (bool, fusion::Convex),
}
