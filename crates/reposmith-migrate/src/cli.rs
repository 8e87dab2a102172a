//! The command line an application's migrate binary forwards to: parse the
//! arguments, run the command on a small runtime, print the outcome.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use reposmith_core::config::parse_duration;

use crate::apply::{self, Connection};
use crate::diff::Options;
use crate::error::{Error, Result};
use crate::generate::{self, generate};
use crate::{check, schemas::Schemas};

/// The usage text.
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
  --database-url URL         default: $DATABASE_URL
  --mongo-url URL            default: $MONGODB_URL (collections added with add_mongo;
                             their files are in <dir>/mongo/)
  --lock-timeout D           default 5s   (e.g. 500ms, 5s, 2m)
  --statement-timeout D      default 15m
  --lock-wait D              wait for another migrator, default 60s
";

/// Runs the command in `args` (without the program name) for `schemas`,
/// with migrations in `default_dir` unless `--dir` says otherwise.
/// Returns 0 on success, 1 on failure or drift, 2 on bad usage.
pub fn run(
    schemas: &Schemas,
    default_dir: impl AsRef<Path>,
    args: impl IntoIterator<Item = String>,
) -> ExitCode {
    let args: Vec<String> = args.into_iter().collect();
    if matches!(
        args.first().map(String::as_str),
        Some("help" | "-h" | "--help")
    ) {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let parsed = match Args::parse(&args, default_dir.as_ref()) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
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
    fn parse(args: &[String], default_dir: &Path) -> std::result::Result<Args, String> {
        let mut words = args.iter().map(String::as_str);
        let command = words.next().ok_or("missing command")?;
        let mut parsed = Args {
            command: Command::Apply,
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
        let url = match &self.url {
            Some(url) => url.clone(),
            None => std::env::var("DATABASE_URL")
                .map_err(|_| Error::Usage("set DATABASE_URL or pass --database-url".to_owned()))?,
        };
        let mut db = Connection::new(url);
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
        crate::mongo::cli::check(schemas, &self.dir, self.mongo_url.as_deref()).await
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
                "the entities changed since the last generated migration in {}: run `cargo xtask migrate generate <name>`",
                self.dir.display()
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
