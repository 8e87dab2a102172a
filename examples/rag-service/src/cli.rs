//! What every binary of the example does around its own work, written
//! once: the allocator tuning the model wants, the command line's usage
//! and errors, the Tokio runtime, and an error turned into an exit status.
//!
//! ```no_run
//! use std::process::ExitCode;
//! use reposmith_example_rag::cli;
//!
//! fn main() -> ExitCode {
//!     cli::tune_allocator("my-tool"); // first: it may re-execute the process
//!     cli::run("my-tool", async { Ok(()) })
//! }
//! ```

use std::future::Future;
use std::process::ExitCode;

/// Any error a binary's work ends with.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The exit status of a command line that does not parse.
pub const USAGE_ERROR: u8 = 2;

/// [`embed::tune_allocator`](crate::embed::tune_allocator), for a binary
/// that runs the model: call it first thing in `main`, before any thread
/// starts (it may re-execute the process). When the settings cannot be
/// applied the program goes on with glibc's defaults, slower, and says so
/// on stderr (logging is not set up yet).
pub fn tune_allocator(program: &str) {
    if let Err(error) = crate::embed::tune_allocator() {
        eprintln!(
            "{program}: glibc's allocator keeps its defaults ({error}); embedding runs slower"
        );
    }
}

/// The options a command-line parser returned (`Ok(None)`: `--help`).
/// `Err` holds the exit status to end with: success after printing
/// `usage` for `--help`, [`USAGE_ERROR`] after printing the parser's
/// message and `usage` on stderr.
pub fn options<T>(
    program: &str,
    usage: &str,
    parsed: Result<Option<T>, String>,
) -> Result<T, ExitCode> {
    match parsed {
        Ok(Some(options)) => Ok(options),
        Ok(None) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("{program}: {message}\n\n{usage}");
            Err(ExitCode::from(USAGE_ERROR))
        }
    }
}

/// Runs `work` to completion on a multi-threaded Tokio runtime. Success is
/// exit status 0; an error (the work's, or no runtime) is printed as
/// `<program> failed: <error>` and is status 1.
pub fn run(program: &str, work: impl Future<Output = Result<(), Failure>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => Err(format!("no async runtime: {error}").into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{program} failed: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_pass_through_or_end_with_a_status() {
        assert_eq!(options("t", "usage", Ok(Some(3))), Ok(3));
        assert_eq!(
            options::<u8>("t", "usage", Ok(None)),
            Err(ExitCode::SUCCESS)
        );
        assert_eq!(
            options::<u8>("t", "usage", Err("bad".to_owned())),
            Err(ExitCode::from(USAGE_ERROR))
        );
    }

    #[test]
    fn run_turns_an_error_into_failure() {
        assert_eq!(run("t", async { Ok(()) }), ExitCode::SUCCESS);
        assert_eq!(run("t", async { Err("broken".into()) }), ExitCode::FAILURE);
    }
}
