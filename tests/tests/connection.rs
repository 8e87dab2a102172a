//! Connecting fails clearly: a typed error naming the backend and the host,
//! never the password, and never a hang.

use std::time::{Duration, Instant};

use reposmith::postgres::sqlx;
use reposmith::{Config, Error, MongoConfig, RedisConfig, Store};
use reposmith_tests::{
    REDIS_NOBODY, closed_port, database_url, mongodb_url, password_of, redis_url, user_of,
    with_credentials, with_host,
};

/// A password that must never be printed anywhere.
const CANARY: &str = "canary-Pa55w0rd-7d1f";
/// A host name that cannot resolve (RFC 6761 reserves `.invalid`).
const NO_SUCH_HOST: &str = "reposmith-no-such-host.invalid";

/// The error names `backend` and `host` and shows no trace of the password.
fn assert_names_target_not_password(err: &Error, backend: &str, host: &str) {
    let (display, debug) = (err.to_string(), format!("{err:?}"));
    assert!(
        display.contains(backend),
        "backend {backend} not named: {display}"
    );
    assert!(display.contains(host), "host {host} not named: {display}");
    assert!(
        !display.contains(CANARY) && !debug.contains(CANARY),
        "password leaked: {debug}"
    );
}

fn canary_url(url: &str, default_user: &str) -> String {
    with_credentials(url, &user_of(url, default_user), CANARY)
}

async fn connect_err(config: Config) -> (Error, Duration) {
    let started = Instant::now();
    let err = Store::connect(config)
        .await
        .expect_err("connecting must fail");
    (err, started.elapsed())
}

// Plaintext allowed: the unknown host is not loopback, and these tests are
// about resolving and reaching it, not about TLS (tests/tls.rs is).
fn pg(url: String) -> Config {
    let config = reposmith_tests::pg_config(url).connect_timeout(Duration::from_secs(3));
    Config::new().with_postgres(config.allow_plaintext(true))
}

fn mongo(url: String) -> Config {
    let config = MongoConfig::new(url).server_selection_timeout(Duration::from_secs(1));
    Config::new().with_mongo(config.allow_plaintext(true))
}

fn redis(url: String) -> Config {
    let config = RedisConfig::new(url).connect_timeout(Duration::from_secs(1));
    Config::new().with_redis(config.allow_plaintext(true))
}

#[tokio::test]
async fn postgres_unknown_host_closed_port_and_wrong_password() {
    let url = canary_url(&database_url(), "postgres");
    let (err, _) = connect_err(pg(with_host(&url, &format!("{NO_SUCH_HOST}:5432")))).await;
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_names_target_not_password(&err, "postgresql", NO_SUCH_HOST);

    let port = closed_port();
    let (err, took) = connect_err(pg(with_host(&url, &format!("127.0.0.1:{port}")))).await;
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_names_target_not_password(&err, "postgresql", &format!("127.0.0.1:{port}"));
    assert!(
        took < Duration::from_secs(3),
        "a closed port fails fast, took {took:?}"
    );

    let (err, _) = connect_err(pg(url)).await;
    assert!(
        matches!(err, Error::Authentication { .. }),
        "the server must refuse a wrong password (password auth on TCP): {err:?}"
    );
    assert_names_target_not_password(&err, "postgresql", "127.0.0.1");
}

#[tokio::test]
async fn mongo_unknown_host_closed_port_and_wrong_password() {
    let url = canary_url(&mongodb_url(), "reposmith");
    let (err, took) = connect_err(mongo(with_host(&url, &format!("{NO_SUCH_HOST}:27017")))).await;
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_names_target_not_password(&err, "mongodb", NO_SUCH_HOST);
    assert!(
        took < Duration::from_secs(10),
        "bounded by server selection, took {took:?}"
    );

    let port = closed_port();
    let (err, _) = connect_err(mongo(with_host(&url, &format!("127.0.0.1:{port}")))).await;
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_names_target_not_password(&err, "mongodb", &format!("127.0.0.1:{port}"));

    let (err, _) = connect_err(mongo(url)).await;
    assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
    assert_names_target_not_password(&err, "mongodb", "127.0.0.1");
}

