//! The steps of a bulk load on its own connection: the exclusive
//! transaction, the online copy and concurrent rebuilds, `ANALYZE`, the
//! final check, and the repair of INVALID indexes.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use reposmith_core::{Backend, Entity, EntitySchema, Error, Result};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgDatabaseError, PgSeverity};

use crate::copy::{self, CopyError};
use crate::ddl::table_name;
use crate::embed::Fills;
use crate::pool::PooledConnection;
use crate::{PgBackend, PgRepository};

use super::plan::{self, MemoryPlan, VectorIndex, VectorSizes};
use super::progress::{self, LoadPhase, Reporter, Watch};
use super::{
    IndexOutcome, IndexRepair, IndexReport, LoadMode, LoadOptions, LoadProblem, LoadReport,
    REBUILD_SHARE, Rebuild, RepairAction,
};

/// Slack past a server-side timeout before the client gives up on its own.
const SLACK: Duration = Duration::from_secs(5);
/// How often the server checks that the client of a running statement is
/// still there (`client_connection_check_interval`, milliseconds).
const CLIENT_CHECK_MS: &str = "1000";
/// SQLSTATEs of a parallel build that could not get its shared memory
/// (`/dev/shm` too small): disk full, out of memory.
const NO_SHARED_MEMORY: [&str; 2] = ["53100", "53200"];

/// The load's own connection, taken from the pool and closed when the load
/// ends (never pooled again), so no setting made on it can leak.
struct Session<'b> {
    backend: &'b PgBackend,
    connection: Option<PooledConnection>,
    /// The server process of `connection`, whose progress the poller reads.
    pid: i32,
    /// The session's `statement_timeout` (a build's) and `lock_timeout`;
    /// steps that need others set them themselves.
    statement_timeout: Duration,
    lock_timeout: Duration,
}

impl<'b> Session<'b> {
    async fn open(backend: &'b PgBackend, options: &LoadOptions) -> Result<Session<'b>> {
        let mut session = Session {
            backend,
            connection: None,
            pid: 0,
            statement_timeout: options.build_timeout,
            lock_timeout: options.lock_timeout,
        };
        session.connect().await?;
        Ok(session)
    }

    async fn connect(&mut self) -> Result<()> {
        let mut c = self.backend.acquire_scoped().await?;
        c.discard();
        let defaults = [
            ("statement_timeout", ms(self.statement_timeout)),
            ("lock_timeout", ms(self.lock_timeout)),
        ];
        let setup = async {
            // A build whose client went away is cancelled instead of running
            // on (holding its locks) until its timeout. Refused where the
            // server cannot watch the socket: the timeouts still bound it.
            let check =
                sqlx::query("SELECT set_config('client_connection_check_interval', $1, false)")
                    .bind(CLIENT_CHECK_MS)
                    .execute(&mut *c)
                    .await;
            c.settle(&check);
            match check {
                Err(sqlx::Error::Database(error)) => {
                    tracing::debug!(%error, "bulk load: client_connection_check_interval refused");
                }
                Err(error) => return Err(error),
                Ok(_) => {}
            }
            set(&mut c, &defaults, false).await?;
            let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
                .fetch_one(&mut *c)
                .await;
            c.settle(&pid);
            pid
        };
        let bound = Bound {
            operation: "bulk_load's session setup",
            statement: self.lock_timeout,
            lock: self.lock_timeout,
        };
        let pid = within(bound, setup).await?;
        self.pid = pid.map_err(|e| self.backend.map_error(e))?;
        self.connection = Some(c);
        Ok(())
    }

    /// The connection, opened again if an earlier statement was cut off.
    async fn get(&mut self) -> Result<&mut PooledConnection> {
        if self.connection.is_none() {
            self.connect().await?;
        }
        self.connection.as_mut().ok_or_else(|| Error::Unavailable {
            backend: Backend::Postgres,
            reason: "the bulk load's connection is gone".to_owned(),
        })
    }

    /// Keeps the connection only while the server says it is usable: after
    /// anything but an ERROR (a FATAL, a lost socket) the next statement
    /// opens a new one.
    fn after<T>(&mut self, outcome: &sqlx::Result<T>) {
        if let Err(error) = outcome
            && !is_server_error(error)
        {
            self.lose();
        }
    }

    /// Drops a connection whose state is unknown (a statement cut off by the
    /// client's deadline): closing it ends whatever ran on it.
    fn lose(&mut self) {
        self.connection = None;
    }

    /// Settles a statement run under the client's deadline ([`within`]):
    /// past the deadline the connection is lost, otherwise it is kept as
    /// [`after`](Self::after) decides; the outcome passes through.
    fn settle<T>(
        &mut self,
        outcome: std::result::Result<sqlx::Result<T>, Error>,
    ) -> Result<sqlx::Result<T>> {
        match &outcome {
            Ok(result) => self.after(result),
            Err(_) => self.lose(),
        }
        outcome
    }
}

/// Which deadline a failed statement ran under, to report the right one.
#[derive(Debug, Clone, Copy)]
struct Bound {
    operation: &'static str,
    statement: Duration,
    lock: Duration,
}

/// Maps a statement's error: its own timeouts name the deadline that
/// expired; everything else as any operation on the entity's table.
fn map_err<'a>(
    backend: &'a PgBackend,
    schema: &'static EntitySchema,
    bound: Bound,
) -> impl Fn(sqlx::Error) -> Error + 'a {
    move |err| {
        let db = match &err {
            sqlx::Error::Database(db) => db.try_downcast_ref::<PgDatabaseError>(),
            _ => None,
        };
        match db.map(|e| (e.code(), e.message())) {
            Some(("55P03", _)) => Error::Timeout {
                backend: Backend::Postgres,
                operation: "a lock (bulk_load's lock_timeout)",
                after: bound.lock,
            },
            Some(("57014", message)) if message.contains("statement timeout") => Error::Timeout {
                backend: Backend::Postgres,
                operation: bound.operation,
                after: bound.statement,
            },
            _ => backend.map_entity_error(err, schema),
        }
    }
}

