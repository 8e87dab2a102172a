//! [`PgRepository::bulk_load`]: many rows into a table with vector indexes
//! at index-build speed, safely.
//!
//! `insert_many` into a table whose HNSW index exists makes every row walk
//! the graph: 50,000 × 768 halfvec rows take about 90 s here (560 rows/s).
//! pgvector's advice is to load first and build the index after; this
//! module does that (about 11 s for the same rows), in one of two modes,
//! with a bounded wait everywhere.
//!
//! # Modes
//!
//! | | [`LoadMode::Exclusive`] | [`LoadMode::Online`] |
//! |---|---|---|
//! | steps | one transaction: `LOCK TABLE … ACCESS EXCLUSIVE`, drop the vector indexes, `COPY`, `CREATE INDEX` each one again (as `pg_get_indexdef` had it), `COMMIT` | `COPY` in one transaction with the indexes in place (every row walks the graph), then `REINDEX INDEX CONCURRENTLY` the vector indexes [`Rebuild`] asks for (by default IVFFlat when the load is a quarter of the table or more) and any INVALID one |
//! | readers and writers | wait for the lock while the load runs (bounded by *their* timeouts) | never blocked; searches use a valid index throughout |
//! | cost | copy without indexes + one build | `insert_many`'s walk + (when rebuilt) a build of the whole table |
//! | interrupted (future dropped, connection lost, process killed, any error) | rolled back whole: none of the rows, the indexes exactly as before | before the `COPY` commits: none of the rows. After: every row stored and searchable through the old (valid) index; a concurrent rebuild cut short leaves an INVALID `<index>_ccnew`/`_ccold` copy, which the next `bulk_load` or [`PgRepository::repair_indexes`] drops |
//! | use it for | an empty table, a first load, a maintenance window | a table being read while it grows |
//!
//! [`LoadMode::Auto`] (the default) takes `Exclusive` for an empty table
//! with a vector index (nothing to read, nothing to lose) and `Online`
//! otherwise: a load never blocks the readers of a table that has rows
//! unless the caller says so.
//!
//! The rows are always all or nothing: `Err` from `bulk_load` means none of
//! them is stored (except [`Error::CommitOutcomeUnknown`], as for any
//! write). Once the rows are committed, what happens to the indexes
//! afterwards (a rebuild timing out, `ANALYZE` waiting too long for its
//! lock) does not undo them: it is reported in [`LoadReport::problems`], and
//! [`LoadReport::is_complete`] is false.
//!
//! # Safety details
//!
//! - Every row is checked before anything is sent (stamped, embeddings
//!   filled, NUL and vector checks), so a NaN or a wrong dimension fails
//!   with the row's index and field before a lock is taken.
//! - `bulk_load` refuses to run in a unit of work ([`Error::InvalidInput`]):
//!   it commits its own transaction, and `CONCURRENTLY` cannot run inside a
//!   transaction block.
//! - It runs on one pooled connection that is closed afterwards, never
//!   pooled again: every setting it makes (`maintenance_work_mem`,
//!   `max_parallel_maintenance_workers`, timeouts) dies with it. Inside the
//!   exclusive transaction they are `SET LOCAL` as well. With a progress
//!   callback, a second pooled connection reads the server's progress views
//!   and goes back to the pool untouched.
//! - Each session sets `client_connection_check_interval` (1 s), so a
//!   statement whose client went away (the future dropped, the process
//!   killed) is cancelled by the server instead of running on for its whole
//!   timeout while holding its locks. Measured: without it, a dropped
//!   client's `CREATE INDEX` ran to its end; with it, a dropped load's
//!   `REINDEX CONCURRENTLY` is gone within the second (a test checks it).
//!   Where the server cannot watch sockets (not Linux) the setting is
//!   refused and the timeouts alone bound the statement.
//! - Waits: the exclusive lock and `ANALYZE` wait at most `lock_timeout`
//!   (default 10 s), so a load never queues behind a long reader while
//!   writers queue behind it. `COPY` runs under `copy_timeout`, each build
//!   under `build_timeout` (default 1 h each), enforced by the server and,
//!   with 5 s of slack, by the client. A concurrent rebuild's waits for
//!   older transactions block nobody, so they are bounded by
//!   `build_timeout`, not `lock_timeout`; note that `REINDEX CONCURRENTLY`
//!   waits for every transaction in the *database* older than it (the
//!   progress callback shows `waiting for old snapshots`).
//! - `maintenance_work_mem` is sized per build from the rows after the
//!   load, the measured size of the vectors loaded and the index's `m`
//!   (HNSW) or `lists` (IVFFlat), with 15 % headroom; never below the
//!   server's own setting. pgvector 0.8.5 measured 2,251 bytes a row for
//!   768-dimension halfvec at m = 16 (its notice after 29,807 rows in
//!   64 MB); the estimate gives 2,624 with the headroom, so 50k rows get
//!   134 MiB. A build that would need more than the cap (default 1 GiB) is
//!   refused before anything happens rather than left to spill to disk
//!   (measured on random 50k × 768 halfvec with two workers: 78 s in
//!   memory, 159 s spilling out of 64 MB). An
//!   explicit [`BulkLoad::maintenance_work_mem`] is used as given (the
//!   report says what the estimate was).
//! - Parallel maintenance workers are the server's setting unless
//!   [`BulkLoad::parallel_workers`] says otherwise (they help in the
//!   exclusive transaction and in concurrent rebuilds alike); a parallel
//!   build that cannot get its shared memory (Docker's 64 MB `/dev/shm`:
//!   pgvector puts the whole graph there) is retried without workers.
//! - The table's vector indexes are read from the catalog, not the schema:
//!   a build recreates each one exactly as `pg_get_indexdef` shows it
//!   (parameters changed by a migration are kept), and indexes the schema
//!   does not know are handled too.
//!
//! # When each path wins
//!
//! `cargo xtask bench ingest` (`bench/src/ingest.rs`): 50,000 × 768
//! halfvec rows (seeded, 100 clusters) into a table with its HNSW index
//! (cosine, m = 16, ef_construction = 64, made by `create_tables`), two
//! runs of each path, on the 2-core test machine (load average 1.1 before,
//! 2.7 after); recall@10 over 100 queries against exact neighbours, the
//! worst query's in brackets:
//!
//! | path | wall s | vs insert_many | recall ef 40 | recall ef 100 | recall ef 400 |
//! |---|---:|---:|---:|---:|---:|
//! | `insert_many`, 5,000-row batches | 88.7, 88.4 | 1.00 | 0.964 (0.0), 0.972 (0.8) | 0.980 (0.0), 0.987 (0.8) | 0.982, 0.989 |
//! | `bulk_load` (empty table: exclusive) | 10.7, 11.1 | **0.12** | 0.956 (0.0), 0.972 (0.8) | 0.979 (0.0), 0.989 (0.9) | 0.981, 0.990 |
//! | `bulk_load` online, `Rebuild::Always` | 107.7, 109.1 | 1.22 | 0.941 (0.0), 0.934 (0.0) | 0.963 (0.0), 0.949 (0.0) | 0.974, 0.980 |
//!
//! The exclusive load: 0.1 s checking, 0.3 s `COPY`, 10.2–10.5 s building
//! (134 MiB, two parallel workers), 0.1 s `ANALYZE`. The online load: the
//! same walk as `insert_many` (89–93 s), then a 15–20 s concurrent rebuild.
//!
//! Recall is a property of the graph, not of the path that made it: over
//! every graph built on this data (5 grown by `insert_many`, 14 built by
//! exclusive loads, 9 rebuilt plainly or concurrently) recall@10 at
//! ef_search 100 ranged 0.963–0.989 grown and 0.949–0.989 built (means
//! 0.981 and 0.976), and no graph reached 0.99. Raising ef_search beyond
//! 200 barely helps: with 500 tight points per cluster, a cluster without
//! a node on the upper layers is an island the search cannot enter (the
//! queries at 0/10). Less clustered data (1,000 clusters) gave 0.985 and
//! 0.992 at ef_search 100 from the same exclusive load, and
//! ef_construction = 128 gave 0.983 and 0.994. So:
//!
//! - `bulk_load` wins whenever the load is large next to the table: an
//!   empty or nearly empty table (exclusive, about 8× faster here), or a
//!   maintenance window on a table of any size (exclusive by choice).
//! - On a table being read, the online mode costs what `insert_many`
//!   costs (each row walks the graph) plus the rebuilds it is asked for,
//!   and adds what `insert_many` lacks for a long load: one transaction with
//!   its own `copy_timeout` (a single `insert_many` of these 50k rows would
//!   exceed the default 30 s statement timeout), progress, `ANALYZE`, and
//!   the cleanup of interrupted rebuilds. HNSW is not rebuilt by default
//!   (the measured recall gave no reason to); IVFFlat is, when the load is
//!   a quarter of the table or more ([`Rebuild`]).
//! - `insert_many` stays the call for small batches, for loads inside a
//!   unit of work, and for loads small next to the table.

