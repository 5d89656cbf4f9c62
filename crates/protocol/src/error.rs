use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::codes::result_code_name;

/// What kind of failure an [`Error`] is; becomes the JS error's `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// SQLite failed with this extended result code (e.g. 2067 =
    /// `SQLITE_CONSTRAINT_UNIQUE`).
    Sqlite(i32),
    /// The request did not complete within its timeout.
    Timeout,
    /// The database was closed before or while the request ran.
    Closed,
    /// The tab that owned the database went away and the request could not be
    /// completed by its successor (e.g. an interactive transaction).
    LeaderLost,
    /// The request itself is invalid: wrong parameter count or type, a
    /// malformed or unknown message, misuse of the API.
    BadRequest,
    /// The Origin Private File System cannot be used here (private mode,
    /// unsupported browser, quota).
    OpfsUnavailable,
    /// The database worker could not be started or died.
    WorkerFailed,
    /// A bug in sqlite-tabs: an invariant did not hold.
    Internal,
}

impl ErrorCode {
    /// The code as JavaScript sees it: SQLite's name for SQLite codes
    /// (`SQLITE_CONSTRAINT_UNIQUE`), otherwise `TIMEOUT`, `CLOSED`, ….
    pub fn name(&self) -> Cow<'static, str> {
        match self {
            ErrorCode::Sqlite(code) => match result_code_name(*code) {
                Some(name) => Cow::Borrowed(name),
                // An extended code this build does not know: fall back to the
                // primary code, which is always in the table.
                None => match result_code_name(*code & 0xff) {
                    Some(name) => Cow::Borrowed(name),
                    None => Cow::Owned(format!("SQLITE_{code}")),
                },
            },
            ErrorCode::Timeout => Cow::Borrowed("TIMEOUT"),
            ErrorCode::Closed => Cow::Borrowed("CLOSED"),
            ErrorCode::LeaderLost => Cow::Borrowed("LEADER_LOST"),
            ErrorCode::BadRequest => Cow::Borrowed("BAD_REQUEST"),
            ErrorCode::OpfsUnavailable => Cow::Borrowed("OPFS_UNAVAILABLE"),
            ErrorCode::WorkerFailed => Cow::Borrowed("WORKER_FAILED"),
            ErrorCode::Internal => Cow::Borrowed("INTERNAL"),
        }
    }
}

/// A typed failure carried back to the caller of one request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }

    /// A [`ErrorCode::BadRequest`] error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::BadRequest, message)
    }

    /// A [`ErrorCode::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_have_sqlite_names() {
        assert_eq!(
            ErrorCode::Sqlite(2067).name(),
            "SQLITE_CONSTRAINT_UNIQUE",
            "extended code"
        );
        assert_eq!(ErrorCode::Sqlite(1).name(), "SQLITE_ERROR");
        assert_eq!(
            ErrorCode::Sqlite(1555).name(),
            "SQLITE_CONSTRAINT_PRIMARYKEY"
        );
        // Unknown extended code of a known primary code.
        assert_eq!(
            ErrorCode::Sqlite((99 << 8) | 19).name(),
            "SQLITE_CONSTRAINT"
        );
        assert_eq!(ErrorCode::Sqlite(999).name(), "SQLITE_999");
    }

    #[test]
    fn own_codes_are_upper_snake_case() {
        assert_eq!(ErrorCode::LeaderLost.name(), "LEADER_LOST");
        assert_eq!(ErrorCode::BadRequest.name(), "BAD_REQUEST");
        assert_eq!(
            Error::new(ErrorCode::Timeout, "no answer in 30000 ms").to_string(),
            "TIMEOUT: no answer in 30000 ms"
        );
    }
}
