//! The page's life as the recorder needs it: event listeners that go away
//! when dropped (`pagehide`, `visibilitychange`, `online`), whether the page
//! is hidden, and the wall clock.

use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{Event, EventTarget};

/// A listener on a window or document event, removed when dropped.
pub struct Listener {
    target: EventTarget,
    event: &'static str,
    closure: Closure<dyn FnMut(Event)>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback(self.event, self.closure.as_ref().unchecked_ref());
    }
}

fn listen(target: EventTarget, event: &'static str, mut f: impl FnMut() + 'static) -> Option<Listener> {
    let closure = Closure::<dyn FnMut(Event)>::new(move |_| f());
    target.add_event_listener_with_callback(event, closure.as_ref().unchecked_ref()).ok()?;
    Some(Listener { target, event, closure })
}

/// Calls `f` on the window's `event` (`online`, `pagehide`, ...).
pub fn on_window(event: &'static str, f: impl FnMut() + 'static) -> Option<Listener> {
    listen(web_sys::window()?.into(), event, f)
}

/// Calls `f` on the document's `event` (`visibilitychange`).
pub fn on_document(event: &'static str, f: impl FnMut() + 'static) -> Option<Listener> {
    listen(web_sys::window()?.document()?.into(), event, f)
}

/// The page is in the background (another tab, a locked phone).
pub fn page_hidden() -> bool {
    web_sys::window().and_then(|w| w.document()).is_some_and(|d| d.hidden())
}

/// Milliseconds since the Unix epoch (`Date.now()`).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}
