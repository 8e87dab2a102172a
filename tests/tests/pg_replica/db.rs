//! A per-test schema on the primary, replicated, and a backend routing
//! reads to the replica; helpers to pause replay and to see which server
//! answered each read (the `reposmith.server` span field).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reposmith::PgBackend;
use reposmith::postgres::sqlx::{self, Connection, PgConnection};
use reposmith::postgres::{ReplicaConfig, WalPosition};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::pg_replica;
use reposmith_tests::{database_url, run_sql, unique_name, with_search_path};

/// The replica's URL (`cargo xtask test` starts it); a test that finds none
/// has returned before asking (see [`ReplicaDb::new`]).
pub(crate) fn replica_url() -> String {
    pg_replica::replica_url().expect("checked by ReplicaDb::new")
}

/// `url` with `search_path` set to `namespace` (then `public`, where
/// pgvector's types live) on every session.
pub(crate) fn in_schema(url: &str, namespace: &str) -> String {
    with_search_path(url, &format!("{namespace},public"))
}

/// A schema of its own on the primary with the `docs` table, and a backend
/// whose reads go to the replica.
pub(crate) struct ReplicaDb {
    pub(crate) pg: PgBackend,
    admin: PgBackend,
    pub(crate) namespace: String,
}

impl ReplicaDb {
    /// Replicas with a 100 ms probe, 1 GiB of lag allowed, and `tune`'s other settings.
    /// `None` (the test returns) only beside the user's own PostgreSQL,
    /// where no replica can exist; a replica that should run and does not
    /// is a panic saying how to start it.
    pub(crate) async fn new(
        tune: impl FnOnce(ReplicaConfig) -> ReplicaConfig,
    ) -> Option<ReplicaDb> {
        ReplicaDb::with_statement_timeout(Duration::from_secs(30), tune).await
    }

    /// [`ReplicaDb::new`] with sessions' `statement_timeout` at `timeout`.
    pub(crate) async fn with_statement_timeout(
        timeout: Duration,
        tune: impl FnOnce(ReplicaConfig) -> ReplicaConfig,
    ) -> Option<ReplicaDb> {
        pg_replica::required(pg_replica::REPLICA_URL)?;
        resume_replay().await;
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("pgreplica");
        run_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        // 1 GiB of lag allowed unless the test sets its own: while a test
        // holds replay paused, other tests' writes keep adding WAL (a
        // `#[reposmith::test]` database cloned from its template writes the
        // whole template to WAL), and the default 16 MiB skipped the frozen
        // replica the test meant to read.
        let replicas = ReplicaConfig::new([in_schema(&replica_url(), &namespace)])
            .probe_interval(Duration::from_millis(100))
            .max_lag(1 << 30);
        let config = reposmith_tests::pg_config(in_schema(&database_url(), &namespace))
            .application_name(namespace.clone())
            .statement_timeout(Some(timeout))
            .replicas(tune(replicas));
        let pg = PgBackend::connect(&config).await.unwrap();
        pg.create_tables::<Doc>().await.unwrap();
        let db = ReplicaDb {
            pg,
            admin,
            namespace,
        };
        db.caught_up().await;
        Some(db)
    }

    /// A connection of its own to the primary (to hold a transaction open).
    pub(crate) async fn primary_connection(&self) -> PgConnection {
        PgConnection::connect(&database_url()).await.unwrap()
    }

    /// Runs `statement` on the primary.
    pub(crate) async fn primary_sql(&self, statement: &str) {
        run_sql(&self.admin, statement).await;
    }

    /// Waits until the replica has replayed every commit so far (10 s at most).
    pub(crate) async fn caught_up(&self) {
        let target = self.pg.committed_position().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while replica_replayed().await < target {
            assert!(Instant::now() < deadline, "the replica never caught up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the router's view of the replica says `serving` (10 s at most).
    pub(crate) async fn until_serving(&self, serving: bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pg.replicas()[0].serving != serving {
            assert!(
                Instant::now() < deadline,
                "replica never became serving={serving}: {:?}",
                self.pg.replicas()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn cleanup(self) {
        resume_replay().await;
        self.pg.close().await;
        run_sql(
            &self.admin,
            &format!("DROP SCHEMA \"{}\" CASCADE", self.namespace),
        )
        .await;
        self.admin.close().await;
    }
}

/// A direct connection to the replica (superuser: it may pause replay).
pub(crate) async fn replica_connection() -> PgConnection {
    PgConnection::connect(&replica_url()).await.unwrap()
}

/// The replica's replay position now.
pub(crate) async fn replica_replayed() -> WalPosition {
    let mut c = replica_connection().await;
    let text: String = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(&mut c)
        .await
        .unwrap();
    text.parse().unwrap()
}

/// Stops applying WAL on the replica: it keeps answering, frozen in time.
pub(crate) async fn pause_replay() {
    let mut c = replica_connection().await;
    sqlx::raw_sql("SELECT pg_wal_replay_pause()")
        .execute(&mut c)
        .await
        .unwrap();
}

/// Applies WAL again (also the state every test starts from).
pub(crate) async fn resume_replay() {
    let mut c = replica_connection().await;
    sqlx::raw_sql("SELECT pg_wal_replay_resume()")
        .execute(&mut c)
        .await
        .unwrap();
}

/// The `reposmith.server` and `reposmith.fallback` values recorded on
/// `reposmith.query` spans, in order.
#[derive(Clone, Default)]
pub(crate) struct Servers(Arc<Mutex<Vec<(String, String)>>>);

impl Servers {
    /// Installs the recorder for the current thread until the guard drops.
    pub(crate) fn record() -> (Servers, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt;
        let servers = Servers::default();
        let subscriber = tracing_subscriber::registry().with(servers.clone());
        (servers, tracing::subscriber::set_default(subscriber))
    }

    /// Every (field, value) seen since the last call, then forgets them.
    pub(crate) fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// The servers that answered since the last call.
    pub(crate) fn answered(&self) -> Vec<String> {
        self.take()
            .into_iter()
            .filter(|(field, _)| field == "reposmith.server")
            .map(|(_, value)| value)
            .collect()
    }
}

impl tracing::field::Visit for Servers {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name().starts_with("reposmith.") {
            let entry = (field.name().to_owned(), value.to_owned());
            self.0.lock().unwrap().push(entry);
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Servers {
    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut self.clone());
    }
}
