//! Loading associations: Diesel's bench-suite scenario
//! `loading_associations` (users → posts → comments: load the users, their
//! posts, and the posts' comments, each level grouped under its parent)
//! with reposmith's relation loaders against hand-written sqlx doing the
//! same three queries (`= ANY($1)` of the parents' ids) and the same
//! grouping, interleaved on the same pool.
//!
//! `cargo xtask bench associations [-- --quick] [--rounds N] [--ops N]
//! [--users N]`: `--users` users (default 100) with 10 posts each and 10
//! comments per post; an op loads all three levels. `--quick`: 3 rounds of
//! 20 ops.

use std::collections::HashMap;
use std::time::Instant;

use reposmith::{EntitySchema, Filter, PgRepository, Relations, Repository, Store};
use sqlx::PgPool;

use crate::Result;
use crate::args::Flags;
use crate::bench::{Side, Table, connect};
use crate::measure::{interleave, timed};

/// Diesel's `users`.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_assoc_users", backend = "postgres")]
pub(crate) struct User {
    #[repo(id)]
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) hair_color: Option<String>,
}

/// Diesel's `posts`.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_assoc_posts", backend = "postgres")]
pub(crate) struct Post {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(references(User, on_delete = "cascade"))]
    pub(crate) user_id: i64,
    pub(crate) title: String,
    pub(crate) body: Option<String>,
}

/// Diesel's `comments`.
#[derive(Debug, Clone, Repository)]
#[repo(table = "bench_assoc_comments", backend = "postgres")]
pub(crate) struct Comment {
    #[repo(id)]
    pub(crate) id: i64,
    #[repo(references(Post, on_delete = "cascade"))]
    pub(crate) post_id: i64,
    pub(crate) text: String,
}

/// Posts per user and comments per post, as in Diesel's suite.
const FAN_OUT: usize = 10;

struct Options {
    rounds: usize,
    ops: usize,
    users: usize,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        rounds: 10,
        ops: 100,
        users: 100,
    };
    let mut flags = Flags::new(args, "associations");
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--rounds" => o.rounds = flags.number(flag)?.max(1),
            "--ops" => o.ops = flags.number(flag)?.max(1),
            "--users" => o.users = flags.number(flag)?.max(1),
            "--quick" => {
                o.rounds = 3;
                o.ops = 20;
            }
            other => return Err(format!("associations: unknown option {other}").into()),
        }
    }
    Ok(o)
}

/// What one load returns, either side: the users, the posts of each user
/// (aligned), and the comments of each post (aligned with the posts in
/// user order).
type Loaded = (Vec<User>, Vec<Vec<Post>>, Vec<Vec<Comment>>);

