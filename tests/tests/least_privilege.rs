//! Least privilege (S3): migrations run as the schema owner through
//! `PgConfig::migration_url`, the application as a role with DML only.
//! Repository operations, the health probe and connecting work as that
//! role, so none of them needs (or tries) DDL; DDL it runs anyway is
//! `Error::PermissionDenied` (SQLSTATE 42501). The roles are unique to the
//! run and dropped afterwards, also when an assertion fails.

use reposmith::{Config, Error, PgBackend, PgConfig, RedisConfig, Repository, Store};
use reposmith_migrate::{Connection, Options, Schemas};
use reposmith_tests::{
    database_url, pg_config, redis_url, run_sql, unique_name, with_credentials, with_search_path,
};
use uuid::Uuid;

/// The table the owner's migration creates and the application uses.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "accounts", backend = "postgres")]
struct Account {
    #[repo(id)]
    id: Uuid,
    #[repo(unique)]
    email: String,
    balance: i64,
}

/// A table nobody created: the application role's attempt to create it.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "not_allowed", backend = "postgres")]
struct NotAllowed {
    #[repo(id)]
    id: Uuid,
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_run_as_the_owner_and_the_app_role_gets_dml_but_no_ddl() {
    let admin = PgBackend::connect(&pg_config(database_url()))
        .await
        .unwrap();
    let owner = unique_name("rs_owner");
    let app = unique_name("rs_app");
    let schema = unique_name("rs_lp");
    // Test-made names and passwords: no user value reaches this SQL.
    let (owner_pw, app_pw) = (unique_name("pw"), unique_name("pw"));
    run_sql(
        &admin,
        &format!(
            "CREATE ROLE \"{owner}\" LOGIN PASSWORD '{owner_pw}'; \
             CREATE ROLE \"{app}\" LOGIN PASSWORD '{app_pw}'; \
             CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{owner}\"; \
             GRANT USAGE ON SCHEMA \"{schema}\" TO \"{app}\"; \
             ALTER DEFAULT PRIVILEGES FOR ROLE \"{owner}\" IN SCHEMA \"{schema}\" \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO \"{app}\"; \
             ALTER DEFAULT PRIVILEGES FOR ROLE \"{owner}\" IN SCHEMA \"{schema}\" \
                 GRANT USAGE, SELECT ON SEQUENCES TO \"{app}\""
        ),
    )
    .await;
    let base = with_search_path(&database_url(), &schema);
    let config = pg_config(with_credentials(&base, &app, &app_pw))
        .migration_url(with_credentials(&base, &owner, &owner_pw));

    // The body runs in a task of its own so the roles are dropped below
    // whatever it does; a panic is passed on after the cleanup.
    let body = tokio::spawn(exercise(config, admin.clone(), app.clone(), schema.clone()));
    let outcome = body.await;
    run_sql(
        &admin,
        &format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; \
             DROP OWNED BY \"{owner}\", \"{app}\"; \
             DROP ROLE \"{app}\"; DROP ROLE \"{owner}\""
        ),
    )
    .await;
    match outcome {
        Ok(figure) => eprintln!("{figure}"),
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// Migrate as the owner, work as the application role; the figure.
async fn exercise(config: PgConfig, admin: PgBackend, app: String, schema: String) -> String {
    // The role really cannot change the schema: no CREATE on it, nor on
    // the database (new schemas), nor on public.
    let privileges: (bool, bool, bool) = reposmith::postgres::sqlx::query_as(
        "SELECT has_schema_privilege($1, $2, 'CREATE'), \
                has_database_privilege($1, current_database(), 'CREATE'), \
                has_schema_privilege($1, 'public', 'CREATE')",
    )
    .bind(&app)
    .bind(&schema)
    .fetch_one(admin.pool())
    .await
    .unwrap();
    assert_eq!(privileges, (false, false, false), "the app role can create");

    // Migrations: generated from the entity, applied with the owner's URL.
    let dir = std::env::temp_dir().join(unique_name("rs_lp_migrations"));
    let schemas = Schemas::new().add::<Account>();
    reposmith_migrate::generate(&schemas, &dir, "accounts", &Options::default()).unwrap();
    let applied = reposmith_migrate::apply(&dir, &Connection::for_config(&config))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(applied, vec![1]);

    // The application role: connect, probe, and every kind of DML.
    let pg = PgBackend::connect(&config).await.unwrap();
    pg.ping().await.unwrap();
    let accounts = pg.repo::<Account>();
    let mut account = Account {
        id: Uuid::now_v7(),
        email: "ada@example.test".into(),
        balance: 10,
    };
    accounts.insert(&account).await.unwrap();
    account.balance = 25;
    accounts.update(&account).await.unwrap();
    assert_eq!(
        accounts.get(&account.id).await.unwrap(),
        Some(account.clone())
    );
    let unit = pg.begin().await.unwrap();
    assert!(unit.repo::<Account>().delete(&account.id).await.unwrap());
    unit.commit().await.unwrap();
    assert_eq!(accounts.get(&account.id).await.unwrap(), None);

    // The whole store as an application runs it (PostgreSQL with the Redis
    // cache and its invalidation relay): connecting, probing and writing
    // need no DDL either.
    let store_config = Config::new()
        .with_postgres(config.clone())
        .with_redis(RedisConfig::new(redis_url()));
    let store = Store::connect(store_config).await.unwrap();
    let health = store.ping().await;
    assert!(matches!(health.postgres, Some(Ok(_))), "{health:?}");
    let via_store = Account {
        id: Uuid::now_v7(),
        email: "grace@example.test".into(),
        balance: 1,
    };
    store
        .repo::<Account>()
        .unwrap()
        .insert(&via_store)
        .await
        .unwrap();
    store.close().await;

    // DDL as the application role: refused, typed, naming the way out.
    let denied = pg.create_tables::<NotAllowed>().await.unwrap_err();
    let Error::PermissionDenied { code, reason, .. } = &denied else {
        panic!("expected Error::PermissionDenied, got {denied:?}");
    };
    assert_eq!(code, "42501");
    assert!(
        reason.contains("REPOSMITH_MIGRATION_DATABASE_URL"),
        "{reason}"
    );
    assert!(!reason.contains("pw_"), "a password in {reason}");
    let server_said = reason.split(" (the role in").next().unwrap_or_default();
    format!(
        "migrated as the owner; as the app role insert, update, get, delete in a unit, and \
         the store with the Redis cache connected and wrote; its DDL refused: \
         PermissionDenied {code} ({server_said})"
    )
}
