//! The signed-in user, kept in `localStorage` so a reload stays signed in.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

const KEY: &str = "audiobook.session";
/// The recorder's quality setting, remembered per browser.
const QUALITY_KEY: &str = "audiobook.quality";

/// Who is using the app, and the bearer token for the API and the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: Uuid,
    pub name: String,
    pub token: String,
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The saved session, if any (a malformed entry counts as none).
pub fn load() -> Option<Session> {
    let text = local_storage()?.get_item(KEY).ok().flatten()?;
    serde_json::from_str(&text).ok()
}

pub fn save(session: &Session) -> Result<(), String> {
    let storage = local_storage().ok_or("This browser does not allow saving data for this site (localStorage).")?;
    let text = serde_json::to_string(session).map_err(|e| e.to_string())?;
    storage
        .set_item(KEY, &text)
        .map_err(|_| "This browser refused to save your session (storage full or blocked).".to_string())
}

pub fn clear() {
    if let Some(storage) = local_storage() {
        let _ = storage.remove_item(KEY);
    }
}

/// How the recorder records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quality {
    /// Compressed by the browser's MediaRecorder (Opus or AAC).
    #[default]
    Standard,
    /// Uncompressed 16-bit PCM, sent as WAV.
    Lossless,
}

impl Quality {
    fn as_str(self) -> &'static str {
        match self {
            Quality::Standard => "standard",
            Quality::Lossless => "lossless",
        }
    }
}

/// The quality picked in this browser (Standard if none, or unreadable).
pub fn quality() -> Quality {
    match local_storage().and_then(|s| s.get_item(QUALITY_KEY).ok().flatten()).as_deref() {
        Some("lossless") => Quality::Lossless,
        _ => Quality::Standard,
    }
}

/// Remembers the quality; a browser that keeps nothing just forgets it.
pub fn set_quality(quality: Quality) {
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(QUALITY_KEY, quality.as_str());
    }
}

const THEME_KEY: &str = "audiobook.theme";

/// The colour theme chosen on this browser ("light" or "dark"), if any.
pub fn load_theme() -> Option<String> {
    local_storage()?.get_item(THEME_KEY).ok().flatten()
}

/// Remembers the theme on this browser; `None` follows the system again.
/// A browser that refuses storage keeps the choice for this visit only.
pub fn save_theme(theme: Option<&str>) {
    if let Some(storage) = local_storage() {
        let _ = match theme {
            Some(t) => storage.set_item(THEME_KEY, t),
            None => storage.remove_item(THEME_KEY),
        };
    }
}
