//! Partial updates (`patch`, `update_where`): typed assignments applied
//! atomically by the server, versions checked and bumped, `updated_at`
//! stamped, bad changes refused before anything is sent.

use reposmith::{Changes, Error, Filter, Repository};
use serde_json::json;

use super::Fixture;
use super::entities::{Doc, Event};

/// A stored doc with rank 0, a summary and some JSON.
async fn stored<R: Repository<Doc>>(repo: &R, title: &str) -> Doc {
    let mut doc = Doc::new(title);
    doc.rank = Some(0);
    doc.summary = Some("first".into());
    doc.meta = json!({"lang": "fr", "author": {"name": "Zoë"}});
    repo.insert(&doc).await.unwrap()
}

/// `set`, `add` and `set_null` in one patch: the returned row is the
/// stored row, the version is bumped, `updated_at` moves, `created_at`
/// does not.
pub async fn patch_sets_adds_and_stamps_in_one_write<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let before = stored(&repo, "p1").await;
    let changes = Doc::TITLE
        .set("p1 renamed")
        .and(Doc::RANK.add(5))
        .and(Doc::SUMMARY.set_null())
        .and(Doc::TAGS.set(vec!["a".to_owned(), "b".to_owned()]));
    let after = repo.patch(&before.id, changes).await.unwrap();
    assert_eq!(after.title, "p1 renamed");
    assert_eq!(after.rank, Some(5));
    assert_eq!(after.summary, None);
    assert_eq!(after.tags, ["a", "b"]);
    assert_eq!(after.meta, before.meta, "untouched fields are kept");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.created_at, before.created_at);
    assert!(after.updated_at > before.updated_at);
    assert_eq!(repo.get(&before.id).await.unwrap().unwrap(), after);

    // One assignment converts into Changes; an array does too.
    let again = repo.patch(&before.id, Doc::RANK.add(-2)).await.unwrap();
    assert_eq!(again.rank, Some(3));
    let changes: Changes<Doc> = [Doc::RANK.set(9), Doc::SUMMARY.set_option(Some("s"))].into();
    let last = repo.patch(&before.id, changes).await.unwrap();
    assert_eq!((last.rank, last.summary.as_deref()), (Some(9), Some("s")));
    assert_eq!(last.version, before.version + 3);
}

/// `.if_version(v)` writes only over version `v`: a stale one is
/// `StaleVersion` and writes nothing; a missing row is `NotFound` with or
/// without it.
pub async fn patch_with_a_stale_version_is_refused_and_writes_nothing<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = stored(&repo, "versioned").await;
    let v2 = repo
        .patch(&doc.id, Doc::RANK.set(1))
        .if_version(doc.version)
        .await
        .unwrap();
    assert_eq!(v2.version, doc.version + 1);
    let stale = repo
        .patch(&doc.id, Doc::RANK.set(2))
        .if_version(doc.version)
        .await;
    assert!(
        matches!(stale, Err(Error::StaleVersion { expected, .. }) if expected == doc.version),
        "{stale:?}"
    );
    assert_eq!(
        repo.get(&doc.id).await.unwrap().unwrap(),
        v2,
        "nothing written"
    );

    let missing = uuid::Uuid::now_v7();
    for expected in [None, Some(1)] {
        let patch = repo.patch(&missing, Doc::RANK.set(3));
        let patch = match expected {
            Some(v) => patch.if_version(v),
            None => patch,
        };
        assert!(matches!(patch.await, Err(Error::NotFound { .. })));
    }
    // No version to compare: refused before sending.
    let events = fx.events();
    let event = events
        .insert(&Event {
            id: 0,
            name: "e".into(),
            score: Some(1),
        })
        .await
        .unwrap();
    let refused = events
        .patch(&event.id, Event::SCORE.set(2))
        .if_version(1)
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidInput { .. })),
        "{refused:?}"
    );
    assert_eq!(events.get(&event.id).await.unwrap().unwrap().score, Some(1));
}

/// Two tasks patch different fields of one row at the same time, thirty
/// times over: neither write is lost (an update of the whole row would
/// lose one).
pub async fn concurrent_patches_of_different_fields_lose_neither<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    for round in 0..30 {
        let doc = stored(&repo, &format!("race {round}")).await;
        let (a, b) = (repo.clone(), repo.clone());
        let id = doc.id;
        let title = format!("race {round} renamed");
        let left = {
            let title = title.clone();
            tokio::spawn(async move { a.patch(&id, Doc::TITLE.set(title)).await })
        };
        let right = tokio::spawn(async move { b.patch(&id, Doc::RANK.set(round)).await });
        left.await.unwrap().unwrap();
        right.await.unwrap().unwrap();
        let now = repo.get(&id).await.unwrap().unwrap();
        assert_eq!(
            (now.title.as_str(), now.rank),
            (title.as_str(), Some(round))
        );
        assert_eq!(now.version, doc.version + 2);
    }
}

