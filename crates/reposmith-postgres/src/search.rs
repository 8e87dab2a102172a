//! [`VectorSearch`] for [`PgRepository`]: runs the SQL of [`crate::search_sql`]
//! with the per-search knobs applied so they never outlive the search.
//!
//! `ef_search` and `probes` are `SET LOCAL`-scoped (`set_config(.., true)`):
//! on the pool the search runs in a short transaction of its own (behind a
//! transaction pooler, in the one every pool read has there); inside a
//! unit of work it runs under a savepoint that is rolled back afterwards,
//! which restores the settings without touching the unit's writes. Without
//! knobs a search is one statement.
//!
//! With the recall monitor on ([`crate::recall`]), a sampled search hands its
//! query and hit ids to the monitor after its rows are in, and a search
//! that sets no `ef_search`/`probes` runs with the tuner's value.

use reposmith_core::search::{MAX_K, SearchKind, SearchQuery};
use reposmith_core::{
    ColumnType, Cursor, Entity, Error, Page, Result, Scored, Value, VectorIndex, VectorSearch,
};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Row};
use tracing::Instrument;

use crate::PgRepository;
use crate::bind::{bind_all, decode_row};
use crate::executor::{Bounded, Held};
use crate::search_sql::{After, Extra, candidates, search_sql};

/// A `reposmith.query` span for a search, with its knobs.
fn search_span<E: Entity>(query: &SearchQuery<E>) -> tracing::Span {
    let kind = match query.kind {
        SearchKind::Text { .. } => "text",
        SearchKind::Hybrid { .. } => "hybrid",
        _ => "vector",
    };
    tracing::info_span!(
        "reposmith.query",
        db.system = "postgresql",
        db.operation = "search",
        db.collection = E::SCHEMA.table,
        db.rows_affected = tracing::field::Empty,
        search.kind = kind,
        search.k = query.k,
        search.ef_search = query.ef_search,
        search.probes = query.probes,
        search.filtered = !matches!(query.filter.node(), reposmith_core::filter::FilterNode::All),
        search.paged = query.after.is_some(),
        reposmith.server = tracing::field::Empty,
        reposmith.waited_us = tracing::field::Empty,
        reposmith.fallback = tracing::field::Empty,
    )
}

impl<E: Entity> VectorSearch<E> for PgRepository<E> {
    async fn run_search(&self, query: SearchQuery<E>) -> Result<Vec<Scored<E>>> {
        self.check_cached_query(query.cached)?;
        let (query, after) = self.prepare_search(query).await?;
        let span = search_span(&query);
        if let (Some(cache), Some(ttl), None) = (self.read_cache(), query.cached, &after) {
            return self
                .search_cached(&cache, ttl, query)
                .instrument(span)
                .await;
        }
        let (hits, _) = self
            .search(query, after)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        Ok(hits)
    }

    async fn run_search_page(&self, query: SearchQuery<E>) -> Result<Page<Scored<E>>> {
        let (query, after) = self.prepare_search(query).await?;
        let span = search_span(&query);
        let (hits, next) = self
            .search(query, after)
            .instrument(span)
            .bounded(&self.exec)
            .await?;
        Ok(Page::new(hits, next))
    }
}

impl<E: Entity> PgRepository<E> {
    /// A first page of hits through the cache, keyed by a hash of the
    /// rendered SQL, its bound values (the query vector among them) and the
    /// index knobs it runs with.
    async fn search_cached(
        &self,
        cache: &reposmith_core::cache::Cache,
        ttl: std::time::Duration,
        query: SearchQuery<E>,
    ) -> Result<Vec<Scored<E>>> {
        use reposmith_core::cache::{CachedRow, query_hash};
        let built = search_sql(&query, None)?;
        let knobs = self.knobs_of(&query);
        let params = format!("{:?}|{:?}", built.values, knobs.set);
        let hash = query_hash([
            b"pg:search".as_slice(),
            built.sql.as_bytes(),
            params.as_bytes(),
        ]);
        let load = || async {
            // Filled from the primary: a lagging replica's hits would be cached stale.
            let primary = self.for_cache_fill();
            let (hits, _) = primary
                .search(query.clone(), None)
                .bounded(&self.exec)
                .await?;
            hits.into_iter()
                .map(|hit| {
                    Ok(CachedRow {
                        values: hit.entity.to_values()?,
                        distance: hit.distance,
                        text_rank: hit.text_rank,
                        score: Some(hit.score),
                    })
                })
                .collect()
        };
        let rows = cache.query::<E, _, _>(hash, ttl, load).await?;
        rows.into_iter()
            .map(|row| {
                let entity = E::from_values(row.values)?;
                let score = row.score.unwrap_or_default();
                Ok(Scored::new(entity, row.distance, row.text_rank, score))
            })
            .collect()
    }

