//! Hostile values through the typed filter API on both backends: every
//! comparison, list, pattern, JSON path and key operator, and keyset pages
//! in both directions, with a generated value in each operand. Each call
//! either answers exactly what a model computed in Rust, or is refused as
//! `InvalidInput` naming the field when (and only when) the backend's
//! documented policy refuses the value; on PostgreSQL no statement's text
//! holds the value.

use proptest::test_runner::TestCaseError;
use reposmith::{Error, Filter, Repository};
use reposmith_core::filter::{escape_like, like_pattern_error};
use reposmith_tests::conformance::entities::Doc;
use serde_json::json;

use super::{capture_statements, hostile, runner, runtime};
use crate::mongo_repository::db::MongoDb;
use crate::pg_repository::db::Db;

type CaseResult = Result<(), TestCaseError>;

/// Rows every case finds beside its own; their `rank` is set, a case's row's is not.
const SEEDS: [&str; 4] = ["seed a", "seed 'b'", "Seed_%c", "seed \\ d"];

/// PostgreSQL's b-tree entry limit: a longer value that does not compress
/// below it cannot go into the unique index on `title` (SQLSTATE 54000,
/// reported as `TooLarge`).
const BTREE_ENTRY: usize = 2_704;

/// What a backend refuses before sending: a value in an operand, a JSON key.
#[derive(Clone, Copy)]
struct Policy {
    value_ok: fn(&str) -> bool,
    key_ok: fn(&str) -> bool,
    /// Characters of a regular expression the server takes, when it caps
    /// them below what reposmith checks (MongoDB's 32,764 bytes).
    regex_cap: Option<usize>,
    /// Bytes of the regular expression a pattern becomes that reposmith
    /// refuses past (MongoDB renders `LIKE` as a regex).
    max_regex_bytes: Option<usize>,
    /// Most `%` runs a `LIKE` pattern sent to the server may have: SecantusDB
    /// matches regexes with Python's backtracking engine, which takes time
    /// exponential in the `.*`s of a failing match, holding its global lock
    /// meanwhile (a generated `%a%b%c…` pattern wedged the shared server).
    /// MongoDB's PCRE bounds the work; the test server does not.
    max_wildcard_runs: Option<usize>,
}

impl Policy {
    /// Whether the `LIKE` pattern `pattern` is safe to send to the test server.
    fn sendable(self, pattern: &str) -> bool {
        self.max_wildcard_runs
            .is_none_or(|max| wildcard_runs(pattern) <= max)
    }

    /// Whether the `LIKE` pattern `pattern` is accepted.
    fn pattern_ok(self, pattern: &str) -> bool {
        like_pattern_error(pattern).is_none()
            && self
                .max_regex_bytes
                .is_none_or(|max| regex_bytes(pattern) <= max)
    }
}

/// Bytes of the anchored regex MongoDB's renderer makes of `pattern`:
/// `%` is `.*`, `_` is `.`, an escaped or plain character is itself with a
/// backslash when it is ASCII punctuation, NUL is `\x00`.
fn regex_bytes(pattern: &str) -> usize {
    let literal = |c: char| match c {
        '\0' => 4,
        c if c.is_ascii_punctuation() => 2,
        c => c.len_utf8(),
    };
    let mut bytes = 2;
    let mut chars = pattern.chars();
    let mut after_any = false;
    while let Some(c) = chars.next() {
        let any = c == '%';
        bytes += match c {
            // A run of `%` is one `.*`.
            '%' if after_any => 0,
            '%' => 2,
            '_' => 1,
            '\\' => chars.next().map_or(0, literal),
            c => literal(c),
        };
        after_any = any;
    }
    bytes
}

/// Runs of unescaped `%` in `pattern`: each is one `.*` on MongoDB.
fn wildcard_runs(pattern: &str) -> usize {
    let (mut runs, mut after_any) = (0, false);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
        }
        if c == '%' && !after_any {
            runs += 1;
        }
        after_any = c == '%';
    }
    runs
}

/// PostgreSQL cannot store NUL in `text` or `jsonb`, keys included.
const POSTGRES: Policy = Policy {
    value_ok: |s| !s.contains('\0'),
    key_ok: |s| !s.contains('\0'),
    regex_cap: None,
    max_regex_bytes: None,
    max_wildcard_runs: None,
};

/// BSON strings hold NUL; keys are C strings, `$…` or dotted keys would be
/// operators or paths, and an empty key cannot be a step of a path.
const MONGO: Policy = Policy {
    value_ok: |_| true,
    key_ok: |s| !s.is_empty() && !s.contains('\0') && !s.starts_with('$') && !s.contains('.'),
    // SecantusDB, the MongoDB server the tests run against, refuses a
    // regular expression over 1,000 characters (BadValue); MongoDB's own
    // limit, 32,764 bytes, is checked by reposmith before sending.
    regex_cap: Some(1_000),
    max_regex_bytes: Some(32_764),
    max_wildcard_runs: Some(2),
};

