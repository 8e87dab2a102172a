//! Filters rendered as sea-query expressions: identifiers come from the
//! schema (sea-query quotes them), every operand is a bound parameter, and
//! every operand is checked for NUL before it is bound.
//!
//! Semantics follow SQL and the core docs: a comparison with NULL matches
//! nothing; `IN ()` matches nothing; `NOT IN ()` matches every non-NULL row
//! (so it agrees with `NOT IN (x)` on NULL rows); `NOT` of an unknown result
//! is still unknown.

use reposmith_core::filter::{CompareOp, FilterNode};
use reposmith_core::{ColumnDef, ColumnType, EntitySchema, Error, Result, Value};
use sea_query::{Expr, ExprTrait, LikeExpr};

use crate::bind::{array_of, to_sea};
use crate::validate::{check_json, check_text, check_value};

/// The column as a sea-query expression (a quoted identifier).
pub(crate) fn col(column: &ColumnDef) -> Expr {
    Expr::col(column.name)
}

/// `value` bound as a parameter of `column`'s type.
pub(crate) fn val(column: &ColumnDef, value: Value) -> Expr {
    Expr::val(to_sea(value, &column.ty))
}

/// The row scope's condition, `None` when the scope has none: the one
/// rendering of a repository's implicit conditions, which every statement
/// (fixed ones, where a value would be a placeholder bound after the
/// statement's own, and filtered ones) ANDs in. The scope comes from the
/// schema, so its column positions are valid.
pub(crate) fn scope_expr(schema: &EntitySchema, scope: &reposmith_core::RowScope) -> Option<Expr> {
    use reposmith_core::scope::ScopeCondition;
    let conditions = scope.conditions().iter().map(|condition| match condition {
        ScopeCondition::Live { column } => col(&schema.columns[*column]).is_null(),
        // A placeholder: the tenant is bound after the statement's own values.
        ScopeCondition::Tenant { column, .. } => {
            let c = &schema.columns[*column];
            col(c).eq(val(c, Value::Null))
        }
    });
    conditions.reduce(|all, next| all.and(next))
}

/// Renders `node` over `schema`, rejecting NUL in any operand.
pub(crate) fn filter_expr(schema: &EntitySchema, node: &FilterNode) -> Result<Expr> {
    node.check_shape(schema.entity)?;
    Renderer { schema }.node(node)
}

struct Renderer<'s> {
    schema: &'s EntitySchema,
}

