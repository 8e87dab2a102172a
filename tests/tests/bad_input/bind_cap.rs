//! The bind-size cap (`PgConfig::max_bind_bytes`) against the real server,
//! on a backend capped at 4 KiB: single writes at the cap and one byte
//! past it, filters and id lists past it, `insert_many` splitting its
//! `VALUES` batches under it (still all or nothing) and holding each `COPY`
//! row (of `insert_many` and of `bulk_load`) to it. Past the cap is `TooLarge` before anything is sent, and
//! nothing is written.

use reposmith::{Error, Filter, PgBackend, PgConfig, Repository};
use reposmith_tests::{database_url, with_search_path};

use crate::pg_repository::db::Db;

/// The cap the tests' backend runs with.
const CAP: usize = 4096;

/// An application-keyed note; keys are all five characters long, so each
/// row binds the same bytes around its body.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "capped_notes")]
struct Note {
    #[repo(id)]
    key: String,
    #[repo(unique)]
    body: String,
}

fn note(key: usize, body_bytes: usize) -> Note {
    Note {
        key: format!("k{key:04}"),
        body: "é".repeat(body_bytes / 2) + &"x".repeat(body_bytes % 2),
    }
}

/// A backend on `db`'s schema whose statements bind at most [`CAP`] bytes.
async fn capped(db: &Db) -> PgBackend {
    let url = with_search_path(&database_url(), db.application_name());
    let pg = PgBackend::connect(&PgConfig::new(url).max_bind_bytes(CAP))
        .await
        .unwrap();
    pg.create_tables::<Note>().await.unwrap();
    pg
}

fn too_large<T: std::fmt::Debug>(outcome: reposmith::Result<T>, what: &str) -> (usize, String) {
    match outcome {
        Err(Error::TooLarge { size, limit, what }) if limit == CAP && size > CAP => (size, what),
        other => panic!("{what}: expected TooLarge over {CAP}, got {other:?}"),
    }
}

/// The body length that makes a note bind exactly [`CAP`] bytes, from the
/// size a refusal reports.
async fn exact_body(repo: &reposmith::PgRepository<Note>) -> usize {
    let probe = 2 * CAP;
    let (size, _) = too_large(repo.insert(&note(0, probe)).await, "probe");
    probe - (size - CAP)
}

#[tokio::test]
async fn single_writes_at_the_cap_run_and_one_byte_past_it_are_too_large() {
    let db = Db::new().await;
    let pg = capped(&db).await;
    let repo = pg.repo::<Note>();
    let exact = exact_body(&repo).await;
    // The key (4 + 5 bytes) and the body's length word: 13 bytes around the body.
    assert_eq!(
        exact,
        CAP - 13,
        "the measure: a length word and the binary form per value"
    );

    let (size, what) = too_large(repo.insert(&note(1, exact + 1)).await, "insert");
    assert_eq!(size, CAP + 1);
    assert!(what.contains("`body`"), "names the largest field: {what}");
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        0,
        "nothing written"
    );
    too_large(repo.upsert(&note(1, exact + 1)).await, "upsert");
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        0,
        "nothing written"
    );

    let at_cap = repo.insert(&note(1, exact)).await.unwrap();
    assert_eq!(at_cap.body.len(), exact);
    too_large(repo.update(&note(1, exact + 1)).await, "update");
    assert_eq!(
        repo.get(&at_cap.key).await.unwrap(),
        Some(at_cap.clone()),
        "unchanged"
    );
    let mut shorter = note(1, exact - 1);
    shorter.body.insert(0, 'y');
    assert_eq!(
        repo.update(&shorter).await.unwrap(),
        shorter,
        "an update at the cap runs"
    );
    repo.upsert(&note(1, exact)).await.unwrap();

    // Filters: the operands count, one value or a list of them.
    assert_eq!(
        repo.count(Note::BODY.eq(note(1, exact).body))
            .await
            .unwrap(),
        1
    );
    let (size, _) = too_large(repo.count(Note::BODY.eq(note(1, CAP - 3).body)).await, "eq");
    assert_eq!(size, CAP + 1, "one operand: its length word and its bytes");
    let many: Vec<String> = (0..200).map(|i| format!("{i:030}")).collect();
    too_large(repo.count(Note::BODY.is_in(many.clone())).await, "in");
    too_large(repo.find(Note::KEY.is_in(many.clone())).await, "find");
    too_large(
        repo.delete_where(Note::BODY.not_in(many.clone())).await,
        "delete_where",
    );
    too_large(repo.get_many(&many).await, "get_many");
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        1,
        "nothing deleted"
    );
    assert_eq!(
        repo.count(Note::BODY.is_in(many[..50].to_vec()))
            .await
            .unwrap(),
        0
    );
    pg.close().await;
    db.cleanup().await;
    eprintln!(
        "a {CAP}-byte cap: a write of exactly {CAP} bytes runs, {} is TooLarge and writes nothing",
        CAP + 1
    );
}

