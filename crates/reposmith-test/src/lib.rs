//! The runtime of `#[reposmith::test]`: every test gets a PostgreSQL
//! database cloned from a template that already has the application's
//! migrations, a MongoDB database with its MongoDB migrations, and a Redis
//! key prefix its cache, limiters and queues use; after a pass they are
//! removed, after a failure they are kept and named.
//!
//! Use it through the facade: `reposmith = { features = ["test"] }`, then
//! `#[reposmith::test]` and `reposmith::testing` (whose docs are the user
//! guide). This crate sits below the facade, so it names the facade's
//! `Store` only through [`TestStore`].
//!
//! - [`postgres`]: templates keyed by a hash of the migration files, built
//!   once under an advisory lock, cloned per test.
//! - [`mongo`]: MongoDB migrations and JSON fixtures.
//! - [`session`]: one test's stores from setup to teardown.
//! - [`cleanup`](mod@cleanup): leftovers of failed tests.

mod args;
mod catch;
pub mod cleanup;
mod context;
mod error;
pub mod mongo;
pub mod names;
pub mod postgres;
pub mod session;

use std::future::Future;

pub use args::{Flavor, Migrations, TestArgs};
pub use cleanup::{CleanupOptions, CleanupReport, cleanup};
pub use context::{FromContext, StoreParts, TestContext, TestOutcome, TestStore};
pub use error::{Error, Result};
pub use names::TestNames;
pub use session::{Session, setup};

/// Runs one test: builds the runtime `args.flavor` names, sets up the
/// test's stores ([`setup`]), runs `body` with what it asks for (the
/// [`TestContext`] or the store), then removes the stores after a pass or
/// keeps them, printing their names and the cleanup command, after a
/// failure (a panic, or an `Err` returned). A setup error fails the test
/// with the error's message. This is what `#[reposmith::test]` expands to.
pub fn run<S, A, F, Fut>(args: TestArgs, body: F)
where
    S: TestStore,
    A: FromContext<S>,
    F: FnOnce(A) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    let runtime = match args.flavor {
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = runtime.unwrap_or_else(|e| panic!("reposmith::test: no tokio runtime: {e}"));
    runtime.block_on(run_async::<S, A, F, Fut>(args, body));
}

/// [`run`] on the caller's runtime.
pub async fn run_async<S, A, F, Fut>(args: TestArgs, body: F)
where
    S: TestStore,
    A: FromContext<S>,
    F: FnOnce(A) -> Fut,
    Fut: Future,
    Fut::Output: TestOutcome,
{
    let session = match setup::<S>(&args).await {
        Ok(session) => session,
        Err(error) => panic!("reposmith::test `{}`: setup failed: {error}", args.name),
    };
    let input = A::from_context(session.context());
    let outcome = catch::CatchUnwind::new(body(input)).await;
    match outcome.map(TestOutcome::into_outcome) {
        Ok(Ok(())) => {
            let name = session.names().test.clone();
            if let Err(error) = session.teardown().await {
                panic!("reposmith::test `{name}` passed, but removing its stores failed: {error}");
            }
        }
        Ok(Err(failure)) => {
            eprintln!("{}", session.keep().await);
            panic!(
                "reposmith::test `{}` returned an error: {failure}",
                args.name
            );
        }
        Err(panic) => {
            eprintln!("{}", session.keep().await);
            std::panic::resume_unwind(panic);
        }
    }
}
