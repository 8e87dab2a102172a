//! Client-side checks of vectors against their column's [`VectorSpec`], run
//! on every write and every query before anything is sent, so a wrong
//! dimension or a NaN is an error naming the field instead of a server error
//! (or, for NaN, a silently useless row).

use crate::schema::{ColumnDef, Distance, EntitySchema, VectorIndex, VectorKind, VectorSpec};

/// pgvector refuses to index a sparse vector with more non-zero elements.
const SPARSE_HNSW_MAX_NNZ: usize = 1_000;
use crate::value::Value;
use crate::{Error, Result};

/// Checks every vector column of a row about to be written (`values` in schema order).
pub fn check_row(schema: &EntitySchema, values: &[Value]) -> Result<()> {
    for (column, value) in schema.columns.iter().zip(values) {
        if let Some(spec) = &column.vector {
            if matches!(value, Value::Null) && column.nullable {
                continue;
            }
            check_value(spec, value)
                .and_then(|()| indexable(spec, value))
                .map_err(|reason| Error::invalid(schema.entity, column.field, reason))?;
        }
    }
    Ok(())
}

/// Checks a query vector for the vector column at `column`.
pub fn check_query(schema: &EntitySchema, column: usize, vector: &Value) -> Result<()> {
    let def: &ColumnDef = schema
        .columns
        .get(column)
        .ok_or_else(|| Error::invalid(schema.entity, "column", "not a column of this entity"))?;
    let spec = def.vector.as_ref().ok_or_else(|| {
        Error::invalid(
            schema.entity,
            def.field,
            "is not a #[repo(vector(..))] column",
        )
    })?;
    check_value(spec, vector).map_err(|reason| {
        Error::invalid(schema.entity, def.field, format!("query vector {reason}"))
    })
}

/// Checks full-text query text: no NUL (Postgres text cannot hold it) and an
/// entity that has a full-text document to search.
pub fn check_text_query(schema: &EntitySchema, text: &str) -> Result<()> {
    if schema.full_text_columns().next().is_none() {
        return Err(Error::invalid(
            schema.entity,
            "text",
            "the entity has no #[repo(full_text)] field to search",
        ));
    }
    if text.contains('\0') {
        return Err(Error::invalid(
            schema.entity,
            "text",
            "contains a NUL character (\\u0000)",
        ));
    }
    Ok(())
}

/// Why `value` cannot be stored in or compared with a column of `spec`,
/// as a phrase completing "the vector ...".
pub fn check_value(spec: &VectorSpec, value: &Value) -> std::result::Result<(), String> {
    let expected = spec.dims as usize;
    let (len, non_finite, all_zero) = match (spec.kind, value) {
        (VectorKind::Dense, Value::Vector(v)) => floats(v.as_slice().iter().copied()),
        (VectorKind::Half, Value::HalfVector(v)) => floats(v.as_slice().iter().map(|h| h.to_f32())),
        (VectorKind::Sparse, Value::SparseVector(v)) => return check_sparse(spec, v),
        (VectorKind::Bit, Value::Bit(v)) => {
            let zero = v.as_bytes().iter().all(|b| *b == 0);
            (v.len(), None, zero)
        }
        (kind, other) => {
            return Err(format!(
                "must be a {} of {expected} dimensions, found {}",
                kind.sql_type(),
                other.kind()
            ));
        }
    };
    if len == 0 {
        return Err(format!("is empty; expected {expected} dimensions"));
    }
    if len != expected {
        return Err(format!(
            "has {len} dimensions; expected {expected} dimensions"
        ));
    }
    if let Some((i, x)) = non_finite {
        return Err(format!(
            "has {x} at index {i}; every element must be finite"
        ));
    }
    // pgvector answers NaN for the cosine distance of a zero vector (jaccard of
    // empty bit sets is defined: 1).
    if all_zero && spec.distance == Distance::Cosine {
        return Err(format!(
            "is all zeros, which has no {} distance to anything",
            spec.distance.name()
        ));
    }
    Ok(())
}

/// Why a stored `value` cannot enter the column's index: pgvector's HNSW
/// holds sparse vectors of at most 1,000 non-zero elements (query vectors
/// have no such limit).
fn indexable(spec: &VectorSpec, value: &Value) -> std::result::Result<(), String> {
    match value {
        Value::SparseVector(v)
            if matches!(spec.index, VectorIndex::Hnsw { .. })
                && v.indices().len() > SPARSE_HNSW_MAX_NNZ =>
        {
            Err(format!(
                "has {} non-zero elements; an HNSW index on sparsevec holds at most {SPARSE_HNSW_MAX_NNZ}",
                v.indices().len()
            ))
        }
        _ => Ok(()),
    }
}

