//! The router: `/onboard`, `/recorder`, `/records`; `/` goes to the recorder
//! when onboarded, else to onboarding.
//!
//! The recorder and the records pages are lazy routes: their code is split
//! out of `web_bg.wasm` at build time (`cargo xtask build-web` runs
//! wasm-split) and fetched when the route is first opened, so onboarding
//! and each page load only what they draw. The service worker keeps the
//! split modules with the app shell, so both pages still open offline.

use leptos::prelude::*;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::hooks::use_location;
use leptos_router::{Lazy, LazyRoute, lazy_route, path};
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
                <Route path=path!("/recorder") view={Lazy::<RecorderRoute>::new()} />
                <Route path=path!("/records") view={Lazy::<RecordsRoute>::new()} />
            </Routes>
        </Router>
    }
}

/// `/recorder`, loaded on first visit.
struct RecorderRoute;

#[lazy_route]
impl LazyRoute for RecorderRoute {
    fn data() -> Self {
        Self
    }

    fn view(_this: Self) -> AnyView {
        view! { <RecorderPage /> }.into_any()
    }
}

/// `/records`, loaded on first visit.
struct RecordsRoute;

#[lazy_route]
impl LazyRoute for RecordsRoute {
    fn data() -> Self {
        Self
    }

    fn view(_this: Self) -> AnyView {
        view! { <RecordsPage /> }.into_any()
    }
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
/// time: a lazy route draws its page only once its module has arrived,
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
