//! The fusion exploration of `rag-eval`: every query's candidates are read
//! once (exact cosine similarities in memory, every full-text match with
//! four rank functions from PostgreSQL), then each fusion variant is tuned
//! on a small grid over the tuning half and reported on both halves.
//!
//! The grids are deliberately coarse and equal in size for reciprocal rank
//! fusion and the convex combination (27 settings each), so neither method
//! wins by having more knobs to fit the tuning half with.

use std::time::Duration;

use reposmith::postgres::sqlx;

use super::fusion::{self, Convex, Norm, Sides, TextSide};
use super::{Outcome, Rrf, Scores};
use crate::corpus::Corpus;

/// How deep each side's candidates are read.
pub const DEPTH: usize = 200;

/// Every match of a text query with the scores of [`fusion::TEXT_SCORES`].
const MATCHES_SQL: &str = "SELECT id, ts_rank(search_tsv, q)::float8, ts_rank(search_tsv, q, 1)::float8, \
     ts_rank_cd(search_tsv, q)::float8, ts_rank_cd(search_tsv, q, 1)::float8 \
     FROM eval_passages, websearch_to_tsquery('english'::regconfig, $1) q WHERE search_tsv @@ q";

/// One query's candidates.
pub struct Material {
    /// The query's position in the corpus.
    pub query: usize,
    /// Cosine similarity of every passage to the query.
    pub similarity: Vec<f32>,
    /// The exact vector neighbours, best first, [`DEPTH`] of them.
    pub vector: Vec<i64>,
    /// Text sides: `[all words, any word][text score]`.
    pub text: [[TextSide; 4]; 2],
}

impl Material {
    /// The candidates under the text query kind and score of `v`.
    pub fn sides(&self, any: bool, score: usize) -> Sides<'_> {
        Sides {
            vector: &self.vector,
            similarity: &self.similarity,
            text: &self.text[usize::from(any)][score],
        }
    }
}

/// Reads the material of every query: `passages` and `queries` are the
/// unit vectors, `text_of(i, any)` the text query of query `i`.
pub async fn gather(
    pool: &reposmith::postgres::PgPool,
    passages: &[Vec<f32>],
    queries: &[&[f32]],
    text_of: impl Fn(usize, bool) -> String,
) -> Result<Vec<Material>, sqlx::Error> {
    let mut all = Vec::with_capacity(queries.len());
    for (i, q) in queries.iter().enumerate() {
        let similarity: Vec<f32> = passages
            .iter()
            .map(|p| p.iter().zip(*q).map(|(a, b)| a * b).sum())
            .collect();
        let mut order: Vec<i64> = (0..similarity.len() as i64).collect();
        order.sort_by(|a, b| {
            similarity[*b as usize]
                .total_cmp(&similarity[*a as usize])
                .then(a.cmp(b))
        });
        order.truncate(DEPTH);
        let text = [
            text_sides(pool, &text_of(i, false)).await?,
            text_sides(pool, &text_of(i, true)).await?,
        ];
        all.push(Material {
            query: i,
            similarity,
            vector: order,
            text,
        });
    }
    Ok(all)
}

/// The text side of `query` under each text score.
async fn text_sides(
    pool: &reposmith::postgres::PgPool,
    query: &str,
) -> Result<[TextSide; 4], sqlx::Error> {
    let rows: Vec<(i64, f64, f64, f64, f64)> = sqlx::query_as(MATCHES_SQL)
        .bind(query)
        .fetch_all(pool)
        .await?;
    let side = |pick: fn(&(i64, f64, f64, f64, f64)) -> f64| {
        TextSide::of(rows.iter().map(|r| (r.0, pick(r))).collect())
    };
    Ok([side(|r| r.1), side(|r| r.2), side(|r| r.3), side(|r| r.4)])
}

/// A fusion setting the grids try.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Setting {
    /// Reciprocal rank fusion.
    Rrf(Rrf),
    /// The convex combination of normalised scores.
    Convex(Convex),
}

impl Setting {
    /// The first `top` ids of `m`'s candidates fused with this setting.
    pub fn fuse(&self, m: &Material, any: bool, score: usize, top: usize) -> Vec<i64> {
        let sides = m.sides(any, score);
        match *self {
            Setting::Rrf(rrf) => {
                let text: Vec<i64> = sides.text.top(DEPTH).collect();
                super::fuse(sides.vector, &text, rrf, top)
            }
            Setting::Convex(c) => fusion::convex(sides, c, top),
        }
    }

    /// The knobs, for the table.
    pub fn knobs(&self) -> String {
        match self {
            Setting::Rrf(r) => format!(
                "k {}, text weight {}, {} candidates",
                r.k, r.text_weight, r.candidates
            ),
            Setting::Convex(c) => {
                format!("w {:.1}, {} candidates", c.vector_weight, c.candidates)
            }
        }
    }
}

/// The candidates per side the grids try.
const CANDIDATES: [usize; 3] = [40, 100, 200];

/// Reciprocal rank fusion's grid: 3 constants × 3 text weights × 3 depths.
pub fn rrf_grid() -> Vec<Setting> {
    let mut grid = Vec::new();
    for k in [10, 30, 60] {
        for text_weight in [0.25, 0.5, 1.0] {
            for candidates in CANDIDATES {
                grid.push(Setting::Rrf(Rrf {
                    text_weight,
                    k,
                    candidates,
                }));
            }
        }
    }
    grid
}

