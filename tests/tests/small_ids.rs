//! `i32` and `i16` entity ids on both backends, identity (the database
//! assigns them) and assigned (`#[repo(id(assigned))]`), and integer fields
//! over columns of another width: an `i64` field over a hand-made `serial`
//! table reads, an `i32` field over a `bigint` column holding more than
//! `i32::MAX` is a decode error naming the column, and MongoDB's id counter
//! refuses to pass `i16::MAX` instead of wrapping.

use std::fmt::Debug;

use reposmith::mongo::mongodb::bson::{Bson, Document, doc};
use reposmith::postgres::sqlx;
use reposmith::prelude::*;
use reposmith::{IdStrategy, MongoBackend, MongoConfig, Order, PgBackend};
use reposmith_tests::{database_url, mongodb_url, unique_name};

/// A theatre seat: an `integer` identity id.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "small_seats")]
struct Seat {
    #[repo(id)]
    id: i32,
    #[repo(index)]
    label: String,
}

/// A feature flag: a `smallint` identity id, versioned.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "small_flags")]
struct Flag {
    #[repo(id)]
    id: i16,
    #[repo(index)]
    label: String,
    #[repo(version)]
    version: i64,
}

/// A country code: an `integer` id the application assigns.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "small_codes")]
struct Code {
    #[repo(id(assigned))]
    code: i32,
    #[repo(index)]
    label: String,
}

/// A level: a `smallint` id the application assigns.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "small_levels")]
struct Level {
    #[repo(id(assigned))]
    level: i16,
    #[repo(index)]
    label: String,
}

/// What the shared steps need of each entity.
trait SmallId: Entity + Clone + PartialEq + Debug {
    /// A new entity with id `id` (ignored by identity ids) and `label`.
    fn make(id: i64, label: &str) -> Self;
    fn number(&self) -> i64;
    fn label(&self) -> &str;
    fn set_label(&mut self, label: &str);
    fn id_of(n: i64) -> Self::Id;
    fn by_id() -> Order<Self>;
    fn id_gt(n: i64) -> Filter<Self>;
    fn id_in(ns: &[i64]) -> Filter<Self>;
    fn label_is(label: &str) -> Filter<Self>;
}

macro_rules! small_id {
    ($entity:ident, $id:ident: $ty:ty, $column:ident, { $($extra:tt)* }) => {
        impl SmallId for $entity {
            fn make(id: i64, label: &str) -> Self {
                $entity {
                    $id: <$ty>::try_from(id).unwrap(),
                    label: label.to_owned(),
                    $($extra)*
                }
            }
            fn number(&self) -> i64 {
                i64::from(self.$id)
            }
            fn label(&self) -> &str {
                &self.label
            }
            fn set_label(&mut self, label: &str) {
                self.label = label.to_owned();
            }
            fn id_of(n: i64) -> $ty {
                <$ty>::try_from(n).unwrap()
            }
            fn by_id() -> Order<Self> {
                $entity::$column.asc()
            }
            fn id_gt(n: i64) -> Filter<Self> {
                $entity::$column.gt(Self::id_of(n))
            }
            fn id_in(ns: &[i64]) -> Filter<Self> {
                $entity::$column.is_in(ns.iter().map(|&n| Self::id_of(n)))
            }
            fn label_is(label: &str) -> Filter<Self> {
                $entity::LABEL.eq(label)
            }
        }
    };
}

small_id!(Seat, id: i32, ID, {});
small_id!(Flag, id: i16, ID, { version: 0 });
small_id!(Code, code: i32, CODE, {});
small_id!(Level, level: i16, LEVEL, {});

/// Rows `insert_many` stores past Postgres' multi-row INSERT threshold, so
/// the binary COPY path runs too.
const MANY: usize = 600;

/// Every page of the whole table by id, each cursor sent through its text
/// form as a client would; ids strictly increasing.
async fn all_pages<E: SmallId, R: Repository<E>>(repo: &R, size: u64) -> Vec<E> {
    let (mut cursor, mut seen) = (None::<Cursor>, Vec::new());
    loop {
        let page = repo
            .find(Filter::all())
            .order_by(E::by_id())
            .page_after(cursor, size)
            .await
            .unwrap();
        assert!(page.items.len() as u64 <= size);
        seen.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(Cursor::parse(next.to_string())),
            None => break,
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0].number() < w[1].number()),
        "pages in id order, none repeated"
    );
    seen
}

