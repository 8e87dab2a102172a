//! The command line an application's migrate binary forwards to: parse the
//! arguments, run the command on a small runtime, print the outcome.
//!
//! Hints ("run `… generate <name>`", the usage text) name the program the
//! user typed: a wrapper's spelling from [`PROGRAM_ENV`] (`cargo xtask
//! migrate` sets it), else the name the binary gives with [`Cli::program`],
//! else the file name of `argv[0]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reposmith_core::config::parse_duration;

use crate::apply::{self, Connection};
use crate::diff::Options;
use crate::error::{Error, Result};
use crate::generate::{self, generate};
use crate::{check, schemas::Schemas};

/// The environment variable a wrapper that runs the migrate binary sets to
/// the command its users type (`cargo xtask migrate` sets `cargo xtask
/// migrate`), so hints name the wrapper rather than the binary it runs.
pub const PROGRAM_ENV: &str = "REPOSMITH_MIGRATE_PROGRAM";

/// The usage text, for a binary named `migrate` ([`usage`] names another).
pub const USAGE: &str = "\
migrate <command> [options]

Commands:
  generate <name> [--allow-destructive] [--concurrently]
                   diff the entities against the snapshot and write the next
                   up/down SQL files (destructive steps are refused unless
                   allowed; --concurrently builds indexes on existing tables
                   with CREATE INDEX CONCURRENTLY, one file each)
  apply            apply pending migrations (advisory-locked, checksummed)
  status           list migrations and whether each is applied
  revert [--to V]  revert the newest applied migration, or all newer than V
  check            exit 1 when the live database differs from the entities,
                   or when the entities changed without a generated migration

Options:
  --dir DIR                  migrations directory (default: the binary's)
  --database-url URL         default: $REPOSMITH_MIGRATION_DATABASE_URL (the schema
                             owner's), else $DATABASE_URL
  --mongo-url URL            default: $MONGODB_URL (collections added with add_mongo;
                             their files are in <dir>/mongo/)
  --lock-timeout D           default 5s   (e.g. 500ms, 5s, 2m)
  --statement-timeout D      default 15m
  --lock-wait D              wait for another migrator, default 60s
";

/// The usage text with `program` as the command to type.
pub fn usage(program: &str) -> String {
    USAGE.replacen("migrate <command>", &format!("{program} <command>"), 1)
}

/// Runs the command in `args` (without the program name) for `schemas`,
/// with migrations in `default_dir` unless `--dir` says otherwise; hints
/// name the program as [`Cli::run`] says.
/// Returns 0 on success, 1 on failure or drift, 2 on bad usage.
pub fn run(
    schemas: &Schemas,
    default_dir: impl AsRef<Path>,
    args: impl IntoIterator<Item = String>,
) -> ExitCode {
    Cli::new(schemas, default_dir).run(args)
}

/// The command line of a migrate binary, with the name its hints use:
///
/// ```no_run
/// # use reposmith_migrate::{Schemas, cli::Cli};
/// fn main() -> std::process::ExitCode {
///     let schemas = Schemas::new(); // .add::<Document>()
///     Cli::new(&schemas, "migrations/myapp")
///         .program("cargo run --bin migrate --")
///         .run(std::env::args().skip(1))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Cli<'a> {
    schemas: &'a Schemas,
    dir: PathBuf,
    program: Option<String>,
}

impl<'a> Cli<'a> {
    /// The command line for `schemas`, with migrations in `default_dir`
    /// unless `--dir` says otherwise.
    pub fn new(schemas: &'a Schemas, default_dir: impl AsRef<Path>) -> Cli<'a> {
        Cli {
            schemas,
            dir: default_dir.as_ref().to_owned(),
            program: None,
        }
    }

    /// The command users type to run this binary, as hints name it
    /// (default: the file name of `argv[0]`). A wrapper's [`PROGRAM_ENV`]
    /// still wins: its users typed the wrapper.
    pub fn program(mut self, program: impl Into<String>) -> Cli<'a> {
        self.program = Some(program.into());
        self
    }

    /// Runs the command in `args` (without the program name). Returns 0 on
    /// success, 1 on failure or drift, 2 on bad usage.
    pub fn run(self, args: impl IntoIterator<Item = String>) -> ExitCode {
        let program = program_name(
            std::env::var(PROGRAM_ENV).ok(),
            self.program,
            std::env::args_os().next(),
        );
        execute(
            self.schemas,
            &self.dir,
            &program,
            args.into_iter().collect(),
        )
    }
}

/// The name hints use: the wrapper's, the configured one, `argv[0]`'s file
/// name (without `.exe`), in that order; `migrate` when none is usable.
fn program_name(
    wrapper: Option<String>,
    configured: Option<String>,
    argv0: Option<std::ffi::OsString>,
) -> String {
    let from_argv0 = || {
        let path = PathBuf::from(argv0?);
        let exe = std::env::consts::EXE_EXTENSION;
        let name = match path.extension() {
            Some(ext) if !exe.is_empty() && ext == exe => path.file_stem()?,
            _ => path.file_name()?,
        };
        Some(name.to_string_lossy().into_owned())
    };
    [wrapper, configured]
        .into_iter()
        .flatten()
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .or_else(from_argv0)
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "migrate".to_owned())
}

