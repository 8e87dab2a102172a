//! Tenancy behind PgBouncer in transaction mode (`PoolerMode::Transaction`,
//! `REPOSMITH_TEST_PGBOUNCER_URL`), where the tenant is set with
//! `set_config('reposmith.tenant', .., true)` after each `BEGIN`: every
//! tenancy path; two tenants' interleaved concurrent reads through an
//! application role under row-level security (no foreign row, ever);
//! concurrent units of work per tenant; and no tenant setting outliving its
//! transaction on the server connection that ran it.
//!
//! Where PgBouncer cannot run (the user's own PostgreSQL), the fixture runs
//! Transaction mode against PostgreSQL directly, which must be correct too.

use std::collections::HashSet;
use std::sync::Arc;

use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::postgres::{PoolerMode, sqlx::Row};
use reposmith::prelude::*;
use reposmith::{PgBackend, PgConfig};
use reposmith_tests::pg_replica::{self, PGBOUNCER_URL};
use reposmith_tests::{database_url, run_sql, unique_name};

use super::Passage;
use super::paths::{TenantFixture, tenancy_tests};

/// PgBouncer's URL, or PostgreSQL's where PgBouncer cannot run.
fn server_url() -> String {
    pg_replica::required(PGBOUNCER_URL).unwrap_or_else(database_url)
}

/// `url` replaying `settings` (`name=value`, no spaces) in every
/// transaction through the URL's `options`.
fn with_options(url: &str, settings: &[String]) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let options: Vec<String> = settings
        .iter()
        .map(|s| format!("-c%20{}", s.replace('=', "%3D").replace(',', "%2C")))
        .collect();
    format!("{url}{sep}options={}", options.join("%20"))
}

/// A schema of its own with the passages table, reached through PgBouncer
/// in Transaction mode; created and dropped on a direct backend.
pub(crate) struct PoolerTenancy {
    pg: PgBackend,
    admin: PgBackend,
    namespace: String,
}

impl PoolerTenancy {
    async fn with(change: impl FnOnce(PgConfig) -> PgConfig) -> PoolerTenancy {
        let admin = PgBackend::connect(&PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name("tenantpool");
        run_sql(&admin, &format!("CREATE SCHEMA \"{namespace}\"")).await;
        let url = with_options(&server_url(), &[format!("search_path={namespace},public")]);
        let config = reposmith_tests::pg_config(url).pooler(PoolerMode::Transaction);
        let pg = PgBackend::connect(&change(config)).await.unwrap();
        pg.create_tables::<Passage>().await.unwrap();
        PoolerTenancy {
            pg,
            admin,
            namespace,
        }
    }
}

impl TenantFixture for PoolerTenancy {
    type Store = PgBackend;

    async fn setup() -> Self {
        PoolerTenancy::with(|config| config).await
    }

    fn unscoped(&self) -> PgBackend {
        self.pg.clone()
    }

    fn tenant(&self, tenant: &str) -> PgBackend {
        self.pg.for_tenant(tenant).unwrap()
    }

    async fn teardown(self) {
        self.pg.close().await;
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.namespace);
        run_sql(&self.admin, &drop).await;
        self.admin.close().await;
    }
}

tenancy_tests!(PoolerTenancy;
    reads, vector_search, text_and_hybrid_search, writes, deletes, units, without_a_tenant,
    partial_updates,
);

