//! `ObjectId` entity ids on both backends: generated on insert when zero,
//! a BSON ObjectId in MongoDB and 24 hex characters in PostgreSQL, with
//! gets, filters and keyset pages working on both.

use reposmith::mongo::mongodb::bson::{Bson, Document, doc};
use reposmith::postgres::sqlx;
use reposmith::prelude::*;
use reposmith::{ObjectId, Store};

/// An LLM trace keyed the MongoDB way.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "oid_traces")]
struct Trace {
    #[repo(id)]
    id: ObjectId,
    #[repo(index)]
    model: String,
    prompt: String,
}

fn trace(model: &str, prompt: &str) -> Trace {
    Trace {
        id: ObjectId::ZERO,
        model: model.to_owned(),
        prompt: prompt.to_owned(),
    }
}

/// Inserts, reads back and pages; the same steps on either backend.
async fn exercise<R: Repository<Trace>>(repo: &R) -> Vec<Trace> {
    let first = repo.insert(&trace("gpt", "hello")).await.unwrap();
    assert!(!first.id.is_zero(), "a zero id is replaced on insert");
    let given = ObjectId::new();
    let kept = repo
        .insert(&Trace {
            id: given,
            ..trace("gpt", "given")
        })
        .await
        .unwrap();
    assert_eq!(kept.id, given, "a given id is kept");
    let batch: Vec<Trace> = (0..7).map(|i| trace("claude", &format!("p{i}"))).collect();
    repo.insert_many(&batch).await.unwrap();
    assert_eq!(repo.get(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(repo.count(Trace::MODEL.eq("claude")).await.unwrap(), 7);
    assert_eq!(repo.find_all_by_model("gpt").await.unwrap().len(), 2);
    let (mut cursor, mut seen) = (None, Vec::new());
    loop {
        let page = repo
            .find(Filter::all())
            .order_by(Trace::ID.asc())
            .page_after(cursor, 4)
            .await
            .unwrap();
        seen.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 9);
    assert!(
        seen.windows(2).all(|w| w[0].id < w[1].id),
        "pages in id order"
    );
    seen
}

#[reposmith::test(backends(mongo))]
async fn object_ids_work_on_mongodb_as_bson_object_ids(store: Store) {
    let mongo = store.mongo().unwrap();
    mongo.create_collections::<Trace>().await.unwrap();
    let seen = exercise(&mongo.repo::<Trace>()).await;
    let raw = mongo
        .database()
        .collection::<Document>("oid_traces")
        .find_one(doc! { "_id": Bson::ObjectId(reposmith::mongo::mongodb::bson::oid::ObjectId::from_bytes(seen[0].id.bytes())) })
        .await
        .unwrap()
        .expect("stored under its ObjectId");
    assert!(matches!(raw.get("_id"), Some(Bson::ObjectId(_))), "{raw:?}");
}

#[reposmith::test(backends(postgres))]
async fn object_ids_work_on_postgres_as_hex_text(store: Store) {
    let pg = store.postgres().unwrap();
    pg.create_tables::<Trace>().await.unwrap();
    let seen = exercise(&pg.repo::<Trace>()).await;
    let stored: String = sqlx::query_scalar("SELECT id FROM oid_traces ORDER BY id LIMIT 1")
        .fetch_one(pg.pool())
        .await
        .unwrap();
    assert_eq!(stored, seen[0].id.to_hex());
}