/// get, get_many, filters on the id, update and delete of stored rows.
async fn read_update_delete<E: SmallId, R: Repository<E>>(repo: &R, stored: &[E]) {
    let first = &stored[0];
    assert_eq!(
        repo.get(&E::id_of(first.number())).await.unwrap().as_ref(),
        Some(first)
    );
    let some: Vec<i64> = stored.iter().step_by(97).map(E::number).collect();
    let ids: Vec<E::Id> = some.iter().map(|&n| E::id_of(n)).collect();
    let mut got: Vec<i64> = repo
        .get_many(&ids)
        .await
        .unwrap()
        .iter()
        .map(E::number)
        .collect();
    got.sort_unstable();
    assert_eq!(got, some);
    assert_eq!(
        repo.count(E::id_in(&some)).await.unwrap(),
        some.len() as u64
    );
    let above = stored[stored.len() - 5].number();
    assert_eq!(repo.count(E::id_gt(above)).await.unwrap(), 4);

    let mut changed = first.clone();
    changed.set_label("renamed");
    let updated = repo.update(&changed).await.unwrap();
    assert_eq!(
        (updated.number(), updated.label()),
        (first.number(), "renamed")
    );
    let read = repo.get(&E::id_of(first.number())).await.unwrap().unwrap();
    assert_eq!(read.label(), "renamed");

    assert!(repo.delete(&E::id_of(first.number())).await.unwrap());
    assert_eq!(repo.get(&E::id_of(first.number())).await.unwrap(), None);
    assert!(!repo.delete(&E::id_of(first.number())).await.unwrap());
}

/// Identity ids: assigned by the database on insert and insert_many
/// (both of Postgres' statement shapes), increasing, and usable everywhere
/// an id is.
async fn identity<E: SmallId, R: Repository<E>>(repo: &R) {
    assert_eq!(E::SCHEMA.id_strategy, IdStrategy::Identity);
    let one = repo.insert(&E::make(0, "one")).await.unwrap();
    assert!(one.number() >= 1, "the database assigns the id: {one:?}");
    let few: Vec<E> = (0..3).map(|i| E::make(0, &format!("few{i}"))).collect();
    assert_eq!(repo.insert_many(&few).await.unwrap(), 3);
    let many: Vec<E> = (0..MANY).map(|i| E::make(0, &format!("many{i}"))).collect();
    assert_eq!(repo.insert_many(&many).await.unwrap(), MANY as u64);
    let two = repo.insert(&E::make(0, "two")).await.unwrap();
    assert!(two.number() > one.number());

    let stored = all_pages(repo, 64).await;
    assert_eq!(stored.len(), MANY + 5);
    assert_eq!(stored[0], one);
    assert_eq!(stored.last(), Some(&two));
    assert_eq!(repo.count(E::label_is("many7")).await.unwrap(), 1);
    read_update_delete(repo, &stored).await;
}

/// Assigned ids: stored as given, negative and extreme values included;
/// a second row with a taken id is a conflict.
async fn assigned<E: SmallId, R: Repository<E>>(repo: &R, max: i64, min: i64) {
    assert_eq!(E::SCHEMA.id_strategy, IdStrategy::Assigned);
    let top = repo.insert(&E::make(max, "top")).await.unwrap();
    assert_eq!(top.number(), max, "a given id is kept");
    let bottom = repo.insert(&E::make(min, "bottom")).await.unwrap();
    assert_eq!(bottom.number(), min);
    let few: Vec<E> = (1..=3).map(|i| E::make(-i, &format!("few{i}"))).collect();
    assert_eq!(repo.insert_many(&few).await.unwrap(), 3);
    let many: Vec<E> = (0..MANY as i64)
        .map(|i| E::make(i * 7, &format!("many{i}")))
        .collect();
    assert_eq!(repo.insert_many(&many).await.unwrap(), MANY as u64);
    let err = repo.insert(&E::make(max, "again")).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");

    let stored = all_pages(repo, 50).await;
    assert_eq!(stored.len(), MANY + 5);
    assert_eq!(stored[0].number(), min);
    assert_eq!(stored.last().map(E::number), Some(max));
    assert_eq!(stored[1].number(), -3, "negative ids sort before the rest");
    read_update_delete(repo, &stored).await;
}

/// A fresh schema on the test server, and a backend whose search_path is it.
struct Pg {
    admin: PgBackend,
    pg: PgBackend,
    namespace: String,
}

