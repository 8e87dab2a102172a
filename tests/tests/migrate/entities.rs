//! Versions of the same tables, as an application's structs evolve between
//! migrations. Each struct is one state of the `items` (or `everything`) table.

#![allow(
    dead_code,
    reason = "fields exist for their columns; tests only diff and apply schemas"
)]

use chrono::{DateTime, NaiveDate, Utc};
use reposmith::prelude::*;
use reposmith::{Bit, DbEnum};
use uuid::Uuid;

/// Two states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DbEnum)]
pub(crate) enum Mood {
    Calm,
    Busy,
}

/// One more state: a widening change of the enum's CHECK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DbEnum)]
pub(crate) enum MoodMore {
    Calm,
    Busy,
    Away,
}

/// One state fewer: narrowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DbEnum)]
pub(crate) enum MoodFewer {
    Calm,
}

/// Every column type and index kind reposmith generates.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "everything")]
pub(crate) struct Everything {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(unique)]
    pub(crate) code: String,
    pub(crate) flag: bool,
    pub(crate) small: i16,
    #[repo(index)]
    pub(crate) medium: i32,
    pub(crate) big: Option<i64>,
    pub(crate) ratio: f32,
    pub(crate) score: f64,
    pub(crate) ref_id: Uuid,
    pub(crate) at: DateTime<Utc>,
    pub(crate) day: Option<NaiveDate>,
    #[repo(json, index)]
    pub(crate) meta: serde_json::Value,
    pub(crate) tags: Vec<String>,
    pub(crate) numbers: Option<Vec<i32>>,
    pub(crate) mood: Mood,
    #[repo(default = "0")]
    pub(crate) counter: i32,
    #[repo(full_text)]
    pub(crate) title: String,
    #[repo(full_text(language = "simple"))]
    pub(crate) body: String,
    #[repo(vector(
        dims = 3,
        distance = "cosine",
        index = "hnsw",
        m = 8,
        ef_construction = 32
    ))]
    pub(crate) dense: Vector,
    #[repo(vector(dims = 4, distance = "l2", index = "ivfflat", lists = 2))]
    pub(crate) half: Option<HalfVector>,
    #[repo(vector(dims = 5, distance = "inner_product", index = "hnsw"))]
    pub(crate) sparse: Option<SparseVector>,
    #[repo(vector(dims = 8, distance = "hamming", index = "hnsw"))]
    pub(crate) bits: Option<Bit>,
    #[repo(vector(dims = 3, distance = "l1", index = "none"))]
    pub(crate) plain: Option<Vector>,
}

/// The first state of `items`.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct Item {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(index)]
    pub(crate) title: String,
    pub(crate) price: i32,
    pub(crate) note: Option<String>,
    pub(crate) status: Mood,
    #[repo(index)]
    pub(crate) sku: String,
    #[repo(vector(dims = 3, index = "hnsw"))]
    pub(crate) emb: Option<Vector>,
    pub(crate) legacy: Option<String>,
}

/// `items` after one of everything: rename, widening, NOT NULL with a
/// default, one enum value more, an index turned unique, other HNSW
/// parameters, full text added, a column added and one dropped.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct ItemV2 {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(renamed_from = "title", full_text, index)]
    pub(crate) headline: String,
    pub(crate) price: i64,
    #[repo(default = "''")]
    pub(crate) note: String,
    pub(crate) status: MoodMore,
    #[repo(unique)]
    pub(crate) sku: String,
    #[repo(vector(dims = 3, index = "hnsw", m = 24))]
    pub(crate) emb: Option<Vector>,
    pub(crate) extra: Option<bool>,
}

/// `items` with only the title renamed.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct ItemRenamed {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(renamed_from = "title", index)]
    pub(crate) headline: String,
    pub(crate) price: i32,
    pub(crate) note: Option<String>,
    pub(crate) status: Mood,
    #[repo(index)]
    pub(crate) sku: String,
    #[repo(vector(dims = 3, index = "hnsw"))]
    pub(crate) emb: Option<Vector>,
    pub(crate) legacy: Option<String>,
}

/// `items` with three destructive changes: `price` narrowed, an enum value
/// removed, `legacy` dropped.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct ItemNarrowed {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(index)]
    pub(crate) title: String,
    pub(crate) price: i16,
    pub(crate) note: Option<String>,
    pub(crate) status: MoodFewer,
    #[repo(index)]
    pub(crate) sku: String,
    #[repo(vector(dims = 3, index = "hnsw"))]
    pub(crate) emb: Option<Vector>,
}

