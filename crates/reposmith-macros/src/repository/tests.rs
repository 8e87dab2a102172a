//! Expansion snapshots (filled below).
