//! The indexes an entity schema asks of MongoDB, named and shaped in one
//! place: [`MongoBackend::ensure_indexes`](crate::MongoBackend::ensure_indexes)
//! creates them at run time, and `reposmith-migrate` writes the same ones
//! into MongoDB migration files, so the two can never disagree about a name
//! or a lifetime.
//!
//! Every B-tree [`IndexDef`] keeps its name and uniqueness; the id column is
//! the document's `_id`. A `#[repo(ttl = "..")]` column's lifetime goes on
//! the schema's own single-column index on it (MongoDB refuses two indexes
//! with one key pattern), else on an index of its own named
//! `<collection>_<column>_ttl`.

use std::time::Duration;

use mongodb::IndexModel;
use mongodb::bson::{Bson, Document};
use mongodb::options::IndexOptions;
use reposmith_core::{EntitySchema, IndexDef, IndexMethod};

use crate::codec::key;

/// How one key of an index orders or matches its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IndexKey {
    /// Ascending B-tree order (`1`).
    Ascending,
    /// Part of a text index (`"text"`).
    Text,
}

impl IndexKey {
    /// The value of the key in an index's key document: `1` or `"text"`.
    pub fn bson(self) -> Bson {
        match self {
            IndexKey::Ascending => Bson::Int32(1),
            IndexKey::Text => Bson::String("text".to_owned()),
        }
    }
}

/// One MongoDB index of an entity's collection (not a search index: see
/// [`search_index_definitions`](crate::search_index_definitions)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MongoIndex {
    /// The index name; for a schema index, the [`IndexDef`]'s.
    pub name: String,
    /// Document keys in index order (`_id` for the id column).
    pub keys: Vec<(&'static str, IndexKey)>,
    /// A unique index.
    pub unique: bool,
    /// The TTL lifetime: documents expire this many seconds after the key's time.
    pub expire_after_seconds: Option<u64>,
    /// The `partialFilterExpression`: a unique index of a soft-deleting
    /// entity covers live documents only: `{deleted_at: {$type: "null"}}`
    /// (the repository always writes the key, `null` while live).
    pub partial_filter: Option<Document>,
}

impl MongoIndex {
    /// The ordered key document (`{title: 1, body: 1}`).
    pub fn key_document(&self) -> Document {
        self.keys
            .iter()
            .map(|(k, kind)| (k.to_string(), kind.bson()))
            .collect()
    }

    /// The driver's model of the index, for `createIndexes`.
    pub fn model(&self) -> IndexModel {
        let options = IndexOptions::builder()
            .name(self.name.clone())
            .unique(self.unique.then_some(true))
            .expire_after(self.expire_after_seconds.map(Duration::from_secs))
            .partial_filter_expression(self.partial_filter.clone())
            .build();
        IndexModel::builder()
            .keys(self.key_document())
            .options(options)
            .build()
    }
}

/// The B-tree indexes of `schema` in declaration order (GIN indexes have no
/// MongoDB counterpart serving arbitrary paths and are left out), the TTL
/// column's lifetime on its own index, then the TTL index if that column has
/// none.
pub fn index_specs(schema: &EntitySchema) -> Vec<MongoIndex> {
    let ttl = schema.ttl_column();
    let mut specs: Vec<MongoIndex> = schema
        .indexes
        .iter()
        .filter(|index| index.method == IndexMethod::BTree)
        .map(|index| MongoIndex {
            name: index.name.to_owned(),
            keys: index
                .columns
                .iter()
                .map(|c| (document_key(schema, c), IndexKey::Ascending))
                .collect(),
            unique: index.unique,
            expire_after_seconds: None,
            partial_filter: index.unique.then(|| live_filter(schema)).flatten(),
        })
        .collect();
    if let Some((i, column, seconds)) = ttl {
        match index_on(schema, column.name) {
            Some(own) => {
                let spec = specs.iter_mut().find(|s| s.name == own.name);
                if let Some(spec) = spec {
                    spec.expire_after_seconds = Some(seconds);
                }
            }
            None => specs.push(MongoIndex {
                name: format!("{}_{}_ttl", schema.collection, column.name),
                keys: vec![(key(schema, i), IndexKey::Ascending)],
                unique: false,
                expire_after_seconds: Some(seconds),
                partial_filter: None,
            }),
        }
    }
    specs
}

/// The text index over the `#[repo(full_text)]` fields, named
/// `<collection>_text`, when there are any. Migrations create it; searches
/// on MongoDB do not use it yet.
pub fn text_index(schema: &EntitySchema) -> Option<MongoIndex> {
    let keys: Vec<(&'static str, IndexKey)> = schema
        .full_text_columns()
        .map(|c| (c.name, IndexKey::Text))
        .collect();
    (!keys.is_empty()).then(|| MongoIndex {
        name: format!("{}_text", schema.collection),
        keys,
        unique: false,
        expire_after_seconds: None,
        partial_filter: None,
    })
}

/// The partial filter of a soft-deleting entity's unique indexes: the
/// soft-delete key holds BSON `null` (the repository always writes the key,
/// `null` while the document is live). `$type: "null"` rather than
/// `{deleted_at: null}`: MongoDB's partial indexes accept `$type`, and an
/// equality with `null` would also match a missing key; `$exists: false`
/// is refused by MongoDB and silently ignored by SecantusDB. `None` for an
/// entity without `#[repo(soft_delete)]`.
pub(crate) fn live_filter(schema: &EntitySchema) -> Option<Document> {
    let (i, _) = schema.soft_delete_column()?;
    Some(mongodb::bson::doc! { key(schema, i): { "$type": "null" } })
}

/// The document key of the column named `column`.
fn document_key(schema: &EntitySchema, column: &'static str) -> &'static str {
    if column == schema.id_column().name {
        "_id"
    } else {
        column
    }
}

/// The schema's single-column B-tree index on `column`, if it declares one.
fn index_on<'s>(schema: &'s EntitySchema, column: &str) -> Option<&'s IndexDef> {
    schema
        .indexes
        .iter()
        .find(|i| i.method == IndexMethod::BTree && i.columns == [column])
}

#[cfg(test)]
mod tests {
    use reposmith_core::{ColumnDef, ColumnRole, ColumnType, IdStrategy};

    use super::*;

    static COLUMNS: [ColumnDef; 3] = [
        ColumnDef::new("id", "id", ColumnType::Uuid, false).with_role(ColumnRole::Id),
        ColumnDef::new("title", "title", ColumnType::Text, false).with_full_text("english"),
        ColumnDef::new("seen", "seen", ColumnType::TimestampTz, false).with_ttl(60),
    ];
    static OWN: [IndexDef; 2] = [
        IndexDef::new("t_title_key", &["title"], true, IndexMethod::BTree),
        IndexDef::new("t_seen_idx", &["seen"], false, IndexMethod::BTree),
    ];

    #[test]
    fn the_lifetime_goes_on_the_columns_own_index_or_its_own() {
        let own = EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::ClientUuid, &OWN);
        let specs = index_specs(&own);
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].name, "t_seen_idx");
        assert_eq!(specs[1].expire_after_seconds, Some(60));
        let bare = EntitySchema::new("T", "t", &COLUMNS, 0, IdStrategy::ClientUuid, &OWN[..1]);
        let specs = index_specs(&bare);
        assert_eq!(specs[1].name, "t_seen_ttl");
        assert_eq!(specs[1].keys, [("seen", IndexKey::Ascending)]);
        let text = text_index(&own).expect("a full-text column");
        assert_eq!(text.name, "t_text");
        assert_eq!(text.key_document().get_str("title").ok(), Some("text"));
    }
}
