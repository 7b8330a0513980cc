//! `/records`: the user's recordings, newest first, in pages of 20 with a
//! search by name, and one player. Delete hides the item at once and calls
//! the server only when the undo window has passed.

use std::time::Duration;

use audiobook_wire::{Record, RecordStatus};
use leptos::html::Audio;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::components::A;
use leptos_router::hooks::use_navigate;
use uuid::Uuid;

use super::{Header, ICON_LOG_OUT, Icon};
use crate::components::{
    Player, RecordItem, ShortcutButton, ShortcutHelp, Shortcuts, StatusBanner, Toast, ToastRegion, Tone, play_from,
    seek_by, toggle_play,
};
use crate::session::{log_out, use_session};
use crate::{api, browser};

/// How long a deleted recording can be restored.
const UNDO_WINDOW: Duration = Duration::from_secs(5);
/// How long an information toast stays.
const TOAST_TIME: Duration = Duration::from_secs(4);
/// Typing pause before a search is sent.
const SEARCH_DEBOUNCE: Duration = Duration::from_millis(250);
/// How often takes still being recorded are looked at again.
const IN_PROGRESS_REFRESH: Duration = Duration::from_secs(3);

const SHORTCUTS: Shortcuts = &[
    (&["Space", "K"], "Play or pause"),
    (&["←", "→"], "Back or forward 5 seconds"),
    (&["J", "L"], "Back or forward 10 seconds"),
    (&["/"], "Search recordings"),
    (&["?"], "Show this help"),
];

/// One recording in the list; its record is a signal so a rename shows at once.
#[derive(Clone, Copy)]
struct Item {
    id: Uuid,
    record: RwSignal<Record>,
}

#[derive(Clone, PartialEq)]
enum Load {
    Loading,
    Loaded,
    Failed { message: String, unauthorized: bool },
}

/// A deletion waiting for its undo window to pass.
#[derive(Clone, Copy)]
struct PendingDelete {
    item: Item,
    timer: TimeoutHandle,
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
    let owner = Owner::current().expect("a component has an owner");
    let items = RwSignal::new(Vec::<Item>::new());
    let state = RwSignal::new(Load::Loading);
    let next = RwSignal::new(None::<String>);
    let loading_more = RwSignal::new(false);
    let query = RwSignal::new(String::new());
    // The query the list shows (the input runs ahead while typing).
    let shown_query = RwSignal::new(String::new());
    let generation = StoredValue::new(0_u64);
    let selected = RwSignal::new(None::<Item>);
    let pending = StoredValue::new(None::<PendingDelete>);
    let hidden = RwSignal::new(None::<Uuid>);
    let toast = RwSignal::new(None::<Toast>);
    let toast_timer = StoredValue::new(None::<TimeoutHandle>);
    let help_open = RwSignal::new(false);
    let audio = NodeRef::<Audio>::new();
    let search_input = NodeRef::<leptos::html::Input>::new();
    let search_timer = StoredValue::new(None::<TimeoutHandle>);

    // Item signals belong to the page (they are made in async tasks).
    let to_items = {
        let owner = owner.clone();
        move |records: Vec<Record>| -> Vec<Item> {
            owner.with(|| records.into_iter().map(|r| Item { id: r.id, record: RwSignal::new(r) }).collect())
        }
    };

    // Loads the first page for `q` (a newer call makes older answers stale).
    let load = {
        let current = current.clone();
        let to_items = to_items.clone();
        move |q: String| {
            let current = current.clone();
            let to_items = to_items.clone();
            let generation_now = generation.get_value() + 1;
            generation.set_value(generation_now);
            state.set(Load::Loading);
            spawn_local(async move {
                let answer = api::records_page(&current, &q, None).await;
                if generation.try_get_value() != Some(generation_now) {
                    return;
                }
                match answer {
                    Ok(page) => {
                        items.set(to_items(page.records));
                        next.set(page.next);
                        shown_query.set(q);
                        state.set(Load::Loaded);
                    }
                    Err(e) => state.set(Load::Failed { unauthorized: e.is_unauthorized(), message: e.message }),
                }
            });
        }
    };
    load(String::new());

