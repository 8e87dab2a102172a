//! [`VectorSearch`]: nearest-neighbour, full-text and hybrid search over an
//! entity, and the builders the derive's `search_<field>` methods return.
//!
//! A search is data ([`SearchQuery`]) until it is awaited, like
//! [`Find`](crate::Find). Vectors are checked against the column's
//! [`VectorSpec`] before anything is sent.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;

use crate::cursor::Cursor;
use crate::entity::Entity;
use crate::filter::{Column, Filter};
use crate::repository::{BoxFuture, Page};
use crate::schema::{Distance, VectorSpec};
use crate::value::{FieldType, Value};
use crate::{Error, Result};

/// One search hit: the entity and how it ranked.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Scored<E> {
    /// The matching entity.
    pub entity: E,
    /// Vector distance to the query (smaller is closer); `None` for a text
    /// search, or a hybrid hit found by the text side only under reciprocal
    /// rank fusion (convex fusion scores every candidate on both sides).
    pub distance: Option<f64>,
    /// `ts_rank_cd` of the text match (larger is better; `ts_rank` in a
    /// [`FusionMethod::Convex`] hybrid search); `None` for a vector search,
    /// or a hybrid hit that does not match the text or, under rank fusion,
    /// was found by the vector side only.
    pub text_rank: Option<f64>,
    /// The value results are ordered by: the distance (ascending) for a vector
    /// search, the text rank (descending) for a text search, the fused
    /// score (descending) for a hybrid search.
    pub score: f64,
}

impl<E> Scored<E> {
    /// A hit with its ranking values.
    pub fn new(entity: E, distance: Option<f64>, text_rank: Option<f64>, score: f64) -> Self {
        Scored {
            entity,
            distance,
            text_rank,
            score,
        }
    }
}

/// What a search ranks by.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SearchKind {
    /// Nearest neighbours of `vector` in the column at `column`.
    Vector {
        /// Position of the vector column in the schema.
        column: usize,
        /// The query vector.
        vector: Value,
    },
    /// Nearest neighbours of the embedding of `text` (computed by the
    /// repository's [`Embedder`](crate::embed::Embedder)) in the column at `column`.
    VectorFromText {
        /// Position of the vector column in the schema.
        column: usize,
        /// The text to embed.
        text: String,
    },
    /// Full-text matches of `text` (web-search syntax: quotes, `or`, `-`).
    Text {
        /// The user's query text.
        text: String,
    },
    /// Both, fused as [`Fusion`] says (reciprocal rank fusion by default).
    Hybrid {
        /// The user's query text.
        text: String,
        /// Position of the vector column in the schema.
        column: usize,
        /// The query vector.
        vector: Value,
    },
}

/// How a hybrid search fuses its vector ranking and its full-text ranking.
///
/// Both methods start from each side's first [`Fusion::candidates`] rows
/// within the search's filter (vector: nearest first; text: best rank
/// first, by `ts_rank_cd` for rank fusion and `ts_rank` for convex fusion).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FusionMethod {
    /// Reciprocal rank fusion: `text_weight / (rrf_k + text rank) +
    /// vector_weight / (rrf_k + vector rank)`, a side's term 0 for a
    /// candidate it did not bring. Only ranks count, so it needs no
    /// calibration between the sides' scores; the default.
    #[default]
    ReciprocalRank,
    /// A convex combination of the two sides' scores, each min-max
    /// normalised over the fused candidates:
    /// `(vector_weight · v + text_weight · t) / (vector_weight + text_weight)`,
    /// where `v = (d_max − d) / (d_max − d_min)` from the vector distance
    /// `d` and `t = (r − r_min) / (r_max − r_min)` from the text rank `r`
    /// (`ts_rank`, which fuses better than `ts_rank_cd` here; 0 for a
    /// candidate that does not match the text). The text side's
    /// candidates are the best by `ts_rank`. Every candidate is scored on
    /// both sides, so a text candidate has its distance and a vector
    /// candidate its text rank. A side whose candidates all score alike
    /// adds 0. Unlike rank fusion it keeps how far ahead a hit is on each
    /// side, and a weak text side (a query of common words) weighs little.
    /// `rrf_k` does not apply.
    Convex,
}

/// How a hybrid search fuses its two rankings, and the knobs of both
/// methods. With [`FusionMethod::ReciprocalRank`] (the default):
/// `score = text_weight / (rrf_k + text_rank) + vector_weight / (rrf_k + vector_rank)`;
/// see [`FusionMethod`] for [`FusionMethod::Convex`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Fusion {
    /// The fusion method.
    pub method: FusionMethod,
    /// Weight of the full-text side.
    pub text_weight: f64,
    /// Weight of the vector side.
    pub vector_weight: f64,
    /// The RRF constant; 60 in the original paper, dampening the top ranks' lead.
    pub rrf_k: u32,
    /// How many candidates each side contributes before fusion (at least `k`).
    pub candidates: u32,
}

