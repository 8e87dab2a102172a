//! The BSON every field type is stored as, read back raw from a real server
//! (the mapping table of `reposmith-mongo`'s codec): what another service
//! reading the collection with its own driver sees, and what indexes and
//! `$jsonSchema` validators apply to. Each value also round-trips through
//! the repository unchanged.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use reposmith::mongo::mongodb::bson::spec::BinarySubtype;
use reposmith::mongo::mongodb::bson::{Bson, Document, doc};
use reposmith::prelude::*;
use reposmith::{Bit, ObjectId, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, DbEnum)]
enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Usage {
    prompt_tokens: i64,
    model: String,
    cost: f64,
}

/// One field of every storable type.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(backend = "mongo", collection = "every_type")]
struct EveryType {
    #[repo(id)]
    id: uuid::Uuid,
    text: String,
    flag: bool,
    small: i16,
    int: i32,
    big: i64,
    real: f32,
    double: f64,
    other_id: uuid::Uuid,
    object_id: ObjectId,
    at: DateTime<Utc>,
    day: NaiveDate,
    raw_json: serde_json::Value,
    #[repo(json)]
    usage: Usage,
    role: Role,
    tags: Vec<String>,
    missing: Option<String>,
    present: Option<i64>,
    #[repo(vector(dims = 3, distance = "cosine", index = "none"))]
    dense: Vector,
    #[repo(vector(dims = 3, distance = "l2", index = "none"))]
    half: HalfVector,
    #[repo(vector(dims = 5, distance = "l2", index = "none"))]
    sparse: SparseVector,
    #[repo(vector(dims = 4, distance = "hamming", index = "none"))]
    bits: Bit,
}

fn sample() -> EveryType {
    EveryType {
        id: uuid::Uuid::now_v7(),
        text: "héllo".into(),
        flag: true,
        small: -7,
        int: 70_000,
        big: 1 << 40,
        real: 0.5,
        double: -2.25,
        other_id: uuid::Uuid::from_u128(42),
        object_id: ObjectId::new(),
        at: Utc.timestamp_millis_opt(1_700_000_000_123).unwrap(),
        day: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        raw_json: serde_json::json!({"a": [1, 2.5, "x"], "b": {"c": null}}),
        usage: Usage {
            prompt_tokens: 12,
            model: "gpt".into(),
            cost: 0.25,
        },
        role: Role::Assistant,
        tags: vec!["a".into(), "b".into()],
        missing: None,
        present: Some(5),
        dense: Vector::from(vec![1.0, 0.5, 0.25]),
        half: HalfVector::from_f32_slice(&[1.0, 2.0, 3.0]),
        sparse: SparseVector::from_dense(&[0.0, 1.5, 0.0, 0.0, -2.0]),
        bits: Bit::new(&[true, false, true, true]),
    }
}

