//! The one error type of xtask: a message for a person, nothing to match on.
//!
//! Every failure here ends the task with that message, so a string with the
//! context already written into it is all the structure we need.

use std::fmt;

/// A failure with a message that says what went wrong and what to do about it.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    /// An error with this message.
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The same error with `context` in front, e.g. the path being written.
    pub(crate) fn context(self, context: impl fmt::Display) -> Self {
        Self(format!("{context}: {}", self.0))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Self(err.to_string())
    }
}

/// Adds context to an `io::Result`, which otherwise says "No such file or
/// directory" without saying which.
pub(crate) trait Context<T> {
    /// Prefixes the error message with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|err| err.into().context(context))
    }
}
