//! The MongoDB server itself failing, on a SecantusDB of the test's own
//! (`reposmith_tests::own_mongo`, started with `--sync-on-commit`: see its
//! docs for what SecantusDB loses without it): `kill -9` while single
//! writes and units of work run, then a restart on the same port and data
//! directory.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reposmith::{Error, MongoBackend, MongoConfig};
use reposmith_core::{Filter, Repository};
use reposmith_tests::conformance::entities::Doc;
use reposmith_tests::own_mongo::OwnMongo;
use reposmith_tests::unique_name;
use uuid::Uuid;

/// Longest the client may take to succeed again once the server accepts
/// connections: the driver's monitor checks an unknown server every 500 ms
/// (measured: back within 300 ms); the rest is room for a loaded machine.
const BACK_WITHIN: Duration = Duration::from_secs(10);

/// A client of `server`, on `database`, with the collections created. Short
/// selection and operation deadlines keep each failed attempt of the outage
/// bounded; everything else is the library's default (`w: "majority"`).
async fn client(server: &OwnMongo, database: &str) -> MongoBackend {
    let config = MongoConfig::new(server.url())
        .database(database)
        .max_pool_size(4)
        .server_selection_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5));
    let mongo = MongoBackend::connect(&config).await.unwrap();
    mongo.create_collections::<Doc>().await.unwrap();
    mongo
}

/// Whether `error` is how a crashed server or a broken connection must be
/// reported: typed, and none of them claims the write was refused.
fn server_gone(error: &Error) -> bool {
    matches!(
        error,
        Error::ConnectionLost { .. }
            | Error::Connect { .. }
            | Error::Unavailable { .. }
            | Error::CommitOutcomeUnknown { .. }
            | Error::Timeout { .. }
            | Error::Retryable { .. }
    )
}

