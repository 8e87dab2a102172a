//! MongoDB through the fault proxy, stalled: the connection goes silent
//! (the proxy holds every byte both ways, the sockets stay open), so only
//! reposmith's operation deadline can end the wait. The lost commit reply
//! is `mongo_unit::commit_outcome`'s.

use std::future::Future;
use std::time::{Duration, Instant};

use reposmith::{Error, MongoBackend, MongoConfig};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::fault_proxy::{FaultProxy, Mode, Wire};
use reposmith_tests::{host_port, mongodb_url, with_host};

use crate::mongo_repository::db::MongoDb;

/// The operation deadline these tests configure.
const DEADLINE: Duration = Duration::from_secs(1);

/// How late past [`DEADLINE`] a stalled call may return: typically a few
/// milliseconds; the rest is room for a loaded 2-core machine, since what
/// the test holds is that the wait ends, not its precision.
const SLACK: Duration = Duration::from_secs(3);

/// No single step of these tests may take longer.
const STEP: Duration = Duration::from_secs(20);

/// `future`, or a panic naming `what` when it takes longer than [`STEP`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took over {STEP:?}"))
}

/// A proxy in front of the shared server and a client through it, with
/// one pooled connection and the [`DEADLINE`], on `db`'s database.
async fn proxied(db: &MongoDb) -> (FaultProxy, MongoBackend) {
    let proxy = FaultProxy::start(host_port(&mongodb_url()), Wire::Mongo).await;
    // The test server's URL connects directly, so the client never
    // discovers the server's own address and bypasses the proxy.
    let url = with_host(&mongodb_url(), &proxy.host_port());
    let config = MongoConfig::new(url)
        .database(db.mongo.database().name())
        .max_pool_size(1)
        .operation_timeout(DEADLINE);
    let client = MongoBackend::connect(&config).await.unwrap();
    (proxy, client)
}

/// A count whose connection stalls: `Timeout` at the deadline, and the
/// next count works, on a new connection, while the stalled one stays
/// stalled (a reused one would time out again: the pool holds one).
#[tokio::test]
async fn a_stalled_operation_times_out_at_the_deadline_and_its_connection_is_not_reused() {
    let db = MongoDb::new().await;
    let (proxy, client) = proxied(&db).await;
    let docs = client.repo::<Doc>();
    bounded("insert", docs.insert(&Doc::new("before")))
        .await
        .unwrap();
    proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = bounded("stalled count", docs.count(Filter::all())).await;
    let took = started.elapsed();
    assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
    assert!(took >= DEADLINE && took < DEADLINE + SLACK, "{took:?}");
    let connections = proxy.stats().connections;
    // Connections open from now on pass; the stalled ones stay stalled.
    proxy.set_new_mode(Mode::Pass);
    let again = Instant::now();
    let count = bounded("next count", docs.count(Filter::all())).await;
    assert_eq!(count.unwrap(), 1, "the next operation after the stall");
    let next_took = again.elapsed();
    let opened = proxy.stats().connections - connections;
    assert!(opened >= 1, "no new connection: the stalled one was reused");
    eprintln!(
        "stalled operation: Timeout after {took:.2?} (deadline {DEADLINE:?}); the next one ok in \
         {next_took:.2?} on {opened} new connection(s), the stalled one not reused"
    );
    // Not `close`: the driver's shutdown waited 5 s here on the stalled
    // connections; dropping the client does not wait.
    drop(client);
    db.cleanup().await;
}

/// A unit whose connection stalls before `commitTransaction` is answered:
/// `CommitOutcomeUnknown` at the deadline (not a wait without end, not
/// "rolled back"), and the next unit commits on a new connection.
#[tokio::test]
async fn a_commit_into_a_stalled_connection_is_outcome_unknown_at_the_deadline() {
    let db = MongoDb::new().await;
    let (proxy, client) = proxied(&db).await;
    let unit = bounded("begin", client.begin()).await.unwrap();
    bounded("insert", unit.repo::<Doc>().insert(&Doc::new("stalled")))
        .await
        .unwrap();
    proxy.set_mode(Mode::Stall);
    let started = Instant::now();
    let outcome = bounded("stalled commit", unit.commit()).await;
    let took = started.elapsed();
    assert!(
        matches!(outcome, Err(Error::CommitOutcomeUnknown { .. })),
        "{outcome:?}"
    );
    assert!(took >= DEADLINE && took < DEADLINE + SLACK, "{took:?}");
    proxy.set_new_mode(Mode::Pass);
    let again = Instant::now();
    let unit = bounded("next begin", client.begin()).await.unwrap();
    bounded("next insert", unit.repo::<Doc>().insert(&Doc::new("next")))
        .await
        .unwrap();
    bounded("next commit", unit.commit()).await.unwrap();
    let next_took = again.elapsed();
    let stored = db.mongo.repo::<Doc>();
    assert_eq!(stored.count(Doc::TITLE.eq("next")).await.unwrap(), 1);
    eprintln!(
        "stalled commit: CommitOutcomeUnknown after {took:.2?} (deadline {DEADLINE:?}); the next \
         unit committed in {next_took:.2?} on a new connection"
    );
    // Not `close`: the driver's shutdown waited 5 s here on the stalled
    // connections; dropping the client does not wait.
    drop(client);
    db.cleanup().await;
}
