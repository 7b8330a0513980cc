//! One recording at a time, for its owner: rename, delete, share and revoke
//! (`/recordings/:id...`, Bearer token). And the public side of a share link
//! (`/s/:token...`, no auth): a small page, the audio, and a JSON summary
//! for the web app. A share reveals the recording's name, date, duration and
//! audio, and nothing of its owner.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use audiobook_wire::{MAX_RECORDING_NAME_CHARS, Record, ShareLink, ShareOptions, SharedRecording};

use super::IdPath;
use crate::AppState;
use crate::auth::{CurrentUser, new_token};
use crate::db::library::DeleteOutcome;
use crate::db::{RecordRow, StoredStatus};
use crate::error::{AppError, AppResult};
use crate::recording::spool::SpoolPaths;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/recordings/{id}", patch(rename).delete(delete))
        .route("/recordings/{id}/share", post(share).delete(unshare))
        .route("/s/{token}", get(share_page))
        .route("/s/{token}/audio", get(share_audio))
        .route("/s/{token}/info", get(share_info))
}

// ------------------------------------------------------------ owner routes

/// The record `id` if `me` owns it: 404 when there is none, 403 when it is
/// someone else's.
pub(super) async fn owned(state: &AppState, id: Uuid, me: Uuid) -> AppResult<RecordRow> {
    let row =
        state.db.record(id).await?.ok_or_else(|| AppError::NotFound("There is no recording with this id.".into()))?;
    if row.user_id != me {
        return Err(AppError::Forbidden("This recording belongs to another user.".into()));
    }
    Ok(row)
}

fn is_live(row: &RecordRow) -> bool {
    matches!(row.status(), StoredStatus::Recording | StoredStatus::Finalizing)
}

/// `PATCH /recordings/:id {"name": "..."}` → 200 with the renamed record.
async fn rename(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Json<Record>> {
    owned(&state, id, me.id).await?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge("The request body is too large.".into()),
        _ => AppError::BadRequest("The request body could not be read.".into()),
    })?;
    let name = parse_recording_name(&body)?;
    let row = state
        .db
        .rename_record(id, &name)
        .await?
        .ok_or_else(|| AppError::NotFound("This recording was just deleted.".into()))?;
    tracing::info!(recording_id = %id, user_id = %me.id, "recording renamed");
    Ok(Json(state.links.record(&row)))
}

/// The trimmed name from a rename body, or an error saying what is wrong.
pub fn parse_recording_name(body: &[u8]) -> AppResult<String> {
    super::name_from_body(body, MAX_RECORDING_NAME_CHARS, "Interview")
}