mod build;
mod plan;
mod progress;

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use reposmith_core::repository::BoxFuture;
use reposmith_core::{Entity, Error, Result};
use tracing::Instrument;

use crate::PgRepository;

pub use progress::{BuildProgress, LoadPhase, LoadProgress};

pub(crate) const MIB: u64 = 1024 * 1024;
/// Default of [`BulkLoad::build_timeout`] and [`BulkLoad::copy_timeout`].
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default of [`BulkLoad::lock_timeout`].
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`BulkLoad::maintenance_work_mem_cap`]: 1 GiB, room for an
/// in-memory HNSW graph of about 400,000 × 768-dimension halfvec rows.
pub const DEFAULT_MEMORY_CAP: u64 = 1024 * MIB;
/// Default of [`BulkLoad::progress_interval`].
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// [`Rebuild::Auto`] rebuilds an IVFFlat index when the load is at least
/// this share of the table after it: then lists computed without those rows
/// misplace a large part of the table, and the rebuild (whose cost grows
/// with the whole table) is worth it.
pub const REBUILD_SHARE: f64 = 0.25;

/// Postgres' largest `statement_timeout` / `lock_timeout`, in milliseconds.
const MAX_TIMEOUT_MS: u128 = i32::MAX as u128;
/// Postgres' largest `maintenance_work_mem` (in kB on 64-bit servers).
const MAX_MEMORY: u64 = i32::MAX as u64 * 1024;
/// Postgres' largest `max_parallel_maintenance_workers`.
const MAX_WORKERS: u32 = 1024;

