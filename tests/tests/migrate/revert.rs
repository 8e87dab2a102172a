//! Reverting destructive and loosening migrations on tables with rows: a
//! dropped column comes back (empty and nullable, or filled with its
//! default), a dropped NOT NULL comes back after NULLs were written when
//! the column has a default, and a down file that fails is named in the
//! error.

use reposmith::postgres::sqlx;
use reposmith_migrate::{Error, Options, Schemas};

use super::allow_destructive;
use super::db::{MigrateDb, read};
use super::entities::*;

/// `(is_nullable, column_default)` of a column of the test's schema.
async fn column(db: &MigrateDb, table: &str, name: &str) -> (String, Option<String>) {
    sqlx::query_as(
        "SELECT is_nullable::text, column_default::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2",
    )
    .bind(table)
    .bind(name)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

async fn rows(db: &MigrateDb, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

const ACCOUNTS: &str = "INSERT INTO accounts (id, name, legacy, visits, code, bio) VALUES \
    ('0191b0a2-0000-7000-8000-000000000001', 'ann', 'old a', 3, 'a', 'likes tea'), \
    ('0191b0a2-0000-7000-8000-000000000002', 'bob', 'old b', 5, 'b', 'likes coffee')";

/// The revert of a generated `--allow-destructive` column drop succeeds on a
/// table with rows: a NOT NULL column without a default comes back empty
/// and nullable, as its comment says; one with a default comes back NOT
/// NULL, filled with it; a unique one keeps its default for new rows only
/// (one value in every row would break the index). `check` names what
/// differs, and following the comment's advice clears it.
#[tokio::test]
async fn a_dropped_column_comes_back_on_revert_of_a_table_with_rows() {
    let db = MigrateDb::new().await;
    let full = Schemas::new().add::<Account>();
    db.generate(&full, "accounts", Options::default());
    db.apply().await;
    db.exec(ACCOUNTS).await;
    let slim = Schemas::new().add::<AccountSlim>();
    let files = db.generate(&slim, "slim", allow_destructive());
    let (up, down) = (read(&files[0]), read(&files[1]));
    let empty = "the column comes back empty (NULL in every row) and nullable; \
                 its old values are not restored";
    assert!(up.contains(&format!("-- revert: {empty}")), "{up}");
    assert!(down.contains(&format!("-- {empty}")), "{down}");
    assert!(
        down.contains("ALTER TABLE \"accounts\" ADD COLUMN \"legacy\" text;"),
        "{down}"
    );
    assert!(
        down.contains(
            "-- the column comes back filled with its default 0 in every row, NOT NULL as before; \
             its old values are not restored"
        ),
        "{down}"
    );
    assert_eq!(db.apply().await, vec![2]);
    assert!(db.drift(&slim).await.is_empty());

    let reverted = reposmith_migrate::revert(&db.dir, &db.db, None).await;
    assert_eq!(reverted.unwrap(), vec![2]);
    // The rows are intact.
    assert_eq!(
        rows(
            &db,
            "SELECT id::text || ' ' || name FROM accounts ORDER BY name"
        )
        .await,
        [
            "0191b0a2-0000-7000-8000-000000000001 ann",
            "0191b0a2-0000-7000-8000-000000000002 bob"
        ]
    );
    // Back and nullable, NULL in every row.
    assert_eq!(
        column(&db, "accounts", "legacy").await,
        ("YES".into(), None)
    );
    assert_eq!(column(&db, "accounts", "bio").await, ("YES".into(), None));
    let nulls =
        "SELECT count(*) FROM accounts WHERE legacy IS NULL AND bio IS NULL AND code IS NULL";
    assert_eq!(db.scalar(nulls).await, 2);
    // Its default fills every row: NOT NULL as before.
    assert_eq!(
        column(&db, "accounts", "visits").await,
        ("NO".into(), Some("0".into()))
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM accounts WHERE visits = 0")
            .await,
        2
    );
    // Unique: the default is back for new rows, existing ones are NULL.
    assert_eq!(
        column(&db, "accounts", "code").await,
        ("YES".into(), Some("''::text".into()))
    );
    let mut drift = db.drift(&full).await;
    drift.sort();
    assert_eq!(
        drift,
        [
            "table accounts: column bio has nullability NULL, the entity wants NOT NULL",
            "table accounts: column code has nullability NULL, the entity wants NOT NULL",
            "table accounts: column legacy has nullability NULL, the entity wants NOT NULL",
        ]
    );
    // What the comment says to do restores the entity's schema exactly.
    db.exec(
        "UPDATE accounts SET legacy = '', code = id::text, bio = ''; \
         ALTER TABLE accounts ALTER COLUMN legacy SET NOT NULL; \
         ALTER TABLE accounts ALTER COLUMN code SET NOT NULL; \
         ALTER TABLE accounts ALTER COLUMN bio SET NOT NULL",
    )
    .await;
    assert_eq!(db.drift(&full).await, Vec::<String>::new());
    // And forward again.
    assert_eq!(db.apply().await, vec![2]);
    assert_eq!(db.drift(&slim).await, Vec::<String>::new());
    db.cleanup().await;
}

/// A migration that drops NOT NULL reverts after NULLs were written when
/// the column has a default (here one retyped in the same migration too):
/// the NULLs take the default, then NOT NULL is set again.
#[tokio::test]
async fn a_dropped_not_null_with_a_default_reverts_after_nulls_were_written() {
    let db = MigrateDb::new().await;
    let strict = Schemas::new().add::<Tally>();
    db.generate(&strict, "tallies", Options::default());
    db.apply().await;
    let loose = Schemas::new().add::<TallyLoose>();
    let files = db.generate(&loose, "loose", Options::default());
    let down = read(&files[1]);
    assert!(
        down.contains("UPDATE \"tallies\" SET \"state\" = DEFAULT WHERE \"state\" IS NULL"),
        "{down}"
    );
    assert!(
        down.contains("-- fails if NULLs were written since the migration"),
        "{down}"
    );
    db.apply().await;
    db.exec(
        "INSERT INTO tallies (id, state, hits, label) VALUES \
         ('0191b0a2-0000-7000-8000-000000000001', NULL, NULL, 'a'), \
         ('0191b0a2-0000-7000-8000-000000000002', 'done', 7, 'b')",
    )
    .await;
    reposmith_migrate::revert(&db.dir, &db.db, None)
        .await
        .unwrap();
    assert_eq!(
        rows(
            &db,
            "SELECT label || ' ' || state || ' ' || hits FROM tallies ORDER BY label"
        )
        .await,
        ["a new 0", "b done 7"]
    );
    assert_eq!(db.drift(&strict).await, Vec::<String>::new());
    db.cleanup().await;
}

/// A revert whose down file fails is an error naming that file (not the up
/// file), and leaves the migration applied.
#[tokio::test]
async fn a_failing_revert_names_the_down_file() {
    let db = MigrateDb::new().await;
    db.generate(
        &Schemas::new().add::<Tally>(),
        "tallies",
        Options::default(),
    );
    db.generate(
        &Schemas::new().add::<TallyLoose>(),
        "loose",
        Options::default(),
    );
    assert_eq!(db.apply().await, vec![1, 2]);
    // `label` has no default: nothing can fill this NULL on the way back.
    db.exec("INSERT INTO tallies (id) VALUES ('0191b0a2-0000-7000-8000-000000000001')")
        .await;
    let err = reposmith_migrate::revert(&db.dir, &db.db, None)
        .await
        .unwrap_err();
    let Error::Execute { version, path, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*version, 2);
    assert!(path.ends_with("0002_loose.down.sql"), "{}", path.display());
    let text = err.to_string();
    assert!(text.contains("0002_loose.down.sql"), "{text}");
    assert!(!text.contains(".up.sql"), "{text}");
    assert!(text.contains("label"), "{text}");
    assert_eq!(
        db.scalar("SELECT max(version) FROM _sqlx_migrations").await,
        2
    );
    db.cleanup().await;
}
