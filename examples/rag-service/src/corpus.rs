//! The evaluation corpus: passages and title queries from the PostgreSQL manual.
//!
//! Debian's `postgresql-doc-15` ships the manual as XHTML, one page per
//! section (`cargo xtask rag fetch` unpacks it under `target/rag/doc`). A
//! *passage* is the text of one `<p>` element, whitespace collapsed, kept
//! when it has [`MIN_WORDS`] to [`MAX_WORDS`] words and at least
//! [`MIN_LETTER_SHARE`] of its non-space characters are letters (that drops
//! paragraphs that are mostly code, numbers or option lists), and not seen
//! before (pages are read in file-name order; a repeated paragraph stays
//! with its first page). A *query* is a page's title without its section
//! number ("25.1. Routine Vacuuming" → "Routine Vacuuming") when it has at
//! least [`MIN_QUERY_WORDS`] words and the page has a passage; the
//! passages of that page are its relevant set.
//!
//! The pages are well-formed XML, so they are read with `roxmltree`, a
//! small XML tree with no dependencies, rather than a full HTML5 parser.

use std::path::{Path, PathBuf};

use roxmltree::{Document, Node, ParsingOptions};

/// Fewest words a passage has.
pub const MIN_WORDS: usize = 12;
/// Most words a passage has.
pub const MAX_WORDS: usize = 200;
/// Least share of letters among a passage's non-space characters.
pub const MIN_LETTER_SHARE: f64 = 0.8;
/// Fewest words a title has to be a query.
pub const MIN_QUERY_WORDS: usize = 3;
/// The environment variable naming the directory of the manual's pages.
pub const DOC_DIR_ENV: &str = "RAG_DOC_DIR";

/// A retrievable paragraph and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passage {
    /// The page's file name, e.g. `routine-vacuuming.html`.
    pub page: String,
    /// The page's title without its section number.
    pub title: String,
    /// The paragraph's text, whitespace collapsed.
    pub text: String,
}

/// A page title used as a search query; the page's passages are the answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The title without its section number.
    pub text: String,
    /// The page whose passages are relevant.
    pub page: String,
}

/// Passages and queries of a set of pages.
#[derive(Debug, Clone, Default)]
pub struct Corpus {
    /// Every passage, in page then document order.
    pub passages: Vec<Passage>,
    /// Every query, in page order.
    pub queries: Vec<Query>,
}

/// One page, parsed: its file name, title and paragraph texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The file name.
    pub file: String,
    /// The `<title>`, section number removed, whitespace collapsed.
    pub title: String,
    /// The text of each `<p>`, whitespace collapsed, in document order.
    pub paragraphs: Vec<String>,
}

/// Why the corpus could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorpusError {
    /// The directory of pages could not be listed or has no pages.
    #[error("no manual pages in {}: {reason} (run `cargo xtask rag fetch` or set RAG_DOC_DIR)", dir.display())]
    NoPages {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A page could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The page.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A page is not well-formed XHTML.
    #[error("cannot parse {file}: {reason}")]
    Parse {
        /// The page's file name.
        file: String,
        /// What the parser said.
        reason: String,
    },
}

/// Where the manual's pages are: `$RAG_DOC_DIR` when set, else where
/// `cargo xtask rag fetch` unpacks them under `<workspace>/target/rag/doc`.
pub fn doc_dir() -> PathBuf {
    match std::env::var_os(DOC_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => crate::embed::workspace_root()
            .join("target/rag/doc/usr/share/doc/postgresql-doc-15/html"),
    }
}

