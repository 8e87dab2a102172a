//! [`Repository::stream`]: every matching row as
//! a stream, fetched in keyset pages.
//!
//! Paging instead of a server-side cursor means no connection or
//! transaction is held between batches, so a slow consumer never pins a
//! pooled connection, and the stream works the same on every backend and
//! inside a unit of work. Like keyset pagination, rows inserted while the
//! stream runs appear if they sort after the current position.

use std::collections::VecDeque;
use std::pin::Pin;

use futures_core::Stream;

use crate::Result;
use crate::entity::Entity;
use crate::repository::{FindQuery, Repository};

/// A stream of entities, as [`Repository::stream`] returns.
pub type EntityStream<'a, E> = Pin<Box<dyn Stream<Item = Result<E>> + Send + 'a>>;

/// Rows fetched per round trip.
pub const STREAM_BATCH: u64 = 500;

/// Where a stream is between batches.
struct State<'a, E, R> {
    repo: &'a R,
    query: FindQuery<E>,
    buffer: VecDeque<E>,
    /// Rows still to yield when the query has a limit.
    remaining: Option<u64>,
    exhausted: bool,
}

/// Streams `query` through `repo` in pages of [`STREAM_BATCH`].
pub fn paged<'a, E: Entity, R: Repository<E>>(
    repo: &'a R,
    query: FindQuery<E>,
) -> EntityStream<'a, E> {
    let remaining = query.limit;
    let state = State {
        repo,
        query,
        buffer: VecDeque::new(),
        remaining,
        exhausted: false,
    };
    Box::pin(futures_util::stream::unfold(state, next))
}

async fn next<'a, E: Entity, R: Repository<E>>(
    mut state: State<'a, E, R>,
) -> Option<(Result<E>, State<'a, E, R>)> {
    if state.remaining == Some(0) {
        return None;
    }
    if state.buffer.is_empty() && !state.exhausted {
        let mut page_query = state.query.clone();
        page_query.limit = None;
        match state.repo.fetch_page(page_query, STREAM_BATCH).await {
            Ok(page) => {
                state.buffer.extend(page.items);
                state.exhausted = page.next.is_none();
                state.query.after = page.next;
            }
            Err(error) => {
                // An error ends the stream after it is yielded.
                state.exhausted = true;
                state.remaining = Some(0);
                return Some((Err(error), state));
            }
        }
    }
    let item = state.buffer.pop_front()?;
    state.remaining = state.remaining.map(|n| n - 1);
    Some((Ok(item), state))
}