#[reposmith::test(backends(mongo))]
async fn every_field_type_has_its_documented_bson_form(store: Store) {
    let mongo = store.mongo().unwrap();
    mongo.create_collections::<EveryType>().await.unwrap();
    let repo = mongo.repo::<EveryType>();
    let entity = sample();
    let stored = repo.insert(&entity).await.unwrap();
    assert_eq!(stored, entity, "the returned entity is what was given");
    assert_eq!(repo.get(&entity.id).await.unwrap(), Some(entity.clone()));

    let raw: Document = mongo
        .database()
        .collection::<Document>("every_type")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    let get = |key: &str| {
        raw.get(key)
            .unwrap_or_else(|| panic!("{key} missing from {raw:?}"))
    };
    let uuid_of = |b: &Bson| match b {
        Bson::Binary(bin) if bin.subtype == BinarySubtype::Uuid => {
            uuid::Uuid::from_slice(&bin.bytes).unwrap()
        }
        other => panic!("not a subtype-4 binary: {other:?}"),
    };
    assert_eq!(uuid_of(get("_id")), entity.id, "the id is `_id`");
    assert!(raw.get("id").is_none(), "no second copy of the id");
    assert_eq!(get("text"), &Bson::String("héllo".into()));
    assert_eq!(get("flag"), &Bson::Boolean(true));
    assert_eq!(get("small"), &Bson::Int32(-7));
    assert_eq!(get("int"), &Bson::Int32(70_000));
    assert_eq!(get("big"), &Bson::Int64(1 << 40));
    assert_eq!(get("real"), &Bson::Double(0.5));
    assert_eq!(get("double"), &Bson::Double(-2.25));
    assert_eq!(uuid_of(get("other_id")), entity.other_id);
    match get("object_id") {
        Bson::ObjectId(oid) => assert_eq!(oid.bytes(), entity.object_id.bytes()),
        other => panic!("{other:?}"),
    }
    match get("at") {
        Bson::DateTime(t) => assert_eq!(t.timestamp_millis(), 1_700_000_000_123),
        other => panic!("{other:?}"),
    }
    match get("day") {
        Bson::DateTime(t) => {
            let midnight = Utc.with_ymd_and_hms(2026, 11, 24, 0, 0, 0).unwrap();
            assert_eq!(t.timestamp_millis(), midnight.timestamp_millis());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        get("raw_json"),
        &Bson::Document(doc! {
            "a": [Bson::Int64(1), Bson::Double(2.5), Bson::String("x".into())],
            "b": { "c": Bson::Null },
        })
    );
    assert_eq!(
        get("usage"),
        &Bson::Document(doc! { "prompt_tokens": Bson::Int64(12), "model": "gpt", "cost": 0.25 }),
        "a json field is a sub-document"
    );
    assert_eq!(get("role"), &Bson::String("assistant".into()));
    assert_eq!(get("tags"), &Bson::Array(vec!["a".into(), "b".into()]));
    assert_eq!(get("missing"), &Bson::Null, "None is an explicit null");
    assert_eq!(get("present"), &Bson::Int64(5));
    assert_eq!(
        get("dense"),
        &Bson::Array(vec![1.0.into(), 0.5.into(), 0.25.into()])
    );
    assert_eq!(
        get("half"),
        &Bson::Array(vec![1.0.into(), 2.0.into(), 3.0.into()])
    );
    assert_eq!(
        get("sparse"),
        &Bson::Document(doc! {
            "dims": 5,
            "indices": [1, 4],
            "values": [1.5, -2.0],
        })
    );
    assert_eq!(
        get("bits"),
        &Bson::Array(vec![true.into(), false.into(), true.into(), true.into()])
    );

    // Filters use the same forms: a sub-document path, a date, a uuid.
    assert_eq!(
        repo.count(EveryType::USAGE.path("model").eq("gpt"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(repo.count(EveryType::AT.eq(entity.at)).await.unwrap(), 1);
    assert_eq!(
        repo.count(EveryType::OTHER_ID.eq(entity.other_id))
            .await
            .unwrap(),
        1
    );
    assert_eq!(repo.count(EveryType::MISSING.is_null()).await.unwrap(), 1);
}

/// BSON dates hold whole milliseconds; an operand finer than that compares
/// as Postgres compares it at full precision, in both forms of each filter:
/// `created_at < now()` finds the rows stamped in the current millisecond.
#[reposmith::test(backends(mongo))]
async fn sub_millisecond_instants_compare_as_in_postgres(store: Store) {
    let mongo = store.mongo().unwrap();
    mongo.create_collections::<EveryType>().await.unwrap();
    let repo = mongo.repo::<EveryType>();
    repo.insert(&sample()).await.unwrap(); // at = ….123 s
    let at = |micros: i64| {
        Utc.timestamp_micros(1_700_000_000_000_000 + micros)
            .unwrap()
    };
    let t = at(123_500); // ….1235 s: after the stored instant, in its millisecond
    let cases: Vec<(&str, Filter<EveryType>, u64)> = vec![
        ("lt", EveryType::AT.lt(t), 1),
        ("le", EveryType::AT.le(t), 1),
        ("gt", EveryType::AT.gt(t), 0),
        ("ge", EveryType::AT.ge(t), 0),
        ("eq", EveryType::AT.eq(t), 0),
        ("ne", EveryType::AT.ne(t), 1),
        ("not lt", EveryType::AT.lt(t).not(), 0),
        ("not eq", EveryType::AT.eq(t).not(), 1),
        ("not ne", EveryType::AT.ne(t).not(), 0),
        ("gt below", EveryType::AT.gt(at(122_500)), 1),
        ("le below", EveryType::AT.le(at(122_500)), 0),
        ("between inside", EveryType::AT.between(at(122_500), t), 1),
        (
            "between after",
            EveryType::AT.between(at(123_200), at(123_800)),
            0,
        ),
        (
            "not between after",
            EveryType::AT.between(at(123_200), at(123_800)).not(),
            1,
        ),
        ("in", EveryType::AT.is_in([t]), 0),
        ("in exact", EveryType::AT.is_in([t, at(123_000)]), 1),
        ("not in", EveryType::AT.not_in([t]), 1),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(repo.count(filter).await.unwrap(), expected, "{name}");
    }
}
