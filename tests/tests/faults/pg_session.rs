//! PostgreSQL sessions ended by the server: `pg_terminate_backend` on a
//! unit's connection before its COMMIT, and
//! `idle_in_transaction_session_timeout` ending a slow unit. Each ends with
//! a typed error, nothing written, no connection reused and the next unit
//! fine (promises 1 and 3 of the reliability list).

use std::time::{Duration, Instant};

use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{Error, PgBackend};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::{database_url, run_sql, unique_name};

/// A schema of its own and a backend whose sessions are named after it,
/// so `pg_stat_activity` shows this test's connections only.
struct Db {
    pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl Db {
    async fn new(extra_options: &str) -> Db {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("pgfault");
        run_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let options = format!("-c search_path={namespace} {extra_options}");
        let url = format!(
            "{url}{sep}options={}",
            options.trim().replace(' ', "%20").replace('=', "%3D")
        );
        let config = reposmith_tests::pg_config(url)
            .application_name(namespace.clone())
            .max_connections(reposmith_tests::pool_size(2));
        let pg = PgBackend::connect(&config).await.unwrap();
        pg.create_tables::<Doc>().await.unwrap();
        Db {
            pg,
            admin,
            namespace,
        }
    }

    /// This test's sessions whose state starts with `state` (so "idle in
    /// transaction" also counts "idle in transaction (aborted)").
    async fn sessions_in(&self, state: &str) -> Vec<i32> {
        let query = "SELECT pid FROM pg_stat_activity WHERE application_name = $1 \
                     AND state LIKE $2 || '%'";
        sqlx::query_scalar(query)
            .bind(&self.namespace)
            .bind(state)
            .fetch_all(self.admin.pool())
            .await
            .unwrap()
    }

    /// Rows in the table, read on the admin connection.
    async fn rows(&self) -> i64 {
        let query = format!("SELECT count(*) FROM \"{}\".docs", self.namespace);
        sqlx::query_scalar(AssertSqlSafe(query))
            .fetch_one(self.admin.pool())
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        self.pg.close().await;
        run_sql(
            &self.admin,
            &format!("DROP SCHEMA \"{}\" CASCADE", self.namespace),
        )
        .await;
        self.admin.close().await;
    }
}

/// `pg_terminate_backend` on a unit's session after its insert, before its
/// COMMIT: the COMMIT fails typed (the server may not say whether it got
/// that far, so "outcome unknown" is an honest answer), the row is absent,
/// and the next unit on the same backend commits.
#[tokio::test]
async fn a_unit_whose_session_is_terminated_before_commit_writes_nothing() {
    let db = Db::new("").await;
    let uow = db.pg.begin().await.unwrap();
    uow.repo::<Doc>().insert(&Doc::new("doomed")).await.unwrap();
    let pids = db.sessions_in("idle in transaction").await;
    assert_eq!(pids.len(), 1, "{pids:?}");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pids[0])
        .fetch_one(db.admin.pool())
        .await
        .unwrap();
    assert!(killed);
    let err = uow.commit().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::CommitOutcomeUnknown { .. } | Error::ConnectionLost { .. }
        ),
        "{err:?}"
    );
    assert_eq!(db.rows().await, 0, "a terminated unit wrote");
    let next = db.pg.begin().await.unwrap();
    next.repo::<Doc>().insert(&Doc::new("next")).await.unwrap();
    next.commit().await.unwrap();
    assert_eq!(db.pg.repo::<Doc>().count(Filter::all()).await.unwrap(), 1);
    eprintln!("terminated before COMMIT: {err}; 0 rows written; the next unit committed");
    db.cleanup().await;
}

/// A unit idle in its transaction longer than the server's
/// `idle_in_transaction_session_timeout` is ended by the server: its next
/// statement or COMMIT fails with `ConnectionLost` (the server ends only
/// an idle transaction, so nothing was committed), its row is absent, its
/// connection is not reused, and the next unit commits.
#[tokio::test]
async fn a_unit_ended_by_idle_in_transaction_timeout_is_lost_not_committed() {
    let db = Db::new("-c idle_in_transaction_session_timeout=300").await;
    for ends_at_commit in [true, false] {
        let uow = db.pg.begin().await.unwrap();
        uow.repo::<Doc>().insert(&Doc::new("slow")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let started = Instant::now();
        let err = match ends_at_commit {
            true => uow.commit().await.unwrap_err(),
            false => {
                let err = uow.repo::<Doc>().count(Filter::all()).await.unwrap_err();
                drop(uow);
                err
            }
        };
        assert!(matches!(err, Error::ConnectionLost { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(db.rows().await, 0);
        eprintln!("idle-in-transaction timeout (at commit: {ends_at_commit}): {err}");
    }
    let next = db.pg.begin().await.unwrap();
    next.repo::<Doc>().insert(&Doc::new("next")).await.unwrap();
    next.commit().await.unwrap();
    assert_eq!(db.rows().await, 1);
    assert!(db.sessions_in("idle in transaction").await.is_empty());
    db.cleanup().await;
}
