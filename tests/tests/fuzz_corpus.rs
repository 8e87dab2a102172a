//! The cargo-fuzz targets' committed inputs, replayed on stable Rust: every
//! seed of `fuzz/corpus/<target>/` and every crash that was fixed, kept in
//! `fuzz/regressions/<target>/`, goes through the very function the target
//! runs (the `fuzzing` modules of reposmith-core, -mongo and -postgres), so
//! each CI run checks them without nightly or libFuzzer. `cargo xtask fuzz`
//! runs the targets themselves.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The files of `fuzz/<kind>/<target>/`, sorted; none when it is absent.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Feeds every committed input of `target` to `property`, naming the file
/// that fails; prints the counts as the test's figure.
fn replay(target: &str, property: fn(&[u8])) {
    let seeds = inputs("corpus", target);
    let regressions = inputs("regressions", target);
    // A corpus that went missing would make this test pass vacuously.
    assert!(seeds.len() >= 20, "{target}: {} seeds", seeds.len());
    let started = Instant::now();
    for path in seeds.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("a readable corpus file");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| property(&data))) {
            eprintln!("{target}: {} fails", path.display());
            resume_unwind(panic);
        }
    }
    eprintln!(
        "{} seeds and {} fixed crashes replayed through {target} in {} ms",
        seeds.len(),
        regressions.len(),
        started.elapsed().as_millis()
    );
}

#[test]
fn cursor_decode_corpus_replays_clean() {
    replay("cursor_decode", reposmith_core::fuzzing::cursor_decode);
}

#[test]
fn bson_codec_corpus_replays_clean() {
    replay("bson_codec", reposmith_mongo::fuzzing::bson_codec);
}

#[test]
fn copy_encoder_corpus_replays_clean() {
    replay("copy_encoder", reposmith_postgres::fuzzing::copy_encoder);
}
