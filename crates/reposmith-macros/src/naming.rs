//! Names the derive makes up: default table names, index names and column
//! constants.

use heck::{ToShoutySnakeCase, ToSnakeCase};

/// The default table for a struct: snake_case, pluralized by English rules
/// (`Document` → `documents`, `Category` → `categories`, `Match` → `matches`).
pub(crate) fn table_name(struct_name: &str) -> String {
    pluralize(&struct_name.to_snake_case())
}

fn pluralize(word: &str) -> String {
    let ends_with_any = |suffixes: &[&str]| suffixes.iter().any(|s| word.ends_with(s));
    if ends_with_any(&["s", "x", "z", "ch", "sh"]) {
        return format!("{word}es");
    }
    let mut chars = word.chars().rev();
    if let (Some('y'), Some(before)) = (chars.next(), chars.next())
        && !"aeiou".contains(before)
    {
        return format!("{}ies", &word[..word.len() - 1]);
    }
    format!("{word}s")
}

/// The index Postgres and MongoDB know a column's index by:
/// `<table>_<column>_key` when unique, else `<table>_<column>_idx` (vector
/// and full-text indexes included), so a conflict names the field.
pub(crate) fn index_name(table: &str, column: &str, unique: bool) -> String {
    format!("{table}_{column}_{}", if unique { "key" } else { "idx" })
}

/// The associated constant naming a field's column: `source_url` → `SOURCE_URL`.
pub(crate) fn column_const(field: &str) -> String {
    field.to_shouty_snake_case()
}

/// The stored name of an enum variant: `InProgress` → `in_progress`.
pub(crate) fn variant_name(variant: &str) -> String {
    variant.to_snake_case()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pluralizes_like_english() {
        assert_eq!(table_name("Document"), "documents");
        assert_eq!(table_name("Category"), "categories");
        assert_eq!(table_name("Day"), "days");
        assert_eq!(table_name("Match"), "matches");
        assert_eq!(table_name("Status"), "statuses");
        assert_eq!(table_name("ChatMessage"), "chat_messages");
        assert_eq!(table_name("LLMTrace"), "llm_traces");
    }

    #[test]
    fn constants_are_shouty() {
        assert_eq!(column_const("source_url"), "SOURCE_URL");
        assert_eq!(variant_name("InProgress"), "in_progress");
        assert_eq!(index_name("docs", "slug", true), "docs_slug_key");
        assert_eq!(
            index_name("docs", "search_tsv", false),
            "docs_search_tsv_idx"
        );
    }
}
