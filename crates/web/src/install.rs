//! Installing the app to the home screen or desktop: Chromium's
//! `beforeinstallprompt` offer, kept until the user asks, and the header's
//! "Install app" button that shows the browser's own install dialog.
//!
//! Other browsers (Firefox, Safari) never make the offer: there the button
//! stays hidden and their own menus install the app. It is hidden as well
//! once the app runs installed (`display-mode: standalone`) or was just
//! installed (`appinstalled`).
//!
//! The offer can come before the wasm has started, so `index.html` keeps an
//! early one in `window.__audiobookInstallOffer`; `listen` picks it up.

use std::cell::{Cell, RefCell};

use js_sys::{Promise, Reflect};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// Chromium's install offer (not in web-sys: the API is not standard).
    #[wasm_bindgen(extends = web_sys::Event)]
    type BeforeInstallPromptEvent;

    /// Shows the install dialog; may be called once per offer.
    #[wasm_bindgen(method, catch)]
    fn prompt(this: &BeforeInstallPromptEvent) -> Result<Promise, JsValue>;

    /// Resolves to `{ outcome: "accepted" | "dismissed" }`.
    #[wasm_bindgen(method, getter, js_name = userChoice)]
    fn user_choice(this: &BeforeInstallPromptEvent) -> Promise;
}

/// Where `index.html` keeps an offer made before the wasm started.
const EARLY_OFFER: &str = "__audiobookInstallOffer";

thread_local! {
    static OFFER: RefCell<Option<BeforeInstallPromptEvent>> = const { RefCell::new(None) };
    static OFFERED: ArcRwSignal<bool> = ArcRwSignal::new(false);
    static LISTENING: Cell<bool> = const { Cell::new(false) };
}

fn set_offer(offer: Option<BeforeInstallPromptEvent>) {
    let offered = offer.is_some() && !runs_installed();
    OFFER.with(|o| *o.borrow_mut() = offer);
    OFFERED.with(|s| s.set(offered));
}

/// Whether the app already runs as an installed app.
fn runs_installed() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(display-mode: standalone)").ok().flatten())
        .is_some_and(|m| m.matches())
}

/// Starts following the browser's offer (once per page; later calls do nothing).
pub fn listen() {
    if LISTENING.with(|l| l.replace(true)) {
        return;
    }
    let Some(window) = web_sys::window() else { return };
    let early = Reflect::get(&window, &JsValue::from_str(EARLY_OFFER)).ok().filter(|v| v.is_object());
    if let Some(event) = early {
        set_offer(Some(event.unchecked_into()));
    }
    let on_offer = Closure::<dyn Fn(web_sys::Event)>::new(|event: web_sys::Event| {
        // Keeps Chromium from showing its own mini bar: the header offers it.
        event.prevent_default();
        set_offer(Some(event.unchecked_into()));
    });
    let on_installed = Closure::<dyn Fn(web_sys::Event)>::new(|_: web_sys::Event| set_offer(None));
    let _ = window.add_event_listener_with_callback("beforeinstallprompt", on_offer.as_ref().unchecked_ref());
    let _ = window.add_event_listener_with_callback("appinstalled", on_installed.as_ref().unchecked_ref());
    // Listened to for the page's whole life.
    on_offer.forget();
    on_installed.forget();
}

/// Shows the browser's install dialog for the pending offer. The offer is
/// used up either way; Chromium makes a new one if the user declined.
async fn install() {
    let Some(offer) = OFFER.with(|o| o.borrow_mut().take()) else { return };
    OFFERED.with(|s| s.set(false));
    let Ok(shown) = offer.prompt() else { return };
    if JsFuture::from(shown).await.is_ok() {
        let _ = JsFuture::from(offer.user_choice()).await;
    }
}

/// The header's "Install app" button, shown only while the browser offers
/// installing.
#[component]
pub fn InstallButton() -> impl IntoView {
    listen();
    let offered = OFFERED.with(|s| s.clone());
    view! {
        <Show when=move || offered.get()>
            <button
                type="button"
                class="button install-button"
                title="Add AudioBook to your home screen or desktop"
                on:click=|_| wasm_bindgen_futures::spawn_local(install())
            >
                "Install app"
            </button>
        </Show>
    }
}
