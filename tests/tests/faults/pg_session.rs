//! PostgreSQL sessions ended by the server: `pg_terminate_backend` on a
//! unit's connection, `idle_in_transaction_session_timeout`.