/// Length, first non-finite element, and whether every element is zero.
fn floats(items: impl Iterator<Item = f32>) -> (usize, Option<(usize, f32)>, bool) {
    let mut len = 0;
    let mut non_finite = None;
    let mut all_zero = true;
    for (i, x) in items.enumerate() {
        len = i + 1;
        if !x.is_finite() && non_finite.is_none() {
            non_finite = Some((i, x));
        }
        all_zero &= x == 0.0;
    }
    (len, non_finite, all_zero)
}

fn check_sparse(spec: &VectorSpec, v: &pgvector::SparseVector) -> std::result::Result<(), String> {
    let expected = spec.dims as usize;
    let dims = usize::try_from(v.dimensions()).unwrap_or(0);
    if dims != expected {
        return Err(format!(
            "has {dims} dimensions; expected {expected} dimensions"
        ));
    }
    let indices = v.indices();
    if indices.len() != v.values().len() {
        return Err("has a different number of indices and values".to_owned());
    }
    if let Some(i) = indices.iter().find(|i| **i < 0 || **i as usize >= expected) {
        return Err(format!("has index {i}, outside 0..{expected}"));
    }
    if indices.windows(2).any(|w| w[0] >= w[1]) {
        return Err("has indices that are not strictly increasing".to_owned());
    }
    if let Some((i, x)) = v.values().iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(format!(
            "has {x} at index {}; every element must be finite",
            indices[i]
        ));
    }
    let all_zero = v.values().iter().all(|x| *x == 0.0);
    if all_zero && spec.distance == Distance::Cosine {
        return Err("is all zeros, which has no cosine distance to anything".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: VectorKind, dims: u32, distance: Distance) -> VectorSpec {
        VectorSpec::new(kind, dims, distance, VectorIndex::None)
    }

    #[test]
    fn dense_vectors_are_checked_for_length_finiteness_and_zero() {
        let s = spec(VectorKind::Dense, 3, Distance::Cosine);
        let v = |x: Vec<f32>| Value::Vector(pgvector::Vector::from(x));
        assert!(check_value(&s, &v(vec![1.0, 0.0, 0.5])).is_ok());
        let short = check_value(&s, &v(vec![1.0, 2.0])).unwrap_err();
        assert!(short.contains("has 2 dimensions; expected 3"), "{short}");
        assert!(check_value(&s, &v(vec![])).unwrap_err().contains("empty"));
        let nan = check_value(&s, &v(vec![1.0, f32::NAN, 0.0])).unwrap_err();
        assert!(nan.contains("NaN at index 1"), "{nan}");
        let inf = check_value(&s, &v(vec![f32::INFINITY, 1.0, 0.0])).unwrap_err();
        assert!(inf.contains("inf at index 0"), "{inf}");
        assert!(
            check_value(&s, &v(vec![0.0; 3]))
                .unwrap_err()
                .contains("all zeros")
        );
        let l2 = spec(VectorKind::Dense, 3, Distance::L2);
        assert!(check_value(&l2, &v(vec![0.0; 3])).is_ok());
    }

    #[test]
    fn other_kinds_are_checked_too() {
        let half = spec(VectorKind::Half, 2, Distance::L2);
        let h = Value::HalfVector(pgvector::HalfVector::from_f32_slice(&[1.0, 70_000.0]));
        assert!(
            check_value(&half, &h)
                .unwrap_err()
                .contains("inf at index 1")
        );
        let sparse = spec(VectorKind::Sparse, 4, Distance::L2);
        let sv = pgvector::SparseVector::from_dense(&[0.0, 1.0, 0.0, 2.0]);
        assert!(check_value(&sparse, &Value::SparseVector(sv)).is_ok());
        let wrong = pgvector::SparseVector::from_dense(&[1.0, 2.0]);
        assert!(check_value(&sparse, &Value::SparseVector(wrong)).is_err());
        let hnsw = VectorSpec::new(
            VectorKind::Sparse,
            5_000,
            Distance::L2,
            VectorIndex::Hnsw {
                m: 16,
                ef_construction: 64,
            },
        );
        let dense_ish = Value::SparseVector(pgvector::SparseVector::from_dense(&[1.0; 5_000]));
        assert!(
            check_value(&hnsw, &dense_ish).is_ok(),
            "a query vector may be dense"
        );
        let err = indexable(&hnsw, &dense_ish).unwrap_err();
        assert!(err.contains("at most 1000"), "{err}");
        let bit = spec(VectorKind::Bit, 4, Distance::Hamming);
        let b = pgvector::Bit::new(&[true, false, true, true]);
        assert!(check_value(&bit, &Value::Bit(b)).is_ok());
        let b = pgvector::Bit::new(&[true]);
        assert!(
            check_value(&bit, &Value::Bit(b))
                .unwrap_err()
                .contains("expected 4")
        );
        let kind = check_value(&bit, &Value::Text("x".into())).unwrap_err();
        assert!(kind.contains("must be a bit"), "{kind}");
    }
}
