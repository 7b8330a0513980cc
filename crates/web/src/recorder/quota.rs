//! This site's storage on the device (`navigator.storage`): ask the browser
//! not to evict it, and how much room is left.

use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{StorageEstimate, StorageManager};

fn manager() -> Option<StorageManager> {
    let navigator = web_sys::window()?.navigator();
    // Missing outside secure pages and in old browsers.
    let storage = js_sys::Reflect::get(&navigator, &"storage".into()).ok()?;
    storage.dyn_into::<StorageManager>().ok()
}

/// Asks the browser to keep this site's data under storage pressure
/// (`persist()`). Chromium decides by itself; Firefox may ask the person,
/// so nothing waits for the answer.
pub fn ask_to_persist() {
    let Some(promise) = manager().and_then(|m| m.persist().ok()) else { return };
    wasm_bindgen_futures::spawn_local(async move {
        let granted = JsFuture::from(promise).await.ok().and_then(|v| v.as_bool()).unwrap_or(false);
        web_sys::console::info_1(&format!("AudioBook: persistent storage granted: {granted}").into());
    });
}

/// Bytes used and bytes allowed for this site, where the browser says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Room {
    pub usage: f64,
    pub quota: f64,
}

impl Room {
    pub fn free(&self) -> f64 {
        (self.quota - self.usage).max(0.0)
    }
}

pub async fn estimate() -> Option<Room> {
    let promise = manager()?.estimate().ok()?;
    let estimate: StorageEstimate = JsFuture::from(promise).await.ok()?.unchecked_into();
    Some(Room { usage: estimate.get_usage()?, quota: estimate.get_quota()? })
}
