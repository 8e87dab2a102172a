//! Certificates for TLS tests, made by `openssl` in a temporary directory:
//! a CA, a server certificate it signs for `localhost` and `127.0.0.1`
//! only, and a second, unrelated CA (the "wrong CA"). EC P-256 keys: fast
//! to generate, and every TLS stack here (rustls, OpenSSL in PostgreSQL,
//! Redis and Python) takes them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::pg_replica;
use crate::unique_name;

/// Longest any one `openssl` command may take.
const OPENSSL_WITHIN: Duration = Duration::from_secs(30);

/// The certificate files of one test; the directory is removed on drop.
#[derive(Debug)]
pub struct TestCertificates {
    dir: PathBuf,
}

impl TestCertificates {
    /// Generates the two CAs and the server certificate; panics with
    /// `openssl`'s output when a step fails or takes over 30 s.
    pub fn generate() -> TestCertificates {
        let dir = std::env::temp_dir().join(unique_name("reposmith-tls"));
        fs::create_dir_all(&dir).expect("create the certificates' directory");
        let certs = TestCertificates { dir };
        certs.make_ca("ca", "reposmith test CA");
        certs.make_ca("wrong-ca", "reposmith unrelated CA");
        let ext = certs.dir.join("server.ext");
        fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions file");
        certs.openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        certs.openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        certs
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that signed nothing here (PEM).
    pub fn wrong_ca(&self) -> PathBuf {
        self.dir.join("wrong-ca.crt")
    }

    /// The server's certificate (PEM), valid for `localhost` and `127.0.0.1`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The server's private key (PEM).
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The bytes of one of the files above.
    pub fn read(&self, path: &Path) -> Vec<u8> {
        fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn make_ca(&self, name: &str, common_name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-sha256",
            "-subj",
            &format!("/CN={common_name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let mut command = Command::new("openssl");
        command.args(args).current_dir(&self.dir);
        if let Err(err) = pg_replica::run_for(command, OPENSSL_WITHIN) {
            panic!("{err}");
        }
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