impl Renderer<'_> {
    fn column(&self, index: usize) -> Result<&'static ColumnDef> {
        let schema: &'static [ColumnDef] = self.schema.columns;
        schema.get(index).ok_or_else(|| {
            Error::invalid(
                self.schema.entity,
                "filter",
                format!("no column at position {index}"),
            )
        })
    }

    fn operand(&self, column: &ColumnDef, value: &Value) -> Result<Expr> {
        check_value(self.schema.entity, column.field, value)?;
        Ok(val(column, value.clone()))
    }

    fn node(&self, node: &FilterNode) -> Result<Expr> {
        match node {
            FilterNode::Compare { column, op, value } => self.compare(*column, *op, value),
            FilterNode::In {
                column,
                values,
                negated,
            } => self.is_in(*column, values, *negated),
            FilterNode::Between { column, low, high } => {
                let c = self.column(*column)?;
                Ok(col(c).between(self.operand(c, low)?, self.operand(c, high)?))
            }
            FilterNode::Like {
                column,
                pattern,
                case_insensitive,
            } => self.like(*column, pattern, *case_insensitive),
            FilterNode::IsNull { column, negated } => {
                let c = col(self.column(*column)?);
                Ok(if *negated {
                    c.is_not_null()
                } else {
                    c.is_null()
                })
            }
            FilterNode::JsonContains { column, document } => self.contains(*column, document),
            FilterNode::JsonHasKey { column, path, key } => self.has_key(*column, path, key),
            FilterNode::And(children) => self.fold(children, true),
            FilterNode::Or(children) => self.fold(children, false),
            FilterNode::Not(child) => Ok(self.node(child)?.not()),
            FilterNode::All => Ok(Expr::cust("TRUE")),
            // A variant added to the core later that this backend does not know yet:
            // ignoring it would silently widen a delete_where, so refuse instead.
            other => Err(Error::invalid(
                self.schema.entity,
                "filter",
                format!("not supported by PostgreSQL: {other:?}"),
            )),
        }
    }

    fn compare(&self, column: usize, op: CompareOp, value: &Value) -> Result<Expr> {
        let c = self.column(column)?;
        let (left, right) = (col(c), self.operand(c, value)?);
        Ok(match op {
            CompareOp::Eq => left.eq(right),
            CompareOp::Ne => left.ne(right),
            CompareOp::Lt => left.lt(right),
            CompareOp::Le => left.lte(right),
            CompareOp::Gt => left.gt(right),
            CompareOp::Ge => left.gte(right),
            _ => {
                return Err(Error::invalid(
                    self.schema.entity,
                    c.field,
                    "unknown operator",
                ));
            }
        })
    }

    /// `= ANY($1)` with one array parameter: one statement shape for any list length,
    /// and no bind-count limit. Array columns cannot use it (an array of arrays
    /// would flatten), so they get a plain `IN` list.
    fn is_in(&self, column: usize, values: &[Value], negated: bool) -> Result<Expr> {
        let c = self.column(column)?;
        for v in values {
            check_value(self.schema.entity, c.field, v)?;
        }
        if values.is_empty() {
            return Ok(if negated {
                col(c).is_not_null()
            } else {
                Expr::cust("FALSE")
            });
        }
        if let ColumnType::Array(_) = c.ty {
            let items = values.iter().map(|v| val(c, v.clone()));
            return Ok(if negated {
                col(c).is_not_in(items)
            } else {
                col(c).is_in(items)
            });
        }
        let list = Expr::val(array_of(values.to_vec(), &c.ty));
        let sql = if negated {
            "$1 <> ALL($2)"
        } else {
            "$1 = ANY($2)"
        };
        Ok(Expr::cust_with_exprs(sql, [col(c), list]))
    }

    fn like(&self, column: usize, pattern: &str, case_insensitive: bool) -> Result<Expr> {
        let c = self.column(column)?;
        check_text(self.schema.entity, c.field, pattern)?;
        if let Some(reason) = reposmith_core::filter::like_pattern_error(pattern) {
            return Err(Error::invalid(self.schema.entity, c.field, reason));
        }
        let like = LikeExpr::new(pattern).escape('\\');
        if !case_insensitive {
            return Ok(col(c).like(like));
        }
        // sea-query's ILIKE wraps `pattern ESCAPE c` in parentheses, which Postgres rejects.
        Ok(Expr::cust_with_exprs(
            "$1 ILIKE $2",
            [col(c), Expr::from(like)],
        ))
    }

    fn contains(&self, column: usize, document: &serde_json::Value) -> Result<Expr> {
        let c = self.column(column)?;
        check_json(self.schema.entity, c.field, document)?;
        let doc = val(c, Value::Json(document.clone()));
        Ok(Expr::cust_with_exprs("$1 @> $2::jsonb", [col(c), doc]))
    }

    fn has_key(&self, column: usize, path: &[String], key: &str) -> Result<Expr> {
        let c = self.column(column)?;
        for part in path.iter().map(String::as_str).chain([key]) {
            check_text(self.schema.entity, c.field, part)?;
        }
        let key = Expr::val(key.to_owned());
        if path.is_empty() {
            return Ok(Expr::cust_with_exprs("($1 ? $2)", [col(c), key]));
        }
        let path = path.iter().map(|p| Value::Text(p.clone())).collect();
        let path = Expr::val(array_of(path, &ColumnType::Text));
        Ok(Expr::cust_with_exprs(
            "(($1 #> $2::text[]) ? $3)",
            [col(c), path, key],
        ))
    }

    /// `children` joined by AND (`all`) or OR as a balanced tree: sea-query
    /// renders a binary expression recursively, so a left-deep chain of a
    /// thousand conditions overflowed a 2 MiB stack in a debug build, while
    /// a balanced one nests only about ten deep. `And` of nothing is true
    /// and `Or` of nothing is false, as in logic.
    fn fold(&self, children: &[FilterNode], all: bool) -> Result<Expr> {
        match children {
            [] => Ok(Expr::cust(if all { "TRUE" } else { "FALSE" })),
            [only] => self.node(only),
            _ => {
                let (left, right) = children.split_at(children.len() / 2);
                let (left, right) = (self.fold(left, all)?, self.fold(right, all)?);
                Ok(if all { left.and(right) } else { left.or(right) })
            }
        }
    }
}
