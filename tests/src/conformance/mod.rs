//! The backend-neutral conformance suite: test bodies written once against
//! [`Repository`], run by every backend.
//!
//! A backend implements [`Fixture`] (fresh, isolated storage for one test and
//! the three repositories on it) and expands [`conformance_tests!`](crate::conformance_tests)
//! once; every function re-exported here becomes one `#[tokio::test]`. What a
//! backend cannot do is declared in [`Capabilities`], and the tests that need
//! it return early instead of failing.
//!
//! How many rows the two load-shaped tests use is the backend's
//! [`Fixture::sizes`]: [`Sizes::FULL`] unless a slow test server makes that
//! cost minutes, and never below what still crosses the backend's own
//! batch and transaction boundaries.
//!
//! The entities are in [`entities`]; the contract they check is the one the
//! core documents (`Repository`, `Filter`, `Error`): SQL NULL semantics in
//! filters, NULLs last in ascending order, all-or-nothing bulk inserts, a
//! typed error for every refused write.

use std::future::Future;

use reposmith::Repository;

mod concurrency;
mod crud;
pub mod entities;
mod filters;
mod json;
mod paging;
mod patch;

pub use concurrency::{
    fifty_concurrent_upserts_of_one_key_leave_one_row,
    twenty_concurrent_updaters_have_one_winner_per_version,
};
pub use crud::{
    conflicts_stale_versions_and_missing_rows_are_typed, delete_where_returns_how_many_it_deleted,
    exists_and_count_follow_the_filter, find_orders_limits_and_returns_one,
    generated_finders_match_unique_fields, get_many_skips_missing_ids, identity_and_assigned_ids,
    insert_get_update_upsert_delete_round_trip,
};
use entities::{Doc, Event, Setting};
pub use filters::{
    every_filter_kind_with_sql_null_semantics, ne_not_not_in_and_is_null_follow_sql_null_semantics,
    order_puts_nulls_last_ascending_and_first_descending,
};
pub use json::{
    json_null_is_a_value_not_a_missing_one, json_round_trips_nested_arrays_and_unicode,
    text_round_trips_unicode_byte_for_byte,
};
pub use paging::{
    insert_many_takes_a_bulk_load_and_is_all_or_nothing,
    keyset_pages_neither_skip_nor_repeat_with_mixed_directions_and_nulls,
    paging_while_rows_are_inserted_keeps_every_original_row_once,
};
pub use patch::{
    add_beyond_the_integer_range_is_refused_and_writes_nothing,
    concurrent_patches_of_different_fields_lose_neither, fifty_concurrent_adds_give_exactly_fifty,
    invalid_changes_are_refused_before_anything_is_sent, json_paths_set_and_remove_round_trip,
    json_set_through_a_scalar_is_invalid_input_naming_field_and_path,
    many_json_paths_in_one_patch_stay_linear, patch_sets_adds_and_stamps_in_one_write,
    patch_with_a_stale_version_is_refused_and_writes_nothing,
    update_where_counts_and_returns_the_updated_rows,
};

/// What differs between backends; a test that needs a capability the backend
/// lacks returns early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// JSON containment, path equality and key existence filters
    /// ([`JsonColumn`](reposmith::JsonColumn)) run on the server.
    pub json_filters: bool,
    /// `asc()` sorts NULLs after every value and `desc()` before them, as
    /// [`Column::asc`](reposmith::Column::asc) documents. A backend whose
    /// native order treats NULL as the smallest value and does not correct it
    /// says false.
    pub nulls_last_ascending: bool,
}

impl Capabilities {
    /// Everything the suite checks; Postgres has it all.
    pub const ALL: Capabilities = Capabilities {
        json_filters: true,
        nulls_last_ascending: true,
    };
}

/// Row counts of the tests whose cost grows with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Rows of the one `insert_many` call that must be stored whole
    /// (`insert_many_takes_a_bulk_load_and_is_all_or_nothing`).
    pub bulk: usize,
    /// Rows of the `insert_many` call in the same test whose last row
    /// conflicts and which must leave nothing; at most [`Sizes::bulk`].
    pub bulk_failing: usize,
    /// Rows walked page by page in every order, by pages of 1, 7, all of
    /// them and one more
    /// (`keyset_pages_neither_skip_nor_repeat_with_mixed_directions_and_nulls`).
    /// At least [`Sizes::MIN_PAGED`].
    pub paged: usize,
}

