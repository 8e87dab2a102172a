//! Migrations of tenant-scoped entities: an entity gaining `#[repo(tenant)]`
//! gets its column, row-level security and the tenant policy (the revert
//! takes them away again); `check` reports a missing policy and RLS turned
//! off; generate → apply → check is clean.

use reposmith::prelude::*;
use reposmith_migrate::{Options, Schemas};

use super::db::{MigrateDb, read};

/// `tenant_docs` before tenancy.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "tenant_docs")]
pub(crate) struct Doc {
    #[repo(id)]
    pub(crate) id: i64,
    pub(crate) title: String,
}

/// `tenant_docs` gaining a tenant.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "tenant_docs")]
pub(crate) struct DocV2 {
    #[repo(id)]
    pub(crate) id: i64,
    pub(crate) title: String,
    #[repo(tenant, default = "''")]
    pub(crate) org: String,
}

#[tokio::test]
async fn gaining_a_tenant_enables_row_level_security_and_reverts() {
    let db = MigrateDb::new().await;
    let v1 = Schemas::new().add::<Doc>();
    let v2 = Schemas::new().add::<DocV2>();
    db.generate(&v1, "docs", Options::default());
    db.apply().await;
    assert_eq!(db.drift(&v1).await, Vec::<String>::new());
    let before = db.catalog().await;
    let drift = db.drift(&v2).await;
    assert!(
        drift
            .iter()
            .any(|d| d.contains("missing policy reposmith_tenant")),
        "{drift:?}"
    );
    assert!(
        drift
            .iter()
            .any(|d| d.contains("row level security is not enabled"))
    );
    let files = db.generate(&v2, "tenancy", Options::default());
    let up = read(&files[0]);
    for expected in [
        "ADD COLUMN \"org\" text",
        "ALTER TABLE \"tenant_docs\" ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY reposmith_tenant ON \"tenant_docs\" USING (\"org\" = NULLIF(current_setting('reposmith.tenant', true), '')::text)",
    ] {
        assert!(up.contains(expected), "missing {expected} in\n{up}");
    }
    assert_eq!(db.apply().await, vec![2]);
    assert_eq!(db.drift(&v2).await, Vec::<String>::new());
    // A policy dropped by hand is drift.
    db.exec("DROP POLICY reposmith_tenant ON tenant_docs").await;
    let drift = db.drift(&v2).await;
    assert!(
        drift.iter().any(|d| d.contains("missing policy")),
        "{drift:?}"
    );
    db.exec(&reposmith_postgres::tenant_policy_sql(DocV2::SCHEMA).join("; "))
        .await;
    assert_eq!(db.drift(&v2).await, Vec::<String>::new());
    reposmith_migrate::revert(&db.dir, &db.db, None)
        .await
        .unwrap();
    assert_eq!(db.catalog().await, before);
    assert_eq!(db.drift(&v1).await, Vec::<String>::new());
    db.cleanup().await;
}
