//! The router: `/onboard`, `/recorder`, `/records`; `/` goes to the recorder
//! when onboarded, else to onboarding.
//!
//! The recorder and the records pages are split pages: their code is split
//! out of `web_bg.wasm` at build time (`cargo xtask build-web` runs
//! wasm-split) and fetched when the route is first opened, so onboarding
//! and each page load only what they draw. The service worker keeps the
//! split modules with the app shell, so both pages still open offline; where
//! a module cannot be fetched (a first visit that lost its network), the
//! page says so and offers to try again.

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use leptos::prelude::*;
use leptos::wasm_split::SplitLoaderError;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::hooks::use_location;
use leptos_router::path;
use wasm_bindgen::JsCast;

use crate::pages::NotFound;
use crate::pages::onboard::OnboardPage;
use crate::pages::recorder::RecorderPage;
use crate::pages::records::RecordsPage;
use crate::session::{provide_session, use_session};
use crate::theme::provide_theme;

#[component]
pub fn App() -> impl IntoView {
    provide_session();
    provide_theme();
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <Router>
            <FocusHeadingOnNavigation />
            <Routes fallback=NotFound>
                <Route path=path!("/") view=Home />
                <Route path=path!("/onboard") view=OnboardPage />
                <Route path=path!("/recorder") view=|| view! { <SplitPage load=|| recorder_page().boxed_local() /> } />
                <Route path=path!("/records") view=|| view! { <SplitPage load=|| records_page().boxed_local() /> } />
            </Routes>
        </Router>
    }
}

/// Fetches a split page's module; the page's view.
type PageLoad = fn() -> LocalBoxFuture<'static, Result<fn() -> AnyView, SplitLoaderError>>;

/// A page in a module of its own, drawn once the module has arrived
/// (index.html's "Loading AudioBook…" shows meanwhile); where it could not
/// be fetched, the reason in words and Try again.
#[component]
fn SplitPage(load: PageLoad) -> impl IntoView {
    // A signal and a task rather than a resource: the resource machinery
    // would weigh about 8 KB gzip in web_bg.wasm.
    let page = RwSignal::new(None::<Result<fn() -> AnyView, String>>);
    let fetch = move || {
        leptos::task::spawn_local(async move {
            let loaded = load().await.map_err(|e| e.to_string());
            let _ = page.try_set(Some(loaded));
        })
    };
    fetch();
    let try_again = move |_| {
        page.set(None);
        fetch();
    };
    move || match page.get() {
        None => ().into_any(),
        Some(Ok(view)) => view(),
        Some(Err(e)) => {
            web_sys::console::warn_1(&format!("AudioBook: a page could not be fetched: {e}").into());
            view! {
                <main id="main" class="page page-unavailable">
                    <h1>"This page could not be loaded"</h1>
                    <p role="alert">
                        "AudioBook could not fetch this page from the server. Check the connection, then try again."
                    </p>
                    <button type="button" class="button button-primary" on:click=try_again>
                        "Try again"
                    </button>
                </main>
            }
            .into_any()
        }
    }
}

/// `/recorder`, in a module of its own.
#[leptos::wasm_split::wasm_split(recorder_page, wasm_split_path = ::leptos::wasm_split, fallible)]
fn recorder_page() -> Result<fn() -> AnyView, SplitLoaderError> {
    Ok(|| view! { <RecorderPage /> }.into_any())
}

/// `/records`, in a module of its own.
#[leptos::wasm_split::wasm_split(records_page, wasm_split_path = ::leptos::wasm_split, fallible)]
fn records_page() -> Result<fn() -> AnyView, SplitLoaderError> {
    Ok(|| view! { <RecordsPage /> }.into_any())
}

#[component]
fn Home() -> impl IntoView {
    let target = if use_session().get_untracked().is_some() { "/recorder" } else { "/onboard" };
    view! { <Redirect path=target /> }
}

/// After each navigation focus goes to the new page's heading, so a screen
/// reader starts reading there and Tab starts from the top of the page. Not
/// on the first page (it may focus a field itself), nor after `/`, which
/// only redirects.
#[component]
fn FocusHeadingOnNavigation() -> impl IntoView {
    let location = use_location();
    Effect::new(move |before: Option<String>| {
        let path = location.pathname.get();
        if before.is_some_and(|b| b != path && b != "/") {
            focus_new_heading(page_heading(), 0);
        }
        path
    });
}

/// The most frames `focus_new_heading` waits for the new page (about 5 s).
const HEADING_WAIT_FRAMES: u32 = 300;

/// Focuses the first page heading that is not `old`, waiting a frame at a
/// time: a split page is drawn only once its module has arrived,
/// after the address changed.
fn focus_new_heading(old: Option<web_sys::HtmlElement>, frames: u32) {
    request_animation_frame(move || match page_heading() {
        Some(h) if old.as_ref() != Some(&h) => {
            if !h.has_attribute("tabindex") {
                let _ = h.set_attribute("tabindex", "-1");
            }
            let _ = h.focus();
        }
        _ if frames < HEADING_WAIT_FRAMES => focus_new_heading(old, frames + 1),
        _ => {}
    });
}

fn page_heading() -> Option<web_sys::HtmlElement> {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector("main h1").ok().flatten())
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
}
