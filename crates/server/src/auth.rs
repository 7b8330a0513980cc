//! Bearer tokens: 256 random bits from the OS, shown to the user once, stored
//! only as a SHA-256 hash. A presented token is hashed, looked up by its hash
//! and the hashes compared in constant time.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::db::{Db, UserRow};
use crate::error::AppError;

/// A new random token (43 URL-safe characters) and the hash to store.
pub fn new_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The user a token belongs to, if any.
pub async fn user_for_token(db: &Db, token: &str) -> Result<Option<UserRow>, sqlx::Error> {
    if token.is_empty() || token.len() > 256 {
        return Ok(None);
    }
    let hash = hash_token(token);
    Ok(db
        .user_by_token_hash(&hash)
        .await?
        .filter(|(_, stored)| bool::from(stored.as_slice().ct_eq(&hash)))
        .map(|(user, _)| user))
}

/// The user behind the request's `Authorization: Bearer` header; rejects
/// with 401 and a message saying what is wrong.
pub struct CurrentUser(pub UserRow);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
            AppError::Unauthorized("Sign in first: the Authorization: Bearer <token> header is missing.".into())
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| AppError::Unauthorized("The Authorization header must be `Bearer <token>`.".into()))?;
        user_for_token(&state.db, token)
            .await?
            .map(CurrentUser)
            .ok_or_else(|| AppError::Unauthorized("This token is not valid; onboard again to get a new one.".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, hb) = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(ha, hash_token(&a));
        assert_ne!(ha, hb);
        assert_eq!(ha.len(), 32);
    }
}