/// How [`PgRepository::bulk_load`] treats the table's vector indexes; see
/// the [module documentation](self) for what each guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LoadMode {
    /// `Exclusive` when the table is empty, `Online` when it has rows.
    #[default]
    Auto,
    /// Drop the vector indexes, copy, build them again: one transaction
    /// under an exclusive lock. Fastest; blocks every reader and writer of
    /// the table until it commits.
    Exclusive,
    /// Copy with the indexes in place, then rebuild them concurrently:
    /// readers and writers never wait and always have a valid index.
    Online,
}

impl LoadMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LoadMode::Auto => "auto",
            LoadMode::Exclusive => "exclusive",
            LoadMode::Online => "online",
        }
    }
}

/// Whether a [`LoadMode::Online`] load rebuilds the vector indexes after
/// the rows are in (`REINDEX INDEX CONCURRENTLY`). An INVALID index is
/// rebuilt whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Rebuild {
    /// IVFFlat indexes when the load is at least [`REBUILD_SHARE`] of the
    /// table after it (their lists were computed without those rows); HNSW
    /// never: a graph grown by inserts measured as good as a built one.
    #[default]
    Auto,
    /// Every vector index: a compact, freshly built graph or fresh lists,
    /// at the cost of a build of the whole table.
    Always,
    /// Never: the rows stay walked into the existing graph, as `insert_many` leaves them.
    Never,
}

/// How much `maintenance_work_mem` a build gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Memory {
    /// Sized from the estimate, refused above `cap` bytes.
    Auto { cap: u64 },
    /// Exactly this many bytes.
    Exactly(u64),
}