/// `add(1)` from fifty tasks at once gives exactly fifty.
pub async fn fifty_concurrent_adds_give_exactly_fifty<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = stored(&repo, "counter").await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.patch(&doc.id, Doc::RANK.add(1)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let now = repo.get(&doc.id).await.unwrap().unwrap();
    assert_eq!(now.rank, Some(50));
    assert_eq!(now.version, doc.version + 50);
}

/// `update_where` counts the rows it changed, `.returning()` returns them
/// as stored, and rows the filter does not match are untouched.
pub async fn update_where_counts_and_returns_the_updated_rows<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    for i in 0..5 {
        let mut doc = stored(&repo, &format!("uw{i}")).await;
        doc.rank = Some(i);
        repo.update(&doc).await.unwrap();
    }
    let n = repo
        .update_where(Doc::RANK.ge(3), Doc::SUMMARY.set("high"))
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(repo.count(Doc::SUMMARY.eq("high")).await.unwrap(), 2);

    let mut rows = repo
        .update_where(
            Doc::RANK.lt(2),
            Doc::RANK.add(10).and(Doc::SUMMARY.set("low")),
        )
        .returning()
        .await
        .unwrap();
    rows.sort_by_key(|d| d.rank);
    let ranks: Vec<_> = rows.iter().map(|d| d.rank).collect();
    assert_eq!(ranks, [Some(10), Some(11)]);
    for row in &rows {
        assert_eq!(row.summary.as_deref(), Some("low"));
        assert_eq!(row.version, 3, "inserted 1, updated 2, patched 3");
        assert_eq!(&repo.get(&row.id).await.unwrap().unwrap(), row);
    }
    assert_eq!(repo.count(Doc::SUMMARY.eq("first")).await.unwrap(), 1);
    let none = repo
        .update_where(Doc::RANK.gt(1000), Doc::SUMMARY.set("x"))
        .returning()
        .await
        .unwrap();
    assert!(none.is_empty());
    let all = repo
        .update_where(Filter::all(), Doc::RANK.add(1))
        .await
        .unwrap();
    assert_eq!(all, 5);
}

/// Every malformed change is `InvalidInput` naming the field, and nothing
/// is written.
pub async fn invalid_changes_are_refused_before_anything_is_sent<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = stored(&repo, "invalid").await;
    let now = chrono::Utc::now();
    let cases: Vec<(Changes<Doc>, &str)> = vec![
        (Changes::new(), "changes"),
        (Doc::VERSION.set(7).into(), "version"),
        (Doc::ID.set(uuid::Uuid::now_v7()).into(), "id"),
        (Doc::CREATED_AT.set(now).into(), "created_at"),
        (Doc::UPDATED_AT.set(now).into(), "updated_at"),
        (Doc::TITLE.set("a").and(Doc::TITLE.set("b")), "title"),
        (Doc::RANK.set(1).and(Doc::RANK.add(1)), "rank"),
        (Doc::META.set_null().into(), "meta"),
        (Doc::META.json_set(Vec::<String>::new(), 1).into(), "meta"),
        (Doc::META.json_set(["a.b"], 1).into(), "meta"),
        (Doc::META.json_set(["$where"], 1).into(), "meta"),
        (Doc::META.json_set(["a\0"], 1).into(), "meta"),
        (Doc::META.json_remove([""]).into(), "meta"),
        (
            Doc::META
                .json_set(["a"], 1)
                .and(Doc::META.json_remove(["a", "b"])),
            "meta",
        ),
        (
            Doc::META.set(json!({})).and(Doc::META.json_set(["a"], 1)),
            "meta",
        ),
    ];
    for (changes, field) in cases {
        let described = format!("{changes:?}");
        match repo.patch(&doc.id, changes.clone()).await {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{described}"),
            other => panic!("{described}: {other:?}"),
        }
        match repo.update_where(Filter::all(), changes).await {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field, "{described}"),
            other => panic!("{described}: {other:?}"),
        }
    }
    assert_eq!(
        repo.get(&doc.id).await.unwrap().unwrap(),
        doc,
        "nothing written"
    );
}

/// JSON path set (creating missing objects) and remove, several paths of
/// one column in one patch.
pub async fn json_paths_set_and_remove_round_trip<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = stored(&repo, "json").await;
    let changes = Doc::META
        .json_set(["author", "name"], "Ada 🦀")
        .and(Doc::META.json_set(["stats", "views", "total"], 3))
        .and(Doc::META.json_set(["tags"], json!(["x", {"y": null}])))
        .and(Doc::META.json_remove(["lang"]))
        .and(Doc::META.json_remove(["absent", "key"]));
    let after = repo.patch(&doc.id, changes).await.unwrap();
    let expected = json!({
        "author": {"name": "Ada 🦀"},
        "stats": {"views": {"total": 3}},
        "tags": ["x", {"y": null}],
    });
    assert_eq!(after.meta, expected);
    assert_eq!(repo.get(&doc.id).await.unwrap().unwrap().meta, expected);
    let whole = repo
        .patch(&doc.id, Doc::META.set(json!({"k": 1})))
        .await
        .unwrap();
    assert_eq!(whole.meta, json!({"k": 1}));
}