/// Runs `work`, giving up `SLACK` after the server-side `bound` should have
/// fired (the server or the network went silent); the caller then loses
/// the connection.
async fn within<T>(bound: Bound, work: impl Future<Output = T>) -> std::result::Result<T, Error> {
    tokio::time::timeout(bound.statement + SLACK, work)
        .await
        .map_err(|_| Error::Timeout {
            backend: Backend::Postgres,
            operation: bound.operation,
            after: bound.statement,
        })
}

/// One statement of raw SQL (schema identifiers and catalog definitions only).
async fn run(c: &mut PooledConnection, sql: &str) -> sqlx::Result<()> {
    // Safe: built from schema identifiers, catalog text (pg_get_indexdef,
    // regclass names) and constants; no value is ever in it.
    let outcome = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(&mut **c)
        .await
        .map(drop);
    c.settle(&outcome);
    outcome
}

/// `set_config` for each setting, transaction-local when `local`.
async fn set(
    c: &mut PooledConnection,
    settings: &[(&str, String)],
    local: bool,
) -> sqlx::Result<()> {
    for (name, value) in settings {
        let outcome = sqlx::query("SELECT set_config($1, $2, $3)")
            .bind(*name)
            .bind(value)
            .bind(local)
            .execute(&mut **c)
            .await
            .map(drop);
        c.settle(&outcome);
        outcome?;
    }
    Ok(())
}

fn ms(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

/// A settled statement's `sqlx::Result` made a typed one.
trait Mapped<T> {
    fn mapped(self, map: &impl Fn(sqlx::Error) -> Error) -> Result<T>;
}

impl<T> Mapped<T> for sqlx::Result<T> {
    fn mapped(self, map: &impl Fn(sqlx::Error) -> Error) -> Result<T> {
        self.map_err(map)
    }
}

/// What the load did to one index, for the report.
#[derive(Debug, Clone, Copy)]
struct Done {
    outcome: IndexOutcome,
    time: Duration,
    memory: MemoryPlan,
    workers: u32,
    workers_seen: u32,
}

/// Everything one load works with.
struct Load<'a, E> {
    repo: &'a PgRepository<E>,
    rows: &'a [E],
    columns: Vec<usize>,
    fills: Fills,
    sizes: VectorSizes,
    options: LoadOptions,
    reporter: Reporter,
    session: Session<'a>,
    done: HashMap<String, Done>,
    report: LoadReport,
}