/// Options of a bulk load, checked when it is awaited.
#[derive(Clone)]
pub(crate) struct LoadOptions {
    pub(crate) mode: LoadMode,
    pub(crate) rebuild: Option<Rebuild>,
    pub(crate) build_timeout: Duration,
    pub(crate) copy_timeout: Duration,
    pub(crate) lock_timeout: Duration,
    memory_exact: Option<u64>,
    memory_cap: Option<u64>,
    pub(crate) parallel_workers: Option<u32>,
    pub(crate) analyze: bool,
    pub(crate) progress: Option<progress::Callback>,
    pub(crate) progress_interval: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            mode: LoadMode::Auto,
            rebuild: None,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            copy_timeout: DEFAULT_BUILD_TIMEOUT,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            memory_exact: None,
            memory_cap: None,
            parallel_workers: None,
            analyze: true,
            progress: None,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        }
    }
}

impl LoadOptions {
    /// Every option within what Postgres accepts and consistent with the others.
    pub(crate) fn validate(&self) -> Result<()> {
        let invalid = |field: &str, reason: String| Err(Error::invalid("bulk_load", field, reason));
        for (field, value, least) in [
            ("build_timeout", self.build_timeout, Duration::from_secs(1)),
            ("copy_timeout", self.copy_timeout, Duration::from_secs(1)),
            ("lock_timeout", self.lock_timeout, Duration::from_millis(1)),
        ] {
            if value < least || value.as_millis() > MAX_TIMEOUT_MS {
                return invalid(
                    field,
                    format!(
                        "{value:?} is outside {least:?} ..= {:?} (Postgres' limit; every wait of a \
                         load is bounded, so there is no \"no timeout\")",
                        Duration::from_millis(MAX_TIMEOUT_MS as u64)
                    ),
                );
            }
        }
        for (field, value) in [
            ("maintenance_work_mem", self.memory_exact),
            ("maintenance_work_mem_cap", self.memory_cap),
        ] {
            if let Some(bytes) = value
                && !(MIB..=MAX_MEMORY).contains(&bytes)
            {
                return invalid(
                    field,
                    format!("{bytes} bytes is outside 1 MiB ..= {MAX_MEMORY} (Postgres' range)"),
                );
            }
        }
        if self.memory_exact.is_some() && self.memory_cap.is_some() {
            return invalid(
                "maintenance_work_mem",
                "set either an exact maintenance_work_mem or a cap for the sized one, not both"
                    .to_owned(),
            );
        }
        if let Some(workers) = self.parallel_workers
            && workers > MAX_WORKERS
        {
            return invalid(
                "parallel_workers",
                format!("{workers} is above Postgres' limit of {MAX_WORKERS}"),
            );
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600))
            .contains(&self.progress_interval)
        {
            return invalid(
                "progress_interval",
                format!("{:?} is outside 10ms ..= 1h", self.progress_interval),
            );
        }
        if self.mode == LoadMode::Exclusive && self.rebuild.is_some() {
            return invalid(
                "rebuild",
                "applies to LoadMode::Online (and Auto, when it picks Online): an exclusive load \
                 always builds its indexes after the rows"
                    .to_owned(),
            );
        }
        Ok(())
    }

    pub(crate) fn memory(&self) -> Memory {
        match self.memory_exact {
            Some(bytes) => Memory::Exactly(bytes),
            None => Memory::Auto {
                cap: self.memory_cap.unwrap_or(DEFAULT_MEMORY_CAP),
            },
        }
    }
}

/// A bulk load being configured; `.await` it for a [`LoadReport`].
/// Options are checked when it is awaited, before anything is sent.
#[must_use = "a bulk load does nothing until it is awaited"]
pub struct BulkLoad<'r, E> {
    repo: &'r PgRepository<E>,
    rows: &'r [E],
    options: LoadOptions,
}

