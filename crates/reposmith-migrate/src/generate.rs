//! `generate`: snapshot → diff → files → new snapshot, and the staleness
//! test CI runs.

use std::path::{Path, PathBuf};

use crate::diff::{self, Options};
use crate::error::Result;
use crate::files;
use crate::schemas::Schemas;

/// What `generate` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generated {
    /// The migration files, up then down for each version; empty when the
    /// schemas already match the snapshot.
    pub files: Vec<PathBuf>,
    /// The destructive steps included (only with `allow_destructive`).
    pub destructive: Vec<String>,
}

/// Diffs `schemas` against `dir`'s snapshot, writes the migration files for
/// the difference and the new snapshot. Nothing is written when the diff is
/// refused or empty.
pub fn generate(schemas: &Schemas, dir: &Path, name: &str, options: &Options) -> Result<Generated> {
    let old = files::read_snapshot(dir)?;
    let new = schemas.snapshot();
    let plan = diff::plan(&old, &new, options)?;
    if plan.is_empty() {
        if old.as_stored() != new.as_stored() {
            // Only the format or ordering differs: keep the snapshot current.
            files::write_snapshot(dir, &new)?;
        }
        return Ok(Generated::default());
    }
    let first = files::next_version(dir)?;
    let written = files::write_plan(dir, first, name, &plan)?;
    files::write_snapshot(dir, &new)?;
    Ok(Generated {
        files: written,
        destructive: plan.destructive(),
    })
}

/// True when the entities changed since the last `generate` (the snapshot in
/// `dir` is not what they describe now): a migration is missing.
pub fn is_stale(schemas: &Schemas, dir: &Path) -> Result<bool> {
    let old = files::read_snapshot(dir)?;
    Ok(old.as_stored() != schemas.snapshot().as_stored())
}
