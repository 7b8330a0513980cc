//! Runtime configuration from `/config.js` (`window.AUDIOBOOK_CONFIG`), which
//! a static deployment rewrites at start-up: the server URL changes without a
//! rebuild.

use js_sys::Reflect;
use wasm_bindgen::JsValue;

/// The server's base URL without a trailing slash; empty means the page's own
/// origin.
pub fn server_url() -> String {
    let read = || -> Option<String> {
        let config = Reflect::get(&js_sys::global(), &JsValue::from_str("AUDIOBOOK_CONFIG")).ok()?;
        Reflect::get(&config, &JsValue::from_str("serverUrl")).ok()?.as_string()
    };
    read().unwrap_or_default().trim().trim_end_matches('/').to_string()
}

/// An absolute or same-origin URL for an API path such as `/onboard`.
pub fn api_url(path: &str) -> String {
    format!("{}{path}", server_url())
}
