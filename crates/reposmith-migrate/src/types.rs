//! Which column type changes Postgres can cast, and which of them can lose
//! values ("narrowing"): those are destructive and need `--allow-destructive`.

/// What changing a column's type from one Postgres type to another means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeChange {
    /// Every old value fits the new type.
    Widening,
    /// A cast exists but values can be lost, or the cast can fail on some rows.
    Narrowing,
    /// No cast: the generator refuses and the migration is written by hand.
    NoCast,
}

/// Classifies `from` → `to`, both as `reposmith-postgres` spells types.
pub fn type_change(from: &str, to: &str) -> TypeChange {
    match (from.strip_suffix("[]"), to.strip_suffix("[]")) {
        (Some(a), Some(b)) => scalar_change(a, b),
        (None, None) => scalar_change(from, to),
        // Arrays print as text; there is no array → jsonb cast (to_jsonb is a
        // function, not a cast), so that change is written by hand.
        (Some(_), None) if to == "text" => TypeChange::Narrowing,
        _ => TypeChange::NoCast,
    }
}

fn scalar_change(from: &str, to: &str) -> TypeChange {
    use TypeChange::{Narrowing, NoCast, Widening};
    if from == to {
        return Widening;
    }
    if to == "text" {
        // Every type has a text output function.
        return Widening;
    }
    if from == "text" {
        return Narrowing;
    }
    let (from_base, from_dims) = split_dims(from);
    let (to_base, to_dims) = split_dims(to);
    let rank = |t: &str| INTEGERS.iter().position(|i| *i == t);
    match (from_base, to_base) {
        (a, b) if rank(a).is_some() && rank(b).is_some() => {
            if rank(a) < rank(b) {
                Widening
            } else {
                Narrowing
            }
        }
        ("real", "double precision") => Widening,
        ("smallint" | "integer", "double precision") | ("smallint", "real") => Widening,
        (a, b) if is_numeric(a) && is_numeric(b) => Narrowing,
        // Postgres casts integer ↔ boolean only; smallint and bigint have no boolean cast.
        ("integer", "boolean") | ("boolean", "integer") => Narrowing,
        ("date", "timestamptz") => Widening,
        ("timestamptz", "date") => Narrowing,
        ("jsonb", "json") | ("json", "jsonb") => Narrowing,
        (a, b) if is_vector(a) && is_vector(b) => {
            let half_to_full = a == "halfvec" && b == "vector";
            match (from_dims == to_dims, a == b || half_to_full) {
                (true, true) => Widening,
                // vector → halfvec loses precision but casts.
                (true, false) => Narrowing,
                // A vector of other dimensions is another embedding: no cast
                // can make one; add a column and re-embed.
                (false, _) => NoCast,
            }
        }
        ("bit", "bit") => Narrowing,
        _ => NoCast,
    }
}

const INTEGERS: [&str; 3] = ["smallint", "integer", "bigint"];

fn is_numeric(t: &str) -> bool {
    INTEGERS.contains(&t) || t == "real" || t == "double precision"
}

fn is_vector(t: &str) -> bool {
    matches!(t, "vector" | "halfvec" | "sparsevec")
}

/// `vector(384)` → (`vector`, Some("384")).
fn split_dims(t: &str) -> (&str, Option<&str>) {
    match t.split_once('(') {
        Some((base, rest)) => (base, rest.strip_suffix(')')),
        None => (t, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_changes() {
        assert_eq!(type_change("integer", "bigint"), TypeChange::Widening);
        assert_eq!(type_change("bigint", "integer"), TypeChange::Narrowing);
        assert_eq!(type_change("uuid", "text"), TypeChange::Widening);
        assert_eq!(type_change("text", "uuid"), TypeChange::Narrowing);
        assert_eq!(type_change("uuid", "bigint"), TypeChange::NoCast);
        assert_eq!(type_change("integer[]", "bigint[]"), TypeChange::Widening);
        assert_eq!(type_change("vector(3)", "vector(4)"), TypeChange::NoCast);
        assert_eq!(
            type_change("vector(3)", "halfvec(3)"),
            TypeChange::Narrowing
        );
        assert_eq!(type_change("bigint", "boolean"), TypeChange::NoCast);
        assert_eq!(type_change("integer", "boolean"), TypeChange::Narrowing);
        assert_eq!(type_change("text[]", "jsonb"), TypeChange::NoCast);
        assert_eq!(type_change("halfvec(3)", "vector(3)"), TypeChange::Widening);
        assert_eq!(type_change("jsonb", "uuid"), TypeChange::NoCast);
    }
}
