//! Running Mongo migration files: a lock document, the ledger, checksums.
//!
//! The lock is a document `{_id: "lock", owner, expires}` in the ledger
//! collection, inserted (the unique `_id` makes one winner) and deleted by
//! its owner; a lock whose lease expired (a crashed migrator) is taken over.
//! Waiting is bounded by `lock_wait`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mongodb::Database;
use mongodb::bson::{Bson, DateTime, Document, doc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::LEDGER;
use crate::error::{Error, Result};
use crate::files::normalise;

/// How long a lock is valid without its owner finishing.
const LEASE: Duration = Duration::from_secs(600);

/// Whether error `code` from command `name` means it was already done: only
/// for the command it belongs to (a `collMod` on a missing collection is a
/// real failure, not "already done").
fn already_done(name: &str, code: i32) -> bool {
    matches!(
        (name, code),
        ("drop", 26) // NamespaceNotFound
            | ("dropIndexes", 26 | 27) // NamespaceNotFound, IndexNotFound
    )
}

/// `create` on a collection that exists (NamespaceExists, 48): the collection
/// may come from `create_collections` or a first insert, so the create's
/// validator is applied with `collMod` instead of being lost.
fn validator_of(create: &Document) -> Option<Document> {
    let collection = create.get_str("create").ok()?;
    let mut collmod = doc! { "collMod": collection };
    for key in ["validator", "validationLevel", "validationAction"] {
        if let Some(value) = create.get(key) {
            collmod.insert(key, value.clone());
        }
    }
    (collmod.len() > 1).then_some(collmod)
}

/// Codes of servers without search index commands (not Atlas, no mongot).
const NO_SEARCH: [i32; 4] = [59, 115, 31082, 6047401];

/// A Mongo migration file.
#[derive(Debug, Clone)]
pub(crate) struct MongoFile {
    pub(crate) version: i64,
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    checksum: String,
    up: Vec<Value>,
    down: Vec<Value>,
}

/// What [`apply_mongo`] or [`revert_mongo`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MongoApplied {
    /// Versions applied (or reverted).
    pub versions: Vec<i64>,
    /// Search index commands the server does not offer, skipped.
    pub skipped: Vec<String>,
}

/// Every `<version>_<name>.json` in `dir`, by version.
pub(crate) fn load(dir: &Path) -> Result<Vec<MongoFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some((version, name)) = file_name
            .strip_suffix(".json")
            .and_then(|stem| stem.split_once('_'))
        else {
            continue;
        };
        let bad = |message: String| Error::BadFile {
            path: path.clone(),
            message,
        };
        let version: i64 = version
            .parse()
            .map_err(|_| bad("expected an integer version before `_`".to_owned()))?;
        let text = normalise(&std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?);
        let json: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let commands = |key: &str| json[key].as_array().cloned().unwrap_or_default();
        files.push(MongoFile {
            version,
            name: name.to_owned(),
            checksum: hex(&Sha256::digest(text.as_bytes())),
            up: commands("up"),
            down: commands("down"),
            path,
        });
    }
    files.sort_by_key(|f| f.version);
    Ok(files)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies the pending Mongo migrations in `dir` to `db`.
pub async fn apply_mongo(dir: &Path, db: &Database, lock_wait: Duration) -> Result<MongoApplied> {
    let files = load(dir)?;
    let lock = Lock::take(db, lock_wait).await?;
    let outcome = apply_locked(db, &files).await;
    lock.release(db).await?;
    outcome
}

async fn apply_locked(db: &Database, files: &[MongoFile]) -> Result<MongoApplied> {
    let applied = verify(db, files).await?;
    let ledger = db.collection::<Document>(LEDGER);
    let mut done = MongoApplied::default();
    for file in files.iter().filter(|f| !applied.contains(&f.version)) {
        run_commands(db, file, &file.up, &mut done.skipped).await?;
        ledger
            .insert_one(doc! {
                "_id": file.version,
                "name": &file.name,
                "checksum": &file.checksum,
                "applied_at": DateTime::now(),
            })
            .await
            .map_err(Error::Mongo)?;
        done.versions.push(file.version);
    }
    Ok(done)
}

/// Reverts applied Mongo migrations newer than `target` (only the newest when `None`).
pub async fn revert_mongo(
    dir: &Path,
    db: &Database,
    lock_wait: Duration,
    target: Option<i64>,
) -> Result<MongoApplied> {
    let files = load(dir)?;
    let lock = Lock::take(db, lock_wait).await?;
    let outcome = revert_locked(db, &files, target).await;
    lock.release(db).await?;
    outcome
}

async fn revert_locked(
    db: &Database,
    files: &[MongoFile],
    target: Option<i64>,
) -> Result<MongoApplied> {
    let mut applied = verify(db, files).await?;
    applied.sort_unstable_by(|a, b| b.cmp(a));
    let target = target.unwrap_or_else(|| applied.get(1).copied().unwrap_or(0));
    let mut done = MongoApplied::default();
    for version in applied.into_iter().filter(|v| *v > target) {
        let file = files
            .iter()
            .find(|f| f.version == version)
            .ok_or(Error::MissingFile(version))?;
        run_commands(db, file, &file.down, &mut done.skipped).await?;
        db.collection::<Document>(LEDGER)
            .delete_one(doc! {"_id": version})
            .await
            .map_err(Error::Mongo)?;
        done.versions.push(version);
    }
    Ok(done)
}