/// Whether `outcome` is the server refusing a regular expression over its
/// cap, which a pattern of `s` may reach: each character becomes at most
/// four (`\x00`), plus the anchors.
fn over_regex_cap<T>(outcome: &reposmith::Result<T>, s: &str, policy: Policy) -> bool {
    let long = policy
        .regex_cap
        .is_some_and(|cap| 4 * s.chars().count() + 2 > cap);
    long && matches!(outcome, Err(Error::Backend { code: Some(code), reason, .. })
        if code == "2" && reason.contains("regex"))
}

fn fail(what: &str, outcome: impl std::fmt::Debug) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {outcome:?}"))
}

/// `outcome` as the policy predicts: `Some(value)` when `ok`, `None` for
/// `InvalidInput` on `field` with a reason when not. Anything else (a
/// server error, a syntax error above all, or the wrong field) fails the case.
fn typed<T: std::fmt::Debug>(
    what: &str,
    outcome: reposmith::Result<T>,
    ok: bool,
    field: &str,
) -> Result<Option<T>, TestCaseError> {
    match outcome {
        Ok(value) if ok => Ok(Some(value)),
        Err(Error::InvalidInput {
            field: f, reason, ..
        }) if !ok && f == field && !reason.is_empty() => Ok(None),
        Err(Error::Backend {
            code: Some(code),
            reason,
            ..
        }) if code.starts_with("42") => Err(fail(
            what,
            format!("a syntax or access error reached the server: {code} {reason}"),
        )),
        other => Err(fail(
            &format!(
                "{what} (expected {})",
                if ok { "a result" } else { "InvalidInput" }
            ),
            other,
        )),
    }
}

