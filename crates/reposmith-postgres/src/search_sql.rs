//! The SQL of vector, full-text and hybrid searches, built from the schema.
//!
//! The filter comes from sea-query (placeholders `$1..$n`); the search's own
//! values are pushed after it, so one placeholder can be referenced several
//! times (the query vector in the distance, the bound and the keyset). Every
//! identifier is quoted from the schema; every value is a bound parameter.
//!
//! Vector searches order by the bare distance expression with `LIMIT`, the
//! shape pgvector's HNSW and IVFFlat indexes serve, inside a `MATERIALIZED`
//! CTE; the outer query re-sorts by `(distance, id)`, which makes ties
//! deterministic and undoes the slight disorder of relaxed iterative scans.

use reposmith_core::search::{Fusion, FusionMethod, SearchKind, SearchQuery};
use reposmith_core::{
    ColumnDef, ColumnType, Entity, EntitySchema, Error, FULL_TEXT_COLUMN, Result, Value, VectorSpec,
};
use sea_query::{Expr, PostgresQueryBuilder, Query, Value as SqValue};

use crate::bind::to_sea;
use crate::ddl::{quote_ident, table_name};
use crate::render::filter_expr;

/// Name of the extra distance column a vector search returns.
const DISTANCE: &str = "\"__distance\"";
/// Name of the extra rank column a text search returns.
const RANK: &str = "\"__rank\"";

/// A search's SQL, its values in placeholder order, and what the row carries
/// after the entity's columns.
pub(crate) struct SearchSql {
    pub(crate) sql: String,
    pub(crate) values: Vec<SqValue>,
    pub(crate) extra: Extra,
}

/// The ranking columns after the entity's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extra {
    /// `__distance`.
    Distance,
    /// `__rank`.
    Rank,
    /// distance (nullable), rank (nullable), fused score.
    Fused,
}

/// Placeholder numbering after the filter's own.
struct Params {
    values: Vec<SqValue>,
}

impl Params {
    fn push(&mut self, value: SqValue) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }
}

/// The filter as SQL text with its values, numbered from `$1`.
fn filter_sql<E: Entity>(query: &SearchQuery<E>) -> Result<(String, Vec<SqValue>)> {
    let schema = E::SCHEMA;
    let (sql, values) = Query::select()
        .expr(Expr::cust("1"))
        .and_where(filter_expr(schema, query.filter.node())?)
        .build(PostgresQueryBuilder);
    let condition = sql
        .strip_prefix("SELECT 1 WHERE ")
        .ok_or_else(|| Error::invalid(schema.entity, "filter", "could not be rendered"))?;
    Ok((format!("({condition})"), values.0))
}

/// The vector column at `column` and its spec.
fn vector_column(
    schema: &'static EntitySchema,
    column: usize,
) -> Result<(&'static ColumnDef, VectorSpec)> {
    let def = &schema.columns[column];
    let spec = def
        .vector
        .ok_or_else(|| Error::invalid(schema.entity, def.field, "is not a vector column"))?;
    Ok((def, spec))
}

