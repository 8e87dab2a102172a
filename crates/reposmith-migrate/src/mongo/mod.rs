//! MongoDB migrations: JSON command files beside the Postgres ones (in
//! `<dir>/mongo/`), with their own snapshot, ledger collection
//! ([`LEDGER`]) and lock document.
//!
//! A file is `{"generated": .., "destructive": [..], "up": [..], "down": [..]}`
//! where each entry is a database command document (`create` with a
//! `$jsonSchema` validator, `createIndexes`, `dropIndexes`, `collMod`,
//! `drop`, `createSearchIndexes`, `updateSearchIndex`, `dropSearchIndex`),
//! run in order with `runCommand`, or a step reposmith runs itself:
//! `backfill` ([`backfill`]), which gives the documents stored before an
//! entity soft-deleted its soft-delete key, before the partial indexes that
//! depend on it are built. MongoDB has no transactional DDL, so
//! instead a rerun after a failure is safe: "already exists" and "not found"
//! answers to create and drop commands count as done. Search index commands
//! exist only on Atlas (or with mongot); on other servers they are skipped
//! and reported.

mod apply;
pub mod backfill;
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
    /// What the steps that are not plain commands do (a [`backfill`]),
    /// one readable line each: written into the file and printed by
    /// `generate`.
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Planner {
    steps: Vec<(Vec<Value>, Vec<Value>)>,
    destructive: Vec<String>,
    notes: Vec<String>,
}

impl Planner {
    fn step(&mut self, up: Vec<Value>, down: Vec<Value>) {
        self.steps.push((up, down));
    }

    /// A new collection: created, its soft-delete key backfilled (the
    /// collection may already hold documents: `create` on an existing one
    /// only applies the validator), then its indexes.
    fn create(&mut self, c: &Collection) {
        if let Some(key) = &c.soft_delete {
            self.notes.push(backfill::note(&c.name, key));
        }
        self.step(create_collection(c), vec![json!({"drop": c.name})]);
    }

    /// A kept collection that starts soft-deleting: its documents without
    /// the key get `key: null` (live), before the partial unique indexes,
    /// which cover only documents whose key is `null`, are built. Not
    /// undone by `down`: the older entity does not read the key.
    fn backfill(&mut self, before: &Collection, after: &Collection) {
        let Some(key) = &after.soft_delete else {
            return;
        };
        if before.soft_delete.as_ref() != Some(key) {
            self.notes.push(backfill::note(&after.name, key));
            self.step(vec![backfill::command(&after.name, key)], Vec::new());
        }
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
        p.create(c);
    }
    for (before, after) in &kept {
        if before.validator != after.validator {
            p.step(vec![coll_mod(after)], vec![coll_mod(before)]);
        }
        // After the validator (which admits `null`), before the indexes.
        p.backfill(before, after);
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
        notes: p.notes,
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
    if let Some(key) = &c.soft_delete {
        commands.push(backfill::command(&c.name, key));
    }
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
    Ok(generate_plan(schemas, root, name, allow_destructive)?.map(|(path, _)| path))
}

/// [`generate_mongo`], also returning the plan written (the command line
/// prints its notes).
pub(crate) fn generate_plan(
    schemas: &Schemas,
    root: &Path,
    name: &str,
    allow_destructive: bool,
) -> Result<Option<(PathBuf, MongoPlan)>> {
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
    let mut file = json!({
        "generated": HEADER.trim_start_matches("-- "),
        "destructive": plan.destructive,
        "up": plan.up,
        "down": plan.down,
    });
    if !plan.notes.is_empty() {
        file["notes"] = json!(plan.notes);
    }
    write_json(&path, &file)?;
    write_json(
        &dir.join(crate::files::SNAPSHOT_FILE),
        &serde_json::to_value(&new).unwrap_or_default(),
    )?;
    Ok(Some((path, plan)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn notes(soft_delete: Option<&str>) -> Collection {
        let mut index = json!({"key": [["slug", 1]], "name": "notes_slug_key", "unique": true});
        if let Some(key) = soft_delete {
            index["partialFilterExpression"] = json!({key: {"$type": "null"}});
        }
        Collection {
            name: "notes".to_owned(),
            indexes: vec![index],
            validator: json!({"$jsonSchema": {"soft": soft_delete}}),
            search_indexes: Vec::new(),
            soft_delete: soft_delete.map(str::to_owned),
        }
    }

    fn first_key(command: &Value) -> &str {
        command
            .as_object()
            .and_then(|m| m.keys().next())
            .map_or("", |k| k.as_str())
    }

    fn snapshot(c: Collection) -> MongoSnapshot {
        MongoSnapshot {
            collections: vec![c],
        }
    }

    /// Gaining soft delete: the backfill runs after the validator admits
    /// `null` and before the partial index is built; noted, not undone.
    #[test]
    fn gaining_soft_delete_backfills_before_the_partial_indexes() {
        let old = snapshot(notes(None));
        let new = snapshot(notes(Some("deleted_at")));
        let plan = plan(&old, &new, false).unwrap();
        let order: Vec<&str> = plan.up.iter().map(first_key).collect();
        // serde_json sorts keys: `backfill` sorts first in its own entry.
        assert_eq!(
            order,
            ["dropIndexes", "collMod", "backfill", "createIndexes"]
        );
        assert_eq!(plan.up[2], backfill::command("notes", "deleted_at"));
        assert!(!plan.down.iter().any(|c| first_key(c) == "backfill"));
        assert_eq!(plan.notes, [backfill::note("notes", "deleted_at")]);
        // Already soft-deleting: nothing to backfill.
        let again = plan_of(&new, &new);
        assert!(again.up.is_empty() && again.notes.is_empty());
    }

    fn plan_of(old: &MongoSnapshot, new: &MongoSnapshot) -> MongoPlan {
        plan(old, new, false).unwrap()
    }

    /// A new collection may already hold documents (`create` then only
    /// applies the validator): its backfill comes before its indexes too.
    #[test]
    fn a_new_soft_deleting_collection_backfills_before_its_indexes() {
        let plan = plan_of(
            &MongoSnapshot::default(),
            &snapshot(notes(Some("deleted_at"))),
        );
        let order: Vec<&str> = plan.up.iter().map(first_key).collect();
        assert_eq!(order, ["create", "backfill", "createIndexes"]);
        assert_eq!(plan.notes.len(), 1);
    }

    /// A snapshot written before `soft_delete` existed reads back equal.
    #[test]
    fn old_snapshots_read_without_the_soft_delete_key() {
        let c = notes(None);
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("soft_delete"), "{text}");
        let back: Collection = serde_json::from_str(&text).unwrap();
        assert_eq!(back, c);
    }
}