/// The applied versions, after checking each still has its file and content.
async fn verify(db: &Database, files: &[MongoFile]) -> Result<Vec<i64>> {
    use futures_util::TryStreamExt;
    let ledger = db.collection::<Document>(LEDGER);
    let rows: Vec<Document> = ledger
        .find(doc! {"_id": {"$type": "long"}})
        .await
        .map_err(Error::Mongo)?
        .try_collect()
        .await
        .map_err(Error::Mongo)?;
    let mut applied = Vec::new();
    for row in rows {
        let version = row.get_i64("_id").unwrap_or_default();
        let file = files
            .iter()
            .find(|f| f.version == version)
            .ok_or(Error::MissingFile(version))?;
        if row.get_str("checksum").ok() != Some(file.checksum.as_str()) {
            return Err(Error::ChecksumMismatch {
                version,
                path: file.path.clone(),
            });
        }
        applied.push(version);
    }
    Ok(applied)
}

async fn run_commands(
    db: &Database,
    file: &MongoFile,
    commands: &[Value],
    skipped: &mut Vec<String>,
) -> Result<()> {
    for command in commands {
        let document = to_document(command);
        let name = document.keys().next().cloned().unwrap_or_default();
        if document.contains_key(super::backfill::STEP) {
            super::backfill::run(db, &document, file.version, &file.path).await?;
            continue;
        }
        let Err(e) = db.run_command(document.clone()).await else {
            continue;
        };
        let code = match &*e.kind {
            mongodb::error::ErrorKind::Command(c) => Some(c.code),
            _ => None,
        };
        let search = name.ends_with("SearchIndexes") || name.ends_with("SearchIndex");
        match code {
            Some(code) if already_done(&name, code) => {}
            Some(48) if name == "create" => {
                if let Some(collmod) = validator_of(&document) {
                    db.run_command(collmod)
                        .await
                        .map_err(|source| Error::MongoCommand {
                            version: file.version,
                            path: file.path.clone(),
                            source,
                        })?;
                }
            }
            Some(code) if search && NO_SEARCH.contains(&code) => {
                skipped.push(format!(
                    "{}: {name} (the server has no search indexes)",
                    file.path.display()
                ));
            }
            _ => {
                return Err(Error::MongoCommand {
                    version: file.version,
                    path: file.path.clone(),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

/// The commands a file may hold: the server takes a command's name from
/// its first key, and the file's JSON objects do not keep their key order
/// (`updateSearchIndex` sorts after `definition` and `name`).
const COMMANDS: [&str; 9] = [
    "create",
    "createIndexes",
    "dropIndexes",
    "collMod",
    "drop",
    "createSearchIndexes",
    "updateSearchIndex",
    "dropSearchIndex",
    super::backfill::STEP,
];

/// JSON to a BSON command, its name first; an index's `key` given as
/// `[[field, direction], ...]` becomes the ordered key document.
fn to_document(value: &Value) -> Document {
    let Bson::Document(d) = to_bson(value, false) else {
        return Document::new();
    };
    let Some(name) = COMMANDS.iter().find(|c| d.contains_key(**c)) else {
        return d;
    };
    let mut command = Document::new();
    if let Some(value) = d.get(*name) {
        command.insert(*name, value.clone());
    }
    command.extend(d.into_iter().filter(|(k, _)| k != name));
    command
}

fn to_bson(value: &Value, pairs_as_document: bool) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            (None, Some(f)) => Bson::Double(f),
            _ => Bson::Null,
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) if pairs_as_document => {
            let mut d = Document::new();
            for pair in items {
                if let Some(field) = pair[0].as_str() {
                    d.insert(field, to_bson(&pair[1], false));
                }
            }
            Bson::Document(d)
        }
        Value::Array(items) => Bson::Array(items.iter().map(|v| to_bson(v, false)).collect()),
        Value::Object(map) => {
            let mut d = Document::new();
            for (k, v) in map {
                d.insert(k, to_bson(v, k == "key" && v.is_array()));
            }
            Bson::Document(d)
        }
    }
}

/// The migration lock: a document only its owner deletes.
struct Lock {
    owner: String,
}

impl Lock {
    async fn take(db: &Database, wait: Duration) -> Result<Lock> {
        let ledger = db.collection::<Document>(LEDGER);
        let owner = format!(
            "{}-{}",
            std::process::id(),
            DateTime::now().timestamp_millis()
        );
        let deadline = Instant::now() + wait;
        loop {
            let expires = DateTime::from_millis(
                DateTime::now().timestamp_millis() + LEASE.as_millis() as i64,
            );
            let inserted = ledger
                .insert_one(doc! {"_id": "lock", "owner": &owner, "expires": expires})
                .await;
            match inserted {
                Ok(_) => return Ok(Lock { owner }),
                Err(e) if is_duplicate(&e) => {}
                Err(e) => return Err(Error::Mongo(e)),
            }
            // A crashed migrator's lock expires; take it over.
            ledger
                .delete_one(doc! {"_id": "lock", "expires": {"$lt": DateTime::now()}})
                .await
                .map_err(Error::Mongo)?;
            if Instant::now() >= deadline {
                return Err(Error::LockTimeout(wait));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn release(self, db: &Database) -> Result<()> {
        db.collection::<Document>(LEDGER)
            .delete_one(doc! {"_id": "lock", "owner": &self.owner})
            .await
            .map_err(Error::Mongo)?;
        Ok(())
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
            w.code == 11000
        }
        mongodb::error::ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The server reads a command's name from its first key.
    #[test]
    fn the_command_name_comes_first_whatever_the_json_order() {
        let update = json!({"updateSearchIndex": "c", "name": "i", "definition": {"fields": []}});
        let command = to_document(&update);
        assert_eq!(
            command.keys().next().map(String::as_str),
            Some("updateSearchIndex")
        );
        assert_eq!(command.len(), 3);
        let create = to_document(&json!({"createIndexes": "c", "indexes": [{"key": [["a", 1]]}]}));
        assert_eq!(
            create.keys().next().map(String::as_str),
            Some("createIndexes")
        );
    }
}
