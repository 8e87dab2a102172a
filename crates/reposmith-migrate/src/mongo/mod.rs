//! MongoDB migrations: JSON command files beside the Postgres ones (in
//! `<dir>/mongo/`), with their own snapshot, ledger collection
//! ([`LEDGER`]) and lock document.
//!
//! A file is `{"generated": .., "destructive": [..], "up": [..], "down": [..]}`
//! where each entry is a database command document (`create` with a
//! `$jsonSchema` validator, `createIndexes`, `dropIndexes`, `collMod`,
//! `drop`, `createSearchIndexes`, `updateSearchIndex`, `dropSearchIndex`),
//! run in order with `runCommand`. MongoDB has no transactional DDL, so
//! instead a rerun after a failure is safe: "already exists" and "not found"
//! answers to create and drop commands count as done. Search index commands
//! exist only on Atlas (or with mongot); on other servers they are skipped
//! and reported.

mod apply;
mod check;
pub(crate) mod cli;
mod model;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use apply::{MongoApplied, apply_mongo, revert_mongo};
pub use check::drift_mongo;
pub use model::{Collection, MongoSnapshot};

use crate::error::{Error, Result};
use crate::files::HEADER;
use crate::schemas::Schemas;

/// The ledger collection: one document per applied version, plus the lock.
pub const LEDGER: &str = "reposmith_migrations";

/// The Mongo migrations directory inside the migrations directory.
pub fn dir(root: &Path) -> PathBuf {
    root.join("mongo")
}

/// The commands of one Mongo migration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MongoPlan {
    /// Commands to run, in order.
    pub up: Vec<Value>,
    /// Commands that undo them, in order.
    pub down: Vec<Value>,
    /// Why some commands lose data.
    pub destructive: Vec<String>,
}

#[derive(Default)]
struct Planner {
    steps: Vec<(Vec<Value>, Vec<Value>)>,
    destructive: Vec<String>,
}

impl Planner {
    fn step(&mut self, up: Vec<Value>, down: Vec<Value>) {
        self.steps.push((up, down));
    }
}

/// The commands from `old` to `new`; dropping a collection is refused unless allowed.
pub fn plan(
    old: &MongoSnapshot,
    new: &MongoSnapshot,
    allow_destructive: bool,
) -> Result<MongoPlan> {
    let mut p = Planner::default();
    let kept: Vec<(&Collection, &Collection)> = new
        .collections
        .iter()
        .filter_map(|c| Some((old.collection(&c.name)?, c)))
        .collect();
    for (before, after) in &kept {
        for index in &before.indexes {
            let new = after.index(name(index));
            if let Some(new) = new.filter(|new| only_ttl_differs(index, new)) {
                p.step(vec![ttl_mod(after, new)], vec![ttl_mod(before, index)]);
                continue;
            }
            if new != Some(index) {
                p.step(
                    vec![drop_index(before, index)],
                    vec![create_indexes(before, &[index])],
                );
            }
        }
    }
    for c in new
        .collections
        .iter()
        .filter(|c| old.collection(&c.name).is_none())
    {
        p.step(create_collection(c), vec![json!({"drop": c.name})]);
    }
    for (before, after) in &kept {
        if before.validator != after.validator {
            p.step(vec![coll_mod(after)], vec![coll_mod(before)]);
        }
        search_changes(&mut p, before, after);
    }
    for c in old
        .collections
        .iter()
        .filter(|c| new.collection(&c.name).is_none())
    {
        p.destructive
            .push(format!("drops collection {} and its documents", c.name));
        p.step(vec![json!({"drop": c.name})], create_collection(c));
    }
    for (before, after) in &kept {
        for index in &after.indexes {
            let old = before.index(name(index));
            if old != Some(index) && !old.is_some_and(|old| only_ttl_differs(old, index)) {
                p.step(
                    vec![create_indexes(after, &[index])],
                    vec![drop_index(after, index)],
                );
            }
        }
    }
    if !allow_destructive && !p.destructive.is_empty() {
        return Err(Error::Destructive(p.destructive));
    }
    let up = p.steps.iter().flat_map(|(up, _)| up.clone()).collect();
    let down = p
        .steps
        .iter()
        .rev()
        .flat_map(|(_, down)| down.clone())
        .collect();
    Ok(MongoPlan {
        up,
        down,
        destructive: p.destructive,
    })
}

