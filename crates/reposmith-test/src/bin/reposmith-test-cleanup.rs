//! `reposmith-test-cleanup [--older-than 1h] [--templates] | --id <id>`:
//! removes the PostgreSQL databases, MongoDB databases and Redis keys that
//! failed `#[reposmith::test]` tests kept, older than the age given
//! (default one hour, so running tests are spared), or those of the one
//! test `--id` names (the id a failed test printed), from the servers the
//! environment names (`DATABASE_URL`, `MONGODB_URL`, `REDIS_URL`).

use std::process::ExitCode;
use std::time::Duration;

use reposmith_test::cleanup::remove;
use reposmith_test::{CleanupOptions, cleanup};

fn main() -> ExitCode {
    let mut options = CleanupOptions {
        older_than: Duration::from_secs(3600),
        templates: false,
    };
    let mut one = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--id" => one = args.next(),
            "--templates" => options.templates = true,
            "--older-than" => {
                let value = args.next().unwrap_or_default();
                match reposmith_core::config::parse_duration(&value) {
                    Ok(age) => options.older_than = age,
                    Err(e) => return fail(&format!("--older-than {value:?}: {e}")),
                }
            }
            other => return fail(&format!("unknown argument {other:?}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => return fail(&e.to_string()),
    };
    if let Some(id) = one {
        return match runtime.block_on(remove(&id)) {
            Ok(()) => {
                println!("removed the stores of {id}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        };
    }
    match runtime.block_on(cleanup(options)) {
        Ok(report) => {
            println!(
                "dropped {} PostgreSQL and {} MongoDB databases, {} Redis keys under {} prefixes",
                report.postgres.len(),
                report.mongo.len(),
                report.redis_keys,
                report.redis_prefixes.len()
            );
            for name in report.postgres.iter().chain(&report.mongo) {
                println!("  {name}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("reposmith-test-cleanup: {message}");
    eprintln!(
        "usage: reposmith-test-cleanup [--older-than <duration, e.g. 1h, 0s>] [--templates] | --id <id>"
    );
    ExitCode::FAILURE
}