/// Many JSON path assignments to one column in one patch (disjoint paths,
/// each three keys deep) render to a statement whose size grows with the
/// number of paths, not exponentially: all twenty-four land, quickly.
pub async fn many_json_paths_in_one_patch_stay_linear<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = stored(&repo, "many paths").await;
    let changes: Changes<Doc> = (0..24)
        .map(|i| Doc::META.json_set([format!("k{i}"), "a".into(), "b".into()], i))
        .collect();
    let started = std::time::Instant::now();
    let after = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        repo.patch(&doc.id, changes).await
    })
    .await
    .expect("the patch ends within 10 s")
    .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    for i in 0..24 {
        assert_eq!(after.meta[format!("k{i}")]["a"]["b"], json!(i));
    }
    assert_eq!(after.meta["lang"], json!("fr"), "other keys are kept");
}

/// `add` whose result leaves the field's integer type is `InvalidInput`
/// naming the field, and nothing is written: the row still reads back
/// with its old value (a wider integer stored by the server would fail
/// every later read). `update_where` likewise refuses, naming the field,
/// and writes nothing.
pub async fn add_beyond_the_integer_range_is_refused_and_writes_nothing<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = stored(&repo, "overflow").await;
    let near = repo
        .patch(&doc.id, Doc::RANK.set(i32::MAX - 1))
        .await
        .unwrap();
    for delta in [2, i32::MAX] {
        let refused = repo.patch(&doc.id, Doc::RANK.add(delta)).await;
        assert!(
            matches!(&refused, Err(Error::InvalidInput { field, .. }) if field == "rank"),
            "{refused:?}"
        );
    }
    let low = stored(&repo, "underflow").await;
    repo.patch(&low.id, Doc::RANK.set(i32::MIN + 1))
        .await
        .unwrap();
    let refused = repo.patch(&low.id, Doc::RANK.add(-2)).await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput { field, .. }) if field == "rank"),
        "{refused:?}"
    );
    let refused = repo
        .update_where(Doc::TITLE.eq("overflow"), Doc::RANK.add(2))
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput { field, .. }) if field == "rank"),
        "the field named: {refused:?}"
    );
    let refused = repo
        .update_where(Doc::TITLE.eq("overflow"), Doc::RANK.add(2))
        .returning()
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput { field, .. }) if field == "rank"),
        "the field named: {refused:?}"
    );
    assert_eq!(
        repo.get(&doc.id).await.unwrap().unwrap(),
        near,
        "nothing written"
    );
    // In range, the same row still takes an add; a NULL stays refused or
    // NULL as the backend documents, never out of range.
    let ok = repo.patch(&doc.id, Doc::RANK.add(1)).await.unwrap();
    assert_eq!(ok.rank, Some(i32::MAX));
    // A version check still wins over the range: stale is stale.
    let stale = repo
        .patch(&doc.id, Doc::RANK.add(1))
        .if_version(near.version)
        .await;
    assert!(
        matches!(stale, Err(Error::StaleVersion { .. })),
        "{stale:?}"
    );
}

/// A JSON-path `json_set` through a scalar (`lang.code` where `lang` holds
/// a string) is `InvalidInput` naming the field and the path, the same on
/// every backend, by `patch` and `update_where` (with and without
/// `.returning()`); nothing is written.
pub async fn json_set_through_a_scalar_is_invalid_input_naming_field_and_path<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let doc = stored(&repo, "scalar").await;
    let refused = |outcome: reposmith::Result<String>| match outcome {
        Err(Error::InvalidInput { field, reason, .. }) => {
            assert_eq!(field, "meta");
            assert!(reason.contains("`lang.code`"), "{reason}");
        }
        other => panic!("expected InvalidInput naming meta, got {other:?}"),
    };
    let through = || Doc::META.json_set(["lang", "code"], "x");
    refused(repo.patch(&doc.id, through()).await.map(|d| d.title));
    let filter = || Doc::TITLE.eq("scalar");
    refused(
        repo.update_where(filter(), through())
            .await
            .map(|n| n.to_string()),
    );
    let returning = repo.update_where(filter(), through()).returning();
    refused(returning.await.map(|d| d.len().to_string()));
    assert_eq!(
        repo.get(&doc.id).await.unwrap().unwrap(),
        doc,
        "nothing written"
    );
}
