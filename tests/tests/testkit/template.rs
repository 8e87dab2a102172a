//! Templates: built once per set of migration files (the build id in the
//! template's comment counts builds), reused while the files are
//! unchanged, built anew when one changes, rebuilt when half built, built
//! once when many build at the same moment; and a role without CREATEDB
//! gets a typed error.

use std::path::PathBuf;

use reposmith::PgConfig;
use reposmith_test::Error;
use reposmith_test::postgres::{PgAdmin, ensure_template};

/// A migrations directory of its own (unique content, so a fresh hash).
fn migrations_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("reposmith-testkit-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    write_migration(&dir, tag);
    dir
}

fn write_migration(dir: &std::path::Path, tag: &str) {
    let up = format!("-- {tag}\nCREATE TABLE tpl_probe (id INT PRIMARY KEY);\n");
    std::fs::write(dir.join("0001_probe.up.sql"), up).unwrap();
    std::fs::write(dir.join("0001_probe.down.sql"), "DROP TABLE tpl_probe;\n").unwrap();
}

async fn admin() -> PgAdmin {
    let url = reposmith_tests::service_url("DATABASE_URL");
    PgAdmin::connect(&PgConfig::new(url)).await.unwrap()
}

#[tokio::test]
async fn a_template_is_reused_until_a_migration_changes() {
    let tag = uuid::Uuid::now_v7().to_string();
    let dir = migrations_dir(&tag);
    let mut admin = admin().await;
    let first = ensure_template(&mut admin, Some(&dir)).await.unwrap();
    assert!(first.built, "a fresh set of migrations builds its template");
    for _ in 0..3 {
        let again = ensure_template(&mut admin, Some(&dir)).await.unwrap();
        assert_eq!(
            (again.built, &again.name, &again.build),
            (false, &first.name, &first.build)
        );
    }
    // CRLF line endings are the same migration.
    let text = std::fs::read_to_string(dir.join("0001_probe.up.sql")).unwrap();
    std::fs::write(dir.join("0001_probe.up.sql"), text.replace('\n', "\r\n")).unwrap();
    assert!(!ensure_template(&mut admin, Some(&dir)).await.unwrap().built);
    // An edited migration: another template, built once.
    write_migration(&dir, &format!("{tag} edited"));
    let edited = ensure_template(&mut admin, Some(&dir)).await.unwrap();
    assert!(edited.built);
    assert_ne!(edited.name, first.name);
    assert!(!ensure_template(&mut admin, Some(&dir)).await.unwrap().built);
    // Half built (no completion comment): dropped and built again, migrated.
    let url = reposmith_tests::service_url("DATABASE_URL");
    run(
        &url,
        &format!("COMMENT ON DATABASE \"{}\" IS NULL", edited.name),
    )
    .await;
    let rebuilt = ensure_template(&mut admin, Some(&dir)).await.unwrap();
    assert!(rebuilt.built);
    assert_ne!(rebuilt.build, edited.build);
    for name in [&first.name, &edited.name] {
        admin.drop_database(name).await.unwrap();
    }
    admin.close().await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_builders_build_once() {
    let dir = migrations_dir(&uuid::Uuid::now_v7().to_string());
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let dir = dir.clone();
            tokio::spawn(async move {
                let mut admin = admin().await;
                let template = ensure_template(&mut admin, Some(&dir)).await.unwrap();
                admin.close().await.unwrap();
                template
            })
        })
        .collect();
    let mut built = 0;
    let mut builds = Vec::new();
    for task in tasks {
        let template = task.await.unwrap();
        built += usize::from(template.built);
        builds.push(template.build);
    }
    assert_eq!(built, 1, "one builder");
    builds.dedup();
    assert_eq!(builds.len(), 1, "every caller got the same build");
    let mut admin = admin().await;
    let name = ensure_template(&mut admin, Some(&dir)).await.unwrap().name;
    admin.drop_database(&name).await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_role_without_createdb_gets_a_typed_error() {
    let url = reposmith_tests::service_url("DATABASE_URL");
    let role = format!(
        "testkit_nocreate_{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    );
    let mut owner = admin().await;
    let create = format!("CREATE ROLE {role} LOGIN PASSWORD 'pw' NOCREATEDB");
    run(&url, &create).await;
    let mut limited = url::Url::parse(&url).unwrap();
    limited.set_username(&role).unwrap();
    limited.set_password(Some("pw")).unwrap();
    let mut admin = PgAdmin::connect(&PgConfig::new(limited.to_string()))
        .await
        .unwrap();
    let dir = migrations_dir("nocreate");
    let error = ensure_template(&mut admin, Some(&dir)).await.unwrap_err();
    assert!(
        matches!(&error, Error::CannotCreateDatabase { role: r } if *r == role),
        "{error:?}"
    );
    assert!(error.to_string().contains("CREATEDB"), "{error}");
    admin.close().await.unwrap();
    run(&url, &format!("DROP ROLE {role}")).await;
    let _ = owner.role().await;
    owner.close().await.unwrap();
    std::fs::remove_dir_all(dir).ok();
}

async fn run(url: &str, sql: &str) {
    use reposmith::postgres::sqlx::Connection;
    let mut conn = reposmith::postgres::sqlx::PgConnection::connect(url)
        .await
        .unwrap();
    reposmith::postgres::sqlx::raw_sql(reposmith::postgres::sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}
