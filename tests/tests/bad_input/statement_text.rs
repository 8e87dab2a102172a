//! No value ever reaches the SQL text: every public repository method runs
//! with a canary in each argument against a PostgreSQL of the test's own
//! that logs every statement it receives (`log_statement = all`, with bound
//! parameters kept out of the log: `log_parameter_max_length = 0`). The
//! server's log is then the text of everything sent, as the server read
//! it, COPY and raw statements included; the canary must not be in it.
//! Each method must also have left at least one statement on the entity's
//! table in the log, so a method that logged nothing cannot pass unseen.

use futures_util::StreamExt;
use reposmith::postgres::sqlx::{self, AssertSqlSafe};
use reposmith::{Filter, PgBackend, PgConfig, Repository, Vector, VectorSearch};

use reposmith_tests::own_postgres::OwnPostgres;
use serde_json::json;

/// In every string argument; a number's text below.
const CANARY: &str = "Cn4ry-5eed-x9";
/// In every vector; its decimal text must not appear either.
const CANARY_FLOAT: f32 = 0.618_034;

/// Every kind of column a statement binds: text, unique, indexed, array,
/// JSON, a full-text document and a vector, with a version.
#[derive(Debug, Clone, PartialEq, reposmith::Repository)]
#[repo(table = "canary_docs")]
struct Leaky {
    #[repo(id)]
    key: String,
    #[repo(unique)]
    title: String,
    #[repo(index)]
    kind: String,
    #[repo(full_text)]
    body: String,
    tags: Vec<String>,
    #[repo(json)]
    meta: serde_json::Value,
    #[repo(vector(dims = 3, distance = "cosine", index = "hnsw"))]
    embedding: Vector,
    #[repo(version)]
    version: i64,
}

fn leaky(n: usize) -> Leaky {
    let c = format!("{CANARY}-{n}");
    Leaky {
        key: c.clone(),
        title: format!("{c} title"),
        kind: CANARY.to_owned(),
        body: format!("{c} body {CANARY}"),
        tags: vec![c.clone(), CANARY.to_owned()],
        meta: json!({ CANARY: c, "nested": { "k": [CANARY] } }),
        embedding: Vector::from(vec![CANARY_FLOAT, 0.5, n as f32 + 1.0]),
        version: 0,
    }
}

/// A filter with the canary in every kind of operand.
fn canary_filter() -> Filter<Leaky> {
    Leaky::TITLE.ne(CANARY)
        & Leaky::KIND.eq(CANARY)
        & Leaky::TAGS.ne(vec![CANARY.to_owned()])
        & Leaky::BODY.contains(CANARY)
        & Leaky::META.path(CANARY).has_key(CANARY).not()
        & Leaky::KEY.not_in([CANARY])
}

/// The server's log since `from`, and its new length.
fn logged_since(server: &OwnPostgres, from: usize) -> (String, usize) {
    let log = server.log();
    (log.get(from..).unwrap_or_default().to_owned(), log.len())
}

