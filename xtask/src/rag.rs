//! `cargo xtask rag fetch`, `cargo xtask rag` and `cargo xtask eval rag`:
//! the RAG example's model and corpus (see [`crate::rag_fetch`]), the
//! service loaded, measured and served (see [`crate::rag_serve`]), and its
//! retrieval evaluation (`examples/rag-service/src/bin/rag-eval.rs`) in
//! release mode against the services.

use std::path::Path;
use std::process::ExitCode;

use crate::error::Error;
use crate::{bench, cmd, rag_fetch, rag_serve, services, test};

/// `rag fetch [--model] [--corpus]`: both unless one is named; `rag
/// [OPTIONS]`: see [`rag_serve`].
pub(crate) fn run(root: &Path, args: &[&str]) -> Result<ExitCode, Error> {
    match args {
        ["fetch", flags @ ..] => {
            let (model, corpus) = what_to_fetch(flags)?;
            if model {
                rag_fetch::fetch_model(root)?;
            }
            if corpus {
                rag_fetch::fetch_corpus(root)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        options => rag_serve::run(root, &rag_serve::Options::parse(options)?),
    }
}

/// Which of the two `fetch` flags ask for; neither means both.
fn what_to_fetch(flags: &[&str]) -> Result<(bool, bool), Error> {
    let (mut model, mut corpus) = (false, false);
    for flag in flags {
        match *flag {
            "--model" => model = true,
            "--corpus" => corpus = true,
            other => {
                return Err(Error::msg(format!(
                    "unknown `rag fetch` option {other}: use [--model] [--corpus]"
                )));
            }
        }
    }
    Ok(if model || corpus {
        (model, corpus)
    } else {
        (true, true)
    })
}

/// `eval rag [-- ARGS]`: fetch, services up, then `rag-eval` in release
/// mode with the services' variables and ARGS; its exit code is ours.
pub(crate) fn eval(root: &Path, rest: &[&str]) -> Result<ExitCode, Error> {
    let model = rag_fetch::fetch_model(root)?;
    let html = rag_fetch::fetch_corpus(root)?;
    let mut vars = services::up_for_child(root)?;
    vars.push(("RAG_MODEL_DIR".into(), model.display().to_string()));
    vars.push(("RAG_DOC_DIR".into(), html.display().to_string()));
    // Release: the model's forward pass is about 30 times slower unoptimised.
    let head = [
        "run",
        "--release",
        "--quiet",
        "-p",
        "reposmith-example-rag",
        "--bin",
        "rag-eval",
        "--",
    ];
    let extra = bench::args(rest);
    let all: Vec<&str> = head.iter().copied().chain(extra).collect();
    let mut eval = test::cargo(root, &vars, &all);
    println!("\n==> {}", cmd::describe(&eval));
    let status = cmd::run_inherit(&mut eval, test::step_timeout())?;
    Ok(ExitCode::from(cmd::exit_code(status)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_takes_both_unless_one_is_named() {
        assert_eq!(what_to_fetch(&[]).unwrap(), (true, true));
        assert_eq!(what_to_fetch(&["--model"]).unwrap(), (true, false));
        assert_eq!(what_to_fetch(&["--corpus"]).unwrap(), (false, true));
        assert_eq!(
            what_to_fetch(&["--corpus", "--model"]).unwrap(),
            (true, true)
        );
        assert!(what_to_fetch(&["--all"]).is_err());
    }
}
