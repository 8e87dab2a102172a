//! pgvector values on the wire: their binary form (each type's `recv`
//! function in pgvector), bound as parameters and written into binary COPY.
//!
//! sea-query's `Value` has no `halfvec`, `sparsevec` or `bit`, and its
//! `vector` needs a feature that pins another pgvector build, so vectors
//! travel through it as [`sea_query::Value::Bytes`] tagged with their kind;
//! no other reposmith column is `bytea`, so the tag cannot be mistaken.
//! [`crate::bind`] turns them back into a [`VectorParam`] that sqlx sends in
//! binary with the pgvector type's name, so Postgres picks the right operator.

use reposmith_core::{Value, VectorKind};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo};
use sqlx::{Encode, Postgres, Type};

/// A vector parameter in pgvector's binary format, or a typed NULL.
#[derive(Debug, Clone)]
pub(crate) struct VectorParam {
    kind: VectorKind,
    bytes: Option<Vec<u8>>,
}

impl Type<Postgres> for VectorParam {
    /// Only `produces` matters: each value names its own pgvector type.
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("vector")
    }
}

impl Encode<'_, Postgres> for VectorParam {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        match &self.bytes {
            Some(bytes) => {
                buf.extend_from_slice(bytes);
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(PgTypeInfo::with_name(self.kind.sql_type()))
    }
}

const TAGS: [VectorKind; 4] = [
    VectorKind::Dense,
    VectorKind::Half,
    VectorKind::Sparse,
    VectorKind::Bit,
];

fn tag(kind: VectorKind) -> u8 {
    TAGS.iter().position(|k| *k == kind).map_or(0, |i| i as u8)
}

/// The sea-query carrier of a vector value (`None`: NULL of `kind`).
pub(crate) fn to_carrier(kind: VectorKind, value: Option<&Value>) -> sea_query::Value {
    let mut bytes = vec![tag(kind)];
    if let Some(wire) = value.and_then(wire) {
        bytes.push(1);
        bytes.extend_from_slice(&wire);
    } else {
        bytes.push(0);
    }
    sea_query::Value::Bytes(Some(bytes))
}

/// The parameter a carrier made by [`to_carrier`] stands for.
pub(crate) fn from_carrier(bytes: Option<Vec<u8>>) -> Option<VectorParam> {
    let bytes = bytes?;
    let (&[tag, present], rest) = bytes.split_first_chunk::<2>()?;
    let kind = *TAGS.get(usize::from(tag))?;
    Some(VectorParam {
        kind,
        bytes: (present == 1).then(|| rest.to_vec()),
    })
}

/// pgvector's binary form of a vector value; `None` for any other value.
pub(crate) fn wire(value: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match value {
        Value::Vector(v) => {
            header16(&mut out, v.as_slice().len());
            v.as_slice()
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_be_bytes()));
        }
        Value::HalfVector(v) => {
            header16(&mut out, v.as_slice().len());
            v.as_slice()
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_bits().to_be_bytes()));
        }
        Value::SparseVector(v) => {
            let nnz = i32::try_from(v.indices().len()).ok()?;
            for word in [v.dimensions(), nnz, 0] {
                out.extend_from_slice(&word.to_be_bytes());
            }
            v.indices()
                .iter()
                .for_each(|i| out.extend_from_slice(&i.to_be_bytes()));
            v.values()
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_be_bytes()));
        }
        Value::Bit(v) => {
            let bits = i32::try_from(v.len()).ok()?;
            out.extend_from_slice(&bits.to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        _ => return None,
    }
    Some(out)
}

/// `vector` and `halfvec` start with the dimension and an unused word, as int16s.
fn header16(out: &mut Vec<u8>, dims: usize) {
    // Dimensions were checked against the schema (at most 16,000) before encoding.
    let dims = i16::try_from(dims).unwrap_or(i16::MAX);
    out.extend_from_slice(&dims.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_survive_the_carrier() {
        let value = Value::Vector(pgvector::Vector::from(vec![1.0, -2.5]));
        let sea_query::Value::Bytes(bytes) = to_carrier(VectorKind::Dense, Some(&value)) else {
            panic!("a carrier is bytes");
        };
        let param = from_carrier(bytes).expect("a carrier");
        assert_eq!(param.kind, VectorKind::Dense);
        let expected: Vec<u8> = [2i16.to_be_bytes(), 0i16.to_be_bytes()]
            .concat()
            .into_iter()
            .chain(1.0f32.to_be_bytes())
            .chain((-2.5f32).to_be_bytes())
            .collect();
        assert_eq!(param.bytes, Some(expected));
        let sea_query::Value::Bytes(null) = to_carrier(VectorKind::Bit, None) else {
            panic!("a carrier is bytes");
        };
        let param = from_carrier(null).expect("a carrier");
        assert_eq!((param.kind, param.bytes), (VectorKind::Bit, None));
    }

    #[test]
    fn sparse_and_bit_use_their_recv_layouts() {
        let sparse = pgvector::SparseVector::from_dense(&[0.0, 3.0, 0.0]);
        let bytes = wire(&Value::SparseVector(sparse)).expect("a vector");
        let words: Vec<i32> = bytes[..16]
            .chunks(4)
            .map(|c| i32::from_be_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(words, [3, 1, 0, 1], "dims, nnz, unused, index 1");
        assert_eq!(&bytes[16..], &3.0f32.to_be_bytes());
        let bit = wire(&Value::Bit(pgvector::Bit::new(&[true, false, true]))).unwrap();
        assert_eq!(bit, [0, 0, 0, 3, 0b1010_0000]);
    }
}
