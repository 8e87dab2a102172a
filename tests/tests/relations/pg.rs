//! Relations on PostgreSQL: foreign keys from the DDL, their typed errors,
//! the three on-delete actions, and the loaders on a pool and in a unit.

use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{Error, Filter, PgBackend, Repository, Store};
use uuid::Uuid;

use super::entities::{RelChunk, RelDoc, RelNode, RelNote, RelTag, schemas};
use super::loading;

/// The test's PostgreSQL backend, with the relation tables created
/// children first (the DDL orders foreign keys).
async fn tables(store: &Store) -> PgBackend {
    let pg = store.postgres().unwrap().clone();
    pg.create_tables_for(&schemas()).await.unwrap();
    pg
}

/// `SELECT <sql>` as text, `$1` bound to the test database's schema.
async fn text(pg: &PgBackend, sql: &str) -> Vec<String> {
    sqlx::query_scalar::<_, String>(AssertSqlSafe(sql.to_owned()))
        .bind("public")
        .fetch_all(pg.pool())
        .await
        .unwrap()
}

/// The DDL creates each foreign key with its action and an index on each
/// referencing column, and runs again without error.
#[reposmith::test(backends(postgres))]
async fn ddl_creates_foreign_keys_and_their_indexes_idempotently(store: Store) {
    let pg = tables(&store).await;
    pg.create_tables_for(&schemas()).await.unwrap();
    let keys = text(
        &pg,
        "SELECT c.conname || ': ' || pg_get_constraintdef(c.oid) FROM pg_constraint c \
         JOIN pg_namespace n ON n.oid = c.connamespace \
         WHERE n.nspname = $1 AND c.contype = 'f' ORDER BY 1",
    )
    .await;
    assert_eq!(
        keys,
        [
            "rel_chunks_doc_id_fkey: FOREIGN KEY (doc_id) REFERENCES rel_docs(id) ON DELETE CASCADE",
            "rel_nodes_parent_id_fkey: FOREIGN KEY (parent_id) REFERENCES rel_nodes(id) ON DELETE CASCADE",
            "rel_notes_doc_id_fkey: FOREIGN KEY (doc_id) REFERENCES rel_docs(id) ON DELETE RESTRICT",
            "rel_tags_doc_id_fkey: FOREIGN KEY (doc_id) REFERENCES rel_docs(id) ON DELETE SET NULL",
        ]
    );
    let indexes = text(&pg, "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 AND indexname LIKE '%_idx' ORDER BY 1")
    .await;
    assert_eq!(
        indexes,
        [
            "rel_chunks_doc_id_idx",
            "rel_nodes_parent_id_idx",
            "rel_notes_doc_id_idx",
            "rel_tags_doc_id_idx"
        ]
    );
}