/// Two tenants × 500 reads, interleaved over 8 tasks through PgBouncer,
/// on an application role without BYPASSRLS (PgBouncer knows one user, so
/// the role is taken per transaction: `-c role=..` in the URL's `options`,
/// replayed after each `BEGIN` with the tenant). Every read — get of an own
/// row, get of a foreign one, find, count, and raw SQL in a unit — sees
/// only its tenant's rows; the owner sees both.
#[tokio::test]
async fn interleaved_tenants_through_pgbouncer_under_rls_never_see_a_foreign_row() {
    const ROWS: usize = 20;
    const READS: usize = 500;
    let role = unique_name("rs_pool_app");
    let fx = PoolerTenancy::with(|c| c.max_connections(8)).await;
    // Test-made names only: no user value reaches this SQL.
    let grant = format!(
        "CREATE ROLE \"{role}\" NOLOGIN NOBYPASSRLS; \
         GRANT USAGE ON SCHEMA \"{ns}\" TO \"{role}\"; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{ns}\" TO \"{role}\"",
        ns = fx.namespace
    );
    run_sql(&fx.admin, &grant).await;
    let url = with_options(
        &server_url(),
        &[
            format!("search_path={},public", fx.namespace),
            format!("role={role}"),
        ],
    );
    let app = PgBackend::connect(
        &reposmith_tests::pg_config(url)
            .pooler(PoolerMode::Transaction)
            .max_connections(8),
    )
    .await
    .unwrap();
    let tenants = ["acme", "globex"];
    let mut ids = Vec::new();
    for tenant in tenants {
        let repo = app.for_tenant(tenant).unwrap().repo::<Passage>();
        let rows: Vec<Passage> = (0..ROWS)
            .map(|i| Passage::new(&format!("{tenant}-{i}"), i as f32))
            .collect();
        assert_eq!(repo.insert_many(&rows).await.unwrap(), ROWS as u64);
        let stored = repo.find(Filter::all()).await.unwrap();
        ids.push(stored.iter().map(|p| p.id).collect::<Vec<_>>());
    }
    let ids = Arc::new(ids);
    let tasks = (0..8).map(|task| {
        let (app, ids) = (app.clone(), Arc::clone(&ids));
        tokio::spawn(async move {
            let mut foreign = 0_usize;
            let mut reads = 0_usize;
            for n in (task..2 * READS).step_by(8) {
                let (mine, other) = (n % 2, 1 - n % 2);
                let handle = app.for_tenant(tenants[mine]).unwrap();
                let repo = handle.repo::<Passage>();
                let own = ids[mine][n % ROWS];
                let found = match n / 2 % 4 {
                    0 => repo.get(&own).await.unwrap().into_iter().collect(),
                    1 => repo
                        .get(&ids[other][n % ROWS])
                        .await
                        .unwrap()
                        .into_iter()
                        .collect(),
                    2 => repo.find(Filter::all()).await.unwrap(),
                    _ => {
                        let count = repo.count(Filter::all()).await.unwrap();
                        assert_eq!(count, ROWS as u64, "{} counted", tenants[mine]);
                        Vec::new()
                    }
                };
                foreign += found.iter().filter(|p| p.org != tenants[mine]).count();
                reads += 1;
            }
            (reads, foreign)
        })
    });
    let (mut reads, mut foreign) = (0, 0);
    for task in tasks {
        let (r, f) = task.await.unwrap();
        reads += r;
        foreign += f;
    }
    assert_eq!(reads, 2 * READS);
    assert_eq!(foreign, 0, "rows of the other tenant returned");
    // The role really is restricted: raw SQL through PgBouncer in a
    // transaction taking the role sees the tenant's rows, none without a
    // tenant; the owner sees both.
    for (tenant, rows) in [("acme", ROWS as i64), ("", 0)] {
        assert_eq!(
            raw_count(&app, &fx.namespace, &role, tenant).await,
            rows,
            "tenant {tenant:?}"
        );
    }
    let owner_count = format!("SELECT count(*) FROM \"{}\".tenant_passages", fx.namespace);
    let all: i64 = sqlx::query_scalar(AssertSqlSafe(owner_count))
        .fetch_one(fx.admin.pool())
        .await
        .unwrap();
    assert_eq!(all, 2 * ROWS as i64);
    app.close().await;
    fx.teardown().await;
    let drop_role = format!("DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\"");
    let admin = PgBackend::connect(&PgConfig::new(database_url()))
        .await
        .unwrap();
    run_sql(&admin, &drop_role).await;
    admin.close().await;
}

/// `count(*)` of the passages in one raw transaction through `app`'s pool
/// as `role` (in `schema`), with the tenant setting `tenant` (local to the transaction).
async fn raw_count(app: &PgBackend, schema: &str, role: &str, tenant: &str) -> i64 {
    let mut raw = app.acquire().await.unwrap();
    let mut count = 0;
    let path = format!("{schema},public");
    for (n, sql) in [
        "BEGIN",
        "SELECT set_config('role', $1, true)",
        "SELECT set_config('reposmith.tenant', $1, true)",
        "SELECT set_config('search_path', $1, true)",
        "SELECT count(*)::text FROM tenant_passages",
        "COMMIT",
    ]
    .into_iter()
    .enumerate()
    {
        let query = sqlx::query(sql);
        let query = match n {
            1 => query.bind(role),
            2 => query.bind(tenant),
            3 => query.bind(&path),
            _ => query,
        };
        let row = query.fetch_optional(&mut *raw).await;
        raw.settle(&row);
        if let Some(row) = row.unwrap().filter(|_| n == 4) {
            count = row.get::<String, _>(0).parse().unwrap();
        }
    }
    count
}

