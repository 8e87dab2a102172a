//! Typed filters and orderings: one AST that Postgres renders with bound
//! parameters and MongoDB renders to BSON.
//!
//! Columns are typed constants the derive emits (`Document::TITLE`), so a
//! filter can only name a column the entity has and compare it with a value
//! of the field's type. No API here takes a column name as a string.

use std::marker::PhantomData;

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::schema::ColumnDef;
use crate::value::{FieldType, Value};

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A filter node over columns identified by their position in the schema.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FilterNode {
    /// Matches every row.
    All,
    /// `column op value`; a comparison with NULL matches nothing, as in SQL.
    Compare {
        /// Column position.
        column: usize,
        /// Operator.
        op: CompareOp,
        /// Bound value.
        value: Value,
    },
    /// `column IN (values)`, or `NOT IN` when `negated`.
    In {
        /// Column position.
        column: usize,
        /// Bound values.
        values: Vec<Value>,
        /// `NOT IN`.
        negated: bool,
    },
    /// `column BETWEEN low AND high` (inclusive).
    Between {
        /// Column position.
        column: usize,
        /// Lower bound.
        low: Value,
        /// Upper bound.
        high: Value,
    },
    /// SQL `LIKE` pattern (`%`, `_`, `\` escapes), case-insensitive when `ilike`.
    Like {
        /// Column position.
        column: usize,
        /// The pattern, bound as a value.
        pattern: String,
        /// `ILIKE`.
        case_insensitive: bool,
    },
    /// `column IS NULL`, or `IS NOT NULL` when `negated`.
    IsNull {
        /// Column position.
        column: usize,
        /// `IS NOT NULL`.
        negated: bool,
    },
    /// JSON containment: the column's document contains `document` (`@>`).
    JsonContains {
        /// Column position.
        column: usize,
        /// The contained document.
        document: serde_json::Value,
    },
    /// The JSON document has `key` at `path` (`?` on the sub-document).
    JsonHasKey {
        /// Column position.
        column: usize,
        /// Keys leading to the object that must hold `key`; empty for the top level.
        path: Vec<String>,
        /// The key.
        key: String,
    },
    /// Every child matches.
    And(Vec<FilterNode>),
    /// At least one child matches.
    Or(Vec<FilterNode>),
    /// The child does not match.
    Not(Box<FilterNode>),
}

/// The most conditions (nodes) one filter may hold; a longer list of
/// alternatives belongs in one `is_in`, which binds a single array.
pub const MAX_FILTER_NODES: usize = 1_024;

/// The deepest a filter may nest `and` / `or` / `not`.
pub const MAX_FILTER_DEPTH: usize = 64;

