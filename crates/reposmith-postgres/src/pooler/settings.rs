//! Session settings without a session: what Transaction mode connects
//! with, and the settings it replays in every transaction instead of
//! sending them as startup `options`.

use std::sync::{Arc, RwLock};

use reposmith_core::{ConnectionUrl, Error, Result};
use sqlx::postgres::PgConnectOptions;

use crate::backend::parse_url;
use crate::{PgConfig, PoolerMode};

/// The settings a pool replays after each `BEGIN`, as one `SELECT
/// set_config(name, value, true), ...` (`set_config` with `is_local` is
/// `SET LOCAL`, and unlike `SET LOCAL` it reads a list value such as
/// `search_path=a,b` the way a startup `-c` does).
pub(crate) struct TransactionSettings {
    settings: RwLock<Vec<(String, String)>>,
    sql: RwLock<Arc<str>>,
}

impl TransactionSettings {
    /// Replays `settings`, in order (a later one wins, as in `options`).
    pub(crate) fn new(settings: Vec<(String, String)>) -> Self {
        let sql = set_local_sql(&settings).into();
        TransactionSettings {
            settings: RwLock::new(settings),
            sql: RwLock::new(sql),
        }
    }

    /// `begin` (a `BEGIN ...` statement) followed by the settings, for one
    /// simple-query round trip.
    pub(crate) fn begin(&self, begin: &str) -> String {
        let sql = self.set_local();
        match sql.is_empty() {
            true => begin.to_owned(),
            false => format!("{begin}; {sql}"),
        }
    }

    /// The `SELECT set_config(...)` statement alone (empty without settings).
    pub(crate) fn set_local(&self) -> Arc<str> {
        Arc::clone(&self.sql.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Replays `more` too from now on (pgvector's iterative scans, once the
    /// extension appears after connect).
    pub(crate) fn add(&self, more: &[(&str, &str)]) {
        let mut settings = self.settings.write().unwrap_or_else(|p| p.into_inner());
        settings.extend(more.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
        *self.sql.write().unwrap_or_else(|p| p.into_inner()) = set_local_sql(&settings).into();
    }
}

/// Settings a transaction takes when it starts (`default_transaction_*`):
/// replayed after its `BEGIN` they would change nothing, so a read-only
/// URL would silently write.
fn shapes_transactions(name: &str) -> bool {
    name.to_ascii_lowercase()
        .starts_with("default_transaction_")
}

fn set_local_sql(settings: &[(String, String)]) -> String {
    if settings.is_empty() {
        return String::new();
    }
    let calls: Vec<String> = settings
        .iter()
        .map(|(name, value)| format!("set_config({}, {}, true)", literal(name), literal(value)))
        .collect();
    format!("SELECT {}", calls.join(", "))
}

/// An escape-string literal, correct whatever `standard_conforming_strings` says.
fn literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// What each transaction on the server at `url` replays behind a
/// transaction pooler: the `-c` settings of the URL's `options`, then
/// `session` (in `options` order, so a later one wins as it would at
/// connect). `None` in Direct mode, where sessions get them at connect.
pub(crate) fn transaction_settings(
    config: &PgConfig,
    url: &ConnectionUrl,
    session: Vec<(String, String)>,
) -> Result<Option<TransactionSettings>> {
    if config.pooler == PoolerMode::Direct {
        return Ok(None);
    }
    let mut settings = match parse_url(url)?.get_options() {
        Some(options) => parse_options(options)
            .map_err(|why| Error::config("postgresql", format!("the URL's `options`: {why}")))?,
        None => Vec::new(),
    };
    if let Some((name, _)) = settings.iter().find(|(name, _)| shapes_transactions(name)) {
        return Err(Error::config(
            "postgresql",
            format!(
                "the URL's `options` set `{name}`, which a transaction reads when it starts: set                  with SET LOCAL after BEGIN (as Transaction mode replays settings) it would not                  apply. Use PgConfig::transaction_isolation for units, or set it on the role                  (ALTER ROLE ... SET {name} = ...), which the server applies behind the pooler"
            ),
        ));
    }
    settings.extend(session);
    Ok(Some(TransactionSettings::new(settings)))
}

/// Transaction mode's connect options for the server at `url`: the URL
/// without its `options` ([`without_options`]), no statement cache (so no
/// named statements, see the module docs) and no `extra_float_digits`,
/// which PgBouncer refuses unless told to ignore it (servers since 12
/// already print floats exactly). Refused when `PGOPTIONS` still sets
/// startup options: sqlx has no way to drop them, and the pooler would
/// refuse the connection.
pub(crate) fn connect_options(config: &PgConfig, url: &ConnectionUrl) -> Result<PgConnectOptions> {
    let bare = ConnectionUrl::new(without_options(url.expose()));
    let options = parse_url(&bare)?.application_name(&config.application_name);
    if options.get_options().is_some() {
        return Err(Error::config(
            "PGOPTIONS",
            "a transaction pooler refuses the `options` startup parameter that PGOPTIONS sets: \
             unset it and give the settings as `-c name=value` in the URL's `options`, which \
             reposmith applies in every transaction instead",
        ));
    }
    Ok(options.statement_cache_capacity(0).extra_float_digits(None))
}

/// `url` without its `options=...` and `options[name]=...` query
/// parameters, which a pooler would refuse at connect.
fn without_options(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
            !(key == "options" || key.starts_with("options[") || key.starts_with("options%5b"))
        })
        .collect();
    match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    }
}

/// The settings of a libpq `options` string (`-c name=value`, `-cname=value`
/// or `--name=value`, separated by spaces, `\` escaping the next
/// character), in order; anything else is refused with the word.
fn parse_options(options: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut words = words(options).into_iter();
    let mut settings = Vec::new();
    while let Some(word) = words.next() {
        let setting = match word.as_str() {
            "-c" => words.next().ok_or("`-c` is not followed by a setting")?,
            w if w.starts_with("--") => w[2..].to_owned(),
            w if w.starts_with("-c") => w[2..].to_owned(),
            w => return Err(format!("`{w}` is not a `-c name=value` setting")),
        };
        let Some((name, value)) = setting.split_once('=') else {
            return Err(format!("`{setting}` has no `=value`"));
        };
        // Postgres reads `-` in an option's name as `_`.
        settings.push((name.replace('-', "_"), value.to_owned()));
    }
    Ok(settings)
}

/// Splits at unescaped whitespace, undoing `\` escapes.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => word.extend(chars.next()),
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn options_read_as_libpq_and_sqlx_write_them() {
        let parsed = parse_options(
            r"-c search_path=a,b -cwork_mem=64MB --lock-timeout=5s -c application_name=x\ y\\z",
        );
        assert_eq!(
            parsed.unwrap(),
            pairs(&[
                ("search_path", "a,b"),
                ("work_mem", "64MB"),
                ("lock_timeout", "5s"),
                ("application_name", r"x y\z"),
            ])
        );
        assert!(parse_options("-e").unwrap_err().contains("`-e`"));
        assert!(parse_options("-c").is_err());
        assert!(parse_options("-c geqo").unwrap_err().contains("=value"));
        assert_eq!(parse_options("  ").unwrap(), Vec::new());
    }