#[tokio::test]
async fn no_repository_method_puts_a_value_into_the_statement_text() {
    let Some(server) = OwnPostgres::start() else {
        eprintln!(
            "not run here: no PostgreSQL binaries of the project's own (REPOSMITH_PG_BIN_DIR)"
        );
        return;
    };
    let admin = PgBackend::connect(&PgConfig::new(server.url()))
        .await
        .unwrap();
    for setting in [
        "CREATE EXTENSION IF NOT EXISTS vector",
        "ALTER SYSTEM SET log_statement = 'all'",
        "ALTER SYSTEM SET log_parameter_max_length = 0",
        "ALTER SYSTEM SET log_parameter_max_length_on_error = 0",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::raw_sql(AssertSqlSafe(setting))
            .execute(admin.pool())
            .await
            .unwrap();
    }
    admin.close().await;
    let pg = PgBackend::connect(&PgConfig::new(server.url()))
        .await
        .unwrap();
    pg.create_tables::<Leaky>().await.unwrap();
    let repo = pg.repo::<Leaky>();

    let (_, mut at) = logged_since(&server, 0);
    let mut covered = Vec::new();
    // Runs one method and holds the log to the property.
    macro_rules! method {
        ($name:literal, $call:expr) => {{
            let outcome = $call;
            let (sent, next) = logged_since(&server, at);
            at = next;
            assert!(
                sent.contains("canary_docs"),
                "{}: no statement on the table was logged:\n{sent}",
                $name
            );
            assert!(
                !sent.contains(CANARY) && !sent.contains(&CANARY_FLOAT.to_string()),
                "{}: a value reached the SQL text:\n{sent}",
                $name
            );
            covered.push($name);
            outcome
        }};
    }

    let first = method!("insert", repo.insert(&leaky(0)).await.unwrap());
    method!("insert_many (VALUES)", {
        let rows: Vec<Leaky> = (1..11).map(leaky).collect();
        repo.insert_many(&rows).await.unwrap()
    });
    method!("insert_many (COPY)", {
        let rows: Vec<Leaky> = (100..350).map(leaky).collect();
        repo.insert_many(&rows).await.unwrap()
    });
    method!("bulk_load", {
        let rows: Vec<Leaky> = (1000..1100).map(leaky).collect();
        repo.bulk_load(&rows).await.unwrap()
    });
    method!("get", repo.get(&first.key).await.unwrap().unwrap());
    method!("get_many", {
        let keys = [first.key.clone(), leaky(1).key, format!("{CANARY}-absent")];
        repo.get_many(&keys).await.unwrap()
    });
    let mut edited = first.clone();
    edited.body = format!("{CANARY} edited");
    let edited = method!("update", repo.update(&edited).await.unwrap());
    method!("upsert", repo.upsert(&edited).await.unwrap());
    method!("upsert_on", {
        let mut same_title = leaky(2);
        same_title.key = format!("{CANARY}-other");
        repo.upsert_on(&same_title, Leaky::TITLE).await.unwrap()
    });
    method!("find_by (finder)", {
        use LeakyRepository as _;
        repo.find_by_title(leaky(3).title).await.unwrap()
    });
    method!("find_all_by (finder)", {
        use LeakyRepository as _;
        repo.find_all_by_kind(CANARY).await.unwrap()
    });
    method!("find / fetch", {
        repo.find(canary_filter())
            .order_by(Leaky::TITLE.asc())
            .limit(5)
            .await
            .unwrap()
    });
    method!(
        "find one",
        repo.find(Leaky::TITLE.eq(leaky(4).title))
            .one()
            .await
            .unwrap()
    );
    method!("fetch_page (with a cursor)", {
        let page = repo
            .find(canary_filter())
            .order_by(Leaky::TITLE.desc())
            .page_after(None, 3)
            .await
            .unwrap();
        repo.find(canary_filter())
            .order_by(Leaky::TITLE.desc())
            .page_after(page.next, 3)
            .await
            .unwrap()
    });
    method!("stream", {
        let mut stream = repo.find(canary_filter()).stream();
        let mut n = 0;
        while let Some(row) = stream.next().await {
            row.unwrap();
            n += 1;
        }
        n
    });
    method!("count", repo.count(canary_filter()).await.unwrap());
    method!("exists", repo.exists(canary_filter()).await.unwrap());
    let probe = Vector::from(vec![CANARY_FLOAT, 0.5, 2.0]);
    method!("vector search", {
        repo.nearest(Leaky::EMBEDDING, probe.clone(), 5)
            .filter(canary_filter())
            .await
            .unwrap()
    });
    method!("vector search page", {
        let page = repo
            .nearest(Leaky::EMBEDDING, probe.clone(), 2)
            .page_after(None)
            .await
            .unwrap();
        repo.nearest(Leaky::EMBEDDING, probe.clone(), 2)
            .page_after(page.next)
            .await
            .unwrap()
    });
    method!("vector search with ef_search", {
        repo.nearest(Leaky::EMBEDDING, probe.clone(), 5)
            .ef_search(77)
            .await
            .unwrap()
    });
    method!(
        "full-text search",
        repo.search_text(CANARY, 5).await.unwrap()
    );
    method!("hybrid search", {
        use LeakyRepository as _;
        repo.search_hybrid(CANARY, probe.clone(), 5)
            .filter(canary_filter())
            .await
            .unwrap()
    });
    method!("delete", repo.delete(&edited.key).await.unwrap());
    method!(
        "delete_where",
        repo.delete_where(canary_filter()).await.unwrap()
    );
    method!("unit of work", {
        let unit = pg.begin().await.unwrap();
        let in_unit = unit.repo::<Leaky>();
        in_unit.insert(&leaky(5000)).await.unwrap();
        in_unit.count(canary_filter()).await.unwrap();
        unit.commit().await.unwrap()
    });
    pg.close().await;
    let (rest, _) = logged_since(&server, at);
    assert!(
        !rest.contains(CANARY),
        "closing the pool: a value in the log:\n{rest}"
    );
    eprintln!(
        "{} repository methods, each logged by the server: no value in any statement text",
        covered.len()
    );
}