impl Default for Fusion {
    fn default() -> Self {
        Fusion {
            method: FusionMethod::ReciprocalRank,
            text_weight: 1.0,
            vector_weight: 1.0,
            rrf_k: 60,
            candidates: 0,
        }
    }
}

/// A search as data: what to rank by, how many, and the knobs.
#[derive(Debug)]
#[non_exhaustive]
pub struct SearchQuery<E> {
    /// Vector, text or hybrid.
    pub kind: SearchKind,
    /// Most hits to return.
    pub k: u32,
    /// Pre-filter: only rows matching it are candidates.
    pub filter: Filter<E>,
    /// Drop hits farther than this (vector side).
    pub max_distance: Option<f64>,
    /// HNSW candidate list size for this search (`hnsw.ef_search`).
    pub ef_search: Option<u32>,
    /// IVFFlat lists probed for this search (`ivfflat.probes`).
    pub probes: Option<u32>,
    /// Hybrid fusion settings.
    pub fusion: Fusion,
    /// Start after this hit (keyset pagination over results).
    pub after: Option<Cursor>,
    /// Cache the hits for this long ([`Search::cached`]).
    pub cached: Option<std::time::Duration>,
}

impl<E> Clone for SearchQuery<E> {
    fn clone(&self) -> Self {
        SearchQuery {
            kind: self.kind.clone(),
            k: self.k,
            filter: self.filter.clone(),
            max_distance: self.max_distance,
            ef_search: self.ef_search,
            probes: self.probes,
            fusion: self.fusion,
            after: self.after.clone(),
            cached: self.cached,
        }
    }
}

impl<E: Entity> SearchQuery<E> {
    /// A search of `kind` for the `k` best hits.
    pub fn new(kind: SearchKind, k: u32) -> Self {
        SearchQuery {
            kind,
            k,
            filter: Filter::all(),
            max_distance: None,
            ef_search: None,
            probes: None,
            fusion: Fusion::default(),
            after: None,
            cached: None,
        }
    }

    /// Checks everything that does not need the database: `k`, the knobs,
    /// and the query vector against its column's spec.
    pub fn validate(&self) -> Result<()> {
        let entity = E::SCHEMA.entity;
        let invalid = |field: &str, reason: String| Err(Error::invalid(entity, field, reason));
        if self.k == 0 || self.k > MAX_K {
            return invalid(
                "k",
                format!("must be between 1 and {MAX_K}, got {}", self.k),
            );
        }
        if let Some(d) = self.max_distance {
            let signed = self
                .vector_spec()
                .is_some_and(|s| s.distance == Distance::InnerProduct);
            if d.is_nan() || d == f64::NEG_INFINITY || (d < 0.0 && !signed) {
                let reason =
                    format!("must be a distance (not negative except for inner product), got {d}");
                return invalid("max_distance", reason);
            }
        }
        for (name, knob, max) in [
            ("ef_search", self.ef_search, 1_000),
            ("probes", self.probes, 32_768),
        ] {
            if let Some(n) = knob.filter(|n| *n == 0 || *n > max) {
                return invalid(name, format!("must be between 1 and {max}, got {n}"));
            }
        }
        let f = &self.fusion;
        if !(f.text_weight.is_finite() && f.vector_weight.is_finite())
            || f.text_weight < 0.0
            || f.vector_weight < 0.0
        {
            return invalid("weights", "must be finite and not negative".into());
        }
        if f.text_weight == 0.0 && f.vector_weight == 0.0 {
            return invalid("weights", "cannot both be zero: nothing would rank".into());
        }
        if f.candidates > MAX_K {
            let reason = format!("must be at most {MAX_K}, got {}", f.candidates);
            return invalid("candidates", reason);
        }
        match &self.kind {
            SearchKind::Vector { column, vector } | SearchKind::Hybrid { column, vector, .. } => {
                crate::vector::check_query(E::SCHEMA, *column, vector)?;
            }
            SearchKind::Text { .. } | SearchKind::VectorFromText { .. } => {}
        }
        match &self.kind {
            SearchKind::Text { text } | SearchKind::Hybrid { text, .. } => {
                crate::vector::check_text_query(E::SCHEMA, text)
            }
            SearchKind::VectorFromText { text, .. } if text.contains('\0') => Err(Error::invalid(
                E::SCHEMA.entity,
                "text",
                "contains a NUL character (\\u0000)",
            )),
            SearchKind::Vector { .. } | SearchKind::VectorFromText { .. } => Ok(()),
        }
    }
}

