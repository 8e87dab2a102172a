//! Filters rendered to BSON query documents with SQL's NULL semantics.
//!
//! SQL logic has three values: a comparison with NULL is *unknown*, and
//! `NOT unknown` is still unknown, so neither `x <> 1` nor `NOT (x = 1)`
//! matches a NULL `x`. MongoDB's `$ne`, `$nin`, `$not` and `$nor` do match
//! null and missing fields. So the renderer never emits a bare negation:
//! every node is rendered for one of two questions, "is it TRUE?" or "is it
//! FALSE?", and `NOT` swaps the question (De Morgan turns `AND` and `OR`
//! into each other on the way down). The FALSE form of a comparison is its
//! complement guarded against null (`$nin: [v, null]`, `$gte` for `$lt`, …),
//! so unknown rows fall out of both forms, as in SQL.
//!
//! BSON dates hold whole milliseconds. A filter operand finer than that is
//! not rounded (which would flip the answer for its millisecond's rows) but
//! compared as Postgres compares it at full precision: `x < t` becomes
//! `x < ceil(t)`, `x = t` matches nothing, and so on.
//!
//! User values are always operands of explicit operators (`$eq`, `$in`, …),
//! never a bare document, so a string or JSON value shaped like
//! `{"$ne": ""}` is matched literally; JSON keys are checked by
//! [`crate::json_filter`].

use mongodb::bson::{Bson, DateTime as BsonDateTime, Document, doc};
use reposmith_core::filter::{CompareOp, FilterNode};
use reposmith_core::{ColumnDef, EntitySchema, Error, Result, Value};

use crate::codec::{key, to_bson};
use crate::json_filter;

/// The query document selecting the rows where `node` is TRUE.
pub(crate) fn filter_doc(schema: &'static EntitySchema, node: &FilterNode) -> Result<Document> {
    node.check_shape(schema.entity)?;
    Renderer { schema }.when(node, true)
}

/// Matches no document: every document has an `_id`.
pub(crate) fn nothing() -> Document {
    doc! { "_id": { "$exists": false } }
}

/// `{key: {op: operand}}`.
pub(crate) fn op(key: &str, op: &str, operand: impl Into<Bson>) -> Document {
    let mut inner = Document::new();
    inner.insert(op, operand.into());
    let mut outer = Document::new();
    outer.insert(key, inner);
    outer
}

/// For an instant with a part finer than a millisecond (BSON dates hold
/// whole milliseconds, so every stored one does), the millisecond below it.
fn sub_millisecond(value: &Value) -> Option<i64> {
    match value {
        Value::TimestampTz(t) if t.timestamp_subsec_nanos() % 1_000_000 != 0 => {
            // `timestamp_millis` floors, before 1970 too: sub-second nanos are positive.
            Some(t.timestamp_millis())
        }
        _ => None,
    }
}

/// `{k: {name: t}}` for an instant `t` strictly between the stored
/// milliseconds `floor` and `floor + 1`, with the answers Postgres gives at
/// full precision: `x < t` is `x < floor + 1`, `x <= t` is `x <= floor`,
/// `x = t` never holds, and `x <> t` holds for every non-null `x`. Rounding
/// the operand instead (as its encoding does) would flip the stored
/// millisecond's answer: `created_at < now()` would miss this
/// millisecond's rows.
fn compare_inexact_instant(k: &str, name: &str, floor: i64) -> Document {
    let at = |ms: i64| Bson::DateTime(BsonDateTime::from_millis(ms));
    match name {
        "$lt" | "$gte" => op(k, name, at(floor + 1)),
        "$lte" | "$gt" => op(k, name, at(floor)),
        "$ne" => op(k, "$ne", Bson::Null),
        _ => nothing(),
    }
}

pub(crate) struct Renderer {
    pub(crate) schema: &'static EntitySchema,
}

impl Renderer {
    fn column(&self, index: usize) -> Result<(&'static str, &'static ColumnDef)> {
        let column = self.schema.columns.get(index).ok_or_else(|| {
            let reason = format!("no column at position {index}");
            Error::invalid(self.schema.entity, "filter", reason)
        })?;
        Ok((key(self.schema, index), column))
    }

    pub(crate) fn operand(&self, column: &ColumnDef, value: &Value) -> Result<Bson> {
        to_bson(self.schema.entity, column.field, value)
    }

