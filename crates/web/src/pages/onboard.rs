//! `/onboard`: a name, then the session is kept and the recorder opens.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::hooks::use_navigate;

use crate::session::use_session;
use crate::storage::{self, Session};
use crate::{api, format};

#[component]
pub fn OnboardPage() -> impl IntoView {
    super::set_title("Welcome");
    let session = use_session();
    let navigate = use_navigate();
    // Already onboarded: straight on.
    if session.get_untracked().is_some() {
        navigate("/recorder", NavigateOptions { replace: true, ..Default::default() });
    }
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let input = NodeRef::<leptos::html::Input>::new();

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let checked = match format::check_user_name(&name.get_untracked()) {
            Ok(n) => n,
            Err(e) => {
                error.set(Some(e));
                if let Some(el) = input.get_untracked() {
                    let _ = el.focus();
                }
                return;
            }
        };
        error.set(None);
        busy.set(true);
        let navigate = navigate.clone();
        spawn_local(async move {
            match api::onboard(&checked).await {
                Ok(onboarded) => {
                    let s = Session { user_id: onboarded.user.id, name: onboarded.user.name, token: onboarded.token };
                    match storage::save(&s) {
                        Ok(()) => {
                            session.set(Some(s));
                            navigate("/recorder", NavigateOptions::default());
                        }
                        Err(e) => error.set(Some(e)),
                    }
                }
                // Offline: everything but this first step works without the server.
                Err(e) if e.status.is_none() => error.set(Some(
                    "Signing in needs a connection to the AudioBook server the first time; after that, \
                     AudioBook records without one. Check your connection and try again."
                        .into(),
                )),
                Err(e) => error.set(Some(e.message)),
            }
            busy.set(false);
        });
    };

    let count = move || audiobook_wire::char_len(name.get().trim());
    view! {
        <super::Header />
        <main id="main" class="page page-narrow onboard">
            <div class="hero">
                <span class="hero-mark" aria-hidden="true"></span>
                <h1>"Welcome to AudioBook"</h1>
                <p class="lead">"Record your voice in the browser and play it back anywhere. What should we call you?"</p>
            </div>
            <form class="card form" on:submit=submit novalidate>
                <label for="name">"Your name"</label>
                <input
                    id="name"
                    name="name"
                    type="text"
                    autocomplete="nickname"
                    autofocus
                    required
                    node_ref=input
                    aria-describedby="name-hint name-error"
                    aria-invalid=move || error.get().is_some().to_string()
                    prop:value=move || name.get()
                    on:input=move |ev| {
                        name.set(event_target_value(&ev));
                        if error.get_untracked().is_some() { error.set(None); }
                    }
                />
                <p id="name-hint" class="hint"
                   class:hint-over=move || { count() > audiobook_wire::MAX_USER_NAME_CHARS }>
                    {move || format!("{} of {} characters", count(), audiobook_wire::MAX_USER_NAME_CHARS)}
                </p>
                <p id="name-error" class="field-error" role="alert">{move || error.get()}</p>
                <button type="submit" class="button button-primary" disabled=move || busy.get()>
                    {move || if busy.get() { "Getting ready…" } else { "Continue" }}
                </button>
            </form>
        </main>
    }
}