/// The variant's name, for the figure.
fn kind(error: &Error) -> String {
    let debug = format!("{error:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// What a writing task knows about one write or unit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The call returned `Ok`.
    Acknowledged,
    /// `CommitOutcomeUnknown`: committed or not.
    Unknown,
    /// A single insert's duplicate-key conflict with its own earlier attempt.
    OwnConflict,
    /// Any other (typed) error: its variant and its message.
    Failed(String, String),
}

/// One two-document unit named `unit` on `mongo`.
async fn commit_unit(mongo: &MongoBackend, unit: &str) -> Outcome {
    let attempt = async {
        let uow = mongo.begin().await?;
        let docs = uow.repo::<Doc>();
        docs.insert(&Doc::new(format!("{unit}-a"))).await?;
        docs.insert(&Doc::new(format!("{unit}-b"))).await?;
        uow.commit().await
    };
    outcome(attempt.await)
}

/// One single-document insert titled `title`, with id `id`, on `mongo`.
async fn insert_one(mongo: &MongoBackend, title: &str, id: Uuid) -> Outcome {
    let mut doc = Doc::new(title);
    doc.id = id;
    match mongo.repo::<Doc>().insert(&doc).await {
        // Every title is written by one call only: a conflict on it is
        // this call's own write, applied by an attempt whose reply was
        // lost, and the driver's automatic resend after the restart
        // (SecantusDB keeps its retryable-write records in memory; MongoDB
        // persists them with the write and would answer the resend with
        // the first reply). The caller checks the stored id.
        Err(Error::Conflict { .. }) => Outcome::OwnConflict,
        result => outcome(result.map(drop)),
    }
}

fn outcome(result: Result<(), Error>) -> Outcome {
    match result {
        Ok(()) => Outcome::Acknowledged,
        Err(Error::CommitOutcomeUnknown { .. }) => Outcome::Unknown,
        Err(error) => {
            assert!(server_gone(&error), "untyped: {error:?}");
            Outcome::Failed(kind(&error), error.to_string())
        }
    }
}

/// Every stored title and its document's id, read after recovery on a new
/// client.
async fn titles(server: &OwnMongo, database: &str) -> HashMap<String, Uuid> {
    let mongo = client(server, database).await;
    let docs = mongo.repo::<Doc>().find(Filter::all()).await.unwrap();
    mongo.close().await;
    docs.into_iter().map(|doc| (doc.title, doc.id)).collect()
}

/// How many of a unit's two documents are stored.
fn unit_parts(stored: &HashMap<String, Uuid>, unit: &str) -> usize {
    ["a", "b"]
        .iter()
        .filter(|part| stored.contains_key(&format!("{unit}-{part}")))
        .count()
}

/// Every stored document's unit (its title without the `-a`/`-b` part) has
/// both parts.
fn half_units(stored: &HashMap<String, Uuid>) -> Vec<String> {
    let mut parts: HashMap<&str, usize> = HashMap::new();
    for title in stored.keys() {
        if let Some(unit) = title
            .strip_suffix("-a")
            .or_else(|| title.strip_suffix("-b"))
            && unit.starts_with('u')
        {
            *parts.entry(unit).or_default() += 1;
        }
    }
    let mut half: Vec<String> = parts
        .into_iter()
        .filter(|&(_, n)| n != 2)
        .map(|(unit, _)| unit.to_owned())
        .collect();
    half.sort();
    half
}

/// `kill -9` while two tasks insert single documents and two commit
/// two-document units, all on one client; the server stays down 500 ms and
/// is started again on the same port and data directory. The tasks keep
/// going through the outage: every failure meanwhile is typed, every task
/// succeeds again within [`BACK_WITHIN`] of the restart on the same client
/// (no reconnect call), and afterwards every acknowledged write is stored,
/// every unit whole or absent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_restarted_mid_traffic_loses_no_acknowledged_write() {
    let Some(server) = OwnMongo::start() else {
        eprintln!("not run here: {}", OwnMongo::missing());
        return;
    };
    let database = unique_name("mongokill");
    let mongo = Arc::new(client(&server, &database).await);
    let stop = Arc::new(AtomicBool::new(false));
    let restarted: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let back = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (mongo, stop) = (Arc::clone(&mongo), Arc::clone(&stop));
            let (restarted, back) = (Arc::clone(&restarted), Arc::clone(&back));
            tokio::spawn(async move {
                let (mut outcomes, mut ids, mut back_after) = (Vec::new(), HashMap::new(), None);
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (name, outcome) = if task < 2 {
                        let name = format!("s{task}-{n}");
                        let id = Uuid::now_v7();
                        ids.insert(name.clone(), id);
                        let outcome = insert_one(&mongo, &name, id).await;
                        (name, outcome)
                    } else {
                        let name = format!("u{task}-{n}");
                        let outcome = commit_unit(&mongo, &name).await;
                        (name, outcome)
                    };
                    let since_restart = restarted.lock().unwrap().map(|at| at.elapsed());
                    match (&outcome, since_restart) {
                        (Outcome::Acknowledged, Some(after)) if back_after.is_none() => {
                            back_after = Some(after);
                            back.fetch_add(1, Ordering::Relaxed);
                        }
                        (Outcome::Acknowledged, _) => {}
                        // Not a busy loop against a dead server.
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                    outcomes.push((name, outcome));
                }
                (outcomes, ids, back_after)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let server = Arc::new(server);
    let killing = Arc::clone(&server);
    tokio::task::spawn_blocking(move || killing.kill_9())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let starting = Arc::clone(&server);
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .unwrap();
    *restarted.lock().unwrap() = Some(Instant::now());
    // Traffic goes on until every task is back (or BACK_WITHIN passed:
    // the assertions below then say which is not), and a little longer.
    let waiting = Instant::now();
    while back.load(Ordering::Relaxed) < 4 && waiting.elapsed() < BACK_WITHIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut outcomes, mut ids) = (Vec::new(), HashMap::new());
    let mut slowest_back = Duration::ZERO;
    for (task, joined) in futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .enumerate()
    {
        let (done, task_ids, back_after) = joined.unwrap();
        ids.extend(task_ids);
        let back_after = back_after.unwrap_or_else(|| {
            panic!(
                "task {task} had no success after the restart: {:?}",
                done.last()
            )
        });
        slowest_back = slowest_back.max(back_after);
        outcomes.extend(done);
    }
    assert!(
        slowest_back < BACK_WITHIN,
        "a task needed {slowest_back:?} after the restart"
    );
    let stored = titles(&server, &database).await;
    let (mut acknowledged, mut unknown, mut own_conflicts) = ([0_usize; 2], 0, 0);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (name, outcome) in &outcomes {
        let single = name.starts_with('s');
        match outcome {
            Outcome::Acknowledged => {
                acknowledged[usize::from(!single)] += 1;
                let present = if single {
                    stored.get(name) == ids.get(name)
                } else {
                    unit_parts(&stored, name) == 2
                };
                assert!(present, "acknowledged {name} lost\n{}", server.log_tail());
            }
            Outcome::Unknown => unknown += 1,
            Outcome::OwnConflict => {
                own_conflicts += 1;
                assert_eq!(
                    stored.get(name),
                    ids.get(name),
                    "{name}: a conflict with another"
                );
            }
            Outcome::Failed(kind, _) => *failures.entry(kind.clone()).or_default() += 1,
        }
    }
    let half = half_units(&stored);
    assert!(half.is_empty(), "half units: {half:?}");
    assert!(acknowledged.iter().all(|&n| n > 0), "{acknowledged:?}");
    mongo.close().await;
    eprintln!(
        "kill -9 mid-traffic (sync-on-commit): {} inserts and {} units acknowledged, all \
         present, no half unit; {unknown} commit outcomes unknown, {own_conflicts} resent inserts \
         refused as duplicates of themselves, errors meanwhile {failures:?}; every task back \
         {slowest_back:.2?} after the restart, same client",
        acknowledged[0], acknowledged[1]
    );
}

/// `kill -9` while 4 tasks commit two-document units (multi-document
/// transactions, `w: "majority"`): after the restart every acknowledged unit
/// is whole, every unit whose commit outcome was unknown is whole or
/// absent, every unit that failed otherwise is absent, and no unit is half
/// there. The same as `faults::pg_server`'s `kill -9` test, for MongoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_committing_units_keeps_every_acknowledged_unit_and_no_half_unit() {
    let Some(server) = OwnMongo::start() else {
        eprintln!("not run here: {}", OwnMongo::missing());
        return;
    };
    let database = unique_name("mongocrash");
    let mongo = Arc::new(client(&server, &database).await);
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let (mongo, stop) = (Arc::clone(&mongo), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let unit = format!("u{task}-{n}");
                    let outcome = commit_unit(&mongo, &unit).await;
                    let done = outcome != Outcome::Acknowledged;
                    outcomes.push((unit, outcome));
                    if done {
                        break;
                    }
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let server = Arc::new(server);
    let killing = Arc::clone(&server);
    tokio::task::spawn_blocking(move || killing.kill_9())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    // The tasks end once the in-flight unit fails; restart meanwhile, so a
    // commit resent after the restart learns its outcome from the server.
    let starting = Arc::clone(&server);
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .unwrap();
    let mut outcomes = Vec::new();
    for task in futures_util::future::join_all(tasks).await {
        outcomes.extend(task.unwrap());
    }
    let stored = titles(&server, &database).await;
    let (mut acknowledged, mut unknown) = (0, 0);
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (unit, outcome) in &outcomes {
        let present = unit_parts(&stored, unit);
        match outcome {
            Outcome::Acknowledged => {
                acknowledged += 1;
                assert_eq!(
                    present,
                    2,
                    "acknowledged {unit} lost\n{}",
                    server.log_tail()
                );
            }
            Outcome::Unknown => {
                unknown += 1;
                assert!(present == 0 || present == 2, "{unit}: {present} of 2");
            }
            Outcome::OwnConflict => unreachable!("units do not report OwnConflict"),
            Outcome::Failed(kind, error) => {
                assert_eq!(present, 0, "{unit} failed ({kind}: {error}) and is stored");
                *failures.entry(kind.clone()).or_default() += 1;
            }
        }
    }
    let half = half_units(&stored);
    assert!(half.is_empty(), "half units: {half:?}");
    assert!(acknowledged > 0);
    mongo.close().await;
    eprintln!(
        "kill -9 mid-commit (sync-on-commit): {acknowledged} units acknowledged and all present, \
         {unknown} unknown, failed before an answer {failures:?}; no half unit"
    );
}

/// A unit whose server was killed and restarted before its commit: the
/// restarted server no longer knows the transaction and answers
/// `NoSuchTransaction`. That answer cannot tell a transaction that never
/// committed from one whose first commit was applied before the crash (the
/// driver resends a commit after a network error, and SecantusDB keeps its
/// transaction table in memory: the kill test above saw units reported
/// retryable that were stored), so the unit reports `CommitOutcomeUnknown`,
/// never `Retryable`, which would invite running it a second time. Here it
/// did not commit, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_restarted_server_does_not_know_is_outcome_unknown_not_retryable() {
    let Some(server) = OwnMongo::start() else {
        eprintln!("not run here: {}", OwnMongo::missing());
        return;
    };
    let database = unique_name("mongoforgot");
    let mongo = client(&server, &database).await;
    let unit = mongo.begin().await.unwrap();
    unit.repo::<Doc>()
        .insert(&Doc::new("forgotten"))
        .await
        .unwrap();
    let server = Arc::new(server);
    let restarting = Arc::clone(&server);
    tokio::task::spawn_blocking(move || {
        restarting.kill_9();
        restarting.start_again();
    })
    .await
    .unwrap();
    let outcome = unit.commit().await;
    let error = outcome.expect_err("a transaction of the killed server committed");
    assert!(
        matches!(error, Error::CommitOutcomeUnknown { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    let stored = titles(&server, &database).await;
    assert!(stored.is_empty(), "{stored:?}");
    mongo.close().await;
    eprintln!(
        "commit after a kill -9 and restart: NoSuchTransaction reported as CommitOutcomeUnknown, \
         not retryable; nothing stored (it had not committed)"
    );
}