    // Takes still open show how far they got and turn into saved ones
    // without a reload; this device's own takes go on uploading meanwhile,
    // through the outbox, fetched once the list has been asked for (with
    // the code of the items' rename, share and delete panels).
    let saved_here = RwSignal::new(None::<ArcRwSignal<u64>>);
    Effect::new({
        let current = current.clone();
        move |opened: Option<bool>| {
            if opened == Some(true) || state.get() == Load::Loading {
                return opened.unwrap_or(false);
            }
            let current = current.clone();
            spawn_local(crate::components::preload_record_panels());
            spawn_local(async move {
                match crate::recorder::outbox::open_later(current).await {
                    Ok(saved) => drop(saved_here.try_set(Some(saved))),
                    Err(e) => web_sys::console::warn_1(&format!("AudioBook: no uploads from this page: {e}").into()),
                }
            });
            true
        }
    });
    let refresh = {
        let current = current.clone();
        let to_items = to_items.clone();
        move || {
            if state.get_untracked() != Load::Loaded {
                return;
            }
            let (current, to_items) = (current.clone(), to_items.clone());
            let (q, generation_now) = (shown_query.get_untracked(), generation.get_value());
            spawn_local(async move {
                let Ok(page) = api::records_page(&current, &q, None).await else { return };
                if generation.try_get_value() == Some(generation_now) {
                    items.update(|list| merge_fresh(list, page.records, &to_items));
                }
            });
        }
    };
    let open_takes = move || items.with_untracked(|l| l.iter().any(|i| i.record.with_untracked(is_open)));
    let poll = {
        let refresh = refresh.clone();
        set_interval_with_handle(
            move || {
                if open_takes() {
                    refresh()
                }
            },
            IN_PROGRESS_REFRESH,
        )
        .ok()
    };
    on_cleanup(move || poll.into_iter().for_each(|h| h.clear()));
    Effect::new(move |before: Option<Option<u64>>| {
        let now = saved_here.with(|s| s.as_ref().map(|s| s.get()));
        if let (Some(Some(before)), Some(now)) = (before, now)
            && before != now
        {
            refresh();
        }
        now
    });

    let load_more = {
        let current = current.clone();
        move |_| {
            let Some(cursor) = next.get_untracked() else { return };
            if loading_more.get_untracked() {
                return;
            }
            let current = current.clone();
            let to_items = to_items.clone();
            let generation_now = generation.get_value();
            let q = shown_query.get_untracked();
            loading_more.set(true);
            spawn_local(async move {
                let answer = api::records_page(&current, &q, Some(&cursor)).await;
                if generation.try_get_value() != Some(generation_now) {
                    return;
                }
                match answer {
                    Ok(page) => {
                        let more = to_items(page.records);
                        items.update(|list| list.extend(more));
                        next.set(page.next);
                    }
                    Err(e) => toast.set(Some(Toast::error(format!("Could not load more recordings: {}", e.message)))),
                }
                loading_more.set(false);
            });
        }
    };

    let on_search = {
        let load = load.clone();
        move |ev: leptos::ev::Event| {
            query.set(event_target_value(&ev));
            if let Some(t) = search_timer.get_value() {
                t.clear();
            }
            let load = load.clone();
            let handle = set_timeout_with_handle(
                move || {
                    let q = query.get_untracked();
                    if q.trim() != shown_query.get_untracked().trim() || state.get_untracked() != Load::Loaded {
                        load(q.trim().to_string());
                    }
                },
                SEARCH_DEBOUNCE,
            );
            search_timer.set_value(handle.ok());
        }
    };

    let notify = Callback::new(move |t: Toast| {
        if let Some(timer) = toast_timer.get_value() {
            timer.clear();
        }
        let stays = t.undo.is_some();
        toast.set(Some(t));
        toast_timer.set_value(if stays {
            None
        } else {
            set_timeout_with_handle(move || toast.try_set(None).map_or((), |_| ()), TOAST_TIME).ok()
        });
    });

