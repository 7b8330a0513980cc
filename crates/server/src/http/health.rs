use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use audiobook_wire::Health;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// 200 when the database answers, 503 otherwise (load balancers use it).
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match tokio::time::timeout(std::time::Duration::from_secs(3), state.db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(Health { status: "ok".into(), error: None })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: database error");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health { status: "unavailable".into(), error: Some("database error".into()) }),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health { status: "unavailable".into(), error: Some("database timeout".into()) }),
        ),
    }
}
