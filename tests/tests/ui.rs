//! Compile-fail and compile-pass cases for `#[derive(Repository)]` and
//! `#[derive(DbEnum)]`: one rule per file under `tests/ui/<topic>/`, its
//! first line stating the rule; the expected compiler output sits beside it.
//! Regenerate after an intended change with `TRYBUILD=overwrite`.

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
    ] {
        cases.compile_fail(format!("ui/{topic}/*.rs"));
    }
    cases.pass("ui/pass/*.rs");
}