    /// Everything before the database: the query and cursor checked first,
    /// so a bad argument never costs an embedder call, then a by-text search
    /// embedded (outside the statement deadline: the model's latency is its own).
    pub(crate) async fn prepare_search(
        &self,
        query: SearchQuery<E>,
    ) -> Result<(SearchQuery<E>, Option<After>)> {
        query.validate()?;
        let mut query = query;
        query.filter = self.scoped(query.filter)?;
        let after = match &query.after {
            Some(cursor) => Some(decode_cursor(&query, cursor)?),
            None => None,
        };
        let query = self.embed_query(query).await?;
        Ok((query, after))
    }

    /// The hits of `query` and, when it filled `k`, the cursor after the last.
    async fn search(
        &self,
        query: SearchQuery<E>,
        after: Option<After>,
    ) -> Result<(Vec<Scored<E>>, Option<Cursor>)> {
        let previous = after.as_ref().map(|a| (a.score, a.ids.clone()));
        // The recall monitor samples first pages on the pool (see `recall`).
        // Not a search a replica answers: the exact re-run reads the
        // primary, and lag between the two would count as lost recall.
        let eligible = after.is_none() && !self.exec.in_unit() && self.reads_on_primary();
        let backend = self.exec.backend();
        let sample = backend.recall().ticket(backend, &query, eligible);
        let built = search_sql(&query, after)?;
        let knobs = self.knobs_of(&query);
        let rows = self
            .run_with_knobs(&knobs.set, &built.sql, built.values)
            .await?;
        crate::repository::record_rows(rows.len() as u64);
        let hits = rows
            .iter()
            .map(|row| self.scored(row, built.extra))
            .collect::<Result<Vec<_>>>()?;
        let full = hits.len() as u64 >= u64::from(query.k);
        let next = match (hits.last(), built.extra) {
            (Some(last), Extra::Distance) if full => Some(tie_cursor(&hits, last.score, previous)),
            (Some(last), Extra::Rank) if full => {
                let id = reposmith_core::FieldType::to_value(last.entity.id());
                Some(Cursor::encode(&[Value::F64(last.score), id]))
            }
            _ => None,
        };
        if let Some(sample) = sample {
            sample.submit(query, &hits, knobs.effective);
        }
        Ok((hits, next))
    }

    /// Replaces a by-text vector search with the embedding of its text.
    async fn embed_query(&self, query: SearchQuery<E>) -> Result<SearchQuery<E>> {
        reposmith_core::embed::embed_search(self.embedder.as_deref(), query).await
    }

    fn scored(&self, row: &PgRow, extra: Extra) -> Result<Scored<E>> {
        let schema = E::SCHEMA;
        let n = schema.columns.len();
        let entity = E::from_values(decode_row(schema, row)?)?;
        let get = |i: usize| -> Result<Option<f64>> {
            row.try_get::<Option<f64>, _>(i).map_err(|e| Error::Decode {
                entity: schema.entity,
                field: "score",
                source: reposmith_core::value::DecodeError {
                    expected: "float8",
                    found: e.to_string(),
                },
            })
        };
        Ok(match extra {
            Extra::Distance => {
                let d = get(n)?.unwrap_or(f64::NAN);
                Scored::new(entity, Some(d), None, d)
            }
            Extra::Rank => {
                let r = get(n)?.unwrap_or(0.0);
                Scored::new(entity, None, Some(r), r)
            }
            Extra::Fused => Scored::new(entity, get(n)?, get(n + 1)?, get(n + 2)?.unwrap_or(0.0)),
        })
    }

