//! Rules for `Cargo.toml`: the workspace keeps `missing_docs` on and every
//! package inherits the workspace lints.
//!
//! The compiler finds a public item without docs, and clippy's `-D warnings`
//! turns its warning into a failure, but only while the lint is on where the
//! item lives. These rules stop it being switched off quietly: at the root,
//! or by a package that drops `[lints] workspace = true`.

use super::{Problem, lines};

/// The root manifest: `missing_docs` at `warn` or stricter in
/// `[workspace.lints.rust]`.
pub(super) fn workspace_lints(path: &str, text: &str) -> Option<Problem> {
    let level = section(text, "[workspace.lints.rust]")
        .find(|(_, line)| key_of(line) == Some("missing_docs"))
        .and_then(|(_, line)| value_of(line));
    let on =
        level.is_some_and(|value| ["warn", "deny", "forbid"].iter().any(|l| value.contains(l)));
    (!on).then(|| {
        Problem::new(
            path,
            0,
            "`[workspace.lints.rust]` sets `missing_docs = \"warn\"`: public items need docs",
        )
    })
}

/// A package manifest: `[lints]` with `workspace = true`.
pub(super) fn inherits_lints(path: &str, text: &str) -> Option<Problem> {
    let inherits = section(text, "[lints]")
        .any(|(_, line)| key_of(line) == Some("workspace") && value_of(line) == Some("true"));
    (!inherits).then(|| {
        Problem::new(
            path,
            0,
            "a package has `[lints]` `workspace = true`, so the workspace lints (missing_docs) apply",
        )
    })
}

/// The numbered lines of the table headed `header`, up to the next header.
fn section<'a>(text: &'a str, header: &'a str) -> impl Iterator<Item = (usize, &'a str)> {
    lines(text)
        .skip_while(move |(_, line)| line.trim() != header)
        .skip(1)
        .take_while(|(_, line)| !line.trim_start().starts_with('['))
}

/// The key of a `key = value` line; `None` for comments and blanks.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('#')).then_some(key)
}

/// The value of a `key = value` line, without a trailing comment.
fn value_of(line: &str) -> Option<&str> {
    let (_, value) = line.split_once('=')?;
    Some(value.split('#').next().unwrap_or("").trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_keeps_missing_docs_on() {
        let on = "[workspace]\n[workspace.lints.rust]\nunsafe_code = \"forbid\"\nmissing_docs = \"warn\"\n";
        assert_eq!(workspace_lints("Cargo.toml", on), None);
        let table = "[workspace.lints.rust]\nmissing_docs = { level = \"deny\" }\n";
        assert_eq!(workspace_lints("Cargo.toml", table), None);
        let off = "[workspace.lints.rust]\nmissing_docs = \"allow\"\n";
        assert!(workspace_lints("Cargo.toml", off).is_some());
        let commented = "[workspace.lints.rust]\n# missing_docs = \"warn\"\n";
        assert!(workspace_lints("Cargo.toml", commented).is_some());
        let elsewhere =
            "[workspace.lints.rust]\n[workspace.lints.clippy]\nmissing_docs = \"warn\"\n";
        assert!(workspace_lints("Cargo.toml", elsewhere).is_some());
    }

    #[test]
    fn packages_inherit_the_workspace_lints() {
        let good = "[package]\nname = \"a\"\n\n[lints]\nworkspace = true # all of them\n";
        assert_eq!(inherits_lints("a/Cargo.toml", good), None);
        assert!(inherits_lints("a/Cargo.toml", "[package]\nname = \"a\"\n").is_some());
        let off = "[lints]\nworkspace = false\n";
        assert!(inherits_lints("a/Cargo.toml", off).is_some());
        let wrong_table = "[lints]\n[dependencies]\nworkspace = true\n";
        assert!(inherits_lints("a/Cargo.toml", wrong_table).is_some());
    }
}
