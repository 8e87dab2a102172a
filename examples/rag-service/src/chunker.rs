//! Splitting a document's text into passages: paragraph-based, bounded in
//! size.
//!
//! Paragraphs (separated by blank lines) are the unit: short ones are joined
//! until a passage reaches [`Chunker::target`] characters; a paragraph
//! longer than [`Chunker::max`] is cut at sentence ends, and a sentence
//! longer than that at word boundaries (or, for a run without spaces, at
//! `max` characters). Every passage is at most `max` characters and none is
//! empty. The embedding model reads about 256 word pieces, roughly 1,000
//! characters of English, so the default bound keeps each passage whole.

/// The passage bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunker {
    /// A passage is closed once it holds this many characters.
    pub target: usize,
    /// No passage holds more characters than this.
    pub max: usize,
}

impl Default for Chunker {
    fn default() -> Self {
        Chunker {
            target: 600,
            max: 1_000,
        }
    }
}

impl Chunker {
    /// The passages of `text`, in order.
    pub fn split(&self, text: &str) -> Vec<String> {
        let max = self.max.max(1);
        let mut passages = Vec::new();
        let mut current = String::new();
        for paragraph in paragraphs(text) {
            for piece in bounded(&paragraph, max) {
                let joined = chars(&current) + 2 + chars(&piece);
                if !current.is_empty() && (joined > max || chars(&current) >= self.target) {
                    passages.push(std::mem::take(&mut current));
                }
                if !current.is_empty() {
                    current.push_str("\n\n");
                }
                current.push_str(&piece);
            }
        }
        if !current.is_empty() {
            passages.push(current);
        }
        passages
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// Paragraphs with their inner whitespace collapsed to single spaces.
fn paragraphs(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split("\n\n")
        .flat_map(|block| block.split("\r\n\r\n"))
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
}

/// `paragraph` in pieces of at most `max` characters: whole when it fits,
/// else sentences packed greedily, else words, else hard cuts.
fn bounded(paragraph: &str, max: usize) -> Vec<String> {
    if chars(paragraph) <= max {
        return vec![paragraph.to_owned()];
    }
    let units: Vec<String> = sentences(paragraph)
        .flat_map(|s| match chars(s) <= max {
            true => vec![s.to_owned()],
            false => words(s, max),
        })
        .collect();
    pack(units, max)
}

/// Sentences: cut after `.`, `!` or `?` followed by a space.
fn sentences(paragraph: &str) -> impl Iterator<Item = &str> {
    let mut rest = paragraph;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .zip(rest.chars().skip(1))
            .find(|((_, c), next)| matches!(c, '.' | '!' | '?') && *next == ' ')
            .map(|((i, c), _)| i + c.len_utf8());
        let (sentence, tail) = rest.split_at(end.unwrap_or(rest.len()));
        rest = tail.trim_start();
        Some(sentence.trim())
    })
}

/// A sentence longer than `max` in word-aligned pieces; a word longer
/// than `max` is cut every `max` characters.
fn words(sentence: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    for word in sentence.split(' ') {
        let glyphs: Vec<char> = word.chars().collect();
        pieces.extend(glyphs.chunks(max).map(|c| c.iter().collect::<String>()));
    }
    pack(pieces, max)
}

/// Joins `units` with spaces into pieces of at most `max` characters.
fn pack(units: Vec<String>, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for unit in units.into_iter().filter(|u| !u.is_empty()) {
        if !current.is_empty() && chars(&current) + 1 + chars(&unit) > max {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&unit);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_paragraphs_are_joined_up_to_the_target() {
        let chunker = Chunker {
            target: 20,
            max: 40,
        };
        let passages = chunker.split("one two\n\nthree four\n\nfive six seven eight nine\n\nten");
        assert_eq!(
            passages,
            ["one two\n\nthree four", "five six seven eight nine", "ten"]
        );
    }

    #[test]
    fn every_passage_is_bounded_and_nothing_is_lost() {
        let chunker = Chunker {
            target: 30,
            max: 50,
        };
        let long_word = "x".repeat(130);
        let text = format!(
            "A first sentence that is long. A second one, also long enough! Third?\n\n{long_word} tail\n\n\n\n  spaced   out  "
        );
        let passages = chunker.split(&text);
        assert!(
            passages
                .iter()
                .all(|p| !p.is_empty() && p.chars().count() <= 50)
        );
        let original: String = text.split_whitespace().collect();
        let rebuilt: String = passages.concat().split_whitespace().collect();
        assert_eq!(original, rebuilt);
    }

    #[test]
    fn an_empty_text_has_no_passages() {
        assert!(Chunker::default().split(" \n\n \t ").is_empty());
    }
}
