//! Unit tests of the keyset model: sort keys, the "after" description,
//! cursor checks and page assembly, on a hand-written entity.

use std::cell::Cell;

use futures_util::FutureExt;

use super::*;
use crate::filter::Column;
use crate::repository::FindQuery;
use crate::schema::{ColumnRole, EntitySchema, IdStrategy};
use crate::{Filter, Page};

static COLUMNS: [ColumnDef; 4] = [
    ColumnDef::new("id", "id", ColumnType::BigInt, false).with_role(ColumnRole::Id),
    ColumnDef::new("title", "title", ColumnType::Text, false),
    ColumnDef::new("rank", "rank", ColumnType::Int, true),
    ColumnDef::new("meta", "meta", ColumnType::Json, false),
];
static SCHEMA: EntitySchema =
    EntitySchema::new("Row", "rows", &COLUMNS, 0, IdStrategy::ClientUuid, &[]);

/// An entity that keeps its stored values as they are.
#[derive(Debug, PartialEq)]
struct Row {
    id: i64,
    values: Vec<Value>,
}

impl Entity for Row {
    type Id = i64;
    const SCHEMA: &'static EntitySchema = &SCHEMA;

    fn id(&self) -> &i64 {
        &self.id
    }

    fn to_values(&self) -> Result<Vec<Value>> {
        Ok(self.values.clone())
    }

    fn from_values(values: Vec<Value>) -> Result<Self> {
        let Value::I64(id) = values[0] else {
            return Err(Error::invalid("Row", "id", "not a bigint"));
        };
        Ok(Row { id, values })
    }
}

const TITLE: Column<Row, String> = Column::at(1);
const RANK: Column<Row, Option<i32>> = Column::at(2);
const META: Column<Row, serde_json::Value> = Column::at(3);

fn row(id: i64, title: &str, rank: Option<i32>) -> Vec<Value> {
    let rank = rank.map_or(Value::Null, Value::I32);
    vec![Value::I64(id), Value::Text(title.into()), rank, Value::Null]
}

fn reason(error: Error) -> String {
    match error {
        Error::InvalidInput { reason, .. } => reason,
        other => panic!("not invalid input: {other:?}"),
    }
}

fn after(order: &[Order<Row>], cursor: &[Value]) -> After {
    let keyset = Keyset::new(order).unwrap();
    keyset.after(&Cursor::encode(cursor)).unwrap()
}

fn step(index: usize, test: KeyTest) -> (usize, KeyTest) {
    (index, test)
}

/// Each disjunct as (equal prefix, step), keys named by schema position.
type Shape = Vec<(Vec<(usize, KeyTest)>, (usize, KeyTest))>;

fn shape(after: &After) -> Shape {
    let condition = |c: &Condition| (c.key.index, c.test.clone());
    let disjuncts = after.disjuncts();
    let shape = disjuncts
        .iter()
        .map(|d| (d.equal.iter().map(condition).collect(), condition(&d.step)));
    shape.collect()
}

#[test]
fn the_id_is_appended_ascending() {
    let keyset = Keyset::new(&[TITLE.desc(), RANK.asc()]).unwrap();
    let keys: Vec<(usize, bool)> = keyset
        .keys()
        .iter()
        .map(|k| (k.index, k.descending))
        .collect();
    assert_eq!(keys, [(1, true), (2, false), (0, false)]);
    assert!(keyset.keys()[0].nulls_first() && !keyset.keys()[1].nulls_first());
    let bare = Keyset::new::<Row>(&[]).unwrap();
    assert_eq!(bare.keys().len(), 1);
    assert_eq!(bare.keys()[0].column.name, "id");
}

#[test]
fn unordered_and_unknown_columns_are_rejected() {
    let err = Keyset::new(&[TITLE.asc(), META.desc()]).unwrap_err();
    assert_eq!(reason(err), "cannot sort by this type");
    let err = Keyset::new(&[Column::<Row, i32>::at(9).asc()]).unwrap_err();
    assert_eq!(reason(err), "no column at position 9");
}

#[test]
fn row_comparison_only_for_ascending_non_null_keys() {
    let id = Value::I64(7);
    let text = Value::Text("m".into());
    assert!(after(&[TITLE.asc()], &[text.clone(), id.clone()]).row_comparison());
    assert!(after(&[], std::slice::from_ref(&id)).row_comparison());
    assert!(!after(&[TITLE.desc()], &[text, id.clone()]).row_comparison());
    assert!(!after(&[RANK.asc()], &[Value::I32(1), id]).row_comparison());
}

