//! The plaintext policy for PostgreSQL URLs (see [`reposmith_core::tls`]):
//! a session that may go unencrypted to a host other than this machine is
//! refused unless plaintext is allowed.
//!
//! The URL is read the way sqlx will connect with it (its own parser, so
//! `host=` and `hostaddr=` parameters and the `PG*` environment variables
//! it honours count): a Unix socket or a loopback address is always
//! allowed; any other host needs `sslmode=require`, `verify-ca` or
//! `verify-full` (`verify-full` is the one that also checks the host name).
//! No `sslmode` means sqlx's `prefer`, which, like `allow`, falls back to
//! plaintext silently, so both count as plaintext.

use std::net::IpAddr;

use reposmith_core::tls::{
    is_loopback_host, plaintext_allowed_by_env, plaintext_refused, tls_not_built,
};
use reposmith_core::{ConnectionUrl, Result};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::backend::parse_url;

/// Checks `url` against the policy; `allow_plaintext` lifts the refusal.
pub(crate) fn check(url: &ConnectionUrl, allow_plaintext: bool) -> Result<()> {
    policy(url, allow_plaintext || plaintext_allowed_by_env())
}

/// [`check`] without the process environment's opt-in, for unit tests
/// that must not depend on how the suite was started.
fn policy(url: &ConnectionUrl, allow_plaintext: bool) -> Result<()> {
    let options = parse_url(url)?;
    let mode = options.get_ssl_mode();
    let encrypted = matches!(
        mode,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    );
    if encrypted && !cfg!(feature = "tls") {
        let what = format!("sslmode={}", mode_name(mode));
        return Err(tls_not_built(
            "postgresql",
            url,
            &what,
            "reposmith-postgres/tls",
        ));
    }
    if encrypted || allow_plaintext {
        return Ok(());
    }
    let Some(host) = tcp_host(&options, url) else {
        return Ok(());
    };
    if is_loopback_host(&host) {
        return Ok(());
    }
    let mode = match sslmode_written(url) {
        true => format!(
            "sslmode={}{}",
            mode_name(mode),
            match mode {
                PgSslMode::Prefer | PgSslMode::Allow =>
                    ", which falls back to plaintext without a word",
                _ => "",
            }
        ),
        false => format!(
            "no sslmode, so sqlx's `{}`, which falls back to plaintext without a word",
            mode_name(mode)
        ),
    };
    Err(plaintext_refused(
        "postgresql",
        url,
        &host,
        &mode,
        "set sslmode=verify-full (with sslrootcert=<CA file> for a private CA) or at least \
         sslmode=require, with reposmith's `tls` feature",
        "PgConfig::allow_plaintext",
    ))
}

/// The host the session's TCP connection goes to, or `None` for a Unix
/// socket: `hostaddr` when set (sqlx connects there and uses `host` for
/// the certificate only), else `host`.
fn tcp_host(options: &PgConnectOptions, url: &ConnectionUrl) -> Option<String> {
    if options.get_socket().is_some() || options.get_host().starts_with('/') {
        return None;
    }
    // sqlx keeps `hostaddr` to itself; read it where sqlx reads it from.
    let hostaddr = query_param(url.expose(), "hostaddr")
        .or_else(|| std::env::var("PGHOSTADDR").ok())
        .and_then(|raw| raw.trim().parse::<IpAddr>().ok());
    Some(match hostaddr {
        Some(ip) => ip.to_string(),
        None => options.get_host().to_owned(),
    })
}

/// Whether the URL (or `PGSSLMODE`) says an `sslmode` itself.
fn sslmode_written(url: &ConnectionUrl) -> bool {
    query_param(url.expose(), "sslmode").is_some() || std::env::var_os("PGSSLMODE").is_some()
}

/// The last value of query parameter `name` (sqlx applies them in order).
fn query_param(url: &str, name: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.to_owned())
        .next_back()
}

fn mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

#[cfg(test)]
mod tests {
    use reposmith_core::Error;

    use super::*;

    fn checked(url: &str) -> Result<()> {
        policy(&ConnectionUrl::new(url), false)
    }

    fn refused(url: &str) -> String {
        match checked(url) {
            Err(err @ Error::Config { .. }) => err.to_string(),
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn plaintext_to_another_host_is_refused_naming_the_mode_without_the_password() {
        for (url, mode) in [
            ("postgres://app:s3cret@db.internal/rag", "no sslmode"),
            (
                "postgres://app:s3cret@db.internal/rag?sslmode=disable",
                "sslmode=disable",
            ),
            (
                "postgres://app:s3cret@db.internal/rag?sslmode=prefer",
                "sslmode=prefer",
            ),
            (
                "postgres://app:s3cret@db.internal/rag?sslmode=allow",
                "sslmode=allow",
            ),
            ("postgres://app:s3cret@10.1.2.3:6432/rag", "no sslmode"),
            ("postgres://app:s3cret@[2001:db8::1]/rag", "no sslmode"),
            // `host=` wins over the authority, as sqlx connects.
            (
                "postgres://app:s3cret@localhost/rag?host=db.internal",
                "no sslmode",
            ),
            // `hostaddr=` is where the TCP connection goes.
            (
                "postgres://app:s3cret@localhost/rag?hostaddr=10.0.0.7",
                "no sslmode",
            ),
        ] {
            let text = refused(url);
            assert!(text.contains(mode), "{url}: {text}");
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("sslmode=verify-full"), "{text}");
            assert!(text.contains("PgConfig::allow_plaintext(true)"), "{text}");
            assert!(text.contains("REPOSMITH_ALLOW_PLAINTEXT=1"), "{text}");
        }
    }

    #[test]
    fn loopback_and_unix_sockets_stay_allowed_without_tls() {
        for url in [
            "postgres://app:pw@127.0.0.1:5432/rag",
            "postgres://app:pw@127.0.0.2/rag?sslmode=disable",
            "postgres://app:pw@localhost/rag",
            "postgres://app:pw@[::1]:5432/rag",
            "postgres:///rag?host=/var/run/postgresql",
            "postgres://app@%2Ftmp/rag",
            "postgres://app:pw@db.internal/rag?hostaddr=127.0.0.1",
        ] {
            checked(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn allowing_plaintext_lifts_the_refusal() {
        let url = ConnectionUrl::new("postgres://app:pw@db.internal/rag?sslmode=disable");
        policy(&url, true).unwrap();
    }

    #[cfg(feature = "tls")]
    #[test]
    fn encrypted_modes_reach_any_host() {
        for mode in ["require", "verify-ca", "verify-full"] {
            checked(&format!("postgres://app:pw@db.internal/rag?sslmode={mode}"))
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn asking_for_tls_without_the_feature_is_a_config_error_naming_it() {
        for host in ["127.0.0.1", "db.internal"] {
            let text = refused(&format!(
                "postgres://app:s3cret@{host}/rag?sslmode=verify-full"
            ));
            assert!(text.contains("sslmode=verify-full"), "{text}");
            assert!(text.contains("`tls` feature"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }
}