/// Units of work of two tenants at once through PgBouncer: each inserts
/// and counts inside its own transaction and sees its tenant's rows only;
/// rolled-back units leave nothing; nested units keep the tenant.
#[tokio::test]
async fn concurrent_units_of_work_per_tenant_through_pgbouncer() {
    const UNITS: usize = 40;
    let fx = PoolerTenancy::with(|c| c.max_connections(8)).await;
    let tasks = (0..UNITS).map(|n| {
        let tenant = ["acme", "globex"][n % 2];
        let handle = fx.pg.for_tenant(tenant).unwrap();
        tokio::spawn(async move {
            let unit = handle.begin().await.unwrap();
            let repo = unit.repo::<Passage>();
            let stored = repo.insert(&Passage::new("unit", 1.0)).await.unwrap();
            assert_eq!(stored.org, tenant);
            let nested = unit.nested().await.unwrap();
            let seen = nested.repo::<Passage>().find(Filter::all()).await.unwrap();
            assert!(
                seen.iter().all(|p| p.org == tenant),
                "{tenant} saw {seen:?}"
            );
            nested.commit().await.unwrap();
            if n % 4 < 2 {
                unit.commit().await.unwrap();
            } else {
                unit.rollback().await.unwrap();
            }
        })
    });
    for task in tasks.collect::<Vec<_>>() {
        task.await.unwrap();
    }
    for tenant in ["acme", "globex"] {
        let repo = fx.pg.for_tenant(tenant).unwrap().repo::<Passage>();
        let rows = repo.find(Filter::all()).await.unwrap();
        assert_eq!(rows.len(), UNITS / 4, "{tenant}: committed units only");
        assert!(rows.iter().all(|p| p.org == tenant));
    }
    fx.teardown().await;
}

/// No tenant setting outlives its transaction: a trigger logs, for every
/// tenant insert, the server connection (`pg_backend_pid()`) and the
/// setting it saw; raw statements on the same pool, outside any
/// transaction of reposmith's, then read the setting on their server
/// connection. Every insert saw its tenant; every raw read saw none, also
/// on server connections that had just carried a tenant (checked: the two
/// sets of connections overlap).
#[tokio::test]
async fn no_tenant_setting_outlives_its_transaction_behind_pgbouncer() {
    const ROUNDS: usize = 100;
    let fx = PoolerTenancy::with(|c| c.max_connections(1)).await;
    let log = format!(
        "CREATE TABLE \"{ns}\".tenant_log (pid int, tenant text); \
         CREATE FUNCTION \"{ns}\".log_tenant() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           INSERT INTO \"{ns}\".tenant_log \
             VALUES (pg_backend_pid(), current_setting('reposmith.tenant', true)); \
           RETURN NEW; END $$; \
         CREATE TRIGGER log_tenant AFTER INSERT ON \"{ns}\".tenant_passages \
           FOR EACH ROW EXECUTE FUNCTION \"{ns}\".log_tenant()",
        ns = fx.namespace
    );
    run_sql(&fx.admin, &log).await;
    let mut raw_pids = HashSet::new();
    for n in 0..ROUNDS {
        let tenant = ["acme", "globex"][n % 2];
        let handle = fx.pg.for_tenant(tenant).unwrap();
        if n % 3 == 0 {
            let unit = handle.begin().await.unwrap();
            unit.repo::<Passage>()
                .insert(&Passage::new("u", 1.0))
                .await
                .unwrap();
            unit.commit().await.unwrap();
        } else {
            handle
                .repo::<Passage>()
                .insert(&Passage::new("p", 1.0))
                .await
                .unwrap();
        }
        let mut raw = fx.pg.acquire().await.unwrap();
        let row = sqlx::query(
            "SELECT pg_backend_pid(), coalesce(current_setting('reposmith.tenant', true), '')",
        )
        .fetch_one(&mut *raw)
        .await;
        raw.settle(&row);
        let row = row.unwrap();
        let setting: String = row.get(1);
        assert_eq!(
            setting, "",
            "round {n}: {tenant}'s setting outlived its transaction"
        );
        raw_pids.insert(row.get::<i32, _>(0));
    }
    let logged = format!("SELECT pid, tenant FROM \"{}\".tenant_log", fx.namespace);
    let rows = sqlx::query(AssertSqlSafe(logged))
        .fetch_all(fx.admin.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), ROUNDS);
    let mut tenant_pids = HashSet::new();
    for row in &rows {
        let tenant: Option<String> = row.get(1);
        assert!(
            matches!(tenant.as_deref(), Some("acme" | "globex")),
            "an insert ran without its tenant: {tenant:?}"
        );
        tenant_pids.insert(row.get::<i32, _>(0));
    }
    assert!(
        !tenant_pids.is_disjoint(&raw_pids),
        "the raw reads never met a server connection that carried a tenant: \
         {tenant_pids:?} vs {raw_pids:?}"
    );
    fx.teardown().await;
}