impl FilterNode {
    /// Refuses a filter too big or too deep to render
    /// ([`MAX_FILTER_NODES`], [`MAX_FILTER_DEPTH`]) with
    /// [`Error::InvalidInput`] naming `entity`, before a backend renders it:
    /// rendering recurses once per node, and a filter of tens of thousands of
    /// `or`ed conditions overflowed the thread's stack and aborted the
    /// process. The walk itself keeps its own stack, so it cannot overflow.
    pub fn check_shape(&self, entity: &'static str) -> Result<()> {
        let mut pending = vec![(self, 1usize)];
        let mut nodes = 0usize;
        while let Some((node, depth)) = pending.pop() {
            nodes += 1;
            if nodes > MAX_FILTER_NODES || depth > MAX_FILTER_DEPTH {
                return Err(Error::invalid(
                    entity,
                    "filter",
                    format!(
                        "a filter may hold at most {MAX_FILTER_NODES} conditions nested at most \
                         {MAX_FILTER_DEPTH} deep; match a long list of values with one `is_in`"
                    ),
                ));
            }
            match node {
                FilterNode::And(children) | FilterNode::Or(children) => {
                    pending.extend(children.iter().map(|c| (c, depth + 1)));
                }
                FilterNode::Not(child) => pending.push((child, depth + 1)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// A filter over entity `E`. Combine with [`Filter::and`], [`Filter::or`],
/// [`Filter::not`] or the `&`, `|`, `!` operators.
pub struct Filter<E> {
    node: FilterNode,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for Filter<E> {
    fn clone(&self) -> Self {
        Filter {
            node: self.node.clone(),
            entity: PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for Filter<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.node.fmt(f)
    }
}

impl<E: Entity> Filter<E> {
    pub(crate) fn new(node: FilterNode) -> Self {
        Filter {
            node,
            entity: PhantomData,
        }
    }

    /// Matches every row.
    pub fn all() -> Self {
        Filter::new(FilterNode::All)
    }

    /// Both filters match.
    pub fn and(self, other: Filter<E>) -> Self {
        match (self.node, other.node) {
            (FilterNode::All, node) | (node, FilterNode::All) => Filter::new(node),
            (FilterNode::And(mut left), FilterNode::And(right)) => {
                left.extend(right);
                Filter::new(FilterNode::And(left))
            }
            (FilterNode::And(mut left), node) => {
                left.push(node);
                Filter::new(FilterNode::And(left))
            }
            (left, right) => Filter::new(FilterNode::And(vec![left, right])),
        }
    }

    /// Either filter matches.
    pub fn or(self, other: Filter<E>) -> Self {
        match (self.node, other.node) {
            (FilterNode::Or(mut left), FilterNode::Or(right)) => {
                left.extend(right);
                Filter::new(FilterNode::Or(left))
            }
            // A chain `a.or(b).or(c)…` stays one flat list, as `and` does.
            (FilterNode::Or(mut left), node) => {
                left.push(node);
                Filter::new(FilterNode::Or(left))
            }
            (left, right) => Filter::new(FilterNode::Or(vec![left, right])),
        }
    }

    /// The filter does not match. Like SQL, `NOT (x = 1)` does not match rows where `x` is NULL.
    #[allow(
        clippy::should_implement_trait,
        reason = "`!` is implemented too; this reads better in chains"
    )]
    pub fn not(self) -> Self {
        Filter::new(FilterNode::Not(Box::new(self.node)))
    }

    /// A filter from an untyped tree the core built for `E` (a row scope).
    pub(crate) fn from_node(node: FilterNode) -> Self {
        Filter::new(node)
    }

    /// The untyped tree, for backends.
    pub fn node(&self) -> &FilterNode {
        &self.node
    }

    /// Takes the untyped tree, for backends.
    pub fn into_node(self) -> FilterNode {
        self.node
    }
}

impl<E: Entity> std::ops::BitAnd for Filter<E> {
    type Output = Filter<E>;

    fn bitand(self, rhs: Self) -> Self {
        self.and(rhs)
    }
}

impl<E: Entity> std::ops::BitOr for Filter<E> {
    type Output = Filter<E>;

    fn bitor(self, rhs: Self) -> Self {
        self.or(rhs)
    }
}

impl<E: Entity> std::ops::Not for Filter<E> {
    type Output = Filter<E>;

    fn not(self) -> Self {
        Filter::not(self)
    }
}

/// A typed column of entity `E` holding a field of type `T`.
pub struct Column<E, T> {
    index: usize,
    types: PhantomData<fn() -> (E, T)>,
}

impl<E, T> Clone for Column<E, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E, T> Copy for Column<E, T> {}

impl<E, T> std::fmt::Debug for Column<E, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Column").field(&self.index).finish()
    }
}

impl<E, T> Column<E, T> {
    /// The column at `index` of `E::SCHEMA.columns`; the derive emits these.
    /// Unbounded, so an unsupported field type is reported once, at the schema.
    #[doc(hidden)]
    pub const fn at(index: usize) -> Self {
        Column {
            index,
            types: PhantomData,
        }
    }
}

impl<E: Entity, T: FieldType> Column<E, T> {
    /// Position in the schema.
    pub const fn index(self) -> usize {
        self.index
    }

    /// The column's schema entry.
    pub fn def(self) -> &'static ColumnDef {
        &E::SCHEMA.columns[self.index]
    }

    fn compare(self, op: CompareOp, value: impl Into<T::Scalar>) -> Filter<E> {
        let value = value.into().to_value();
        Filter::new(FilterNode::Compare {
            column: self.index,
            op,
            value,
        })
    }

    /// Equal to `value`.
    pub fn eq(self, value: impl Into<T::Scalar>) -> Filter<E> {
        self.compare(CompareOp::Eq, value)
    }

    /// Not equal to `value` (rows where the column is NULL do not match).
    pub fn ne(self, value: impl Into<T::Scalar>) -> Filter<E> {
        self.compare(CompareOp::Ne, value)
    }

    /// Less than `value`.
    pub fn lt(self, value: impl Into<T::Scalar>) -> Filter<E> {
        self.compare(CompareOp::Lt, value)
    }

    /// Less than or equal to `value`.
    pub fn le(self, value: impl Into<T::Scalar>) -> Filter<E> {
        self.compare(CompareOp::Le, value)
    }

    /// Greater than `value`.
    pub fn gt(self, value: impl Into<T::Scalar>) -> Filter<E> {
        self.compare(CompareOp::Gt, value)
    }

    /// Greater than or equal to `value`.
    pub fn ge(self, value: impl Into<T::Scalar>) -> Filter<E> {
        self.compare(CompareOp::Ge, value)
    }

    /// One of `values`; an empty list matches nothing.
    pub fn is_in<V: Into<T::Scalar>>(self, values: impl IntoIterator<Item = V>) -> Filter<E> {
        let values = values.into_iter().map(|v| v.into().to_value()).collect();
        Filter::new(FilterNode::In {
            column: self.index,
            values,
            negated: false,
        })
    }

    /// None of `values`; an empty list matches every non-NULL row.
    pub fn not_in<V: Into<T::Scalar>>(self, values: impl IntoIterator<Item = V>) -> Filter<E> {
        let values = values.into_iter().map(|v| v.into().to_value()).collect();
        Filter::new(FilterNode::In {
            column: self.index,
            values,
            negated: true,
        })
    }

    /// Between `low` and `high`, both included.
    pub fn between(self, low: impl Into<T::Scalar>, high: impl Into<T::Scalar>) -> Filter<E> {
        let (low, high) = (low.into().to_value(), high.into().to_value());
        Filter::new(FilterNode::Between {
            column: self.index,
            low,
            high,
        })
    }

    /// The column is NULL.
    pub fn is_null(self) -> Filter<E> {
        Filter::new(FilterNode::IsNull {
            column: self.index,
            negated: false,
        })
    }

    /// The column is not NULL.
    pub fn is_not_null(self) -> Filter<E> {
        Filter::new(FilterNode::IsNull {
            column: self.index,
            negated: true,
        })
    }

    /// Ascending order, NULLs last.
    pub fn asc(self) -> Order<E> {
        Order::new(self.index, false)
    }

    /// Descending order, NULLs first (Postgres' default for `DESC`).
    pub fn desc(self) -> Order<E> {
        Order::new(self.index, true)
    }
}

/// Text operations, for `String` and `Option<String>` columns.
impl<E: Entity, T: FieldType<Scalar = String>> Column<E, T> {
    /// SQL `LIKE`: `%` matches any run, `_` one character, `\` escapes.
    pub fn like(self, pattern: impl Into<String>) -> Filter<E> {
        self.pattern(pattern.into(), false)
    }

    /// Case-insensitive `LIKE`.
    pub fn ilike(self, pattern: impl Into<String>) -> Filter<E> {
        self.pattern(pattern.into(), true)
    }

    /// Starts with `prefix`, taken literally (`%` and `_` in it are escaped).
    pub fn starts_with(self, prefix: impl AsRef<str>) -> Filter<E> {
        self.pattern(format!("{}%", escape_like(prefix.as_ref())), false)
    }

    /// Contains `needle`, taken literally.
    pub fn contains(self, needle: impl AsRef<str>) -> Filter<E> {
        self.pattern(format!("%{}%", escape_like(needle.as_ref())), false)
    }

    fn pattern(self, pattern: String, case_insensitive: bool) -> Filter<E> {
        Filter::new(FilterNode::Like {
            column: self.index,
            pattern,
            case_insensitive,
        })
    }
}

/// Escapes `%`, `_` and `\` so `text` matches only itself inside a LIKE pattern.
pub fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Why `pattern` is not a usable `LIKE` pattern, or `None` when it is. The
/// only malformed pattern is one ending in an unescaped `\`: PostgreSQL
/// refuses it ("LIKE pattern must not end with escape character", SQLSTATE
/// 22025) and a regular expression would silently drop it, so both backends
/// refuse it first, as invalid input naming the field.
pub fn like_pattern_error(pattern: &str) -> Option<&'static str> {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next().is_none() {
            return Some(
                "the LIKE pattern ends with the escape character `\\`; escape it as `\\\\` \
                 to match a backslash",
            );
        }
    }
    None
}

