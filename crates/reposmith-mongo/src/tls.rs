//! The plaintext policy for MongoDB URLs (see [`reposmith_core::tls`]): a
//! `mongodb://` URL naming a host other than this machine needs `tls=true`
//! (or `ssl=true`, or any `tls*` option, which the driver takes as TLS on)
//! unless plaintext is allowed. `mongodb+srv://` implies TLS unless the
//! URL says `tls=false`. The driver always has TLS (rustls), so there is
//! no "built without TLS" case here.

use mongodb::options::{ConnectionString, HostInfo, ServerAddress, Tls};
use reposmith_core::tls::{is_loopback_host, plaintext_allowed_by_env, plaintext_refused};
use reposmith_core::{ConnectionUrl, Result};

/// Checks `url` against the policy; `allow_plaintext` lifts the refusal.
///
/// A URL the driver cannot parse passes here: connecting reports the
/// parse error itself (a `mongodb+srv://` URL without the `mongo-srv`
/// feature, say, gets its own message there).
pub(crate) fn check(url: &ConnectionUrl, allow_plaintext: bool) -> Result<()> {
    policy(url, allow_plaintext || plaintext_allowed_by_env())
}

/// [`check`] without the process environment's opt-in, for unit tests
/// that must not depend on how the suite was started.
fn policy(url: &ConnectionUrl, allow_plaintext: bool) -> Result<()> {
    let Ok(parsed) = ConnectionString::parse(url.expose()) else {
        return Ok(());
    };
    let srv = matches!(parsed.host_info, HostInfo::DnsRecord(_));
    let tls = match parsed.tls {
        Some(Tls::Enabled(_)) => true,
        Some(Tls::Disabled) => false,
        // The driver's default: TLS for SRV records, none for host lists.
        None => srv,
    };
    if tls || allow_plaintext {
        return Ok(());
    }
    let remote = match &parsed.host_info {
        HostInfo::DnsRecord(name) => Some(name.clone()),
        HostInfo::HostIdentifiers(hosts) => hosts.iter().find_map(|host| match host {
            ServerAddress::Tcp { host, .. } if !is_loopback_host(host) => Some(host.clone()),
            _ => None,
        }),
        _ => None,
    };
    let Some(host) = remote else {
        return Ok(());
    };
    let mode = match parsed.tls {
        Some(Tls::Disabled) => "tls=false",
        _ => "no tls=true",
    };
    Err(plaintext_refused(
        "mongodb",
        url,
        &host,
        mode,
        "add tls=true to the URL (with tlsCAFile=<CA file> for a private CA)",
        "MongoConfig::allow_plaintext",
    ))
}

#[cfg(test)]
mod tests {
    use reposmith_core::Error;

    use super::*;

    fn checked(url: &str) -> Result<()> {
        policy(&ConnectionUrl::new(url), false)
    }

    #[test]
    fn plaintext_to_another_host_is_refused_without_the_password() {
        for (url, host) in [
            (
                "mongodb://app:s3cret@mongo.internal:27017/rag",
                "mongo.internal",
            ),
            ("mongodb://app:s3cret@10.0.0.4/rag?tls=false", "10.0.0.4"),
            (
                "mongodb://app:s3cret@mongo.internal/rag?ssl=false",
                "mongo.internal",
            ),
            // One remote member of a seed list is enough.
            (
                "mongodb://app:s3cret@127.0.0.1:27017,db2.internal:27017/rag?replicaSet=rs0",
                "db2.internal",
            ),
        ] {
            match checked(url) {
                Err(err @ Error::Config { .. }) => {
                    let text = err.to_string();
                    assert!(text.contains(host), "{text}");
                    assert!(text.contains("tls=true"), "{text}");
                    assert!(
                        text.contains("MongoConfig::allow_plaintext(true)"),
                        "{text}"
                    );
                    assert!(!text.contains("s3cret"), "{text}");
                }
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn tls_loopback_and_srv_pass() {
        for url in [
            "mongodb://app:pw@mongo.internal/rag?tls=true",
            "mongodb://app:pw@mongo.internal/rag?ssl=true",
            "mongodb://app:pw@mongo.internal/rag?tlsCAFile=/etc/ca.pem",
            "mongodb://app:pw@127.0.0.1:27017/rag?directConnection=true",
            "mongodb://localhost,[::1]:27018/rag",
            "mongodb://%2Ftmp%2Fmongodb-27017.sock/rag",
        ] {
            checked(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    // Parsing SRV URLs needs the driver's DNS resolver (feature `srv`).
    #[cfg(feature = "srv")]
    #[test]
    fn srv_implies_tls_unless_turned_off() {
        checked("mongodb+srv://app:pw@cluster0.example.net/rag").unwrap();
        let off = checked("mongodb+srv://app:pw@cluster0.example.net/rag?tls=false");
        assert!(off.unwrap_err().to_string().contains("tls=false"));
    }

    #[test]
    fn allowing_plaintext_lifts_the_refusal() {
        policy(&ConnectionUrl::new("mongodb://mongo.internal/rag"), true).unwrap();
    }
}
