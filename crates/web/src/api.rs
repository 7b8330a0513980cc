//! The REST API, with errors in words: the server's `{"error"}` message when
//! it sent one, otherwise what went wrong and what to do.

use audiobook_wire::{ErrorBody, OnboardRequest, Onboarded, Record};
use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;

use crate::config::api_url;
use crate::storage::Session;

/// A failed request, with a message a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status, or `None` when the server could not be reached.
    pub status: Option<u16>,
    pub message: String,
}

impl ApiError {
    /// The token is no longer accepted: the user must onboard again.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn unreachable() -> ApiError {
    ApiError { status: None, message: "Cannot reach the AudioBook server. Check your connection and try again.".into() }
}

async fn read<T: DeserializeOwned>(response: Response) -> Result<T, ApiError> {
    let status = response.status();
    if response.ok() {
        return response.json::<T>().await.map_err(|e| ApiError {
            status: Some(status),
            message: format!("The server sent an answer this page does not understand ({e})."),
        });
    }
    let message = match response.json::<ErrorBody>().await {
        Ok(body) if !body.error.trim().is_empty() => body.error,
        _ => format!("The server answered with an error (HTTP {status}). Please try again."),
    };
    Err(ApiError { status: Some(status), message })
}

/// `POST /onboard`.
pub async fn onboard(name: &str) -> Result<Onboarded, ApiError> {
    let request = Request::post(&api_url("/onboard"))
        .json(&OnboardRequest { name: name.to_string() })
        .map_err(|e| ApiError { status: None, message: e.to_string() })?;
    read(request.send().await.map_err(|_| unreachable())?).await
}

/// `GET /records/:id`, newest first.
pub async fn records(session: &Session) -> Result<Vec<Record>, ApiError> {
    let response = Request::get(&api_url(&format!("/records/{}", session.user_id)))
        .header("Authorization", &format!("Bearer {}", session.token))
        .send()
        .await
        .map_err(|_| unreachable())?;
    read(response).await
}
