pub mod onboard;
pub mod recorder;
pub mod records;

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::ThemeToggle;

/// The top bar of every page, one row on every screen: the brand, the page's
/// actions and the theme button. On phones the actions show only their icons
/// (their names stay for screen readers).
#[component]
pub fn Header(#[prop(optional)] children: Option<Children>) -> impl IntoView {
    view! {
        <header class="topbar">
            <A href="/" attr:class="brand">
                <span class="brand-mark" aria-hidden="true"></span>
                <span class="brand-name">"AudioBook"</span>
            </A>
            <nav class="topnav" aria-label="Main">
                <crate::install::InstallButton />
                {children.map(|c| c())}
                <ThemeToggle />
            </nav>
        </header>
    }
}

/// A small line icon for a header action (`d`: the SVG path, 24×24).
#[component]
pub fn Icon(d: &'static str) -> impl IntoView {
    view! {
        <svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
            <path d=d fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round"></path>
        </svg>
    }
}

/// Icons of the header actions.
pub const ICON_LIST: &str = "M8 6h12M8 12h12M8 18h12M4 6h.01M4 12h.01M4 18h.01";
pub const ICON_LOG_OUT: &str = "M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3M10 16l-4-4 4-4M6 12h10";

/// Sets the document title for a page.
pub fn set_title(title: &str) {
    if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
        doc.set_title(&format!("{title} · AudioBook"));
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    set_title("Not found");
    view! {
        <Header />
        <main id="main" class="page page-narrow">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address."</p>
            <p><A href="/">"Go to AudioBook"</A></p>
        </main>
    }
}
