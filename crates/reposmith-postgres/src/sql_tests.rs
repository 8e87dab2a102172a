//! SQL text checks without a server: the fixed statements' shapes, keyset
//! predicates, and hostile values that must never reach the SQL text.

use chrono::{DateTime, Utc};
use reposmith_core::entity::codegen;
use reposmith_core::{
    Column, ColumnDef, ColumnRole, ColumnType, Cursor, Entity, EntitySchema, FieldType, Filter,
    FindQuery, IdStrategy, JsonColumn, Result, Value,
};
use uuid::Uuid;

use crate::query::find_sql;
use crate::statements::statements;

struct Note {
    id: Uuid,
    title: String,
    rank: Option<i32>,
    meta: serde_json::Value,
    version: i64,
    updated_at: DateTime<Utc>,
}

static COLUMNS: [ColumnDef; 6] = [
    ColumnDef::new("id", "id", ColumnType::Uuid, false).with_role(ColumnRole::Id),
    ColumnDef::new("title", "title", ColumnType::Text, false).with_unique(),
    ColumnDef::new("rank", "rank", ColumnType::Int, true),
    ColumnDef::new("meta", "meta", ColumnType::Json, false),
    ColumnDef::new("version", "version", ColumnType::BigInt, false).with_role(ColumnRole::Version),
    ColumnDef::new("updated_at", "updated_at", ColumnType::TimestampTz, false)
        .with_role(ColumnRole::UpdatedAt),
];
static SCHEMA: EntitySchema =
    EntitySchema::new("Note", "notes", &COLUMNS, 0, IdStrategy::ClientUuid, &[]);

impl Note {
    const TITLE: Column<Note, String> = Column::at(1);
    const RANK: Column<Note, Option<i32>> = Column::at(2);
    const META: JsonColumn<Note> = JsonColumn::at(3);
}

impl Entity for Note {
    type Id = Uuid;
    const SCHEMA: &'static EntitySchema = &SCHEMA;

    fn id(&self) -> &Uuid {
        &self.id
    }

    fn to_values(&self) -> Result<Vec<Value>> {
        Ok(vec![
            self.id.to_value(),
            self.title.to_value(),
            self.rank.to_value(),
            self.meta.to_value(),
            self.version.to_value(),
            self.updated_at.to_value(),
        ])
    }

    fn from_values(values: Vec<Value>) -> Result<Self> {
        let mut values = values.into_iter();
        Ok(Note {
            id: codegen::decode::<Self, _>(&mut values, "id")?,
            title: codegen::decode::<Self, _>(&mut values, "title")?,
            rank: codegen::decode::<Self, _>(&mut values, "rank")?,
            meta: codegen::decode::<Self, _>(&mut values, "meta")?,
            version: codegen::decode::<Self, _>(&mut values, "version")?,
            updated_at: codegen::decode::<Self, _>(&mut values, "updated_at")?,
        })
    }
}

