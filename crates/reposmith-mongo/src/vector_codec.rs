//! The BSON form of pgvector values, chosen so the exact search of the
//! `search` module can compute every distance server-side in an aggregation.
//!
//! | `Value` | BSON |
//! |---|---|
//! | `Vector` (f32) | array of doubles (each f32 widened exactly) |
//! | `HalfVector` (f16) | array of doubles (each f16 widened exactly) |
//! | `SparseVector` | sub-document `{dims: Int32, indices: [Int32], values: [double]}` |
//! | `Bit` | array of booleans, one per bit |
//!
//! Arrays of doubles are also what Atlas `$vectorSearch` indexes. A bit
//! string as booleans costs a few bytes per bit instead of one eighth, but
//! binary data offers aggregation no way to read a bit, and hamming and
//! jaccard distances must be computable by the server.

use mongodb::bson::{Bson, Document, doc};
use reposmith_core::value::{DecodeError, pgvector};
use reposmith_core::{Value, VectorKind};

/// The BSON form of a vector value; `None` for a value that is no vector.
pub(crate) fn vector_to_bson(value: &Value) -> Option<Bson> {
    Some(match value {
        Value::Vector(v) => doubles(v.as_slice().iter().map(|x| f64::from(*x))),
        Value::HalfVector(v) => doubles(v.as_slice().iter().map(|x| f64::from(x.to_f32()))),
        Value::SparseVector(v) => Bson::Document(sparse_doc(v)),
        Value::Bit(v) => Bson::Array(bits(v).map(Bson::Boolean).collect()),
        _ => return None,
    })
}

fn doubles(items: impl Iterator<Item = f64>) -> Bson {
    Bson::Array(items.map(Bson::Double).collect())
}

fn sparse_doc(v: &pgvector::SparseVector) -> Document {
    let indices: Vec<Bson> = v.indices().iter().map(|i| Bson::Int32(*i)).collect();
    let values = doubles(v.values().iter().map(|x| f64::from(*x)));
    doc! { "dims": v.dimensions(), "indices": indices, "values": values }
}

/// The bits of a bit string, most significant bit of each byte first (pgvector's order).
pub(crate) fn bits(v: &pgvector::Bit) -> impl Iterator<Item = bool> + '_ {
    (0..v.len()).map(|i| v.as_bytes()[i / 8] & (0x80 >> (i % 8)) != 0)
}

/// Reads a stored vector of `kind`.
pub(crate) fn vector_from_bson(kind: VectorKind, bson: &Bson) -> Result<Value, DecodeError> {
    let wrong = |expected| DecodeError {
        expected,
        found: format!("BSON {:?}", bson.element_type()),
    };
    match kind {
        VectorKind::Dense => floats(bson)
            .map(|v| Value::Vector(pgvector::Vector::from(v)))
            .ok_or_else(|| wrong("an array of numbers")),
        VectorKind::Half => floats(bson)
            .map(|v| Value::HalfVector(pgvector::HalfVector::from_f32_slice(&v)))
            .ok_or_else(|| wrong("an array of numbers")),
        VectorKind::Sparse => {
            sparse(bson).ok_or_else(|| wrong("a {dims, indices, values} document"))
        }
        VectorKind::Bit => match bson {
            Bson::Array(items) => items
                .iter()
                .map(Bson::as_bool)
                .collect::<Option<Vec<bool>>>()
                .map(|b| Value::Bit(pgvector::Bit::new(&b)))
                .ok_or_else(|| wrong("an array of booleans")),
            _ => Err(wrong("an array of booleans")),
        },
        _ => Err(wrong("a known vector kind")),
    }
}

fn floats(bson: &Bson) -> Option<Vec<f32>> {
    match bson {
        Bson::Array(items) => items.iter().map(|x| number(x).map(|f| f as f32)).collect(),
        _ => None,
    }
}

fn number(bson: &Bson) -> Option<f64> {
    match bson {
        Bson::Double(f) => Some(*f),
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Int64(n) => Some(*n as f64),
        _ => None,
    }
}

fn sparse(bson: &Bson) -> Option<Value> {
    let doc = bson.as_document()?;
    let dims = doc.get("dims").and_then(number)? as i32;
    let indices = doc
        .get_array("indices")
        .ok()?
        .iter()
        .map(|i| number(i).map(|n| n as i32))
        .collect::<Option<Vec<i32>>>()?;
    let values = floats(doc.get("values")?)?;
    if indices.len() != values.len() {
        return None;
    }
    let map: Vec<(i32, f32)> = indices.into_iter().zip(values).collect();
    let v = pgvector::SparseVector::from_map(map.iter().map(|(i, x)| (i, x)), dims);
    Some(Value::SparseVector(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(kind: VectorKind, value: Value) {
        let bson = vector_to_bson(&value).unwrap();
        assert_eq!(vector_from_bson(kind, &bson).unwrap(), value);
    }

    #[test]
    fn every_vector_kind_round_trips() {
        let dense = pgvector::Vector::from(vec![0.1f32, -2.5, f32::MAX, 1e-30]);
        round_trip(VectorKind::Dense, Value::Vector(dense));
        let half = pgvector::HalfVector::from_f32_slice(&[0.1, -2.5, 65504.0]);
        round_trip(VectorKind::Half, Value::HalfVector(half));
        let sparse = pgvector::SparseVector::from_dense(&[0.0, 1.5, 0.0, -0.25]);
        round_trip(VectorKind::Sparse, Value::SparseVector(sparse));
        let bits = [true, false, true, true, false, false, false, true, true];
        round_trip(VectorKind::Bit, Value::Bit(pgvector::Bit::new(&bits)));
    }

    #[test]
    fn stored_shapes_are_documented_ones() {
        let sparse = pgvector::SparseVector::from_dense(&[0.0, 2.0]);
        let bson = vector_to_bson(&Value::SparseVector(sparse)).unwrap();
        assert_eq!(
            bson,
            Bson::Document(doc! { "dims": 2, "indices": [1], "values": [2.0] })
        );
        let bit = vector_to_bson(&Value::Bit(pgvector::Bit::new(&[true, false]))).unwrap();
        assert_eq!(bit, Bson::Array(vec![true.into(), false.into()]));
        let wrong = vector_from_bson(VectorKind::Dense, &Bson::String("x".into()));
        assert!(wrong.is_err());
    }
}
