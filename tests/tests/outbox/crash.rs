//! Processes killed with SIGKILL at the outbox's failpoints: a producer
//! right after COMMIT, and a relay after it locked a batch (before the
//! destination ran) and after the destination applied its effects (before
//! the rows were marked done). After each kill a fresh relay finishes the
//! work: no job is lost, duplicate deliveries are counted, and the
//! idempotency guard keeps the effects at exactly one.
//!
//! The child is this test binary run again on the ignored test `child`,
//! with its role in the environment.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reposmith::outbox::{Deliver, OutboxMessage, Receipt, Relay};
use reposmith::postgres::sqlx;
use reposmith::{BoxFuture, Filter, PgBackend, Repository};
use reposmith_tests::conformance::entities::Doc;

use super::fixture::OutboxDb;
use super::{Embed, Shared, drain_pending};

const ROLE: &str = "REPOSMITH_OUTBOX_CHILD";
const URL: &str = "REPOSMITH_OUTBOX_CHILD_URL";

/// Where a child relay stops forever (and is killed).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Failpoint {
    /// The batch is locked; the destination has not run.
    BeforeEffects,
    /// The destination committed its effects; the rows are not marked.
    AfterEffects,
}

/// A destination that counts each delivery in `deliveries` and applies
/// the job's effect (a `Doc` row) through the idempotency guard; in a
/// child it then announces the failpoint and hangs.
#[derive(Debug)]
struct Effects {
    pg: PgBackend,
    hang_at: Option<Failpoint>,
}

impl Effects {
    async fn apply(&self, message: &OutboxMessage) -> reposmith::Result<()> {
        sqlx::query("INSERT INTO deliveries (id) VALUES ($1)")
            .bind(message.id)
            .execute(self.pg.pool())
            .await
            .map_err(|e| self.pg.map_error(e))?;
        let receipt = Receipt::new(
            "outbox-test",
            message.id.to_string(),
            message.id.to_string(),
        )?;
        let title = format!("effect of {}", message.id);
        self.pg
            .run_once(&receipt, insert_doc(title))
            .await
            .map(drop)
    }

    async fn hang(&self, at: Failpoint) {
        if self.hang_at == Some(at) {
            println!("FAILPOINT {at:?}");
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
    }
}

impl Deliver for Effects {
    fn deliver<'a>(
        &'a self,
        messages: &'a [OutboxMessage],
    ) -> BoxFuture<'a, Vec<reposmith::Result<()>>> {
        Box::pin(async move {
            self.hang(Failpoint::BeforeEffects).await;
            let mut outcomes = Vec::new();
            for message in messages {
                outcomes.push(self.apply(message).await);
            }
            self.hang(Failpoint::AfterEffects).await;
            outcomes
        })
    }
}

fn insert_doc(
    title: String,
) -> impl for<'u> FnOnce(&'u reposmith::PgUnitOfWork) -> BoxFuture<'u, reposmith::Result<()>> {
    move |unit| Box::pin(async move { unit.repo::<Doc>().insert(&Doc::new(title)).await.map(drop) })
}

/// The child's body: a role from the environment, then hang until killed.
#[tokio::test]
#[ignore = "run by the crash tests as a child process"]
async fn child() {
    let (Ok(role), Ok(url)) = (std::env::var(ROLE), std::env::var(URL)) else {
        return;
    };
    let pg = OutboxDb::connect(&url).await;
    match role.as_str() {
        "commit" => {
            let unit = pg.begin().await.unwrap();
            unit.repo::<Doc>()
                .insert(&Doc::new("producer"))
                .await
                .unwrap();
            let id = unit.enqueue(&Embed { n: 77 }).unwrap();
            unit.commit().await.unwrap();
            println!("FAILPOINT committed {id}");
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        "before-effects" | "after-effects" => {
            let hang_at = match role.as_str() {
                "before-effects" => Failpoint::BeforeEffects,
                _ => Failpoint::AfterEffects,
            };
            // A pool of their own, as in the parent (see there).
            let effects = Effects {
                pg: OutboxDb::connect(&url).await,
                hang_at: Some(hang_at),
            };
            let relay = Relay::new(&pg).queues(effects);
            relay.relay_once().await.unwrap();
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Runs the child in `role` until it prints its failpoint, then kills it
/// with SIGKILL. Returns the failpoint line.
fn run_and_kill(role: &str, url: &str) -> String {
    let mut child: Child = Command::new(std::env::current_exe().unwrap())
        .args([
            "outbox::crash::child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(ROLE, role)
        .env(URL, url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sent, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("FAILPOINT") {
                let _ = sent.send(line);
                return;
            }
        }
    });
    let line = received.recv_timeout(Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    line.unwrap_or_else(|_| panic!("child {role} never reached its failpoint"))
}

#[tokio::test]
async fn a_producer_killed_right_after_commit_loses_no_job() {
    let db = OutboxDb::new().await;
    let line = run_and_kill("commit", &db.url);
    let id: uuid::Uuid = line.rsplit(' ').next().unwrap().parse().unwrap();
    let recorder = Shared::default();
    drain_pending(&Relay::new(&db.pg).queues(recorder.clone()), &db.pg).await;
    assert_eq!(
        recorder.0.ids(),
        [id],
        "the committed job reached the queue once"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn relays_killed_mid_delivery_lose_nothing_and_effects_apply_once() {
    let db = OutboxDb::new().await;
    sqlx::raw_sql("CREATE TABLE deliveries (id uuid NOT NULL)")
        .execute(db.pg.pool())
        .await
        .unwrap();
    let rounds = [
        ("before-effects", 0),
        ("after-effects", 1),
        ("before-effects", 0),
        ("after-effects", 1),
    ];
    let mut duplicates = 0;
    for (n, (role, killed_after_delivering)) in rounds.into_iter().enumerate() {
        let unit = db.pg.begin().await.unwrap();
        let id = unit.enqueue(&Embed { n: n as u32 }).unwrap();
        unit.commit().await.unwrap();
        run_and_kill(role, &db.url);
        // The killed relay's locks went with its connection: a new relay
        // takes the row again and finishes it.
        // The effects write through a pool of their own: a relay pass holds
        // its connection while destinations run (see the relay's docs), so
        // on the relay's pool a pool-of-one run could never deliver.
        let effects = Effects {
            pg: OutboxDb::connect(&db.url).await,
            hang_at: None,
        };
        drain_pending(&Relay::new(&db.pg).queues(effects), &db.pg).await;
        let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(db.pg.pool())
            .await
            .unwrap();
        assert_eq!(
            deliveries,
            1 + killed_after_delivering,
            "{role}: deliveries of {id}"
        );
        duplicates += deliveries - 1;
    }
    let effects = db.pg.repo::<Doc>().count(Filter::all()).await.unwrap();
    assert_eq!(effects, 4, "each job's effect committed exactly once");
    let stats = reposmith::outbox::Outbox::new(&db.pg)
        .stats()
        .await
        .unwrap();
    assert_eq!((stats.pending, stats.done), (0, 4));
    println!(
        "4 relays killed, 4 jobs done, {duplicates} duplicate deliveries absorbed by the guard"
    );
    db.cleanup().await;
}
