//! The evaluation corpus: passages and title queries from the PostgreSQL manual.