impl Corpus {
    /// Reads every `*.html` page of `dir`, in file-name order.
    pub fn load(dir: &Path) -> Result<Corpus, CorpusError> {
        let no_pages = |reason: String| CorpusError::NoPages {
            dir: dir.to_path_buf(),
            reason,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| no_pages(e.to_string()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "html"))
            .collect();
        if files.is_empty() {
            return Err(no_pages("no *.html files".into()));
        }
        files.sort();
        let mut pages = Vec::with_capacity(files.len());
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| CorpusError::Read {
                path: path.clone(),
                source,
            })?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            pages.push(Page::parse(&file, &text)?);
        }
        Ok(Corpus::from_pages(pages))
    }

    /// The passages and queries of `pages`, taken in the order given.
    pub fn from_pages(pages: impl IntoIterator<Item = Page>) -> Corpus {
        let mut seen = std::collections::HashSet::new();
        let mut corpus = Corpus::default();
        for page in pages {
            let before = corpus.passages.len();
            for text in page.paragraphs {
                if is_passage(&text) && seen.insert(text.clone()) {
                    corpus.passages.push(Passage {
                        page: page.file.clone(),
                        title: page.title.clone(),
                        text,
                    });
                }
            }
            let has_passage = corpus.passages.len() > before;
            if has_passage && page.title.split_whitespace().count() >= MIN_QUERY_WORDS {
                corpus.queries.push(Query {
                    text: page.title,
                    page: page.file,
                });
            }
        }
        corpus
    }

    /// A 64-bit fingerprint of every passage's page and text, for cache keys.
    pub fn fingerprint(&self) -> u64 {
        let mut hash = Fnv::default();
        for p in &self.passages {
            hash.write(p.page.as_bytes());
            hash.write(&[0]);
            hash.write(p.text.as_bytes());
            hash.write(&[0]);
        }
        hash.finish()
    }
}

impl Page {
    /// Parses one XHTML page named `file`.
    pub fn parse(file: &str, text: &str) -> Result<Page, CorpusError> {
        let options = ParsingOptions {
            allow_dtd: true,
            ..ParsingOptions::default()
        };
        let doc = Document::parse_with_options(text, options).map_err(|e| CorpusError::Parse {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
        let title = doc
            .descendants()
            .find(|n| n.has_tag_name("title"))
            .map(|n| collapse(&text_of(n)))
            .unwrap_or_default();
        let paragraphs = doc
            .descendants()
            .filter(|n| n.has_tag_name("p"))
            .map(|n| collapse(&text_of(n)))
            .collect();
        Ok(Page {
            file: file.to_owned(),
            title: strip_section_number(&title).to_owned(),
            paragraphs,
        })
    }
}

/// All text inside `node`, concatenated.
fn text_of(node: Node<'_, '_>) -> String {
    node.descendants()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect()
}

/// Words separated by single spaces.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a paragraph is kept: its length in words, mostly letters.
pub fn is_passage(text: &str) -> bool {
    let words = text.split_whitespace().count();
    if !(MIN_WORDS..=MAX_WORDS).contains(&words) {
        return false;
    }
    let (letters, visible) = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .fold((0usize, 0usize), |(l, v), c| {
            (l + usize::from(c.is_alphabetic()), v + 1)
        });
    letters as f64 / visible as f64 >= MIN_LETTER_SHARE
}

/// "Chapter 25. Routine Database Maintenance Tasks" → "Routine Database
/// Maintenance Tasks"; "25.1. Routine Vacuuming" → "Routine Vacuuming";
/// "Part III. Server Administration", "F.6. basic_archive" likewise. A
/// title without a number ("CREATE TABLE") is returned whole.
pub fn strip_section_number(title: &str) -> &str {
    let rest = ["Chapter ", "Part ", "Appendix "]
        .iter()
        .find_map(|word| title.strip_prefix(word))
        .unwrap_or(title);
    let Some((number, after)) = rest.split_once(' ') else {
        return title;
    };
    let is_number = number.strip_suffix('.').is_some_and(|n| {
        !n.is_empty()
            && n.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            })
    });
    if is_number { after.trim_start() } else { title }
}

/// FNV-1a, 64 bits: stable across platforms and Rust releases (std's
/// hasher is not promised to be), for cache keys.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd"><html xmlns="http://www.w3.org/1999/xhtml"><head><title>25.1. Routine
 Vacuuming Of Tables</title></head><body>
