//! The PostgreSQL repository against a real server: every operation and
//! filter, conflicts and stale versions, bad input, keyset pagination, bulk
//! inserts and concurrency (`paging`), units of work (`unit`).

#[path = "pg_repository/entities.rs"]
mod entities;
#[path = "pg_repository/paging.rs"]
mod paging;
#[path = "pg_repository/unit.rs"]
mod unit;

use entities::{Db, Doc, Event, Setting};
use reposmith::Error;
use reposmith_core::{Filter, Repository};
use reposmith_postgres::PgRepository;
use serde_json::json;

#[tokio::test]
async fn insert_get_update_upsert_delete_round_trip() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    let mut doc = Doc::new("Intro");
    doc.tags = vec!["a".into(), "b".into()];
    doc.meta = json!({"lang": "fr", "author": {"name": "Zoë 🦀", "ids": [1, 2.5, null]}});
    let stored = repo.insert(&doc).await.unwrap();
    assert!(!stored.id.is_nil() && stored.version == 1);
    assert_eq!(stored.created_at, stored.updated_at);
    assert_eq!(
        (stored.meta.clone(), stored.tags.clone()),
        (doc.meta, doc.tags)
    );
    assert_eq!(repo.get(&stored.id).await.unwrap(), Some(stored.clone()));

    let mut edited = stored.clone();
    edited.summary = Some("short".into());
    let updated = repo.update(&edited).await.unwrap();
    assert_eq!(
        (updated.version, updated.summary.as_deref()),
        (2, Some("short"))
    );
    assert_eq!(updated.created_at, stored.created_at);
    assert!(updated.updated_at > stored.updated_at);

    let other = repo.insert(&Doc::new("Other")).await.unwrap();
    let many = repo
        .get_many(&[stored.id, other.id, uuid::Uuid::now_v7()])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert!(repo.get_many(&[]).await.unwrap().is_empty());

    let mut upserted = updated.clone();
    upserted.title = "Intro, again".into();
    let upserted = repo.upsert(&upserted).await.unwrap();
    assert_eq!(
        (upserted.version, upserted.title.as_str()),
        (3, "Intro, again")
    );
    assert_eq!(upserted.created_at, stored.created_at);
    let fresh = repo.upsert(&Doc::new("Fresh")).await.unwrap();
    assert_eq!(fresh.version, 1);

    assert_eq!(repo.count(Filter::all()).await.unwrap(), 3);
    assert!(repo.delete(&stored.id).await.unwrap());
    assert!(!repo.delete(&stored.id).await.unwrap());
    assert_eq!(
        repo.delete_where(Doc::TITLE.starts_with("F"))
            .await
            .unwrap(),
        1
    );
    assert!(repo.exists(Doc::TITLE.eq("Other")).await.unwrap());
    assert!(!repo.exists(Doc::TITLE.eq("Fresh")).await.unwrap());
    db.cleanup().await;
}

#[tokio::test]
async fn identity_and_assigned_ids() {
    let db = Db::new().await;
    let events = db.pg.repo::<Event>();
    let first = events
        .insert(&Event {
            id: 0,
            name: "a".into(),
            score: None,
        })
        .await
        .unwrap();
    let second = events
        .insert(&Event {
            id: 0,
            name: "b".into(),
            score: Some(3),
        })
        .await
        .unwrap();
    assert!(first.id > 0 && second.id > first.id);
    assert_eq!(events.get(&second.id).await.unwrap(), Some(second.clone()));
    let mut renamed = second.clone();
    renamed.name = "c".into();
    assert_eq!(events.update(&renamed).await.unwrap(), renamed);

    let settings = db.pg.repo::<Setting>();
    let s = Setting {
        key: "theme".into(),
        value: "dark".into(),
    };
    assert_eq!(settings.insert(&s).await.unwrap(), s);
    let light = Setting {
        key: "theme".into(),
        value: "light".into(),
    };
    assert_eq!(settings.upsert(&light).await.unwrap(), light);
    assert_eq!(
        settings.get(&"theme".to_owned()).await.unwrap(),
        Some(light)
    );
    let err = settings.insert(&s).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                field: Some("key"),
                ..
            }
        ),
        "{err:?}"
    );
    db.cleanup().await;
}

async fn seed(repo: &PgRepository<Doc>) {
    let rows = [
        (
            "alpha",
            Some("x"),
            Some(1),
            json!({"a": {"b": 1}, "k": "v"}),
        ),
        ("beta", None, Some(2), json!({"a": {"c": 2}})),
        (
            "Gamma 50%_off",
            Some("y"),
            None,
            json!({"k": "w", "list": [1, 2]}),
        ),
        ("delta", Some("x"), Some(4), json!({"a": {"b": "1"}})),
    ];
    for (title, summary, rank, meta) in rows {
        let mut doc = Doc::new(title);
        doc.summary = summary.map(str::to_owned);
        doc.rank = rank;
        doc.meta = meta;
        repo.insert(&doc).await.unwrap();
    }
}

async fn titles(repo: &PgRepository<Doc>, filter: Filter<Doc>) -> Vec<String> {
    let docs = repo.find(filter).order_by(Doc::TITLE.asc()).await.unwrap();
    docs.into_iter().map(|d| d.title).collect()
}

