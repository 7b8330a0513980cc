use leptos::prelude::*;

/// How a status message should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Info,
    Success,
    Error,
}

/// A status line announced to screen readers when it changes (errors
/// assertively).
#[component]
pub fn StatusBanner(#[prop(into)] tone: Signal<Tone>, children: Children) -> impl IntoView {
    view! {
        <div
            class="status"
            class:status-success=move || tone.get() == Tone::Success
            class:status-error=move || tone.get() == Tone::Error
            role=move || if tone.get() == Tone::Error { "alert" } else { "status" }
            aria-live=move || if tone.get() == Tone::Error { "assertive" } else { "polite" }
        >
            {children()}
        </div>
    }
}
