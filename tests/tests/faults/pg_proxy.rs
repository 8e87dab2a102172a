//! PostgreSQL through the fault proxy: a lost COMMIT reply, a stalled
//! connection mid-query.