/// The whole bulk load; see the module documentation.
pub(super) async fn load<E: Entity>(
    repo: &PgRepository<E>,
    rows: &[E],
    options: LoadOptions,
) -> Result<LoadReport> {
    let schema = E::SCHEMA;
    let reporter = Reporter::new(
        options.progress.clone(),
        rows.len() as u64,
        options.progress_interval,
    );
    reporter.phase(LoadPhase::Checking, None);
    let columns = repo.statements.insert_columns.clone();
    if !copy::supports(schema, &columns) {
        return Err(Error::invalid(
            schema.entity,
            "bulk_load",
            "the entity has an array-of-arrays field, which binary COPY cannot encode; \
             use insert_many",
        ));
    }
    // Embedded and checked before any connection is taken: a model call or
    // a bad row never holds a lock.
    let fills = crate::bulk::embedded(repo, rows).await?;
    let limit = repo.exec.backend().max_bind_bytes();
    let sizes = plan::check_rows(rows, &fills, &columns, (limit, repo.clock()))?;
    let check_time = reporter.started().elapsed();
    reporter.phase(LoadPhase::Preparing, None);
    let mut session = Session::open(repo.exec.backend(), &options).await?;
    let mode = match options.mode {
        LoadMode::Auto => {
            let bound = plain(&options);
            let map = map_err(repo.exec.backend(), schema, bound);
            let c = session.get().await?;
            let indexes = plan::vector_indexes(c, schema).await;
            c.settle(&indexes);
            let empty = plan::is_empty(c, schema).await;
            c.settle(&empty);
            // Without a vector index there is nothing to build after the
            // rows: the online path copies without locking anyone out.
            match (indexes.mapped(&map)?.is_empty(), empty.mapped(&map)?) {
                (false, true) => LoadMode::Exclusive,
                _ => LoadMode::Online,
            }
        }
        mode => mode,
    };
    reporter.mode(mode);
    let mut load = Load {
        repo,
        rows,
        columns,
        fills,
        sizes,
        options,
        reporter,
        session,
        done: HashMap::new(),
        report: LoadReport {
            rows: 0,
            rows_before: 0,
            mode,
            check_time,
            copy_time: Duration::ZERO,
            build_time: Duration::ZERO,
            analyze_time: Duration::ZERO,
            total_time: Duration::ZERO,
            indexes: Vec::new(),
            repaired: Vec::new(),
            problems: Vec::new(),
        },
    };
    if !rows.is_empty() {
        match mode {
            LoadMode::Exclusive => load.exclusive().await?,
            _ => load.online().await?,
        }
        load.analyze().await;
    }
    Ok(load.finish().await)
}

/// The bound of a short catalog statement: the lock timeout for both.
fn plain(options: &LoadOptions) -> Bound {
    Bound {
        operation: "a bulk load's catalog query",
        statement: options.lock_timeout,
        lock: options.lock_timeout,
    }
}

