//! The router: `/onboard`, `/recorder`, `/records`; `/` goes to the recorder
//! when onboarded, else to onboarding.

use leptos::prelude::*;
use leptos_router::components::{Redirect, Route, Router, Routes};
use leptos_router::path;

use crate::pages::NotFound;
use crate::pages::onboard::OnboardPage;
use crate::pages::recorder::RecorderPage;
use crate::pages::records::RecordsPage;
use crate::session::{provide_session, use_session};

#[component]
pub fn App() -> impl IntoView {
    provide_session();
    view! {
        <a class="skip-link" href="#main">"Skip to content"</a>
        <Router>
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
