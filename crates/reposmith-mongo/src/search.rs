//! [`VectorSearch`] for [`MongoRepository`]: nearest neighbours by the
//! distance of the column's [`VectorSpec`], with pgvector's semantics
//! (smaller is closer, `score` = `distance`, inner product negated, cosine
//! `1 - cos`, pages keyed by `(score, id)`).
//!
//! Two plans, chosen per search:
//!
//! - **`$vectorSearch`** when the server has search
//!   ([`MongoCapabilities::vector_search`](crate::MongoCapabilities), Atlas or
//!   MongoDB with `mongot`), the column is dense or half with an index and a
//!   cosine or l2 distance (Atlas' `dotProduct` assumes unit vectors, and it
//!   has no l1), the search is not a page after a cursor, and the filter uses
//!   only operators and fields a vector index can pre-filter on (see
//!   [`crate::search_index`]). Candidates are re-scored with the exact
//!   expression below, so distances are the same whichever plan ran.
//! - **Exact, server-side** otherwise (SecantusDB, MongoDB without search,
//!   sparse and bit vectors, l1, inner product, pages): `$match` on the
//!   filter and a stored vector, `$addFields` with the distance computed by
//!   the expression of [`crate::distance`], `$match` on `max_distance` and
//!   the cursor, `$sort` by `(distance, _id)`, `$limit k`. The filter is a
//!   pre-filter: `k` hits come back whenever `k` matching rows exist. This
//!   scans every matching document, so its cost grows with the collection.
//!
//! Full-text and hybrid searches are refused with [`Error::InvalidInput`]:
//! they need a text index (SecantusDB has none: creating one fails with
//! "text indexes are not supported") or Atlas Search, and reposmith does not
//! drive either yet. A by-text vector search (`search_<field>_by_text`)
//! embeds its text with the repository's embedder, then runs as above.

use mongodb::bson::{Bson, Document, doc};
use reposmith_core::cache::CachedRow;
use reposmith_core::embed::embed_search;
use reposmith_core::search::{SearchKind, SearchQuery};
use reposmith_core::{
    ColumnType, Cursor, Distance, Entity, EntitySchema, Error, FieldType, Page, Result, Scored,
    Value, VectorIndex, VectorKind, VectorSearch, VectorSpec,
};
use tracing::Instrument;

use crate::MongoRepository;
use crate::cache::check_cached;
use crate::codec::{decode, key, to_bson};
use crate::distance::{DISTANCE, distance_expr};
use crate::executor::aggregate_docs;
use crate::render::filter_doc;
use crate::search_index::{filter_is_indexable, search_index_name};

impl<E: Entity> VectorSearch<E> for MongoRepository<E> {
    async fn run_search(&self, query: SearchQuery<E>) -> Result<Vec<Scored<E>>> {
        let span = search_span(&query);
        Ok(self.search(query).instrument(span).await?.0)
    }

    async fn run_search_page(&self, query: SearchQuery<E>) -> Result<Page<Scored<E>>> {
        let span = search_span(&query);
        let (hits, next) = self.search(query).instrument(span).await?;
        Ok(Page::new(hits, next))
    }
}

/// A `reposmith.query` span for a search.
fn search_span<E: Entity>(query: &SearchQuery<E>) -> tracing::Span {
    tracing::info_span!(
        "reposmith.query",
        db.system = "mongodb",
        db.operation = "search",
        db.collection = E::SCHEMA.collection,
        search.k = query.k,
        search.paged = query.after.is_some(),
    )
}

/// Which plan a search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// `$vectorSearch` on the column's search index, then exact re-scoring.
    Indexed,
    /// The exact aggregation.
    Exact,
}