impl<E: Entity> Load<'_, E> {
    fn backend(&self) -> &PgBackend {
        self.repo.exec.backend()
    }

    /// COMMITs the load's transaction within `bound`; an unanswered COMMIT
    /// loses the session and is [`Error::CommitOutcomeUnknown`], never a
    /// timeout a caller could retry into duplicates.
    async fn commit(&mut self, bound: Bound) -> Result<()> {
        let backend = self.repo.exec.backend();
        let c = self.session.get().await?;
        match within(bound, run(c, "COMMIT")).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(commit_error(backend, error)),
            Err(_) => {
                self.session.lose();
                Err(Error::CommitOutcomeUnknown {
                    backend: Backend::Postgres,
                    reason: "the server did not answer the bulk load's COMMIT in time".to_owned(),
                })
            }
        }
    }

    fn bound(&self, operation: &'static str, statement: Duration) -> Bound {
        Bound {
            operation,
            statement,
            lock: self.options.lock_timeout,
        }
    }

    /// One transaction under `ACCESS EXCLUSIVE`: drop the vector indexes,
    /// copy, build them again, commit. Any failure before the commit
    /// returns `Err` and closes the connection: the server rolls it all back.
    async fn exclusive(&mut self) -> Result<()> {
        let schema = E::SCHEMA;
        let table = table_name(schema);
        // The lock waits at most lock_timeout (the server's); counting the
        // rows under it, at most a build's time.
        let bound = self.bound("bulk_load's exclusive lock", self.options.build_timeout);
        let backend = self.repo.exec.backend();
        let map = map_err(backend, schema, bound);
        let lock_timeout = self.options.lock_timeout;
        let c = self.session.get().await?;
        let prepared = within(bound, async {
            run(c, "BEGIN").await?;
            set(c, &[("lock_timeout", ms(lock_timeout))], true).await?;
            run(c, &format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")).await?;
            survey(c, schema).await
        })
        .await;
        let (indexes, before, server) = match prepared {
            Ok(result) => result.mapped(&map)?,
            Err(timeout) => {
                self.session.lose();
                return Err(timeout);
            }
        };
        self.report.rows_before = before;
        let total = before + self.rows.len() as u64;
        // Sized (and refused past the cap) before anything is dropped.
        let builds = indexes
            .iter()
            .filter(|i| !i.is_leftover())
            .map(|i| self.memory_for(i, total, server).map(|m| (i.clone(), m)))
            .collect::<Result<Vec<_>>>()?;
        let c = self.session.get().await?;
        for index in &indexes {
            let dropped = run(c, &format!("DROP INDEX {}", index.target)).await;
            dropped.mapped(&map)?;
        }
        self.copy().await?;
        for (index, memory) in builds {
            self.build_in_transaction(&index, memory).await?;
        }
        let commit = self.bound("bulk_load's COMMIT", self.options.build_timeout);
        self.commit(commit).await?;
        self.report.rows = self.rows.len() as u64;
        // Committed: the leftovers dropped in the transaction are gone.
        self.report.repaired = indexes
            .iter()
            .filter(|i| i.is_leftover())
            .map(|i| IndexRepair {
                index: i.name.clone(),
                action: RepairAction::DroppedLeftover,
            })
            .collect();
        Ok(())
    }

    /// The rows in, with the indexes in place; then the rebuilds. `Err`
    /// only until the copy commits.
    async fn online(&mut self) -> Result<()> {
        let schema = E::SCHEMA;
        let backend = self.repo.exec.backend();
        let bound = self.bound("bulk_load's row count", self.options.build_timeout);
        let map = map_err(backend, schema, bound);
        let c = self.session.get().await?;
        let prepared = within(bound, survey(c, schema)).await;
        let (indexes, before, server) = match prepared {
            Ok(result) => result.mapped(&map)?,
            Err(timeout) => {
                self.session.lose();
                return Err(timeout);
            }
        };
        self.report.rows_before = before;
        let rows = self.rows.len() as u64;
        let total = before + rows;
        let large = rows as f64 >= REBUILD_SHARE * total as f64;
        let rebuild = self.options.rebuild.unwrap_or_default();
        let rebuilds = indexes
            .iter()
            .filter(|i| !i.is_leftover() && (!i.valid || rebuild_wanted(rebuild, i, large)))
            .map(|i| self.memory_for(i, total, server).map(|m| (i.clone(), m)))
            .collect::<Result<Vec<_>>>()?;
        // Leftovers first: a ready one is maintained on every insert.
        let leftovers: Vec<VectorIndex> = indexes.into_iter().filter(|i| i.is_leftover()).collect();
        if !leftovers.is_empty() && !self.build_in_progress().await? {
            for leftover in &leftovers {
                match self.drop_concurrently(leftover).await {
                    Ok(()) => self.report.repaired.push(IndexRepair {
                        index: leftover.name.clone(),
                        action: RepairAction::DroppedLeftover,
                    }),
                    Err(error) => self.problem(format!("drop leftover {}", leftover.name), error),
                }
            }
        }
        let copy = self.bound("bulk_load's COPY", self.options.copy_timeout);
        let copy_map = map_err(backend, schema, copy);
        let lock_timeout = self.options.lock_timeout;
        let c = self.session.get().await?;
        let begun = async {
            run(c, "BEGIN").await?;
            set(c, &[("lock_timeout", ms(lock_timeout))], true).await
        };
        begun.await.mapped(&copy_map)?;
        self.copy().await?;
        self.commit(copy).await?;
        // The rows are stored: nothing below returns Err.
        self.report.rows = rows;
        for (index, memory) in rebuilds {
            self.rebuild_concurrently(&index, memory).await;
        }
        Ok(())
    }

    fn memory_for(&self, index: &VectorIndex, rows: u64, server: u64) -> Result<MemoryPlan> {
        let needed = plan::graph_bytes(index, rows, self.sizes.of(index));
        let memory = plan::plan_memory(self.options.memory(), needed, server, &index.name, rows)?;
        if memory.bytes < memory.needed {
            tracing::warn!(
                index = %index.name,
                memory_mib = memory.bytes >> 20,
                needed_mib = memory.needed >> 20,
                "bulk load: maintenance_work_mem below the estimate; the build will finish on disk",
            );
        }
        Ok(memory)
    }

    /// `COPY` of every row in the open transaction, the server's progress
    /// read alongside.
    async fn copy(&mut self) -> Result<()> {
        let schema = E::SCHEMA;
        let backend = self.repo.exec.backend();
        let bound = self.bound("bulk_load's COPY", self.options.copy_timeout);
        self.reporter.phase(LoadPhase::Copying, None);
        let started = Instant::now();
        let pid = self.session.pid;
        let c = self.session.get().await?;
        let timeout = set(c, &[("statement_timeout", ms(bound.statement))], true).await;
        timeout.mapped(&map_err(backend, schema, bound))?;
        let (columns, rows, fills) = (&self.columns, self.rows, &self.fills);
        let copied = async {
            let bounds = (backend.max_bind_bytes(), backend.clock());
            match copy::copy_in(c, columns, rows, fills, bounds).await {
                Ok(n) => {
                    c.settle(&Ok::<u64, sqlx::Error>(n));
                    Ok(n)
                }
                // A checked row cannot fail here unless to_values is not
                // deterministic; the COPY is aborted and nothing is kept.
                Err(CopyError::Input { error, .. }) => Err(error),
                Err(CopyError::Sql(error)) => {
                    let outcome = Err::<u64, _>(error);
                    c.settle(&outcome);
                    outcome.map_err(map_err(backend, schema, bound))
                }
            }
        };
        let poll = progress::poll(backend, &self.reporter, pid, Watch::Copy);
        let outcome = within(bound, progress::beside(copied, poll)).await;
        let copied = match outcome {
            Ok(copied) => copied?,
            Err(timeout) => {
                self.session.lose();
                return Err(timeout);
            }
        };
        self.reporter.copied(copied, true);
        self.report.copy_time += started.elapsed();
        Ok(())
    }

    /// `CREATE INDEX` (as the catalog defined it) inside the exclusive
    /// transaction, under a savepoint so a parallel build that cannot get
    /// its shared memory is retried without workers.
    async fn build_in_transaction(
        &mut self,
        index: &VectorIndex,
        memory: MemoryPlan,
    ) -> Result<()> {
        let schema = E::SCHEMA;
        let backend = self.repo.exec.backend();
        let bound = self.bound("bulk_load's index build", self.options.build_timeout);
        let map = map_err(backend, schema, bound);
        self.reporter.phase(LoadPhase::Building, Some(&index.name));
        let started = Instant::now();
        let mut workers = self.options.parallel_workers;
        loop {
            let c = self.session.get().await?;
            run(c, "SAVEPOINT reposmith_bulk_build")
                .await
                .mapped(&map)?;
            let effective = self.apply_build_settings(memory, workers, true).await?;
            let definition = index.definition.clone();
            match self.timed_build(&definition, bound).await? {
                Ok(()) => {
                    let c = self.session.get().await?;
                    run(c, "RELEASE SAVEPOINT reposmith_bulk_build")
                        .await
                        .mapped(&map)?;
                    self.record(index, IndexOutcome::Built, started, memory, effective);
                    return Ok(());
                }
                Err(error) if no_shared_memory(&error) && effective > 0 => {
                    tracing::warn!(index = %index.name, %error,
                        "bulk load: no shared memory for a parallel build; building without workers");
                    let c = self.session.get().await?;
                    run(c, "ROLLBACK TO SAVEPOINT reposmith_bulk_build")
                        .await
                        .mapped(&map)?;
                    workers = Some(0);
                }
                Err(error) => return Err(map(error)),
            }
        }
    }

    /// `REINDEX INDEX CONCURRENTLY` on the load's session (outside any
    /// transaction). A failure is reported, never returned: the rows are
    /// stored and the old index still serves searches; the copy it leaves
    /// is dropped here when possible, else by the next load or repair.
    async fn rebuild_concurrently(&mut self, index: &VectorIndex, memory: MemoryPlan) {
        let started = Instant::now();
        self.reporter.phase(LoadPhase::Building, Some(&index.name));
        let mut workers = self.options.parallel_workers;
        let result = loop {
            match self.rebuild_once(index, memory, workers).await {
                Ok(effective) => break Ok(effective),
                Err(Retry::Serially(error)) if workers != Some(0) => {
                    tracing::warn!(index = %index.name, %error,
                        "bulk load: no shared memory for a parallel rebuild; rebuilding without workers");
                    self.drop_leftovers_of(index).await;
                    workers = Some(0);
                }
                Err(Retry::Serially(error) | Retry::Failed(error)) => break Err(error),
            }
        };
        match result {
            Ok(effective) => self.record(index, IndexOutcome::Rebuilt, started, memory, effective),
            Err(error) => {
                self.problem(format!("rebuild {}", index.name), error);
                self.drop_leftovers_of(index).await;
                self.record(index, IndexOutcome::RebuildFailed, started, memory, 0);
            }
        }
    }

    async fn rebuild_once(
        &mut self,
        index: &VectorIndex,
        memory: MemoryPlan,
        workers: Option<u32>,
    ) -> std::result::Result<u32, Retry> {
        let schema = E::SCHEMA;
        let bound = self.bound("bulk_load's concurrent rebuild", self.options.build_timeout);
        let map = map_err(self.repo.exec.backend(), schema, bound);
        let effective = self
            .apply_build_settings(memory, workers, false)
            .await
            .map_err(Retry::Failed)?;
        let sql = format!("REINDEX INDEX CONCURRENTLY {}", index.target);
        match self.timed_build(&sql, bound).await {
            Ok(Ok(())) => Ok(effective),
            Ok(Err(error)) if no_shared_memory(&error) && effective > 0 => {
                Err(Retry::Serially(map(error)))
            }
            Ok(Err(error)) => Err(Retry::Failed(map(error))),
            Err(error) => Err(Retry::Failed(error)),
        }
    }

    /// Sets `maintenance_work_mem`, the workers and the build's timeouts
    /// (transaction-local when `local`); returns the workers in effect.
    async fn apply_build_settings(
        &mut self,
        memory: MemoryPlan,
        workers: Option<u32>,
        local: bool,
    ) -> Result<u32> {
        let repo = self.repo;
        let bound = self.bound(
            "bulk_load's index build settings",
            self.options.lock_timeout,
        );
        let map = map_err(repo.exec.backend(), E::SCHEMA, bound);
        let build = ms(self.options.build_timeout);
        let mut settings = vec![
            ("maintenance_work_mem", format!("{}kB", memory.bytes / 1024)),
            ("statement_timeout", build.clone()),
        ];
        if !local {
            // A concurrent build's waits for older transactions block nobody.
            settings.push(("lock_timeout", build));
        }
        if let Some(workers) = workers {
            settings.push(("max_parallel_maintenance_workers", workers.to_string()));
        }
        let c = self.session.get().await?;
        set(c, &settings, local).await.mapped(&map)?;
        let effective = sqlx::query_scalar::<_, String>(
            "SELECT current_setting('max_parallel_maintenance_workers')",
        )
        .fetch_one(&mut **c)
        .await;
        c.settle(&effective);
        Ok(effective.mapped(&map)?.parse().unwrap_or(0))
    }

    /// Runs a build statement with the progress poller beside it. The
    /// outer `Err` is the client's deadline (the connection is then lost),
    /// the inner one the server's answer.
    async fn timed_build(&mut self, sql: &str, bound: Bound) -> Result<sqlx::Result<()>> {
        let backend = self.repo.exec.backend();
        let pid = self.session.pid;
        let c = self.session.get().await?;
        let poll = progress::poll(backend, &self.reporter, pid, Watch::Build);
        let outcome = within(bound, progress::beside(run(c, sql), poll)).await;
        self.session.settle(outcome)
    }

    fn record(
        &mut self,
        index: &VectorIndex,
        outcome: IndexOutcome,
        started: Instant,
        memory: MemoryPlan,
        workers: u32,
    ) {
        let time = started.elapsed();
        self.report.build_time += time;
        self.done.insert(
            index.name.clone(),
            Done {
                outcome,
                time,
                memory,
                workers,
                workers_seen: self.reporter.workers_seen(),
            },
        );
    }

    fn problem(&mut self, step: String, error: Error) {
        tracing::warn!(target: "reposmith::bulk_load", %step, %error, "bulk load step failed; the rows are stored");
        self.report.problems.push(LoadProblem { step, error });
    }

    /// True while another session builds an index on the table (its index
    /// is INVALID until it finishes: not a leftover).
    async fn build_in_progress(&mut self) -> Result<bool> {
        let backend = self.repo.exec.backend();
        let map = map_err(backend, E::SCHEMA, plain(&self.options));
        let c = self.session.get().await?;
        let busy = build_in_progress(c, E::SCHEMA).await;
        busy.mapped(&map)
    }

    async fn drop_concurrently(&mut self, index: &VectorIndex) -> Result<()> {
        let bound = self.bound(
            "bulk_load's DROP INDEX CONCURRENTLY",
            self.options.build_timeout,
        );
        let map = map_err(self.repo.exec.backend(), E::SCHEMA, bound);
        let c = self.session.get().await?;
        let settings = [
            ("statement_timeout", ms(bound.statement)),
            ("lock_timeout", ms(bound.statement)),
        ];
        let dropped = within(bound, async {
            set(c, &settings, false).await?;
            run(
                c,
                &format!("DROP INDEX CONCURRENTLY IF EXISTS {}", index.target),
            )
            .await
        })
        .await;
        self.session.settle(dropped)?.mapped(&map)
    }

    /// Drops the INVALID `_ccnew`/`_ccold` copies of `index` a failed
    /// concurrent rebuild left; what cannot be dropped now, the next load
    /// or `repair_indexes` drops.
    async fn drop_leftovers_of(&mut self, index: &VectorIndex) {
        let schema = E::SCHEMA;
        let found = async {
            let c = self.session.get().await?;
            let indexes = plan::vector_indexes(c, schema).await;
            c.settle(&indexes);
            indexes.map_err(|e| self.backend().map_error(e))
        };
        let Ok(indexes) = found.await else { return };
        for leftover in indexes
            .iter()
            .filter(|i| i.is_leftover() && i.name.starts_with(&index.name))
        {
            if let Err(error) = self.drop_concurrently(leftover).await {
                tracing::warn!(index = %leftover.name, %error, "bulk load: leftover of a failed rebuild not dropped");
            } else {
                self.report.repaired.push(IndexRepair {
                    index: leftover.name.clone(),
                    action: RepairAction::DroppedLeftover,
                });
            }
        }
    }

    /// `ANALYZE` so the planner sees the new size; a failure is reported.
    async fn analyze(&mut self) {
        if !self.options.analyze {
            return;
        }
        self.reporter.phase(LoadPhase::Analyzing, None);
        let started = Instant::now();
        let bound = self.bound("bulk_load's ANALYZE", self.options.build_timeout);
        let map = map_err(self.repo.exec.backend(), E::SCHEMA, bound);
        let settings = [
            ("statement_timeout", ms(bound.statement)),
            ("lock_timeout", ms(self.options.lock_timeout)),
        ];
        let sql = format!("ANALYZE {}", table_name(E::SCHEMA));
        let analyzed = match self.session.get().await {
            Ok(c) => {
                let outcome = within(bound, async {
                    set(c, &settings, false).await?;
                    run(c, &sql).await
                })
                .await;
                self.session
                    .settle(outcome)
                    .and_then(|result| result.mapped(&map))
            }
            Err(error) => Err(error),
        };
        if let Err(error) = analyzed {
            self.problem("analyze".to_owned(), error);
        }
        self.report.analyze_time = started.elapsed();
    }

    /// The report, with every vector index's state read back from the catalog.
    async fn finish(mut self) -> LoadReport {
        let schema = E::SCHEMA;
        let read = async {
            let c = self.session.get().await?;
            let indexes = within(plain(&self.options), plan::vector_indexes(c, schema)).await?;
            c.settle(&indexes);
            indexes.map_err(|e| self.backend().map_error(e))
        };
        let indexes = match read.await {
            Ok(indexes) => indexes,
            Err(error) => {
                self.problem("read the indexes back".to_owned(), error);
                Vec::new()
            }
        };
        self.report.indexes = indexes
            .into_iter()
            .map(|index| {
                let done = self.done.get(&index.name);
                IndexReport {
                    outcome: done.map_or(IndexOutcome::Kept, |d| d.outcome),
                    build_time: done.map_or(Duration::ZERO, |d| d.time),
                    memory: done.map_or(0, |d| d.memory.bytes),
                    memory_needed: done.map_or(0, |d| d.memory.needed),
                    parallel_workers: done.map_or(0, |d| d.workers),
                    workers_seen: done.map_or(0, |d| d.workers_seen),
                    valid: index.valid,
                    method: index.method,
                    name: index.name,
                }
            })
            .collect();
        self.reporter.phase(LoadPhase::Done, None);
        self.report.total_time = self.reporter.started().elapsed();
        self.report
    }
}

