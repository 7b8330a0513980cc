//! The REST API and the static web app, one module per resource; each
//! module's `router()` is merged here.

mod health;
mod media;
mod metrics;
mod recordings;
mod records;
pub mod serve;
mod transcripts;
mod users;
mod waveform;

use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::trace::TraceLayer;
use uuid::Uuid;

use crate::AppState;
use crate::error::AppError;

/// The API routes and, when configured, the web app (same origin). The
/// layers every route shares, Socket.IO's included, are added by [`outer`].
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(health::router())
        .merge(users::router())
        .merge(records::router())
        .merge(recordings::router())
        .merge(media::router())
        .merge(metrics::router())
        .merge(waveform::router())
        .merge(transcripts::router())
        .method_not_allowed_fallback(method_not_allowed);
    let app = match &state.config.web_dist {
        // Client routes (/onboard, /recorder, /records) answer index.html.
        Some(dist) => api.fallback_service(
            ServeDir::new(dist)
                .precompressed_gzip()
                .fallback(ServeFile::new(dist.join("index.html")))
                .call_fallback_on_method_not_allowed(true),
        ),
        None => api.fallback(not_found),
    };
    app.layer(axum::extract::DefaultBodyLimit::max(state.config.limits.max_body_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .with_state(state)
}

/// A request body must arrive within this time (bodies here are small JSON).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The layers around everything, Socket.IO included: CORS (so that
/// long-polling from another origin works too), JSON error bodies, tracing.
pub fn outer(app: Router, state: &AppState) -> Router {
    app.layer(axum::middleware::map_response(json_error_body)).layer(cors(state)).layer(TraceLayer::new_for_http())
}

/// Every error answer is `{"error": "..."}`: axum's own rejections (a bad
/// query string, a body that is not UTF-8...) are plain text, so they are
/// wrapped here. Socket.IO's answers are left as its clients expect them.
async fn json_error_body(uri: Uri, response: axum::response::Response) -> axum::response::Response {
    use axum::response::IntoResponse;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain || uri.path().starts_with("/socket.io") {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let error = if text.is_empty() { status.canonical_reason().unwrap_or("Error").to_string() } else { text };
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    (parts, axum::Json(audiobook_wire::ErrorBody { error })).into_response()
}

fn cors(state: &AppState) -> CorsLayer {
    let mut origins: Vec<HeaderValue> = state.config.allowed_origins.iter().filter_map(|o| o.parse().ok()).collect();
    if let Ok(own) = state.config.public_url.parse() {
        origins.push(own);
    }
    let any = state.config.allowed_origins.iter().any(|o| o == "*");
    let allow = if any { AllowOrigin::any() } else { AllowOrigin::list(origins) };
    // Credentials (cookies) are allowed for the listed origins: the API uses
    // bearer tokens, but a load balancer's stickiness cookie must reach the
    // server on cross-origin long-polling requests too.
    CorsLayer::new()
        .allow_credentials(!any)
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::RANGE])
        .expose_headers([
            header::CONTENT_RANGE,
            header::CONTENT_LENGTH,
            header::ACCEPT_RANGES,
            header::ETAG,
            HeaderName::from_static("content-disposition"),
            HeaderName::from_static(audiobook_wire::NEXT_CURSOR_HEADER),
        ])
        .max_age(Duration::from_secs(3600))
}

async fn not_found(method: Method, uri: Uri) -> AppError {
    AppError::NotFound(format!("There is no {method} {}.", uri.path()))
}

/// A path the API answers with other methods. A browser GET of a client
/// route that is also an API path (`/onboard`) gets the web app.
async fn method_not_allowed(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    if let (Some(dist), true) = (&state.config.web_dist, method == Method::GET || method == Method::HEAD) {
        let Ok(response) = ServeFile::new(dist.join("index.html")).oneshot(request).await;
        return response.into_response();
    }
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(audiobook_wire::ErrorBody { error: format!("{path} does not answer {method}.") }),
    )
        .into_response()
}

/// A `:id` path segment that must be a UUID; anything else is a 400 that
/// says so (checked before authentication, as the CONTRACT orders errors).
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::BadRequest("The path must end with an id.".into()))?;
        raw.trim().parse().map(IdPath).map_err(|_| {
            AppError::BadRequest(format!(
                "`{raw}` is not a valid id (a UUID like 2f1c0c8e-3d5b-4c1e-9a53-0f6f1c2b7d9a)."
            ))
        })
    }
}

/// The trimmed `name` of a JSON body like `{"name": "Ada"}`, 1 to `max`
/// characters (not bytes), or an error saying what is wrong: 400 when the
/// body is not a JSON object, 422 when the name is missing or unfit.
pub fn name_from_body(body: &[u8], max: usize, example: &str) -> Result<String, AppError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| AppError::BadRequest(format!("The body must be JSON like {{\"name\": \"{example}\"}}.")))?;
    let object = value.as_object().ok_or_else(|| {
        AppError::BadRequest(format!("The body must be a JSON object like {{\"name\": \"{example}\"}}."))
    })?;
    match object.get("name") {
        None | Some(serde_json::Value::Null) => Err(AppError::Unprocessable("`name` is missing.".into())),
        Some(serde_json::Value::String(s)) => {
            audiobook_wire::clean_name(s, max).map_err(|e| AppError::Unprocessable(e.to_string()))
        }
        Some(_) => Err(AppError::Unprocessable("`name` must be a string.".into())),
    }
}