fn select_list(schema: &EntitySchema, alias: Option<&str>) -> String {
    let prefix = alias.map(|a| format!("{a}.")).unwrap_or_default();
    schema
        .columns
        .iter()
        .map(|c| format!("{prefix}{}", quote_ident(c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn limit(k: u32) -> SqValue {
    SqValue::BigInt(Some(i64::from(k)))
}

/// Where a page starts: after the hit scored `score`. For a vector search,
/// `ids` are every id already returned at exactly that distance (the inner
/// query cannot order ties by id without losing the index, so a tie group
/// may be split arbitrarily across pages); for a text search, the last id.
pub(crate) struct After {
    pub(crate) score: f64,
    pub(crate) ids: Vec<Value>,
}

/// The SQL of `query`, starting after `after` when paging.
pub(crate) fn search_sql<E: Entity>(
    query: &SearchQuery<E>,
    after: Option<After>,
) -> Result<SearchSql> {
    let (filter, values) = filter_sql(query)?;
    let mut params = Params { values };
    match &query.kind {
        SearchKind::Vector { column, vector } => {
            vector_sql(query, *column, vector, &filter, &mut params, after)
        }
        SearchKind::Text { text } => text_sql(query, text, &filter, &mut params, after),
        SearchKind::Hybrid {
            text,
            column,
            vector,
        } => hybrid_sql(query, text, *column, vector, &filter, &mut params),
        SearchKind::VectorFromText { .. } => Err(Error::invalid(
            E::SCHEMA.entity,
            "text",
            "was not embedded before building the search",
        )),
        _ => Err(Error::invalid(
            E::SCHEMA.entity,
            "search",
            "unsupported kind",
        )),
    }
    .map(|(sql, extra)| SearchSql {
        sql,
        values: params.values,
        extra,
    })
}

/// `"col" <=> $v` for the query vector, pushed once.
fn distance_expr(
    def: &ColumnDef,
    spec: &VectorSpec,
    vector: &Value,
    params: &mut Params,
) -> String {
    let placeholder = params.push(to_sea(vector.clone(), &def.ty));
    format!(
        "({} {} {placeholder})",
        quote_ident(def.name),
        spec.distance.operator()
    )
}

fn vector_sql<E: Entity>(
    query: &SearchQuery<E>,
    column: usize,
    vector: &Value,
    filter: &str,
    params: &mut Params,
    after: Option<After>,
) -> Result<(String, Extra)> {
    let schema = E::SCHEMA;
    let (def, spec) = vector_column(schema, column)?;
    let id = quote_ident(schema.id_column().name);
    let distance = distance_expr(def, &spec, vector, params);
    let mut conditions = vec![
        filter.to_owned(),
        format!("{} IS NOT NULL", quote_ident(def.name)),
    ];
    if let Some(after) = after {
        let d = params.push(SqValue::Double(Some(after.score)));
        let id_type: &'static ColumnType = &schema.columns[schema.id].ty;
        let seen = params.push(crate::bind::array_of(after.ids, id_type));
        conditions.push(format!(
            "({distance} > {d} OR ({distance} = {d} AND {id} <> ALL({seen})))"
        ));
    }
    let k = params.push(limit(query.k));
    // The bound applies outside the CTE: inside, an iterative scan would walk
    // the index looking for rows it can never return.
    let bound = match query.max_distance {
        Some(max) => format!(
            " WHERE {DISTANCE} <= {}",
            params.push(SqValue::Double(Some(max)))
        ),
        None => String::new(),
    };
    let sql = format!(
        "WITH \"__hits\" AS MATERIALIZED (SELECT {cols}, {distance} AS {DISTANCE} FROM {table} \
         WHERE {conditions} ORDER BY {DISTANCE} LIMIT {k}) \
         SELECT * FROM \"__hits\"{bound} ORDER BY {DISTANCE}, {id}",
        cols = select_list(schema, None),
        table = table_name(schema),
        conditions = conditions.join(" AND "),
    );
    Ok((sql, Extra::Distance))
}

/// `websearch_to_tsquery('<config>'::regconfig, $text)`, the text pushed once.
/// The configuration is the first full-text column's, from the schema.
fn tsquery(schema: &EntitySchema, text: &str, params: &mut Params) -> Result<String> {
    let language = schema
        .full_text_columns()
        .next()
        .and_then(|c| c.full_text)
        .ok_or_else(|| {
            Error::invalid(schema.entity, "text", "the entity has no full-text field")
        })?;
    let config = params.push(SqValue::String(Some(language.to_owned())));
    let text = params.push(SqValue::String(Some(text.to_owned())));
    Ok(format!("websearch_to_tsquery({config}::regconfig, {text})"))
}

fn text_sql<E: Entity>(
    query: &SearchQuery<E>,
    text: &str,
    filter: &str,
    params: &mut Params,
    after: Option<After>,
) -> Result<(String, Extra)> {
    let schema = E::SCHEMA;
    let id = quote_ident(schema.id_column().name);
    let tsv = quote_ident(FULL_TEXT_COLUMN);
    let q = tsquery(schema, text, params)?;
    let rank = format!("ts_rank_cd({tsv}, {q})::float8");
    let mut conditions = vec![format!("{tsv} @@ {q}"), filter.to_owned()];
    if let Some(After { score, mut ids }) = after {
        let r = params.push(SqValue::Double(Some(score)));
        let last_id = ids.pop().unwrap_or(Value::Null);
        let i = params.push(to_sea(last_id, &schema.id_column().ty));
        conditions.push(format!("({rank} < {r} OR ({rank} = {r} AND {id} > {i}))"));
    }
    let k = params.push(limit(query.k));
    let sql = format!(
        "SELECT {cols}, {rank} AS {RANK} FROM {table} WHERE {conditions} \
         ORDER BY {RANK} DESC, {id} LIMIT {k}",
        cols = select_list(schema, None),
        table = table_name(schema),
        conditions = conditions.join(" AND "),
    );
    Ok((sql, Extra::Rank))
}

/// Candidates each side contributes: the caller's choice, else `max(4k, 40)`, never below `k`.
pub(crate) fn candidates(fusion: &Fusion, k: u32) -> u32 {
    let wanted = match fusion.candidates {
        0 => k.saturating_mul(4).max(40),
        n => n,
    };
    wanted.max(k).min(reposmith_core::search::MAX_K)
}

/// The two sides' candidates as CTEs `"__v"` (`"__id"`, distance `"__d"`,
/// within the bound) and `"__t"` (`"__id"`, text rank `"__rank"` by
/// `rank_fn`), each the first `candidates` rows matching the filter; the
/// distance and tsquery expressions, for scoring other rows the same way.
struct Sides {
    ctes: String,
    distance: String,
    tsquery: String,
}

fn hybrid_sides<E: Entity>(
    query: &SearchQuery<E>,
    text: &str,
    column: usize,
    vector: &Value,
    filter: &str,
    params: &mut Params,
    rank_fn: &str,
) -> Result<Sides> {
    let schema = E::SCHEMA;
    let (def, spec) = vector_column(schema, column)?;
    let table = table_name(schema);
    let id = quote_ident(schema.id_column().name);
    let tsv = quote_ident(FULL_TEXT_COLUMN);
    let distance = distance_expr(def, &spec, vector, params);
    let q = tsquery(schema, text, params)?;
    let candidates = params.push(limit(candidates(&query.fusion, query.k)));
    let vector_conditions = [
        filter.to_owned(),
        format!("{} IS NOT NULL", quote_ident(def.name)),
    ];
    // Outside the materialized CTE, as for a vector search.
    let bound = match query.max_distance {
        Some(max) => format!(
            " WHERE \"__d\" <= {}",
            params.push(SqValue::Double(Some(max)))
        ),
        None => String::new(),
    };
    let ctes = format!(
        "\"__vc\" AS MATERIALIZED (\
            SELECT {id} AS \"__id\", {distance} AS \"__d\" FROM {table} \
            WHERE {vector_conditions} ORDER BY \"__d\" LIMIT {candidates}), \
         \"__v\" AS (SELECT \"__id\", \"__d\" FROM \"__vc\"{bound}), \
         \"__t\" AS MATERIALIZED (\
            SELECT {id} AS \"__id\", {rank_fn}({tsv}, {q})::float8 AS \"__rank\" FROM {table} \
            WHERE {tsv} @@ {q} AND {filter} ORDER BY \"__rank\" DESC, {id} LIMIT {candidates})",
        vector_conditions = vector_conditions.join(" AND "),
    );
    Ok(Sides {
        ctes,
        distance,
        tsquery: q,
    })
}

fn hybrid_sql<E: Entity>(
    query: &SearchQuery<E>,
    text: &str,
    column: usize,
    vector: &Value,
    filter: &str,
    params: &mut Params,
) -> Result<(String, Extra)> {
    let schema = E::SCHEMA;
    let f = &query.fusion;
    // `ts_rank` for convex fusion: its scores fuse better than `ts_rank_cd`'s
    // (measured by the RAG example's evaluation); the ranks RRF sees stay.
    let rank_fn = match f.method {
        FusionMethod::Convex => "ts_rank",
        _ => "ts_rank_cd",
    };
    let sides = hybrid_sides(query, text, column, vector, filter, params, rank_fn)?;
    let wv = params.push(SqValue::Double(Some(f.vector_weight)));
    let wt = params.push(SqValue::Double(Some(f.text_weight)));
    let fused = match f.method {
        FusionMethod::Convex => convex_cte(schema, &sides, &wv, &wt, rank_fn),
        _ => {
            let rrf = params.push(SqValue::Double(Some(f64::from(f.rrf_k))));
            rrf_cte(&wv, &wt, &rrf)
        }
    };
    let k = params.push(limit(query.k));
    let sql = format!(
        "WITH {ctes}, {fused} \
         SELECT {cols}, f.\"__d\", f.\"__rank\", f.\"__score\" FROM \"__f\" f JOIN {table} e ON e.{id} = f.\"__id\" \
         ORDER BY f.\"__score\" DESC, f.\"__id\" LIMIT {k}",
        ctes = sides.ctes,
        cols = select_list(schema, Some("e")),
        table = table_name(schema),
        id = quote_ident(schema.id_column().name),
    );
    Ok((sql, Extra::Fused))
}

/// `"__f"` by reciprocal rank fusion: each side's rank among its
/// candidates (ties by id), `wv / (rrf + vector rank) + wt / (rrf + text
/// rank)`, a missing side's term 0.
fn rrf_cte(wv: &str, wt: &str, rrf: &str) -> String {
    format!(
        "\"__vr\" AS (SELECT \"__id\", \"__d\", row_number() OVER (ORDER BY \"__d\", \"__id\") AS \"__r\" FROM \"__v\"), \
         \"__tr\" AS (SELECT \"__id\", \"__rank\", row_number() OVER (ORDER BY \"__rank\" DESC, \"__id\") AS \"__r\" FROM \"__t\"), \
         \"__f\" AS (SELECT coalesce(v.\"__id\", t.\"__id\") AS \"__id\", v.\"__d\", t.\"__rank\", \
            coalesce({wv} / ({rrf} + v.\"__r\"), 0) + coalesce({wt} / ({rrf} + t.\"__r\"), 0) AS \"__score\" \
            FROM \"__vr\" v FULL JOIN \"__tr\" t ON v.\"__id\" = t.\"__id\")"
    )
}

/// `"__f"` by convex combination: every candidate of either side scored on
/// both (its distance; its `rank_fn` when it matches the text, else none,
/// counted as 0), each side min-max normalised over the candidates (0 for
/// all when they are all equal), `(wv · v + wt · t) / (wv + wt)`.
fn convex_cte(schema: &EntitySchema, sides: &Sides, wv: &str, wt: &str, rank_fn: &str) -> String {
    let table = table_name(schema);
    let id = quote_ident(schema.id_column().name);
    let tsv = quote_ident(FULL_TEXT_COLUMN);
    let (distance, q) = (&sides.distance, &sides.tsquery);
    let unit =
        |x: &str, lo: &str, hi: &str| format!("coalesce(({x} - {lo}) / nullif({hi} - {lo}, 0), 0)");
    let (d, dmin, dmax) = ("\"__d\"", "min(\"__d\") OVER ()", "max(\"__d\") OVER ()");
    let r = "coalesce(\"__rank\", 0)";
    let (rmin, rmax) = (
        "min(coalesce(\"__rank\", 0)) OVER ()",
        "max(coalesce(\"__rank\", 0)) OVER ()",
    );
    // The vector side's best is the smallest distance: (max − d) / (max − min).
    let v = format!("coalesce(({dmax} - {d}) / nullif({dmax} - {dmin}, 0), 0)");
    let t = unit(r, rmin, rmax);
    format!(
        "\"__u\" AS (SELECT \"__id\" FROM \"__v\" UNION SELECT \"__id\" FROM \"__t\"), \
         \"__s\" AS (SELECT u.\"__id\", {distance}::float8 AS \"__d\", \
            CASE WHEN {tsv} @@ {q} THEN {rank_fn}({tsv}, {q})::float8 END AS \"__rank\" \
            FROM \"__u\" u JOIN {table} e ON e.{id} = u.\"__id\"), \
         \"__f\" AS (SELECT \"__id\", \"__d\", \"__rank\", \
            ({wv} * {v} + {wt} * {t}) / ({wv} + {wt}) AS \"__score\" FROM \"__s\")"
    )
}

#[cfg(test)]
mod tests {
    use reposmith_core::entity::codegen;
    use reposmith_core::search::SearchKind;
    use reposmith_core::{
        Column, ColumnRole, ColumnType, Distance, FieldType, IdStrategy, VectorIndex, VectorKind,
    };

    use super::*;

    struct Passage {
        id: i64,
        body: String,
        embedding: pgvector::Vector,
    }

    static COLUMNS: [ColumnDef; 3] = [
        ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
        ColumnDef::new("body", "body", ColumnType::Text, false).with_full_text("english"),
        ColumnDef::new(
            "embedding",
            "embedding",
            ColumnType::Vector(VectorKind::Dense),
            false,
        )
        .with_vector(VectorSpec::new(
            VectorKind::Dense,
            2,
            Distance::Cosine,
            VectorIndex::None,
        )),
    ];
    static SCHEMA: EntitySchema = EntitySchema::new(
        "Passage",
        "passages",
        &COLUMNS,
        0,
        IdStrategy::Identity,
        &[],
    );

    impl Passage {
        const BODY: Column<Passage, String> = Column::at(1);
    }

    impl Entity for Passage {
        type Id = i64;
        const SCHEMA: &'static EntitySchema = &SCHEMA;

        fn id(&self) -> &i64 {
            &self.id
        }

        fn to_values(&self) -> Result<Vec<Value>> {
            let embedding = self.embedding.to_value();
            Ok(vec![self.id.to_value(), self.body.to_value(), embedding])
        }

        fn from_values(values: Vec<Value>) -> Result<Self> {
            let mut values = values.into_iter();
            Ok(Passage {
                id: codegen::decode::<Self, _>(&mut values, "id")?,
                body: codegen::decode::<Self, _>(&mut values, "body")?,
                embedding: codegen::decode::<Self, _>(&mut values, "embedding")?,
            })
        }
    }

    const HOSTILE: &str = "x'); DROP TABLE passages; --";

    fn vector() -> Value {
        Value::Vector(pgvector::Vector::from(vec![0.25, 0.5]))
    }

    #[test]
    fn a_vector_search_binds_every_value_and_reuses_the_vector_placeholder() {
        let kind = SearchKind::Vector {
            column: 2,
            vector: vector(),
        };
        let mut query = SearchQuery::<Passage>::new(kind, 5);
        query.filter = Passage::BODY.eq(HOSTILE);
        query.max_distance = Some(0.5);
        let after = Some(After {
            score: 0.125,
            ids: vec![Value::I64(7), Value::I64(9)],
        });
        let built = search_sql(&query, after).unwrap();
        assert!(!built.sql.contains("DROP TABLE") && !built.sql.contains("0.125"));
        // $1 the filter's text, $2 the vector (in the distance and the keyset),
        // $3/$4 the cursor's distance and tied ids, $5 k, $6 the bound.
        assert_eq!(built.values.len(), 6);
        let uses = built.sql.matches("\"embedding\" <=> $2").count();
        assert_eq!(uses, 3, "{}", built.sql);
        assert!(built.sql.contains("\"id\" <> ALL($4)"), "{}", built.sql);
        let outer = "FROM \"__hits\" WHERE \"__distance\" <= $6 ORDER BY \"__distance\", \"id\"";
        assert!(
            built.sql.ends_with(outer),
            "bound outside the CTE: {}",
            built.sql
        );
        assert!(built.sql.contains("LIMIT $5"));
    }

    #[test]
    fn text_and_hybrid_searches_bind_the_text_and_the_configuration() {
        let text = SearchQuery::<Passage>::new(
            SearchKind::Text {
                text: HOSTILE.to_owned(),
            },
            3,
        );
        let built = search_sql(&text, None).unwrap();
        assert!(!built.sql.contains("DROP") && !built.sql.contains("english"));
        assert!(
            built
                .sql
                .contains("websearch_to_tsquery($1::regconfig, $2)")
        );
        let kind = SearchKind::Hybrid {
            text: HOSTILE.to_owned(),
            column: 2,
            vector: vector(),
        };
        let mut hybrid = SearchQuery::<Passage>::new(kind, 3);
        hybrid.filter = Passage::BODY.ne(HOSTILE);
        let built = search_sql(&hybrid, None).unwrap();
        assert!(!built.sql.contains("DROP"));
        assert_eq!(
            built.sql.matches("(\"body\" <> $1)").count(),
            2,
            "the filter on both sides"
        );
        assert_eq!(candidates(&hybrid.fusion, 3), 40);
        assert_eq!(built.extra, Extra::Fused);
    }

    #[test]
    fn a_convex_hybrid_binds_its_weights_and_scores_both_sides() {
        let kind = SearchKind::Hybrid {
            text: HOSTILE.to_owned(),
            column: 2,
            vector: vector(),
        };
        let mut query = SearchQuery::<Passage>::new(kind, 3);
        query.fusion.method = FusionMethod::Convex;
        query.fusion.text_weight = 0.123;
        query.fusion.vector_weight = 0.456;
        query.max_distance = Some(0.75);
        let built = search_sql(&query, None).unwrap();
        let sql = &built.sql;
        assert!(!sql.contains("DROP") && !sql.contains("0.123") && !sql.contains("0.456"));
        assert!(!sql.contains("0.75") && !sql.contains("english"), "{sql}");
        // $1 vector, $2/$3 configuration and text, $4 candidates, $5 bound,
        // $6/$7 weights, $8 k: no RRF constant.
        assert_eq!(built.values.len(), 8, "{sql}");
        assert_eq!(sql.matches("\"embedding\" <=> $1").count(), 2, "{sql}");
        assert!(
            sql.contains("($6 * ") && sql.contains(" / ($6 + $7)"),
            "{sql}"
        );
        assert!(
            sql.contains("UNION") && !sql.contains("row_number"),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT $8"), "{sql}");
        assert_eq!(built.extra, Extra::Fused);
    }
}
