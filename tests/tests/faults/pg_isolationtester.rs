//! reposmith's own SQL under PostgreSQL's `isolationtester`: the specs in
//! `tests/isolation/` interleave two sessions step by step (the optimistic
//! version-checked update, the upsert, the outbox relay's claim and its
//! per-destination lock, the migration lock) and the tool's output must
//! equal the committed `tests/isolation/expected/*.out`, where waits,
//! results and errors of each interleaving are written down.
//!
//! The specs copy the library's statement text into `PREPARE`s; the first
//! test compares each copy with the text the library sends now, so a
//! change in the library fails here instead of leaving the specs testing
//! stale SQL.
//!
//! After a deliberate change, `REPOSMITH_ISOLATION_BLESS=1` writes the
//! new output over the expected files; review the diff before committing.
//!
//! `isolationtester` ships in Debian's `postgresql-client-15`
//! (`/usr/lib/postgresql/15/lib/pgxs/src/test/isolation/`); it is a libpq
//! client and drives the shared PostgreSQL 16 of `DATABASE_URL`, each spec
//! in a schema of its own.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reposmith::{PgBackend, PgConfig, Repository};
use reposmith_core::Entity;
use reposmith_tests::{database_url, password_of, run_sql, unique_name, with_search_path};

/// The entity the update and upsert specs use: an assigned text id, a
/// number and a version column.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "accounts")]
struct Account {
    /// Assigned by the application.
    #[repo(id)]
    id: String,
    /// Any number.
    balance: i64,
    /// Optimistic-locking version.
    #[repo(version)]
    version: i64,
}

/// The specs, in the order they run.
const SPECS: [&str; 4] = ["version_check", "upsert", "outbox_claim", "migration_lock"];

/// The longest one spec may run (they take well under a second here).
const SPEC_WITHIN: Duration = Duration::from_secs(60);

/// Where Debian installs it: `/usr/lib/postgresql/<major>/lib/pgxs/...`.
const DEBIAN_DIR: &str = "/usr/lib/postgresql";
const DEBIAN_TAIL: &str = "lib/pgxs/src/test/isolation/isolationtester";

fn specs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("isolation")
}

fn spec_text(name: &str) -> String {
    let path = specs_dir().join(format!("{name}.spec"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The statements `spec` must carry, each with how many copies (one per
/// session that prepares it, one for a table or function of the setup).
fn library_sql(spec: &str) -> Vec<(String, usize)> {
    let first = |statements: Vec<String>| statements.into_iter().next().unwrap();
    let accounts = first(reposmith_postgres::create_table_sql(Account::SCHEMA));
    let outbox = first(reposmith_postgres::create_table_sql(
        &reposmith_core::outbox::SCHEMA,
    ));
    use reposmith_postgres::sql_text;
    match spec {
        "version_check" => vec![(accounts, 1), (sql_text::update::<Account>(), 2)],
        "upsert" => vec![(accounts, 1), (sql_text::upsert::<Account>(), 2)],
        "outbox_claim" => vec![
            (outbox, 1),
            (sql_text::outbox_claim().to_owned(), 2),
            (sql_text::outbox_destination_lock().to_owned(), 2),
        ],
        "migration_lock" => {
            use reposmith_migrate::apply::{LOCK_KEY_SQL, TRY_LOCK_SQL};
            vec![(LOCK_KEY_SQL.to_owned(), 1), (TRY_LOCK_SQL.to_owned(), 2)]
        }
        other => panic!("no statements listed for spec {other}"),
    }
}

/// Each spec holds the library's current statement text, once per session
/// that prepares it: a library change that alters the SQL fails here.
#[test]
fn the_specs_hold_the_sql_the_library_sends() {
    let mut checked = 0;
    for spec in SPECS {
        let text = spec_text(spec);
        for (sql, copies) in library_sql(spec) {
            let found = text.matches(&sql).count();
            assert_eq!(
                found, copies,
                "tests/isolation/{spec}.spec holds {found} copies of the library's SQL, not \
                 {copies}: update the spec (and its expected output) to:\n{sql}"
            );
            checked += 1;
        }
    }
    eprintln!(
        "{} specs hold the library's current text of {checked} statements",
        SPECS.len()
    );
}

/// `isolationtester` from Debian's `postgresql-client-<major>`, the
/// newest installed, or `REPOSMITH_ISOLATIONTESTER`.
fn isolationtester() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REPOSMITH_ISOLATIONTESTER") {
        return Some(PathBuf::from(path));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            let path = entry.path().join(DEBIAN_TAIL);
            path.exists().then_some((major, path))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, path)| path)
}

/// `%XX` escapes of a URL's userinfo decoded.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` without its password (it goes to the child in `PGPASSWORD`, not
/// on a command line every user can read) and with `search_path` set to
/// `schema`: a libpq connection URI.
fn conninfo(url: &str, schema: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("DATABASE_URL has a scheme");
    let url = match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{hosts}")
        }
        None => url.to_owned(),
    };
    with_search_path(&url, schema)
}

