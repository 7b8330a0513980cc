//! The REST API, with errors in words: the server's `{"error"}` message when
//! it sent one, otherwise what went wrong and what to do.

use audiobook_wire::{
    ErrorBody, NEXT_CURSOR_HEADER, OnboardRequest, Onboarded, Record, RenameRecording, ShareLink, Transcript,
    TranscriptPending, Waveform,
};
use gloo_net::http::{Request, Response};
use serde::de::DeserializeOwned;
use uuid::Uuid;

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

/// Records per page on `/records`.
pub const PAGE_SIZE: u32 = 20;

/// One page of the user's recordings, newest first, and the cursor of the
/// next page (`None` on the last one).
pub struct RecordsPage {
    pub records: Vec<Record>,
    pub next: Option<String>,
}

fn bearer(session: &Session) -> String {
    format!("Bearer {}", session.token)
}

fn encode(value: &str) -> String {
    js_sys::encode_uri_component(value).into()
}

/// An answer without a body (`204`), or the error it carries.
async fn read_empty(response: Response) -> Result<(), ApiError> {
    if response.ok() {
        return Ok(());
    }
    read::<serde_json::Value>(response).await.map(|_| ())
}

/// `GET /records/:id?limit=&before=&q=`: a page of recordings whose name
/// contains `query` (all when empty), older than the `before` cursor.
pub async fn records_page(session: &Session, query: &str, before: Option<&str>) -> Result<RecordsPage, ApiError> {
    let mut url = format!("/records/{}?limit={PAGE_SIZE}", session.user_id);
    if !query.trim().is_empty() {
        url.push_str(&format!("&q={}", encode(query.trim())));
    }
    if let Some(cursor) = before {
        url.push_str(&format!("&before={}", encode(cursor)));
    }
    let response = Request::get(&api_url(&url))
        .header("Authorization", &bearer(session))
        .send()
        .await
        .map_err(|_| unreachable())?;
    let next = response.headers().get(NEXT_CURSOR_HEADER).filter(|c| !c.is_empty());
    Ok(RecordsPage { records: read(response).await?, next })
}

/// `PATCH /recordings/:id {"name"}` → the renamed record.
pub async fn rename(session: &Session, id: Uuid, name: &str) -> Result<Record, ApiError> {
    let request = Request::patch(&api_url(&format!("/recordings/{id}")))
        .header("Authorization", &bearer(session))
        .json(&RenameRecording { name: name.to_string() })
        .map_err(|e| ApiError { status: None, message: e.to_string() })?;
    read(request.send().await.map_err(|_| unreachable())?).await
}

/// `DELETE /recordings/:id`.
pub async fn delete(session: &Session, id: Uuid) -> Result<(), ApiError> {
    let response = Request::delete(&api_url(&format!("/recordings/{id}")))
        .header("Authorization", &bearer(session))
        .send()
        .await
        .map_err(|_| unreachable())?;
    read_empty(response).await
}

/// `POST /recordings/:id/share` → the public URL (the same one while shared).
pub async fn share(session: &Session, id: Uuid) -> Result<ShareLink, ApiError> {
    let response = Request::post(&api_url(&format!("/recordings/{id}/share")))
        .header("Authorization", &bearer(session))
        .send()
        .await
        .map_err(|_| unreachable())?;
    read(response).await
}

/// `DELETE /recordings/:id/share`: the public URL stops working.
pub async fn unshare(session: &Session, id: Uuid) -> Result<(), ApiError> {
    let response = Request::delete(&api_url(&format!("/recordings/{id}/share")))
        .header("Authorization", &bearer(session))
        .send()
        .await
        .map_err(|_| unreachable())?;
    read_empty(response).await
}

/// `GET /recordings/:id/waveform` → level peaks (empty for takes without).
pub async fn waveform(session: &Session, id: Uuid) -> Result<Waveform, ApiError> {
    let response = Request::get(&api_url(&format!("/recordings/{id}/waveform")))
        .header("Authorization", &bearer(session))
        .send()
        .await
        .map_err(|_| unreachable())?;
    read(response).await
}

/// What `GET /recordings/:id/transcript` answered.
pub enum TranscriptAnswer {
    Ready(Transcript),
    /// None (yet): where it stands, and why in words.
    Pending(TranscriptPending),
}

/// `GET /recordings/:id/transcript` → what was said, with word times, or
/// (a 404) where the transcript stands while there is none.
pub async fn transcript(session: &Session, id: Uuid) -> Result<TranscriptAnswer, ApiError> {
    let response = Request::get(&api_url(&format!("/recordings/{id}/transcript")))
        .header("Authorization", &bearer(session))
        .send()
        .await
        .map_err(|_| unreachable())?;
    if response.status() == 404 {
        // Also the 404 of a recording that is gone: its `error` alone, and
        // `transcript` none.
        return match response.json::<TranscriptPending>().await {
            Ok(pending) if !pending.error.trim().is_empty() => Ok(TranscriptAnswer::Pending(pending)),
            _ => Err(ApiError {
                status: Some(404),
                message: "The server answered with an error (HTTP 404). Please try again.".into(),
            }),
        };
    }
    read(response).await.map(TranscriptAnswer::Ready)
}

/// `GET /recordings/:id/transcript?format=vtt` → the WebVTT text (for a
/// captions track: the browser cannot send the token itself).
pub async fn transcript_vtt(session: &Session, id: Uuid) -> Result<String, ApiError> {
    let response = Request::get(&api_url(&format!("/recordings/{id}/transcript?format=vtt")))
        .header("Authorization", &bearer(session))
        .send()
        .await
        .map_err(|_| unreachable())?;
    if !response.ok() {
        return read::<serde_json::Value>(response).await.map(|_| String::new());
    }
    response.text().await.map_err(|_| unreachable())
}
