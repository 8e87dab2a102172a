//! Score-based fusion recomputed in memory, to compare it with reciprocal
//! rank fusion on the same candidates before the library grows it.
//!
//! Reciprocal rank fusion only sees ranks: the 1st vector hit and the 1st
//! text hit count the same whether they match the query closely or barely.
//! A convex combination `w · vector + (1 − w) · text` of the two sides'
//! scores, each mapped onto `[0, 1]`, keeps how far ahead a hit is.
//!
//! Both fusions start from the same candidates: each side's first
//! `candidates` ids. Every candidate is then scored on both sides, as the
//! database can (its distance to the query vector is computed for a text
//! candidate; a vector candidate's text score is its rank when it matches
//! the text query, 0 when it does not).

use std::collections::HashMap;

/// The full-text scores read for every match, in this order.
pub const TEXT_SCORES: [&str; 4] = ["ts_rank", "ts_rank/1", "ts_rank_cd", "ts_rank_cd/1"];

/// One query's text side under one text score: every match, best first,
/// and each match's score.
#[derive(Debug, Clone, Default)]
pub struct TextSide {
    /// Matches with their score, best first (ties by id).
    pub ranked: Vec<(i64, f64)>,
    /// The same scores by id.
    pub score: HashMap<i64, f64>,
}

impl TextSide {
    /// The side of `matches` (id and score), in any order.
    pub fn of(mut matches: Vec<(i64, f64)>) -> TextSide {
        matches.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let score = matches.iter().copied().collect();
        TextSide {
            ranked: matches,
            score,
        }
    }

    /// The ids of the first `n` matches.
    pub fn top(&self, n: usize) -> impl Iterator<Item = i64> + '_ {
        self.ranked.iter().take(n).map(|(id, _)| *id)
    }
}

/// How a side's scores over the fused candidates are mapped onto `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// Left as they are (cosine similarity: `1 − distance`).
    Raw,
    /// `(s − min) / (max − min)` over the candidates: the best 1, the worst 0.
    MinMax,
    /// `s / max` over the candidates: 0 stays 0 (a text score's floor).
    Max,
    /// `s / (1 + s)`, per hit (PostgreSQL's rank normalisation 32).
    Saturate,
}

impl Norm {
    /// A short name for tables.
    pub fn label(self) -> &'static str {
        match self {
            Norm::Raw => "raw",
            Norm::MinMax => "min-max",
            Norm::Max => "/max",
            Norm::Saturate => "s/(1+s)",
        }
    }

    /// Maps `scores` in place. A side whose scores are all equal (or all
    /// 0 under `Max`) cannot tell the candidates apart: it scores 0.
    pub fn apply(self, scores: &mut [f64]) {
        let lo = scores.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        match self {
            Norm::Raw => {}
            Norm::MinMax if hi > lo => scores.iter_mut().for_each(|s| *s = (*s - lo) / (hi - lo)),
            Norm::Max if hi > 0.0 => scores.iter_mut().for_each(|s| *s /= hi),
            Norm::Saturate => scores.iter_mut().for_each(|s| *s /= 1.0 + *s),
            Norm::MinMax | Norm::Max => scores.iter_mut().for_each(|s| *s = 0.0),
        }
    }
}

/// Settings of the convex combination.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convex {
    /// `w`, the vector side's share; the text side's is `1 − w`.
    pub vector_weight: f64,
    /// Candidates each side contributes.
    pub candidates: usize,
    /// How cosine similarities are mapped.
    pub vector_norm: Norm,
    /// How text scores are mapped.
    pub text_norm: Norm,
}

/// One query's candidates: the vector side's best ids (best first), the
/// cosine similarity of every id either side may contribute, the text side.
#[derive(Debug, Clone, Copy)]
pub struct Sides<'a> {
    /// Vector candidates, best first.
    pub vector: &'a [i64],
    /// Cosine similarity to the query of every passage, by id.
    pub similarity: &'a [f32],
    /// The text side under the chosen text score.
    pub text: &'a TextSide,
}

/// The first `top` ids by `w · norm(similarity) + (1 − w) · norm(text
/// score)` over the union of both sides' first `candidates`; ties by id.
pub fn convex(sides: Sides<'_>, c: Convex, top: usize) -> Vec<i64> {
    let mut union: Vec<i64> = sides.vector.iter().take(c.candidates).copied().collect();
    union.extend(sides.text.top(c.candidates));
    union.sort_unstable();
    union.dedup();
    let mut v: Vec<f64> = union
        .iter()
        .map(|id| f64::from(sides.similarity[*id as usize]))
        .collect();
    let mut t: Vec<f64> = union
        .iter()
        .map(|id| sides.text.score.get(id).copied().unwrap_or(0.0))
        .collect();
    c.vector_norm.apply(&mut v);
    c.text_norm.apply(&mut t);
    let w = c.vector_weight;
    let mut scored: Vec<(i64, f64)> = union
        .iter()
        .zip(v.iter().zip(&t))
        .map(|(id, (v, t))| (*id, w * v + (1.0 - w) * t))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().take(top).map(|(id, _)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_map_onto_zero_to_one() {
        let mut s = [2.0, 4.0, 3.0];
        Norm::MinMax.apply(&mut s);
        assert_eq!(s, [0.0, 1.0, 0.5]);
        let mut s = [0.0, 4.0, 2.0];
        Norm::Max.apply(&mut s);
        assert_eq!(s, [0.0, 1.0, 0.5]);
        let mut s = [1.0, 3.0];
        Norm::Saturate.apply(&mut s);
        assert_eq!(s, [0.5, 0.75]);
        let mut flat = [0.3, 0.3];
        Norm::MinMax.apply(&mut flat);
        assert_eq!(
            flat,
            [0.0, 0.0],
            "a side that cannot tell hits apart adds nothing"
        );
    }

    #[test]
    fn convex_weighs_scores_not_ranks() {
        // Vector: 1 (0.9) just ahead of 2 (0.89); text: 2 far ahead of 1.
        let similarity = [0.0, 0.9, 0.89, 0.2];
        let text = TextSide::of(vec![(2, 1.0), (3, 0.5), (1, 0.1)]);
        let sides = Sides {
            vector: &[1, 2, 3],
            similarity: &similarity,
            text: &text,
        };
        let c = Convex {
            vector_weight: 0.5,
            candidates: 3,
            vector_norm: Norm::Raw,
            text_norm: Norm::Max,
        };
        // 1: 0.45 + 0.05; 2: 0.445 + 0.5; 3: 0.1 + 0.25.
        assert_eq!(convex(sides, c, 3), [2, 1, 3]);
        let vector_only = Convex {
            vector_weight: 1.0,
            ..c
        };
        assert_eq!(convex(sides, vector_only, 3), [1, 2, 3]);
        let text_only = Convex {
            vector_weight: 0.0,
            ..c
        };
        assert_eq!(convex(sides, text_only, 3), [2, 3, 1]);
    }

    #[test]
    fn only_the_first_candidates_of_each_side_are_fused() {
        let similarity = [0.0, 0.9, 0.8, 0.1];
        let text = TextSide::of(vec![(3, 1.0), (2, 0.5)]);
        let sides = Sides {
            vector: &[1, 2],
            similarity: &similarity,
            text: &text,
        };
        let one = Convex {
            vector_weight: 0.5,
            candidates: 1,
            vector_norm: Norm::MinMax,
            text_norm: Norm::Max,
        };
        // Candidates 1 (vector) and 3 (text): 1 scores 0.5 + 0, 3 scores 0 + 0.5: tie by id.
        assert_eq!(convex(sides, one, 5), [1, 3]);
    }
}
