//! Small typed wrappers over browser APIs the pages use: page keyboard
//! shortcuts and their targets, the clipboard, and the screen wake lock (the last two are read
//! through `Reflect`, so browsers without them are simply skipped).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::KeyboardEvent;

fn get(target: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(target, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn call0(target: &JsValue, method: &str) -> Option<JsValue> {
    get(target, method)?.dyn_into::<Function>().ok()?.call0(target).ok()
}

fn call1(target: &JsValue, method: &str, arg: &JsValue) -> Option<JsValue> {
    get(target, method)?.dyn_into::<Function>().ok()?.call1(target, arg).ok()
}

/// Whether a key press belongs to the focused control rather than to a page
/// shortcut: typing in a field, a modifier held, or Space/Enter on a button
/// or link (which press it).
pub fn key_is_for_control(ev: &KeyboardEvent) -> bool {
    if ev.ctrl_key() || ev.meta_key() || ev.alt_key() || ev.default_prevented() {
        return true;
    }
    let Some(el) = ev.target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return false };
    let tag = el.tag_name().to_ascii_uppercase();
    if matches!(tag.as_str(), "INPUT" | "TEXTAREA" | "SELECT")
        || get(&el, "isContentEditable").and_then(|v| v.as_bool()) == Some(true)
    {
        return true;
    }
    let pressing = matches!(ev.key().as_str(), " " | "Enter");
    pressing
        && (matches!(tag.as_str(), "BUTTON" | "A" | "SUMMARY" | "AUDIO")
            || el.closest("dialog").ok().flatten().is_some())
}

/// A page's keyboard shortcuts: `on_key` gets the keys pressed while `page`
/// (the page's `<main>`) is in the document, other than those meant for the
/// focused control. The connection check matters: Leptos' router can leave a
/// page it navigated away from alive, listener and all (the recorder's still
/// took `?` on the records page after the first navigation), and it runs
/// the old page's cleanups only after the new page is shown.
pub fn page_shortcuts(page: leptos::prelude::NodeRef<leptos::html::Main>, on_key: impl Fn(KeyboardEvent) + 'static) {
    use leptos::prelude::{GetUntracked, on_cleanup, window_event_listener};
    let keys = window_event_listener(leptos::ev::keydown, move |ev| {
        let shown = page.try_get_untracked().flatten().is_some_and(|main| main.is_connected());
        if shown && !key_is_for_control(&ev) {
            on_key(ev);
        }
    });
    on_cleanup(move || keys.remove());
}

/// Copies `text` to the clipboard; false where the browser refuses.
pub async fn copy_text(text: &str) -> bool {
    let Some(clipboard) = web_sys::window().and_then(|w| get(&w.navigator(), "clipboard")) else { return false };
    let Some(promise) = call1(&clipboard, "writeText", &JsValue::from_str(text)) else { return false };
    match promise.dyn_into::<Promise>() {
        Ok(p) => JsFuture::from(p).await.is_ok(),
        Err(_) => false,
    }
}

/// Keeps the screen on while held (`navigator.wakeLock`), where supported.
/// The browser drops the lock when the page is hidden; it is asked again
/// when the page is visible again. Silent where unsupported or refused.
#[derive(Clone)]
pub struct WakeLock {
    state: Rc<WakeState>,
}

#[derive(Default)]
struct WakeState {
    wanted: Cell<bool>,
    requesting: Cell<bool>,
    sentinel: RefCell<Option<JsValue>>,
    on_visibility: RefCell<Option<Closure<dyn FnMut()>>>,
}

impl WakeLock {
    pub fn new() -> WakeLock {
        let state = Rc::new(WakeState::default());
        let weak = Rc::downgrade(&state);
        let closure = Closure::<dyn FnMut()>::new(move || {
            if let Some(state) = weak.upgrade() {
                WakeLock { state }.acquire();
            }
        });
        if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
            let _ = doc.add_event_listener_with_callback("visibilitychange", closure.as_ref().unchecked_ref());
        }
        *state.on_visibility.borrow_mut() = Some(closure);
        WakeLock { state }
    }

    /// Asks for the lock (and again after the page was hidden).
    pub fn hold(&self) {
        self.state.wanted.set(true);
        self.acquire();
    }

    /// Lets the screen sleep again.
    pub fn release(&self) {
        self.state.wanted.set(false);
        if let Some(sentinel) = self.state.sentinel.borrow_mut().take() {
            let _ = call0(&sentinel, "release");
        }
    }

    /// Releases the lock and stops listening (the page is left).
    pub fn close(&self) {
        self.release();
        if let Some(closure) = self.state.on_visibility.borrow_mut().take()
            && let Some(doc) = web_sys::window().and_then(|w| w.document())
        {
            let _ = doc.remove_event_listener_with_callback("visibilitychange", closure.as_ref().unchecked_ref());
        }
    }

    fn held(&self) -> bool {
        self.state
            .sentinel
            .borrow()
            .as_ref()
            .is_some_and(|s| get(s, "released").and_then(|r| r.as_bool()) == Some(false))
    }

    fn acquire(&self) {
        let state = &self.state;
        if !state.wanted.get() || state.requesting.get() || self.held() {
            return;
        }
        let Some(window) = web_sys::window() else { return };
        if window.document().is_some_and(|d| d.hidden()) {
            return;
        }
        let Some(wake_lock) = get(&window.navigator(), "wakeLock") else { return };
        let Some(promise) =
            call1(&wake_lock, "request", &JsValue::from_str("screen")).and_then(|p| p.dyn_into::<Promise>().ok())
        else {
            return;
        };
        state.requesting.set(true);
        let this = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let result = JsFuture::from(promise).await;
            this.state.requesting.set(false);
            if let Ok(sentinel) = result {
                if this.state.wanted.get() {
                    *this.state.sentinel.borrow_mut() = Some(sentinel);
                } else {
                    let _ = call0(&sentinel, "release");
                }
            }
        });
    }
}

/// Resolves after `ms` milliseconds (a `setTimeout` as a future).
pub async fn sleep_ms(ms: u64) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms.min(i32::MAX as u64) as i32);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Runs the classic script at `src` (once its global is needed): resolves
/// when it has run, fails in words when it cannot be fetched.
pub async fn load_script(src: &str) -> Result<(), String> {
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let script = document.create_element("script").map_err(|_| "cannot make a script element")?;
    script.set_attribute("src", src).map_err(|_| "cannot set a script's src")?;
    let loaded = Promise::new(&mut |resolve, reject| {
        let _ = script.add_event_listener_with_callback("load", &resolve);
        let _ = script.add_event_listener_with_callback("error", &reject);
    });
    let parent = document.head().map(web_sys::Element::from).or_else(|| document.document_element());
    parent.ok_or("no document element")?.append_child(&script).map_err(|_| "cannot add a script")?;
    let result = JsFuture::from(loaded).await;
    if result.is_err() {
        // A failed element is not tried again: the next attempt adds its own.
        script.remove();
    }
    result.map(|_| ()).map_err(|_| format!("{src} could not be loaded"))
}

/// Adds the stylesheet at `href` to the document, once (a view fetched
/// after the first draw brings its own styles).
pub fn add_stylesheet(href: &str) {
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
    let selector = format!("link[rel=stylesheet][href=\"{href}\"]");
    if document.query_selector(&selector).ok().flatten().is_some() {
        return;
    }
    let Ok(link) = document.create_element("link") else { return };
    let _ = link.set_attribute("rel", "stylesheet");
    let _ = link.set_attribute("href", href);
    if let Some(head) = document.head() {
        let _ = head.append_child(&link);
    }
}
