//! A recording's transcript: `GET /recordings/:id/transcript` (owner; JSON,
//! `?format=vtt`, `?format=txt`; 404 while there is none), `POST` to ask
//! for one again (a failed one, or one made while transcription was off),
//! and the share link's `/s/:token/transcript` when the owner shared it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use audiobook_wire::{Transcript, TranscriptPending, TranscriptStatus};

use super::IdPath;
use super::recordings::{escape_html, owned, private, shared};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::RecordRow;
use crate::db::transcripts::QueueOutcome;
use crate::error::{AppError, AppResult};
use crate::transcription::formats::{to_text, to_vtt};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/recordings/{id}/transcript", get(transcript).post(request))
        .route("/s/{token}/transcript", get(share_transcript))
}

#[derive(Deserialize)]
struct FormatQuery {
    format: Option<String>,
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Vtt,
    Text,
}

fn format(q: &FormatQuery) -> AppResult<Format> {
    match q.format.as_deref().map(str::trim) {
        None | Some("") | Some("json") => Ok(Format::Json),
        Some("vtt") => Ok(Format::Vtt),
        Some("txt") => Ok(Format::Text),
        Some(_) => Err(AppError::BadRequest("`format` must be `json`, `vtt` or `txt`.".into())),
    }
}

/// `GET /recordings/:id/transcript[?format=vtt|txt]`.
async fn transcript(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
    Query(q): Query<FormatQuery>,
) -> AppResult<Response> {
    let format = format(&q)?;
    let row = owned(&state, id, me.id).await?;
    let Some(json) = state.db.transcript_json(row.id).await? else {
        return Ok((StatusCode::NOT_FOUND, Json(pending(&state, &row).await?)).into_response());
    };
    render(&json, format)
}

/// Why there is no transcript to show (yet): in words, and as a state.
async fn pending(state: &AppState, row: &RecordRow) -> AppResult<TranscriptPending> {
    let t = state.db.transcript(row.id).await?;
    let (status, progress, last_error) = match t {
        Some(t) => (t.status, t.progress, t.last_error),
        None => (String::new(), None, None),
    };
    Ok(match status.as_str() {
        "queued" => TranscriptPending {
            error: "The transcript is queued; it is made shortly.".into(),
            transcript: TranscriptStatus::Queued,
            transcript_progress: None,
            transcript_error: None,
        },
        "running" => {
            let percent = progress.map(|p| (p.clamp(0.0, 1.0) * 100.0) as u8);
            TranscriptPending {
                error: match percent {
                    Some(p) => format!("The transcript is being made ({p} % done)."),
                    None => "The transcript is being made.".into(),
                },
                transcript: TranscriptStatus::Running,
                transcript_progress: percent,
                transcript_error: None,
            }
        }
        "failed" => {
            let why = last_error.unwrap_or_else(|| "no reason given".into()).trim_end_matches('.').to_string();
            TranscriptPending {
                error: format!("Transcribing this recording failed: {why}. POST to this URL to try again."),
                transcript: TranscriptStatus::Failed,
                transcript_progress: None,
                transcript_error: Some(why),
            }
        }
        _ => TranscriptPending {
            error: "This recording has no transcript (it is not saved yet, or transcription is off).".into(),
            transcript: TranscriptStatus::None,
            transcript_progress: None,
            transcript_error: None,
        },
    })
}

fn render(json: &str, format: Format) -> AppResult<Response> {
    let (content_type, body) = match format {
        Format::Json => ("application/json", json.to_string()),
        Format::Vtt => ("text/vtt; charset=utf-8", to_vtt(&parse(json)?)),
        Format::Text => ("text/plain; charset=utf-8", to_text(&parse(json)?)),
    };
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(response)
}

fn parse(json: &str) -> AppResult<Transcript> {
    serde_json::from_str(json).map_err(|e| AppError::Internal(format!("a stored transcript does not parse: {e}")))
}

/// `POST /recordings/:id/transcript` → 202 with the record: queued (again).
async fn request(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
) -> AppResult<Response> {
    owned(&state, id, me.id).await?;
    if state.transcription.is_none() {
        return Err(AppError::Unavailable("Transcription is off on this server.".into()));
    }
    match state.db.queue_transcript(id).await? {
        QueueOutcome::Queued | QueueOutcome::Busy => {}
        QueueOutcome::Ready => return Err(AppError::Conflict("This recording already has a transcript.".into())),
        QueueOutcome::NotReady => {
            return Err(AppError::Conflict("Only a saved recording (status `ready`) can be transcribed.".into()));
        }
    }
    tracing::info!(recording_id = %id, user_id = %me.id, "transcript requested");
    let row = owned(&state, id, me.id).await?;
    Ok((StatusCode::ACCEPTED, Json(state.links.record(&row))).into_response())
}

/// The transcript of a shared recording, if its owner shared it and it is ready.
pub(super) async fn shared_transcript(state: &AppState, row: &RecordRow) -> AppResult<Option<Transcript>> {
    if !state.db.shares_transcript(row.id).await? {
        return Ok(None);
    }
    state.db.transcript_json(row.id).await?.map(|json| parse(&json)).transpose()
}

/// `GET /s/:token/transcript[?format=vtt|txt]`: 404 unless shared and ready.
async fn share_transcript(
    Path(token): Path<String>,
    State(state): State<AppState>,
    Query(q): Query<FormatQuery>,
) -> AppResult<Response> {
    let format = format(&q)?;
    let row = shared(&state, &token).await?;
    if !state.db.shares_transcript(row.id).await? {
        return Err(AppError::NotFound("This share link does not include a transcript.".into()));
    }
    let json = state
        .db
        .transcript_json(row.id)
        .await?
        .ok_or_else(|| AppError::NotFound("The transcript of this recording is not ready.".into()))?;
    Ok(private(render(&json, format)?))
}

/// The transcript on the share page: one paragraph per segment, escaped.
pub(super) fn transcript_html(t: &Transcript) -> String {
    let mut out = String::from("\n<section class=\"transcript\" aria-label=\"Transcript\">\n<h2>Transcript</h2>\n");
    for s in &t.segments {
        out.push_str(&format!("<p>{}</p>\n", escape_html(&s.text)));
    }
    out.push_str("</section>");
    out
}
