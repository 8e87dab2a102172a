//! Aggregation expressions computing a vector distance server-side, for the
//! exact search (and for re-scoring `$vectorSearch` candidates with the same
//! numbers).
//!
//! The query vector is a `$literal`, never an expression, so its elements
//! cannot be read as operators. Sums run in stored order with `$reduce` in
//! double precision: dense and half vectors over `$zip` of the stored array
//! and the query; sparse vectors over the stored `(index, value)` pairs,
//! each looked up in the query with `$indexOfArray`, plus the query's
//! elements the stored vector lacks. Every distance follows pgvector's
//! definition (smaller is closer, inner product negated, cosine `1 - cos`);
//! a stored vector with no cosine or jaccard distance (all zeros) yields
//! `null` and is not a hit.

use mongodb::bson::{Bson, Document, doc};
use reposmith_core::{Distance, Value, VectorKind, VectorSpec};

use crate::vector_codec::bits;

/// The field a search stage stores each candidate's distance in.
pub(crate) const DISTANCE: &str = "__rs_distance";

/// `{$arrayElemAt: ["$$this", i]}`: an element of the current `$zip` pair.
fn pair(i: i32) -> Bson {
    Bson::Document(doc! { "$arrayElemAt": ["$$this", i] })
}

/// `Σ term` over `input`, where `term` reads the element as `$$this`.
fn sum(input: Bson, term: Bson) -> Bson {
    Bson::Document(doc! {
        "$reduce": { "input": input, "initialValue": 0.0, "in": { "$add": ["$$value", term] } }
    })
}

fn zip(a: Bson, b: Bson) -> Bson {
    Bson::Document(doc! { "$zip": { "inputs": [a, b] } })
}

fn literal(value: impl Into<Bson>) -> Bson {
    Bson::Document(doc! { "$literal": value.into() })
}

fn doubles(items: &[f64]) -> Bson {
    Bson::Array(items.iter().copied().map(Bson::Double).collect())
}

/// `x * x`, with `x` evaluated once.
fn square(x: Bson) -> Bson {
    Bson::Document(doc! { "$let": { "vars": { "d": x }, "in": { "$multiply": ["$$d", "$$d"] } } })
}

fn abs(x: Bson) -> Bson {
    Bson::Document(doc! { "$abs": x })
}

fn times(a: Bson, b: Bson) -> Bson {
    Bson::Document(doc! { "$multiply": [a, b] })
}

fn minus(a: Bson, b: Bson) -> Bson {
    Bson::Document(doc! { "$subtract": [a, b] })
}

/// `1 - num / den`, or `null` when `den` is zero.
fn one_minus_ratio(vars: Document, num: Bson, den: Bson) -> Bson {
    Bson::Document(doc! { "$let": { "vars": vars, "in": {
        "$cond": [
            { "$eq": [den.clone(), 0.0] },
            Bson::Null,
            { "$subtract": [1.0, { "$divide": [num, den] }] },
        ]
    } } })
}

/// The expression of `spec.distance` between the vector stored at `key`
/// and `query`, or why there is none.
pub(crate) fn distance_expr(key: &str, spec: &VectorSpec, query: &Value) -> Result<Bson, String> {
    let stored = Bson::String(format!("${key}"));
    match (spec.kind, query) {
        (VectorKind::Dense, Value::Vector(q)) => {
            let q: Vec<f64> = q.as_slice().iter().map(|x| f64::from(*x)).collect();
            Ok(dense(stored, &q, spec.distance))
        }
        (VectorKind::Half, Value::HalfVector(q)) => {
            let q: Vec<f64> = q.as_slice().iter().map(|x| f64::from(x.to_f32())).collect();
            Ok(dense(stored, &q, spec.distance))
        }
        (VectorKind::Sparse, Value::SparseVector(q)) => Ok(sparse(key, q, spec.distance)),
        (VectorKind::Bit, Value::Bit(q)) => Ok(bit(stored, q, spec.distance)),
        (kind, other) => Err(format!(
            "a {} query for a {} column",
            other.kind(),
            kind.sql_type()
        )),
    }
}

/// Distances between equal-length arrays of doubles.
fn dense(stored: Bson, q: &[f64], distance: Distance) -> Bson {
    let pairs = zip(stored, literal(doubles(q)));
    let (a, b) = (pair(0), pair(1));
    let dot = || sum(pairs.clone(), times(a.clone(), b.clone()));
    match distance {
        Distance::L2 => Bson::Document(doc! { "$sqrt": sum(pairs.clone(), square(minus(a, b))) }),
        Distance::L1 => sum(pairs, abs(minus(a, b))),
        Distance::InnerProduct => times(Bson::Double(-1.0), dot()),
        _ => {
            let q_norm = q.iter().map(|x| x * x).sum::<f64>().sqrt();
            let vars = doc! { "dot": dot(), "nn": sum(pairs.clone(), square(a)) };
            let den = times(
                Bson::Document(doc! { "$sqrt": "$$nn" }),
                Bson::Double(q_norm),
            );
            one_minus_ratio(vars, Bson::String("$$dot".into()), den)
        }
    }
}