/// Whether an online load rebuilds a valid `index` under `rebuild`, the
/// load being `large` (at least [`REBUILD_SHARE`] of the table after it).
/// Under [`Rebuild::Auto`] only IVFFlat is: its lists were computed from
/// the rows of its last build (none, for an index `create_tables` made on
/// an empty table) and rows walked in do not move them. An HNSW graph grown
/// by inserts is the same algorithm as a build's and measured no worse
/// (recall@10 at ef_search 100 over 50k × 768 halfvec: 0.967–0.989 after
/// walking the rows in, 0.963–0.989 after builds; `cargo xtask bench ingest`),
/// so rebuilding it would cost a build of the whole table for nothing.
fn rebuild_wanted(rebuild: Rebuild, index: &VectorIndex, large: bool) -> bool {
    match rebuild {
        Rebuild::Always => true,
        Rebuild::Never => false,
        _ => large && index.method == "ivfflat",
    }
}

/// Why one concurrent rebuild attempt failed.
enum Retry {
    /// A parallel build without shared memory: worth a serial attempt.
    Serially(Error),
    Failed(Error),
}

fn no_shared_memory(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|c| NO_SHARED_MEMORY.contains(&&*c)))
}

/// An ERROR: the statement failed, the session is fine.
fn is_server_error(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.try_downcast_ref::<PgDatabaseError>().is_some_and(|e| matches!(e.severity(), PgSeverity::Error)))
}

