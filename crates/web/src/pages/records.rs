//! `/records`: the user's recordings, newest first, and one player.

use audiobook_wire::Record;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;

use super::Header;
use crate::api;
use crate::components::{Player, RecordItem, StatusBanner, Tone};
use crate::session::{log_out, use_session};

#[derive(Clone)]
enum Load {
    Loading,
    Loaded(Vec<Record>),
    Failed { message: String, unauthorized: bool },
}

#[component]
pub fn RecordsPage() -> impl IntoView {
    super::set_title("My recordings");
    let session = use_session();
    let navigate = use_navigate();
    let Some(current) = session.get_untracked() else {
        navigate("/onboard", NavigateOptions { replace: true, ..Default::default() });
        return ().into_any();
    };
    let state = RwSignal::new(Load::Loading);
    let selected = RwSignal::new(None::<Record>);
    let load = {
        let current = current.clone();
        move || {
            let current = current.clone();
            state.set(Load::Loading);
            spawn_local(async move {
                state.set(match api::records(&current).await {
                    Ok(list) => Load::Loaded(list),
                    Err(e) => Load::Failed { unauthorized: e.is_unauthorized(), message: e.message },
                });
            });
        }
    };
    load();
    let logout = {
        let navigate = navigate.clone();
        move |_| {
            log_out(session);
            navigate("/onboard", NavigateOptions::default());
        }
    };
    let on_play = Callback::new(move |r: Record| selected.set(Some(r)));

    let list = move || {
        match state.get() {
        Load::Loading => view! {
            <StatusBanner tone=Tone::Info><span class="spinner" aria-hidden="true"></span>"Loading your recordings…"</StatusBanner>
        }.into_any(),
        Load::Failed { message, unauthorized } => {
            let load = load.clone();
            view! {
                <StatusBanner tone=Tone::Error>
                    <p>{message}</p>
                    {if unauthorized {
                        view! { <button type="button" class="button" on:click=move |_| {
                            log_out(session);
                        }>"Sign in again"</button> }.into_any()
                    } else {
                        view! { <button type="button" class="button" on:click=move |_| load()>"Try again"</button> }.into_any()
                    }}
                </StatusBanner>
            }.into_any()
        }
        Load::Loaded(list) if list.is_empty() => view! {
            <div class="empty">
                <p class="empty-title">"No recordings yet"</p>
                <p>"Your recordings will appear here once you have saved one."</p>
                <A href="/recorder" attr:class="button button-record">"Record your first"</A>
            </div>
        }.into_any(),
        Load::Loaded(list) => {
            let count = list.len();
            view! {
                <p class="sr-only" role="status">{format!("{count} recordings")}</p>
                <ul class="records" aria-label="Recordings, newest first">
                    {list.into_iter().map(|r| {
                        let id = r.id;
                        let is_selected = Signal::derive(move || selected.with(|s| s.as_ref().map(|s| s.id) == Some(id)));
                        view! { <RecordItem record=r selected=is_selected on_play=on_play /> }
                    }).collect_view()}
                </ul>
            }.into_any()
        }
    }
    };

    view! {
        <Header>
            <A href="/recorder" attr:class="button button-record button-small">
                <span class="dot" aria-hidden="true"></span>"New recording"
            </A>
            <button type="button" class="button button-small button-quiet" on:click=logout>"Log out"</button>
        </Header>
        <main id="main" class="page records-page">
            <h1 class="greeting">{format!("Hi {}", current.name)}</h1>
            <div class="records-layout">
                <section class="records-list" aria-labelledby="records-title">
                    <h2 id="records-title">"Your recordings"</h2>
                    {list}
                </section>
                <Player record=selected />
            </div>
        </main>
    }
    .into_any()
}
