//! What a handler did not expect: a storage that does not answer, an error it cannot classify,
//! an outcome the flow should never produce. Handlers return it as the error of their result;
//! the generated code of each operation that documents a 500 turns it into that 500, or into
//! its 503 for an unavailability, through [`Unexpected::into_problem`], the one place where such
//! an error is logged.

use std::error::Error;

use poem::http::StatusCode;

use super::problem::{self, Problem};
use crate::telemetry::ErrorChain;

/// What a 503 asks the caller to wait, as the generated responses declare `Retry-After`.
pub use super::RETRY_AFTER_SECONDS;

/// The detail of the 500 of an error the caller learns nothing more of.
const INTERNAL_DETAIL: &str = "an unexpected error occurred";

/// An error a handler does not answer itself, with the Problem it is answered with where the
/// operation documents its status.
#[derive(Debug)]
pub struct Unexpected {
    error: Box<dyn Error + Send + Sync>,
    problem: Problem,
}

impl Unexpected {
    /// An internal error: a 500 that says only that something went wrong.
    pub fn internal(error: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            error: error.into(),
            problem: Problem::new(problem::INTERNAL, INTERNAL_DETAIL),
        }
    }

    /// The storage is away or saturated: a 503 with `detail` that invites a retry, where the
    /// operation documents one.
    pub fn unavailable(error: impl Into<Box<dyn Error + Send + Sync>>, detail: &str) -> Self {
        Self {
            error: error.into(),
            problem: Problem::new(problem::STORAGE_UNAVAILABLE, detail),
        }
    }

    /// The answer says `detail` instead of its default.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.problem.detail = Some(detail.into());
        self
    }

    /// The answer names the order concerned, when there is one.
    #[must_use]
    pub fn with_order_id(mut self, order_id: Option<uuid::Uuid>) -> Self {
        self.problem.order_id = order_id;
        self
    }

    pub fn is_unavailable(&self) -> bool {
        self.problem.kind == problem::STORAGE_UNAVAILABLE
    }

    /// Logs the error of `operation` with its whole chain, and answers the Problem of
    /// `status`: its own, or, for an unavailability where the operation documents only a 500,
    /// an internal error's.
    pub fn into_problem(self, operation: &'static str, status: StatusCode) -> Problem {
        let error = ErrorChain(&*self.error);
        if self.is_unavailable() {
            tracing::warn!(operation, error = %error, "unavailable");
        } else {
            tracing::error!(operation, error = %error, "unexpected error");
        }
        if self.problem.kind.status == status {
            self.problem
        } else {
            Problem::new(problem::INTERNAL, INTERNAL_DETAIL)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> std::io::Error {
        std::io::Error::other("connection refused")
    }

    #[test]
    fn an_unavailability_is_answered_with_its_own_503() {
        let problem = Unexpected::unavailable(failure(), "retry later")
            .with_order_id(Some(uuid::Uuid::nil()))
            .into_problem("get_order", StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            problem,
            Problem::new(problem::STORAGE_UNAVAILABLE, "retry later")
                .with_order_id(uuid::Uuid::nil())
        );
    }

    #[test]
    fn an_unavailability_where_only_a_500_is_documented_is_an_internal_error() {
        let problem = Unexpected::unavailable(failure(), "retry later")
            .into_problem("get_order", StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(problem, Problem::new(problem::INTERNAL, INTERNAL_DETAIL));
    }

    #[test]
    fn an_internal_error_says_nothing_of_its_cause_unless_given_a_detail() {
        let status = StatusCode::INTERNAL_SERVER_ERROR;
        let plain = Unexpected::internal(failure()).into_problem("create_order", status);
        assert_eq!(plain, Problem::new(problem::INTERNAL, INTERNAL_DETAIL));
        let detailed = Unexpected::internal(failure())
            .with_detail("the order failed: no stock")
            .into_problem("create_order", status);
        assert_eq!(
            detailed.detail.as_deref(),
            Some("the order failed: no stock")
        );
        assert!(!Unexpected::internal(failure()).is_unavailable());
    }
}