impl Pg {
    async fn new(prefix: &str) -> Pg {
        let admin = PgBackend::connect(&reposmith::PgConfig::new(database_url()))
            .await
            .unwrap();
        let namespace = unique_name(prefix);
        admin
            .execute(&format!("CREATE SCHEMA \"{namespace}\""))
            .await;
        let url = database_url();
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}options=-c%20search_path%3D{namespace}");
        let pg = PgBackend::connect(&reposmith_tests::pg_config(url))
            .await
            .unwrap();
        Pg {
            admin,
            pg,
            namespace,
        }
    }

    /// `data_type` and `is_identity` of `table.column`.
    async fn column(&self, table: &str, column: &str) -> (String, String) {
        sqlx::query_as(
            "SELECT data_type::text, is_identity::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 AND column_name = $3",
        )
        .bind(&self.namespace)
        .bind(table)
        .bind(column)
        .fetch_one(self.admin.pool())
        .await
        .unwrap()
    }

    async fn cleanup(self) {
        self.pg.close().await;
        let drop = format!("DROP SCHEMA \"{}\" CASCADE", self.namespace);
        self.admin.execute(&drop).await;
        self.admin.close().await;
    }
}

trait Execute {
    async fn execute(&self, sql: &str);
}

impl Execute for PgBackend {
    async fn execute(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(self.pool())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn i32_and_i16_ids_work_on_postgres() {
    let db = Pg::new("small_ids").await;
    db.pg.create_tables::<Seat>().await.unwrap();
    db.pg.create_tables::<Flag>().await.unwrap();
    db.pg.create_tables::<Code>().await.unwrap();
    db.pg.create_tables::<Level>().await.unwrap();
    assert_eq!(
        db.column("small_seats", "id").await,
        ("integer".into(), "YES".into())
    );
    assert_eq!(
        db.column("small_flags", "id").await,
        ("smallint".into(), "YES".into())
    );
    assert_eq!(
        db.column("small_codes", "code").await,
        ("integer".into(), "NO".into())
    );
    assert_eq!(
        db.column("small_levels", "level").await,
        ("smallint".into(), "NO".into())
    );
    identity(&db.pg.repo::<Seat>()).await;
    identity(&db.pg.repo::<Flag>()).await;
    assigned(
        &db.pg.repo::<Code>(),
        i64::from(i32::MAX),
        i64::from(i32::MIN),
    )
    .await;
    assigned(
        &db.pg.repo::<Level>(),
        i64::from(i16::MAX),
        i64::from(i16::MIN),
    )
    .await;
    db.cleanup().await;
}

/// A MongoDB database of its own.
async fn mongo(prefix: &str) -> MongoBackend {
    let config = MongoConfig::new(mongodb_url()).database(unique_name(prefix));
    MongoBackend::connect(&config).await.unwrap()
}

#[tokio::test]
async fn i32_and_i16_ids_work_on_mongodb_as_int32() {
    let mongo = mongo("small_ids").await;
    mongo.create_collections::<Seat>().await.unwrap();
    mongo.create_collections::<Flag>().await.unwrap();
    mongo.create_collections::<Code>().await.unwrap();
    mongo.create_collections::<Level>().await.unwrap();
    identity(&mongo.repo::<Seat>()).await;
    identity(&mongo.repo::<Flag>()).await;
    assigned(
        &mongo.repo::<Code>(),
        i64::from(i32::MAX),
        i64::from(i32::MIN),
    )
    .await;
    assigned(
        &mongo.repo::<Level>(),
        i64::from(i16::MAX),
        i64::from(i16::MIN),
    )
    .await;
    for collection in ["small_seats", "small_flags", "small_codes", "small_levels"] {
        let raw = mongo
            .database()
            .collection::<Document>(collection)
            .find_one(doc! {})
            .await
            .unwrap()
            .expect("a stored document");
        assert!(
            matches!(raw.get("_id"), Some(Bson::Int32(_))),
            "{collection}: {raw:?}"
        );
    }
    mongo.database().drop().await.unwrap();
    mongo.close().await;
}

/// MongoDB's counter for an `i16` id hands out ids up to `i16::MAX` and
/// then refuses, naming the id field and the limit; the counter is not
/// moved by a refused reservation, so a smaller one still fits.
#[tokio::test]
async fn the_mongodb_counter_stops_at_the_largest_i16() {
    let mongo = mongo("small_ids_max").await;
    mongo.create_collections::<Flag>().await.unwrap();
    let counters = mongo
        .database()
        .collection::<Document>(reposmith_mongo::COUNTERS);
    counters
        .insert_one(doc! { "_id": "small_flags", "seq": 32_760i64 })
        .await
        .unwrap();
    let repo = mongo.repo::<Flag>();
    let near: Vec<Flag> = (0..5).map(|i| Flag::make(0, &format!("near{i}"))).collect();
    assert_eq!(repo.insert_many(&near).await.unwrap(), 5);
    let ids: Vec<i64> = all_pages(&repo, 10)
        .await
        .iter()
        .map(Flag::number)
        .collect();
    assert_eq!(ids, [32_761, 32_762, 32_763, 32_764, 32_765]);

    let three: Vec<Flag> = (0..3).map(|i| Flag::make(0, &format!("over{i}"))).collect();
    let err = repo.insert_many(&three).await.unwrap_err();
    match &err {
        Error::InvalidInput { field, reason, .. } => {
            assert_eq!(field, "id");
            assert!(reason.contains("32767, the largest i16"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        5,
        "nothing stored"
    );
    assert_eq!(repo.insert(&Flag::make(0, "a")).await.unwrap().id, 32_766);
    assert_eq!(repo.insert(&Flag::make(0, "b")).await.unwrap().id, i16::MAX);
    let err = repo.insert(&Flag::make(0, "c")).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { field, .. } if field == "id"),
        "{err:?}"
    );
    let counter = counters
        .find_one(doc! { "_id": "small_flags" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        counter.get_i64("seq").unwrap(),
        32_767,
        "never past i16::MAX"
    );
    assert_eq!(repo.count(Filter::all()).await.unwrap(), 7);
    mongo.database().drop().await.unwrap();
    mongo.close().await;
}

/// A `smallint` identity refuses an id past `i16::MAX` as MongoDB's
/// counter does: invalid input naming the id field.
#[tokio::test]
async fn the_postgres_identity_stops_at_the_largest_i16() {
    let db = Pg::new("small_ids_max").await;
    db.pg.create_tables::<Flag>().await.unwrap();
    db.pg
        .execute("ALTER TABLE small_flags ALTER COLUMN id RESTART WITH 32766")
        .await;
    let repo = db.pg.repo::<Flag>();
    assert_eq!(repo.insert(&Flag::make(0, "a")).await.unwrap().id, 32_766);
    assert_eq!(repo.insert(&Flag::make(0, "b")).await.unwrap().id, i16::MAX);
    let err = repo.insert(&Flag::make(0, "c")).await.unwrap_err();
    match &err {
        Error::InvalidInput { field, reason, .. } => {
            assert_eq!(field, "id");
            assert!(reason.starts_with("no identity id left"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    db.cleanup().await;
}

/// A user mapping a table created by hand with a `serial` key and
/// `integer` columns, with `i64` fields.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "legacy_users", backend = "postgres")]
struct LegacyUser {
    #[repo(id)]
    id: i64,
    #[repo(index)]
    name: String,
    visits: i64,
    scores: Vec<i64>,
}

#[tokio::test]
async fn i64_fields_read_and_write_a_hand_made_serial_table() {
    let db = Pg::new("small_legacy").await;
    db.admin
        .execute(&format!(
            "CREATE TABLE \"{}\".legacy_users (id serial PRIMARY KEY, name text NOT NULL, \
             visits integer NOT NULL DEFAULT 0, scores smallint[] NOT NULL DEFAULT '{{}}')",
            db.namespace
        ))
        .await;
    db.admin
        .execute(&format!(
            "INSERT INTO \"{}\".legacy_users (name, visits, scores) VALUES ('ada', 3, '{{1,2}}')",
            db.namespace
        ))
        .await;
    let repo = db.pg.repo::<LegacyUser>();
    let ada = repo.get(&1).await.unwrap().expect("the hand-inserted row");
    assert_eq!(
        ada,
        LegacyUser {
            id: 1,
            name: "ada".into(),
            visits: 3,
            scores: vec![1, 2],
        }
    );
    let user = |name: &str| LegacyUser {
        id: 0,
        name: name.to_owned(),
        visits: 1,
        scores: vec![-5],
    };
    let bob = repo.insert(&user("bob")).await.unwrap();
    assert_eq!(bob.id, 2, "the serial's sequence assigns the id");
    let few: Vec<LegacyUser> = (0..3).map(|i| user(&format!("few{i}"))).collect();
    assert_eq!(repo.insert_many(&few).await.unwrap(), 3);
    let mut seen = repo
        .find(Filter::all())
        .order_by(LegacyUser::ID.asc())
        .await
        .unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(
        seen.iter().map(|u| u.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    seen[1].visits = 41;
    assert_eq!(repo.update(&seen[1]).await.unwrap().visits, 41);
    assert_eq!(repo.count(LegacyUser::VISITS.gt(40)).await.unwrap(), 1);
    let page = repo
        .find(Filter::all())
        .order_by(LegacyUser::ID.asc())
        .page_after(None, 2)
        .await
        .unwrap();
    let rest = repo
        .find(Filter::all())
        .order_by(LegacyUser::ID.asc())
        .page_after(page.next, 10)
        .await
        .unwrap();
    assert_eq!(
        rest.items.iter().map(|u| u.id).collect::<Vec<_>>(),
        [3, 4, 5]
    );

    // A value the narrower column cannot hold is refused by the server
    // (which does not say which column).
    let mut huge = seen[1].clone();
    huge.visits = i64::from(i32::MAX) + 1;
    let err = repo.update(&huge).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput { reason, .. } if reason.contains("out of range")),
        "{err:?}"
    );

    // insert_many's binary COPY sends each integer at its column's width.
    let many: Vec<LegacyUser> = (0..MANY).map(|i| user(&format!("many{i}"))).collect();
    assert_eq!(repo.insert_many(&many).await.unwrap(), MANY as u64);
    let last = repo.get(&(5 + MANY as i64)).await.unwrap().unwrap();
    assert_eq!((last.visits, last.scores), (1, vec![-5]));
    let mut too_big = many.clone();
    too_big[321].scores = vec![1, 40_000];
    let err = repo.insert_many(&too_big).await.unwrap_err();
    match &err {
        Error::InvalidInput {
            field, reason, row, ..
        } => {
            assert_eq!(field, "scores");
            assert_eq!(row.map(|r| r.index), Some(321));
            assert!(
                reason.contains("40000 does not fit column \"scores\" (smallint: -32768..=32767)"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        repo.count(Filter::all()).await.unwrap(),
        5 + MANY as u64,
        "nothing stored"
    );
    db.cleanup().await;
}

/// An `i32` field over a `bigint` column: values that fit read, one that
/// does not is a decode error naming the column and `i32`'s range.
#[derive(Debug, Clone, PartialEq, Repository)]
#[repo(table = "wide_counters")]
struct Counter {
    #[repo(id(assigned))]
    id: i32,
    #[repo(column = "total_hits")]
    hits: i32,
}

#[tokio::test]
async fn an_i32_field_over_a_bigint_column_refuses_values_beyond_i32_on_postgres() {
    let db = Pg::new("small_wide").await;
    db.admin
        .execute(&format!(
            "CREATE TABLE \"{}\".wide_counters (id bigint PRIMARY KEY, total_hits bigint NOT NULL); \
             INSERT INTO \"{0}\".wide_counters VALUES (1, 2147483647), (2, 2147483648)",
            db.namespace
        ))
        .await;
    let repo = db.pg.repo::<Counter>();
    assert_eq!(
        repo.get(&1).await.unwrap(),
        Some(Counter {
            id: 1,
            hits: i32::MAX
        })
    );
    let err = repo.get(&2).await.unwrap_err();
    assert_out_of_range(&err);
    let err = repo.find(Filter::all()).await.unwrap_err();
    assert_out_of_range(&err);
    db.cleanup().await;
}

#[tokio::test]
async fn an_i32_field_over_an_int64_value_refuses_values_beyond_i32_on_mongodb() {
    let mongo = mongo("small_wide").await;
    let raw = mongo.database().collection::<Document>("wide_counters");
    raw.insert_many([
        doc! { "_id": 1i64, "total_hits": 2_147_483_647i64 },
        doc! { "_id": 2i64, "total_hits": 2_147_483_648i64 },
    ])
    .await
    .unwrap();
    let repo = mongo.repo::<Counter>();
    assert_eq!(
        repo.get(&1).await.unwrap(),
        Some(Counter {
            id: 1,
            hits: i32::MAX
        })
    );
    let err = repo.get(&2).await.unwrap_err();
    assert_out_of_range(&err);
    let err = repo.find(Filter::all()).await.unwrap_err();
    assert_out_of_range(&err);
    mongo.database().drop().await.unwrap();
    mongo.close().await;
}

fn assert_out_of_range(err: &Error) {
    match err {
        Error::Decode {
            entity,
            field,
            source,
        } => {
            assert_eq!((*entity, *field), ("Counter", "hits"));
            assert_eq!(source.expected, "i32");
            assert_eq!(
                source.found,
                "2147483648 in column \"total_hits\", outside i32's range -2147483648..=2147483647"
            );
        }
        other => panic!("{other:?}"),
    }
}