/// Runs `spec` against `url` in schema `schema`; its output (stdout and
/// stderr, as `pg_isolation_regress` records it) and whether it exited 0.
fn run_spec(tool: &Path, url: &str, schema: &str, spec: &str) -> (String, bool) {
    let input = std::fs::File::open(specs_dir().join(format!("{spec}.spec"))).unwrap();
    let mut child = Command::new(tool);
    child
        .arg(conninfo(url, schema))
        .stdin(input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(password) = password_of(url) {
        child.env("PGPASSWORD", percent_decoded(&password));
    }
    let mut child = child.spawn().expect("start isolationtester");
    // Read both pipes in threads: a full pipe would stall the tool.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > SPEC_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isolationtester ran {spec}.spec for over {SPEC_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = out.join().unwrap() + &err.join().unwrap();
    (output, status.success())
}

/// A unified diff of `expected` and `actual` by `diff -u`, or both texts
/// where `diff` is missing.
fn diff(expected: &Path, actual: &str) -> String {
    let scratch = std::env::temp_dir().join(unique_name("isolation-actual"));
    std::fs::write(&scratch, actual).unwrap();
    let shown = Command::new("diff")
        .arg("-u")
        .arg(expected)
        .arg(&scratch)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|_| format!("(no diff tool) actual output:\n{actual}"));
    let _ = std::fs::remove_file(&scratch);
    shown
}

/// Every spec's output equals its expected file: the same interleavings
/// wait, return the same rows and fail the same way on the server.
#[tokio::test]
async fn isolationtester_output_matches_the_expected_files() {
    let Some(tool) = isolationtester() else {
        eprintln!(
            "not run here: no isolationtester (Debian's postgresql-client-15 ships it under \
             {DEBIAN_DIR}/15/{DEBIAN_TAIL}; or set REPOSMITH_ISOLATIONTESTER)"
        );
        return;
    };
    let url = database_url();
    let admin = PgBackend::connect(&PgConfig::new(url.clone()))
        .await
        .unwrap();
    let (mut permutations, mut failures) = (0, Vec::new());
    for spec in SPECS {
        let schema = unique_name("isolation");
        run_sql(&admin, &format!("CREATE SCHEMA \"{schema}\"")).await;
        let (tool, url, schema_for_run) = (tool.clone(), url.clone(), schema.clone());
        let (output, success) =
            tokio::task::spawn_blocking(move || run_spec(&tool, &url, &schema_for_run, spec))
                .await
                .unwrap();
        run_sql(&admin, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
        permutations += output.matches("starting permutation:").count();
        let expected = specs_dir().join("expected").join(format!("{spec}.out"));
        // `REPOSMITH_ISOLATION_BLESS=1` writes the output as the expected
        // file (review it before committing), as trybuild's `overwrite`.
        if success && std::env::var("REPOSMITH_ISOLATION_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(&expected, &output).unwrap();
        }
        let wanted = std::fs::read_to_string(&expected).unwrap_or_default();
        if !success || output != wanted {
            failures.push(format!(
                "{spec}.spec (exit ok: {success}):\n{}",
                diff(&expected, &output)
            ));
        }
    }
    admin.close().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let from = tool
        .strip_prefix(DEBIAN_DIR)
        .ok()
        .and_then(|rest| rest.components().next())
        .map_or_else(
            || tool.display().to_string(),
            |major| format!("postgresql-client-{}", major.as_os_str().to_string_lossy()),
        );
    eprintln!(
        "isolationtester ({from}): {} specs, {permutations} permutations of the library's SQL, \
         output as expected",
        SPECS.len()
    );
}