    /// The rows where `node` has the truth value `truth` (never the unknown ones).
    fn when(&self, node: &FilterNode, truth: bool) -> Result<Document> {
        match node {
            FilterNode::All => Ok(if truth { Document::new() } else { nothing() }),
            FilterNode::Compare { column, op, value } => self.compare(*column, *op, value, truth),
            FilterNode::In {
                column,
                values,
                negated,
            } => self.is_in(*column, values, truth != *negated),
            FilterNode::Between { column, low, high } => self.between(*column, low, high, truth),
            FilterNode::Like {
                column,
                pattern,
                case_insensitive,
            } => self.like(*column, pattern, *case_insensitive, truth),
            FilterNode::IsNull { column, negated } => self.is_null(*column, truth != *negated),
            FilterNode::JsonContains { column, document } => {
                let (k, c) = self.column(*column)?;
                json_filter::contains(self.schema.entity, k, c, document, truth)
            }
            FilterNode::JsonHasKey { column, path, key } => {
                let (k, c) = self.column(*column)?;
                json_filter::has_key(self.schema.entity, k, c, path, key, truth)
            }
            // NOT(a AND b) is NOT a OR NOT b, and the other way round.
            FilterNode::And(children) => self.combine(children, truth, truth),
            FilterNode::Or(children) => self.combine(children, truth, !truth),
            FilterNode::Not(child) => self.when(child, !truth),
            // A filter kind added to the core later: ignoring it would widen a delete_where.
            other => Err(Error::invalid(
                self.schema.entity,
                "filter",
                format!("not supported by MongoDB: {other:?}"),
            )),
        }
    }

    /// `$and` (when `all`) or `$or` of the children's `truth` forms; an empty
    /// `$and` is true and an empty `$or` false, as in logic.
    fn combine(&self, children: &[FilterNode], truth: bool, all: bool) -> Result<Document> {
        let parts = children
            .iter()
            .map(|child| self.when(child, truth).map(Bson::Document))
            .collect::<Result<Vec<_>>>()?;
        Ok(match (parts.is_empty(), all) {
            (true, true) => Document::new(),
            (true, false) => nothing(),
            (false, true) => doc! { "$and": parts },
            (false, false) => doc! { "$or": parts },
        })
    }

    fn compare(
        &self,
        column: usize,
        cmp: CompareOp,
        value: &Value,
        truth: bool,
    ) -> Result<Document> {
        let (k, c) = self.column(column)?;
        if *value == Value::Null {
            // A comparison with NULL is unknown: neither it nor its negation matches.
            return Ok(nothing());
        }
        // The complement of each operator, for the FALSE form.
        let name = match (cmp, truth) {
            (CompareOp::Eq, true) | (CompareOp::Ne, false) => "$eq",
            (CompareOp::Ne, true) | (CompareOp::Eq, false) => "$ne",
            (CompareOp::Lt, true) | (CompareOp::Ge, false) => "$lt",
            (CompareOp::Le, true) | (CompareOp::Gt, false) => "$lte",
            (CompareOp::Gt, true) | (CompareOp::Le, false) => "$gt",
            (CompareOp::Ge, true) | (CompareOp::Lt, false) => "$gte",
            _ => {
                return Err(Error::invalid(
                    self.schema.entity,
                    c.field,
                    "unknown operator",
                ));
            }
        };
        if let Some(floor) = sub_millisecond(value) {
            return Ok(compare_inexact_instant(k, name, floor));
        }
        let v = self.operand(c, value)?;
        if name == "$ne" {
            // `$ne` alone matches null and missing: exclude them too.
            return Ok(op(k, "$nin", vec![v, Bson::Null]));
        }
        // `$eq`, `$lt`, … never match a null of another BSON type bracket.
        Ok(op(k, name, v))
    }

    fn is_in(&self, column: usize, values: &[Value], member: bool) -> Result<Document> {
        let (k, c) = self.column(column)?;
        let mut list = Vec::with_capacity(values.len() + 1);
        // An instant finer than a millisecond equals no stored (whole
        // millisecond) date, so it neither matches nor excludes anything.
        let exact = |v: &&Value| **v != Value::Null && sub_millisecond(v).is_none();
        for v in values.iter().filter(exact) {
            list.push(self.operand(c, v)?);
        }
        if member {
            return Ok(if list.is_empty() {
                nothing()
            } else {
                op(k, "$in", list)
            });
        }
        // NOT IN leaves NULL rows out, whatever the list (an empty one included).
        list.push(Bson::Null);
        Ok(op(k, "$nin", list))
    }

    fn between(&self, column: usize, low: &Value, high: &Value, truth: bool) -> Result<Document> {
        let (k, c) = self.column(column)?;
        if *low == Value::Null || *high == Value::Null {
            return Ok(nothing());
        }
        // Stored dates are whole milliseconds: `x >= low` is `x >= ceil(low)`
        // and `x <= high` is `x <= floor(high)`, in both forms.
        let low = match sub_millisecond(low) {
            Some(floor) => Bson::DateTime(BsonDateTime::from_millis(floor + 1)),
            None => self.operand(c, low)?,
        };
        let high = match sub_millisecond(high) {
            Some(floor) => Bson::DateTime(BsonDateTime::from_millis(floor)),
            None => self.operand(c, high)?,
        };
        Ok(if truth {
            let mut range = Document::new();
            range.insert("$gte", low);
            range.insert("$lte", high);
            doc! { k: range }
        } else {
            doc! { "$or": [op(k, "$lt", low), op(k, "$gt", high)] }
        })
    }

