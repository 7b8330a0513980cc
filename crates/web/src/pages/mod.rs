pub mod onboard;
pub mod recorder;
pub mod records;

use leptos::prelude::*;
use leptos_router::components::A;

/// The top bar shared by the signed-in pages.
#[component]
pub fn Header(children: Children) -> impl IntoView {
    view! {
        <header class="topbar">
            <A href="/" attr:class="brand">
                <span class="brand-mark" aria-hidden="true"></span>
                "AudioBook"
            </A>
            <nav class="topnav" aria-label="Main"><crate::install::InstallButton />{children()}</nav>
        </header>
    }
}

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
        <main id="main" class="page page-narrow">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address."</p>
            <p><A href="/">"Go to AudioBook"</A></p>
        </main>
    }
}