/// `items` with a nullable column then a NOT NULL one without a default:
/// the second fails on a table with rows, after the first ran.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct ItemStrict {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(index)]
    pub(crate) title: String,
    pub(crate) price: i32,
    pub(crate) note: Option<String>,
    pub(crate) status: Mood,
    #[repo(index)]
    pub(crate) sku: String,
    #[repo(vector(dims = 3, index = "hnsw"))]
    pub(crate) emb: Option<Vector>,
    pub(crate) legacy: Option<String>,
    pub(crate) first_added: Option<i32>,
    pub(crate) must_have: i32,
}

/// `items` with `sku` unique instead of indexed.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct ItemUniqueSku {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(index)]
    pub(crate) title: String,
    pub(crate) price: i32,
    pub(crate) note: Option<String>,
    pub(crate) status: Mood,
    #[repo(unique)]
    pub(crate) sku: String,
    #[repo(vector(dims = 3, index = "hnsw"))]
    pub(crate) emb: Option<Vector>,
    pub(crate) legacy: Option<String>,
}

/// `ItemV2` with `note` in the full-text document too (the generated column
/// is regenerated) and `emb` compared by l2 (another operator class).
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct ItemV3 {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(full_text, index)]
    pub(crate) headline: String,
    pub(crate) price: i64,
    #[repo(default = "''", full_text(language = "simple"))]
    pub(crate) note: String,
    pub(crate) status: MoodMore,
    #[repo(unique)]
    pub(crate) sku: String,
    #[repo(vector(dims = 3, distance = "l2", index = "hnsw", m = 24))]
    pub(crate) emb: Option<Vector>,
    pub(crate) extra: Option<bool>,
}

/// Columns with defaults, before their types and nullability change.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "defaults")]
pub(crate) struct Defaults {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(default = "'1'")]
    pub(crate) flag: String,
    pub(crate) maybe: Option<String>,
}

/// `flag` text → integer keeping a default (Postgres cannot cast a default
/// itself); `maybe` NOT NULL with a default that existing NULLs take.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "defaults")]
pub(crate) struct DefaultsV2 {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(default = "1")]
    pub(crate) flag: i32,
    #[repo(default = "'none'")]
    pub(crate) maybe: String,
}

/// A table whose only full-text source is about to go.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "texts")]
pub(crate) struct TextDoc {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(full_text)]
    pub(crate) body: String,
}

/// `texts` without its body: the generated column must be dropped first.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "texts")]
pub(crate) struct TextDocGone {
    #[repo(id)]
    pub(crate) id: Uuid,
}

/// Only a `bit` column: built into Postgres, but its HNSW index is pgvector's.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "fingerprints")]
pub(crate) struct Fingerprint {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(vector(dims = 8, distance = "hamming"))]
    pub(crate) bits: Bit,
}

/// `items` whose vector gets other dimensions: another embedding, no cast.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "items")]
pub(crate) struct ItemWiderEmbedding {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(index)]
    pub(crate) title: String,
    pub(crate) price: i32,
    pub(crate) note: Option<String>,
    pub(crate) status: Mood,
    #[repo(index)]
    pub(crate) sku: String,
    #[repo(vector(dims = 4, index = "hnsw"))]
    pub(crate) emb: Option<Vector>,
    pub(crate) legacy: Option<String>,
}

/// A table with rows whose columns are about to be dropped: NOT NULL without
/// a default, NOT NULL with one, unique with one, and a full-text source.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "accounts")]
pub(crate) struct Account {
    #[repo(id)]
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) legacy: String,
    #[repo(default = "0")]
    pub(crate) visits: i32,
    #[repo(unique, default = "''")]
    pub(crate) code: String,
    #[repo(full_text)]
    pub(crate) bio: String,
}

/// `accounts` with only its id and name left (four columns dropped).
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "accounts")]
pub(crate) struct AccountSlim {
    #[repo(id)]
    pub(crate) id: Uuid,
    pub(crate) name: String,
}

/// NOT NULL columns, one with a default and one without, one retyped too.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "tallies")]
pub(crate) struct Tally {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(default = "'new'")]
    pub(crate) state: String,
    #[repo(default = "0")]
    pub(crate) hits: i32,
    pub(crate) label: String,
}

/// `tallies` with every NOT NULL dropped (and `hits` widened): the down file
/// sets them back, after NULLs were written.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "tallies")]
pub(crate) struct TallyLoose {
    #[repo(id)]
    pub(crate) id: Uuid,
    #[repo(default = "'new'")]
    pub(crate) state: Option<String>,
    #[repo(default = "0")]
    pub(crate) hits: Option<i64>,
    pub(crate) label: Option<String>,
}