/// A `#[repo(json)]` column of entity `E`.
pub struct JsonColumn<E> {
    index: usize,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for JsonColumn<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for JsonColumn<E> {}

impl<E> std::fmt::Debug for JsonColumn<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JsonColumn").field(&self.index).finish()
    }
}

impl<E: Entity> JsonColumn<E> {
    /// The JSON column at `index` of `E::SCHEMA.columns`; the derive emits these.
    #[doc(hidden)]
    pub const fn at(index: usize) -> Self {
        JsonColumn {
            index,
            entity: PhantomData,
        }
    }

    /// Position in the schema.
    pub const fn index(self) -> usize {
        self.index
    }

    /// The document contains `document` (`@>`): objects match key by key, recursively.
    pub fn contains(self, document: serde_json::Value) -> Filter<E> {
        Filter::new(FilterNode::JsonContains {
            column: self.index,
            document,
        })
    }

    /// The top-level object has `key`.
    pub fn has_key(self, key: impl Into<String>) -> Filter<E> {
        let key = key.into();
        Filter::new(FilterNode::JsonHasKey {
            column: self.index,
            path: Vec::new(),
            key,
        })
    }

    /// A path into the document: `metadata.path("author").path("name").eq("Ada")`.
    pub fn path(self, key: impl Into<String>) -> JsonPath<E> {
        JsonPath {
            column: self.index,
            keys: vec![key.into()],
            entity: PhantomData,
        }
    }