fn execute(schemas: &Schemas, default_dir: &Path, program: &str, args: Vec<String>) -> ExitCode {
    if matches!(
        args.first().map(String::as_str),
        Some("help" | "-h" | "--help")
    ) {
        print!("{}", usage(program));
        return ExitCode::SUCCESS;
    }
    let parsed = match Args::parse(&args, default_dir, program) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n\n{}", usage(program));
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(parsed.execute(schemas)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mongo collections registered but this build has no Mongo support.
#[cfg(not(feature = "mongo"))]
fn no_mongo(schemas: &Schemas) -> Result<()> {
    match schemas.mongo_schemas().next() {
        Some(_) => Err(Error::Usage(
            "collections were added with add_mongo: enable reposmith-migrate's `mongo` feature"
                .to_owned(),
        )),
        None => Ok(()),
    }
}

#[derive(Debug)]
enum Command {
    Generate(String),
    Apply,
    Status,
    Revert(Option<i64>),
    Check,
}

#[derive(Debug)]
struct Args {
    command: Command,
    /// The program as hints name it.
    program: String,
    dir: PathBuf,
    url: Option<String>,
    #[cfg_attr(
        not(feature = "mongo"),
        allow(dead_code, reason = "read by the Mongo half only")
    )]
    mongo_url: Option<String>,
    options: Options,
    timeouts: [Option<std::time::Duration>; 3],
}

impl Args {
    fn parse(
        args: &[String],
        default_dir: &Path,
        program: &str,
    ) -> std::result::Result<Args, String> {
        let mut words = args.iter().map(String::as_str);
        let command = words.next().ok_or("missing command")?;
        let mut parsed = Args {
            command: Command::Apply,
            program: program.to_owned(),
            dir: default_dir.to_owned(),
            url: None,
            mongo_url: None,
            options: Options::default(),
            timeouts: [None; 3],
        };
        let mut positional = Vec::new();
        let mut to = None;
        while let Some(word) = words.next() {
            let mut value = || words.next().ok_or(format!("{word} needs a value"));
            let duration = |raw: &str| parse_duration(raw).map(Some);
            match word {
                "--allow-destructive" => parsed.options.allow_destructive = true,
                "--concurrently" => parsed.options.concurrently = true,
                "--dir" => parsed.dir = PathBuf::from(value()?),
                "--database-url" => parsed.url = Some(value()?.to_owned()),
                "--mongo-url" => parsed.mongo_url = Some(value()?.to_owned()),
                "--lock-timeout" => parsed.timeouts[0] = duration(value()?)?,
                "--statement-timeout" => parsed.timeouts[1] = duration(value()?)?,
                "--lock-wait" => parsed.timeouts[2] = duration(value()?)?,
                "--to" => to = Some(value()?.parse::<i64>().map_err(|e| format!("--to: {e}"))?),
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                other => positional.push(other.to_owned()),
            }
        }
        parsed.command = match (command, positional.as_slice()) {
            ("generate", [name]) => Command::Generate(name.clone()),
            ("generate", _) => return Err("generate needs one <name>".to_owned()),
            ("apply", []) => Command::Apply,
            ("status", []) => Command::Status,
            ("revert", []) => Command::Revert(to),
            ("check", []) => Command::Check,
            (other, _) => {
                return Err(format!(
                    "unknown command or argument: {other} {}",
                    positional.join(" ")
                ));
            }
        };
        Ok(parsed)
    }

    fn connection(&self) -> Result<Connection> {
        let env = reposmith_core::config::Env::process();
        let url = match &self.url {
            Some(url) => url.clone(),
            // The owner's URL first: the application's may name a role
            // that cannot run DDL.
            None => env
                .get("REPOSMITH_MIGRATION_DATABASE_URL")
                .or_else(|| env.get("DATABASE_URL"))
                .ok_or_else(|| {
                    Error::Usage(
                        "set REPOSMITH_MIGRATION_DATABASE_URL or DATABASE_URL, or pass \
                         --database-url"
                            .to_owned(),
                    )
                })?,
        };
        let mut db = Connection::new(url);
        let plaintext = env.flag(reposmith_core::tls::ALLOW_PLAINTEXT_ENV);
        db.allow_plaintext = plaintext.map_err(Error::Config)?.unwrap_or(false);
        let [lock, statement, wait] = self.timeouts;
        db.lock_timeout = lock.unwrap_or(db.lock_timeout);
        db.statement_timeout = statement.unwrap_or(db.statement_timeout);
        db.lock_wait = wait.unwrap_or(db.lock_wait);
        Ok(db)
    }

