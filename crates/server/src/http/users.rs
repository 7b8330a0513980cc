use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use audiobook_wire::{MAX_USER_NAME_CHARS, Onboarded, User};

use super::IdPath;
use super::serve::PeerAddr;
use crate::AppState;
use crate::auth::{CurrentUser, new_token};
use crate::error::{AppError, AppResult};

pub fn router() -> Router<AppState> {
    Router::new().route("/onboard", post(onboard)).route("/profile/{id}", get(profile))
}

/// `POST /onboard {"name": "..."}` → 201 with the user and its token; 429
/// with `Retry-After` when this address onboarded too often this minute.
async fn onboard(
    State(state): State<AppState>,
    PeerAddr(peer): PeerAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<Onboarded>)> {
    if let Some(rate) = &state.onboard_rate
        && let Some(address) = super::serve::client_address(&headers, peer, state.config.trust_forwarded_for)
        && let Err(wait) = rate.check(address)
    {
        crate::telemetry::refused("onboard_rate");
        return Err(AppError::TooManyRequests(
            format!("Too many new accounts from your address; try again in {} seconds.", wait.as_secs().max(1)),
            wait,
        ));
    }
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge("The request body is too large.".into()),
        _ => AppError::BadRequest("The request body could not be read.".into()),
    })?;
    let name = parse_name(&body)?;
    let (token, hash) = new_token();
    let user = state.db.create_user(&name, &hash).await?;
    tracing::info!(user_id = %user.id, "user onboarded");
    Ok((StatusCode::CREATED, Json(Onboarded { user: user.into(), token })))
}

/// The trimmed name from an onboard body, or an error saying what is wrong.
pub fn parse_name(body: &[u8]) -> AppResult<String> {
    super::name_from_body(body, MAX_USER_NAME_CHARS, "Ada")
}

/// `GET /profile/:id` → the user, to its owner only.
async fn profile(
    IdPath(id): IdPath,
    CurrentUser(me): CurrentUser,
    State(state): State<AppState>,
) -> AppResult<Json<User>> {
    owner_only(&state, id, me.id).await?;
    Ok(Json(me.into()))
}

/// 404 for a user that does not exist, 403 for someone else's.
pub async fn owner_only(state: &AppState, id: uuid::Uuid, me: uuid::Uuid) -> AppResult<()> {
    if id == me {
        return Ok(());
    }
    match state.db.user(id).await? {
        None => Err(AppError::NotFound("There is no user with this id.".into())),
        Some(_) => Err(AppError::Forbidden("This token belongs to another user.".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_in_characters() {
        assert_eq!(parse_name(br#"{"name": "  Ada  "}"#).unwrap(), "Ada");
        assert_eq!(parse_name("{\"name\": \"ééééééééééééééééééééé\"}".as_bytes()).unwrap_err().status(), 422);
        assert_eq!(parse_name("{\"name\": \"éééééééééééééééééééé\"}".as_bytes()).unwrap(), "é".repeat(20));
        assert_eq!(parse_name(br#"{"name": 5}"#).unwrap_err().status(), 422);
        assert_eq!(parse_name(br#"{"nom": "x"}"#).unwrap_err().status(), 422);
        assert_eq!(parse_name(br#"{"name": "   "}"#).unwrap_err().status(), 422);
        assert_eq!(parse_name(b"name=x").unwrap_err().status(), 400);
        assert_eq!(parse_name(b"[]").unwrap_err().status(), 400);
    }
}
