//! Rules for Rust files: a leading module doc, and no unfinished-work markers.

use super::{Problem, lines};

/// Where compile-fail and compile-pass fixtures live. Their text is the test:
/// trybuild compares the compiler's output, line numbers included, with the
/// `.stderr` beside each, so a doc line would only shift every snapshot.
const FIXTURES: &str = "tests/ui/";

/// Whether `path` must start with a module doc: every Rust file but the
/// fixtures.
fn needs_module_doc(path: &str) -> bool {
    path.ends_with(".rs") && !path.starts_with(FIXTURES)
}

/// A Rust file whose first non-blank line is not a module doc: `//!`,
/// `/*!`, or `#![doc = ...]` (how the facade includes its README).
pub(super) fn module_doc(path: &str, text: &str) -> Option<Problem> {
    if !needs_module_doc(path) {
        return None;
    }
    let first = lines(text).find(|(_, line)| !line.trim().is_empty());
    let documented = first.is_some_and(|(_, line)| {
        let line = line.trim_start();
        line.starts_with("//!") || line.starts_with("/*!") || line.starts_with("#![doc")
    });
    (!documented).then(|| {
        Problem::new(
            path,
            first.map_or(1, |(number, _)| number),
            "a module starts with a `//!` doc saying what it is for",
        )
    })
}

/// Macros that leave work unfinished in code that compiles. Spelled in
/// pieces so that this file does not trip its own rule.
const MACROS: [&str; 3] = [
    concat!("todo", "!("),
    concat!("unimplemented", "!("),
    concat!("dbg", "!("),
];

/// Notes to self that belong in an issue, not in the tree.
const WORDS: [&str; 3] = [
    concat!("TO", "DO"),
    concat!("FIX", "ME"),
    concat!("X", "XX"),
];

/// Every line of a Rust file holding one of [`MACROS`] or [`WORDS`], in code
/// or comment alike. Fixtures included: they are code too.
pub(super) fn markers(path: &str, text: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (number, line) in lines(text) {
        let found = MACROS
            .iter()
            .find(|mac| find_word(line, mac))
            .or_else(|| WORDS.iter().find(|word| find_word(line, word)));
        if let Some(marker) = found {
            let message = format!("`{marker}` marks unfinished work: finish it or file an issue");
            problems.push(Problem::new(path, number, message));
        }
    }
    problems
}

/// Whether `needle` occurs in `line` as a whole word: not glued to an
/// identifier character on its left, nor (when it ends in one) on its right.
/// So `my_dbg!(` and `XXXL` are not markers.
fn find_word(line: &str, needle: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + needle.len()..].chars().next();
        let ends_in_ident = needle.chars().next_back().is_some_and(is_ident);
        let glued_left = before.is_some_and(is_ident);
        let glued_right = ends_in_ident && after.is_some_and(is_ident);
        !(glued_left || glued_right)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_doc_comes_first() {
        assert_eq!(module_doc("a.rs", "//! Why.\nfn f() {}\n"), None);
        assert_eq!(module_doc("a.rs", "\n\n  //! Why.\n"), None);
        assert_eq!(module_doc("a.rs", "/*! Why. */\n"), None);
        let readme = "#![doc = include_str!(\"../README.md\")]\n";
        assert_eq!(module_doc("a.rs", readme), None);
        let late = module_doc("a.rs", "\nuse std::fs;\n//! Too late.\n").unwrap();
        assert_eq!(late.line, 2);
        assert!(module_doc("a.rs", "/// An item doc.\nfn f() {}\n").is_some());
        assert!(module_doc("a.rs", "// A plain comment.\n").is_some());
        assert!(module_doc("a.rs", "").is_some());
    }

    #[test]
    fn fixtures_need_no_module_doc() {
        assert_eq!(module_doc("tests/ui/id/two_ids.rs", "use x;\n"), None);
        assert!(module_doc("tests/tests/ui.rs", "use x;\n").is_some());
        assert!(module_doc("crates/a/src/lib.rs", "use x;\n").is_some());
    }

    #[test]
    fn every_marker_is_found_with_its_line() {
        for marker in MACROS.iter().chain(&WORDS) {
            let text = format!("//! Doc.\n\nfn f() {{\n    // see {marker})\n}}\n");
            let problems = markers("a.rs", &text);
            assert_eq!(problems.len(), 1, "{marker}");
            assert_eq!(problems[0].line, 4);
            assert!(problems[0].message.contains(marker));
        }
    }

    #[test]
    fn lookalikes_are_not_markers() {
        let text = "fn my_dbg() {}\nmy_dbg!(x);\nlet todos = 1; // XXXL, TODOS\n";
        assert!(markers("a.rs", text).is_empty());
        assert!(markers("a.rs", "todo(); unimplemented_thing!();\n").is_empty());
    }
}
