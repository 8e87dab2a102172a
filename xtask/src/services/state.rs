//! Where managed services keep their files, and the `key=value` records of
//! what `up` started.
//!
//! The records are plain text (no serde: xtask stays std-only) and small
//! enough to read with `cat` when something goes wrong.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd;
use crate::error::{Context, Error};

/// The directory that holds every managed service's data, logs and records.
#[derive(Debug)]
pub(crate) struct StateDir {
    /// The directory itself.
    pub(crate) path: PathBuf,
    /// True when the usual `target/reposmith-services` could not be used
    /// because the `postgres` OS user cannot reach it.
    pub(crate) fallback: bool,
}

impl StateDir {
    /// `<root>/target/reposmith-services`, unless we are root and the
    /// `postgres` OS user cannot traverse it (a clone under `/root`, mode
    /// 700): Postgres then could not read its own data directory, so the
    /// state moves to a per-workspace directory under `/tmp`.
    pub(crate) fn resolve(root: &Path, as_root: bool) -> Result<Self, Error> {
        let primary = root.join("target").join("reposmith-services");
        fs::create_dir_all(&primary).context(format!("cannot create {}", primary.display()))?;
        if !as_root || postgres_can_traverse(&primary) {
            return Ok(Self {
                path: primary,
                fallback: false,
            });
        }
        let path = fallback_dir(root);
        create_private_tmp_dir(&path)?;
        Ok(Self {
            path,
            fallback: true,
        })
    }
}

/// `/tmp/reposmith-services-<hash>`: one per workspace path, so two clones
/// never share a database.
pub(crate) fn fallback_dir(root: &Path) -> PathBuf {
    let hash = fnv1a(root.as_os_str().as_encoded_bytes());
    PathBuf::from(format!(
        "/tmp/reposmith-services-{:010x}",
        hash & 0xff_ffff_ffff
    ))
}

/// FNV-1a: stable across Rust releases, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Creates `dir` world-traversable (the `postgres` user must reach it) and
/// refuses one that someone else made first: `/tmp` is shared.
fn create_private_tmp_dir(dir: &Path) -> Result<(), Error> {
    fs::create_dir_all(dir).context(format!("cannot create {}", dir.display()))?;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != super::process::euid() {
        return Err(Error::msg(format!(
            "{} exists but is not a directory owned by us; remove it",
            dir.display()
        )));
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Whether the `postgres` OS user can reach `dir`. When that user does not
/// exist yet, `up` will create it as a system user that owns nothing, so it
/// can pass only where every directory on the way lets others search it.
fn postgres_can_traverse(dir: &Path) -> bool {
    if user_exists("postgres") {
        let mut test = Command::new("runuser");
        test.args(["-u", "postgres", "--", "test", "-x"])
            .arg(dir)
            .current_dir("/");
        return cmd::run_quiet(&mut test, Duration::from_secs(10));
    }
    others_can_traverse(dir)
}

/// True when every directory from `/` down to `dir` has the others-search bit.
pub(crate) fn others_can_traverse(dir: &Path) -> bool {
    dir.ancestors()
        .all(|step| fs::metadata(step).is_ok_and(|meta| meta.mode() & 0o001 != 0))
}

/// True when the OS knows `name` as a user.
pub(crate) fn user_exists(name: &str) -> bool {
    cmd::run_quiet(
        Command::new("id").args(["-u", name]),
        Duration::from_secs(5),
    )
}

/// A `key=value` file: what `up` started, so `down` and `status` can find it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Record(BTreeMap<String, String>);

impl Record {
    /// Reads the record at `path`; `None` when there is none.
    pub(crate) fn load(path: &Path) -> Option<Self> {
        let text = fs::read_to_string(path).ok()?;
        Some(Self::parse(&text))
    }

    fn parse(text: &str) -> Self {
        let pairs = text.lines().filter(|line| !line.starts_with('#'));
        let pairs = pairs.filter_map(|line| line.split_once('='));
        Self(
            pairs
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    /// Writes the record through a temporary file, so a crash never leaves
    /// half a record behind.
    pub(crate) fn save(&self, path: &Path) -> Result<(), Error> {
        let mut text = String::from("# written by `cargo xtask services up`\n");
        for (key, value) in &self.0 {
            text.push_str(&format!("{key}={value}\n"));
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, text).context(format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, path).context(format!("cannot write {}", path.display()))
    }

    /// Sets `key` to `value`, returning the record for chaining.
    pub(crate) fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.0.insert(key.to_owned(), value.to_string());
        self
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `key` as a number.
    pub(crate) fn number<N: std::str::FromStr>(&self, key: &str) -> Option<N> {
        self.get(key)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let dir = std::env::temp_dir().join(format!("xtask-record-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("svc.state");
        let record = Record::default()
            .with("port", 55432)
            .with("data", "/a b/c=d");
        record.save(&path).unwrap();
        let loaded = Record::load(&path).unwrap();
        assert_eq!(loaded, record);
        assert_eq!(loaded.number::<u16>("port"), Some(55432));
        assert_eq!(loaded.get("data"), Some("/a b/c=d"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_fallback_is_stable_and_per_workspace() {
        let a = fallback_dir(Path::new("/root/clone"));
        assert_eq!(a, fallback_dir(Path::new("/root/clone")));
        assert_ne!(a, fallback_dir(Path::new("/root/other")));
        assert!(a.to_str().unwrap().starts_with("/tmp/reposmith-services-"));
    }

    #[test]
    fn a_mode_700_parent_blocks_others() {
        let base = std::env::temp_dir().join(format!("xtask-mode-{}", std::process::id()));
        let inner = base.join("clone/target");
        fs::create_dir_all(&inner).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(others_can_traverse(&inner));
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!others_can_traverse(&inner));
        fs::remove_dir_all(base).unwrap();
    }

    /// As root with a `postgres` user, a clone inside a mode-700 directory
    /// must move the state to `/tmp`; elsewhere it stays under `target/`.
    #[test]
    fn root_falls_back_when_postgres_cannot_reach_the_clone() {
        if super::super::process::euid() != 0 || !user_exists("postgres") {
            return;
        }
        let base = std::env::temp_dir().join(format!("xtask-fallback-{}", std::process::id()));
        let root = base.join("clone");
        fs::create_dir_all(&root).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!StateDir::resolve(&root, true).unwrap().fallback);
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap();
        let state = StateDir::resolve(&root, true).unwrap();
        assert!(state.fallback);
        assert_eq!(state.path, fallback_dir(&root));
        assert!(!StateDir::resolve(&root, false).unwrap().fallback);
        fs::remove_dir_all(&state.path).unwrap();
        fs::remove_dir_all(base).unwrap();
    }
}
