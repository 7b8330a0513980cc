use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use audiobook_wire::{MAX_PAGE_LIMIT, NEXT_CURSOR_HEADER, Record};

use super::IdPath;
use super::users::owner_only;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::db::RecordRow;
use crate::db::library::RecordQuery;
use crate::error::{AppError, AppResult};
use crate::transcription::text::{find_match, search_terms};

/// Longest `q`, in characters.
const MAX_QUERY_CHARS: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new().route("/records/{id}", get(list))
}

/// `?limit=&before=&q=`, all optional; checked by hand so that each
/// mistake gets its own message.
#[derive(Deserialize, Default)]
struct ListParams {
    limit: Option<String>,
    before: Option<String>,
    q: Option<String>,
}

/// `GET /records/:id` → the user's saved recordings, newest first. Without
/// `limit`, all of them (what original clients expect); with it, one page
/// and `X-Next-Cursor` to pass as `before` for the next one.
async fn list(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> AppResult<Response> {
    owner_only(&state, id, me.id).await?;
    let Query(params) = params.map_err(|_| AppError::BadRequest("The query string could not be read.".into()))?;
    let query = parse_params(&params)?;
    // Words in `q` search transcripts too; those answers are ranked, so
    // their pages are counted, not positions in time.
    let terms = query.name_contains.as_deref().map(search_terms).unwrap_or_default();
    let Some(limit) = query.limit else {
        let rows = state.db.find_records(id, &query).await?;
        return Ok(Json(records(&state, id, &rows, &terms).await?).into_response());
    };
    // One row more than asked tells whether there is a next page.
    let offset = query.offset;
    let mut rows = state.db.find_records(id, &RecordQuery { limit: Some(limit + 1), ..query }).await?;
    let next = (rows.len() > limit as usize).then(|| {
        rows.truncate(limit as usize);
        if terms.is_empty() {
            rows.last().map(|r| encode_cursor(r.created_at, r.id))
        } else {
            Some(encode_offset(offset + limit))
        }
    });
    let mut response = Json(records(&state, id, &rows, &terms).await?).into_response();
    if let Some(Some(cursor)) = next {
        response.headers_mut().insert(
            HeaderName::from_static(NEXT_CURSOR_HEADER),
            HeaderValue::from_str(&cursor).expect("base64 is ASCII"),
        );
    }
    Ok(response)
}

/// The rows as the API shows them; for a search, with where each
/// transcript matched (a snippet and the time of the first match).
async fn records(state: &AppState, user_id: Uuid, rows: &[RecordRow], terms: &[String]) -> AppResult<Vec<Record>> {
    let mut records: Vec<Record> = rows.iter().map(|r| state.links.record(r)).collect();
    if terms.is_empty() {
        return Ok(records);
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let texts = state.db.transcript_texts(user_id, &ids).await?;
    for record in &mut records {
        if let Some(t) = texts.iter().find(|t| t.record_id == record.id) {
            record.transcript_match = find_match(&t.text, &t.word_ms, terms);
        }
    }
    Ok(records)
}

fn parse_params(p: &ListParams) -> AppResult<RecordQuery> {
    let limit = match p.limit.as_deref().map(str::trim) {
        None => None,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => Some(n),
            _ => {
                return Err(AppError::BadRequest(format!(
                    "`limit` must be a whole number from 1 to {MAX_PAGE_LIMIT}, got `{raw}`."
                )));
            }
        },
    };
    let (before, offset) = match p.before.as_deref().map(str::trim) {
        None | Some("") => (None, 0),
        Some(raw) => match (decode_cursor(raw), decode_offset(raw)) {
            (Some(position), _) => (Some(position), 0),
            (None, Some(offset)) => (None, offset),
            (None, None) => {
                return Err(AppError::BadRequest(
                    "`before` is not a cursor this server gave out; start again from the first page.".into(),
                ));
            }
        },
    };
    let name_contains = match p.q.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(q) if audiobook_wire::char_len(q) > MAX_QUERY_CHARS => {
            return Err(AppError::BadRequest(format!("`q` is longer than {MAX_QUERY_CHARS} characters.")));
        }
        // A NUL cannot be stored or compared by PostgreSQL.
        Some(q) if q.chars().any(char::is_control) => {
            return Err(AppError::BadRequest("`q` must not contain control characters.".into()));
        }
        Some(q) => Some(q.to_string()),
    };
    Ok(RecordQuery { before, name_contains, limit, offset })
}

/// An opaque position in the newest-first order: `created_at` (µs) and `id`.
pub fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", at.timestamp_micros(), id.simple()))
}

/// A page of ranked search results: how many answers come before it.
pub fn encode_offset(offset: u32) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("o{offset}"))
}

pub fn decode_offset(cursor: &str) -> Option<u32> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&raw).ok()?.strip_prefix('o')?.parse().ok().filter(|n| *n <= 1_000_000)
}

pub fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let (micros, id) = std::str::from_utf8(&raw).ok()?.split_once('.')?;
    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, Uuid::try_parse(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = crate::db::now();
        let id = Uuid::new_v4();
        assert_eq!(decode_cursor(&encode_cursor(at, id)), Some((at, id)));
        for bad in ["", "!!", "bm9wZQ", &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("12.zz")] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
            assert_eq!(decode_offset(bad), None, "{bad}");
        }
        assert_eq!(decode_offset(&encode_offset(40)), Some(40));
        assert_eq!(decode_cursor(&encode_offset(40)), None);
        assert_eq!(decode_offset(&encode_cursor(at, id)), None);
        assert_eq!(decode_offset(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("o-1")), None);
    }

    #[test]
    fn params_are_checked() {
        let p = |limit: Option<&str>, q: Option<&str>| ListParams {
            limit: limit.map(Into::into),
            before: None,
            q: q.map(Into::into),
        };
        assert_eq!(parse_params(&p(Some("1"), None)).unwrap().limit, Some(1));
        assert_eq!(parse_params(&p(Some("100"), None)).unwrap().limit, Some(100));
        for bad in ["0", "101", "-1", "x", ""] {
            assert_eq!(parse_params(&p(Some(bad), None)).unwrap_err().status(), 400, "{bad}");
        }
        assert_eq!(parse_params(&p(None, Some("  "))).unwrap().name_contains, None);
        assert_eq!(parse_params(&p(None, Some(&"é".repeat(101)))).unwrap_err().status(), 400);
        assert_eq!(parse_params(&p(None, Some("a\u{0}b"))).unwrap_err().status(), 400);
    }
}