    // The server call of a deletion whose window has passed.
    let commit_delete = {
        let current = current.clone();
        move || {
            let Some(p) = pending.get_value() else { return };
            pending.set_value(None);
            p.timer.clear();
            let current = current.clone();
            spawn_local(async move {
                match api::delete(&current, p.item.id).await {
                    Ok(()) => {
                        let _ = items.try_update(|list| list.retain(|i| i.id != p.item.id));
                        if toast.try_with_untracked(|t| t.as_ref().is_some_and(|t| t.undo.is_some())) == Some(true) {
                            toast.set(None);
                        }
                    }
                    Err(e) => {
                        let name = p.item.record.try_with_untracked(|r| r.name.clone()).unwrap_or_default();
                        let _ = toast.try_set(Some(Toast::error(format!("“{name}” was not deleted: {}", e.message))));
                    }
                }
                if hidden.try_get_untracked().flatten() == Some(p.item.id) {
                    hidden.set(None);
                }
            });
        }
    };
    let undo = Callback::new(move |()| {
        let Some(p) = pending.get_value() else { return };
        pending.set_value(None);
        p.timer.clear();
        hidden.set(None);
        let name = p.item.record.with_untracked(|r| r.name.clone());
        notify.run(Toast::info(format!("“{name}” restored.")));
    });
    let delete = {
        let commit_delete = commit_delete.clone();
        move |item: Item| {
            // One undo at a time: an earlier deletion goes through now.
            commit_delete();
            if selected.get_untracked().map(|s| s.id) == Some(item.id) {
                selected.set(None);
            }
            let commit = commit_delete.clone();
            let Ok(timer) = set_timeout_with_handle(commit, UNDO_WINDOW) else { return };
            pending.set_value(Some(PendingDelete { item, timer }));
            hidden.set(Some(item.id));
            let name = item.record.with_untracked(|r| r.name.clone());
            notify.run(Toast { message: format!("Deleted “{name}”."), undo: Some(undo), error: false });
            focus_selector(".toast-undo");
        }
    };
    // Leaving for another page of the app: the deletion goes through; closing
    // the tab or reloading within the window keeps the recording.
    on_cleanup({
        let commit_delete = commit_delete.clone();
        move || commit_delete()
    });

    // Page shortcuts.
    let page = NodeRef::<leptos::html::Main>::new();
    browser::page_shortcuts(page, move |ev| {
        if help_open.get_untracked() {
            return;
        }
        let key = ev.key();
        if key == "?" {
            ev.prevent_default();
            return help_open.set(true);
        }
        if key == "/" {
            ev.prevent_default();
            if let Some(el) = search_input.get_untracked() {
                let _ = el.focus();
            }
            return;
        }
        let Some(el) = audio.get_untracked() else { return };
        let Some(server_ms) =
            selected.get_untracked().and_then(|i| i.record.try_get_untracked()).map(|r| r.duration_ms)
        else {
            return;
        };
        match key.as_str() {
            " " | "k" | "K" => toggle_play(&el),
            "ArrowLeft" => seek_by(&el, -5.0, server_ms),
            "ArrowRight" => seek_by(&el, 5.0, server_ms),
            "j" | "J" => seek_by(&el, -10.0, server_ms),
            "l" | "L" => seek_by(&el, 10.0, server_ms),
            _ => return,
        }
        ev.prevent_default();
    });

    let logout = {
        let navigate = navigate.clone();
        move |_| {
            log_out(session);
            navigate("/onboard", NavigateOptions::default());
        }
    };
    let visible = move || {
        let hidden = hidden.get();
        items.get().into_iter().filter(|i| Some(i.id) != hidden).collect::<Vec<_>>()
    };
    let delete_item = StoredValue::new_local(delete);
    let load_more = StoredValue::new_local(load_more);