/// `DELETE /recordings/:id` → 204. The audio goes first: if the storage
/// does not answer, nothing is deleted and the client can try again; once
/// the row is gone, its `link` (and any share link) answers 404.
async fn delete(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
) -> AppResult<Response> {
    let row = owned(&state, id, me.id).await?;
    if is_live(&row) {
        return Err(AppError::Conflict(
            "This recording is still being recorded or saved; stop it first, then delete it.".into(),
        ));
    }
    if let Some(key) = &row.storage_key {
        state.storage.delete(key).await?;
    }
    match state.db.delete_saved_record(id).await? {
        DeleteOutcome::Deleted | DeleteOutcome::Missing => {}
        DeleteOutcome::Live => {
            return Err(AppError::Conflict("This recording is still being saved; try again in a moment.".into()));
        }
    }
    // A pending record's audio waits in the spool for its upload. (An upload
    // retry already in flight may still land after this; its object is then
    // orphaned, never served: nothing points at it any more.)
    if row.status() == StoredStatus::Pending {
        SpoolPaths::new(&state.config.spool_dir, id).remove();
    }
    tracing::info!(recording_id = %id, user_id = %me.id, "recording deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /recordings/:id/share` (optional body `{"transcript": true}`: the
/// page shows the transcript too) → 201 `{"url"}` (200 with the same URL
/// when it was already shared).
///
/// The token is 256 random bits, stored in plain text rather than hashed:
/// the owner must get the same URL back each time they ask, and the token
/// only grants playing this one recording until it is revoked, unlike a
/// bearer token that would open the whole account.
async fn share(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<Response> {
    let row = owned(&state, id, me.id).await?;
    let body = body.map_err(|_| AppError::BadRequest("The request body could not be read.".into()))?;
    let options: ShareOptions = if body.iter().all(u8::is_ascii_whitespace) {
        ShareOptions::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|_| AppError::BadRequest("The body must be empty or JSON like {\"transcript\": true}.".into()))?
    };
    if is_live(&row) {
        return Err(AppError::Conflict(
            "This recording is still being recorded or saved; share it once it is saved.".into(),
        ));
    }
    let (fresh, _) = new_token();
    let Some(token) = state.db.share_record(id, &fresh).await? else {
        return Err(AppError::NotFound("This recording was just deleted.".into()));
    };
    if let Some(transcript) = options.transcript {
        state.db.set_share_transcript(id, transcript).await?;
    }
    let status = if token == fresh {
        tracing::info!(recording_id = %id, user_id = %me.id, "recording shared");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let url = format!("{}/s/{token}", state.config.public_url.trim_end_matches('/'));
    Ok((status, Json(ShareLink { url })).into_response())
}

/// `DELETE /recordings/:id/share` → 204; the share URL answers 404 from now
/// on (revoking twice is fine).
async fn unshare(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
) -> AppResult<StatusCode> {
    owned(&state, id, me.id).await?;
    state.db.unshare_record(id).await?;
    tracing::info!(recording_id = %id, user_id = %me.id, "share link revoked");
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------ public share routes

const GONE: &str = "This share link does not exist or was revoked by its owner.";

/// The recording shared under `token`; 404 for anything else (an unknown,
/// revoked or malformed token, or a recording deleted since).
pub(super) async fn shared(state: &AppState, token: &str) -> AppResult<RecordRow> {
    let plausible =
        (16..=128).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return Err(AppError::NotFound(GONE.into()));
    }
    state.db.shared_record(token).await?.ok_or_else(|| AppError::NotFound(GONE.into()))
}

/// Headers of every public share answer: never cached (a revoke takes effect
/// at once), never indexed, and the token is not sent on as a `Referer`.
pub(super) fn private(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::HeaderName::from_static("x-robots-tag"), HeaderValue::from_static("noindex, nofollow"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /s/:token` → a self-contained page that plays the recording. A
/// browser asking for a missing share gets a readable HTML 404, any other
/// client the usual JSON error.
async fn share_page(Path(token): Path<String>, headers: HeaderMap, State(state): State<AppState>) -> Response {
    match shared(&state, &token).await {
        Ok(row) => {
            let transcript = match super::transcripts::shared_transcript(&state, &row).await {
                Ok(t) => t,
                Err(e) => return private(e.into_response()),
            };
            let mut response = Html(share_html(&row, &token, transcript.as_ref())).into_response();
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                // Audio may be redirected to the storage (S3) origin.
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; media-src 'self' https: http:; \
                     base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                ),
            );
            private(response)
        }
        Err(AppError::NotFound(message)) if wants_html(&headers) => private(
            (StatusCode::NOT_FOUND, Html(page("Link not available", &format!("<p>{}</p>", escape_html(&message)))))
                .into_response(),
        ),
        Err(e) => private(e.into_response()),
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

#[derive(Deserialize)]
struct AudioQuery {
    download: Option<String>,
}

/// `GET /s/:token/audio` → a 307 to a fresh signed link of the recording, so
/// that one route serves audio (with `Range`, validators, S3 redirects).
/// `?download=1` is passed on (the file is saved with its name).
async fn share_audio(
    Path(token): Path<String>,
    Query(q): Query<AudioQuery>,
    headers: axum::http::HeaderMap,
    State(state): State<AppState>,
) -> AppResult<Response> {
    let row = shared(&state, &token).await?;
    let download = q.download.is_some_and(|d| d != "0");
    Ok(private(super::media::serve(&state, &row, &headers, download, super::media::Delivery::Proxy).await?))
}

/// `GET /s/:token/info` → what the web app's share page shows.
async fn share_info(Path(token): Path<String>, State(state): State<AppState>) -> AppResult<Response> {
    let row = shared(&state, &token).await?;
    Ok(private(
        Json(SharedRecording {
            name: row.name,
            duration_ms: row.duration_ms.max(0) as u64,
            created_at: row.created_at,
            mime_type: row.mime_type,
            transcript: state.db.shares_transcript(row.id).await?,
        })
        .into_response(),
    ))
}

// ------------------------------------------------------------ the share page

fn share_html(row: &RecordRow, token: &str, transcript: Option<&audiobook_wire::Transcript>) -> String {
    let name = escape_html(&row.name);
    let when = row.created_at.format("%-d %B %Y, %H:%M UTC");
    let duration =
        if row.duration_ms > 0 { format!(" · {}", format_duration(row.duration_ms as u64)) } else { String::new() };
    let body = format!(
        "<h1>{name}</h1>\n<p class=\"meta\"><time datetime=\"{iso}\">{when}</time>{duration}</p>\n\
         <audio controls preload=\"metadata\" src=\"/s/{token}/audio\">{track}</audio>\n\
         <p><a href=\"/s/{token}/audio?download=1\">Download</a></p>{text}",
        iso = row.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        track = match transcript {
            Some(t) => format!(
                "<track kind=\"captions\" srclang=\"{}\" label=\"Transcript\" src=\"/s/{token}/transcript?format=vtt\" default>",
                escape_html(t.language.as_deref().unwrap_or("en"))
            ),
            None => String::new(),
        },
        text = transcript.map(super::transcripts::transcript_html).unwrap_or_default(),
    );
    page(&row.name, &body)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title} · AudioBook</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<main>\n{body}\n</main>\n<footer>Shared with AudioBook</footer>\n</body>\n</html>\n",
        title = escape_html(title),
    )
}

const STYLE: &str = "\
:root{color-scheme:light dark;font-family:system-ui,-apple-system,'Segoe UI',sans-serif}\
body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;justify-content:center;\
background:Canvas;color:CanvasText}\
main{box-sizing:border-box;width:min(32rem,calc(100vw - 2rem));padding:1.5rem;border:1px solid color-mix(in srgb,CanvasText 15%,transparent);\
border-radius:12px}\
h1{font-size:1.4rem;margin:0 0 .25rem;overflow-wrap:anywhere}\
.meta{margin:0 0 1rem;opacity:.7}\
audio{width:100%}\
.transcript{margin-top:1rem;line-height:1.5}.transcript h2{font-size:1rem;margin:0 0 .25rem}.transcript p{margin:.25rem 0}\
a{color:LinkText}main a{display:inline-flex;align-items:center;min-height:2.75rem}\
footer{margin-top:1rem;font-size:.8rem;opacity:.6}";

/// `m:ss`, or `h:mm:ss` from an hour on.
pub fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 { format!("{h}:{m:02}:{s:02}") } else { format!("{m}:{s:02}") }
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_names_are_checked_in_characters() {
        assert_eq!(parse_recording_name(br#"{"name": "  Talk  "}"#).unwrap(), "Talk");
        assert_eq!(
            parse_recording_name(format!("{{\"name\": \"{}\"}}", "é".repeat(50)).as_bytes()).unwrap(),
            "é".repeat(50)
        );
        assert_eq!(
            parse_recording_name(format!("{{\"name\": \"{}\"}}", "é".repeat(51)).as_bytes()).unwrap_err().status(),
            422
        );
        assert_eq!(parse_recording_name(br#"{"name": ""}"#).unwrap_err().status(), 422);
        assert_eq!(parse_recording_name(br#"{"name": 5}"#).unwrap_err().status(), 422);
        assert_eq!(parse_recording_name(br#"{"name": "a\nb"}"#).unwrap_err().status(), 422);
        assert_eq!(parse_recording_name(br#"{}"#).unwrap_err().status(), 422);
        assert_eq!(parse_recording_name(b"name=x").unwrap_err().status(), 400);
        assert_eq!(parse_recording_name(b"\"x\"").unwrap_err().status(), 400);
    }

    #[test]
    fn durations_and_escaping() {
        assert_eq!(format_duration(0), "0:00");
        assert_eq!(format_duration(3000), "0:03");
        assert_eq!(format_duration(61_500), "1:01");
        assert_eq!(format_duration(3_600_000 + 62_000), "1:01:02");
        assert_eq!(escape_html("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }
}