    fn like(
        &self,
        column: usize,
        pattern: &str,
        insensitive: bool,
        truth: bool,
    ) -> Result<Document> {
        let (k, c) = self.column(column)?;
        if let Some(reason) = reposmith_core::filter::like_pattern_error(pattern) {
            return Err(Error::invalid(self.schema.entity, c.field, reason));
        }
        let regex = like_to_regex(pattern);
        if regex.len() > MAX_REGEX_BYTES {
            let reason = format!(
                "the pattern becomes a regular expression of {} bytes; MongoDB takes at most \
                 {MAX_REGEX_BYTES}",
                regex.len()
            );
            return Err(Error::invalid(self.schema.entity, c.field, reason));
        }
        // `s`: `.` must match newlines too, as `%` and `_` do in SQL.
        let options = if insensitive { "is" } else { "s" };
        let regex = doc! { "$regex": regex, "$options": options };
        Ok(if truth {
            doc! { k: regex }
        } else {
            doc! { "$and": [{ k: { "$not": regex } }, op(k, "$ne", Bson::Null)] }
        })
    }

    /// `IS NULL` is never unknown. A non-nullable column holds no SQL NULL,
    /// even when a JSON column stores the JSON value null as BSON null.
    fn is_null(&self, column: usize, null: bool) -> Result<Document> {
        let (k, c) = self.column(column)?;
        Ok(match (c.nullable, null) {
            (false, true) => nothing(),
            (false, false) => Document::new(),
            (true, true) => op(k, "$eq", Bson::Null),
            (true, false) => op(k, "$ne", Bson::Null),
        })
    }
}

/// MongoDB refuses a regular expression longer than this ("Regular
/// expression is too long", code 51091): a longer `LIKE`, `starts_with` or
/// `contains` is refused first, naming the field. (A server may cap it
/// lower: SecantusDB, the test server, takes 1,000 characters.)
const MAX_REGEX_BYTES: usize = 32_764;

/// A SQL `LIKE` pattern as an anchored regular expression: `%` → `.*`,
/// `_` → `.`, `\x` → `x` literally; every other character is escaped.
pub(crate) fn like_to_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() * 2 + 2);
    out.push('^');
    let mut chars = pattern.chars();
    while let Some(ch) = chars.next() {
        match ch {
            // `%%` means what `%` means; one `.*` per run keeps a backtracking
            // regex engine from trying every split of the text between them.
            '%' if out.ends_with(".*") => {}
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '\\' => {
                if let Some(next) = chars.next() {
                    push_literal(&mut out, next);
                }
            }
            other => push_literal(&mut out, other),
        }
    }
    out.push('$');
    out
}

/// `ch` matched literally: ASCII punctuation gets a backslash (PCRE reads
/// `\` before a non-alphanumeric as the character itself), NUL is spelled `\x00`.
fn push_literal(out: &mut String, ch: char) {
    if ch == '\0' {
        out.push_str("\\x00");
        return;
    }
    if ch.is_ascii_punctuation() {
        out.push('\\');
    }
    out.push(ch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_past_mongodbs_regex_limit_is_invalid_input() {
        use reposmith_core::{ColumnDef, ColumnType, IdStrategy};
        static COLUMNS: [ColumnDef; 2] = [
            ColumnDef::new("id", "id", ColumnType::BigInt, false),
            ColumnDef::new("body", "body", ColumnType::Text, false),
        ];
        static SCHEMA: EntitySchema =
            EntitySchema::new("Note", "notes", &COLUMNS, 0, IdStrategy::Assigned, &[]);
        let like = |pattern: String| FilterNode::Like {
            column: 1,
            pattern,
            case_insensitive: false,
        };
        // `^` and `$` around the pattern: two bytes.
        assert!(filter_doc(&SCHEMA, &like("x".repeat(MAX_REGEX_BYTES - 2))).is_ok());
        let err = filter_doc(&SCHEMA, &like("x".repeat(MAX_REGEX_BYTES - 1))).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInput { field, .. } if field == "body"),
            "{err}"
        );
    }

    #[test]
    fn like_patterns_become_anchored_escaped_regexes() {
        assert_eq!(like_to_regex("%ta"), "^.*ta$");
        assert_eq!(like_to_regex("%%%a%%"), "^.*a.*$");
        assert_eq!(like_to_regex("\\.*%"), "^\\.\\*.*$");
        assert_eq!(like_to_regex("50\\%\\_o_"), "^50\\%\\_o.$");
        assert_eq!(like_to_regex("a.b(c)*"), "^a\\.b\\(c\\)\\*$");
    }
}
