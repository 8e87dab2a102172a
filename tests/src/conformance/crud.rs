//! Every single-row and bulk operation of [`Repository`], the generated
//! finders, and the typed errors for conflicts, stale versions and missing rows.

use reposmith::{Error, Filter, Repository};
use serde_json::json;

use super::Fixture;
use super::entities::{Doc, DocRepository as _, Event, EventRepository as _, Setting};

/// insert returns the stored row; get, update (version bump, timestamps),
/// get_many, upsert (overwrite and fresh), delete, delete_where and exists.
pub async fn insert_get_update_upsert_delete_round_trip<F: Fixture>(fx: &F) {
    let repo = fx.docs();
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
}

/// i64 ids are assigned by the backend in increasing order; String ids by
/// the application, and a duplicate one is a conflict on the id field.
pub async fn identity_and_assigned_ids<F: Fixture>(fx: &F) {
    let events = fx.events();
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

    let settings = fx.settings();
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
}

/// A unique violation is a conflict naming the entity and field (the
/// constraint's name is the backend's: Postgres checks it separately); a
/// stale version and a missing row have their own errors and write nothing.
pub async fn conflicts_stale_versions_and_missing_rows_are_typed<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = repo.insert(&Doc::new("taken")).await.unwrap();
    let err = repo.insert(&Doc::new("taken")).await.unwrap_err();
    match &err {
        Error::Conflict { entity, field, .. } => {
            assert_eq!((*entity, field.to_owned()), ("Doc", Some("title")));
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
}

/// get_many returns the rows that exist and skips the ids that do not, for
/// every id type; only missing ids give an empty list, not an error.
pub async fn get_many_skips_missing_ids<F: Fixture>(fx: &F) {
    let docs = fx.docs();
    let kept = docs.insert(&Doc::new("kept")).await.unwrap();
    let gone = docs.insert(&Doc::new("gone")).await.unwrap();
    assert!(docs.delete(&gone.id).await.unwrap());
    let found = docs
        .get_many(&[uuid::Uuid::now_v7(), gone.id, kept.id])
        .await
        .unwrap();
    assert_eq!(found, vec![kept]);
    let none = docs.get_many(&[uuid::Uuid::now_v7(), gone.id]).await;
    assert!(none.unwrap().is_empty());

    let events = fx.events();
    let event = Event {
        id: 0,
        name: "e".into(),
        score: None,
    };
    let event = events.insert(&event).await.unwrap();
    let found = events.get_many(&[-1, event.id, event.id + 1_000]).await;
    assert_eq!(found.unwrap(), vec![event]);

    let settings = fx.settings();
    let setting = Setting {
        key: "present".into(),
        value: "v".into(),
    };
    settings.insert(&setting).await.unwrap();
    let keys = ["absent".to_owned(), "present".to_owned(), String::new()];
    assert_eq!(settings.get_many(&keys).await.unwrap(), vec![setting]);
    assert!(settings.get_many(&keys[..1]).await.unwrap().is_empty());
}

/// delete_where returns how many rows it deleted: none when nothing matches,
/// then exactly the matching rows, and the rest stay.
pub async fn delete_where_returns_how_many_it_deleted<F: Fixture>(fx: &F) {
    let repo = fx.events();
    let rows: Vec<Event> = (0..10)
        .map(|i| Event {
            id: 0,
            name: format!("n{i}"),
            score: (i % 3 != 0).then_some(i),
        })
        .collect();
    assert_eq!(repo.insert_many(&rows).await.unwrap(), 10);
    assert_eq!(repo.delete_where(Event::SCORE.gt(100)).await.unwrap(), 0);
    // Scores 1 2 4 5 7 8; NULL for 0, 3, 6, 9.
    assert_eq!(repo.delete_where(Event::SCORE.lt(5)).await.unwrap(), 3);
    assert_eq!(repo.delete_where(Event::SCORE.lt(5)).await.unwrap(), 0);
    assert_eq!(repo.delete_where(Event::SCORE.is_null()).await.unwrap(), 4);
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 3);
    assert_eq!(repo.delete_where(Filter::all()).await.unwrap(), 3);
    assert!(!repo.exists(Filter::all()).await.unwrap());
}

