//! The Mongo half of the command line: run after the Postgres half when the
//! application registered collections with `Schemas::add_mongo`.

use std::path::Path;
use std::time::Duration;

use mongodb::Client;

use super::{apply_mongo, dir, generate_plan, is_mongo_stale, revert_mongo};
use crate::error::{Error, Result};
use crate::schemas::Schemas;

/// `generate` for the collections.
pub(crate) fn generate(schemas: &Schemas, root: &Path, name: &str, allow: bool) -> Result<()> {
    match generate_plan(schemas, root, name, allow)? {
        Some((path, plan)) => {
            println!("wrote {}", path.display());
            for note in plan.notes {
                println!("  {note}");
            }
        }
        None => println!("no changes: the collections match {}", dir(root).display()),
    }
    Ok(())
}

/// The database named by `--mongo-url` or `MONGODB_URL` (its path, else `reposmith`).
async fn database(url: Option<&str>) -> Result<mongodb::Database> {
    let url = match url {
        Some(url) => url.to_owned(),
        None => std::env::var("MONGODB_URL")
            .map_err(|_| Error::Usage("set MONGODB_URL or pass --mongo-url".to_owned()))?,
    };
    let client = Client::with_uri_str(&url).await.map_err(Error::Mongo)?;
    Ok(client
        .default_database()
        .unwrap_or_else(|| client.database("reposmith")))
}

/// `apply` (or `revert` when `revert` is `Some`) for the collections.
pub(crate) async fn run(
    root: &Path,
    url: Option<&str>,
    wait: Duration,
    revert: Option<Option<i64>>,
) -> Result<()> {
    let db = database(url).await?;
    let outcome = match revert {
        None => apply_mongo(&dir(root), &db, wait).await?,
        Some(target) => revert_mongo(&dir(root), &db, wait, target).await?,
    };
    let verb = if revert.is_some() {
        "reverted"
    } else {
        "applied"
    };
    println!("mongo: {verb} {:?}", outcome.versions);
    for skipped in outcome.skipped {
        println!("mongo: skipped {skipped}");
    }
    Ok(())
}

/// `check` for the collections: staleness (the hint names `program`), then live drift.
pub(crate) async fn check(
    schemas: &Schemas,
    root: &Path,
    url: Option<&str>,
    program: &str,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if is_mongo_stale(schemas, root)? {
        problems.push(format!(
            "the Mongo entities changed since the last generated migration in {}: run `{program} generate <name>`",
            dir(root).display()
        ));
    }
    let db = database(url).await?;
    problems.extend(super::drift_mongo(&db, &schemas.mongo_snapshot()).await?);
    Ok(problems)
}