    /// Ok(false): the command ran and found a problem (drift).
    async fn execute(&self, schemas: &Schemas) -> Result<bool> {
        schemas.check_distinct()?;
        match &self.command {
            Command::Generate(name) => {
                self.mongo_generate(schemas, name)?;
                if schemas.iter().next().is_none() {
                    return Ok(true);
                }
                let out = generate(schemas, &self.dir, name, &self.options)?;
                if out.files.is_empty() {
                    println!("no changes: the entities match {}", self.dir.display());
                }
                for file in &out.files {
                    println!("wrote {}", file.display());
                }
                for step in &out.destructive {
                    println!("DESTRUCTIVE: {step}");
                }
                Ok(true)
            }
            Command::Apply => {
                if schemas.iter().next().is_some() {
                    let applied = apply::apply(&self.dir, &self.connection()?).await?;
                    match applied.as_slice() {
                        [] => println!("up to date"),
                        versions => println!("applied {versions:?}"),
                    }
                }
                self.mongo_run(schemas, None).await?;
                Ok(true)
            }
            Command::Status => self.status().await,
            Command::Revert(to) => {
                if schemas.iter().next().is_some() {
                    let reverted = apply::revert(&self.dir, &self.connection()?, *to).await?;
                    println!("reverted {reverted:?}");
                }
                self.mongo_run(schemas, Some(*to)).await?;
                Ok(true)
            }
            Command::Check => self.check(schemas).await,
        }
    }

    #[cfg(feature = "mongo")]
    fn mongo_generate(&self, schemas: &Schemas, name: &str) -> Result<()> {
        if schemas.mongo_schemas().next().is_none() {
            return Ok(());
        }
        let allow = self.options.allow_destructive;
        crate::mongo::cli::generate(schemas, &self.dir, name, allow)
    }

    #[cfg(feature = "mongo")]
    async fn mongo_run(&self, schemas: &Schemas, revert: Option<Option<i64>>) -> Result<()> {
        if schemas.mongo_schemas().next().is_none() {
            return Ok(());
        }
        let wait = self.timeouts[2].unwrap_or(std::time::Duration::from_secs(60));
        crate::mongo::cli::run(&self.dir, self.mongo_url.as_deref(), wait, revert).await
    }

    #[cfg(feature = "mongo")]
    async fn mongo_check(&self, schemas: &Schemas) -> Result<Vec<String>> {
        if schemas.mongo_schemas().next().is_none() {
            return Ok(Vec::new());
        }
        crate::mongo::cli::check(schemas, &self.dir, self.mongo_url.as_deref(), &self.program).await
    }

    #[cfg(not(feature = "mongo"))]
    fn mongo_generate(&self, schemas: &Schemas, _name: &str) -> Result<()> {
        no_mongo(schemas)
    }

    #[cfg(not(feature = "mongo"))]
    async fn mongo_run(&self, schemas: &Schemas, _revert: Option<Option<i64>>) -> Result<()> {
        no_mongo(schemas)
    }

    #[cfg(not(feature = "mongo"))]
    async fn mongo_check(&self, schemas: &Schemas) -> Result<Vec<String>> {
        no_mongo(schemas).map(|()| Vec::new())
    }

    async fn status(&self) -> Result<bool> {
        let (rows, missing) = apply::status(&self.dir, &self.connection()?).await?;
        let mut ok = missing.is_empty();
        for row in rows {
            let state = match (row.applied, row.checksum_mismatch) {
                (_, true) => {
                    ok = false;
                    "EDITED AFTER APPLY"
                }
                (true, false) => "applied",
                (false, _) => "pending",
            };
            println!("{:>6}  {:<18}  {}", row.version, state, row.description);
        }
        for version in missing {
            println!("{version:>6}  applied, FILE MISSING");
        }
        Ok(ok)
    }

    async fn check(&self, schemas: &Schemas) -> Result<bool> {
        let mut problems = Vec::new();
        if generate::is_stale(schemas, &self.dir)? {
            problems.push(format!(
                "the entities changed since the last generated migration in {}: run `{} generate <name>`",
                self.dir.display(),
                self.program
            ));
        }
        problems.extend(self.mongo_check(schemas).await?);
        if schemas.iter().next().is_some() {
            problems.extend(check::drift(&self.connection()?, &schemas.snapshot()).await?);
        }
        if problems.is_empty() {
            println!("no drift");
            return Ok(true);
        }
        eprintln!("drift ({} problems):", problems.len());
        for problem in &problems {
            eprintln!("  - {problem}");
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(wrapper: Option<&str>, configured: Option<&str>, argv0: Option<&str>) -> String {
        program_name(
            wrapper.map(str::to_owned),
            configured.map(str::to_owned),
            argv0.map(std::ffi::OsString::from),
        )
    }

    /// A wrapper's spelling, then the configured name, then argv[0]'s file name.
    #[test]
    fn the_program_name_comes_from_the_wrapper_the_binary_or_argv0() {
        let argv0 = Some("/srv/app/target/debug/app-migrate");
        assert_eq!(name(None, None, argv0), "app-migrate");
        assert_eq!(name(None, Some("app db"), argv0), "app db");
        let xtask = Some("cargo xtask migrate");
        assert_eq!(name(xtask, Some("app db"), argv0), "cargo xtask migrate");
        assert_eq!(name(Some(" "), None, argv0), "app-migrate");
        assert_eq!(name(None, None, None), "migrate");
        assert!(usage("app db").starts_with("app db <command> [options]\n"));
    }
}
