//! [`TestArgs`]: a test's options, as `#[reposmith::test]` writes them down.

use std::path::{Path, PathBuf};

use reposmith_core::Backend;

/// Where the test's migrations come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrations {
    /// `<crate>/migrations` if that directory exists, else none.
    Default,
    /// `migrations = "path"`, relative to the crate's manifest directory;
    /// it must exist.
    Path(&'static str),
    /// `migrations = false`: an empty database.
    Off,
}

/// The tokio runtime a test runs on (`flavor = ".."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// One thread (the default, as `#[tokio::test]`).
    #[default]
    CurrentThread,
    /// tokio's multi-threaded runtime.
    MultiThread,
}

/// One test's options. Written by `#[reposmith::test]`; build it yourself
/// only to drive [`setup`](crate::setup) by hand (a benchmark does).
#[derive(Debug, Clone, Copy)]
pub struct TestArgs {
    /// The test's path, `module::function`.
    pub name: &'static str,
    /// The test crate's `CARGO_MANIFEST_DIR`; relative paths start there.
    pub manifest_dir: &'static str,
    /// The migrations applied to the template and the MongoDB database.
    pub migrations: Migrations,
    /// Fixture files (relative to `manifest_dir`), applied in order after
    /// the migrations: `.sql` to PostgreSQL, `.json` to MongoDB.
    pub fixtures: &'static [&'static str],
    /// The backends the test uses; `None`: every backend the environment configures.
    pub backends: Option<&'static [Backend]>,
    /// The most connections of the test's PostgreSQL pool and MongoDB client.
    pub pool_size: Option<u32>,
    /// The runtime.
    pub flavor: Flavor,
}

impl TestArgs {
    /// Options for test `name` of the crate at `manifest_dir`, every other
    /// option at its default.
    pub const fn new(name: &'static str, manifest_dir: &'static str) -> TestArgs {
        TestArgs {
            name,
            manifest_dir,
            migrations: Migrations::Default,
            fixtures: &[],
            backends: None,
            pool_size: None,
            flavor: Flavor::CurrentThread,
        }
    }

    /// The migrations directory, if any; `Err` names a missing explicit one.
    pub fn migrations_dir(&self) -> crate::Result<Option<PathBuf>> {
        let root = Path::new(self.manifest_dir);
        match self.migrations {
            Migrations::Off => Ok(None),
            Migrations::Default => {
                let dir = root.join("migrations");
                Ok(dir.is_dir().then_some(dir))
            }
            Migrations::Path(path) => {
                let dir = root.join(path);
                match dir.is_dir() {
                    true => Ok(Some(dir)),
                    false => Err(crate::Error::NoMigrations(dir)),
                }
            }
        }
    }

    /// True when the test wants `backend` (named, or configured when none is named).
    pub(crate) fn wants(&self, backend: Backend) -> Option<bool> {
        self.backends.map(|list| list.contains(&backend))
    }
}