    let list = move || {
        match state.get() {
        Load::Loading => view! {
            <StatusBanner tone=Tone::Info><span class="spinner" aria-hidden="true"></span>"Loading your recordings…"</StatusBanner>
        }
        .into_any(),
        Load::Failed { message, unauthorized } => {
            let retry = load.clone();
            view! {
                <StatusBanner tone=Tone::Error>
                    <p>{message}</p>
                    {if unauthorized {
                        view! { <button type="button" class="button" on:click=move |_| log_out(session)>"Sign in again"</button> }.into_any()
                    } else {
                        view! { <button type="button" class="button" on:click=move |_| retry(shown_query.get_untracked())>"Try again"</button> }.into_any()
                    }}
                </StatusBanner>
            }
            .into_any()
        }
        Load::Loaded if visible().is_empty() && !shown_query.get().is_empty() => view! {
            <div class="empty">
                <p class="empty-title">{format!("No recordings match “{}”", shown_query.get())}</p>
                <p>"Try another part of the name."</p>
            </div>
        }
        .into_any(),
        Load::Loaded if visible().is_empty() && next.get().is_none() => view! {
            <div class="empty">
                <p class="empty-title">"No recordings yet"</p>
                <p>"Your recordings will appear here once you have saved one."</p>
                <A href="/recorder" attr:class="button button-record">"Record your first"</A>
            </div>
        }
        .into_any(),
        Load::Loaded => view! {
            <ul class="records" aria-label="Recordings, newest first">
                <For each=visible key=|i| (i.id, i.record.with_untracked(|r| r.status)) let:item>
                    <RecordItem
                        record=item.record
                        selected=Signal::derive(move || selected.with(|s| s.map(|s| s.id) == Some(item.id)))
                        on_play=Callback::new(move |()| selected.set(Some(item)))
                        // Transcript search (issue 16): play from where it was said.
                        on_play_at=Callback::new(move |at: f64| { selected.set(Some(item)); play_from(audio, at) })
                        on_delete=Callback::new(move |()| delete_item.with_value(|d| d(item)))
                        notify=notify
                    />
                </For>
            </ul>
            <Show when=move || next.get().is_some()>
                <button type="button" class="button load-more" disabled=move || loading_more.get() on:click=move |ev| load_more.with_value(|f| f(ev))>
                    {move || if loading_more.get() { "Loading…" } else { "Load more" }}
                </button>
            </Show>
        }
        .into_any(),
    }
    };
    let summary = move || match state.get() {
        Load::Loaded => {
            let n = items.with(Vec::len) - usize::from(hidden.get().is_some());
            let more = if next.get().is_some() { " so far" } else { "" };
            let q = shown_query.get();
            let noun = if n == 1 { "recording" } else { "recordings" };
            if q.is_empty() { format!("{n} {noun}{more}") } else { format!("{n} {noun} match “{q}”{more}") }
        }
        _ => String::new(),
    };

    view! {
        <Header>
            <A href="/recorder" attr:class="button button-record button-small icon-button">
                <span class="dot" aria-hidden="true"></span><span class="label">"New recording"</span>
            </A>
            <ShortcutButton open=help_open />
            <button type="button" class="button button-small button-quiet icon-button" on:click=logout>
                <Icon d=ICON_LOG_OUT /><span class="label">"Log out"</span>
            </button>
        </Header>
        <main id="main" class="page records-page" node_ref=page>
            <h1 class="greeting">{format!("Hi {}", current.name)}</h1>
            <div class="records-layout">
                <section class="records-list" aria-labelledby="records-title">
                    <div class="list-head">
                        <h2 id="records-title">"Your recordings"</h2>
                        <p class="list-count" role="status">{summary}</p>
                    </div>
                    <div class="search" role="search">
                        <label for="search" class="sr-only">"Search recordings by name or by what was said"</label>
                        <input id="search" type="search" placeholder="Search by name or words" autocomplete="off"
                               node_ref=search_input aria-keyshortcuts="/"
                               prop:value=move || query.get() on:input=on_search />
                    </div>
                    {list}
                </section>
                <Player record=Signal::derive(move || selected.get().and_then(|i| i.record.try_get())) audio=audio />
            </div>
        </main>
        <ToastRegion toast=toast />
        <ShortcutHelp open=help_open shortcuts=SHORTCUTS />
    }
    .into_any()
}

fn is_open(r: &Record) -> bool {
    r.status == RecordStatus::Recording
}

/// Brings `list` up to date with a fresh first page: changed records are
/// updated in place (a new item when the status changed, so it is drawn
/// anew), new ones go on top, and open takes that vanished go.
fn merge_fresh(list: &mut Vec<Item>, fresh: Vec<Record>, to_items: &impl Fn(Vec<Record>) -> Vec<Item>) {
    let mut new = Vec::new();
    for r in &fresh {
        match list.iter_mut().find(|i| i.id == r.id) {
            Some(item) if item.record.with_untracked(|old| old.status != r.status) => {
                *item = to_items(vec![r.clone()]).remove(0);
            }
            Some(item) => {
                if item.record.with_untracked(|old| old != r) {
                    item.record.set(r.clone());
                }
            }
            None => new.push(r.clone()),
        }
    }
    list.retain(|i| !i.record.with_untracked(is_open) || fresh.iter().any(|r| r.id == i.id));
    let mut top = to_items(new);
    top.append(list);
    *list = top;
}

/// Moves focus to the first element matching `selector` once it is drawn.
fn focus_selector(selector: &'static str) {
    request_animation_frame(move || {
        if let Some(el) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.query_selector(selector).ok().flatten())
            .and_then(|e| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(e).ok())
        {
            let _ = el.focus();
        }
    });
}
