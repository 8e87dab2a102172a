//! Every filter kind and ordering, with SQL's NULL semantics: a comparison
//! with NULL matches nothing, and neither does its negation.

use reposmith::{Filter, Repository};
use serde_json::json;

use super::entities::{Doc, Event};
use super::{Fixture, lacks};

/// Four documents with NULLs in `summary` and `rank` and varied JSON.
async fn seed<R: Repository<Doc>>(repo: &R) {
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

/// The titles `filter` matches, in title order.
async fn titles<R: Repository<Doc>>(repo: &R, filter: Filter<Doc>) -> Vec<String> {
    let docs = repo.find(filter).order_by(Doc::TITLE.asc()).await.unwrap();
    docs.into_iter().map(|d| d.title).collect()
}

fn t(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// eq, ne, lt, le, gt, ge, between, in, not in, is (not) null, like, ilike,
/// contains, starts_with, and/or/not; then the JSON filters.
pub async fn every_filter_kind_with_sql_null_semantics<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    seed(&repo).await;
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
    if lacks(
        fx.capabilities().json_filters,
        "every_filter_kind_with_sql_null_semantics (JSON part)",
        "JSON filters",
    ) {
        return;
    }
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
}

/// On nullable columns NULL is unknown, not a value: `ne`, `not_in`, `not`
/// of a comparison, and every combination of them leave NULL rows out; only
/// `is_null` (and its negation) sees them.
pub async fn ne_not_not_in_and_is_null_follow_sql_null_semantics<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    seed(&repo).await;
    // rank: alpha 1, beta 2, Gamma NULL, delta 4; summary: alpha x, beta NULL, Gamma y, delta x.
    assert_eq!(titles(&repo, Doc::RANK.ne(1)).await, t(&["beta", "delta"]));
    assert_eq!(titles(&repo, !Doc::RANK.eq(1)).await, t(&["beta", "delta"]));
    assert_eq!(titles(&repo, !Doc::RANK.ne(1)).await, t(&["alpha"]));
    assert_eq!(titles(&repo, Doc::RANK.not_in([2, 4])).await, t(&["alpha"]));
    assert_eq!(titles(&repo, !Doc::RANK.is_in([2, 4])).await, t(&["alpha"]));
    assert_eq!(
        titles(&repo, !Doc::RANK.not_in([2, 4])).await,
        t(&["beta", "delta"])
    );
    assert_eq!(titles(&repo, !Doc::RANK.between(2, 4)).await, t(&["alpha"]));
    assert_eq!(titles(&repo, !Doc::RANK.lt(100)).await, t(&[]));
    // false OR NULL is NULL and NOT NULL is still NULL: beta matches neither
    // the filter nor its negation. NULL OR true is true: Gamma matches the filter.
    let either = Doc::RANK.eq(1) | Doc::SUMMARY.eq("y");
    assert_eq!(
        titles(&repo, either.clone()).await,
        t(&["Gamma 50%_off", "alpha"])
    );
    assert_eq!(titles(&repo, !either).await, t(&["delta"]));
    // NULL AND false is false, so its negation matches.
    let both = Doc::RANK.eq(1) & Doc::SUMMARY.eq("x");
    assert_eq!(
        titles(&repo, !both).await,
        t(&["Gamma 50%_off", "beta", "delta"])
    );
    assert_eq!(
        titles(&repo, Doc::RANK.is_null()).await,
        t(&["Gamma 50%_off"])
    );
    assert_eq!(titles(&repo, Doc::SUMMARY.is_null()).await, t(&["beta"]));
    assert_eq!(
        titles(&repo, !Doc::RANK.is_null()).await,
        titles(&repo, Doc::RANK.is_not_null()).await
    );
    assert_eq!(
        titles(&repo, !Doc::SUMMARY.is_not_null()).await,
        t(&["beta"])
    );
    let null_or_ne = Doc::RANK.is_null() | Doc::RANK.ne(1);
    assert_eq!(
        titles(&repo, null_or_ne).await,
        t(&["Gamma 50%_off", "beta", "delta"])
    );
    assert_eq!(repo.count(Doc::SUMMARY.ne("x")).await.unwrap(), 1);
    assert!(
        !repo
            .exists(Doc::RANK.is_null() & Doc::SUMMARY.is_null())
            .await
            .unwrap()
    );
}

/// `asc` puts NULLs after every value and `desc` before them; ties go by id, ascending.
pub async fn order_puts_nulls_last_ascending_and_first_descending<F: Fixture>(fx: &F) {
    if lacks(
        fx.capabilities().nulls_last_ascending,
        "order_puts_nulls_last_ascending_and_first_descending",
        "NULLs-last ordering",
    ) {
        return;
    }
    let repo = fx.events();
    let scores = [Some(2), None, Some(-1), None, Some(7)];
    for (i, score) in scores.into_iter().enumerate() {
        let name = format!("s{i}");
        repo.insert(&Event { id: 0, name, score }).await.unwrap();
    }
    let names = |rows: Vec<Event>| rows.into_iter().map(|e| e.name).collect::<Vec<_>>();
    let asc = repo.find(Filter::all()).order_by(Event::SCORE.asc()).await;
    assert_eq!(names(asc.unwrap()), ["s2", "s0", "s4", "s1", "s3"]);
    let desc = repo.find(Filter::all()).order_by(Event::SCORE.desc()).await;
    assert_eq!(names(desc.unwrap()), ["s1", "s3", "s4", "s0", "s2"]);
}
