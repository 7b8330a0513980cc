//! `GET /media/:id?exp=&sig=`: plays a recording without any header. Signed
//! and expiring (see `links`); answers `Range` with 206; S3-stored audio is a
//! redirect to a presigned URL, local audio is streamed from here.

use std::ops::Range;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use super::IdPath;
use crate::AppState;
use crate::db::{RecordRow, StoredStatus};
use crate::error::{AppError, AppResult};
use crate::links::LinkError;
use crate::recording::finalize::extension_for;
use crate::recording::spool::SpoolPaths;
use crate::storage::file_stream;

pub fn router() -> Router<AppState> {
    Router::new().route("/media/{id}", get(media))
}

#[derive(Deserialize)]
struct LinkQuery {
    exp: Option<i64>,
    sig: Option<String>,
    /// `?download=1`: ask the browser to save the file.
    download: Option<String>,
}

async fn media(
    IdPath(id): IdPath,
    Query(q): Query<LinkQuery>,
    headers: HeaderMap,
    State(state): State<AppState>,
) -> AppResult<Response> {
    let (Some(exp), Some(sig)) = (q.exp, q.sig.as_deref()) else {
        return Err(AppError::Forbidden("This link is incomplete; get a fresh one from your recordings.".into()));
    };
    state.links.verify(id, exp, sig).map_err(|e| match e {
        LinkError::Expired => {
            AppError::Forbidden("This link has expired; get a fresh one from your recordings.".into())
        }
        LinkError::BadSignature => AppError::Forbidden("This link is not valid.".into()),
    })?;
    let row =
        state.db.record(id).await?.ok_or_else(|| AppError::NotFound("This recording no longer exists.".into()))?;
    let download = q.download.is_some_and(|d| d != "0");
    serve(&state, &row, &headers, download, Delivery::RedirectWhereStored).await
}

/// Whether S3-stored audio may be answered with a redirect to a presigned
/// URL, or must go through this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Plays (not downloads) redirect to the bucket: S3 serves Range itself.
    RedirectWhereStored,
    /// Always through here: shared recordings, whose presigned URL would show
    /// the owner's storage key, and whose revocation must take effect at once.
    Proxy,
}

/// Answers a request for a record's audio: whole or a `Range` of it, with
/// validators, from the storage (or the spool while the upload is pending).
pub async fn serve(
    state: &AppState,
    row: &RecordRow,
    headers: &HeaderMap,
    download: bool,
    delivery: Delivery,
) -> AppResult<Response> {
    // What is not known audio is only ever a download.
    let download = download || !crate::media_type::is_playable(&row.mime_type);
    let disposition = content_disposition(row, download);
    let key =
        row.storage_key.clone().ok_or_else(|| AppError::NotFound("This recording is still being recorded.".into()))?;

    match row.status() {
        StoredStatus::Ready | StoredStatus::Interrupted => {
            // Presigned URLs last as long as a link would (at least a minute, S3 allows a week).
            let ttl = state
                .config
                .limits
                .link_ttl
                .clamp(std::time::Duration::from_secs(60), std::time::Duration::from_secs(7 * 24 * 3600));
            let content_type = crate::media_type::safe_audio_type(&row.mime_type);
            if !download
                && delivery == Delivery::RedirectWhereStored
                && let Some(url) = state.storage.presigned_get(&key, ttl, &content_type, &disposition).await?
            {
                return Ok(Redirect::temporary(&url).into_response());
            }
            let size = match state.storage.size(&key).await {
                Ok(size) => size,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(AppError::NotFound("This recording's audio is gone.".into()));
                }
                Err(e) => return Err(e.into()),
            };
            let plan = plan(row, headers, size)?;
            if plan.not_modified {
                return Ok(plan.head(StatusCode::NOT_MODIFIED, &disposition));
            }
            let read = state.storage.get(&key, plan.range.clone()).await?;
            Ok(plan.respond(Body::from_stream(read.stream), &disposition))
        }
        // Safe in the spool, upload not confirmed yet: play it from there.
        StoredStatus::Pending => {
            let paths = SpoolPaths::new(&state.config.spool_dir, row.id);
            let path = if paths.fixed.exists() { paths.fixed } else { paths.data };
            let file = tokio::fs::File::open(&path)
                .await
                .map_err(|_| AppError::NotFound("This recording's audio is not available right now.".into()))?;
            let size = file.metadata().await.map_err(|e| AppError::Internal(e.to_string()))?.len();
            let plan = plan(row, headers, size)?;
            if plan.not_modified {
                return Ok(plan.head(StatusCode::NOT_MODIFIED, &disposition));
            }
            let stream = file_stream(file.into_std().await, plan.range.clone().unwrap_or(0..size));
            Ok(plan.respond(Body::from_stream(stream), &disposition))
        }
        StoredStatus::Recording | StoredStatus::Finalizing => {
            Err(AppError::NotFound("This recording is still being saved; try again in a moment.".into()))
        }
    }
}