#[tokio::test]
async fn redis_unknown_host_closed_port_and_wrong_password() {
    let url = with_credentials(&redis_url(), REDIS_NOBODY, CANARY);
    let (err, _) = connect_err(redis(with_host(&url, &format!("{NO_SUCH_HOST}:6379")))).await;
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_names_target_not_password(&err, "redis", NO_SUCH_HOST);

    let port = closed_port();
    let (err, took) = connect_err(redis(with_host(&url, &format!("127.0.0.1:{port}")))).await;
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_names_target_not_password(&err, "redis", &format!("127.0.0.1:{port}"));
    assert!(
        took < Duration::from_secs(10),
        "retries are bounded, took {took:?}"
    );

    let (err, _) = connect_err(redis(url)).await;
    assert!(matches!(err, Error::Authentication { .. }), "{err:?}");
    assert_names_target_not_password(&err, "redis", "127.0.0.1");
}

#[tokio::test]
async fn one_bad_backend_fails_the_store_and_names_that_backend() {
    let port = closed_port();
    let config = Config::new()
        .with_postgres(reposmith_tests::pg_config(database_url()))
        .with_redis(RedisConfig::new(with_host(
            &redis_url(),
            &format!("127.0.0.1:{port}"),
        )));
    let (err, _) = connect_err(config).await;
    assert_eq!(err.backend(), Some(reposmith::Backend::Redis), "{err:?}");
}

#[tokio::test]
async fn exhausted_pool_times_out_typed_within_the_acquire_timeout() {
    let acquire_timeout = Duration::from_millis(300);
    let config = reposmith_tests::pg_config(database_url())
        .max_connections(1)
        .acquire_timeout(acquire_timeout);
    let store = Store::connect(Config::new().with_postgres(config))
        .await
        .unwrap();
    let pg = store.postgres().unwrap();
    let held = pg.acquire().await.unwrap();

    let started = Instant::now();
    let err = pg.ping().await.expect_err("the only connection is held");
    let waited = started.elapsed();
    assert!(
        matches!(err, Error::PoolTimeout { waited, .. } if waited == acquire_timeout),
        "{err:?}"
    );
    assert!(
        waited >= acquire_timeout - Duration::from_millis(50),
        "gave up early: {waited:?}"
    );
    assert!(
        waited < acquire_timeout + Duration::from_secs(2),
        "hung: {waited:?}"
    );

    drop(held);
    pg.ping()
        .await
        .expect("the released connection serves the next caller");
}

#[tokio::test]
async fn canary_password_never_appears_in_config_or_store_debug() {
    let config = Config::new()
        .with_postgres(reposmith_tests::pg_config(canary_url(
            &database_url(),
            "postgres",
        )))
        .with_mongo(MongoConfig::new(canary_url(&mongodb_url(), "reposmith")))
        .with_redis(RedisConfig::new(with_credentials(
            &redis_url(),
            REDIS_NOBODY,
            CANARY,
        )));
    let printed = format!("{config:?}");
    assert!(!printed.contains(CANARY), "{printed}");
    assert!(
        printed.contains("***"),
        "the masked password still shows there was one: {printed}"
    );

    // A store that did connect prints its backends without secrets either.
    let store = Store::connect(Config::from_env().unwrap()).await.unwrap();
    let store_debug = format!("{store:?}");
    for url in [database_url(), mongodb_url(), redis_url()] {
        if let Some(password) = password_of(&url) {
            assert!(!store_debug.contains(&password), "{store_debug}");
        }
    }
}

#[tokio::test]
async fn config_from_env_rejects_no_backend_and_names_bad_variables() {
    use reposmith::config_source::Env;
    let empty = Config::from_env_source(&Env::from_fn(|_| None)).unwrap_err();
    assert!(empty.to_string().contains("DATABASE_URL"), "{empty}");
    let bad = Env::from_fn(|name| match name {
        "DATABASE_URL" => Some(database_url()),
        "REPOSMITH_PG_ACQUIRE_TIMEOUT" => Some("soon".to_owned()),
        _ => None,
    });
    let err = Config::from_env_source(&bad).unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("REPOSMITH_PG_ACQUIRE_TIMEOUT"),
        "{err}"
    );
}

#[tokio::test]
async fn dead_pooled_connection_costs_one_typed_error_then_is_evicted() {
    // No ping before acquire or on release: a connection the server killed is
    // found out by the statement that uses it, which fails typed, and the pool
    // closes it instead of reusing it, so the next statement gets a fresh one.
    let config = reposmith_tests::pg_config(database_url()).max_connections(1);
    let store = Store::connect(Config::new().with_postgres(config))
        .await
        .unwrap();
    let pg = store.postgres().unwrap();
    let backend_pid = || async {
        let mut connection = pg.acquire().await.unwrap();
        let pid = sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&mut *connection)
            .await;
        connection.settle(&pid);
        pid.unwrap()
    };
    let victim = backend_pid().await;

    let killer =
        Store::connect(Config::new().with_postgres(reposmith_tests::pg_config(database_url())))
            .await
            .unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(victim)
        .fetch_one(killer.postgres().unwrap().pool())
        .await
        .unwrap();
    assert!(killed);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut errors = Vec::new();
    for _ in 0..2 {
        match pg.ping().await {
            Ok(_) => break,
            Err(err) => errors.push(err),
        }
    }
    assert_eq!(
        errors.len(),
        1,
        "the pooled connection was dead, and it costs exactly one statement: {errors:?}"
    );
    for err in &errors {
        assert!(matches!(err, Error::ConnectionLost { .. }), "{err:?}");
    }
    assert_ne!(backend_pid().await, victim);
}

