//! `rag-load`: the PostgreSQL manual ingested and searched through a running
//! RAG service's HTTP API, measured.
//!
//! 1. **Ingest**: one `POST /v1/documents` per manual page (title, source =
//!    the page's file name, text = its passages joined by blank lines), so
//!    chunking and embedding run in the service's queue workers. A progress
//!    line shows the passages embedded (chunks with a vector) out of all, the
//!    rate and the time left, from light polling of `GET /v1/documents/{id}`
//!    (the oldest unfinished documents only: the workers take jobs in
//!    order). A page whose text is already stored (409, a second run) is
//!    skipped and counted as it stands; the ingest rate covers this run's
//!    new passages, embedding included.
//! 2. **Retrieval**: every title query through `POST /v1/search` in vector,
//!    text and hybrid mode, `k` = 10; a hit is relevant when its source is
//!    the title's own page. hit@1, hit@10, MRR@10, and client-side latency.
//! 3. **Throughput**: N concurrent clients (32), each on one keep-alive
//!    connection, searching for a bounded time per mode with queries that do
//!    not repeat (the service's search cache misses), and once with a few
//!    repeated queries (it hits).
//!
//! `cargo xtask rag` builds and starts the service and runs this; the key
//! comes from `RAG_API_KEY`, never the command line.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use reposmith_example_rag::chunker::Chunker;
use reposmith_example_rag::cli;
use reposmith_example_rag::corpus::{self, Corpus, Query};
use reposmith_example_rag::eval::{Outcome, Scores, percentile};
use serde_json::{Value, json};
use uuid::Uuid;

const USAGE: &str = "\
rag-load [--url URL] [--limit N] [--seconds N] [--clients N]

  --url URL       the service (default http://127.0.0.1:8080)
  --limit N       only the first N pages of the manual (a quick run)
  --seconds N     how long each throughput run lasts (default 10)
  --clients N     concurrent clients of the throughput runs (default 32)

The API key is read from RAG_API_KEY (none: the service asks for none);
the manual from RAG_DOC_DIR or target/rag/doc/... (`cargo xtask rag fetch`).";

/// Every request's bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the embedded count may stand still before the run fails.
const STALL_LIMIT: Duration = Duration::from_secs(180);
/// How often the progress is polled and drawn.
const TICK: Duration = Duration::from_millis(500);
/// Unfinished documents asked about per tick, at most.
const POLL_UNFINISHED: usize = 4;
/// Finished documents confirmed per tick, at most (a second run's).
const POLL_FINISHED: usize = 64;
/// Queries of the repeated (cached) throughput run.
const REPEATED_QUERIES: usize = 16;

type AnyError = cli::Failure;

/// What the command line asked for.
#[derive(Debug, Clone)]
struct Options {
    url: String,
    limit: Option<usize>,
    seconds: u64,
    clients: usize,
}

fn main() -> ExitCode {
    let parsed = parse(std::env::args().skip(1));
    match cli::options("rag-load", USAGE, parsed) {
        Ok(options) => cli::run("rag-load", run(options)),
        Err(status) => status,
    }
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        url: "http://127.0.0.1:8080".to_owned(),
        limit: None,
        seconds: 10,
        clients: 32,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} takes a value"));
        let number = |name: &str, v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{name} takes a positive number, not {v:?}"))
        };
        match arg.as_str() {
            "--url" => options.url = value("--url")?,
            "--limit" => options.limit = Some(number("--limit", value("--limit")?)?),
            "--seconds" => {
                options.seconds = number("--seconds", value("--seconds")?)?.min(3_600) as u64
            }
            "--clients" => options.clients = number("--clients", value("--clients")?)?.min(1_024),
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Some(options))
}

async fn run(options: Options) -> Result<(), AnyError> {
    let target = Target::parse(&options.url, std::env::var("RAG_API_KEY").ok())?;
    let (pages, queries) = manual(options.limit)?;
    let ingest = ingest(&target, &pages).await?;
    println!("{}", ingest.summary());
    let retrieval = evaluate(&target, &queries).await?;
    println!("\n{}", retrieval_table(&retrieval, &queries));
    let throughput = throughput(&target, &pages, &queries, &options).await?;
    println!("\n{}", throughput_table(&throughput, &options));
    Ok(())
}