impl Sizes {
    /// The sizes the suite was written with; Postgres runs them.
    pub const FULL: Sizes = Sizes {
        bulk: 100_000,
        bulk_failing: 25_000,
        paged: 300,
    };

    /// The fewest rows the paging test accepts: with a fifth of the scores
    /// NULL and the rest spread over 7 values, 100 rows make every group
    /// of tied scores longer than a 7-row page, so pages end inside ties
    /// in both directions.
    pub const MIN_PAGED: usize = 100;
}

/// Storage for one test: empty tables (or collections) for [`Doc`],
/// [`Event`] and [`Setting`] that no other test sees, and repositories on them.
pub trait Fixture: Send + Sync + Sized + 'static {
    /// The repository of [`Doc`]s.
    type Docs: Repository<Doc> + Clone + 'static;
    /// The repository of [`Event`]s.
    type Events: Repository<Event> + Clone + 'static;
    /// The repository of [`Setting`]s.
    type Settings: Repository<Setting> + Clone + 'static;

    /// Fresh, empty storage for one test.
    fn setup() -> impl Future<Output = Self> + Send;

    /// Drops what [`Fixture::setup`] created.
    fn teardown(self) -> impl Future<Output = ()> + Send;

    /// A repository of [`Doc`]s.
    fn docs(&self) -> Self::Docs;

    /// A repository of [`Event`]s.
    fn events(&self) -> Self::Events;

    /// A repository of [`Setting`]s.
    fn settings(&self) -> Self::Settings;

    /// What this backend can do.
    fn capabilities(&self) -> Capabilities;

    /// How many rows the load-shaped tests use; [`Sizes::FULL`] unless the
    /// backend says otherwise (and why) in its fixture.
    fn sizes(&self) -> Sizes {
        Sizes::FULL
    }
}

/// True, after saying so on stderr, when the backend lacks what a test needs.
fn lacks(has: bool, test: &str, capability: &str) -> bool {
    if !has {
        eprintln!("{test}: skipped, the backend lacks {capability}");
    }
    !has
}

/// One `#[tokio::test]` per conformance test, each on a fresh fixture:
/// `reposmith_tests::conformance_tests!(MyFixture);` inside a test module.
///
/// The list of tests lives here only, so a new conformance test reaches every
/// backend at once: a new `pub async fn` in this module must be added to it.
/// The expanding crate needs `tokio` with the `macros` and `rt` features.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:ty) => {
        $crate::conformance_tests!(@each $fixture;
            insert_get_update_upsert_delete_round_trip,
            identity_and_assigned_ids,
            conflicts_stale_versions_and_missing_rows_are_typed,
            get_many_skips_missing_ids,
            delete_where_returns_how_many_it_deleted,
            exists_and_count_follow_the_filter,
            find_orders_limits_and_returns_one,
            generated_finders_match_unique_fields,
            every_filter_kind_with_sql_null_semantics,
            ne_not_not_in_and_is_null_follow_sql_null_semantics,
            order_puts_nulls_last_ascending_and_first_descending,
            json_round_trips_nested_arrays_and_unicode,
            json_null_is_a_value_not_a_missing_one,
            text_round_trips_unicode_byte_for_byte,
            keyset_pages_neither_skip_nor_repeat_with_mixed_directions_and_nulls,
            paging_while_rows_are_inserted_keeps_every_original_row_once,
            insert_many_takes_a_bulk_load_and_is_all_or_nothing,
            fifty_concurrent_upserts_of_one_key_leave_one_row,
            twenty_concurrent_updaters_have_one_winner_per_version,
            patch_sets_adds_and_stamps_in_one_write,
            patch_with_a_stale_version_is_refused_and_writes_nothing,
            concurrent_patches_of_different_fields_lose_neither,
            fifty_concurrent_adds_give_exactly_fifty,
            update_where_counts_and_returns_the_updated_rows,
            invalid_changes_are_refused_before_anything_is_sent,
            json_paths_set_and_remove_round_trip,
            many_json_paths_in_one_patch_stay_linear,
            add_beyond_the_integer_range_is_refused_and_writes_nothing,
            json_set_through_a_scalar_is_invalid_input_naming_field_and_path,
        );
    };
    (@each $fixture:ty; $($test:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $test() {
                let fixture = <$fixture as $crate::conformance::Fixture>::setup().await;
                $crate::conformance::$test(&fixture).await;
                $crate::conformance::Fixture::teardown(fixture).await;
            }
        )+
    };
}