impl<E: Entity> SearchQuery<E> {
    /// The spec of the searched vector column, for vector and hybrid searches.
    pub fn vector_spec(&self) -> Option<VectorSpec> {
        let column = match &self.kind {
            SearchKind::Vector { column, .. }
            | SearchKind::VectorFromText { column, .. }
            | SearchKind::Hybrid { column, .. } => *column,
            SearchKind::Text { .. } => return None,
        };
        E::SCHEMA.columns.get(column).and_then(|c| c.vector)
    }
}

/// The most hits one search returns; page with `page_after` beyond it.
pub const MAX_K: u32 = 10_000;

/// Search over an entity's vector and full-text columns.
pub trait VectorSearch<E: Entity>: Send + Sync {
    /// Runs a search built with [`VectorSearch::nearest`], `search_text` or `hybrid`.
    fn run_search(
        &self,
        query: SearchQuery<E>,
    ) -> impl Future<Output = Result<Vec<Scored<E>>>> + Send;

    /// Runs a search and returns its hits with the cursor of the next page
    /// (`None` when fewer than `k` hits were found).
    fn run_search_page(
        &self,
        query: SearchQuery<E>,
    ) -> impl Future<Output = Result<Page<Scored<E>>>> + Send;

    /// The `k` rows whose `column` is nearest `vector`, closest first. The
    /// derive generates `search_<field>(vector, k)` calling this.
    fn nearest<T: FieldType>(
        &self,
        column: Column<E, T>,
        vector: T::Scalar,
        k: u32,
    ) -> Search<'_, E, Self, ByVector>
    where
        Self: Sized,
    {
        let kind = SearchKind::Vector {
            column: column.index(),
            vector: vector.to_value(),
        };
        Search::new(self, SearchQuery::new(kind, k))
    }

    /// The `k` rows whose `column` is nearest the embedding of `text`, made
    /// by the repository's embedder (an error when it has none). The derive
    /// generates `search_<field>_by_text(text, k)` calling this.
    fn nearest_to_text<T: FieldType>(
        &self,
        column: Column<E, T>,
        text: impl Into<String>,
        k: u32,
    ) -> Search<'_, E, Self, ByVector>
    where
        Self: Sized,
    {
        let kind = SearchKind::VectorFromText {
            column: column.index(),
            text: text.into(),
        };
        Search::new(self, SearchQuery::new(kind, k))
    }

    /// The `k` rows whose full-text document best matches `text`, best first.
    /// `text` uses web-search syntax: `"exact phrase"`, `or`, `-excluded`.
    fn search_text(&self, text: impl Into<String>, k: u32) -> Search<'_, E, Self, ByText>
    where
        Self: Sized,
    {
        let kind = SearchKind::Text { text: text.into() };
        Search::new(self, SearchQuery::new(kind, k))
    }

    /// The `k` best rows by full-text match of `text` and nearness of
    /// `column` to `vector`, fused with reciprocal rank fusion. The derive
    /// generates `search_hybrid(text, vector, k)` calling this.
    fn hybrid<T: FieldType>(
        &self,
        text: impl Into<String>,
        column: Column<E, T>,
        vector: T::Scalar,
        k: u32,
    ) -> Search<'_, E, Self, Hybrid>
    where
        Self: Sized,
    {
        let kind = SearchKind::Hybrid {
            text: text.into(),
            column: column.index(),
            vector: vector.to_value(),
        };
        Search::new(self, SearchQuery::new(kind, k))
    }
}

/// Marker: a nearest-neighbour search.
#[derive(Debug)]
pub enum ByVector {}
/// Marker: a full-text search.
#[derive(Debug)]
pub enum ByText {}
/// Marker: a hybrid (text + vector) search.
#[derive(Debug)]
pub enum Hybrid {}

/// A search under construction; `.await` it for the hits in rank order.
#[must_use = "a search does nothing until it is awaited"]
pub struct Search<'r, E, R, M> {
    repo: &'r R,
    query: SearchQuery<E>,
    mode: PhantomData<M>,
}

impl<'r, E: Entity, R: VectorSearch<E>, M> Search<'r, E, R, M> {
    fn new(repo: &'r R, query: SearchQuery<E>) -> Self {
        Search {
            repo,
            query,
            mode: PhantomData,
        }
    }