impl<E> BulkLoad<'_, E> {
    /// How the vector indexes are treated (default [`LoadMode::Auto`]).
    pub fn mode(mut self, mode: LoadMode) -> Self {
        self.options.mode = mode;
        self
    }

    /// Whether an online load rebuilds the vector indexes afterwards
    /// (default [`Rebuild::Auto`]); refused with [`LoadMode::Exclusive`].
    pub fn rebuild(mut self, rebuild: Rebuild) -> Self {
        self.options.rebuild = Some(rebuild);
        self
    }

    /// Calls `progress` at every phase change and, while the server copies
    /// or builds, every [`progress_interval`](Self::progress_interval) with
    /// its progress (read on a second pooled connection). It runs on the
    /// load's task: keep it short (send to a channel to do more).
    pub fn progress(mut self, progress: impl Fn(&LoadProgress) + Send + Sync + 'static) -> Self {
        self.options.progress = Some(Arc::new(progress));
        self
    }

    /// How often the server's progress is read (default 1 s; 10 ms ..= 1 h).
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.options.progress_interval = interval;
        self
    }

    /// The longest one index build or rebuild may take, its waits included
    /// (default [`DEFAULT_BUILD_TIMEOUT`], 1 h; 1 s ..= about 24 days).
    pub fn build_timeout(mut self, timeout: Duration) -> Self {
        self.options.build_timeout = timeout;
        self
    }

    /// The longest the `COPY` of the rows may take (default 1 h). With the
    /// index in place (online mode) every row walks the graph: about 1.8 ms
    /// a row for 768-dimension halfvec here.
    pub fn copy_timeout(mut self, timeout: Duration) -> Self {
        self.options.copy_timeout = timeout;
        self
    }

    /// The longest the load waits for a lock that makes others wait behind
    /// it: the exclusive lock, `ANALYZE`'s (default 10 s; at least 1 ms).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.options.lock_timeout = timeout;
        self
    }

    /// Builds with exactly `bytes` of `maintenance_work_mem` instead of the
    /// sized amount, even below the estimate (the report's
    /// [`IndexReport::memory_needed`] says what the graph needed).
    pub fn maintenance_work_mem(mut self, bytes: u64) -> Self {
        self.options.memory_exact = Some(bytes);
        self
    }

    /// The most `maintenance_work_mem` a sized build may take (default
    /// [`DEFAULT_MEMORY_CAP`]); a build needing more is refused.
    pub fn maintenance_work_mem_cap(mut self, bytes: u64) -> Self {
        self.options.memory_cap = Some(bytes);
        self
    }

    /// `max_parallel_maintenance_workers` for the builds (default: the
    /// server's setting; at most 1,024, and the server's
    /// `max_parallel_workers` and `max_worker_processes` still apply).
    pub fn parallel_workers(mut self, workers: u32) -> Self {
        self.options.parallel_workers = Some(workers);
        self
    }

    /// Whether to `ANALYZE` the table after the load (default true), so
    /// the planner sees its new size.
    pub fn analyze(mut self, analyze: bool) -> Self {
        self.options.analyze = analyze;
        self
    }
}

impl<'r, E: Entity> IntoFuture for BulkLoad<'r, E> {
    type Output = Result<LoadReport>;
    type IntoFuture = BoxFuture<'r, Result<LoadReport>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.repo.run_bulk_load(self.rows, self.options))
    }
}

/// What a bulk load did.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoadReport {
    /// Rows stored.
    pub rows: u64,
    /// Rows the table held before (counted when the load started).
    pub rows_before: u64,
    /// The mode that ran ([`LoadMode::Exclusive`] or [`LoadMode::Online`]).
    pub mode: LoadMode,
    /// Time checking the rows (and computing missing embeddings).
    pub check_time: Duration,
    /// Time in `COPY`.
    pub copy_time: Duration,
    /// Time building or rebuilding vector indexes (and dropping leftovers).
    pub build_time: Duration,
    /// Time in `ANALYZE`.
    pub analyze_time: Duration,
    /// Wall time of the whole load.
    pub total_time: Duration,
    /// The table's vector indexes afterwards.
    pub indexes: Vec<IndexReport>,
    /// Leftovers of interrupted concurrent builds dropped before the load.
    pub repaired: Vec<IndexRepair>,
    /// Steps that failed after the rows were committed; the rows are stored.
    pub problems: Vec<LoadProblem>,
}

impl LoadReport {
    /// True when every step succeeded and every vector index is valid.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty() && self.indexes.iter().all(|i| i.valid)
    }
}