impl<E: Entity> MongoRepository<E> {
    /// The hits of `query` and, when it filled `k`, the cursor after the last.
    async fn search(&self, query: SearchQuery<E>) -> Result<(Vec<Scored<E>>, Option<Cursor>)> {
        query.validate()?;
        check_cached::<E>(query.cached)?;
        let mut query = query;
        query.filter = self.scoped(query.filter)?;
        let schema = E::SCHEMA;
        let after = match &query.after {
            Some(cursor) => {
                let types = [ColumnType::Double, schema.id_column().ty];
                Some(cursor.decode(schema.entity, &types)?)
            }
            None => None,
        };
        // Every argument is checked before the model is called: the filter
        // renders, and a by-text search names a vector column.
        filter_doc(schema, query.filter.node())?;
        if let SearchKind::VectorFromText { column, .. } = &query.kind {
            spec_of(schema, *column)?;
        }
        let query = embed_search(self.embedder.as_deref(), query).await?;
        let (column, vector) = vector_of(schema, &query.kind)?;
        let plan = plan(self.backend.capabilities().vector_search, &query, column)?;
        let stages = pipeline(&query, column, vector, after.as_deref(), plan)?;
        let hits = match query.cached.zip(self.read_cache()) {
            Some((ttl, cache)) => {
                let hash = self.query_hash("search", &doc! { "pipeline": &stages });
                match hash {
                    Some(hash) => {
                        let load = || async {
                            let hits = self.hits(stages.clone()).await?;
                            hits.iter().map(cached_hit).collect()
                        };
                        let rows = cache.query::<E, _, _>(hash, ttl, load).await?;
                        rows.into_iter().map(hit_of).collect::<Result<Vec<_>>>()?
                    }
                    None => self.hits(stages).await?,
                }
            }
            None => self.hits(stages).await?,
        };
        let next = match hits.last() {
            Some(last) if hits.len() as u64 >= u64::from(query.k) => {
                let id = last.entity.id().to_value();
                Some(Cursor::encode(&[Value::F64(last.score), id]))
            }
            _ => None,
        };
        Ok((hits, next))
    }
}

impl<E: Entity> MongoRepository<E> {
    /// The hits the pipeline `stages` finds, from the database.
    async fn hits(&self, stages: Vec<Document>) -> Result<Vec<Scored<E>>> {
        let docs = self
            .send("aggregate", async |s| {
                aggregate_docs(&self.collection, stages, s).await
            })
            .await?;
        docs.iter().map(|d| scored::<E>(d)).collect()
    }
}

/// A hit as a cached row, its distance and score kept.
fn cached_hit<E: Entity>(hit: &Scored<E>) -> Result<CachedRow> {
    Ok(CachedRow {
        values: hit.entity.to_values()?,
        distance: hit.distance,
        text_rank: hit.text_rank,
        score: Some(hit.score),
    })
}

/// A cached row as the hit it was.
fn hit_of<E: Entity>(row: CachedRow) -> Result<Scored<E>> {
    let entity = E::from_values(row.values)?;
    let score = row.score.or(row.distance).unwrap_or_default();
    Ok(Scored::new(entity, row.distance, row.text_rank, score))
}

/// The column and query vector of a vector search; other kinds are refused.
fn vector_of<'q>(schema: &EntitySchema, kind: &'q SearchKind) -> Result<(usize, &'q Value)> {
    let refuse = |field: &str, reason: &str| Err(Error::invalid(schema.entity, field, reason));
    match kind {
        SearchKind::Vector { column, vector } => Ok((*column, vector)),
        SearchKind::Text { .. } | SearchKind::Hybrid { .. } => refuse(
            "text",
            "full-text and hybrid search are not supported on MongoDB: they need a text \
             index or Atlas Search, which reposmith does not drive yet",
        ),
        _ => refuse("search", "this kind of search is not supported on MongoDB"),
    }
}

/// The spec of the vector column at `column`.
fn spec_of(schema: &EntitySchema, column: usize) -> Result<VectorSpec> {
    let def = schema
        .columns
        .get(column)
        .ok_or_else(|| Error::invalid(schema.entity, "column", "not a column of this entity"))?;
    def.vector
        .ok_or_else(|| Error::invalid(schema.entity, def.field, "is not a vector column"))
}

