//! The plaintext policy every backend applies before it connects: a URL
//! that would send credentials and data unencrypted to a host other than
//! this machine is refused unless the application says plaintext is
//! intended.
//!
//! # What counts
//!
//! | backend | encrypted | plaintext |
//! |---|---|---|
//! | PostgreSQL | `sslmode=require`, `verify-ca`, `verify-full` | no `sslmode` (sqlx's default `prefer`), `disable`, `allow`, `prefer` |
//! | MongoDB | `tls=true` / `ssl=true`, `mongodb+srv://` (TLS unless `tls=false`) | `mongodb://` without `tls=true` |
//! | Redis | `rediss://` | `redis://` |
//!
//! `prefer` and `allow` count as plaintext: they fall back to an
//! unencrypted session without a word when the server (or anyone in the
//! path) does not offer TLS. `require` and MongoDB's `tlsInsecure` encrypt
//! without checking who answers; `verify-full` (PostgreSQL) and the
//! drivers' defaults for `tls=true` and `rediss://` check the certificate
//! and the host name.
//!
//! Loopback is always allowed: `localhost`, `127.0.0.0/8`, `::1`, and Unix
//! sockets. Everything else without TLS is an [`Error::Config`] naming the
//! URL (password masked), unless plaintext is allowed: per backend in code
//! (`PgConfig::allow_plaintext`, `MongoConfig::allow_plaintext`,
//! `RedisConfig::allow_plaintext`) or for every backend and every config,
//! built in code or read with `from_env`, with [`ALLOW_PLAINTEXT_ENV`]`=1`
//! in the process environment (a private network, a sidecar, a service
//! mesh that encrypts for you; or the test suite run against servers of
//! your own).
//!
//! A URL asking for TLS from a backend built without its `tls` feature is
//! an [`Error::Config`] too, naming the feature, rather than a connect
//! error from the driver.

use std::net::IpAddr;

use crate::{ConnectionUrl, Error};

/// The environment variable that allows plaintext to non-loopback hosts for
/// every backend read with `from_env` (`1`, `true`, `yes` or `on`).
pub const ALLOW_PLAINTEXT_ENV: &str = "REPOSMITH_ALLOW_PLAINTEXT";

/// Whether the process environment allows plaintext for every backend
/// ([`ALLOW_PLAINTEXT_ENV`] is `1`, `true`, `yes` or `on`). A malformed
/// value allows nothing here; `from_env` reports it, naming the variable.
pub fn plaintext_allowed_by_env() -> bool {
    crate::config::Env::process()
        .flag(ALLOW_PLAINTEXT_ENV)
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Whether `host` is this machine: `localhost` (any case, with or without a
/// trailing dot), an IPv4 address in `127.0.0.0/8`, or `::1` (bracketed or
/// not, and as an IPv4-mapped `::ffff:127.x.y.z`).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
        return true;
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// The error for a URL that would go unencrypted to `host`: names the
/// backend, the URL without its password, why it is plaintext (`mode`),
/// how to encrypt (`fix`) and how to allow plaintext (`allow`, the config
/// method).
pub fn plaintext_refused(
    backend: &str,
    url: &ConnectionUrl,
    host: &str,
    mode: &str,
    fix: &str,
    allow: &str,
) -> Error {
    Error::config(
        backend,
        format!(
            "{url} would send credentials and data unencrypted to {host}, which is not \
             this machine ({mode}): {fix}, or allow plaintext explicitly with {allow}(true) \
             or {ALLOW_PLAINTEXT_ENV}=1"
        ),
    )
}

/// The error for a URL that asks for TLS (`what`) from a backend built
/// without its `tls` feature (`feature`, e.g. `reposmith-postgres/tls`).
pub fn tls_not_built(backend: &str, url: &ConnectionUrl, what: &str, feature: &str) -> Error {
    Error::config(
        backend,
        format!(
            "{url} asks for TLS ({what}) but this build has no TLS for {backend}: enable \
             the `tls` feature of reposmith (or `{feature}`)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses_are_this_machine() {
        for host in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn other_hosts_are_not() {
        for host in [
            "db.internal",
            "localhost.example.com",
            "mylocalhost",
            "10.0.0.5",
            "0.0.0.0",
            "128.0.0.1",
            "::",
            "[2001:db8::1]",
            "::ffff:10.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn the_refusal_masks_the_password_and_names_both_ways_out() {
        let url = ConnectionUrl::new("postgres://app:s3cret@db.internal/rag");
        let err = plaintext_refused(
            "postgresql",
            &url,
            "db.internal",
            "no sslmode",
            "set sslmode=verify-full",
            "PgConfig::allow_plaintext",
        );
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("postgres://app:***@db.internal/rag"),
            "{text}"
        );
        assert!(text.contains("sslmode=verify-full"), "{text}");
        assert!(text.contains("PgConfig::allow_plaintext(true)"), "{text}");
        assert!(text.contains(ALLOW_PLAINTEXT_ENV), "{text}");
        assert!(matches!(err, Error::Config { .. }));
    }
}
