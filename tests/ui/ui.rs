//! Compile-fail cases for `#[derive(Repository)]`, `#[derive(DbEnum)]` and
//! `#[reposmith::test]`:
//! one rule per file under `<topic>/`, its first line stating the rule; the
//! expected compiler output sits beside it. Regenerate after an intended
//! change with `TRYBUILD=overwrite`.
//!
//! This package exists so that trybuild builds little. trybuild compiles the
//! cases in a crate of its own (under `target/tests/trybuild/`, with its own
//! flags, so nothing is shared with the workspace's build) that depends on
//! every dependency of the package running it. From `reposmith-tests` that
//! was the whole tree (sqlx, the MongoDB driver, redis...), built again
//! with codegen because pass cases need `cargo build`; here it is the facade
//! without backends, only checked (`cargo check`, every case in one run),
//! since all cases are compile-fail. The cases that must compile are
//! ordinary tests in `reposmith-tests` (`tests/tests/ui.rs` includes
//! `pass/`); those that need a backend's repository are `compile_fail`
//! examples in the derive reference (`crates/reposmith/docs/derive.md`).

#[test]
fn derive_ui() {
    let cases = trybuild::TestCases::new();
    for topic in [
        "struct_attrs",
        "id",
        "fields",
        "db_enum",
        "vector",
        "backend",
        "cache",
        "changes",
        "soft_delete",
        "relations",
        "tenant",
        // `#[reposmith::test]`'s options (through reposmith-macros: the
        // facade re-exports it only with its `test` feature, which brings
        // every backend into trybuild's build).
        "test_attr",
    ] {
        cases.compile_fail(format!("{topic}/*.rs"));
    }
}