    #[test]
    fn only_the_options_parameters_leave_the_url() {
        let url = "postgres://u:p@h:5/db?sslmode=disable&options=-c%20search_path%3Dx&options%5Bgeqo%5D=off&application_name=a";
        assert_eq!(
            without_options(url),
            "postgres://u:p@h:5/db?sslmode=disable&application_name=a"
        );
        assert_eq!(
            without_options("postgres://h/db?options=x"),
            "postgres://h/db"
        );
        assert_eq!(without_options("postgres://h/db"), "postgres://h/db");
    }

    #[test]
    fn settings_are_one_statement_after_begin_with_values_quoted() {
        let settings = TransactionSettings::new(pairs(&[("statement_timeout", "30000")]));
        assert_eq!(
            settings.begin("BEGIN"),
            "BEGIN; SELECT set_config(E'statement_timeout', E'30000', true)"
        );
        settings.add(&[("search_path", r"it's\")]);
        assert_eq!(
            &*settings.set_local(),
            r"SELECT set_config(E'statement_timeout', E'30000', true), set_config(E'search_path', E'it\'s\\', true)"
        );
        assert_eq!(TransactionSettings::new(Vec::new()).begin("BEGIN"), "BEGIN");
    }

    #[test]
    fn settings_a_transaction_reads_at_its_start_are_refused() {
        let config = PgConfig::new("postgres://u:pw@h/db").pooler(PoolerMode::Transaction);
        for option in [
            "default_transaction_read_only%3Don",
            "DEFAULT_TRANSACTION_ISOLATION%3Dserializable",
        ] {
            let url = ConnectionUrl::new(format!("postgres://u:pw@h/db?options=-c%20{option}"));
            let err = transaction_settings(&config, &url, Vec::new())
                .err()
                .unwrap();
            assert!(err.to_string().contains("ALTER ROLE"), "{err}");
        }
        let fine = ConnectionUrl::new("postgres://u:pw@h/db?options=-c%20search_path%3Dx");
        assert!(
            transaction_settings(&config, &fine, Vec::new())
                .unwrap()
                .is_some()
        );
    }
}
