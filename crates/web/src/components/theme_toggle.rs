use leptos::prelude::*;

use crate::theme::{Theme, use_theme};

/// The header's theme button: system → light → dark → system. Its name says
/// the theme in use; its icon shows it too, and its label is hidden on phones.
#[component]
pub fn ThemeToggle() -> impl IntoView {
    let theme = use_theme();
    let icon = move || match theme.get() {
        // Half a disc: whatever the system says.
        Theme::System => view! {
            <path d="M12 3a9 9 0 1 0 0 18z" fill="currentColor"></path>
            <circle cx="12" cy="12" r="8.2" fill="none" stroke="currentColor" stroke-width="1.8"></circle>
        }
        .into_any(),
        Theme::Light => view! {
            <circle cx="12" cy="12" r="4.2" fill="currentColor"></circle>
            <path d="M12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9l2.1 2.1M17 17l2.1 2.1M4.9 19.1l2.1-2.1M17 7l2.1-2.1"
                  stroke="currentColor" stroke-width="1.8" stroke-linecap="round"></path>
        }
        .into_any(),
        Theme::Dark => view! {
            <path d="M20 14.5A8.5 8.5 0 0 1 9.5 4a8.5 8.5 0 1 0 10.5 10.5z" fill="currentColor"></path>
        }
        .into_any(),
    };
    view! {
        <button type="button" class="button button-small button-quiet icon-button theme-toggle"
                title="Change the colour theme (system, light, dark)"
                data-theme-choice=move || theme.get().as_attr().unwrap_or("system")
                on:click=move |_| theme.update(|t| *t = t.next())>
            <svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">{icon}</svg>
            <span class="label">{move || theme.get().label()}</span>
        </button>
    }
}
