//! Foreign keys in migrations: generate → apply → check clean for every
//! `on_delete` action; a key added to an existing table goes `NOT VALID`
//! with its validation in a file of its own; a changed action is dropped
//! and re-added; `check` reports missing, different and unvalidated keys;
//! revert removes them all.

use reposmith::Repository;
use reposmith_migrate::{Options, Schemas};
use uuid::Uuid;

use super::db::{MigrateDb, read};

#[derive(Debug, Clone, Repository)]
#[repo(table = "mr_parents")]
struct Parent {
    #[repo(id)]
    id: Uuid,
}

#[derive(Debug, Clone, Repository)]
#[repo(table = "mr_children")]
struct Child {
    #[repo(id)]
    id: Uuid,
    #[repo(references(Parent, on_delete = "cascade"))]
    parent_id: Uuid,
}

#[derive(Debug, Clone, Repository)]
#[repo(table = "mr_notes")]
struct Note {
    #[repo(id)]
    id: Uuid,
    #[repo(references(Parent))]
    parent_id: Uuid,
}

#[derive(Debug, Clone, Repository)]
#[repo(table = "mr_tags")]
struct Tag {
    #[repo(id)]
    id: Uuid,
    #[repo(references(Parent, on_delete = "set_null"))]
    parent_id: Option<Uuid>,
}

#[derive(Debug, Clone, Repository)]
#[repo(table = "mr_nodes")]
struct Node {
    #[repo(id)]
    id: i64,
    #[repo(references(Self, on_delete = "cascade"))]
    parent_id: Option<i64>,
}

/// v2: the child restricts instead of cascading, the note cascades, and a
/// plain column of an existing table becomes a reference.
mod v2 {
    use reposmith::Repository;
    use uuid::Uuid;

    use super::Parent;

    #[derive(Debug, Clone, Repository)]
    #[repo(table = "mr_children")]
    pub(super) struct Child {
        #[repo(id)]
        id: Uuid,
        #[repo(references(Parent, on_delete = "restrict"))]
        parent_id: Uuid,
    }

    #[derive(Debug, Clone, Repository)]
    #[repo(table = "mr_notes")]
    pub(super) struct Note {
        #[repo(id)]
        id: Uuid,
        #[repo(references(Parent, on_delete = "cascade"))]
        parent_id: Uuid,
    }

    #[derive(Debug, Clone, Repository)]
    #[repo(table = "mr_docs")]
    pub(super) struct Doc {
        #[repo(id)]
        id: Uuid,
        #[repo(references(Parent, on_delete = "set_null"))]
        owner: Option<Uuid>,
    }
}

/// v1 of `mr_docs`: `owner` is a plain column.
#[derive(Debug, Clone, Repository)]
#[repo(table = "mr_docs")]
struct Doc {
    #[repo(id)]
    id: Uuid,
    owner: Option<Uuid>,
}

