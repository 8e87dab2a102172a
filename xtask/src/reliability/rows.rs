//! The scoreboard's rows: one per test of the reliability list, each with
//! the suite tests that hold it, or why it has none yet.

/// How a row is checked.
pub(crate) enum Check {
    /// These tests, all of which must pass: `module::test` of the suite,
    /// or `BINARY_ID module::test` of another test binary (a crate's unit
    /// tests, as nextest names the binary: `reposmith-macros`).
    Tests(&'static [&'static str]),
    /// Cannot run on this machine, and why.
    NotRunHere(&'static str),
    /// Every test of the pool-of-one run (its own nextest profile and
    /// report: see `reliability::pool_of_one`) passed.
    PoolOfOne,
}

/// One promise under test.
pub(crate) struct Row {
    /// L (load), F (faults), C (cancellation), X (crash consistency),
    /// I (isolation), B (bad input), M (migrations), S (security).
    pub(crate) id: &'static str,
    pub(crate) claim: &'static str,
    pub(crate) check: Check,
}

const fn row(id: &'static str, claim: &'static str, check: Check) -> Row {
    Row { id, claim, check }
}

/// Every row, in the list's order.
pub(crate) const ROWS: &[Row] = &[
    row(
        "L1",
        "64 tasks of mixed operations on a pool of 4: typed outcomes, nothing left open",
        Check::Tests(&[
            "faults::pg_load::sixty_four_tasks_on_a_pool_of_four_finish_typed_and_leave_nothing_open",
        ]),
    ),
    row(
        "L2",
        "the suite passes with a pool of one connection (CI: the PostgreSQL sections; --heavy: all)",
        Check::PoolOfOne,
    ),
    row(
        "L3",
        "one held connection does not starve 50 short tasks on a pool of 2",
        Check::Tests(&[
            "faults::pg_load::a_held_connection_does_not_starve_fifty_short_tasks_on_a_pool_of_two",
        ]),
    ),
    row(
        "L4",
        "vector recall@10 >= 0.9 under a selective filter and while rows are inserted",
        Check::Tests(&[
            "pg_search::hnsw_recall_holds_unfiltered_and_under_a_selective_filter",
            "pg_search::recall_holds_while_rows_are_inserted",
        ]),
    ),
    row(
        "F1",
        "pg_terminate_backend before COMMIT: typed error, nothing written",
        Check::Tests(&[
            "faults::pg_session::a_unit_whose_session_is_terminated_before_commit_writes_nothing",
        ]),
    ),
    row(
        "F2",
        "PostgreSQL COMMIT reply lost: outcome unknown, row present",
        Check::Tests(&[
            "faults::pg_proxy::a_lost_commit_reply_is_outcome_unknown_and_the_row_is_committed",
            "faults::pg_proxy::a_lost_reply_to_a_pool_insert_leaves_the_row_and_the_pool_working",
        ]),
    ),
    row(
        "F3",
        "pg_ctl restart -m immediate with a warm pool: back within 2 s",
        Check::Tests(&[
            "faults::pg_server::an_immediate_restart_costs_at_most_one_error_per_stale_connection",
        ]),
    ),
    row(
        "F4",
        "PostgreSQL down 5 s: fail fast, recover alone",
        Check::Tests(&["faults::pg_server::five_seconds_down_fails_fast_and_recovers_alone"]),
    ),
    row(
        "F5",
        "a stalled or reset PostgreSQL connection: the deadline fires (BEGIN and COMMIT too), the connection is dropped",
        Check::Tests(&[
            "faults::pg_proxy::a_stalled_query_times_out_at_the_client_deadline_and_its_connection_is_discarded",
            "faults::pg_proxy::a_unit_cut_by_a_stall_is_poisoned_and_leaves_no_open_transaction",
            "faults::pg_proxy::a_commit_into_a_stalled_connection_is_outcome_unknown_at_the_deadline",
            "faults::pg_proxy::a_begin_into_a_stalled_connection_times_out_at_the_deadline",
            "faults::pg_proxy::a_reset_mid_query_is_connection_lost_and_the_next_operation_works",
            "faults::pg_proxy::a_commit_whose_cache_invalidation_meets_a_stall_times_out_at_the_deadline",
        ]),
    ),
    row(
        "F6",
        "idle_in_transaction_session_timeout ends a unit: ConnectionLost, nothing written",
        Check::Tests(&[
            "faults::pg_session::a_unit_ended_by_idle_in_transaction_timeout_is_lost_not_committed",
        ]),
    ),
    row(
        "F7",
        "MongoDB commit reply lost: outcome unknown, resent until known",
        Check::Tests(&[
            "mongo_unit::commit_outcome::every_commit_reply_lost_is_commit_outcome_unknown",
            "mongo_unit::commit_outcome::a_lost_commit_reply_is_resent_until_the_outcome_is_known",
        ]),
    ),
    row(
        "F8",
        "MongoDB killed and restarted mid-traffic: no acknowledged write lost",
        Check::Tests(&[
            "faults::mongo_server::killed_and_restarted_mid_traffic_loses_no_acknowledged_write",
        ]),
    ),
    row(
        "F9",
        "MongoDB replSetStepDown: retryable writes apply once",
        Check::NotRunHere("SecantusDB is a single node: no step-down to a new primary"),
    ),
    row(
        "F10",
        "a replica stopped mid-run: no failed read, routing returns",
        Check::Tests(&[
            "pg_replica::faults::a_replica_stopped_mid_run_fails_no_read_and_serves_again_when_back",
        ]),
    ),
    row(
        "F11",
        "a stalled replica: the read runs on the primary",
        Check::Tests(&["pg_replica::faults::a_stalled_replica_read_falls_back_to_the_primary"]),
    ),
    row(
        "F12",
        "a recovery conflict on a replica is retried, not surfaced",
        Check::Tests(&[
            "pg_replica::faults::a_recovery_conflict_on_the_replica_is_retried_on_the_primary",
        ]),
    ),
    row(
        "F13",
        "a stalled MongoDB connection: the deadline fires (operation and commit), the connection is not reused",
        Check::Tests(&[
            "faults::mongo_proxy::a_stalled_operation_times_out_at_the_deadline_and_its_connection_is_not_reused",
            "faults::mongo_proxy::a_commit_into_a_stalled_connection_is_outcome_unknown_at_the_deadline",
        ]),
    ),
    row(
        "C1",
        "operations cut at every await point: all or nothing, connection usable",
        Check::Tests(&[
            "cancellation::unit_of_work_cut_anywhere_is_all_or_nothing",
            "cancellation::insert_many_cut_anywhere_is_all_or_nothing",
            "cancellation::retried_transaction_cut_anywhere_is_all_or_nothing",
            "cancellation::insert_cut_anywhere_leaves_the_connection_usable",
            "cancellation::update_and_delete_cut_anywhere_leave_the_connection_usable",
            "mongo_unit::cancellation::a_commit_cancelled_at_any_poll_leaves_no_open_transaction",
        ]),
    ),
    row(
        "X1",
        "kill -9 the postmaster while units commit: every acknowledged unit present",
        Check::Tests(&[
            "faults::pg_server::kill_9_while_committing_keeps_every_acknowledged_unit_and_no_half_unit",
        ]),
    ),
    row(
        "X2",
        "processes killed right after COMMIT or mid-relay: no job lost, effects once",
        Check::Tests(&[
            "outbox::crash::a_producer_killed_right_after_commit_loses_no_job",
            "outbox::crash::relays_killed_mid_delivery_lose_nothing_and_effects_apply_once",
            "queue_crash::workers_killed_hundreds_of_times_lose_no_job_and_apply_no_effect_twice",
        ]),
    ),
    row(
        "X3",
        "kill -9 SecantusDB while units commit (w: majority): every acknowledged unit present",
        Check::Tests(&[
            "faults::mongo_server::kill_9_while_committing_units_keeps_every_acknowledged_unit_and_no_half_unit",
            "faults::mongo_server::a_commit_the_restarted_server_does_not_know_is_outcome_unknown_not_retryable",
        ]),
    ),
    row(
        "I1",
        "the version check under a row lock, concurrent upserts, write skew aborted at SERIALIZABLE (re-run keeps the invariant)",
        Check::Tests(&[
            "faults::pg_isolation::a_writer_waiting_on_the_row_lock_gets_stale_version_not_a_lost_update",
            "faults::pg_isolation::concurrent_upserts_of_one_key_leave_one_row_and_no_error",
            "faults::pg_isolation::write_skew_is_prevented_at_serializable_and_allowed_at_repeatable_read",
        ]),
    ),
    row(
        "I2",
        "isolationtester specs of the library's SQL: version-checked update, upsert, outbox claim, migration lock",
        Check::Tests(&[
            "faults::pg_isolationtester::the_specs_hold_the_sql_the_library_sends",
            "faults::pg_isolationtester::isolationtester_output_matches_the_expected_files",
        ]),
    ),
    row(
        "B1",
        "NUL in text or JSON: invalid input before the database",
        Check::Tests(&[
            "pg_repository::nul_in_text_or_json_is_invalid_input_and_nothing_is_written",
        ]),
    ),
    row(
        "B2",
        "fuzzed filters, cursors, BSON and COPY input: typed errors, never a syntax error",
        Check::Tests(&[
            "bad_input::filters::hostile_filter_values_on_postgres_are_typed_or_right_and_never_in_the_sql",
            "bad_input::filters::hostile_filter_values_on_mongodb_are_typed_or_right",
            "bad_input::json_corpus::the_json_corpus_on_postgres_gets_its_policy_before_the_database",
            "bad_input::json_corpus::the_json_corpus_on_mongodb_gets_its_policy_before_the_database",
            "bad_input::bind_cap::single_writes_at_the_cap_run_and_one_byte_past_it_are_too_large",
            "bad_input::bind_cap::insert_many_splits_values_batches_under_the_cap_and_refuses_a_row_past_it",
        ]),
    ),
    row(
        "B3",
        "cargo-fuzz targets (cursor, BSON, COPY) with replayed seed corpora; derive attribute parser never panics",
        Check::Tests(&[
            "fuzz_corpus::cursor_decode_corpus_replays_clean",
            "fuzz_corpus::bson_codec_corpus_replays_clean",
            "fuzz_corpus::copy_encoder_corpus_replays_clean",
            "pg_repository::paging::a_tampered_cursor_is_invalid_input_before_the_database",
            "reposmith-macros never_panics::repository_derive_returns_items_for_arbitrary_attributes",
            "reposmith-macros never_panics::db_enum_derive_returns_items_for_arbitrary_attributes",
        ]),
    ),
    row(
        "M1",
        "concurrent migrators, a failing migration, an edited one, a held lock",
        Check::Tests(&[
            "migrate::three_concurrent_appliers_apply_each_migration_once",
            "migrate::a_migration_failing_halfway_leaves_the_ledger_unchanged_and_can_be_rerun",
            "migrate::an_edited_applied_migration_is_an_error_naming_the_file",
            "migrate::a_held_lock_makes_the_migration_fail_fast",
        ]),
    ),
    row(
        "S1",
        "a canary password never appears in Debug, errors or TRACE logs",
        Check::Tests(&[
            "connection::canary_password_never_appears_in_config_or_store_debug",
            "secrets::canary_password_never_reaches_trace_logs",
        ]),
    ),
    row(
        "S2",
        "TLS verify-full for PostgreSQL, Redis (MongoDB where the server can), plaintext to a non-loopback host refused",
        Check::Tests(&[
            "tls::postgres::verify_full_connects_encrypted_and_a_wrong_ca_or_host_name_is_refused",
            "tls::redis::rediss_with_the_right_ca_connects_and_a_wrong_ca_or_host_name_is_refused",
            "tls::mongo::tls_with_the_right_ca_connects_and_a_wrong_ca_is_refused",
            "tls::plaintext_to_a_non_loopback_host_is_refused_unless_allowed",
        ]),
    ),
    row(
        "S3",
        "migrations as the owner (a separate migration URL), the app role gets DML only: its DDL is PermissionDenied 42501",
        Check::Tests(&[
            "least_privilege::migrations_run_as_the_owner_and_the_app_role_gets_dml_but_no_ddl",
        ]),
    ),
    row(
        "S4",
        "resolved sqlx, redis, mongodb, rustls, ring, tokio at or above documented minimum safe versions",
        Check::Tests(&[
            "versions::resolved_driver_versions_are_at_or_above_the_documented_minimums",
        ]),
    ),
    row(
        "S5",
        "identifiers quoted as quote_ident; no test value in any statement text",
        Check::Tests(&[
            "bad_input::quoting::identifiers_are_quoted_as_the_servers_quote_ident",
            "bad_input::statement_text::no_repository_method_puts_a_value_into_the_statement_text",
        ]),
    ),
];