<p>PostgreSQL databases require periodic maintenance known as <em class="firstterm">vacuuming</em>. For many installations, it is sufficient.</p>
<p>Too short to keep.</p>
<div><p>SELECT 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 FROM t WHERE x &lt; 1;</p></div>
<p>PostgreSQL databases require periodic maintenance known as <em class="firstterm">vacuuming</em>. For many installations, it is sufficient.</p>
</body></html>"#;

    #[test]
    fn a_page_gives_its_title_and_paragraphs() {
        let page = Page::parse("routine-vacuuming.html", PAGE).unwrap();
        assert_eq!(page.title, "Routine Vacuuming Of Tables");
        assert_eq!(page.paragraphs.len(), 4);
        assert_eq!(
            page.paragraphs[0],
            "PostgreSQL databases require periodic maintenance known as vacuuming. \
             For many installations, it is sufficient."
        );
        assert!(page.paragraphs[2].contains("x < 1"));
    }

    #[test]
    fn passages_are_long_wordy_and_unique() {
        let page = Page::parse("routine-vacuuming.html", PAGE).unwrap();
        let corpus = Corpus::from_pages([page]);
        assert_eq!(corpus.passages.len(), 1, "{:?}", corpus.passages);
        assert_eq!(corpus.passages[0].page, "routine-vacuuming.html");
        assert_eq!(corpus.passages[0].title, "Routine Vacuuming Of Tables");
        assert_eq!(
            corpus.queries,
            [Query {
                text: "Routine Vacuuming Of Tables".into(),
                page: "routine-vacuuming.html".into()
            }]
        );
    }

    #[test]
    fn short_titles_and_pages_without_passages_make_no_query() {
        let page = |file: &str, title: &str, paragraphs: Vec<String>| Page {
            file: file.into(),
            title: title.into(),
            paragraphs,
        };
        let long = "word ".repeat(20).trim().to_owned();
        let corpus = Corpus::from_pages([
            page("a.html", "CREATE TABLE", vec![long.clone()]),
            page("b.html", "Full Text Search", vec![]),
            page("c.html", "The SQL Language", vec![long.clone()]),
            page("d.html", "The SQL Language Again", vec![format!("{long} more")]),
        ]);
        let queries: Vec<&str> = corpus.queries.iter().map(|q| q.page.as_str()).collect();
        // c.html's only paragraph is a duplicate of a.html's.
        assert_eq!(queries, ["d.html"]);
        assert_eq!(corpus.passages.len(), 2);
    }

    #[test]
    fn the_passage_rules_hold_at_their_edges() {
        let words = |n: usize| vec!["word"; n].join(" ");
        assert!(!is_passage(&words(11)));
        assert!(is_passage(&words(12)));
        assert!(is_passage(&words(200)));
        assert!(!is_passage(&words(201)));
        // 4 letters of 5 visible characters per word: kept; 3 of 5: dropped.
        assert!(is_passage(&vec!["abcd1"; 12].join(" ")));
        assert!(!is_passage(&vec!["abc12"; 12].join(" ")));
    }

    #[test]
    fn section_numbers_are_stripped() {
        for (title, want) in [
            ("Chapter 25. Routine Database Maintenance Tasks", "Routine Database Maintenance Tasks"),
            ("25.1. Routine Vacuuming", "Routine Vacuuming"),
            ("Part III. Server Administration", "Server Administration"),
            ("Appendix F. Additional Supplied Modules", "Additional Supplied Modules"),
            ("F.6. basic_archive", "basic_archive"),
            ("CREATE TABLE AS", "CREATE TABLE AS"),
            ("PostgreSQL 15.20 Documentation", "PostgreSQL 15.20 Documentation"),
            ("Chapter", "Chapter"),
        ] {
            assert_eq!(strip_section_number(title), want, "{title}");
        }
    }

    #[test]
    fn fingerprints_change_with_the_text() {
        let page = Page::parse("routine-vacuuming.html", PAGE).unwrap();
        let a = Corpus::from_pages([page.clone()]);
        let mut b = a.clone();
        b.passages[0].text.push('!');
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Corpus::from_pages([page]).fingerprint());
    }
}
