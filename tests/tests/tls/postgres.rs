//! PostgreSQL with `ssl = on` on a server of the test's own, its
//! certificate signed by the test's CA for `localhost` and `127.0.0.1`.
//! The wheel's binaries are built without OpenSSL, so this runs a
//! PostgreSQL that has it (Debian's `postgresql-15` on this machine kind).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reposmith::postgres::sqlx;
use reposmith::{Error, PgBackend};
use reposmith_tests::own_postgres::{OwnPostgres, ServerOptions};
use reposmith_tests::tls_certs::TestCertificates;

use super::first_line;

/// A directory of PostgreSQL binaries built with OpenSSL: the wheel's if
/// it is, else Debian's newest under `/usr/lib/postgresql`.
fn binaries_with_openssl() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var("REPOSMITH_PG_BIN_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .collect();
    debian.sort();
    candidates.extend(debian.into_iter().rev());
    candidates.into_iter().find(|bin| {
        let has_server = ["postgres", "initdb", "pg_ctl"]
            .iter()
            .all(|program| bin.join(program).exists());
        // pg_config answers at once; its configure line says whether the
        // server links OpenSSL.
        let configure = Command::new(bin.join("pg_config"))
            .arg("--configure")
            .output();
        has_server
            && configure.is_ok_and(|out| {
                let text = String::from_utf8_lossy(&out.stdout);
                text.contains("--with-openssl") || text.contains("--with-ssl=openssl")
            })
    })
}

fn url(host: &str, port: u16, mode: &str, ca: &std::path::Path) -> String {
    format!(
        "postgres://postgres@{host}:{port}/postgres?sslmode={mode}&sslrootcert={}",
        ca.display()
    )
}

async fn connect(url: &str) -> reposmith::Result<PgBackend> {
    let config = reposmith_tests::pg_config(url).connect_timeout(Duration::from_secs(5));
    PgBackend::connect(&config).await
}

/// The reason of a connect refusal, or a panic naming what happened instead.
fn refused(outcome: reposmith::Result<PgBackend>, what: &str) -> String {
    match outcome {
        Err(Error::Connect { reason, .. }) => reason,
        Err(other) => panic!("{what}: expected Error::Connect, got {other:?}"),
        Ok(_) => panic!("{what}: connected"),
    }
}

#[tokio::test]
async fn verify_full_connects_encrypted_and_a_wrong_ca_or_host_name_is_refused() {
    let Some(bin) = binaries_with_openssl() else {
        eprintln!(
            "not run here: no PostgreSQL built with OpenSSL (the wheel's is not; Debian's \
             postgresql-15 is)"
        );
        return;
    };
    let certs = TestCertificates::generate();
    let options = ServerOptions {
        bin_dir: Some(bin.clone()),
        files: vec![
            ("server.crt".into(), certs.read(&certs.server_cert())),
            ("server.key".into(), certs.read(&certs.server_key())),
            // 127.0.0.2 is loopback too, but not in the certificate.
            (
                "pg_hba.conf".into(),
                b"local all all trust\nhost all all 127.0.0.0/8 trust\n".to_vec(),
            ),
        ],
        settings: [
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
            ("listen_addresses", "127.0.0.1,127.0.0.2"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .into(),
    };
    let Some(server) = OwnPostgres::start_with(options) else {
        eprintln!("not run here: xtask says the project's PostgreSQL binaries are not ours to run");
        return;
    };
    let port = server.port();

    // The right CA, by IP address and by name: connected, and the server
    // says the session is encrypted.
    let mut protocol = String::new();
    for host in ["127.0.0.1", "localhost"] {
        let pg = connect(&url(host, port, "verify-full", &certs.ca()))
            .await
            .unwrap_or_else(|e| panic!("verify-full to {host}: {e}\n{}", server.log_tail()));
        let (ssl, version): (bool, Option<String>) =
            sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(pg.pool())
                .await
                .unwrap();
        assert!(ssl, "verify-full to {host}: the session is not encrypted");
        protocol = version.unwrap_or_default();
        pg.ping().await.unwrap();
    }

    // A CA that did not sign the server's certificate.
    let wrong_ca = refused(
        connect(&url("127.0.0.1", port, "verify-full", &certs.wrong_ca())).await,
        "a wrong CA",
    );
    assert!(
        wrong_ca.contains("certificate") || wrong_ca.contains("UnknownIssuer"),
        "{wrong_ca}"
    );

    // The right CA, but a host the certificate does not name: refused by
    // verify-full, accepted by verify-ca (which skips the name), so the
    // refusal is the name check and not something else about 127.0.0.2.
    let wrong_host = refused(
        connect(&url("127.0.0.2", port, "verify-full", &certs.ca())).await,
        "a host name not in the certificate",
    );
    assert!(
        wrong_host.contains("NotValidForName") || wrong_host.contains("not valid for"),
        "{wrong_host}"
    );
    connect(&url("127.0.0.2", port, "verify-ca", &certs.ca()))
        .await
        .unwrap_or_else(|e| panic!("verify-ca to 127.0.0.2: {e}"));

    eprintln!(
        "verify-full: connected, pg_stat_ssl.ssl = true ({protocol}); wrong CA refused ({}); \
         host not in the certificate refused ({})",
        first_line(&wrong_ca),
        first_line(&wrong_host)
    );
}