/// count and exists agree with the filter, on an empty and a filled table.
pub async fn exists_and_count_follow_the_filter<F: Fixture>(fx: &F) {
    let repo = fx.events();
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 0);
    assert!(!repo.exists(Filter::all()).await.unwrap());
    let rows: Vec<Event> = (0..12)
        .map(|i| Event {
            id: 0,
            name: format!("row{i:02}"),
            score: (i % 4 != 0).then_some(i % 5),
        })
        .collect();
    repo.insert_many(&rows).await.unwrap();
    // Every fourth score is NULL, and the expected counts come from the rows themselves.
    let expected = |keep: &dyn Fn(&Event) -> bool| rows.iter().filter(|e| keep(e)).count() as u64;
    let cases: Vec<(Filter<Event>, u64)> = vec![
        (Filter::all(), 12),
        (Event::SCORE.eq(3), expected(&|e| e.score == Some(3))),
        (Event::SCORE.ge(2), expected(&|e| e.score >= Some(2))),
        (Event::SCORE.is_null(), 3),
        (
            Event::SCORE.eq(1) | Event::NAME.starts_with("row1"),
            expected(&|e| e.score == Some(1) || e.name.starts_with("row1")),
        ),
        (
            Event::SCORE.is_in([0, 4]) & Event::NAME.ne("row10"),
            expected(&|e| matches!(e.score, Some(0 | 4)) && e.name != "row10"),
        ),
        (Event::NAME.eq("nobody"), 0),
    ];
    for (filter, count) in cases {
        let debug = format!("{filter:?}");
        assert_eq!(repo.count(filter.clone()).await.unwrap(), count, "{debug}");
        assert_eq!(repo.exists(filter).await.unwrap(), count > 0, "{debug}");
    }
}

/// order_by with either direction, limit (0 returns nothing), and one().
pub async fn find_orders_limits_and_returns_one<F: Fixture>(fx: &F) {
    let repo = fx.settings();
    for key in ["b", "d", "a", "c"] {
        let value = key.to_uppercase();
        repo.insert(&Setting {
            key: key.into(),
            value,
        })
        .await
        .unwrap();
    }
    let keys = |rows: Vec<Setting>| rows.into_iter().map(|s| s.key).collect::<Vec<_>>();
    let all = repo.find(Filter::all()).order_by(Setting::KEY.desc()).await;
    assert_eq!(keys(all.unwrap()), ["d", "c", "b", "a"]);
    let top = repo
        .find(Filter::all())
        .order_by(Setting::VALUE.asc())
        .limit(2)
        .await;
    assert_eq!(keys(top.unwrap()), ["a", "b"]);
    let past_c = repo
        .find(Setting::KEY.gt("b"))
        .order_by(Setting::KEY.asc())
        .limit(10)
        .await;
    assert_eq!(keys(past_c.unwrap()), ["c", "d"]);
    let nothing = repo.find(Filter::all()).limit(0).await.unwrap();
    assert!(nothing.is_empty(), "limit(0) returns no rows");
    let last = repo
        .find(Filter::all())
        .order_by(Setting::KEY.desc())
        .one()
        .await;
    assert_eq!(last.unwrap().map(|s| s.key).as_deref(), Some("d"));
    let missing = repo.find(Setting::VALUE.eq("Z")).one().await.unwrap();
    assert!(missing.is_none());
}

/// `find_by_<unique field>` finds the one row or none.
pub async fn generated_finders_match_unique_fields<F: Fixture>(fx: &F) {
    let docs = fx.docs();
    let doc = docs.insert(&Doc::new("findable")).await.unwrap();
    assert_eq!(docs.find_by_title("findable").await.unwrap(), Some(doc));
    assert_eq!(docs.find_by_title("Findable").await.unwrap(), None);
    let events = fx.events();
    let event = Event {
        id: 0,
        name: "launch".into(),
        score: Some(1),
    };
    let event = events.insert(&event).await.unwrap();
    assert_eq!(events.find_by_name("launch").await.unwrap(), Some(event));
    assert_eq!(events.find_by_name("land").await.unwrap(), None);
}