#[test]
fn nulls_come_last_ascending_and_first_descending() {
    let id = Value::I64(7);
    let m = Value::Text("m".into());
    let desc = after(
        &[RANK.desc(), TITLE.asc()],
        &[Value::Null, m.clone(), id.clone()],
    );
    let expected: Shape = vec![
        (vec![], step(2, KeyTest::IsNotNull)),
        (
            vec![step(2, KeyTest::IsNull)],
            step(1, KeyTest::Greater(m.clone())),
        ),
        (
            vec![step(2, KeyTest::IsNull), step(1, KeyTest::Equal(m))],
            step(0, KeyTest::Greater(id.clone())),
        ),
    ];
    assert_eq!(shape(&desc), expected);

    // Nothing sorts after a NULL in an ascending key: only the id can step.
    let asc_null = after(&[RANK.asc()], &[Value::Null, id.clone()]);
    let expected: Shape = vec![(
        vec![step(2, KeyTest::IsNull)],
        step(0, KeyTest::Greater(id.clone())),
    )];
    assert_eq!(shape(&asc_null), expected);

    let three = Value::I32(3);
    let asc = after(&[RANK.asc()], &[three.clone(), id.clone()]);
    assert_eq!(
        shape(&asc)[0],
        (vec![], step(2, KeyTest::GreaterOrNull(three.clone())))
    );
    let desc = after(&[RANK.desc()], &[three.clone(), id.clone()]);
    let expected: Shape = vec![
        (vec![], step(2, KeyTest::Less(three.clone()))),
        (
            vec![step(2, KeyTest::Equal(three))],
            step(0, KeyTest::Greater(id)),
        ),
    ];
    assert_eq!(shape(&desc), expected);
}

#[test]
fn tampered_cursors_are_invalid_input() {
    let keyset = Keyset::new(&[TITLE.asc()]).unwrap();
    let cases = [
        ("", "not a cursor this query produced"),
        ("{}", "not a cursor this query produced"),
        ("[7]", "holds 1 sort keys, the query has 2"),
        ("[5, 7]", "a key is not a Text"),
        ("[null, 7]", "a non-null sort key is null"),
        ("[\"m\", null]", "a non-null sort key is null"),
    ];
    for (text, expected) in cases {
        let err = keyset.after(&Cursor::parse(text)).unwrap_err();
        assert_eq!(reason(err), expected, "{text}");
    }
}

#[test]
fn a_cursor_holds_the_sort_keys_of_a_row() {
    let keyset = Keyset::new(&[RANK.desc(), TITLE.asc()]).unwrap();
    let cursor = keyset.cursor_of(&row(7, "b", None));
    assert_eq!(
        cursor,
        Cursor::encode(&[Value::Null, Value::Text("b".into()), Value::I64(7)])
    );
    let back = keyset.after(&cursor).unwrap();
    let values: Vec<&Value> = back.position().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        [&Value::Null, &Value::Text("b".into()), &Value::I64(7)]
    );
}

/// Runs [`fetch_page`] over `stored`, recording the limit the backend was asked for.
fn run_page(
    order: Vec<Order<Row>>,
    size: u64,
    stored: &[Vec<Value>],
) -> (Result<Page<Row>>, Option<u64>) {
    let asked = Cell::new(None);
    let mut query = FindQuery::new(Filter::all());
    query.order = order;
    let fetch = |_query, limit: u64| {
        asked.set(Some(limit));
        let n = usize::try_from(limit).unwrap_or(usize::MAX);
        let rows = stored.iter().take(n).cloned().collect();
        async move { Ok(rows) }
    };
    let result = fetch_page(query, size, fetch)
        .now_or_never()
        .expect("ready");
    (result, asked.get())
}

#[test]
fn a_page_fetches_one_extra_row_and_trims_it() {
    let stored: Vec<Vec<Value>> = (1..=5).map(|i| row(i, "t", Some(i as i32))).collect();
    let (result, asked) = run_page(vec![RANK.desc()], 3, &stored);
    let page = result.unwrap();
    assert_eq!(asked, Some(4));
    let ids: Vec<i64> = page.items.iter().map(|r| r.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let expected = Cursor::encode(&[Value::I32(3), Value::I64(3)]);
    assert_eq!(page.next, Some(expected));

    let (result, asked) = run_page(vec![], 5, &stored);
    let last = result.unwrap();
    assert_eq!((last.items.len(), asked), (5, Some(6)));
    assert_eq!(last.next, None, "no row beyond the page: it is the last");

    let (result, asked) = run_page(vec![], u64::MAX, &stored);
    assert_eq!((result.unwrap().items.len(), asked), (5, Some(u64::MAX)));
}

#[test]
fn invalid_pages_fail_before_fetching() {
    let (result, asked) = run_page(vec![], 0, &[]);
    assert_eq!(reason(result.unwrap_err()), "page size must be at least 1");
    assert_eq!(asked, None);
    let (result, asked) = run_page(vec![META.asc()], 2, &[]);
    assert_eq!(reason(result.unwrap_err()), "cannot sort by this type");
    assert_eq!(asked, None);
}
