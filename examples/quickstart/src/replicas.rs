//! Step 15 of the quickstart: reads on a streaming replica, and a user who
//! never sees their own write missing.
//!
//! A backend given a replica sends pool reads there; a write in a
//! `Session` records its commit's WAL position, and the session's next read
//! waits on the replica until it has replayed that position (or runs on the
//! primary after the deadline). The read counters show which server
//! answered each read.

use reposmith::postgres::{ReadStats, ReplicaConfig, Session};
use reposmith::prelude::*;
use reposmith::{PgBackend, PgConfig};

use crate::domain::Document;

/// Connects a backend reading from `replica_url`, writes in a session and
/// reads the write back, printing which server answered each read.
pub async fn read_your_writes(primary: &PgConfig, replica_url: &str) -> Result<()> {
    let config = primary.clone().replicas(ReplicaConfig::new([replica_url]));
    let pg = PgBackend::connect(&config).await?;
    for replica in pg.replicas() {
        println!(
            "15. replica {}: up {}, {} bytes of WAL behind the primary",
            replica.name, replica.up, replica.lag_bytes
        );
    }
    let docs = pg.repo::<Document>();
    let before = pg.read_stats();
    let total = docs.count(Filter::all()).await?;
    println!(
        "    count() = {total}: {}",
        answered(before, pg.read_stats())
    );

    // The session travels with the user, e.g. as a cookie holding its token.
    let session = Session::new();
    let mine = docs.clone().in_session(&session);
    let doc = Document::fetched(
        "https://example.com/replica-demo",
        "Written just now",
        "en",
        &[],
    );
    let saved = mine.insert(&doc).await?;
    let token = session.token();
    println!("    inserted in a session: its commit is at WAL position {token}");
    let next_request = pg.repo::<Document>().in_session(&Session::resume(&token)?);
    let before = pg.read_stats();
    let found = next_request.get(&saved.id).await?;
    println!(
        "    get() in the session found it: {}; {}",
        found.is_some(),
        answered(before, pg.read_stats())
    );
    let before = pg.read_stats();
    docs.clone().on_primary().get(&saved.id).await?;
    println!(
        "    on_primary().get(): {}",
        answered(before, pg.read_stats())
    );
    docs.delete(&saved.id).await?;
    pg.close().await;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::config(
            "quickstart",
            "the session's read missed its own write",
        )),
    }
}

/// Which server answered the reads between `before` and `after`.
fn answered(before: ReadStats, after: ReadStats) -> String {
    let waited = match after.waits - before.waits {
        0 => String::new(),
        _ => format!(
            " after waiting {} µs for the replica to replay the commit",
            after.waited_us - before.waited_us
        ),
    };
    match (
        after.replicas - before.replicas,
        after.fallbacks - before.fallbacks,
    ) {
        (1, _) => format!("answered by the replica{waited}"),
        (_, 1) => format!("answered by the primary (fallback){waited}"),
        _ => format!("answered by the primary{waited}"),
    }
}
