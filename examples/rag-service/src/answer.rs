//! Answers from retrieved passages. [`Generator`] is where an application
//! plugs its LLM client; the service itself makes no network call, and its
//! default, [`Extractive`], answers with the passages' own sentences that
//! share the most words with the question, citing each by its number.

use std::collections::HashSet;

use reposmith::BoxFuture;

/// A passage given to a generator, numbered from 1 in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct Passage {
    /// Document title.
    pub title: String,
    /// Passage text.
    pub text: String,
}

/// What a generator answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The answer's text.
    pub text: String,
    /// Tokens the answer cost (what an LLM reports; the extractive answer
    /// counts a token per 4 bytes), charged to the caller's token limit.
    pub tokens: u64,
}

/// Why a generator gave no answer.
#[derive(Debug, thiserror::Error)]
#[error("the generator failed: {0}")]
pub struct GenerateError(pub String);

/// Turns a question and its passages into an answer.
pub trait Generator: Send + Sync + 'static {
    /// The answer to `question` from `passages` (most relevant first).
    fn answer<'a>(
        &'a self,
        question: &'a str,
        passages: &'a [Passage],
    ) -> BoxFuture<'a, Result<Answer, GenerateError>>;
}

/// The default generator: no model, only the passages' own sentences.
#[derive(Debug, Clone, Copy)]
pub struct Extractive {
    /// The most sentences an answer quotes.
    pub sentences: usize,
}

impl Default for Extractive {
    fn default() -> Self {
        Extractive { sentences: 3 }
    }
}

impl Generator for Extractive {
    fn answer<'a>(
        &'a self,
        question: &'a str,
        passages: &'a [Passage],
    ) -> BoxFuture<'a, Result<Answer, GenerateError>> {
        Box::pin(async move {
            let text = self.extract(question, passages);
            let tokens = (text.len() as u64).div_ceil(4).max(1);
            Ok(Answer { text, tokens })
        })
    }
}

impl Extractive {
    /// The best sentences, in passage order, each followed by `[n]`.
    pub fn extract(&self, question: &str, passages: &[Passage]) -> String {
        let wanted = words(question);
        let mut scored: Vec<(usize, usize, usize, &str)> = Vec::new();
        for (p, passage) in passages.iter().enumerate() {
            for (s, sentence) in sentences(&passage.text).enumerate() {
                let overlap = words(sentence).intersection(&wanted).count();
                if overlap > 0 {
                    scored.push((overlap, p, s, sentence));
                }
            }
        }
        if scored.is_empty() {
            return match passages.first() {
                Some(first) => format!(
                    "No passage answers this directly; the closest is \"{}\": {} [1]",
                    first.title,
                    sentences(&first.text).next().unwrap_or_default()
                ),
                None => "Nothing in the indexed documents matches this question.".to_owned(),
            };
        }
        // Most overlap first; ties go to the earlier (better-ranked) passage.
        scored.sort_by(|a, b| b.0.cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
        scored.truncate(self.sentences.max(1));
        scored.sort_by_key(|&(_, p, s, _)| (p, s));
        scored
            .iter()
            .map(|(_, p, _, sentence)| format!("{sentence} [{}]", p + 1))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Lower-cased words of three letters or more.
fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 2)
        .map(str::to_lowercase)
        .collect()
}

fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passage(title: &str, text: &str) -> Passage {
        Passage {
            title: title.into(),
            text: text.into(),
        }
    }

    #[test]
    fn quotes_the_sentences_sharing_most_words_and_cites_them() {
        let passages = [
            passage("Ducks", "Ducks swim. Mallards migrate south in winter."),
            passage("Geese", "Geese fly in a V. Canada geese migrate south too."),
        ];
        let answer =
            Extractive { sentences: 2 }.extract("where do mallards migrate in winter", &passages);
        assert_eq!(
            answer,
            "Mallards migrate south in winter. [1] Canada geese migrate south too. [2]"
        );
    }

    #[test]
    fn says_so_when_nothing_matches() {
        let answer = Extractive::default().extract("quantum chromodynamics", &[]);
        assert!(answer.starts_with("Nothing"));
    }
}
