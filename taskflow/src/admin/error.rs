//! [`ApiError`]: every failure of the admin API, answered as JSON with the right status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;
use crate::store::StoreError;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, in words.
    pub(crate) error: String,
}

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// A path, query or body value is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or wrong ones.
    #[error("authentication required")]
    Unauthorized,
    /// A state-changing request without the CSRF token, or from another site.
    #[error("{0}")]
    Forbidden(String),
    /// No such task.
    #[error("{0}")]
    NotFound(String),
    /// The task is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The request is well formed but cannot be carried out (the task's fn is not in this
    /// binary).
    #[error("{0}")]
    Unprocessable(String),
    /// The store failed.
    #[error("{0}")]
    Unavailable(String),
    /// Too many failed sign-ins from this client or for this user: retry after the span.
    #[error("too many failed sign-ins; retry in {} s", .0.as_secs().max(1))]
    TooManyRequests(std::time::Duration),
    /// The request body is larger than the admin API takes.
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.to_string() };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::TooManyRequests(wait) = self {
            let seconds = wait.as_secs().max(1).to_string();
            if let Ok(value) = seconds.parse() {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::InvalidCursor(_) => {
                ApiError::BadRequest(format!("parameter `cursor`: {err}"))
            }
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::TaskNotFound { .. } => ApiError::NotFound(err.to_string()),
            Error::NotRetryable { .. } => ApiError::Conflict(err.to_string()),
            Error::UnknownTask { .. } => ApiError::Unprocessable(err.to_string()),
            Error::InvalidTaskId { .. } | Error::InvalidQueue { .. } => {
                ApiError::BadRequest(err.to_string())
            }
            Error::UnknownQueue { .. } | Error::UnknownSchedule(_) => {
                ApiError::NotFound(err.to_string())
            }
            Error::Schedule(_) => ApiError::Unprocessable(err.to_string()),
            Error::Store(store) => store.into(),
            other => ApiError::Unavailable(other.to_string()),
        }
    }
}