/// `$vectorSearch` when the server and the search allow it (see the module docs).
pub(crate) fn plan<E: Entity>(
    server_has_search: bool,
    query: &SearchQuery<E>,
    column: usize,
) -> Result<Plan> {
    let schema = E::SCHEMA;
    let spec = spec_of(schema, column)?;
    let indexed = server_has_search
        && matches!(spec.kind, VectorKind::Dense | VectorKind::Half)
        && matches!(spec.distance, Distance::Cosine | Distance::L2)
        && spec.index != VectorIndex::None
        && query.after.is_none()
        && filter_is_indexable(schema, &filter_doc(schema, query.filter.node())?);
    Ok(if indexed { Plan::Indexed } else { Plan::Exact })
}

/// Candidates `$vectorSearch` considers: `ef_search` when given, else
/// 10 per hit and at least 100, within Atlas' limit of 10,000.
fn candidates<E>(query: &SearchQuery<E>) -> i64 {
    let wanted = query
        .ef_search
        .unwrap_or_else(|| query.k.saturating_mul(10).max(100));
    i64::from(wanted.max(query.k).min(10_000))
}

/// The aggregation pipeline of a vector search.
pub(crate) fn pipeline<E: Entity>(
    query: &SearchQuery<E>,
    column: usize,
    vector: &Value,
    after: Option<&[Value]>,
    plan: Plan,
) -> Result<Vec<Document>> {
    let schema = E::SCHEMA;
    let spec = spec_of(schema, column)?;
    let field = key(schema, column);
    let filter = filter_doc(schema, query.filter.node())?;
    let distance = distance_expr(field, &spec, vector)
        .map_err(|reason| Error::invalid(schema.entity, schema.columns[column].field, reason))?;
    let mut stages = match plan {
        Plan::Indexed => {
            let query_vector = to_bson(schema.entity, schema.columns[column].field, vector)?;
            let mut stage = doc! {
                "index": search_index_name(schema, column),
                "path": field,
                "queryVector": query_vector,
                "numCandidates": candidates(query),
                "limit": i64::from(query.k),
            };
            if !filter.is_empty() {
                stage.insert("filter", filter);
            }
            vec![doc! { "$vectorSearch": stage }]
        }
        Plan::Exact => {
            let stored = if spec.kind == VectorKind::Sparse {
                "object"
            } else {
                "array"
            };
            let has_vector = doc! { field: { "$type": stored } };
            vec![doc! { "$match": { "$and": [filter, has_vector] } }]
        }
    };
    stages.push(doc! { "$addFields": { DISTANCE: distance } });
    stages.push(doc! { "$match": { "$and": bounds(schema, query, after)? } });
    stages.push(doc! { "$sort": { DISTANCE: 1, "_id": 1 } });
    stages.push(doc! { "$limit": i64::from(query.k) });
    Ok(stages)
}

/// A computed distance (not `null`), within `max_distance`, after the cursor.
fn bounds<E>(
    schema: &EntitySchema,
    query: &SearchQuery<E>,
    after: Option<&[Value]>,
) -> Result<Vec<Document>> {
    let mut bounds = vec![doc! { DISTANCE: { "$type": "number" } }];
    if let Some(max) = query.max_distance {
        bounds.push(doc! { DISTANCE: { "$lte": max } });
    }
    if let Some([score, id]) = after {
        let score = match score {
            Value::F64(s) => Bson::Double(*s),
            _ => {
                return Err(Error::invalid(
                    schema.entity,
                    "cursor",
                    "score is not a number",
                ));
            }
        };
        let id = to_bson(schema.entity, schema.id_column().field, id)?;
        bounds.push(doc! { "$or": [
            { DISTANCE: { "$gt": score.clone() } },
            { "$and": [{ DISTANCE: { "$eq": score } }, { "_id": { "$gt": id } }] },
        ] });
    }
    Ok(bounds)
}

/// A hit: the entity and the distance the pipeline computed.
fn scored<E: Entity>(doc: &Document) -> Result<Scored<E>> {
    let schema = E::SCHEMA;
    let entity = E::from_values(decode(schema, doc)?)?;
    let distance = doc.get_f64(DISTANCE).map_err(|_| Error::Decode {
        entity: schema.entity,
        field: "score",
        source: reposmith_core::value::DecodeError {
            expected: "double",
            found: format!("{:?}", doc.get(DISTANCE)),
        },
    })?;
    Ok(Scored::new(entity, Some(distance), None, distance))
}

