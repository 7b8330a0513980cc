//! One error type for the HTTP layer: each variant knows its status code and
//! carries a message a person can act on. Internal failures are logged with
//! their detail and shown to the client as a plain 500.

use audiobook_wire::ErrorBody;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RangeNotSatisfiable(String, u64),
    #[error("{0}")]
    Unavailable(String),
    /// A rate limit: answered with `Retry-After` (whole seconds, rounded up).
    #[error("{0}")]
    TooManyRequests(String, std::time::Duration),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("storage error")]
    Storage(#[from] object_store::Error),
    #[error("internal error")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RangeNotSatisfiable(..) => StatusCode::RANGE_NOT_SATISFIABLE,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Database(_) | AppError::Storage(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            AppError::Database(e) => {
                crate::telemetry::db_error();
                tracing::error!(error = %e, "database error");
                "Something went wrong on the server; please try again.".to_string()
            }
            AppError::Storage(e) => {
                crate::telemetry::storage_error();
                tracing::error!(error = %e, "storage error");
                "The audio storage did not answer; please try again.".to_string()
            }
            AppError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                "Something went wrong on the server; please try again.".to_string()
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(ErrorBody { error: message })).into_response();
        match self {
            AppError::RangeNotSatisfiable(_, size) => {
                response.headers_mut().insert(
                    axum::http::header::CONTENT_RANGE,
                    format!("bytes */{size}").parse().expect("valid header"),
                );
            }
            AppError::TooManyRequests(_, wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.max(1).into());
            }
            _ => {}
        }
        response
    }
}
