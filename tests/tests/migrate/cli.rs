//! The command line's hints name the program that printed them: the
//! binary's own name by default (argv[0]), the name the application gave
//! it, or the spelling of a wrapper that runs it (`cargo xtask migrate`).
//! The CLI runs in a child process (this test binary run again, under
//! another name), whose output is read back.

use std::path::Path;
use std::process::{Command, ExitCode, Output};

use reposmith_migrate::{Options, Schemas, cli};

use super::db::MigrateDb;
use super::entities::*;

/// Set in the child's environment: `<dir>\n<program or empty>\n<args...>`.
const CHILD_ENV: &str = "REPOSMITH_MIGRATE_CLI_CHILD";

/// The child's body: the template binary's `main` for `items` renamed (its
/// snapshot is `Item`'s, so `check` finds the entities changed). With a
/// program name it is set through [`cli::Cli::program`]. A no-op when run
/// as an ordinary test.
#[test]
fn migrate_cli_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut lines = spec.lines().map(str::to_owned);
    let dir = lines.next().unwrap();
    let program = lines.next().unwrap();
    let schemas = Schemas::new().add::<ItemRenamed>();
    let code = if program.is_empty() {
        cli::run(&schemas, &dir, lines)
    } else {
        cli::Cli::new(&schemas, &dir).program(program).run(lines)
    };
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// The child test's name as the test harness filters it: its module path
/// without the crate's name, so it holds whichever binary this module is in.
fn child_test_name() -> String {
    match module_path!().split_once("::") {
        Some((_, module)) => format!("{module}::migrate_cli_child"),
        None => "migrate_cli_child".to_owned(),
    }
}

/// Runs the child as `exe` with `program` configured (empty: none) and
/// `wrapper` in the environment variable wrappers set.
fn child(exe: &Path, dir: &Path, program: &str, wrapper: Option<&str>, args: &[&str]) -> Output {
    let spec = format!("{}\n{program}\n{}", dir.display(), args.join("\n"));
    let mut command = Command::new(exe);
    command
        .args([&child_test_name(), "--exact", "--nocapture"])
        .env(CHILD_ENV, spec)
        .env_remove(cli::PROGRAM_ENV);
    if let Some(wrapper) = wrapper {
        command.env(cli::PROGRAM_ENV, wrapper);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `check` finds the entities changed without a migration and says what to
/// run in terms of the program that printed it; `help` shows the same name.
#[tokio::test]
async fn hints_name_the_program_that_printed_them() {
    let db = MigrateDb::new().await;
    db.generate(&Schemas::new().add::<Item>(), "items", Options::default());
    db.apply().await;
    // The test binary under an application's binary name.
    let bin = std::env::temp_dir().join(format!("{}-bin", db.namespace));
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("myapp-migrate");
    #[cfg(unix)]
    std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &exe).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    let check = ["check", "--database-url", db.url()];

    let out = child(&exe, &db.dir, "", None, &check);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("run `myapp-migrate generate <name>`"),
        "{shown}"
    );
    assert!(!shown.contains("xtask"), "{shown}");
    let out = child(&exe, &db.dir, "", None, &["help"]);
    assert!(
        // (after the test harness's own "running 1 test")
        String::from_utf8_lossy(&out.stdout).contains("\nmyapp-migrate <command> [options]\n"),
        "{}",
        text(&out)
    );

    // A name the application configures.
    let out = child(&exe, &db.dir, "cargo run --bin migrate --", None, &check);
    let shown = text(&out);
    assert!(
        shown.contains("run `cargo run --bin migrate -- generate <name>`"),
        "{shown}"
    );

    // A wrapper's spelling wins: it is what its users typed.
    let wrapper = Some("cargo xtask migrate");
    let out = child(&exe, &db.dir, "cargo run --bin migrate --", wrapper, &check);
    let shown = text(&out);
    assert!(
        shown.contains("run `cargo xtask migrate generate <name>`"),
        "{shown}"
    );

    let _ = std::fs::remove_dir_all(&bin);
    db.cleanup().await;
}

/// Generated files name the library that wrote them, which stays true
/// whichever binary (or wrapper) ran `generate`.
#[tokio::test]
async fn generated_files_name_the_generator_not_a_binary() {
    let db = MigrateDb::new().await;
    let files = db.generate(&Schemas::new().add::<Item>(), "items", Options::default());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.starts_with("-- generated by reposmith-migrate\n"),
            "{text}"
        );
        assert!(!text.contains("xtask"), "{text}");
    }
    db.cleanup().await;
}

/// `cargo xtask migrate` (std-only, it cannot name the constant) sets the
/// variable the command line reads.
#[test]
fn xtask_sets_the_variable_the_cli_reads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../xtask/src/migrate.rs");
    let xtask = std::fs::read_to_string(path).unwrap();
    let line = format!("const PROGRAM_ENV: &str = \"{}\";", cli::PROGRAM_ENV);
    assert!(xtask.contains(&line), "{path} lacks {line}");
}