/// A child naming a missing parent is a `ForeignKey` error naming the
/// relation child → parent; nothing is written.
#[reposmith::test(backends(postgres))]
async fn a_missing_parent_is_a_foreign_key_error_naming_the_relation(store: Store) {
    let pg = tables(&store).await;
    let chunks = pg.repo::<RelChunk>();
    let orphan = RelChunk {
        id: Uuid::now_v7(),
        doc_id: Uuid::now_v7(),
        seq: 0,
    };
    let err = chunks.insert(&orphan).await.unwrap_err();
    match &err {
        Error::ForeignKey {
            entity,
            relation,
            constraint,
            still_referenced,
        } => assert_eq!(
            (
                *entity,
                relation.as_str(),
                constraint.as_str(),
                *still_referenced
            ),
            (
                "RelChunk",
                "RelChunk.doc_id -> RelDoc",
                "rel_chunks_doc_id_fkey",
                false
            )
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("RelChunk.doc_id -> RelDoc"),
        "{err}"
    );
    assert_eq!(chunks.count(Filter::all()).await.unwrap(), 0);
    // The same through a unit of work, and on a self reference.
    let unit = pg.begin().await.unwrap();
    let node = RelNode {
        id: 0,
        parent_id: Some(424_242),
        name: "lost".into(),
    };
    let err = unit.repo::<RelNode>().insert(&node).await.unwrap_err();
    assert!(
        matches!(&err, Error::ForeignKey { relation, still_referenced: false, .. }
            if relation == "RelNode.parent_id -> RelNode"),
        "{err:?}"
    );
    unit.rollback().await.unwrap();
}

/// `restrict` (the default) refuses deleting a referenced parent with a
/// `ForeignKey` error naming the child's table and column; `cascade`
/// deletes the children; `set_null` keeps them with a NULL reference.
#[reposmith::test(backends(postgres))]
async fn restrict_cascade_and_set_null_behave(store: Store) {
    let pg = tables(&store).await;
    let (docs, chunks) = (pg.repo::<RelDoc>(), pg.repo::<RelChunk>());
    let (notes, tags) = (pg.repo::<RelNote>(), pg.repo::<RelTag>());
    let kept = docs.insert(&RelDoc::new("kept")).await.unwrap();
    let note = RelNote {
        id: Uuid::now_v7(),
        doc_id: kept.id,
    };
    notes.insert(&note).await.unwrap();
    let err = docs.delete(&kept.id).await.unwrap_err();
    match &err {
        Error::ForeignKey {
            entity,
            relation,
            still_referenced,
            ..
        } => assert_eq!(
            (*entity, relation.as_str(), *still_referenced),
            ("RelDoc", "rel_notes.doc_id -> RelDoc", true)
        ),
        other => panic!("{other:?}"),
    }
    assert!(docs.get(&kept.id).await.unwrap().is_some());

    let gone = docs.insert(&RelDoc::new("gone")).await.unwrap();
    chunks
        .insert_many(&[RelChunk::of(&gone, 0), RelChunk::of(&gone, 1)])
        .await
        .unwrap();
    chunks.insert(&RelChunk::of(&kept, 0)).await.unwrap();
    let tag = RelTag {
        id: Uuid::now_v7(),
        doc_id: Some(gone.id),
        label: "t".into(),
    };
    tags.insert(&tag).await.unwrap();
    assert!(docs.delete(&gone.id).await.unwrap());
    assert_eq!(chunks.count(RelChunk::DOC_ID.eq(gone.id)).await.unwrap(), 0);
    assert_eq!(
        chunks.count(Filter::all()).await.unwrap(),
        1,
        "other chunks stay"
    );
    let tag = tags
        .get(&tag.id)
        .await
        .unwrap()
        .expect("the tag outlives its doc");
    assert_eq!(tag.doc_id, None);

    // A tree deleted at its root goes entirely (cascade through itself).
    let nodes = pg.repo::<RelNode>();
    let root = nodes
        .insert(&RelNode {
            id: 0,
            parent_id: None,
            name: "r".into(),
        })
        .await
        .unwrap();
    let mid = nodes
        .insert(&RelNode {
            id: 0,
            parent_id: Some(root.id),
            name: "m".into(),
        })
        .await
        .unwrap();
    nodes
        .insert(&RelNode {
            id: 0,
            parent_id: Some(mid.id),
            name: "l".into(),
        })
        .await
        .unwrap();
    assert!(nodes.delete(&root.id).await.unwrap());
    assert_eq!(nodes.count(Filter::all()).await.unwrap(), 0);
}

#[reposmith::test(backends(postgres))]
async fn loading_500_parents_is_one_query_per_relation_on_the_pool(store: Store) {
    let pg = tables(&store).await;
    loading::one_query_per_relation(&pg.repo::<RelDoc>(), &pg.repo::<RelChunk>()).await;
}

#[reposmith::test(backends(postgres))]
async fn loading_500_parents_is_one_query_per_relation_in_a_unit(store: Store) {
    let pg = tables(&store).await;
    let unit = pg.begin().await.unwrap();
    loading::one_query_per_relation(&unit.repo::<RelDoc>(), &unit.repo::<RelChunk>()).await;
    unit.rollback().await.unwrap();
}

#[reposmith::test(backends(postgres))]
async fn loading_keeps_order_filters_and_duplicates(store: Store) {
    let pg = tables(&store).await;
    loading::order_filter_duplicates_and_empty_pages(&pg.repo::<RelDoc>(), &pg.repo::<RelChunk>())
        .await;
}

#[reposmith::test(backends(postgres))]
async fn loading_a_self_referencing_tree(store: Store) {
    let pg = tables(&store).await;
    loading::tree(&pg.repo::<RelNode>()).await;
}