/// The convex combination's grid: 9 vector shares × 3 depths.
pub fn convex_grid(vector_norm: Norm, text_norm: Norm) -> Vec<Setting> {
    let mut grid = Vec::new();
    for tenths in 1..=9 {
        for candidates in CANDIDATES {
            grid.push(Setting::Convex(Convex {
                vector_weight: f64::from(tenths) / 10.0,
                candidates,
                vector_norm,
                text_norm,
            }));
        }
    }
    grid
}

/// A family of settings: the fusion, the text query kind and score, and
/// the grid its knobs are tuned on.
pub struct Variant {
    /// Fusion and normalisation, for the table.
    pub name: String,
    /// "any word" (true) or "all words".
    pub any: bool,
    /// Index into [`fusion::TEXT_SCORES`].
    pub score: usize,
    /// The settings tried.
    pub grid: Vec<Setting>,
    /// The setting used untuned: the library's defaults for `k` = 10.
    pub default: Setting,
}

/// Every variant explored.
pub fn variants() -> Vec<Variant> {
    let mut all = Vec::new();
    for any in [false, true] {
        for score in 0..fusion::TEXT_SCORES.len() {
            all.push(Variant {
                name: "RRF".into(),
                any,
                score,
                grid: rrf_grid(),
                default: Setting::Rrf(Rrf {
                    text_weight: 1.0,
                    k: 60,
                    candidates: 40,
                }),
            });
            for v in [Norm::Raw, Norm::MinMax] {
                for t in [Norm::MinMax, Norm::Max, Norm::Saturate] {
                    all.push(Variant {
                        name: format!("convex, vector {}, text {}", v.label(), t.label()),
                        any,
                        score,
                        grid: convex_grid(v, t),
                        default: Setting::Convex(Convex {
                            vector_weight: 0.5,
                            candidates: 40,
                            vector_norm: v,
                            text_norm: t,
                        }),
                    });
                }
            }
        }
    }
    all
}

/// A variant tuned: its best setting on the tuning half and its MRR@10 on
/// both halves.
#[derive(Debug, Clone)]
pub struct Tuned {
    /// The variant's description.
    pub label: String,
    /// Text query kind and score.
    pub any: bool,
    /// Index into [`fusion::TEXT_SCORES`].
    pub score: usize,
    /// The best setting on the tuning half (the first of equals).
    pub setting: Setting,
    /// MRR@10 on the tuning half.
    pub tuning: f64,
    /// MRR@10 on the held-out half.
    pub held_out: f64,
    /// MRR@10 of the untuned default on the tuning half and the held-out half.
    pub default: (f64, f64),
}

/// MRR@10 of `fused` over the materials `keep` admits.
fn mrr(
    corpus: &Corpus,
    materials: &[Material],
    keep: impl Fn(&Material) -> bool,
    fused: impl Fn(&Material) -> Vec<i64>,
) -> f64 {
    let outcomes: Vec<Outcome> = materials
        .iter()
        .filter(|m| keep(m))
        .map(|m| {
            let ids = fused(m);
            let pages = ids
                .iter()
                .map(|&id| corpus.passages[id as usize].page.as_str());
            Outcome::of(&corpus.queries[m.query], pages, Duration::ZERO)
        })
        .collect();
    Scores::of(&outcomes).mrr10
}

/// Tunes `variant` on the queries `held_out` marks false; reports both halves.
pub fn tune(
    corpus: &Corpus,
    materials: &[Material],
    held_out: &[bool],
    variant: &Variant,
) -> Option<Tuned> {
    let (any, score) = (variant.any, variant.score);
    let tuning = |m: &Material| !held_out[m.query];
    let mut best: Option<(f64, Setting)> = None;
    for setting in &variant.grid {
        let m = mrr(corpus, materials, tuning, |m| {
            setting.fuse(m, any, score, 10)
        });
        if best.is_none_or(|(b, _)| m > b + 1e-12) {
            best = Some((m, *setting));
        }
    }
    let (tuning_mrr, setting) = best?;
    let held = |setting: Setting| {
        mrr(
            corpus,
            materials,
            |m| held_out[m.query],
            |m| setting.fuse(m, any, score, 10),
        )
    };
    let default = variant.default;
    let default_tuning = mrr(corpus, materials, tuning, |m| {
        default.fuse(m, any, score, 10)
    });
    let words = if any { "any word" } else { "all words" };
    Some(Tuned {
        label: format!(
            "{}, {}, text {words}",
            variant.name,
            fusion::TEXT_SCORES[score]
        ),
        any,
        score,
        setting,
        tuning: tuning_mrr,
        held_out: held(setting),
        default: (default_tuning, held(default)),
    })
}

/// Every variant tuned, best on the tuning half first, as a Markdown table.
pub fn table(tuned: &[Tuned]) -> String {
    let mut out = String::from(
        "| fusion (explored in memory) | tuned on the tuning half | MRR@10 tuning | MRR@10 held out | default: tuning | default: held out |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for t in tuned {
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            t.label,
            t.setting.knobs(),
            t.tuning,
            t.held_out,
            t.default.0,
            t.default.1
        ));
    }
    out
}
