//! `GET /recordings/:id/waveform`: the input level peaks the recorder sent
//! with its chunks (0–255, evenly spread over the take), for drawing a
//! waveform. Empty for takes from clients that send none.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use audiobook_wire::Waveform;

use super::IdPath;
use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::{AppError, AppResult};

pub fn router() -> Router<AppState> {
    Router::new().route("/recordings/{id}/waveform", get(waveform))
}

async fn waveform(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
) -> AppResult<Json<Waveform>> {
    let row =
        state.db.record(id).await?.ok_or_else(|| AppError::NotFound("There is no recording with this id.".into()))?;
    if row.user_id != me.id {
        return Err(AppError::Forbidden("This recording belongs to another user.".into()));
    }
    Ok(Json(Waveform { peaks: state.db.record_peaks(id).await? }))
}