/// `cargo xtask bench associations`.
pub(crate) async fn run(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let started = Instant::now();
    println!("load average at start: {}", crate::report::loadavg());
    let store = setup(o.users).await?;
    let pg = store.postgres()?;
    let repos = (pg.repo::<User>(), pg.repo::<Post>(), pg.repo::<Comment>());
    let raw = pg.pool().clone();
    let comments = o.users * FAN_OUT * FAN_OUT;
    // Both sides must see the same rows, grouped the same way.
    let (a, b) = (reposmith_load(&repos).await?, raw_load(&raw).await?);
    if summary(&a) != summary(&b) || summary(&a).2 != comments {
        return Err(format!("sides disagree: {:?} vs {:?}", summary(&a), summary(&b)).into());
    }
    println!(
        "reposmith-bench associations: {} rounds (+1 warm-up) of {} loads per side; {} users, \
         {} posts, {comments} comments per load",
        o.rounds,
        o.ops,
        o.users,
        o.users * FAN_OUT
    );
    let series = interleave(&[Side::Reposmith, Side::Raw], o.rounds, async |side, _| {
        timed(o.ops, async |_| {
            let loaded = match side {
                Side::Reposmith => reposmith_load(&repos).await?,
                _ => raw_load(&raw).await?,
            };
            std::hint::black_box(loaded);
            Ok(())
        })
        .await
    })
    .await?;
    crate::report::print_tables(&[Table {
        workload: format!("loading_associations ({} users)", o.users),
        unit: "op",
        series,
        baseline: 1,
    }]);
    store.close().await;
    println!("\nload average at end: {}", crate::report::loadavg());
    println!(
        "associations bench: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Users, posts and comments counts of a load, and whether every child sits
/// under its parent.
fn summary((users, posts, comments): &Loaded) -> (usize, usize, usize, bool) {
    let flat: Vec<&Post> = posts.iter().flatten().collect();
    let aligned = users
        .iter()
        .zip(posts)
        .all(|(u, ps)| ps.iter().all(|p| p.user_id == u.id))
        && flat
            .iter()
            .zip(comments)
            .all(|(p, cs)| cs.iter().all(|c| c.post_id == p.id));
    (
        users.len(),
        flat.len(),
        comments.iter().map(Vec::len).sum(),
        aligned,
    )
}

/// reposmith: the users, then one `load_for` per relation.
async fn reposmith_load(
    (users, posts, comments): &(
        PgRepository<User>,
        PgRepository<Post>,
        PgRepository<Comment>,
    ),
) -> Result<Loaded> {
    let all = users.find(Filter::all()).await?;
    let per_user = posts.load_for(&all, Post::USER).await?;
    let per_post = comments
        .load_for(per_user.iter().flatten(), Comment::POST)
        .await?;
    Ok((all, per_user, per_post))
}

/// Hand-written sqlx: three queries, rows into the same structs, grouped
/// with a map from parent id to position.
async fn raw_load(pool: &PgPool) -> Result<Loaded> {
    let users: Vec<User> = sqlx::query_as::<_, (i64, String, Option<String>)>(
        "SELECT id, name, hair_color FROM bench_assoc_users ORDER BY id",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, name, hair_color)| User {
        id,
        name,
        hair_color,
    })
    .collect();
    let user_ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let posts: Vec<Post> = sqlx::query_as::<_, (i64, i64, String, Option<String>)>(
        "SELECT id, user_id, title, body FROM bench_assoc_posts WHERE user_id = ANY($1) ORDER BY id",
    )
    .bind(&user_ids)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, user_id, title, body)| Post {
        id,
        user_id,
        title,
        body,
    })
    .collect();
    let per_user = group(&user_ids, posts, |p| p.user_id);
    let post_ids: Vec<i64> = per_user.iter().flatten().map(|p| p.id).collect();
    let comments: Vec<Comment> = sqlx::query_as::<_, (i64, i64, String)>(
        "SELECT id, post_id, text FROM bench_assoc_comments WHERE post_id = ANY($1) ORDER BY id",
    )
    .bind(&post_ids)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, post_id, text)| Comment { id, post_id, text })
    .collect();
    let per_post = group(&post_ids, comments, |c| c.post_id);
    Ok((users, per_user, per_post))
}

/// `children` under the parent ids `parents`, in order.
fn group<C>(parents: &[i64], children: Vec<C>, key: impl Fn(&C) -> i64) -> Vec<Vec<C>> {
    let slot: HashMap<i64, usize> = parents.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut groups: Vec<Vec<C>> = parents.iter().map(|_| Vec::new()).collect();
    for child in children {
        if let Some(&i) = slot.get(&key(&child)) {
            groups[i].push(child);
        }
    }
    groups
}

/// Fresh tables from the entities (foreign keys and their indexes
/// included), seeded and analysed.
async fn setup(users: usize) -> Result<Store> {
    let store = connect(None).await?;
    let pg = store.postgres()?;
    sqlx::query("DROP TABLE IF EXISTS bench_assoc_comments, bench_assoc_posts, bench_assoc_users")
        .execute(pg.pool())
        .await?;
    let schemas: [&EntitySchema; 3] = [
        <Comment as reposmith::Entity>::SCHEMA,
        <Post as reposmith::Entity>::SCHEMA,
        <User as reposmith::Entity>::SCHEMA,
    ];
    pg.create_tables_for(&schemas).await?;
    let user_rows: Vec<User> = (0..users)
        .map(|i| User {
            id: 0,
            name: format!("User {i}"),
            hair_color: (i % 2 == 0).then(|| "black".to_owned()),
        })
        .collect();
    pg.repo::<User>().insert_many(&user_rows).await?;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM bench_assoc_users ORDER BY id")
        .fetch_all(pg.pool())
        .await?;
    let posts: Vec<Post> = ids
        .iter()
        .flat_map(|&user_id| {
            (0..FAN_OUT).map(move |i| Post {
                id: 0,
                user_id,
                title: format!("Post {i} by {user_id}"),
                body: (i % 2 == 0).then(|| "body".to_owned()),
            })
        })
        .collect();
    pg.repo::<Post>().insert_many(&posts).await?;
    let post_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM bench_assoc_posts ORDER BY id")
        .fetch_all(pg.pool())
        .await?;
    let comments: Vec<Comment> = post_ids
        .iter()
        .flat_map(|&post_id| {
            (0..FAN_OUT).map(move |i| Comment {
                id: 0,
                post_id,
                text: format!("Comment {i} on {post_id}"),
            })
        })
        .collect();
    pg.repo::<Comment>().insert_many(&comments).await?;
    sqlx::query("ANALYZE bench_assoc_users, bench_assoc_posts, bench_assoc_comments")
        .execute(pg.pool())
        .await?;
    Ok(store)
}