/// One vector index after a bulk load.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IndexReport {
    /// The index name.
    pub name: String,
    /// `hnsw` or `ivfflat`.
    pub method: String,
    /// What the load did with it.
    pub outcome: IndexOutcome,
    /// Time building it.
    pub build_time: Duration,
    /// `maintenance_work_mem` the build ran with, in bytes (0 when not built).
    pub memory: u64,
    /// Estimated bytes the build needed to stay in memory (0 when not built).
    pub memory_needed: u64,
    /// `max_parallel_maintenance_workers` in the build's session (0 when not built).
    pub parallel_workers: u32,
    /// Most parallel workers seen helping the build (read only with a progress callback).
    pub workers_seen: u32,
    /// `pg_index.indisvalid` after the load: searches can use it.
    pub valid: bool,
}

/// What a bulk load did with a vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexOutcome {
    /// Dropped and built again after the rows (exclusive mode).
    Built,
    /// Rebuilt by `REINDEX INDEX CONCURRENTLY` after the rows (online mode).
    Rebuilt,
    /// Kept as it was, the rows walked into it (online mode, no rebuild).
    Kept,
    /// The rebuild failed (see [`LoadReport::problems`]); the index keeps
    /// the rows walked into it and stays usable if it was valid.
    RebuildFailed,
}

/// A step that failed after the rows were committed.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoadProblem {
    /// What was being done, such as `rebuild docs_embedding_idx` or `analyze`.
    pub step: String,
    /// Why it failed.
    pub error: Error,
}

/// An INVALID index dealt with by [`PgRepository::repair_indexes`] or
/// before a bulk load.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexRepair {
    /// The index name.
    pub index: String,
    /// What was done.
    pub action: RepairAction,
}

/// What was done to an INVALID index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RepairAction {
    /// A `_ccnew`/`_ccold` copy left by an interrupted concurrent rebuild:
    /// dropped (`DROP INDEX CONCURRENTLY`); the original index stays.
    DroppedLeftover,
    /// An index left INVALID by a failed concurrent build: rebuilt in
    /// place (`REINDEX INDEX CONCURRENTLY`).
    Rebuilt,
}

impl<E: Entity> PgRepository<E> {
    /// Loads `rows` with `COPY` and builds the table's vector indexes after
    /// them, rather than walking every row into an existing HNSW graph as
    /// `insert_many` does; see the [`bulk_load` module](crate::bulk_load)
    /// for the two modes and what an interruption leaves.
    ///
    /// ```rust,ignore
    /// let report = docs
    ///     .bulk_load(&rows)
    ///     .progress(|p| eprintln!("{:?} {}/{}", p.phase, p.rows_copied, p.rows_total))
    ///     .build_timeout(Duration::from_secs(1800))
    ///     .await?;
    /// assert!(report.is_complete());
    /// ```
    ///
    /// Refused inside a unit of work. All rows or none: `Err` means none is
    /// stored; index steps failing after the rows committed are reported in
    /// [`LoadReport::problems`].
    pub fn bulk_load<'r>(&'r self, rows: &'r [E]) -> BulkLoad<'r, E> {
        BulkLoad {
            repo: self,
            rows,
            options: LoadOptions::default(),
        }
    }

    /// Deals with the INVALID indexes of the table that interrupted
    /// concurrent builds leave: a `<index>_ccnew`/`_ccold` copy of an
    /// interrupted `REINDEX CONCURRENTLY` is dropped, any other INVALID
    /// index is rebuilt in place; both `CONCURRENTLY`, so readers and
    /// writers never wait. Does nothing while another session is building
    /// an index on the table (its index is INVALID until it finishes).
    /// Refused inside a unit of work.
    pub async fn repair_indexes(&self) -> Result<Vec<IndexRepair>> {
        refuse_in_unit(self, "repair_indexes")?;
        refuse_behind_pooler(self, "repair_indexes")?;
        let span = crate::repository::span("repair_indexes", E::SCHEMA.table);
        build::repair::<E>(self.exec.backend(), &LoadOptions::default())
            .instrument(span)
            .await
    }