#[tokio::test]
async fn foreign_keys_generate_apply_and_check_clean_for_every_action() {
    let db = MigrateDb::new().await;
    // Children before their parent: the keys come after every table.
    let v1 = Schemas::new()
        .add::<Child>()
        .add::<Note>()
        .add::<Tag>()
        .add::<Node>()
        .add::<Doc>()
        .add::<Parent>();
    let files = db.generate(&v1, "relations", Options::default());
    assert_eq!(files.len(), 2, "one migration: {files:?}");
    let up = read(&files[0]);
    for expected in [
        "ALTER TABLE \"mr_children\" ADD CONSTRAINT \"mr_children_parent_id_fkey\" FOREIGN KEY (\"parent_id\") REFERENCES \"mr_parents\" (\"id\") ON DELETE CASCADE;",
        "ALTER TABLE \"mr_notes\" ADD CONSTRAINT \"mr_notes_parent_id_fkey\" FOREIGN KEY (\"parent_id\") REFERENCES \"mr_parents\" (\"id\") ON DELETE RESTRICT;",
        "ALTER TABLE \"mr_tags\" ADD CONSTRAINT \"mr_tags_parent_id_fkey\" FOREIGN KEY (\"parent_id\") REFERENCES \"mr_parents\" (\"id\") ON DELETE SET NULL;",
        "ALTER TABLE \"mr_nodes\" ADD CONSTRAINT \"mr_nodes_parent_id_fkey\" FOREIGN KEY (\"parent_id\") REFERENCES \"mr_nodes\" (\"id\") ON DELETE CASCADE;",
        "CREATE INDEX IF NOT EXISTS \"mr_children_parent_id_idx\" ON \"mr_children\" USING btree (\"parent_id\")",
    ] {
        assert!(up.contains(expected), "missing {expected} in\n{up}");
    }
    assert!(!up.contains("NOT VALID"), "new tables are empty: {up}");
    assert_eq!(db.apply().await, vec![1]);
    assert_eq!(db.drift(&v1).await, Vec::<String>::new());

    // A row of each kind, so v2's validation has rows to scan.
    let parent = Uuid::now_v7();
    db.exec(&format!("INSERT INTO mr_parents (id) VALUES ('{parent}')"))
        .await;
    db.exec(&format!(
        "INSERT INTO mr_children (id, parent_id) VALUES ('{}', '{parent}')",
        Uuid::now_v7()
    ))
    .await;
    db.exec(&format!(
        "INSERT INTO mr_docs (id, owner) VALUES ('{}', '{parent}')",
        Uuid::now_v7()
    ))
    .await;

    let v2 = Schemas::new()
        .add::<v2::Child>()
        .add::<v2::Note>()
        .add::<Tag>()
        .add::<Node>()
        .add::<v2::Doc>()
        .add::<Parent>();
    let files = db.generate(&v2, "actions", Options::default());
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "0002_actions.up.sql",
            "0002_actions.down.sql",
            "0003_actions_validate_mr_children_parent_id_fkey.up.sql",
            "0003_actions_validate_mr_children_parent_id_fkey.down.sql",
            "0004_actions_validate_mr_notes_parent_id_fkey.up.sql",
            "0004_actions_validate_mr_notes_parent_id_fkey.down.sql",
            "0005_actions_validate_mr_docs_owner_fkey.up.sql",
            "0005_actions_validate_mr_docs_owner_fkey.down.sql",
        ]
    );
    let up = read(&files[0]);
    for expected in [
        "ALTER TABLE \"mr_children\" DROP CONSTRAINT IF EXISTS \"mr_children_parent_id_fkey\";",
        "REFERENCES \"mr_parents\" (\"id\") ON DELETE RESTRICT NOT VALID;",
        "ALTER TABLE \"mr_docs\" ADD CONSTRAINT \"mr_docs_owner_fkey\" FOREIGN KEY (\"owner\") REFERENCES \"mr_parents\" (\"id\") ON DELETE SET NULL NOT VALID;",
        "CREATE INDEX IF NOT EXISTS \"mr_docs_owner_idx\"",
    ] {
        assert!(up.contains(expected), "missing {expected} in\n{up}");
    }
    let validate = read(&files[6]);
    assert!(
        validate.contains("ALTER TABLE \"mr_docs\" VALIDATE CONSTRAINT \"mr_docs_owner_fkey\";"),
        "{validate}"
    );
    assert_eq!(db.apply().await, vec![2, 3, 4, 5]);
    assert_eq!(db.drift(&v2).await, Vec::<String>::new());

    // `check` sees a key gone, one with another action, one not validated.
    db.exec("ALTER TABLE mr_tags DROP CONSTRAINT mr_tags_parent_id_fkey")
        .await;
    db.exec("ALTER TABLE mr_notes DROP CONSTRAINT mr_notes_parent_id_fkey")
        .await;
    db.exec("ALTER TABLE mr_notes ADD CONSTRAINT mr_notes_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES mr_parents (id) ON DELETE SET NULL").await;
    db.exec("ALTER TABLE mr_docs DROP CONSTRAINT mr_docs_owner_fkey")
        .await;
    db.exec("ALTER TABLE mr_docs ADD CONSTRAINT mr_docs_owner_fkey FOREIGN KEY (owner) REFERENCES mr_parents (id) ON DELETE SET NULL NOT VALID").await;
    let drift = db.drift(&v2).await;
    assert_eq!(drift.len(), 3, "{drift:#?}");
    assert!(
        drift[0].contains("foreign key mr_notes_parent_id_fkey is parent_id"),
        "{drift:#?}"
    );
    assert!(
        drift[0]
            .contains("ON DELETE SET NULL, expected parent_id -> mr_parents(id) ON DELETE CASCADE"),
        "{drift:#?}"
    );
    assert!(
        drift[1].contains("table mr_tags: missing foreign key mr_tags_parent_id_fkey"),
        "{drift:#?}"
    );
    assert!(
        drift[2].contains("table mr_docs: foreign key mr_docs_owner_fkey is NOT VALID"),
        "{drift:#?}"
    );

    // Reverting everything leaves nothing behind.
    db.exec("ALTER TABLE mr_tags ADD CONSTRAINT mr_tags_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES mr_parents (id) ON DELETE SET NULL").await;
    db.exec("DELETE FROM mr_docs").await;
    db.exec("DELETE FROM mr_children").await;
    let reverted = reposmith_migrate::revert(&db.dir, &db.db, Some(0))
        .await
        .unwrap();
    assert_eq!(reverted, vec![5, 4, 3, 2, 1]);
    assert!(db.catalog().await.is_empty());
    db.cleanup().await;
}
