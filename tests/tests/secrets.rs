//! A canary password in all three URLs never reaches the logs: every event
//! and span field at TRACE level, from reposmith and from the drivers, is
//! captured while connections fail in each way they can, then searched.
//!
//! This file holds one test so the process-wide subscriber sees only it.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reposmith::{Config, MongoConfig, RedisConfig, Store};
use reposmith_tests::{
    REDIS_NOBODY, closed_port, database_url, mongodb_url, redis_url, user_of, with_credentials,
    with_host,
};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::FmtSpan;

const CANARY: &str = "canary-Tr4ce-Pa55-91c2";

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
pub(crate) struct Captured(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn bent_configs() -> Vec<Config> {
    let pg = with_credentials(
        &database_url(),
        &user_of(&database_url(), "postgres"),
        CANARY,
    );
    let mongo = with_credentials(
        &mongodb_url(),
        &user_of(&mongodb_url(), "reposmith"),
        CANARY,
    );
    let redis = with_credentials(&redis_url(), REDIS_NOBODY, CANARY);
    let closed = format!("127.0.0.1:{}", closed_port());
    let selection = Duration::from_secs(1);
    vec![
        Config::new().with_postgres(reposmith_tests::pg_config(pg.clone())),
        Config::new().with_postgres(reposmith_tests::pg_config(with_host(&pg, &closed))),
        Config::new()
            .with_mongo(MongoConfig::new(mongo.clone()).server_selection_timeout(selection)),
        Config::new().with_mongo(
            MongoConfig::new(with_host(&mongo, &closed)).server_selection_timeout(selection),
        ),
        Config::new().with_redis(RedisConfig::new(redis.clone())),
        Config::new().with_redis(RedisConfig::new(with_host(&redis, &closed))),
    ]
}

#[tokio::test]
async fn canary_password_never_reaches_trace_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    for config in bent_configs() {
        let config_debug = format!("{config:?}");
        let err = Store::connect(config)
            .await
            .expect_err("bent URL must fail");
        tracing::error!(error = %err, debug = ?err, config = %config_debug, "connect failed as expected");
    }

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("connect failed as expected"),
        "the subscriber captured nothing"
    );
    assert!(
        logs.contains("reposmith.connect"),
        "connect spans are traced:\n{logs}"
    );
    assert!(
        !logs.contains(CANARY),
        "the canary leaked into the logs:\n{logs}"
    );
}
