//! An entity implemented by hand, the way `#[derive(Repository)]` expands it:
//! the reference for the derive's output and a check that the filter API
//! types what it should.

use chrono::{DateTime, Utc};
use reposmith_core::entity::codegen;
use reposmith_core::filter::{CompareOp, FilterNode};
use reposmith_core::{
    Column, ColumnDef, ColumnRole, ColumnType, Entity, EntitySchema, FieldType, Filter, IdStrategy,
    IndexDef, IndexMethod, JsonColumn, Result, Value,
};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq)]
struct Doc {
    id: Uuid,
    title: String,
    summary: Option<String>,
    tags: Vec<String>,
    metadata: serde_json::Map<String, serde_json::Value>,
    version: i64,
    created_at: DateTime<Utc>,
}

static DOC_SCHEMA: EntitySchema = EntitySchema::new(
    "Doc",
    "docs",
    &[
        ColumnDef::new("id", "id", <Uuid as FieldType>::COLUMN_TYPE, false)
            .with_role(ColumnRole::Id),
        ColumnDef::new("title", "title", <String as FieldType>::COLUMN_TYPE, false).with_unique(),
        ColumnDef::new("summary", "summary", <Option<String>>::COLUMN_TYPE, true),
        ColumnDef::new("tags", "tags", <Vec<String>>::COLUMN_TYPE, false),
        ColumnDef::new("metadata", "metadata", ColumnType::Json, false),
        ColumnDef::new("version", "version", <i64>::COLUMN_TYPE, false)
            .with_role(ColumnRole::Version),
        ColumnDef::new(
            "created_at",
            "created_at",
            <DateTime<Utc>>::COLUMN_TYPE,
            false,
        )
        .with_role(ColumnRole::CreatedAt),
    ],
    0,
    IdStrategy::ClientUuid,
    &[IndexDef::new(
        "docs_title_key",
        &["title"],
        true,
        IndexMethod::BTree,
    )],
);

impl Doc {
    const TITLE: Column<Doc, String> = Column::at(1);
    const SUMMARY: Column<Doc, Option<String>> = Column::at(2);
    const METADATA: JsonColumn<Doc> = JsonColumn::at(4);
    const CREATED_AT: Column<Doc, DateTime<Utc>> = Column::at(6);
}

impl Entity for Doc {
    type Id = Uuid;
    const SCHEMA: &'static EntitySchema = &DOC_SCHEMA;

    fn id(&self) -> &Uuid {
        &self.id
    }

    fn to_values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.id.to_value(),
            self.title.to_value(),
            self.summary.to_value(),
            self.tags.to_value(),
            codegen::encode_json::<Self, _>(&self.metadata, "metadata", false)?,
            self.version.to_value(),
            self.created_at.to_value(),
        ])
    }

    fn from_values(values: Vec<Value>) -> Result<Self> {
        let mut values = values.into_iter();
        Ok(Doc {
            id: codegen::decode::<Self, _>(&mut values, "id")?,
            title: codegen::decode::<Self, _>(&mut values, "title")?,
            summary: codegen::decode::<Self, _>(&mut values, "summary")?,
            tags: codegen::decode::<Self, _>(&mut values, "tags")?,
            metadata: codegen::decode_json::<Self, _>(&mut values, "metadata")?,
            version: codegen::decode::<Self, _>(&mut values, "version")?,
            created_at: codegen::decode::<Self, _>(&mut values, "created_at")?,
        })
    }
}

fn sample() -> Doc {
    Doc {
        id: Uuid::now_v7(),
        title: "Intro".into(),
        summary: None,
        tags: vec!["a".into()],
        metadata: json!({"lang": "en", "nested": {"k": [1, 2]}})
            .as_object()
            .unwrap()
            .clone(),
        version: 1,
        created_at: Utc::now(),
    }
}

#[test]
fn values_round_trip_in_schema_order() {
    let doc = sample();
    let values = doc.to_values().unwrap();
    assert_eq!(values.len(), Doc::SCHEMA.columns.len());
    assert_eq!(Doc::from_values(values).unwrap(), doc);
}

#[test]
fn a_wrong_stored_type_names_the_field() {
    let mut values = sample().to_values().unwrap();
    values[5] = Value::Text("one".into());
    let err = Doc::from_values(values).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read Doc.version: expected i64, found text"
    );
}

#[test]
fn filters_build_the_expected_tree() {
    let filter = Doc::TITLE.starts_with("50%_off") & Doc::SUMMARY.is_null()
        | !Doc::METADATA.path("lang").eq("en");
    let FilterNode::Or(branches) = filter.node() else {
        panic!("{filter:?}")
    };
    let FilterNode::And(both) = &branches[0] else {
        panic!("{filter:?}")
    };
    assert_eq!(
        both[0],
        FilterNode::Like {
            column: 1,
            pattern: "50\\%\\_off%".into(),
            case_insensitive: false
        }
    );
    let FilterNode::Not(inner) = &branches[1] else {
        panic!("{filter:?}")
    };
    assert_eq!(
        **inner,
        FilterNode::JsonContains {
            column: 4,
            document: json!({"lang": "en"})
        }
    );

    // An Option<String> column compares with plain strings; `all()` vanishes in `and`.
    let eq = Filter::all() & Doc::SUMMARY.eq("x");
    assert_eq!(
        eq.node(),
        &FilterNode::Compare {
            column: 2,
            op: CompareOp::Eq,
            value: Value::Text("x".into())
        }
    );
    let range = Doc::CREATED_AT.between(Utc::now(), Utc::now());
    assert!(matches!(
        range.node(),
        FilterNode::Between { column: 6, .. }
    ));
}

#[test]
fn constraint_names_map_to_fields() {
    assert_eq!(
        Doc::SCHEMA.field_of_constraint("docs_title_key"),
        Some("title")
    );
    assert_eq!(Doc::SCHEMA.field_of_constraint("docs_pkey"), Some("id"));
    assert_eq!(Doc::SCHEMA.field_of_constraint("other"), None);
}
