//! `cargo xtask tidy`: the repository's own rules, the ones no compiler lint
//! covers, checked over every file git knows about.
//!
//! In the manner of rust-analyzer's tidy: plain text rules, each a function
//! from a file's path and text to the problems found, so each is unit-tested
//! on small inputs and the walk over the tree is the only part that touches
//! the disk. A problem names the file and line; the command lists them all
//! and fails if there is any.
//!
//! The rules: every Rust module starts with a `//!` doc ([`rust`]); no
//! unfinished-work markers in Rust code ([`rust`]); Markdown links stay inside
//! the repository and point at files that exist ([`markdown`]); no file
//! mentions the directory beside the repository ([`outside_mentions`]); every
//! package inherits the workspace lints, which keep `missing_docs` on
//! ([`manifest`]).

mod manifest;
mod markdown;
mod rust;

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use crate::cmd;
use crate::error::{Context, Error};

/// One broken rule: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The file, relative to the repository root, with `/` separators.
    path: String,
    /// 1-based; 0 when the problem is the file as a whole.
    line: usize,
    message: String,
}

impl Problem {
    fn new(path: &str, line: usize, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.path, self.message),
            line => write!(f, "{}:{line}: {}", self.path, self.message),
        }
    }
}

/// The repository's files: the tracked ones plus new ones not ignored, so a
/// run before `git add` already sees them, minus any deleted from disk.
pub(crate) struct Files(BTreeSet<String>);

impl Files {
    /// The set of these repository-relative paths.
    fn new<I: IntoIterator<Item = S>, S: Into<String>>(paths: I) -> Self {
        Self(paths.into_iter().map(Into::into).collect())
    }

    /// Whether `path` (normalized, repository-relative; empty for the root)
    /// is a file here or a directory holding one.
    fn has(&self, path: &str) -> bool {
        if path.is_empty() || self.0.contains(path) {
            return true;
        }
        let dir = format!("{path}/");
        self.0
            .range(dir.clone()..)
            .next()
            .is_some_and(|file| file.starts_with(&dir))
    }
}

/// `cargo xtask tidy`: prints every problem; fails if there is one.
pub(crate) fn run(root: &Path) -> Result<ExitCode, Error> {
    Ok(match report(root)? {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// Checks the tree at `root` and prints the outcome; `true` when clean.
pub(crate) fn report(root: &Path) -> Result<bool, Error> {
    let files = list(root)?;
    let problems = check(root, &files)?;
    for problem in &problems {
        println!("{problem}");
    }
    match problems.len() {
        0 => println!("tidy: {} files, no problems", files.0.len()),
        n => println!("tidy: {n} problem(s); the rules are in xtask/src/tidy.rs"),
    }
    Ok(problems.is_empty())
}

/// Runs every rule over every file in `files`.
fn check(root: &Path, files: &Files) -> Result<Vec<Problem>, Error> {
    let mut problems = Vec::new();
    for path in &files.0 {
        let bytes = std::fs::read(root.join(path)).context(format!("cannot read {path}"))?;
        // Binary files hold no prose and no code to check.
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        problems.extend(check_file(path, &text, files));
    }
    Ok(problems)
}

/// The rules that apply to `path`, run over its `text`.
fn check_file(path: &str, text: &str, files: &Files) -> Vec<Problem> {
    let mut problems = outside_mentions(path, text);
    if path.ends_with(".rs") {
        problems.extend(rust::module_doc(path, text));
        problems.extend(rust::markers(path, text));
    } else if path.ends_with(".md") {
        problems.extend(markdown::links(path, text, files));
    } else if path == "Cargo.toml" {
        problems.extend(manifest::workspace_lints(path, text));
    } else if path.ends_with("/Cargo.toml") {
        problems.extend(manifest::inherits_lints(path, text));
    }
    problems
}

/// The directory beside the repository, spelled so this file does not
/// mention it.
const OUTSIDE: &str = concat!("..", "/shared");

/// Any file naming the directory beside the repository: the product's docs
/// and code must stand alone in a fresh clone, where that directory is absent.
fn outside_mentions(path: &str, text: &str) -> Vec<Problem> {
    let message = format!("mentions `{OUTSIDE}`, which is outside the repository");
    lines(text)
        .filter(|(_, line)| line.contains(OUTSIDE))
        .map(|(number, _)| Problem::new(path, number, message.clone()))
        .collect()
}

/// The lines of `text`, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(i, line)| (i + 1, line))
}

/// The repository's files, as git lists them.
fn list(root: &Path) -> Result<Files, Error> {
    let mut git = Command::new("git");
    git.args([
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
    ])
    .current_dir(root);
    let out = cmd::capture(&mut git, Duration::from_secs(60))
        .ok_or_else(|| Error::msg("`git ls-files` failed: tidy needs a git checkout"))?;
    let files = Files::new(
        out.split('\0')
            .filter(|path| !path.is_empty() && root.join(path).is_file())
            .map(str::to_owned),
    );
    // No files would mean no problems: a pass that checked nothing.
    match files.0.is_empty() {
        true => Err(Error::msg(format!(
            "git lists no files under {}",
            root.display()
        ))),
        false => Ok(files),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_know_their_directories() {
        let files = Files::new(["README.md", "crates/a/src/lib.rs", "crates/ab"]);
        assert!(files.has(""));
        assert!(files.has("README.md"));
        assert!(files.has("crates/a"));
        assert!(files.has("crates/a/src"));
        assert!(files.has("crates/ab"));
        assert!(!files.has("crates/a/src/main.rs"));
        assert!(!files.has("crates/a/sr"));
        assert!(!files.has("READ"));
    }

    #[test]
    fn the_outside_directory_is_found_in_any_file() {
        let text = format!("fine\nsee {OUTSIDE}/DESIGN.md\n");
        let problems = outside_mentions("a.toml", &text);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 2);
        assert!(outside_mentions("a.toml", "shared/ and ../share are fine\n").is_empty());
    }

    #[test]
    fn each_kind_of_file_gets_its_rules() {
        let files = Files::new(["a.md"]);
        let bare = "fn main() {}\n";
        assert_eq!(check_file("src/main.rs", bare, &files).len(), 1);
        assert!(check_file("notes.txt", bare, &files).is_empty());
        assert_eq!(check_file("a.md", "[x](missing.md)\n", &files).len(), 1);
        assert_eq!(check_file("x/Cargo.toml", "[package]\n", &files).len(), 1);
        assert_eq!(check_file("Cargo.toml", "[workspace]\n", &files).len(), 1);
    }

    #[test]
    fn the_walk_sees_this_repository() {
        let files = list(&crate::workspace_root()).unwrap();
        for path in [
            "Cargo.toml",
            "xtask/src/tidy.rs",
            "xtask/src/tidy/markdown.rs",
        ] {
            assert!(files.0.contains(path), "{path} not listed");
        }
        assert!(files.0.iter().any(|path| path.ends_with(".md")));
        assert!(list(Path::new("/")).is_err());
    }

    #[test]
    fn problems_name_file_and_line() {
        assert_eq!(Problem::new("a.rs", 3, "bad").to_string(), "a.rs:3: bad");
        assert_eq!(Problem::new("a.rs", 0, "bad").to_string(), "a.rs: bad");
    }
}