/// Distances between a stored `{dims, indices, values}` document and `q`.
fn sparse(
    key: &str,
    q: &reposmith_core::value::pgvector::SparseVector,
    distance: Distance,
) -> Bson {
    let q_indices = literal(q.indices().to_vec());
    let q_values: Vec<f64> = q.values().iter().map(|x| f64::from(*x)).collect();
    let stored_indices = Bson::String(format!("${key}.indices"));
    let pairs = zip(
        stored_indices.clone(),
        Bson::String(format!("${key}.values")),
    );
    // The query's value at the stored pair's index, 0 when the query has none.
    let looked_up = Bson::Document(doc! { "$let": {
        "vars": { "p": { "$indexOfArray": [q_indices.clone(), pair(0)] } },
        "in": { "$cond": [
            { "$lt": ["$$p", 0] }, 0.0, { "$arrayElemAt": [literal(doubles(&q_values)), "$$p"] },
        ] },
    } });
    let v = pair(1);
    // Σ f(q) over the query elements whose index the stored vector lacks.
    let only_in_query = |f: fn(Bson) -> Bson| {
        let q_pairs = zip(q_indices.clone(), literal(doubles(&q_values)));
        let term =
            doc! { "$cond": [{ "$in": [pair(0), stored_indices.clone()] }, 0.0, f(pair(1))] };
        sum(q_pairs, Bson::Document(term))
    };
    let add = |a: Bson, b: Bson| Bson::Document(doc! { "$add": [a, b] });
    match distance {
        Distance::L2 => {
            let stored_part = sum(pairs, square(minus(v, looked_up)));
            Bson::Document(doc! { "$sqrt": add(stored_part, only_in_query(square)) })
        }
        Distance::L1 => add(sum(pairs, abs(minus(v, looked_up))), only_in_query(abs)),
        Distance::InnerProduct => times(Bson::Double(-1.0), sum(pairs, times(v, looked_up))),
        _ => {
            let q_norm = q_values.iter().map(|x| x * x).sum::<f64>().sqrt();
            let vars = doc! {
                "dot": sum(pairs.clone(), times(v.clone(), looked_up)),
                "nn": sum(pairs, square(v)),
            };
            let den = times(
                Bson::Document(doc! { "$sqrt": "$$nn" }),
                Bson::Double(q_norm),
            );
            one_minus_ratio(vars, Bson::String("$$dot".into()), den)
        }
    }
}

/// Hamming and jaccard distances between arrays of booleans.
fn bit(stored: Bson, q: &reposmith_core::value::pgvector::Bit, distance: Distance) -> Bson {
    let q: Vec<Bson> = bits(q).map(Bson::Boolean).collect();
    let pairs = zip(stored, literal(q));
    let count = |condition: Document| {
        let term = doc! { "$cond": [condition, 1.0, 0.0] };
        sum(pairs.clone(), Bson::Document(term))
    };
    let (a, b) = (pair(0), pair(1));
    match distance {
        Distance::Jaccard => {
            let vars = doc! {
                "both": count(doc! { "$and": [a.clone(), b.clone()] }),
                "either": count(doc! { "$or": [a, b] }),
            };
            one_minus_ratio(vars, "$$both".into(), "$$either".into())
        }
        _ => count(doc! { "$ne": [a, b] }),
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::VectorIndex;
    use reposmith_core::value::pgvector;

    use super::*;

    #[test]
    fn a_mismatched_query_kind_is_refused() {
        let spec = VectorSpec::new(VectorKind::Dense, 2, Distance::L2, VectorIndex::None);
        let bit = Value::Bit(pgvector::Bit::new(&[true, false]));
        assert!(distance_expr("e", &spec, &bit).is_err());
    }

    #[test]
    fn the_query_is_a_literal_and_the_stored_key_a_field_path() {
        let spec = VectorSpec::new(VectorKind::Dense, 2, Distance::L1, VectorIndex::None);
        let q = Value::Vector(pgvector::Vector::from(vec![1.0, 2.0]));
        let expr = distance_expr("embedding", &spec, &q).unwrap().to_string();
        assert!(expr.contains("\"$embedding\""), "{expr}");
        assert!(expr.contains("\"$literal\": [1, 2]"), "{expr}");
    }
}