/// SQL `LIKE` with `\` escapes, by characters, as both backends match:
/// the iterative wildcard match (back to the last `%` on a miss), so a
/// 10,000-character value costs neither deep recursion nor a quadratic table.
fn like(text: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Token {
        Any,
        One,
        Char(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => Token::Any,
            '_' => Token::One,
            '\\' => match chars.next() {
                Some(escaped) => Token::Char(escaped),
                // Refused before matching (`like_pattern_error`).
                None => return false,
            },
            other => Token::Char(other),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::One) => (t, p) = (t + 1, p + 1),
            Some(Token::Char(c)) if *c == text[t] => (t, p) = (t + 1, p + 1),
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((at, from)) => {
                    star = Some((at, from + 1));
                    (t, p) = (from + 1, at + 1);
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::Any)
}

/// Titles of the rows a case sees: the seeds and its own.
fn titles(s: &str) -> Vec<String> {
    SEEDS
        .iter()
        .map(|t| (*t).to_owned())
        .chain([s.to_owned()])
        .collect()
}

/// Stores the seeds once.
async fn seed<R: Repository<Doc>>(repo: &R) {
    for title in SEEDS {
        let mut doc = Doc::new(title);
        doc.rank = Some(1);
        doc.summary = Some(title.to_owned());
        repo.insert(&doc).await.unwrap();
    }
}

/// One case: `s` stored in every field of a row, then in every operand.
async fn case<R: Repository<Doc>>(repo: &R, s: &str, policy: Policy) -> CaseResult {
    // A case that failed (or one being shrunk) may have left its row.
    repo.delete_where(Doc::RANK.is_null())
        .await
        .map_err(|e| fail("cleanup", e))?;
    if SEEDS.contains(&s) {
        // Its insert would be a conflict with the seed, which another test holds.
        return Ok(());
    }
    let (value_ok, key_ok) = ((policy.value_ok)(s), (policy.key_ok)(s));
    let mut doc = Doc::new(s);
    doc.summary = Some(s.to_owned());
    doc.tags = vec![s.to_owned()];
    doc.meta = json!({"v": s, "k": {"w": [s]}});
    let inserted = repo.insert(&doc).await;
    if let Err(Error::TooLarge { size, limit, .. }) = &inserted
        && s.len() > BTREE_ENTRY
        && *size > *limit
    {
        // Too large for the unique index on `title` even compressed: the
        // server's limit, typed; nothing is written.
        return match repo.count(Doc::TITLE.eq(s)).await {
            Ok(0) => Ok(()),
            other => Err(fail("after an index refusal", other)),
        };
    }
    let Some(stored) = typed("insert", inserted, value_ok, "title")? else {
        return refused_everywhere(repo, s).await;
    };
    let read = repo.get(&stored.id).await.map_err(|e| fail("get", e))?;
    if read.as_ref() != Some(&stored) || stored.title != s || stored.meta != doc.meta {
        return Err(fail("round trip", (read, &stored)));
    }

    let count = |n: usize| n as u64;
    let seeds_where = |f: &dyn Fn(&str) -> bool| SEEDS.iter().filter(|t| f(t)).count();
    let checks: Vec<(&str, Filter<Doc>, &str, bool, u64)> = vec![
        ("eq", Doc::TITLE.eq(s), "title", true, 1),
        ("ne", Doc::TITLE.ne(s), "title", true, count(SEEDS.len())),
        ("in", Doc::TITLE.is_in([s, SEEDS[0]]), "title", true, 2),
        (
            "not in",
            Doc::TITLE.not_in([s]),
            "title",
            true,
            count(SEEDS.len()),
        ),
        ("between", Doc::TITLE.between(s, s), "title", true, 1),
        (
            "starts_with",
            Doc::TITLE.starts_with(s),
            "title",
            policy.pattern_ok(&format!("{}%", escape_like(s))),
            count(1 + seeds_where(&|t| t.starts_with(s))),
        ),
        (
            "contains",
            Doc::TITLE.contains(s),
            "title",
            policy.pattern_ok(&format!("%{}%", escape_like(s))),
            count(1 + seeds_where(&|t| t.contains(s))),
        ),
        (
            "like",
            Doc::TITLE.like(s),
            "title",
            policy.pattern_ok(s),
            count(titles(s).iter().filter(|t| like(t, s)).count()),
        ),
        ("summary eq", Doc::SUMMARY.eq(s), "summary", true, 1),
        ("tags eq", Doc::TAGS.eq(vec![s.to_owned()]), "tags", true, 1),
        ("path eq", Doc::META.path("v").eq(s), "meta", true, 1),
        (
            "nested path eq",
            Doc::META.path("k").path("w").eq(json!([s])),
            "meta",
            true,
            1,
        ),
        (
            "has_key",
            Doc::META.has_key(s),
            "meta",
            key_ok,
            count(usize::from(s == "v" || s == "k")),
        ),
        (
            "path of s",
            Doc::META.path(s).eq(s),
            "meta",
            key_ok,
            count(usize::from(s == "v")),
        ),
        (
            "nested has_key",
            Doc::META.path("k").has_key(s),
            "meta",
            key_ok,
            count(usize::from(s == "w")),
        ),
        (
            "not",
            !(Doc::TITLE.eq(s) | Doc::SUMMARY.eq(s)),
            "title",
            true,
            count(SEEDS.len()),
        ),
    ];
    let patterns = ["starts_with", "contains", "like"];
    for (what, filter, field, ok, expected) in checks {
        if what == "like" && !policy.sendable(s) {
            continue;
        }
        let outcome = repo.count(filter).await;
        if patterns.contains(&what) && over_regex_cap(&outcome, s, policy) {
            continue;
        }
        if let Some(n) = typed(what, outcome, ok, field)?
            && n != expected
        {
            return Err(fail(what, format!("{n} rows, the model says {expected}")));
        }
    }
    // Case folding differs by collation and engine: only the outcome's type is held.
    if policy.sendable(s) {
        let ilike = repo.count(Doc::TITLE.ilike(s)).await;
        if !over_regex_cap(&ilike, s, policy) {
            typed("ilike", ilike, policy.pattern_ok(s), "title")?;
        }
    }
    match repo.exists(Doc::TITLE.eq(s)).await {
        Ok(true) => {}
        other => return Err(fail("exists", other)),
    }
    ordered(repo, s).await?;
    match repo.delete_where(Doc::TITLE.eq(s)).await {
        Ok(1) => Ok(()),
        other => Err(fail("delete_where", other)),
    }
}

/// Ascending and descending by title (the case's value among the seeds),
/// and descending by summary: walking pages of two rows gives exactly the
/// one-query order, so keyset cursors carrying `s` are read back intact.
async fn ordered<R: Repository<Doc>>(repo: &R, s: &str) -> CaseResult {
    let orders = [Doc::TITLE.asc(), Doc::TITLE.desc(), Doc::SUMMARY.desc()];
    for order in orders {
        let all: Vec<String> = repo
            .find(Filter::all())
            .order_by(order)
            .await
            .map_err(|e| fail("ordered find", e))?
            .into_iter()
            .map(|d| d.title)
            .collect();
        let mut expected = titles(s);
        expected.sort();
        let mut got = all.clone();
        got.sort();
        if got != expected {
            return Err(fail("ordered find", (all, expected)));
        }
        let mut walked = Vec::new();
        let mut cursor = None;
        for _ in 0..=SEEDS.len() + 1 {
            let page = repo
                .find(Filter::all())
                .order_by(order)
                .page_after(cursor, 2)
                .await
                .map_err(|e| fail("page", e))?;
            walked.extend(page.items.into_iter().map(|d| d.title));
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        if walked != all {
            return Err(fail("pages", (walked, all)));
        }
    }
    Ok(())
}

/// A value the backend cannot store is refused in every operand, naming the field.
async fn refused_everywhere<R: Repository<Doc>>(repo: &R, s: &str) -> CaseResult {
    let checks: Vec<(&str, Filter<Doc>, &str)> = vec![
        ("eq", Doc::TITLE.eq(s), "title"),
        ("in", Doc::TITLE.is_in([s]), "title"),
        ("like", Doc::TITLE.like(s), "title"),
        ("summary", Doc::SUMMARY.eq(s), "summary"),
        ("tags", Doc::TAGS.eq(vec![s.to_owned()]), "tags"),
        ("path eq", Doc::META.path("v").eq(s), "meta"),
        ("has_key", Doc::META.has_key(s), "meta"),
        ("path", Doc::META.path(s).has_key("k"), "meta"),
    ];
    for (what, filter, field) in checks {
        typed(what, repo.count(filter.clone()).await, false, field)?;
        typed(what, repo.delete_where(filter).await, false, field)?;
    }
    Ok(())
}

/// `chars` characters that do not compress (a linear congruential walk
/// over letters and CJK), so a unique index cannot shrink them under
/// PostgreSQL's b-tree entry limit (2,704 bytes) as it does a repetition.
fn incompressible(chars: usize) -> String {
    let mut state = 0x2545_f491_u32;
    (0..chars)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = state >> 8;
            if n.is_multiple_of(2) {
                char::from(b'a' + (n % 26) as u8)
            } else {
                char::from_u32(0x4E00 + n % 0x5000).unwrap_or('z')
            }
        })
        .collect()
}