#[test]
fn fixed_statements_list_columns_and_check_the_version() {
    let s = statements(
        std::any::TypeId::of::<Note>(),
        Note::SCHEMA,
        &reposmith_core::RowScope::of(Note::SCHEMA),
    );
    let cols = r#""id", "title", "rank", "meta", "version", "updated_at""#;
    assert_eq!(
        &*s.get,
        format!(r#"SELECT {cols} FROM "notes" WHERE "id" = $1"#)
    );
    assert_eq!(
        &*s.update,
        format!(
            r#"UPDATE "notes" SET "title" = $1, "rank" = $2, "meta" = $3, "updated_at" = $4, "version" = "version" + (1) WHERE "id" = $5 AND "version" = $6 RETURNING {cols}"#
        )
    );
    assert_eq!(s.update_columns, [1, 2, 3, 5]);
    assert!(
        s.upsert
            .contains(r#"ON CONFLICT ("id") DO UPDATE SET "title" = "excluded"."title""#),
        "{}",
        s.upsert
    );
    assert!(
        s.upsert.contains(r#""version" = "notes"."version" + (1)"#),
        "{}",
        s.upsert
    );
    assert!(s.insert.starts_with(&format!(
        r#"INSERT INTO "notes" ({cols}) VALUES ($1, $2, $3, $4, $5, $6)"#
    )));
}

#[test]
fn hostile_values_never_reach_the_sql_text() {
    let long = "x'; DROP TABLE notes; --".repeat(500);
    let hostile = [
        "O'Brien",
        "\"; DROP TABLE notes; --",
        "a\\' OR 1=1 --",
        "%_\\",
        long.as_str(),
    ];
    for text in hostile {
        let filters = [
            Note::TITLE.eq(text),
            Note::TITLE.ne(text) | Note::TITLE.gt(text),
            Note::TITLE.is_in([text, "b"]),
            Note::TITLE.not_in([text]),
            Note::TITLE.between(text, text),
            Note::TITLE.like(text),
            Note::TITLE.ilike(text),
            Note::TITLE.starts_with(text),
            Note::META.contains(serde_json::json!({ text: text })),
            Note::META.path(text).path(text).has_key(text),
            Note::META.has_key(text),
            !Note::META.path(text).eq(text),
        ];
        for filter in filters {
            let sql = match find_sql(&FindQuery::new(filter)) {
                Ok(sql) => sql,
                // `%_\` ends in an escape: refused as a LIKE pattern, sending nothing.
                Err(reposmith_core::Error::InvalidInput { .. })
                    if reposmith_core::filter::like_pattern_error(text).is_some() =>
                {
                    continue;
                }
                Err(e) => panic!("{text:?}: {e}"),
            };
            assert!(!sql.contains(text), "{sql}");
            assert!(!sql.contains("DROP") && !sql.contains("O'B"), "{sql}");
        }
    }
}

#[test]
fn nul_in_any_operand_is_refused_naming_the_field() {
    let filters = [
        Note::TITLE.eq("a\0"),
        Note::TITLE.is_in(["ok", "\0"]),
        Note::TITLE.like("\0%"),
        Note::META.contains(serde_json::json!({"k": "\u{0000}"})),
        Note::META.path("a\0").has_key("k"),
    ];
    for filter in filters {
        let err = find_sql(&FindQuery::new(filter)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Note.title") || text.contains("Note.meta"),
            "{text}"
        );
    }
}

#[test]
fn keyset_uses_a_row_comparison_only_when_it_is_correct() {
    let cursor = |values: &[Value]| Some(Cursor::encode(values));
    let id = Value::Uuid(Uuid::nil());
    let mut query = FindQuery::new(Filter::<Note>::all());
    query.order = vec![Note::TITLE.asc()];
    query.after = cursor(&[Value::Text("m".into()), id.clone()]);
    let sql = find_sql(&query).unwrap();
    assert!(sql.contains(r#"("title", "id") > ($1, $2)"#), "{sql}");
    assert!(
        sql.ends_with(r#"ORDER BY "title" ASC NULLS LAST, "id" ASC NULLS LAST"#),
        "{sql}"
    );

    query.order = vec![Note::RANK.desc(), Note::TITLE.asc()];
    query.after = cursor(&[Value::Null, Value::Text("m".into()), id]);
    let sql = find_sql(&query).unwrap();
    assert!(
        sql.contains(r#""rank" IS NOT NULL OR ("rank" IS NULL AND "title" > $1)"#),
        "{sql}"
    );
    assert!(sql.contains(r#""rank" DESC NULLS FIRST"#), "{sql}");
}

#[test]
fn tampered_cursors_are_invalid_input() {
    let mut query = FindQuery::new(Filter::<Note>::all());
    query.order = vec![Note::TITLE.asc()];
    for text in [
        "[1]",
        "[null, \"00000000-0000-0000-0000-000000000000\"]",
        "x",
    ] {
        query.after = Some(Cursor::parse(text));
        let err = find_sql(&query).unwrap_err();
        assert!(
            matches!(err, reposmith_core::Error::InvalidInput { .. }),
            "{text}: {err:?}"
        );
    }
}

#[test]
fn like_and_ilike_bind_the_pattern_with_a_backslash_escape() {
    let like = find_sql(&FindQuery::new(Note::TITLE.like("a%"))).unwrap();
    assert!(like.contains(r#""title" LIKE $1 ESCAPE E'\\'"#), "{like}");
    let ilike = find_sql(&FindQuery::new(Note::TITLE.ilike("a%"))).unwrap();
    assert!(
        ilike.contains(r#""title" ILIKE $1 ESCAPE E'\\'"#),
        "{ilike}"
    );
}

struct SoftMarker;

static SOFT_COLUMNS: [ColumnDef; 4] = [
    ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
    ColumnDef::new("slug", "slug", ColumnType::Text, false).with_unique(),
    ColumnDef::new("version", "version", ColumnType::BigInt, false).with_role(ColumnRole::Version),
    ColumnDef::new("gone", "gone", ColumnType::TimestampTz, true).with_role(ColumnRole::SoftDelete),
];
static SOFT_INDEXES: [reposmith_core::IndexDef; 1] = [reposmith_core::IndexDef::new(
    "soft_slug_key",
    &["slug"],
    true,
    reposmith_core::IndexMethod::BTree,
)];
static SOFT: EntitySchema = EntitySchema::new(
    "Soft",
    "soft",
    &SOFT_COLUMNS,
    0,
    IdStrategy::Identity,
    &SOFT_INDEXES,
);

#[test]
fn soft_deleting_statements_carry_the_scope_per_shape() {
    let id = std::any::TypeId::of::<SoftMarker>();
    let live = reposmith_core::RowScope::of(&SOFT);
    let s = statements(id, &SOFT, &live);
    let cols = r#""id", "slug", "version", "gone""#;
    assert_eq!(
        &*s.get,
        format!(r#"SELECT {cols} FROM "soft" WHERE "id" = $1 AND "gone" IS NULL"#)
    );
    assert!(
        s.update
            .contains(r#"AND "version" = $3 AND "gone" IS NULL RETURNING"#),
        "{}",
        s.update
    );
    assert!(
        !s.update.contains(r#"SET "gone""#),
        "update never writes it: {}",
        s.update
    );
    assert!(
        s.upsert.contains(r#""gone" = "excluded"."gone""#),
        "upsert revives: {}",
        s.upsert
    );
    assert_eq!(&*s.purge, r#"DELETE FROM "soft" WHERE "id" = $1"#);
    let soft = s.soft.as_ref().expect("soft statements");
    assert_eq!(
        &*soft.delete,
        r#"UPDATE "soft" SET "gone" = $1, "version" = "version" + (1) WHERE "id" = $2 AND "gone" IS NULL"#
    );
    assert_eq!(
        &*soft.restore,
        r#"UPDATE "soft" SET "gone" = NULL, "version" = "version" + (1) WHERE "id" = $1 AND "gone" IS NOT NULL"#
    );
    // The with_deleted shape has statements of its own, without the scope.
    let any = statements(id, &SOFT, &live.clone().with_deleted());
    assert_eq!(
        &*any.get,
        format!(r#"SELECT {cols} FROM "soft" WHERE "id" = $1"#)
    );
    assert!(
        std::sync::Arc::ptr_eq(&s, &statements(id, &SOFT, &live)),
        "cached per shape"
    );
    let ddl = crate::ddl::index_sql(&SOFT, &SOFT_INDEXES[0]);
    assert!(ddl.ends_with(r#"("slug") WHERE "gone" IS NULL"#), "{ddl}");
    let upsert_on = crate::statements::upsert_on_sql(&SOFT, &[1, 2, 3], &[1], 1);
    assert!(
        upsert_on.contains(r#"ON CONFLICT ("slug") WHERE "gone" IS NULL DO UPDATE"#),
        "{upsert_on}"
    );
}
