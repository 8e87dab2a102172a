//! Stage 1: the attribute's options, as written, with their spans.

use darling::util::{PathList, SpannedValue};
use darling::{Error, FromMeta, Result};
use proc_macro2::Span;
use syn::{Expr, ExprLit, Lit, LitStr, Meta};

/// `#[reposmith::test(..)]`'s options. darling rejects unknown keys with a
/// suggestion and duplicated ones.
#[derive(FromMeta, Default)]
pub(crate) struct TestOptions {
    /// `migrations = "path"` or `migrations = false`.
    pub(crate) migrations: Option<MigrationsOpt>,
    /// `fixtures("a.sql", "b.json")`.
    pub(crate) fixtures: Option<Fixtures>,
    /// `backends(postgres, mongo, redis)`.
    pub(crate) backends: Option<SpannedValue<PathList>>,
    /// `pool_size = N`.
    pub(crate) pool_size: Option<SpannedValue<u32>>,
    /// `flavor = "multi_thread" | "current_thread"`.
    pub(crate) flavor: Option<SpannedValue<String>>,
}

/// `migrations = ".."` or `migrations = false`.
pub(crate) enum MigrationsOpt {
    /// A directory, relative to the crate.
    Path(LitStr),
    /// `false`: no migrations.
    Off,
    /// `true`, which means nothing (the default already looks for `migrations/`).
    True(Span),
}

impl FromMeta for MigrationsOpt {
    fn from_expr(expr: &Expr) -> Result<Self> {
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Str(path),
                ..
            }) => Ok(MigrationsOpt::Path(path.clone())),
            Expr::Lit(ExprLit {
                lit: Lit::Bool(flag),
                ..
            }) => Ok(match flag.value {
                false => MigrationsOpt::Off,
                true => MigrationsOpt::True(flag.span),
            }),
            other => Err(Error::custom(
                "`migrations` takes a directory or `false`: the correct format looks like \
                 `migrations = \"migrations/app\"`",
            )
            .with_span(other)),
        }
    }
}

/// `fixtures("a.sql", "b.json")`: string literals only.
pub(crate) struct Fixtures(pub(crate) Vec<LitStr>);

impl FromMeta for Fixtures {
    fn from_meta(meta: &Meta) -> Result<Self> {
        let Meta::List(list) = meta else {
            return Err(Error::custom(
                "`fixtures` lists files: the correct format looks like \
                 `fixtures(\"users.sql\", \"traces.json\")`",
            )
            .with_span(meta));
        };
        let items = list
            .parse_args_with(syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated)
            .map_err(Error::from)?;
        let mut errors = Error::accumulator();
        let mut files = Vec::new();
        for item in items {
            match item {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(file),
                    ..
                }) => files.push(file),
                other => errors.push(
                    Error::custom("a fixture is a string: `fixtures(\"users.sql\")`")
                        .with_span(&other),
                ),
            }
        }
        errors.finish_with(Fixtures(files))
    }
}
