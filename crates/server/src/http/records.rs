use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use audiobook_wire::Record;

use super::IdPath;
use super::users::owner_only;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::AppResult;

pub fn router() -> Router<AppState> {
    Router::new().route("/records/{id}", get(list))
}

/// `GET /records/:id` → the user's saved recordings, newest first.
async fn list(IdPath(id): IdPath, CurrentUser(me): CurrentUser, State(state): State<AppState>) -> AppResult<Json<Vec<Record>>> {
    owner_only(&state, id, me.id).await?;
    let rows = state.db.records_of(id).await?;
    Ok(Json(rows.iter().map(|r| state.links.record(r)).collect()))
}
