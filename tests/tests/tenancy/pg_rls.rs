//! PostgreSQL row-level security on a tenant-scoped table: the DDL enables
//! it with a policy on `reposmith.tenant`; an application role without
//! BYPASSRLS sees one tenant through raw SQL, no rows without a tenant, and
//! cannot write into another tenant; the owner (the migration role) sees
//! every row. Repositories on the application role work through the
//! policy: the session (Direct mode) or the transaction (units, pooler
//! mode) carries the tenant.

use reposmith::postgres::sqlx::{self, Row};
use reposmith::prelude::*;
use reposmith::{PgBackend, PgConfig};
use reposmith_tests::{
    database_url, pg_config, run_sql, unique_name, with_credentials, with_search_path,
};

use super::Passage;

/// The owner's backend, the application role's, and what to drop.
struct Roles {
    owner: PgBackend,
    app: PgBackend,
    role: String,
    schema: String,
}

async fn setup() -> Roles {
    let owner_root = PgBackend::connect(&pg_config(database_url()))
        .await
        .unwrap();
    let role = unique_name("rs_tenant_app");
    let schema = unique_name("rs_rls");
    let password = unique_name("pw");
    // Test-made names and password: no user value reaches this SQL.
    run_sql(
        &owner_root,
        &format!(
            "CREATE ROLE \"{role}\" LOGIN NOBYPASSRLS PASSWORD '{password}'; \
             CREATE SCHEMA \"{schema}\"; \
             GRANT USAGE ON SCHEMA \"{schema}\" TO \"{role}\""
        ),
    )
    .await;
    owner_root.close().await;
    let base = with_search_path(&database_url(), &format!("{schema},public"));
    let owner = PgBackend::connect(&pg_config(base.clone())).await.unwrap();
    owner.create_tables::<Passage>().await.unwrap();
    run_sql(
        &owner,
        &format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO \"{role}\""),
    )
    .await;
    let app = PgBackend::connect(&PgConfig::new(with_credentials(&base, &role, &password)))
        .await
        .unwrap();
    Roles {
        owner,
        app,
        role,
        schema,
    }
}

impl Roles {
    async fn teardown(self) {
        self.app.close().await;
        run_sql(
            &self.owner,
            &format!(
                "DROP SCHEMA \"{}\" CASCADE; DROP OWNED BY \"{}\"; DROP ROLE \"{}\"",
                self.schema, self.role, self.role
            ),
        )
        .await;
        self.owner.close().await;
    }
}

/// `SELECT org FROM tenant_passages` on `connection`, as raw SQL.
async fn orgs(connection: &mut sqlx::PgConnection) -> Vec<String> {
    let rows = sqlx::query("SELECT org FROM tenant_passages ORDER BY org")
        .fetch_all(connection)
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<String, _>(0)).collect()
}

#[tokio::test]
async fn row_level_security_shows_the_app_role_one_tenant_and_the_owner_all() {
    let roles = setup().await;
    // Through repositories on the application role: the policy's WITH
    // CHECK passes because the session carries the tenant.
    let acme = roles.app.for_tenant("acme").unwrap().repo::<Passage>();
    let globex = roles.app.for_tenant("globex").unwrap().repo::<Passage>();
    acme.insert(&Passage::new("a", 1.0)).await.unwrap();
    let canary = globex.insert(&Passage::new("canary", 2.0)).await.unwrap();
    assert_eq!(acme.count(Filter::all()).await.unwrap(), 1);
    assert_eq!(globex.count(Filter::all()).await.unwrap(), 1);
    // In units too (and after a unit, the pooled session is still right).
    let unit = roles.app.for_tenant("acme").unwrap().begin().await.unwrap();
    unit.repo::<Passage>()
        .insert(&Passage::new("b", 3.0))
        .await
        .unwrap();
    assert_eq!(
        unit.repo::<Passage>().count(Filter::all()).await.unwrap(),
        2
    );
    unit.commit().await.unwrap();
    assert_eq!(globex.count(Filter::all()).await.unwrap(), 1);

    // Raw SQL through the application role, tenant acme set: no canary.
    let mut raw = roles.app.acquire().await.unwrap();
    sqlx::query("SELECT set_config('reposmith.tenant', $1, false)")
        .bind("acme")
        .execute(&mut *raw)
        .await
        .unwrap();
    assert_eq!(orgs(&mut raw).await, ["acme", "acme"]);
    // Writing into another tenant is refused by WITH CHECK.
    let hijack = sqlx::query("UPDATE tenant_passages SET org = 'globex' WHERE org = 'acme'")
        .execute(&mut *raw)
        .await;
    assert!(hijack.is_err(), "WITH CHECK refuses moving a row out");
    let deleted = sqlx::query("DELETE FROM tenant_passages WHERE id = $1")
        .bind(canary.id)
        .execute(&mut *raw)
        .await
        .unwrap();
    assert_eq!(
        deleted.rows_affected(),
        0,
        "the canary is invisible to DELETE"
    );
    raw.discard();
    drop(raw);

    // No tenant set (a fresh raw connection, and one reset to ''): nothing,
    // and no error.
    let mut raw = roles.app.acquire().await.unwrap();
    assert!(orgs(&mut raw).await.is_empty());
    sqlx::query("SELECT set_config('reposmith.tenant', '', false)")
        .execute(&mut *raw)
        .await
        .unwrap();
    assert!(orgs(&mut raw).await.is_empty());
    drop(raw);
    // A raw connection that served a tenant's repository comes back reset.
    for _ in 0..4 {
        acme.count(Filter::all()).await.unwrap();
        let mut raw = roles.app.acquire().await.unwrap();
        assert!(
            orgs(&mut raw).await.is_empty(),
            "acquire() reset the tenant"
        );
    }

    // The owner (migration role) bypasses the policy: every row.
    let mut owner = roles.owner.acquire().await.unwrap();
    assert_eq!(orgs(&mut owner).await, ["acme", "acme", "globex"]);
    drop(owner);
    roles.teardown().await;
}

/// The DDL: RLS enabled (not forced) and the policy on the setting.
#[tokio::test]
async fn the_ddl_enables_row_level_security_with_the_tenant_policy() {
    let roles = setup().await;
    let row = sqlx::query(
        "SELECT c.relrowsecurity, c.relforcerowsecurity, p.qual, p.with_check \
         FROM pg_class c JOIN pg_policies p ON p.tablename = c.relname \
         WHERE c.oid = 'tenant_passages'::regclass AND p.policyname = 'reposmith_tenant' \
           AND p.schemaname = current_schema()",
    )
    .fetch_one(roles.owner.pool())
    .await
    .unwrap();
    assert!(row.get::<bool, _>(0), "enabled");
    assert!(!row.get::<bool, _>(1), "not forced: the owner bypasses");
    let qual: String = row.get(2);
    assert!(qual.contains("reposmith.tenant"), "{qual}");
    assert_eq!(Some(qual), row.get::<Option<String>, _>(3));
    roles.teardown().await;
}
