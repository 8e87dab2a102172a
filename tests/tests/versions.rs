//! Minimum safe versions of the drivers and the TLS stack (S4): the
//! versions `cargo metadata` resolves for this workspace are at or above
//! the minimum each has a documented reason for. A dependency update that
//! goes back below one (a `cargo update --precise`, a yanked release, a
//! lock file from elsewhere) fails here, naming the reason.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use semver::Version;

/// Longest wait for `rustc -vV` or `cargo metadata` (it reads the lock
/// file, offline).
const METADATA_WITHIN: Duration = Duration::from_secs(120);

/// `(crate, minimum, required, why)`: a crate that is `required` must be
/// in the tree; every resolved version of it must be at least `minimum`.
const MINIMUMS: &[(&str, &str, bool, &str)] = &[
    // RUSTSEC-2024-0363 (binary protocol misinterpretation through
    // truncating length casts, fixed in 0.8.1); and sqlx 0.9.0 stopped
    // setting TCP_NODELAY (sqlx issue 4335, fixed in 0.9.1): small COPY
    // batches waited ~40 ms each on a delayed ACK, 22 statements/s where
    // plain INSERTs did 8,000 on this machine.
    (
        "sqlx",
        "0.9.1",
        true,
        "RUSTSEC-2024-0363; TCP_NODELAY (sqlx 4335)",
    ),
    (
        "sqlx-core",
        "0.9.1",
        true,
        "RUSTSEC-2024-0363; TCP_NODELAY (sqlx 4335)",
    ),
    (
        "sqlx-postgres",
        "0.9.1",
        true,
        "RUSTSEC-2024-0363; TCP_NODELAY (sqlx 4335)",
    ),
    // The 1.x line is what the backend is written against; it includes
    // redis-rs 1490 (the connection timeout also bounds the setup
    // commands, HELLO/AUTH/SELECT: before, a server that accepted TCP and
    // never answered held a connect past its timeout) and 1252 (a timed-
    // out request's late reply was read as the next request's).
    (
        "redis",
        "1.0.0",
        true,
        "redis-rs 1490 and 1252 fixed; the 1.x API",
    ),
    // The oldest driver the suite (MongoDB commit-outcome tests among it)
    // has passed against; no advisory is known for the driver.
    (
        "mongodb",
        "3.9.1",
        true,
        "the version the suite was verified with",
    ),
    // RUSTSEC-2024-0336: rustls' complete_io could loop forever on a
    // close_notify received during the handshake (fixed in 0.23.5).
    ("rustls", "0.23.5", true, "RUSTSEC-2024-0336"),
    // RUSTSEC-2025-0009: some AES-GCM functions could panic on overflow
    // checks (fixed in 0.17.12).
    ("ring", "0.17.12", true, "RUSTSEC-2025-0009"),
    // RUSTSEC-2025-0023: broadcast channel unsoundness (fixed in 1.44.2).
    ("tokio", "1.44.2", true, "RUSTSEC-2025-0023"),
    // RUSTSEC-2024-0421: idna accepted Punycode labels that decode to
    // nothing non-ASCII, letting two names compare equal (fixed in 1.0.0);
    // it reaches the tree through url.
    ("idna", "1.0.0", false, "RUSTSEC-2024-0421"),
];

/// `cargo metadata` of the workspace for this machine's platform:
/// `(name, version)` of every package. Offline and filtered to the host:
/// the drivers are the same on every platform, and other platforms'
/// crates (Android's, Windows') may not be downloaded here.
fn resolved_packages() -> Vec<(String, Version)> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let about = bounded(Command::new(rustc).arg("-vV"), "rustc -vV");
    let host = about
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_owned();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut metadata = Command::new(cargo);
    metadata
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .arg("--manifest-path")
        .arg(&manifest);
    let text = bounded(&mut metadata, "cargo metadata");
    let metadata: serde_json::Value = serde_json::from_str(&text).expect("metadata JSON");
    metadata["packages"]
        .as_array()
        .expect("a packages list")
        .iter()
        .map(|package| {
            let name = package["name"].as_str().unwrap_or_default().to_owned();
            let version = package["version"].as_str().unwrap_or_default();
            (name, Version::parse(version).expect("a semver version"))
        })
        .collect()
}

/// `command`'s standard output; panics when it fails or overstays. The
/// output goes through a file: the JSON is larger than a pipe's buffer.
fn bounded(command: &mut Command, what: &str) -> String {
    let out = std::env::temp_dir().join(reposmith_tests::unique_name("reposmith-metadata"));
    let file = std::fs::File::create(&out).expect("an output file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break status;
        }
        if started.elapsed() > METADATA_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} took over {METADATA_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    assert!(status.success(), "{what} failed ({status})");
    text
}

#[test]
fn resolved_driver_versions_are_at_or_above_the_documented_minimums() {
    let packages = resolved_packages();
    let mut checked = Vec::new();
    let mut too_old = Vec::new();
    for &(name, minimum, required, why) in MINIMUMS {
        let minimum = Version::parse(minimum).expect("a minimum is a version");
        let found: Vec<&Version> = packages
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v)
            .collect();
        assert!(
            !required || !found.is_empty(),
            "{name} is not in the tree: a required minimum names a crate that left it"
        );
        for version in found {
            match *version >= minimum {
                true => checked.push(format!("{name} {version}")),
                false => too_old.push(format!("{name} {version} < {minimum} ({why})")),
            }
        }
    }
    assert!(too_old.is_empty(), "below the minimum: {too_old:?}");
    eprintln!(
        "{} resolved versions at or above their minimums: {}",
        checked.len(),
        checked.join(", ")
    );
}