/// The exact values the issue names, before the generated ones.
fn named_values() -> Vec<String> {
    vec![
        "{\"$ne\": \"\"}".into(),
        "'; DROP TABLE docs; --".into(),
        "\0".into(),
        "a\0b".into(),
        "$where".into(),
        String::new(),
        "\\".into(),
        "x".repeat(10_000),
        incompressible(10_000),
        "\u{10FFFF}\u{FEFF}".into(),
    ]
}

/// PostgreSQL: every outcome typed or right, and sqlx's log of each
/// statement sent (its text) never holds the value.
#[test]
fn hostile_filter_values_on_postgres_are_typed_or_right_and_never_in_the_sql() {
    let (captured, _guard) = capture_statements();
    let rt = runtime();
    let db = rt.block_on(Db::new());
    let repo = db.pg.repo::<Doc>();
    rt.block_on(seed(&repo));
    // The statement texts of a plain value: the fixed SQL every case sends
    // (the text depends on the filters' shapes only). A value found in a
    // statement is a leak unless the plain run's text holds it too, as
    // `::text` or `"docs"` do.
    captured.take();
    rt.block_on(case(&repo, "plainvalue", POSTGRES)).unwrap();
    let vocabulary = captured.take();
    assert!(
        !vocabulary.is_empty(),
        "no statement was logged: the check would be empty"
    );
    assert!(
        !vocabulary.iter().any(|t| t.contains("plainvalue")),
        "the plain value itself reached the SQL text"
    );
    let statements = std::cell::Cell::new(0usize);
    let check = |s: &str| -> CaseResult {
        captured.take();
        rt.block_on(case(&repo, s, POSTGRES))?;
        let sent = captured.take();
        statements.set(statements.get() + sent.len());
        let fixed = |s: &str| vocabulary.iter().any(|t| t.contains(s));
        if let Some(text) = sent.iter().find(|t| t.contains(s) && !fixed(s)) {
            return Err(fail("a value in the SQL text", text));
        }
        Ok(())
    };
    for s in named_values() {
        check(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    }
    let mut runner = runner(64);
    let result = runner.run(&hostile(), |s| check(&s));
    rt.block_on(db.cleanup());
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} hostile values, {} statements: every outcome typed or right, no value in any SQL text",
        named_values().len() as u32 + runner.config().cases,
        statements.get()
    );
}

/// MongoDB: the same cases; a value is never an operator (`{"$ne": ""}`
/// stays a string that matches itself).
#[test]
fn hostile_filter_values_on_mongodb_are_typed_or_right() {
    let rt = runtime();
    let db = rt.block_on(MongoDb::new());
    let repo = db.mongo.repo::<Doc>();
    rt.block_on(seed(&repo));
    let check = |s: &str| rt.block_on(case(&repo, s, MONGO));
    for s in named_values() {
        check(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    }
    let mut runner = runner(24);
    let result = runner.run(&hostile(), |s| check(&s));
    rt.block_on(db.cleanup());
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{} hostile values on MongoDB: every outcome typed or right",
        named_values().len() as u32 + runner.config().cases
    );
}