    /// Only rows matching `filter` are candidates (a pre-filter: `k` hits
    /// come back whenever `k` matching rows exist). Repeated calls combine with AND.
    pub fn filter(mut self, filter: Filter<E>) -> Self {
        self.query.filter = std::mem::replace(&mut self.query.filter, Filter::all()).and(filter);
        self
    }

    /// Caches the hits for `ttl` in the repository cache, keyed by a hash of
    /// the rendered search and its parameters (the query vector included)
    /// and invalidated by any committed write to the entity. Needs
    /// `#[repo(cache(..))]` on the entity, as [`Find::cached`](crate::Find::cached)
    /// does; without a configured cache, and inside a unit of work, the
    /// search simply runs.
    pub fn cached(mut self, ttl: std::time::Duration) -> Self {
        self.query.cached = Some(ttl);
        self
    }

    /// The search as data, for backends and tests.
    pub fn into_query(self) -> SearchQuery<E> {
        self.query
    }
}

/// Knobs of searches with a vector side.
impl<'r, E: Entity, R: VectorSearch<E>, M: HasVector> Search<'r, E, R, M> {
    /// Drops hits farther than `distance` from the query vector.
    pub fn max_distance(mut self, distance: f64) -> Self {
        self.query.max_distance = Some(distance);
        self
    }

    /// HNSW candidate list size for this search only (pgvector default 40):
    /// higher finds more true neighbours, slower.
    pub fn ef_search(mut self, n: u32) -> Self {
        self.query.ef_search = Some(n);
        self
    }

    /// IVFFlat lists probed for this search only (pgvector default 1).
    pub fn probes(mut self, n: u32) -> Self {
        self.query.probes = Some(n);
        self
    }
}

/// Paging over ranked results.
impl<'r, E: Entity, R: VectorSearch<E>, M: Pageable> Search<'r, E, R, M> {
    /// The `k` hits after `cursor` (the first `k` when `None`), with the
    /// cursor of the next page. The cursor holds the last hit's score and id,
    /// so pages are stable while the table does not change under them.
    pub fn page_after(mut self, cursor: Option<Cursor>) -> SearchPage<'r, E, R> {
        self.query.after = cursor;
        SearchPage {
            repo: self.repo,
            query: self.query,
        }
    }
}

impl<'r, E: Entity, R: VectorSearch<E>> Search<'r, E, R, Hybrid> {
    /// Weights of the text and vector sides in the fused score (default 1
    /// and 1): finite, not negative, not both 0. Under
    /// [`FusionMethod::Convex`] only their ratio matters.
    pub fn weights(mut self, text: f64, vector: f64) -> Self {
        self.query.fusion.text_weight = text;
        self.query.fusion.vector_weight = vector;
        self
    }

    /// How the two sides are fused (default [`FusionMethod::ReciprocalRank`]).
    pub fn fusion(mut self, method: FusionMethod) -> Self {
        self.query.fusion.method = method;
        self
    }

    /// The reciprocal rank fusion constant (default 60; not used by
    /// [`FusionMethod::Convex`]).
    pub fn rrf_k(mut self, rrf_k: u32) -> Self {
        self.query.fusion.rrf_k = rrf_k;
        self
    }

    /// Candidates taken from each side before fusion (default `max(4k, 40)`).
    pub fn candidates(mut self, n: u32) -> Self {
        self.query.fusion.candidates = n;
        self
    }
}

/// Search modes with a vector side.
pub trait HasVector: sealed::Sealed {}
impl HasVector for ByVector {}
impl HasVector for Hybrid {}

/// Search modes whose ranking has a stable keyset (score, id).
pub trait Pageable: sealed::Sealed {}
impl Pageable for ByVector {}
impl Pageable for ByText {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ByVector {}
    impl Sealed for super::ByText {}
    impl Sealed for super::Hybrid {}
}

impl<'r, E: Entity, R: VectorSearch<E>, M> IntoFuture for Search<'r, E, R, M> {
    type Output = Result<Vec<Scored<E>>>;
    type IntoFuture = BoxFuture<'r, Result<Vec<Scored<E>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.repo.run_search(self.query))
    }
}

/// A page of search hits; `.await` it for a [`Page`] of [`Scored`].
#[must_use = "a search does nothing until it is awaited"]
pub struct SearchPage<'r, E, R> {
    repo: &'r R,
    query: SearchQuery<E>,
}

impl<'r, E: Entity, R: VectorSearch<E>> IntoFuture for SearchPage<'r, E, R> {
    type Output = Result<Page<Scored<E>>>;
    type IntoFuture = BoxFuture<'r, Result<Page<Scored<E>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.repo.run_search_page(self.query))
    }
}

#[cfg(test)]
mod tests;
