//! [`fetch_page`]: one page of a keyset query around a backend's fetch.
//!
//! The backend fetches rows; whether a next page exists and where it starts
//! is decided here, so every backend answers `fetch_page` alike.

use std::future::Future;

use super::Keyset;
use crate::entity::Entity;
use crate::repository::{FindQuery, Page};
use crate::value::Value;
use crate::{Error, Result};

/// One page of `size` rows of `query` and the cursor after its last row
/// when more may follow.
///
/// `fetch(query, limit)` runs the query (its filter, order and
/// [`after`](FindQuery::after) position) and returns at most `limit` rows as
/// schema-ordered values. It is asked for `size + 1` rows: the extra row
/// only says whether a next page exists and is not returned. A `size` of 0
/// and an invalid order are invalid-input errors, reported before `fetch` runs.
pub async fn fetch_page<E, F, Fut>(query: FindQuery<E>, size: u64, fetch: F) -> Result<Page<E>>
where
    E: Entity,
    F: FnOnce(FindQuery<E>, u64) -> Fut,
    Fut: Future<Output = Result<Vec<Vec<Value>>>>,
{
    if size == 0 {
        let reason = "page size must be at least 1";
        return Err(Error::invalid(E::SCHEMA.entity, "page size", reason));
    }
    let keyset = Keyset::new(&query.order)?;
    let mut rows = fetch(query, size.saturating_add(1)).await?;
    let more = rows.len() as u64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let next = match rows.last() {
        Some(last) if more => Some(keyset.cursor_of(last)),
        _ => None,
    };
    let items = rows
        .into_iter()
        .map(E::from_values)
        .collect::<Result<_>>()?;
    Ok(Page::new(items, next))
}
