//! The router: `/onboard`, `/recorder`, `/records`; `/` goes to the recorder
//! when onboarded, else to onboarding.

use leptos::prelude::*;
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
                <Route path=path!("/recorder") view=RecorderPage />
                <Route path=path!("/records") view=RecordsPage />
            </Routes>
        </Router>
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
            request_animation_frame(focus_heading);
        }
        path
    });
}

fn focus_heading() {
    let heading = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector("main h1").ok().flatten())
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
    if let Some(h) = heading {
        if !h.has_attribute("tabindex") {
            let _ = h.set_attribute("tabindex", "-1");
        }
        let _ = h.focus();
    }
}
