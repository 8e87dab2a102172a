//! Reading settings from the environment with errors that name the variable.
//!
//! Backends read their settings through an [`Env`], a lookup function, so
//! configuration code is tested without touching the process environment.

use std::str::FromStr;
use std::time::Duration;

use crate::{Error, Result};

/// Looks a setting up by name.
type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// A source of settings: `std::env::var` in applications, a map in tests.
pub struct Env<'a> {
    lookup: Box<Lookup<'a>>,
}

impl<'a> Env<'a> {
    /// Settings from the process environment; empty values count as unset.
    pub fn process() -> Env<'static> {
        Env::from_fn(|name| std::env::var(name).ok())
    }

    /// Settings from any lookup function; empty values count as unset.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Env {
            lookup: Box::new(lookup),
        }
    }

    /// The raw value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// `name` parsed as a number, if set.
    pub fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>> {
        self.get(name)
            .map(|raw| {
                raw.trim().parse().map_err(|_| {
                    Error::config(name, format!("expected a whole number, got {raw:?}"))
                })
            })
            .transpose()
    }

    /// `name` parsed as a duration (see [`parse_duration`]), if set.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>> {
        self.get(name)
            .map(|raw| parse_duration(&raw).map_err(|reason| Error::config(name, reason)))
            .transpose()
    }

    /// `name` parsed as a boolean (`true`/`false`/`1`/`0`/`yes`/`no`), if set.
    pub fn flag(&self, name: &str) -> Result<Option<bool>> {
        self.get(name)
            .map(|raw| match raw.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(Error::config(
                    name,
                    format!("expected true or false, got {raw:?}"),
                )),
            })
            .transpose()
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
///
/// Hand-written: four units do not justify another dependency, and the error
/// message names what is accepted.
pub fn parse_duration(raw: &str) -> std::result::Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration such as 500ms, 5s, 2m or 1h, got {raw:?}"))?;
    let millis_per_unit = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {raw:?}: use ms, s, m or h"
            ));
        }
    };
    Ok(Duration::from_millis(
        amount.saturating_mul(millis_per_unit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<'static> {
        Env::from_fn(move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn durations_parse_each_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert!(
            parse_duration("5 days")
                .unwrap_err()
                .contains("unknown duration unit")
        );
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn errors_name_the_variable() {
        let env = env(&[
            ("POOL", "ten"),
            ("WAIT", "soon"),
            ("ON", "maybe"),
            ("EMPTY", " "),
        ]);
        let err = env.number::<u32>("POOL").unwrap_err().to_string();
        assert!(err.contains("POOL") && err.contains("ten"), "{err}");
        assert!(
            env.duration("WAIT")
                .unwrap_err()
                .to_string()
                .contains("WAIT")
        );
        assert!(env.flag("ON").unwrap_err().to_string().contains("ON"));
        assert_eq!(env.get("EMPTY"), None);
        assert_eq!(env.number::<u32>("MISSING").unwrap(), None);
    }
}