    /// The knobs of `query` on this backend, the tuned value included.
    pub(crate) fn knobs_of(&self, query: &SearchQuery<E>) -> Knobs {
        let backend = self.exec.backend();
        let tuned = match &query.kind {
            SearchKind::Vector { column, .. } | SearchKind::Hybrid { column, .. } => {
                backend.recall().tuned::<E>(*column)
            }
            _ => None,
        };
        knobs(query, backend.ef_search(), tuned)
    }

    /// Runs the search, inside a scope that undoes `ef_search`/`probes` when
    /// set, on the connection the route picks (a replica's settings are set
    /// the same way: HNSW and IVFFlat indexes replicate).
    pub(crate) async fn run_with_knobs(
        &self,
        knobs: &[(&'static str, String)],
        sql: &str,
        values: Vec<sea_query::Value>,
    ) -> Result<Vec<PgRow>> {
        self.check_bind(&values, &[])?;
        let in_unit = self.exec.in_unit();
        // Owned: the read may run twice, and its futures outlive these borrows.
        let (knobs, sql): (Vec<_>, std::sync::Arc<str>) = (knobs.to_vec(), sql.into());
        self.exec
            .read(&self.route, E::SCHEMA, |held| {
                let (values, knobs, sql) = (values.clone(), knobs.clone(), sql.clone());
                Box::pin(async move {
                    if knobs.is_empty() {
                        return fetch(held, &sql, values).await;
                    }
                    let scope = match (in_unit, held.in_transaction()) {
                        (true, _) => Some((
                            "SAVEPOINT reposmith_search",
                            "ROLLBACK TO SAVEPOINT reposmith_search; RELEASE SAVEPOINT reposmith_search",
                        )),
                        // Behind a transaction pooler the read's own transaction
                        // already ends the settings (see the `pooler` module).
                        (false, true) => None,
                        (false, false) => Some(("BEGIN", "COMMIT")),
                    };
                    let own_transaction = scope.is_some() && !in_unit;
                    let outcome = scoped(held, scope, &knobs, &sql, values).await;
                    if outcome.is_err() && own_transaction {
                        // The transaction may still be open: never pool the connection.
                        discard(held);
                    }
                    outcome
                })
            })
            .await
    }
}

/// The settings a search sets, and the knob value it runs with.
pub(crate) struct Knobs {
    /// (`name`, value) pairs to set for this search; none when the
    /// sessions' own settings are the ones wanted.
    pub(crate) set: Vec<(&'static str, String)>,
    /// The `ef_search` (HNSW) or `probes` (IVFFlat) the search runs with;
    /// `None` for the server's `probes`, or a column without an index.
    pub(crate) effective: Option<u32>,
}

/// The knobs of `query`, with sessions at `session_ef` and the recall
/// tuner's value `tuned` (`ef_search` for HNSW, `probes` for IVFFlat), which
/// applies only when the search sets no knob itself. Without an explicit
/// `ef_search`, an HNSW search wanting more candidates raises it, since
/// HNSW returns at most `ef_search` rows when iterative scans are off.
fn knobs<E: Entity>(query: &SearchQuery<E>, session_ef: u32, tuned: Option<u32>) -> Knobs {
    let index = query.vector_spec().map(|s| s.index);
    let hnsw = matches!(index, Some(VectorIndex::Hnsw { .. }));
    let ivfflat = matches!(index, Some(VectorIndex::IvfFlat { .. }));
    let wanted = match query.kind {
        SearchKind::Hybrid { .. } => candidates(&query.fusion, query.k),
        _ => query.k,
    };
    let base = tuned.filter(|_| hnsw).unwrap_or(session_ef);
    let ef = match query.ef_search {
        Some(ef) => ef,
        None if hnsw => wanted.max(base).min(MAX_EF_SEARCH),
        None => session_ef,
    };
    let probes = query.probes.or(tuned.filter(|_| ivfflat));
    let mut set = Vec::new();
    // The sessions already run with `session_ef`: no transaction needed.
    if ef != session_ef {
        set.push(("hnsw.ef_search", ef.to_string()));
    }
    if let Some(probes) = probes {
        set.push(("ivfflat.probes", probes.to_string()));
    }
    let effective = match (hnsw, ivfflat) {
        (true, _) => Some(ef),
        (_, true) => probes,
        _ => None,
    };
    Knobs { set, effective }
}

/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: u32 = 1_000;

/// Reads a search cursor: `[score, id]` for text searches, `[distance, id,
/// id, ...]` (every id already returned at that distance) for vector ones.
fn decode_cursor<E: Entity>(query: &SearchQuery<E>, cursor: &Cursor) -> Result<After> {
    let schema = E::SCHEMA;
    let invalid = |reason: &str| Error::invalid(schema.entity, "cursor", reason);
    let keys = match query.kind {
        SearchKind::Hybrid { .. } => {
            return Err(invalid(
                "hybrid results have no stable keyset; raise k instead",
            ));
        }
        SearchKind::Text { .. } => 2,
        _ => serde_json::from_str::<Vec<serde_json::Value>>(cursor.as_str())
            .map_err(|_| invalid("not a cursor this search produced"))?
            .len()
            .clamp(2, 1 + MAX_K as usize),
    };
    let mut types = vec![ColumnType::Double];
    types.resize(keys, schema.id_column().ty);
    let mut values = cursor.decode(schema.entity, &types)?;
    if values.iter().any(|v| matches!(v, Value::Null)) {
        return Err(invalid("holds a null key"));
    }
    for value in &values {
        crate::validate::check_value(schema.entity, "cursor", value)?;
    }
    let ids = values.split_off(1);
    match values.pop() {
        Some(Value::F64(score)) if !score.is_nan() => Ok(After { score, ids }),
        _ => Err(invalid("holds no score")),
    }
}

/// The cursor after `hits`: the last distance and every id returned at it,
/// including those of earlier pages when the tie group spans them.
fn tie_cursor<E: Entity>(
    hits: &[Scored<E>],
    last: f64,
    previous: Option<(f64, Vec<Value>)>,
) -> Cursor {
    let mut ids = match previous {
        Some((score, ids)) if score.to_bits() == last.to_bits() => ids,
        _ => Vec::new(),
    };
    ids.extend(
        hits.iter()
            .filter(|h| h.score.to_bits() == last.to_bits())
            .map(|h| reposmith_core::FieldType::to_value(h.entity.id())),
    );
    let mut keys = vec![Value::F64(last)];
    keys.extend(ids);
    Cursor::encode(&keys)
}

fn discard(connection: &mut Held<'_>) {
    if let Held::Pooled(pooled) = connection {
        pooled.discard();
    }
}

/// Runs a search's SQL with its bound values (also the recall monitor's exact re-run).
pub(crate) async fn fetch(
    connection: &mut PgConnection,
    sql: &str,
    values: Vec<sea_query::Value>,
) -> sqlx::Result<Vec<PgRow>> {
    // Safe: built from schema identifiers by `search_sql`; values are bound.
    bind_all(
        sqlx::query(AssertSqlSafe(sql.to_owned())),
        sea_query::Values(values),
    )
    .fetch_all(connection)
    .await
}

/// The scope's opening; the settings, bound through `set_config(name,
/// value, is_local => true)`; the search; the scope's closing. Without a
/// scope the caller's transaction ends the settings.
async fn scoped(
    connection: &mut PgConnection,
    scope: Option<(&'static str, &'static str)>,
    knobs: &[(&'static str, String)],
    sql: &str,
    values: Vec<sea_query::Value>,
) -> sqlx::Result<Vec<PgRow>> {
    if let Some((open, _)) = scope {
        sqlx::raw_sql(open).execute(&mut *connection).await?;
    }
    for (name, value) in knobs {
        sqlx::query("SELECT set_config($1, $2, true)")
            .bind(*name)
            .bind(value)
            .execute(&mut *connection)
            .await?;
    }
    let rows = fetch(connection, sql, values).await?;
    if let Some((_, close)) = scope {
        sqlx::raw_sql(close).execute(&mut *connection).await?;
    }
    Ok(rows)
}