/// Where the service is and the key to send.
#[derive(Debug, Clone)]
struct Target {
    /// `host:port`, for the socket and the `Host` header.
    authority: String,
    key: Option<String>,
}

impl Target {
    fn parse(url: &str, key: Option<String>) -> Result<Target, AnyError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("--url {url:?}: only http:// URLs"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("--url {url:?} names no host").into());
        }
        Ok(Target {
            authority: authority.to_owned(),
            key: key.filter(|k| !k.is_empty()),
        })
    }
}

/// One keep-alive HTTP/1 connection to the service, reopened after an error.
struct Client {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A response's status and JSON body (`Null` when the body is not JSON).
struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Client {
    fn new(target: &Target) -> Client {
        Client {
            target: target.clone(),
            sender: None,
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, AnyError> {
        let stream = tokio::net::TcpStream::connect(&self.target.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// `method path` with an optional JSON body, within [`REQUEST_TIMEOUT`].
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, AnyError> {
        let exchange = async {
            let mut sender = match self.sender.take() {
                Some(sender) if !sender.is_closed() => sender,
                _ => self.connect().await?,
            };
            sender.ready().await?;
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header("host", &self.target.authority);
            if let Some(key) = &self.target.key {
                request = request.header("x-api-key", key);
            }
            let bytes = match body {
                Some(body) => {
                    request = request.header("content-type", "application/json");
                    serde_json::to_vec(body)?
                }
                None => Vec::new(),
            };
            let response = sender
                .send_request(request.body(Full::new(Bytes::from(bytes)))?)
                .await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let bytes = response.into_body().collect().await?.to_bytes();
            self.sender = Some(sender);
            Ok::<Reply, AnyError>(Reply {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                retry_after,
            })
        };
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await;
        match outcome {
            Ok(reply) => reply,
            Err(_) => {
                self.sender = None;
                Err(format!("{path}: no answer within {REQUEST_TIMEOUT:?}").into())
            }
        }
    }

    /// Like [`Client::send`], waiting out a 429's `Retry-After` (at most
    /// five times), and failing on any other status than `accepted`.
    async fn expect(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        accepted: &[u16],
    ) -> Result<Reply, AnyError> {
        for _ in 0..5 {
            let reply = self.send(method.clone(), path, body).await?;
            if reply.status == 429 {
                let wait = reply.retry_after.unwrap_or(1).clamp(1, 60);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            if accepted.contains(&reply.status) {
                return Ok(reply);
            }
            return Err(format!("{method} {path}: {} {}", reply.status, reply.body).into());
        }
        Err(format!("{method} {path}: still rate-limited after five waits").into())
    }
}

/// A manual page as one document.
#[derive(Debug, Clone)]
struct PageDoc {
    file: String,
    title: String,
    text: String,
    /// Passages the service's chunker makes of `text`.
    chunks: u64,
    /// Paragraphs of the corpus in `text`.
    paragraphs: usize,
}

/// The pages (the first `limit` when given) with their passages, and the
/// title queries of those pages.
fn manual(limit: Option<usize>) -> Result<(Vec<PageDoc>, Vec<Query>), AnyError> {
    let dir = corpus::doc_dir();
    let corpus = Corpus::load(&dir)?;
    let mut pages: Vec<PageDoc> = Vec::new();
    for passage in &corpus.passages {
        match pages.last_mut() {
            Some(page) if page.file == passage.page => {
                page.text.push_str("\n\n");
                page.text.push_str(&passage.text);
                page.paragraphs += 1;
            }
            _ => pages.push(PageDoc {
                file: passage.page.clone(),
                title: match passage.title.trim() {
                    "" => passage.page.clone(),
                    title => title.to_owned(),
                },
                text: passage.text.clone(),
                chunks: 0,
                paragraphs: 1,
            }),
        }
    }
    if let Some(n) = limit {
        pages.truncate(n);
    }
    // The service splits with the default chunker: the totals are known now.
    let chunker = Chunker::default();
    for page in &mut pages {
        page.chunks = chunker.split(&page.text).len() as u64;
    }
    let files: std::collections::HashSet<&str> = pages.iter().map(|p| p.file.as_str()).collect();
    let queries: Vec<Query> = corpus
        .queries
        .iter()
        .filter(|q| files.contains(q.page.as_str()))
        .cloned()
        .collect();
    println!(
        "manual: {} pages, {} paragraphs in {} passages (the service's chunker), {} title queries ({})",
        pages.len(),
        pages.iter().map(|p| p.paragraphs).sum::<usize>(),
        pages.iter().map(|p| p.chunks).sum::<u64>(),
        queries.len(),
        dir.display()
    );
    Ok((pages, queries))
}

/// A page as the service stored it.
#[derive(Debug, Clone)]
struct Stored {
    id: Uuid,
    /// Passages expected (the chunker's count), then the service's.
    total: u64,
    /// Passages with a vector, as last seen.
    embedded: u64,
    /// Stored by an earlier run (409).
    earlier: bool,
}

/// What the ingest measured.
#[derive(Debug)]
struct IngestReport {
    pages: usize,
    new_pages: usize,
    passages: u64,
    new_passages: u64,
    seconds: f64,
    post_latencies: Vec<Duration>,
}

impl IngestReport {
    fn summary(&self) -> String {
        let mut posts = self.post_latencies.clone();
        posts.sort();
        let earlier = self.pages - self.new_pages;
        let mut text = format!(
            "ingest: {} pages ({} passages) ready; {} new this run, {} stored by an earlier run",
            self.pages, self.passages, self.new_pages, earlier
        );
        if self.new_passages > 0 {
            text.push_str(&format!(
                "\ningest rate: {} passages in {:.1} s = {:.1} passages/s through the queue \
                 (chunking, embedding, writing); POST /v1/documents p50 {:.1} ms, p99 {:.1} ms",
                self.new_passages,
                self.seconds,
                self.new_passages as f64 / self.seconds.max(1e-9),
                ms(percentile(&posts, 0.5)),
                ms(percentile(&posts, 0.99)),
            ));
        } else {
            text.push_str(
                "\ningest rate: nothing new to embed (run `cargo xtask rag --fresh` to measure it)",
            );
        }
        text
    }
}

/// Posts every page while a poller follows the embedding; returns when
/// every page's passages have vectors.
async fn ingest(target: &Target, pages: &[PageDoc]) -> Result<IngestReport, AnyError> {
    let started = Instant::now();
    let stored: Arc<Mutex<Vec<Stored>>> = Arc::new(Mutex::new(Vec::with_capacity(pages.len())));
    let total: u64 = pages.iter().map(|p| p.chunks).sum();
    let mut poster = Some({
        let (target, pages, stored) = (target.clone(), pages.to_vec(), stored.clone());
        tokio::spawn(async move { post_pages(&target, &pages, &stored).await })
    });
    let mut progress = Progress::new(total, pages.len());
    let mut client = Client::new(target);
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut seen = 0usize;
    let mut posted: Option<Vec<Duration>> = None;
    let mut last_change = (Instant::now(), 0u64);
    loop {
        if poster.as_ref().is_some_and(|p| p.is_finished())
            && let Some(handle) = poster.take()
        {
            posted = Some(handle.await??);
        }
        // Newly stored pages join the queue of unfinished ones, in order.
        let snapshot: Vec<Stored> = lock(&stored).clone();
        queue.extend(seen..snapshot.len());
        seen = snapshot.len();
        let updates = poll_front(&mut client, &snapshot, &mut queue).await?;
        {
            let mut all = lock(&stored);
            for (i, total, embedded) in updates {
                (all[i].total, all[i].embedded) = (total, embedded);
            }
        }
        let all = lock(&stored).clone();
        let embedded: u64 = all.iter().map(|s| s.embedded).sum();
        let earlier: u64 = all.iter().filter(|s| s.earlier).map(|s| s.embedded).sum();
        let known_total: u64 = all.iter().map(|s| s.total).sum::<u64>()
            + pages[all.len()..].iter().map(|p| p.chunks).sum::<u64>();
        progress.draw(embedded, earlier, known_total, all.len(), started.elapsed());
        let done = posted.is_some() && all.len() == pages.len() && queue.is_empty();
        if done {
            progress.finish();
            let new_passages = all.iter().filter(|s| !s.earlier).map(|s| s.total).sum();
            return Ok(IngestReport {
                pages: all.len(),
                new_pages: all.iter().filter(|s| !s.earlier).count(),
                passages: all.iter().map(|s| s.total).sum(),
                new_passages,
                seconds: started.elapsed().as_secs_f64(),
                post_latencies: posted.unwrap_or_default(),
            });
        }
        if embedded != last_change.1 || all.len() < pages.len() {
            last_change = (Instant::now(), embedded);
        } else if last_change.0.elapsed() > STALL_LIMIT {
            progress.finish();
            return Err(format!(
                "no passage embedded for {} s ({embedded} of {known_total}); see the service's log",
                STALL_LIMIT.as_secs()
            )
            .into());
        }
        tokio::time::sleep(TICK).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Asks about the oldest unfinished pages: finished ones are confirmed up to
/// [`POLL_FINISHED`] per call, and it stops after [`POLL_UNFINISHED`] that
/// are still embedding. Returns (index, total, embedded) updates; a
/// finished page leaves `queue`.
async fn poll_front(
    client: &mut Client,
    stored: &[Stored],
    queue: &mut VecDeque<usize>,
) -> Result<Vec<(usize, u64, u64)>, AnyError> {
    let mut updates = Vec::new();
    let (mut unfinished, mut asked) = (0, 0);
    let mut position = 0;
    while position < queue.len() && unfinished < POLL_UNFINISHED && asked < POLL_FINISHED {
        let index = queue[position];
        let path = format!("/v1/documents/{}", stored[index].id);
        let reply = client.expect(Method::GET, &path, None, &[200]).await?;
        asked += 1;
        let chunks = &reply.body["chunks"];
        let total = chunks["total"].as_u64().unwrap_or(0);
        let embedded = chunks["embedded"].as_u64().unwrap_or(0);
        let status = reply.body["status"].as_str().unwrap_or_default();
        if status == "ready" {
            updates.push((index, total, embedded));
            queue.remove(position);
        } else {
            // Until chunked, the service's total is 0: keep the expected one.
            let total = if status == "received" {
                stored[index].total
            } else {
                total
            };
            updates.push((index, total, embedded));
            unfinished += 1;
            position += 1;
        }
    }
    Ok(updates)
}

/// One `POST /v1/documents` per page, in order; a 409 (the same text stored
/// by an earlier run) records the stored document instead.
async fn post_pages(
    target: &Target,
    pages: &[PageDoc],
    stored: &Mutex<Vec<Stored>>,
) -> Result<Vec<Duration>, AnyError> {
    let mut client = Client::new(target);
    let mut latencies = Vec::with_capacity(pages.len());
    for page in pages {
        let body = json!({
            "title": page.title,
            "source": page.file,
            "text": page.text,
            "metadata": {"corpus": "postgresql-doc-15", "page": page.file},
        });
        let sent = Instant::now();
        let reply = client
            .expect(Method::POST, "/v1/documents", Some(&body), &[202, 409])
            .await
            .map_err(|e| format!("{}: {e}", page.file))?;
        let (id, earlier) = match reply.status {
            202 => {
                latencies.push(sent.elapsed());
                (
                    reply.body["id"].as_str().and_then(|id| id.parse().ok()),
                    false,
                )
            }
            _ => (duplicate_of(&reply.body), true),
        };
        let id = id.ok_or_else(|| format!("{}: no document id in {}", page.file, reply.body))?;
        lock(stored).push(Stored {
            id,
            total: page.chunks,
            embedded: 0,
            earlier,
        });
    }
    Ok(latencies)
}

/// The stored document a 409 names in `error.document_id`.
fn duplicate_of(body: &Value) -> Option<Uuid> {
    if body["error"]["code"] != "duplicate_document" {
        return None;
    }
    body["error"]["document_id"].as_str()?.parse().ok()
}

/// The progress line: drawn in place on a terminal, a line every 15 s
/// otherwise (a log).
struct Progress {
    total: u64,
    pages: usize,
    terminal: bool,
    last_line: Option<Instant>,
    drawn: bool,
}

impl Progress {
    fn new(total: u64, pages: usize) -> Progress {
        Progress {
            total,
            pages,
            terminal: std::io::stderr().is_terminal(),
            last_line: None,
            drawn: false,
        }
    }

    fn draw(&mut self, embedded: u64, earlier: u64, total: u64, stored: usize, elapsed: Duration) {
        self.total = total.max(1);
        let line = progress_line(embedded, earlier, self.total, stored, self.pages, elapsed);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{line}\x1b[K");
            self.drawn = true;
        } else if self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(15))
        {
            let _ = writeln!(err, "{line}");
            self.last_line = Some(Instant::now());
        }
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// `[#####.....] 4,321/10,234 passages embedded  38.2/s  ETA 2m35s  pages 1,100/1,100`
fn progress_line(
    embedded: u64,
    earlier: u64,
    total: u64,
    stored: usize,
    pages: usize,
    elapsed: Duration,
) -> String {
    const WIDTH: u64 = 30;
    let filled = (embedded.min(total) * WIDTH / total.max(1)) as usize;
    let bar = format!(
        "{}{}",
        "#".repeat(filled),
        ".".repeat(WIDTH as usize - filled)
    );
    let new = embedded.saturating_sub(earlier);
    let rate = new as f64 / elapsed.as_secs_f64().max(1e-3);
    let eta = match (rate > 0.0, total.saturating_sub(embedded)) {
        (_, 0) => "done".to_owned(),
        (true, left) => format!("ETA {}", clock(left as f64 / rate)),
        (false, _) => "ETA --".to_owned(),
    };
    format!(
        "[{bar}] {}/{} passages embedded  {rate:.1}/s  {eta}  pages stored {}/{}",
        thousands(embedded),
        thousands(total),
        thousands(stored as u64),
        thousands(pages as u64)
    )
}

/// `95` → `1m35s`.
fn clock(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `18234` → `18,234`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The search modes, as the API names them.
const MODES: [&str; 3] = ["vector", "text", "hybrid"];

/// Every title query through `POST /v1/search` in each mode, one at a time.
async fn evaluate(
    target: &Target,
    queries: &[Query],
) -> Result<Vec<(&'static str, Scores)>, AnyError> {
    let mut client = Client::new(target);
    let mut rows = Vec::new();
    for mode in MODES {
        let mut outcomes = Vec::with_capacity(queries.len());
        for query in queries {
            let body = json!({"query": query.text, "mode": mode, "k": 10});
            let sent = Instant::now();
            let reply = client
                .expect(Method::POST, "/v1/search", Some(&body), &[200])
                .await?;
            let latency = sent.elapsed();
            let sources: Vec<String> = reply.body["results"]
                .as_array()
                .map(|hits| {
                    hits.iter()
                        .map(|h| h["source"].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            outcomes.push(Outcome::of(
                query,
                sources.iter().map(String::as_str),
                latency,
            ));
        }
        rows.push((mode, Scores::of(&outcomes)));
    }
    Ok(rows)
}

fn retrieval_table(rows: &[(&str, Scores)], queries: &[Query]) -> String {
    let mut out = format!(
        "Retrieval through POST /v1/search: {} title queries, k = 10, relevant = a hit from the title's page; \
         latency is the client's (HTTP, query embedding and search)\n\n\
         | mode | hit@1 | hit@10 | MRR@10 | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n",
        queries.len()
    );
    for (mode, s) in rows {
        out.push_str(&format!(
            "| {mode} | {:.3} | {:.3} | {:.3} | {:.1} | {:.1} |\n",
            s.hit1,
            s.hit10,
            s.mrr10,
            ms(s.p50),
            ms(s.p99)
        ));
    }
    out
}

/// One throughput run's figures.
#[derive(Debug)]
struct Throughput {
    label: String,
    requests: usize,
    errors: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

/// The throughput runs: each mode with queries that do not repeat, then
/// hybrid with [`REPEATED_QUERIES`] repeated ones (the search cache).
async fn throughput(
    target: &Target,
    pages: &[PageDoc],
    queries: &[Query],
    options: &Options,
) -> Result<Vec<Throughput>, AnyError> {
    let distinct = distinct_queries(pages, queries);
    let repeated: Vec<String> = distinct.iter().take(REPEATED_QUERIES).cloned().collect();
    let mut runs = Vec::new();
    for mode in ["text", "vector", "hybrid"] {
        let label = format!("{mode}, distinct queries ({} available)", distinct.len());
        runs.push(load(target, mode, &distinct, options, label).await?);
    }
    // Warm the cache, then measure.
    let mut client = Client::new(target);
    for query in &repeated {
        let body = json!({"query": query, "mode": "hybrid", "k": 10});
        client
            .expect(Method::POST, "/v1/search", Some(&body), &[200])
            .await?;
    }
    let label = format!("hybrid, {} repeated queries (cache hits)", repeated.len());
    runs.push(load(target, "hybrid", &repeated, options, label).await?);
    Ok(runs)
}

/// Queries that do not repeat: the titles, then the first eight words of
/// each passage.
fn distinct_queries(pages: &[PageDoc], queries: &[Query]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let titles = queries.iter().map(|q| q.text.clone());
    let openings = pages.iter().flat_map(|p| {
        p.text
            .split("\n\n")
            .map(|passage| {
                passage
                    .split_whitespace()
                    .take(8)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
    });
    titles
        .chain(openings)
        .filter(|q| !q.is_empty() && seen.insert(q.clone()))
        .collect()
}

/// `options.clients` clients on one connection each, searching in `mode`
/// for `options.seconds`, taking `queries` in turn.
async fn load(
    target: &Target,
    mode: &'static str,
    queries: &[String],
    options: &Options,
    label: String,
) -> Result<Throughput, AnyError> {
    let queries: Arc<Vec<String>> = Arc::new(queries.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let mut tasks = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        let (target, queries, next) = (target.clone(), queries.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(&target);
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed) % queries.len();
                let body = json!({"query": queries[i], "mode": mode, "k": 10});
                let sent = Instant::now();
                match client.send(Method::POST, "/v1/search", Some(&body)).await {
                    Ok(reply) if reply.status == 200 => latencies.push(sent.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    eprintln!(
        "throughput: {label}: {} requests in {seconds:.1} s",
        latencies.len() + errors
    );
    Ok(Throughput {
        label,
        requests: latencies.len(),
        errors,
        seconds,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
    })
}

fn throughput_table(runs: &[Throughput], options: &Options) -> String {
    let mut out = format!(
        "Search throughput: {} concurrent clients (one keep-alive connection each, loopback), \
         {} s per run, k = 10\n\n\
         | run | requests | errors | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n",
        options.clients, options.seconds
    );
    for run in runs {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
            run.label,
            run.requests,
            run.errors,
            run.requests as f64 / run.seconds.max(1e-9),
            ms(run.p50),
            ms(run.p99)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let args = |a: &[&str]| parse(a.iter().map(|s| (*s).to_owned()));
        let o = args(&["--limit", "20", "--seconds", "5"]).unwrap().unwrap();
        assert_eq!((o.limit, o.seconds, o.clients), (Some(20), 5, 32));
        assert!(args(&["--limit", "0"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(args(&["--help"]).unwrap().is_none());
    }

    #[test]
    fn the_target_takes_host_and_port() {
        let t = Target::parse("http://127.0.0.1:8080/", Some(String::new())).unwrap();
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.key, None);
        assert!(Target::parse("https://x", None).is_err());
        assert!(Target::parse("http://", None).is_err());
    }

    #[test]
    fn a_duplicate_names_its_document() {
        let id = Uuid::now_v7();
        let body = json!({"error": {"code": "duplicate_document",
            "message": "the same text is already stored", "document_id": id}});
        assert_eq!(duplicate_of(&body), Some(id));
        // The id is read from its field, never from the message.
        let in_message = json!({"error": {"code": "duplicate_document",
            "message": format!("the same text is already stored as document {id}")}});
        assert_eq!(duplicate_of(&in_message), None);
        let other = json!({"error": {"code": "invalid_request", "document_id": id}});
        assert_eq!(duplicate_of(&other), None);
    }

    #[test]
    fn the_progress_line_shows_count_rate_and_eta() {
        let line = progress_line(500, 0, 1_000, 40, 100, Duration::from_secs(10));
        assert!(
            line.starts_with(&format!("[{}{}]", "#".repeat(15), ".".repeat(15))),
            "{line}"
        );
        assert!(line.contains("500/1,000 passages embedded"), "{line}");
        assert!(line.contains("50.0/s"), "{line}");
        assert!(line.contains("ETA 10s"), "{line}");
        assert!(line.contains("pages stored 40/100"), "{line}");
        // An earlier run's passages count as done, not in the rate.
        let line = progress_line(1_000, 1_000, 1_000, 100, 100, Duration::from_secs(1));
        assert!(line.contains("0.0/s  done"), "{line}");
        assert_eq!(clock(95.0), "1m35s");
        assert_eq!(clock(3_700.0), "1h01m");
        assert_eq!(thousands(18_234), "18,234");
        assert_eq!(thousands(999), "999");
    }
}
