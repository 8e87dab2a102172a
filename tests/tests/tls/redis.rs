//! Redis over TLS: a `redis-server` of the test's own (Debian's links
//! OpenSSL) with a TLS port and the test's certificate, reached with
//! `rediss://` and [`RedisConfig::tls_ca_file`].

use std::time::Duration;

use reposmith::{Error, RedisBackend, RedisConfig};
use reposmith_tests::redis_server::RedisServer;
use reposmith_tests::server_port;
use reposmith_tests::tls_certs::TestCertificates;

use super::first_line;

async fn connect(url: &str, ca: &std::path::Path) -> reposmith::Result<RedisBackend> {
    let mut config = RedisConfig::new(url)
        .tls_ca_file(ca)
        .connect_timeout(Duration::from_secs(2));
    // A refused handshake is not worth retrying: fail on the first.
    config.reconnect_retries = 0;
    RedisBackend::connect(&config).await
}

fn refused(outcome: reposmith::Result<RedisBackend>, what: &str) -> String {
    match outcome {
        Err(err @ (Error::Connect { .. } | Error::Unavailable { .. })) => err.to_string(),
        Err(other) => panic!("{what}: expected a connect error, got {other:?}"),
        Ok(_) => panic!("{what}: connected"),
    }
}

#[tokio::test]
async fn rediss_with_the_right_ca_connects_and_a_wrong_ca_or_host_name_is_refused() {
    let certs = TestCertificates::generate();
    let tls_port = server_port().to_string();
    let (cert, key, ca) = (certs.server_cert(), certs.server_key(), certs.ca());
    // The plaintext port stays on (loopback only): the helper's readiness
    // check pings it. Every assertion below goes through the TLS port.
    let _server = RedisServer::start_with(&[
        "--bind",
        "127.0.0.1",
        "127.0.0.2",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert.display().to_string(),
        "--tls-key-file",
        &key.display().to_string(),
        "--tls-ca-cert-file",
        &ca.display().to_string(),
        "--tls-auth-clients",
        "no",
    ]);

    let mut version = String::new();
    for host in ["127.0.0.1", "localhost"] {
        let redis = connect(&format!("rediss://{host}:{tls_port}"), &certs.ca())
            .await
            .unwrap_or_else(|e| panic!("rediss:// to {host} with the right CA: {e}"));
        version = redis.ping().await.unwrap().server_version;
    }

    let wrong_ca = refused(
        connect(&format!("rediss://127.0.0.1:{tls_port}"), &certs.wrong_ca()).await,
        "a wrong CA",
    );
    assert!(
        wrong_ca.contains("certificate") || wrong_ca.contains("UnknownIssuer"),
        "{wrong_ca}"
    );
    let wrong_host = refused(
        connect(&format!("rediss://127.0.0.2:{tls_port}"), &certs.ca()).await,
        "a host name not in the certificate",
    );
    assert!(
        wrong_host.contains("NotValidForName") || wrong_host.contains("not valid for"),
        "{wrong_host}"
    );
    eprintln!(
        "rediss:// with the test CA: connected to Redis {version}; wrong CA refused ({}); \
         host not in the certificate refused ({})",
        first_line(&wrong_ca),
        first_line(&wrong_host)
    );
}