    /// The column is NULL.
    pub fn is_null(self) -> Filter<E> {
        Filter::new(FilterNode::IsNull {
            column: self.index,
            negated: false,
        })
    }
}

/// A path of object keys inside a JSON column.
pub struct JsonPath<E> {
    column: usize,
    keys: Vec<String>,
    entity: PhantomData<fn() -> E>,
}

impl<E: Entity> JsonPath<E> {
    /// One level deeper.
    pub fn path(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// The value at this path matches `value`: for a scalar (string, number,
    /// bool, null) that is JSON equality (`"1"` is not `1`); for an array or
    /// an object it is containment — the stored value holds at least these
    /// elements or keys.
    ///
    /// Rendered as containment of `{"k1": {"k2": value}}`, so a GIN index on the column serves it.
    pub fn eq(self, value: impl Into<serde_json::Value>) -> Filter<E> {
        let document = self
            .keys
            .iter()
            .rev()
            .fold(value.into(), |inner, key| serde_json::json!({ key: inner }));
        Filter::new(FilterNode::JsonContains {
            column: self.column,
            document,
        })
    }

    /// The object at this path has `key`.
    pub fn has_key(self, key: impl Into<String>) -> Filter<E> {
        let key = key.into();
        Filter::new(FilterNode::JsonHasKey {
            column: self.column,
            path: self.keys,
            key,
        })
    }
}

/// A sort key: a column and a direction.
pub struct Order<E> {
    column: usize,
    descending: bool,
    entity: PhantomData<fn() -> E>,
}

impl<E> Clone for Order<E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Order<E> {}

impl<E> std::fmt::Debug for Order<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let direction = if self.descending { "desc" } else { "asc" };
        write!(f, "Order({} {direction})", self.column)
    }
}

impl<E> Order<E> {
    fn new(column: usize, descending: bool) -> Self {
        Order {
            column,
            descending,
            entity: PhantomData,
        }
    }

    /// Position of the column in the schema.
    pub fn column(&self) -> usize {
        self.column
    }

    /// True for descending order.
    pub fn is_descending(&self) -> bool {
        self.descending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_trailing_unescaped_backslash_spoils_a_pattern() {
        for ok in ["", "a%", "\\\\", "50\\%", "a\\_b", &escape_like("x\\")] {
            assert_eq!(like_pattern_error(ok), None, "{ok:?}");
        }
        for bad in ["\\", "a\\", "\\\\\\"] {
            assert!(like_pattern_error(bad).is_some(), "{bad:?}");
        }
    }
}
