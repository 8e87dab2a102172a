//! Unit tests of [`SearchQuery::validate`]'s fusion checks, on a
//! hand-written entity with a full-text field and a two-dimensional vector.

use super::*;
use crate::schema::{ColumnDef, ColumnRole, ColumnType, EntitySchema, IdStrategy};
use crate::schema::{VectorIndex, VectorKind};

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

/// Never built: validation only reads the schema.
struct Passage {
    id: i64,
}

impl Entity for Passage {
    type Id = i64;
    const SCHEMA: &'static EntitySchema = &SCHEMA;

    fn id(&self) -> &i64 {
        &self.id
    }

    fn to_values(&self) -> Result<Vec<Value>> {
        Ok(vec![Value::I64(self.id)])
    }

    fn from_values(_: Vec<Value>) -> Result<Self> {
        Err(Error::invalid(
            "Passage",
            "id",
            "not decoded in these tests",
        ))
    }
}

/// A hybrid search of "rust" near (1, 0) fused by `method` with `weights`.
fn hybrid(method: FusionMethod, text: f64, vector: f64) -> SearchQuery<Passage> {
    let kind = SearchKind::Hybrid {
        text: "rust".into(),
        column: 2,
        vector: Value::Vector(pgvector::Vector::from(vec![1.0, 0.0])),
    };
    let mut query = SearchQuery::new(kind, 10);
    query.fusion.method = method;
    query.fusion.text_weight = text;
    query.fusion.vector_weight = vector;
    query
}

/// The field of the `InvalidInput` that `query` fails validation with.
fn invalid_field(query: &SearchQuery<Passage>) -> String {
    match query.validate() {
        Err(Error::InvalidInput { field, .. }) => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

const METHODS: [FusionMethod; 2] = [FusionMethod::ReciprocalRank, FusionMethod::Convex];

#[test]
fn reciprocal_rank_is_the_default_method() {
    assert_eq!(Fusion::default().method, FusionMethod::ReciprocalRank);
    assert_eq!(FusionMethod::default(), FusionMethod::ReciprocalRank);
}

#[test]
fn weights_that_are_finite_and_not_both_zero_pass_under_both_methods() {
    for method in METHODS {
        for (text, vector) in [(1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.3, 0.7), (5.0, 2.0)] {
            assert!(
                hybrid(method, text, vector).validate().is_ok(),
                "{method:?} {text} {vector}"
            );
        }
    }
}

#[test]
fn nan_infinite_negative_or_zero_weights_are_typed_errors() {
    let bad = [
        (f64::NAN, 1.0),
        (1.0, f64::NAN),
        (f64::INFINITY, 1.0),
        (1.0, f64::NEG_INFINITY),
        (-0.1, 1.0),
        (1.0, -1.0),
        (0.0, 0.0),
    ];
    for method in METHODS {
        for (text, vector) in bad {
            assert_eq!(
                invalid_field(&hybrid(method, text, vector)),
                "weights",
                "{method:?} {text} {vector}"
            );
        }
    }
}

#[test]
fn candidates_beyond_the_largest_k_are_a_typed_error() {
    for method in METHODS {
        let mut query = hybrid(method, 1.0, 1.0);
        query.fusion.candidates = MAX_K;
        assert!(query.validate().is_ok());
        query.fusion.candidates = MAX_K + 1;
        assert_eq!(invalid_field(&query), "candidates");
    }
}