    async fn run_bulk_load(&self, rows: &[E], options: LoadOptions) -> Result<LoadReport> {
        refuse_in_unit(self, "bulk_load")?;
        refuse_behind_pooler(self, "bulk_load")?;
        options.validate()?;
        let stamped = self.stamped_entities(rows)?;
        let rows = stamped.as_deref().unwrap_or(rows);
        let span = crate::repository::span("bulk_load", E::SCHEMA.table);
        let guard = self.track_guard();
        let loaded = build::load(self, rows, options)
            .instrument(span.clone())
            .await;
        // A load in a session records its commits, a failed one's too: its
        // batches commit one by one, so some may have before the failure.
        self.track_commit().await;
        guard.disarm();
        let report = loaded?;
        span.record("db.rows_affected", report.rows);
        // bulk_load commits its own transactions: the cache is told after
        // them, directly (not through the outbox).
        let ids: Vec<reposmith_core::Value> = rows
            .iter()
            .map(|row| reposmith_core::FieldType::to_value(row.id()))
            .collect();
        self.written(&ids).await;
        Ok(report)
    }
}

fn refuse_in_unit<E>(repo: &PgRepository<E>, operation: &str) -> Result<()> {
    if !repo.exec.in_unit() {
        return Ok(());
    }
    Err(Error::invalid(
        "unit of work",
        operation,
        format!(
            "{operation} cannot run inside a unit of work: it commits its own transaction and \
             builds indexes CONCURRENTLY, which Postgres refuses inside a transaction block; \
             call it on the pool's repository (store.repo::<E>()), outside the unit"
        ),
    ))
}

/// Refuses `operation` behind a transaction pooler: it needs a session of
/// its own (settings for its whole run, `CONCURRENTLY` builds outside any
/// transaction, progress read by the server process id), which a pooler
/// lends for one transaction at a time.
fn refuse_behind_pooler<E>(repo: &PgRepository<E>, operation: &str) -> Result<()> {
    if repo.exec.backend().pooler() == crate::PoolerMode::Direct {
        return Ok(());
    }
    Err(Error::config(
        "REPOSMITH_PG_POOLER",
        format!(
            "{operation} needs a session of its own, which a transaction pooler does not lend: \
             run it on a PgBackend connected to PostgreSQL itself (PoolerMode::Direct)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(change: impl FnOnce(&mut LoadOptions)) -> Result<()> {
        let mut o = LoadOptions::default();
        change(&mut o);
        o.validate()
    }

    fn field(result: Result<()>) -> String {
        match result {
            Err(Error::InvalidInput { entity, field, .. }) => format!("{entity}.{field}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid() {
        assert!(options(|_| {}).is_ok());
        assert_eq!(
            LoadOptions::default().memory(),
            Memory::Auto {
                cap: DEFAULT_MEMORY_CAP
            }
        );
    }

    #[test]
    fn every_option_is_checked() {
        type Change = Box<dyn FnOnce(&mut LoadOptions)>;
        let cases: [(&str, Change); 9] = [
            (
                "bulk_load.build_timeout",
                Box::new(|o| o.build_timeout = Duration::ZERO),
            ),
            (
                "bulk_load.copy_timeout",
                Box::new(|o| o.copy_timeout = Duration::from_secs(30 * 86_400)),
            ),
            (
                "bulk_load.lock_timeout",
                Box::new(|o| o.lock_timeout = Duration::ZERO),
            ),
            (
                "bulk_load.maintenance_work_mem",
                Box::new(|o| o.memory_exact = Some(1000)),
            ),
            (
                "bulk_load.maintenance_work_mem_cap",
                Box::new(|o| o.memory_cap = Some(u64::MAX)),
            ),
            (
                "bulk_load.maintenance_work_mem",
                Box::new(|o| {
                    o.memory_exact = Some(64 * MIB);
                    o.memory_cap = Some(128 * MIB);
                }),
            ),
            (
                "bulk_load.parallel_workers",
                Box::new(|o| o.parallel_workers = Some(5000)),
            ),
            (
                "bulk_load.progress_interval",
                Box::new(|o| o.progress_interval = Duration::ZERO),
            ),
            (
                "bulk_load.rebuild",
                Box::new(|o| {
                    o.mode = LoadMode::Exclusive;
                    o.rebuild = Some(Rebuild::Always);
                }),
            ),
        ];
        for (expected, change) in cases {
            assert_eq!(field(options(change)), expected);
        }
        assert!(
            options(|o| {
                o.mode = LoadMode::Online;
                o.rebuild = Some(Rebuild::Never);
                o.memory_exact = Some(2 * MIB);
                o.parallel_workers = Some(0);
            })
            .is_ok()
        );
    }
}
