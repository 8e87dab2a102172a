//! Commits whose reply is lost on the way back (see `reposmith_tests::fault_proxy`): the server
//! committed, the client cannot know. The driver labels the network error
//! `UnknownTransactionCommitResult` and resends the commit once itself; the
//! unit resends it up to `COMMIT_ATTEMPTS` times in all, and then reports
//! `CommitOutcomeUnknown` rather than "rolled back".

use reposmith::{Error, MongoBackend, MongoConfig};
use reposmith_core::Repository;
use reposmith_mongo::COMMIT_ATTEMPTS;
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::fault_proxy::{FaultProxy, Matcher, Mode, ReplyLoss, Wire};
use reposmith_tests::{mongodb_url, with_host};

use super::db::MongoDb;

/// `host:port` of the MongoDB server in `url`.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let hosts = rest.rsplit_once('@').map_or(rest, |(_, hosts)| hosts);
    hosts[..hosts.find(['/', '?']).unwrap_or(hosts.len())].to_owned()
}

/// A proxy to the MongoDB server that loses the replies to the next
/// `times` `commitTransaction` commands (the commands reach the server).
async fn losing_commit_replies(times: u32) -> FaultProxy {
    let proxy = FaultProxy::start(host_port(&mongodb_url()), Wire::Mongo).await;
    let commits = Matcher::mongo_command("commitTransaction");
    proxy.set_mode(Mode::LoseReply(ReplyLoss::new(commits).times(times)));
    proxy
}

/// A client on `db`'s database whose connections go through `proxy`.
async fn client_through(proxy: &FaultProxy, db: &MongoDb) -> MongoBackend {
    // The test server's URL connects directly, so the client never
    // discovers the server's own address and bypasses the proxy.
    let url = with_host(&mongodb_url(), &proxy.host_port());
    let config = MongoConfig::new(url).database(db.mongo.database().name());
    MongoBackend::connect(&config).await.unwrap()
}

/// Two lost replies: the driver's own resend is lost too, the unit's second
/// attempt gets the server's answer ("already committed": success).
#[tokio::test]
async fn a_lost_commit_reply_is_resent_until_the_outcome_is_known() {
    let db = MongoDb::new().await;
    let proxy = losing_commit_replies(2).await;
    let client = client_through(&proxy, &db).await;
    let unit = client.begin().await.unwrap();
    let doc = unit
        .repo::<Doc>()
        .insert(&Doc::new("settled"))
        .await
        .unwrap();
    unit.commit().await.unwrap();
    assert_eq!(proxy.stats().lost, 2);
    assert!(
        proxy.stats().matched >= 3,
        "{} commits sent",
        proxy.stats().matched
    );
    assert_eq!(
        db.mongo.repo::<Doc>().get(&doc.id).await.unwrap(),
        Some(doc)
    );
    client.close().await;
    db.cleanup().await;
}

/// Every reply lost: `CommitOutcomeUnknown`, not retryable — and here the
/// transaction did commit, which is why the caller must not assume either way.
#[tokio::test]
async fn every_commit_reply_lost_is_commit_outcome_unknown() {
    let db = MongoDb::new().await;
    let proxy = losing_commit_replies(u32::MAX).await;
    let client = client_through(&proxy, &db).await;
    let unit = client.begin().await.unwrap();
    let doc = unit
        .repo::<Doc>()
        .insert(&Doc::new("unknown"))
        .await
        .unwrap();
    let err = unit.commit().await.unwrap_err();
    assert!(matches!(err, Error::CommitOutcomeUnknown { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        proxy.stats().matched >= u64::from(COMMIT_ATTEMPTS),
        "{} commits sent",
        proxy.stats().matched
    );
    assert_eq!(
        db.mongo.repo::<Doc>().get(&doc.id).await.unwrap(),
        Some(doc)
    );
    client.close().await;
    db.cleanup().await;
}