#[tokio::test]
async fn every_filter_kind_with_sql_null_semantics() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    seed(&repo).await;
    let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        titles(&repo, Doc::SUMMARY.eq("x")).await,
        t(&["alpha", "delta"])
    );
    // NULL summary matches neither `<> 'x'` nor NOT(= 'x').
    assert_eq!(
        titles(&repo, Doc::SUMMARY.ne("x")).await,
        t(&["Gamma 50%_off"])
    );
    assert_eq!(
        titles(&repo, !Doc::SUMMARY.eq("x")).await,
        t(&["Gamma 50%_off"])
    );
    assert_eq!(titles(&repo, Doc::RANK.lt(2)).await, t(&["alpha"]));
    assert_eq!(titles(&repo, Doc::RANK.le(2)).await, t(&["alpha", "beta"]));
    assert_eq!(titles(&repo, Doc::RANK.gt(2)).await, t(&["delta"]));
    assert_eq!(titles(&repo, Doc::RANK.ge(2)).await, t(&["beta", "delta"]));
    assert_eq!(
        titles(&repo, Doc::RANK.between(2, 4)).await,
        t(&["beta", "delta"])
    );
    assert_eq!(
        titles(&repo, Doc::RANK.is_in([1, 4])).await,
        t(&["alpha", "delta"])
    );
    assert!(
        titles(&repo, Doc::RANK.is_in(Vec::<i32>::new()))
            .await
            .is_empty()
    );
    assert_eq!(
        titles(&repo, Doc::RANK.not_in([1])).await,
        t(&["beta", "delta"])
    );
    let every_non_null = t(&["alpha", "beta", "delta"]);
    assert_eq!(
        titles(&repo, Doc::RANK.not_in(Vec::<i32>::new())).await,
        every_non_null
    );
    assert_eq!(
        titles(&repo, Doc::RANK.is_null()).await,
        t(&["Gamma 50%_off"])
    );
    assert_eq!(titles(&repo, Doc::SUMMARY.is_not_null()).await.len(), 3);
    assert_eq!(
        titles(&repo, Doc::TITLE.like("%ta")).await,
        t(&["beta", "delta"])
    );
    assert_eq!(
        titles(&repo, Doc::TITLE.ilike("gam%")).await,
        t(&["Gamma 50%_off"])
    );
    assert_eq!(
        titles(&repo, Doc::TITLE.contains("50%_")).await,
        t(&["Gamma 50%_off"])
    );
    assert!(titles(&repo, Doc::TITLE.contains("0%o")).await.is_empty());
    assert_eq!(
        titles(&repo, Doc::TITLE.starts_with("al")).await,
        t(&["alpha"])
    );
    let either = Doc::RANK.eq(1) | (Doc::RANK.gt(1) & Doc::SUMMARY.eq("x"));
    assert_eq!(titles(&repo, either).await, t(&["alpha", "delta"]));
    // JSON: path equality is typed (1 is not "1"), containment, key existence at a path.
    assert_eq!(
        titles(&repo, Doc::META.path("a").path("b").eq(1)).await,
        t(&["alpha"])
    );
    assert_eq!(
        titles(&repo, Doc::META.contains(json!({"k": "w"}))).await,
        t(&["Gamma 50%_off"])
    );
    assert_eq!(
        titles(&repo, Doc::META.contains(json!({"list": [2]})))
            .await
            .len(),
        1
    );
    assert_eq!(
        titles(&repo, Doc::META.has_key("k")).await,
        t(&["Gamma 50%_off", "alpha"])
    );
    let has_b = Doc::META.path("a").has_key("b");
    assert_eq!(titles(&repo, has_b).await, t(&["alpha", "delta"]));
    assert_eq!(
        repo.count(Doc::META.path("a").has_key("c")).await.unwrap(),
        1
    );
    db.cleanup().await;
}

#[tokio::test]
async fn conflicts_stale_versions_and_missing_rows_are_typed() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    let doc = repo.insert(&Doc::new("taken")).await.unwrap();
    let err = repo.insert(&Doc::new("taken")).await.unwrap_err();
    match &err {
        Error::Conflict {
            entity,
            constraint,
            field,
        } => {
            assert_eq!(
                (*entity, constraint.as_str(), field.to_owned()),
                ("Doc", "docs_title_key", Some("title"))
            );
        }
        other => panic!("{other:?}"),
    }

    let mut first = doc.clone();
    first.summary = Some("first".into());
    repo.update(&first).await.unwrap();
    let mut stale = doc.clone();
    stale.summary = Some("stale".into());
    let err = repo.update(&stale).await.unwrap_err();
    assert!(
        matches!(err, Error::StaleVersion { expected: 1, .. }),
        "{err:?}"
    );
    let stored = repo.get(&doc.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.summary.as_deref(), stored.version),
        (Some("first"), 2)
    );

    let mut missing = Doc::new("ghost");
    missing.id = uuid::Uuid::now_v7();
    let err = repo.update(&missing).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound { entity: "Doc", .. }),
        "{err:?}"
    );
    db.cleanup().await;
}

#[tokio::test]
async fn nul_in_text_or_json_is_invalid_input_and_nothing_is_written() {
    let db = Db::new().await;
    let repo = db.pg.repo::<Doc>();
    let mut bad_text = Doc::new("nul\0here");
    let err = repo.insert(&bad_text).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "title"),
        "{err:?}"
    );
    bad_text.title = "ok".into();
    bad_text.meta = json!({"deep": [{"x\u{0000}": 1}]});
    let err = repo.insert(&bad_text).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "meta"),
        "{err:?}"
    );
    let err = repo
        .insert_many(&[Doc::new("fine"), bad_text])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let err = repo.count(Doc::TITLE.eq("a\0")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);
    db.cleanup().await;
}