#[tokio::test]
async fn min_connections_are_open_after_connect_and_pre_ping_hides_a_dead_one() {
    // A name of its own, so only this test's connections are killed.
    let app = reposmith_tests::unique_name("prepinged");
    let mut config = reposmith_tests::pg_config(database_url())
        .max_connections(3)
        .min_connections(2)
        .application_name(app.clone());
    config.test_before_acquire = true;
    let store = Store::connect(Config::new().with_postgres(config))
        .await
        .unwrap();
    let pg = store.postgres().unwrap();
    let health = pg.ping().await.unwrap();
    assert_eq!(health.pool_size, 2, "{health}");

    // Kill every idle connection of this pool; with a ping before each
    // acquire, the next statement never sees a dead one.
    let killer = Store::connect(Config::new().with_postgres(
        reposmith_tests::pg_config(database_url()).application_name("reposmith-killer"),
    ))
    .await
    .unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND state = 'idle' AND pid <> pg_backend_pid()) AS t",
    )
    .bind(&app)
    .fetch_one(killer.postgres().unwrap().pool())
    .await
    .unwrap();
    assert!(killed >= 1, "killed {killed}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    pg.ping()
        .await
        .expect("a dead idle connection is replaced, not used");
}

#[tokio::test]
async fn a_warm_pool_recovers_after_every_connection_is_killed_with_one_failed_statement() {
    // As after `pg_ctl restart`: every pooled backend dies at once. The first
    // statement finds out; the pool then drops its other idle connections
    // instead of letting each cost another caller a failed statement.
    let app = reposmith_tests::unique_name("warm");
    let config = reposmith_tests::pg_config(database_url())
        .max_connections(4)
        .min_connections(4)
        .application_name(app.clone());
    let store = Store::connect(Config::new().with_postgres(config))
        .await
        .unwrap();
    let pg = store.postgres().unwrap();
    assert_eq!(pg.ping().await.unwrap().pool_size, 4);

    let killer =
        Store::connect(Config::new().with_postgres(reposmith_tests::pg_config(database_url())))
            .await
            .unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) AS t",
    )
    .bind(&app)
    .fetch_one(killer.postgres().unwrap().pool())
    .await
    .unwrap();
    assert_eq!(killed, 4);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut failures = 0;
    for _ in 0..6 {
        if pg.ping().await.is_err() {
            failures += 1;
        }
    }
    assert_eq!(
        failures, 1,
        "one statement finds the dead pool, the rest recover"
    );
}

/// A server error keeps what a caller can act on (SQLSTATE, message, detail,
/// hint) and drops the line of Postgres' C source sqlx appends ("at line N").
#[tokio::test]
async fn server_errors_carry_message_detail_and_hint_but_no_source_line() {
    let store =
        Store::connect(Config::new().with_postgres(reposmith_tests::pg_config(database_url())))
            .await
            .unwrap();
    let pg = store.postgres().unwrap();
    let raise = "DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = 'P0001', \
                 DETAIL = 'the detail', HINT = 'the hint'; END $$";
    let err = sqlx::raw_sql(raise).execute(pg.pool()).await.unwrap_err();
    match pg.map_error(err) {
        Error::Backend { code, reason, .. } => {
            assert_eq!(code.as_deref(), Some("P0001"));
            assert_eq!(reason, "boom (detail: the detail) (hint: the hint)");
        }
        other => panic!("{other:?}"),
    }
    let err = sqlx::raw_sql("SELECT 1 / 0")
        .execute(pg.pool())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(" at line "),
        "sqlx's own text: {err}"
    );
    match pg.map_error(err) {
        Error::Backend { code, reason, .. } => {
            assert_eq!(code.as_deref(), Some("22012"));
            assert_eq!(reason, "division by zero");
        }
        other => panic!("{other:?}"),
    }
    store.close().await;
}