#[tokio::test]
async fn insert_many_splits_values_batches_under_the_cap_and_refuses_a_row_past_it() {
    let db = Db::new().await;
    let pg = capped(&db).await;
    let repo = pg.repo::<Note>();
    let exact = exact_body(&repo).await;

    // Ten rows of a third of the cap: 3 to a statement, 4 statements, one transaction.
    let rows: Vec<Note> = (0..10).map(|i| note(i, CAP / 3 - 20 + i)).collect();
    let (captured, guard) = crate::bad_input::capture_statements();
    assert_eq!(repo.insert_many(&rows).await.unwrap(), 10);
    let inserts = captured
        .take()
        .iter()
        .filter(|sql| sql.contains("INSERT INTO") && sql.contains("VALUES"))
        .count();
    drop(guard);
    assert_eq!(
        inserts, 4,
        "VALUES statements sent for 10 rows of a third of the cap"
    );
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 10);

    // A conflict in the last batch undoes the batches already sent.
    let mut late_conflict: Vec<Note> = (10..20).map(|i| note(i, CAP / 3 - 20 + i)).collect();
    late_conflict[9].body = rows[0].body.clone();
    let err = repo.insert_many(&late_conflict).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        10,
        "earlier batches undone"
    );

    // One row past the cap alone: refused by its index before anything is sent.
    let mut one_too_big: Vec<Note> = (20..30).map(|i| note(i, 100 + i)).collect();
    one_too_big[7] = note(27, exact + 1);
    let (size, what) = too_large(repo.insert_many(&one_too_big).await, "VALUES row");
    assert_eq!(size, CAP + 1);
    assert!(what.contains("at index 7 of 10 rows"), "{what}");
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        10,
        "nothing written"
    );

    // COPY (200 rows and more): the whole stream is far past the cap, each row within it.
    let copied: Vec<Note> = (100..400).map(|i| note(i, CAP / 2 + i)).collect();
    assert_eq!(repo.insert_many(&copied).await.unwrap(), 300);
    let mut copy_too_big: Vec<Note> = (400..700).map(|i| note(i, 50 + i)).collect();
    copy_too_big[240] = note(640, exact + 1);
    let (_, what) = too_large(repo.insert_many(&copy_too_big).await, "COPY row");
    assert!(what.contains("at index 240 of 300 rows"), "{what}");
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        310,
        "the aborted COPY wrote nothing"
    );

    // bulk_load checks every row before it takes a connection.
    let mut loaded: Vec<Note> = (700..800).map(|i| note(i, 100 + i)).collect();
    loaded[42] = note(742, exact + 1);
    let (size, what) = too_large(repo.bulk_load(&loaded).await, "bulk_load row");
    assert_eq!(size, CAP + 1);
    assert!(
        what.contains("at index 42 of 100 rows") && what.contains("`body`"),
        "{what}"
    );
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        310,
        "bulk_load wrote nothing"
    );
    loaded[42] = note(742, exact);
    repo.bulk_load(&loaded).await.unwrap();
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        410,
        "a row at the cap loads"
    );
    pg.close().await;
    db.cleanup().await;
    eprintln!(
        "insert_many under a {CAP}-byte cap: VALUES split 10 rows into 4 statements atomically, a 300-row COPY of 0.7 MB ran, a row past the cap wrote nothing"
    );
}
