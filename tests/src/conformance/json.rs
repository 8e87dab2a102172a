//! JSON and text round trips: nested objects, arrays, i64 bounds,
//! and non-ASCII text (emoji, CJK, combining marks) come back exactly as
//! written, and JSON `null` stays a value distinct from a missing one.

use reposmith::{Filter, Repository};
use serde_json::json;

use super::entities::Doc;
use super::{Fixture, lacks};

/// A document exercising every JSON shape.
fn nested() -> serde_json::Value {
    json!({
        "emoji": "🦀 crab, 👩‍👩‍👧 family, 🇫🇷 flag",
        "cjk": "漢字かなカナ한국어",
        "combining": ["e\u{301}", "\u{e9}", "a\u{308}\u{331}"],
        "rtl": "שָׁלוֹם مرحبا",
        "escapes": "quote \" backslash \\ newline \n tab \t bell \u{7}",
        "键": {"ключ": {"κλειδί": [1, [2, [3, {"deep": true}]]]}},
        "mixed": [null, false, true, 0, -1, 2.5, -0.125, 0.1, "s", [], {}],
        "bounds": {"i64_max": i64::MAX, "i64_min": i64::MIN},
        "empty": {"object": {}, "array": [], "string": ""},
        "null": null,
    })
}

/// Nested objects, arrays and non-ASCII strings survive insert, get, find,
/// update and upsert unchanged; a path filter finds non-ASCII values.
pub async fn json_round_trips_nested_arrays_and_unicode<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let mut doc = Doc::new("json");
    doc.meta = nested();
    let stored = repo.insert(&doc).await.unwrap();
    assert_eq!(stored.meta, nested());
    let read = repo.get(&stored.id).await.unwrap().unwrap();
    assert_eq!(read.meta, nested());
    let found = repo.find(Doc::TITLE.eq("json")).one().await.unwrap();
    assert_eq!(found.map(|d| d.meta), Some(nested()));

    let mut edited = read.clone();
    edited.meta["added"] = json!([{"ü": "ß"}, "🦀"]);
    let updated = repo.update(&edited).await.unwrap();
    assert_eq!(updated.meta, edited.meta);
    let mut replaced = updated.clone();
    replaced.meta = json!(["top-level", "array", {"ok": "✓"}]);
    repo.upsert(&replaced).await.unwrap();
    let read = repo.get(&stored.id).await.unwrap().unwrap();
    assert_eq!(read.meta, replaced.meta);

    let scalar = repo
        .insert(&Doc {
            meta: json!("🦀"),
            ..Doc::new("scalar")
        })
        .await;
    assert_eq!(scalar.unwrap().meta, json!("🦀"));
    if lacks(
        fx.capabilities().json_filters,
        "json_round_trips_nested_arrays_and_unicode (filters)",
        "JSON filters",
    ) {
        return;
    }
    let mut keyed = Doc::new("keyed");
    keyed.meta = nested();
    repo.insert(&keyed).await.unwrap();
    let cjk = Doc::META.path("cjk").eq("漢字かなカナ한국어");
    assert_eq!(repo.count(cjk).await.unwrap(), 1);
    let deep = Doc::META.path("键").path("ключ").has_key("κλειδί");
    assert_eq!(repo.count(deep).await.unwrap(), 1);
    // Canonically equivalent, but not the same code points: no normalization.
    let as_written = Doc::META.contains(json!({"combining": ["a\u{308}\u{331}"]}));
    assert_eq!(repo.count(as_written).await.unwrap(), 1);
    let reordered = Doc::META.contains(json!({"combining": ["a\u{331}\u{308}"]}));
    assert_eq!(repo.count(reordered).await.unwrap(), 0);
}

/// On a non-optional JSON field, `null` is stored as the JSON value null and
/// read back as such; it is not a missing (SQL NULL) value.
pub async fn json_null_is_a_value_not_a_missing_one<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let mut doc = Doc::new("null meta");
    doc.meta = serde_json::Value::Null;
    let stored = repo.insert(&doc).await.unwrap();
    assert_eq!(stored.meta, serde_json::Value::Null);
    let read = repo.get(&stored.id).await.unwrap().unwrap();
    assert_eq!(read.meta, serde_json::Value::Null);
    assert_eq!(repo.count(Doc::META.is_null()).await.unwrap(), 0);
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 1);
}

/// Text is stored byte for byte: no Unicode normalization, so a precomposed
/// and a decomposed "é" are different unique titles, each found by equality.
pub async fn text_round_trips_unicode_byte_for_byte<F: Fixture>(fx: &F) {
    let repo = fx.docs();
    let titles = [
        "caf\u{e9}",
        "cafe\u{301}",
        "🦀 Rust 🦀",
        "日本語のタイトル",
        "zalgo z\u{336}\u{34f}a\u{335}",
    ];
    for title in titles {
        let mut doc = Doc::new(title);
        doc.summary = Some(format!("{title} — résumé"));
        doc.tags = vec![title.to_owned(), "ñ".into(), String::new()];
        let stored = repo.insert(&doc).await.unwrap();
        assert_eq!(
            (stored.title.as_str(), &stored.summary, &stored.tags),
            (title, &doc.summary, &doc.tags)
        );
    }
    for title in titles {
        let found = repo.find(Doc::TITLE.eq(title)).await.unwrap();
        assert_eq!(found.len(), 1, "{title:?}");
        assert_eq!(found[0].title, title);
        assert_eq!(found[0].tags[0], title);
    }
    let crabs = repo.count(Doc::TITLE.contains("🦀")).await.unwrap();
    assert_eq!(crabs, 1);
    assert_eq!(repo.count(Doc::TITLE.starts_with("cafe")).await.unwrap(), 1);
}
