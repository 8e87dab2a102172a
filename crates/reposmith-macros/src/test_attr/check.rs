//! Stage 2: the rules, one function each, every violation collected.

use darling::error::Accumulator;
use darling::{Error, Result};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, LitStr};

use super::attr::{MigrationsOpt, TestOptions};

/// The checked options.
pub(crate) struct TestModel {
    /// `None`: the default (`migrations/` if it exists); `Some(None)`: off.
    pub(crate) migrations: Option<Option<LitStr>>,
    pub(crate) fixtures: Vec<LitStr>,
    /// Backend names (`postgres`, `mongo`, `redis`), or `None` for all configured.
    pub(crate) backends: Option<Vec<&'static str>>,
    pub(crate) pool_size: Option<u32>,
    pub(crate) multi_thread: bool,
}

/// Applies every rule to `options` and `function`.
pub(crate) fn check(options: &TestOptions, function: &ItemFn) -> Result<TestModel> {
    let mut errors = Error::accumulator();
    signature(function, &mut errors);
    let model = TestModel {
        migrations: migrations(options, &mut errors),
        fixtures: fixtures(options, &mut errors),
        backends: backends(options, &mut errors),
        pool_size: pool_size(options, &mut errors),
        multi_thread: flavor(options, &mut errors),
    };
    errors.finish_with(model)
}

/// The function is `async`, not generic, and takes exactly one argument:
/// the `TestContext` or the `Store`.
fn signature(function: &ItemFn, errors: &mut Accumulator) {
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        errors.push(
            Error::custom("#[reposmith::test] runs an `async fn`: write `async fn name(..)`")
                .with_span(&sig.fn_token),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.push(
            Error::custom("a #[reposmith::test] function cannot be generic")
                .with_span(&sig.generics),
        );
    }
    let span = match sig.inputs.is_empty() {
        true => sig.paren_token.span.join(),
        false => sig.inputs.span(),
    };
    let one_typed = sig.inputs.len() == 1 && matches!(sig.inputs.first(), Some(FnArg::Typed(_)));
    if !one_typed {
        errors.push(
            Error::custom(
                "a #[reposmith::test] function takes one argument: the correct format looks \
                 like `async fn name(ctx: reposmith::testing::TestContext)` or \
                 `async fn name(store: reposmith::Store)`",
            )
            .with_span(&span),
        );
    }
}

/// `migrations = true` is refused: the default already finds `migrations/`.
fn migrations(options: &TestOptions, errors: &mut Accumulator) -> Option<Option<LitStr>> {
    match options.migrations.as_ref()? {
        MigrationsOpt::Path(path) if path.value().trim().is_empty() => {
            errors
                .push(Error::custom("`migrations` names a directory; it is empty").with_span(path));
            None
        }
        MigrationsOpt::Path(path) => Some(Some(path.clone())),
        MigrationsOpt::Off => Some(None),
        MigrationsOpt::True(span) => {
            errors.push(
                Error::custom(
                    "`migrations = true` is the default (the crate's `migrations/` directory): \
                     name a directory or write `migrations = false`",
                )
                .with_span(span),
            );
            None
        }
    }
}

/// A fixture is a `.sql` (PostgreSQL) or `.json` (MongoDB) file, listed once.
fn fixtures(options: &TestOptions, errors: &mut Accumulator) -> Vec<LitStr> {
    let Some(list) = &options.fixtures else {
        return Vec::new();
    };
    let mut seen = Vec::new();
    for file in &list.0 {
        let name = file.value();
        if !(name.ends_with(".sql") || name.ends_with(".json")) {
            errors.push(
                Error::custom(format!(
                    "fixture {name:?} is neither `.sql` (PostgreSQL) nor `.json` (MongoDB)"
                ))
                .with_span(file),
            );
        } else if seen.contains(&name) {
            errors.push(Error::custom(format!("fixture {name:?} is listed twice")).with_span(file));
        }
        seen.push(name);
    }
    list.0.clone()
}

/// `backends(..)` names each of `postgres`, `mongo`, `redis` at most once, and at least one.
fn backends(options: &TestOptions, errors: &mut Accumulator) -> Option<Vec<&'static str>> {
    let list = options.backends.as_ref()?;
    if list.is_empty() {
        errors.push(
            Error::custom("`backends()` is empty: name at least one of postgres, mongo, redis")
                .with_span(&list.span()),
        );
    }
    let mut names: Vec<&'static str> = Vec::new();
    for path in list.iter() {
        let name = path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let known = ["postgres", "mongo", "redis"]
            .into_iter()
            .find(|k| *k == name);
        match known {
            Some(known) if names.contains(&known) => errors.push(
                Error::custom(format!("backend `{known}` is listed twice")).with_span(path),
            ),
            Some(known) => names.push(known),
            None => errors.push(
                Error::custom(format!(
                    "unknown backend `{}`: the correct format looks like `backends(postgres, mongo, redis)`",
                    quote::quote!(#path).to_string().replace(' ', "")
                ))
                .with_span(path),
            ),
        }
    }
    Some(names)
}

/// `pool_size` is at least 1.
fn pool_size(options: &TestOptions, errors: &mut Accumulator) -> Option<u32> {
    let size = options.pool_size.as_ref()?;
    if **size == 0 {
        errors.push(Error::custom("`pool_size` must be at least 1").with_span(&size.span()));
    }
    Some(**size)
}

/// `flavor` is `current_thread` (the default) or `multi_thread`.
fn flavor(options: &TestOptions, errors: &mut Accumulator) -> bool {
    let Some(flavor) = &options.flavor else {
        return false;
    };
    match flavor.as_str() {
        "multi_thread" => true,
        "current_thread" => false,
        other => {
            errors.push(
                Error::custom(format!(
                    "unknown flavor {other:?}: the correct format looks like \
                     `flavor = \"multi_thread\"` or `flavor = \"current_thread\"`"
                ))
                .with_span(&flavor.span()),
            );
            false
        }
    }
}