#[cfg(test)]
mod tests {
    use reposmith_core::value::pgvector;
    use reposmith_core::{Column, ColumnDef, Filter, IdStrategy};

    use super::*;

    /// A hand-written entity: the plans and pipelines read only its schema.
    struct Thing;

    const HNSW: VectorIndex = VectorIndex::Hnsw {
        m: 16,
        ef_construction: 64,
    };
    const COLUMNS: &[ColumnDef] = &[
        ColumnDef::new("id", "id", ColumnType::BigInt, false),
        ColumnDef::new("lang", "lang", ColumnType::Text, false),
        ColumnDef::new("e", "e", ColumnType::Vector(VectorKind::Dense), false).with_vector(
            VectorSpec::new(VectorKind::Dense, 2, Distance::Cosine, HNSW),
        ),
        ColumnDef::new("m", "m", ColumnType::Vector(VectorKind::Dense), false)
            .with_vector(VectorSpec::new(VectorKind::Dense, 2, Distance::L1, HNSW)),
    ];
    const SCHEMA: EntitySchema =
        EntitySchema::new("Thing", "things", COLUMNS, 0, IdStrategy::Assigned, &[]);
    const LANG: Column<Thing, String> = Column::at(1);

    impl Entity for Thing {
        type Id = i64;
        const SCHEMA: &'static EntitySchema = &SCHEMA;
        fn id(&self) -> &i64 {
            &0
        }
        fn to_values(&self) -> Result<Vec<Value>> {
            Ok(Vec::new())
        }
        fn from_values(_: Vec<Value>) -> Result<Self> {
            Ok(Thing)
        }
    }

    fn query(column: usize) -> SearchQuery<Thing> {
        let vector = Value::Vector(pgvector::Vector::from(vec![1.0, 0.0]));
        SearchQuery::new(SearchKind::Vector { column, vector }, 5)
    }

    #[test]
    fn vector_search_only_where_the_server_and_the_search_allow_it() {
        assert_eq!(plan(true, &query(2), 2).unwrap(), Plan::Indexed);
        assert_eq!(plan(false, &query(2), 2).unwrap(), Plan::Exact);
        assert_eq!(
            plan(true, &query(3), 3).unwrap(),
            Plan::Exact,
            "no l1 in Atlas"
        );
        let mut paged = query(2);
        paged.after = Some(Cursor::encode(&[Value::F64(0.5), Value::I64(3)]));
        assert_eq!(plan(true, &paged, 2).unwrap(), Plan::Exact);
        let mut filtered = query(2);
        filtered.filter = LANG.eq("en");
        assert_eq!(plan(true, &filtered, 2).unwrap(), Plan::Indexed);
        filtered.filter = LANG.starts_with("e");
        assert_eq!(plan(true, &filtered, 2).unwrap(), Plan::Exact, "$regex");
    }

    #[test]
    fn the_vector_search_stage_pre_filters_and_is_re_scored_exactly() {
        let mut q = query(2);
        q.filter = Filter::all().and(LANG.eq("en"));
        let vector = Value::Vector(pgvector::Vector::from(vec![1.0, 0.0]));
        let stages = pipeline(&q, 2, &vector, None, Plan::Indexed).unwrap();
        let search = stages[0].get_document("$vectorSearch").unwrap();
        assert_eq!(search.get_str("index").unwrap(), "things_e_vector");
        assert_eq!(search.get_str("path").unwrap(), "e");
        assert_eq!(search.get_i64("numCandidates").unwrap(), 100);
        assert_eq!(search.get_i64("limit").unwrap(), 5);
        assert!(search.get_document("filter").is_ok());
        assert!(
            stages[1]
                .get_document("$addFields")
                .unwrap()
                .contains_key(DISTANCE)
        );
        assert_eq!(
            stages.last().unwrap(),
            &doc! { "$limit": 5_i64 },
            "k hits after the exact sort"
        );
        let exact = pipeline(&q, 2, &vector, None, Plan::Exact).unwrap();
        let first = exact[0].get_document("$match").unwrap();
        assert!(
            first.get_array("$and").is_ok(),
            "filter and a stored vector"
        );
    }
}
