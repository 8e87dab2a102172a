//! The plaintext policy for Redis URLs (see [`reposmith_core::tls`]) and
//! the private CA ([`RedisConfig::tls_ca_file`]): a `redis://` URL naming a
//! host other than this machine is refused unless plaintext is allowed;
//! `rediss://` is TLS, checking the certificate and the host name against
//! the CA file when one is set, else the Mozilla roots (`webpki-roots`).

use reposmith_core::tls::{
    is_loopback_host, plaintext_allowed_by_env, plaintext_refused, tls_not_built,
};
use reposmith_core::{ConnectionUrl, Error, Result};

use crate::RedisConfig;
use crate::error::{Phase, map};

/// Checks every URL of `config` (the server, or each cluster node).
pub(crate) fn check_config(config: &RedisConfig) -> Result<()> {
    if let Some(path) = &config.tls_ca_file
        && !cfg!(feature = "tls")
    {
        let what = format!("a CA file, {}", path.display());
        return Err(tls_not_built(
            "redis",
            &config.url,
            &what,
            "reposmith-redis/tls",
        ));
    }
    let urls = std::iter::once(&config.url).chain(&config.cluster_nodes);
    for url in urls {
        check(url, config.allow_plaintext)?;
    }
    Ok(())
}

/// Checks one URL; `allow_plaintext` lifts the refusal.
///
/// A URL the driver cannot parse passes here: connecting reports it.
pub(crate) fn check(url: &ConnectionUrl, allow_plaintext: bool) -> Result<()> {
    policy(url, allow_plaintext || plaintext_allowed_by_env())
}

/// [`check`] without the process environment's opt-in, for unit tests
/// that must not depend on how the suite was started.
fn policy(url: &ConnectionUrl, allow_plaintext: bool) -> Result<()> {
    let raw = url.expose();
    let tls = raw
        .get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"));
    if tls && !cfg!(feature = "tls") {
        return Err(tls_not_built(
            "redis",
            url,
            "rediss://",
            "reposmith-redis/tls",
        ));
    }
    if tls || allow_plaintext {
        return Ok(());
    }
    let Ok(info) = redis::IntoConnectionInfo::into_connection_info(raw) else {
        return Ok(());
    };
    let host = match info.addr() {
        redis::ConnectionAddr::Tcp(host, _) if !is_loopback_host(host) => host.clone(),
        _ => return Ok(()),
    };
    Err(plaintext_refused(
        "redis",
        url,
        &host,
        "redis://",
        "use a rediss:// URL (with RedisConfig::tls_ca_file or REPOSMITH_REDIS_TLS_CA_FILE \
         for a private CA), with reposmith's `tls` feature",
        "RedisConfig::allow_plaintext",
    ))
}

/// The PEM bytes of the configured CA file, read once at connect.
pub(crate) fn root_certificate(config: &RedisConfig) -> Result<Option<Vec<u8>>> {
    let Some(path) = &config.tls_ca_file else {
        return Ok(None);
    };
    std::fs::read(path).map(Some).map_err(|e| {
        Error::config(
            "redis",
            format!("cannot read the TLS CA file {}: {e}", path.display()),
        )
    })
}

/// A client for `url`, trusting only `root` (PEM) when given.
pub(crate) fn client(
    url: &ConnectionUrl,
    root: Option<&[u8]>,
    connect_timeout: std::time::Duration,
) -> Result<redis::Client> {
    let fail = |e: redis::RedisError| map(url, &e, Phase::Connect, connect_timeout);
    match root {
        #[cfg(feature = "tls")]
        Some(root) => redis::Client::build_with_tls(url.expose(), certificates(root)).map_err(fail),
        #[cfg(not(feature = "tls"))]
        Some(_) => Err(tls_not_built(
            "redis",
            url,
            "a CA file",
            "reposmith-redis/tls",
        )),
        None => redis::Client::open(url.expose()).map_err(fail),
    }
}

/// The driver's TLS settings: server verification against `root` only.
#[cfg(feature = "tls")]
pub(crate) fn certificates(root: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(root.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(url: &str) -> Result<()> {
        policy(&ConnectionUrl::new(url), false)
    }

    #[test]
    fn plaintext_to_another_host_is_refused_without_the_password() {
        for (url, host) in [
            ("redis://:s3cret@cache.internal:6379/0", "cache.internal"),
            ("redis://app:s3cret@10.0.0.3/1", "10.0.0.3"),
        ] {
            match checked(url) {
                Err(err @ Error::Config { .. }) => {
                    let text = err.to_string();
                    assert!(text.contains(host) && text.contains("rediss://"), "{text}");
                    assert!(
                        text.contains("RedisConfig::allow_plaintext(true)"),
                        "{text}"
                    );
                    assert!(!text.contains("s3cret"), "{text}");
                }
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn loopback_and_unix_sockets_pass() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "redis://:pw@localhost:6380",
            "redis://[::1]:6379",
            "redis+unix:///run/redis.sock",
            "unix:///run/redis.sock",
        ] {
            checked(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn allowing_plaintext_lifts_the_refusal() {
        policy(&ConnectionUrl::new("redis://cache.internal:6379"), true).unwrap();
    }

    #[test]
    fn a_cluster_node_without_tls_is_refused_too() {
        if plaintext_allowed_by_env() {
            return; // REPOSMITH_ALLOW_PLAINTEXT=1 in this process allows it.
        }
        let config = RedisConfig::cluster(["redis://127.0.0.1:7001", "redis://10.0.0.8:7002"]);
        let text = check_config(&config).unwrap_err().to_string();
        assert!(text.contains("10.0.0.8"), "{text}");
        assert!(check_config(&config.allow_plaintext(true)).is_ok());
    }

    #[cfg(feature = "tls")]
    #[test]
    fn rediss_reaches_any_host() {
        checked("rediss://:pw@cache.internal:6380/0").unwrap();
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn asking_for_tls_without_the_feature_is_a_config_error_naming_it() {
        for url in [
            "rediss://:s3cret@127.0.0.1:6380",
            "rediss://:s3cret@cache.internal",
        ] {
            let text = checked(url).unwrap_err().to_string();
            assert!(
                text.contains("`tls` feature") && !text.contains("s3cret"),
                "{text}"
            );
        }
        let config = RedisConfig::new("redis://127.0.0.1").tls_ca_file("/etc/ca.pem");
        let text = check_config(&config).unwrap_err().to_string();
        assert!(
            text.contains("/etc/ca.pem") && text.contains("`tls` feature"),
            "{text}"
        );
    }
}