fn name(spec: &Value) -> &str {
    spec["name"].as_str().unwrap_or_default()
}

/// Two specs of one index that differ in their TTL only: `collMod` changes it in place.
fn only_ttl_differs(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("expireAfterSeconds");
        }
        v
    };
    a != b
        && strip(a) == strip(b)
        && a.get("expireAfterSeconds").is_some()
        && b.get("expireAfterSeconds").is_some()
}

fn ttl_mod(c: &Collection, spec: &Value) -> Value {
    json!({"collMod": c.name, "index": {"name": name(spec), "expireAfterSeconds": spec["expireAfterSeconds"]}})
}

fn create_collection(c: &Collection) -> Vec<Value> {
    let mut commands = vec![json!({"create": c.name, "validator": c.validator})];
    if !c.indexes.is_empty() {
        commands.push(create_indexes(c, &c.indexes.iter().collect::<Vec<_>>()));
    }
    if !c.search_indexes.is_empty() {
        commands.push(json!({"createSearchIndexes": c.name, "indexes": c.search_indexes}));
    }
    commands
}

fn create_indexes(c: &Collection, specs: &[&Value]) -> Value {
    json!({"createIndexes": c.name, "indexes": specs})
}

fn drop_index(c: &Collection, spec: &Value) -> Value {
    json!({"dropIndexes": c.name, "index": name(spec)})
}

fn coll_mod(c: &Collection) -> Value {
    json!({"collMod": c.name, "validator": c.validator, "validationLevel": "strict"})
}

fn search_changes(p: &mut Planner, before: &Collection, after: &Collection) {
    let create =
        |c: &Collection, spec: &Value| json!({"createSearchIndexes": c.name, "indexes": [spec]});
    let drop =
        |c: &Collection, spec: &Value| json!({"dropSearchIndex": c.name, "name": name(spec)});
    let update = |c: &Collection, spec: &Value| json!({"updateSearchIndex": c.name, "name": name(spec), "definition": spec["definition"]});
    for spec in &before.search_indexes {
        match after.search_index(name(spec)) {
            None => p.step(vec![drop(before, spec)], vec![create(before, spec)]),
            Some(new) if new != spec => {
                p.step(vec![update(after, new)], vec![update(before, spec)])
            }
            Some(_) => {}
        }
    }
    for spec in &after.search_indexes {
        if before.search_index(name(spec)).is_none() {
            p.step(vec![create(after, spec)], vec![drop(after, spec)]);
        }
    }
}

/// Diffs the Mongo entities of `schemas` against `root/mongo/snapshot.json`
/// and writes `root/mongo/<version>_<name>.json` and the new snapshot.
/// Returns the file written, if anything changed.
pub fn generate_mongo(
    schemas: &Schemas,
    root: &Path,
    name: &str,
    allow_destructive: bool,
) -> Result<Option<PathBuf>> {
    let dir = dir(root);
    let old = read_snapshot(&dir)?;
    let new = schemas.mongo_snapshot();
    let plan = plan(&old, &new, allow_destructive)?;
    if plan.up.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let version = apply::load(&dir)?
        .iter()
        .map(|f| f.version)
        .max()
        .unwrap_or(0)
        + 1;
    let path = dir.join(format!("{version:04}_{}.json", crate::files::slug(name)));
    let file = json!({
        "generated": HEADER.trim_start_matches("-- "),
        "destructive": plan.destructive,
        "up": plan.up,
        "down": plan.down,
    });
    write_json(&path, &file)?;
    write_json(
        &dir.join(crate::files::SNAPSHOT_FILE),
        &serde_json::to_value(&new).unwrap_or_default(),
    )?;
    Ok(Some(path))
}

/// True when the Mongo entities changed since the last `generate`.
pub fn is_mongo_stale(schemas: &Schemas, root: &Path) -> Result<bool> {
    Ok(read_snapshot(&dir(root))? != schemas.mongo_snapshot())
}

fn read_snapshot(dir: &Path) -> Result<MongoSnapshot> {
    let path = dir.join(crate::files::SNAPSHOT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|source| Error::Snapshot { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(MongoSnapshot::default()),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| Error::Snapshot {
        path: path.to_owned(),
        source,
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
