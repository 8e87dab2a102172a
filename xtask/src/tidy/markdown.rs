//! Rules for Markdown: every relative link resolves to a file or directory of
//! the repository.
//!
//! A link that leaves the repository works on one machine and nowhere else; a
//! link to a missing file is a renamed or forgotten one. Links with a scheme
//! (`https:`, `mailto:`) and anchors within the page are not followed;
//! targets with `::` are rustdoc paths (crate docs include some of these
//! files), which rustdoc itself checks under `-D warnings`.

use super::{Files, Problem, lines};

/// Every relative link in `text` (the Markdown file at `path`) that leaves
/// the repository or names nothing in `files`.
pub(super) fn links(path: &str, text: &str, files: &Files) -> Vec<Problem> {
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut problems = Vec::new();
    let mut fence: Option<&str> = None;
    for (number, line) in lines(text) {
        let trimmed = line.trim_start();
        // Code blocks show text, they do not link; a fence closes on its own
        // kind of marker.
        if let Some(marker) = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m)) {
            fence = match fence {
                Some(open) if open == marker => None,
                Some(open) => Some(open),
                None => Some(marker),
            };
            continue;
        }
        if fence.is_some() {
            continue;
        }
        for target in targets(line) {
            if let Some(message) = broken(dir, &target, files) {
                problems.push(Problem::new(path, number, message));
            }
        }
    }
    problems
}

/// The link targets on one line: inline `[text](target "title")` and images,
/// and reference definitions `[label]: target`. Inline code is skipped.
fn targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut found = Vec::new();
    let definition = line.trim_start();
    if definition.starts_with('[')
        && let Some((label, rest)) = definition.split_once("]:")
        && !label.contains(']')
    {
        found.extend(rest.split_whitespace().next().map(unbracket));
    }
    let mut rest = line.as_str();
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = closing_paren(rest);
        let inner = rest[..end].trim();
        // A title follows the target after whitespace; `<...>` allows spaces.
        let target = match inner.strip_prefix('<') {
            Some(bracketed) => bracketed.split('>').next().unwrap_or(""),
            None => inner.split_whitespace().next().unwrap_or(""),
        };
        found.push(target.to_owned());
        rest = &rest[end..];
    }
    found
}

/// `line` with the contents of inline code spans blanked out.
fn without_code(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for (i, piece) in line.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        match i % 2 {
            0 => out.push_str(piece),
            _ => out.extend(piece.chars().map(|_| ' ')),
        }
    }
    out
}

/// Where the `(` opened just before `text` closes, allowing balanced
/// parentheses inside; the end of the line if it never does.
fn closing_paren(text: &str) -> usize {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return at,
            ')' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn unbracket(target: &str) -> String {
    target
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

/// Whether `target` is a rustdoc intra-doc link (`crate::Error`,
/// `derive@Repository`, `trait@Repository`) rather than a file path.
fn is_rustdoc_path(target: &str) -> bool {
    const DISAMBIGUATORS: [&str; 12] = [
        "derive@", "trait@", "struct@", "enum@", "fn@", "macro@", "mod@", "type@", "const@",
        "static@", "method@", "value@",
    ];
    target.contains("::") || DISAMBIGUATORS.iter().any(|d| target.starts_with(d))
}

/// Why `target`, written in a file in directory `dir`, is broken; `None` when
/// it is fine or not a repository path.
fn broken(dir: &str, target: &str, files: &Files) -> Option<String> {
    if target.is_empty() {
        return Some("empty link target".to_owned());
    }
    if target.starts_with('#') || is_rustdoc_path(target) || has_scheme(target) {
        return None;
    }
    let file = target.split(['#', '?']).next().unwrap_or(target);
    let file = file.replace("%20", " ");
    let joined = match file.strip_prefix('/') {
        Some(from_root) => from_root.to_owned(),
        None if dir.is_empty() => file,
        None => format!("{dir}/{file}"),
    };
    match normalize(&joined) {
        None => Some(format!(
            "link `{target}` leaves the repository: a fresh clone has nothing there"
        )),
        Some(resolved) if !files.has(&resolved) => Some(format!(
            "link `{target}` names `{resolved}`, which is not in the repository"
        )),
        Some(_) => None,
    }
}

/// Whether `target` starts with a URL scheme such as `https:`.
fn has_scheme(target: &str) -> bool {
    target.split_once(':').is_some_and(|(scheme, _)| {
        let mut chars = scheme.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// `path` with `.` and `..` resolved; `None` when `..` climbs above the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Files {
        Files::new([
            "README.md",
            "crates/a/README.md",
            "crates/a/docs/guide.md",
            "examples/demo/src/main.rs",
        ])
    }

    fn lines_of(path: &str, text: &str) -> Vec<usize> {
        links(path, text, &files()).iter().map(|p| p.line).collect()
    }

    #[test]
    fn links_to_files_and_directories_that_exist_pass() {
        let text = "\
[demo](examples/demo/src/main.rs) and [dir](examples/demo/)
![img](crates/a/docs/guide.md \"title\") [root](/README.md#usage)
[`code` label](<crates/a/README.md>) [here](#section)
[ext](https://example.com/x) [mail](mailto:a@b.c) [`Err`](crate::Error::Decode) [`R`](derive@Repository)
[ref]: crates/a/docs/guide.md
";
        assert_eq!(lines_of("README.md", text), Vec::<usize>::new());
        let nested = "[up](../README.md) [top](../../../README.md) [same](guide.md)\n";
        assert_eq!(
            lines_of("crates/a/docs/guide.md", nested),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn missing_files_are_named() {
        let text = "fine\n[gone](docs/old.md) [also](crates/a/src/)\n[r]: nothere.md\n";
        assert_eq!(lines_of("README.md", text), vec![2, 2, 3]);
        let problems = links("crates/a/README.md", "[x](../b/README.md)\n", &files());
        assert!(problems[0].message.contains("`crates/b/README.md`"));
    }

    #[test]
    fn links_leaving_the_repository_are_named() {
        let outside = concat!("..", "/shared/DESIGN.md");
        let text = format!("[design]({outside})\n[deep](crates/../../x.md)\n");
        let problems = links("README.md", &text, &files());
        assert_eq!(problems.len(), 2);
        assert!(problems.iter().all(|p| p.message.contains("leaves")));
        let nested = "[out](../../../x.md)\n";
        assert_eq!(lines_of("crates/a/README.md", nested), vec![1]);
    }

    #[test]
    fn code_is_not_linked() {
        let text = "```rust\nlet a = x[0](missing.rs);\n```\nuse `[a](missing.md)` here\n";
        assert_eq!(lines_of("README.md", text), Vec::<usize>::new());
        let tilde = "~~~\n```\n[no](missing.md)\n~~~\n[yes](missing.md)\n";
        assert_eq!(lines_of("README.md", tilde), vec![5]);
    }

    #[test]
    fn targets_with_parentheses_and_empty_ones() {
        assert_eq!(targets("[f](a_(b).md) [g]()"), vec!["a_(b).md", ""]);
        assert_eq!(lines_of("README.md", "[empty]()\n"), vec![1]);
    }
}