/// A failed COMMIT: a lost connection, FATAL or PANIC mean the outcome is
/// unknown; an ERROR means it rolled back (as `PgUnitOfWork::commit`).
fn commit_error(backend: &PgBackend, error: sqlx::Error) -> Error {
    let gone = match &error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<PgDatabaseError>()
            .is_some_and(|e| !matches!(e.severity(), PgSeverity::Error)),
        _ => false,
    };
    match gone {
        true => Error::CommitOutcomeUnknown {
            backend: Backend::Postgres,
            reason: format!(
                "the connection broke after the bulk load's COMMIT was sent: {}",
                backend.scrub(&error.to_string())
            ),
        },
        false => backend.map_error(error),
    }
}

async fn build_in_progress(c: &mut PooledConnection, schema: &EntitySchema) -> sqlx::Result<bool> {
    let outcome = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index \
                         WHERE relid = $1::regclass AND pid <> pg_backend_pid())",
    )
    .bind(table_name(schema))
    .fetch_one(&mut **c)
    .await;
    c.settle(&outcome);
    outcome
}

/// [`PgRepository::repair_indexes`](crate::PgRepository::repair_indexes).
pub(super) async fn repair<E: Entity>(
    backend: &PgBackend,
    options: &LoadOptions,
) -> Result<Vec<IndexRepair>> {
    let schema = E::SCHEMA;
    let mut session = Session::open(backend, options).await?;
    let bound = Bound {
        operation: "repair_indexes' concurrent rebuild",
        statement: options.build_timeout,
        lock: options.build_timeout,
    };
    let map = map_err(backend, schema, bound);
    let c = session.get().await?;
    if build_in_progress(c, schema).await.mapped(&map)? {
        tracing::debug!(
            table = schema.table,
            "repair_indexes: a build is in progress, nothing done"
        );
        return Ok(Vec::new());
    }
    let invalid = plan::invalid_indexes(c, schema).await;
    c.settle(&invalid);
    let invalid = invalid.mapped(&map)?;
    let settings = [
        ("statement_timeout", ms(bound.statement)),
        ("lock_timeout", ms(bound.statement)),
    ];
    set(c, &settings, false).await.mapped(&map)?;
    let mut repaired = Vec::new();
    for (name, target) in invalid {
        let (sql, action) = match plan::is_leftover_name(&name) {
            true => (
                format!("DROP INDEX CONCURRENTLY IF EXISTS {target}"),
                RepairAction::DroppedLeftover,
            ),
            false => (
                format!("REINDEX INDEX CONCURRENTLY {target}"),
                RepairAction::Rebuilt,
            ),
        };
        let c = session.get().await?;
        match within(bound, run(c, &sql)).await {
            Ok(result) => result.mapped(&map)?,
            Err(timeout) => {
                session.lose();
                return Err(timeout);
            }
        }
        tracing::info!(target: "reposmith::bulk_load", index = %name, ?action, "repaired an INVALID index");
        repaired.push(IndexRepair {
            index: name,
            action,
        });
    }
    Ok(repaired)
}

/// What a load plans from: the table's vector indexes, its rows now and the
/// server's `maintenance_work_mem`, each statement settled on `c`.
async fn survey(
    c: &mut PooledConnection,
    schema: &'static EntitySchema,
) -> sqlx::Result<(Vec<VectorIndex>, u64, u64)> {
    let indexes = plan::vector_indexes(c, schema).await;
    c.settle(&indexes);
    let before = plan::count_rows(c, schema).await;
    c.settle(&before);
    let server = plan::server_memory(c).await;
    c.settle(&server);
    Ok((indexes?, before?, server?))
}