fn content_disposition(row: &RecordRow, download: bool) -> String {
    let ext = extension_for(&row.mime_type);
    let base: String =
        row.name.chars().map(|c| if c.is_ascii_alphanumeric() || " -_.".contains(c) { c } else { '_' }).collect();
    let encoded: String = format!("{}.{ext}", row.name)
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect();
    format!(
        "{}; filename=\"{}.{ext}\"; filename*=UTF-8''{encoded}",
        if download { "attachment" } else { "inline" },
        base.trim()
    )
}

/// What to send for a request: status, range and validators.
struct Plan {
    size: u64,
    range: Option<Range<u64>>,
    etag: String,
    last_modified: String,
    mime_type: String,
    not_modified: bool,
}

fn plan(row: &RecordRow, headers: &HeaderMap, size: u64) -> AppResult<Plan> {
    let etag = format!("\"{}-{size}-{}\"", row.id.simple(), row.updated_at.timestamp_micros());
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) if !not_modified => match parse_range(spec, size) {
            RangeSpec::Ignore => None,
            RangeSpec::Satisfiable(r) => Some(r),
            RangeSpec::Unsatisfiable => {
                return Err(AppError::RangeNotSatisfiable(
                    format!("The range `{spec}` is outside the {size} bytes of this recording."),
                    size,
                ));
            }
        },
        _ => None,
    };
    Ok(Plan {
        size,
        range,
        etag,
        last_modified: row.updated_at.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        mime_type: row.mime_type.clone(),
        not_modified,
    })
}

impl Plan {
    fn head(&self, status: StatusCode, disposition: &str) -> Response {
        let mut response = status.into_response();
        let h = response.headers_mut();
        crate::media_type::inert_headers(h, &self.mime_type);
        let mut set = |name: header::HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        set(header::ACCEPT_RANGES, "bytes");
        set(header::ETAG, &self.etag);
        set(header::LAST_MODIFIED, &self.last_modified);
        set(header::CACHE_CONTROL, "private, max-age=3600");
        set(header::CONTENT_DISPOSITION, disposition);
        response
    }

    fn respond(&self, body: Body, disposition: &str) -> Response {
        let (status, length) = match &self.range {
            Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
            None => (StatusCode::OK, self.size),
        };
        let mut response = self.head(status, disposition);
        *response.body_mut() = body;
        let h = response.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        if let Some(r) = &self.range {
            let value = format!("bytes {}-{}/{}", r.start, r.end - 1, self.size);
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).expect("ascii"));
        }
        response
    }
}

#[derive(Debug, PartialEq)]
enum RangeSpec {
    /// Not a single byte range we understand: send the whole file (RFC 9110 allows it).
    Ignore,
    Satisfiable(Range<u64>),
    Unsatisfiable,
}

/// Parses a single `bytes=` range against a file of `size` bytes.
fn parse_range(spec: &str, size: u64) -> RangeSpec {
    let Some(spec) = spec.trim().strip_prefix("bytes=") else { return RangeSpec::Ignore };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((start, end)) = spec.trim().split_once('-') else { return RangeSpec::Ignore };
    let (start, end) = (start.trim(), end.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (start.is_empty(), end.is_empty()) {
        (true, true) => RangeSpec::Ignore,
        // Suffix: the last N bytes.
        (true, false) => match parse(end) {
            Some(0) => RangeSpec::Unsatisfiable,
            Some(_) if size == 0 => RangeSpec::Unsatisfiable,
            Some(n) => RangeSpec::Satisfiable(size.saturating_sub(n)..size),
            None => RangeSpec::Ignore,
        },
        (false, _) => {
            let Some(first) = parse(start) else { return RangeSpec::Ignore };
            let last = if end.is_empty() {
                size.saturating_sub(1)
            } else {
                match parse(end) {
                    Some(l) if l >= first => l.min(size.saturating_sub(1)),
                    _ => return RangeSpec::Ignore,
                }
            };
            if first >= size { RangeSpec::Unsatisfiable } else { RangeSpec::Satisfiable(first..last + 1) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Satisfiable(0..100));
        assert_eq!(parse_range("bytes=500-", 1000), Satisfiable(500..1000));
        assert_eq!(parse_range("bytes=-100", 1000), Satisfiable(900..1000));
        assert_eq!(parse_range("bytes=-5000", 1000), Satisfiable(0..1000));
        assert_eq!(parse_range("bytes=900-5000", 1000), Satisfiable(900..1000));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ignore);
        assert_eq!(parse_range("items=0-1", 1000), Ignore);
        assert_eq!(parse_range("bytes=x-1", 1000), Ignore);
    }
}
