use audiobook_wire::{Record, RecordStatus};
use leptos::html::Input;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::Toast;
use crate::session::use_session;
use crate::{api, browser, format};

/// One recording in the list: name (renamed inline), date and time,
/// duration, size, and its actions: play, rename, download, share, delete.
#[component]
pub fn RecordItem(
    record: RwSignal<Record>,
    #[prop(into)] selected: Signal<bool>,
    on_play: Callback<()>,
    /// Asked after the confirmation; the page hides the item and offers Undo.
    on_delete: Callback<()>,
    notify: Callback<Toast>,
    /// Transcript search (issue 16): plays this recording from a time.
    #[prop(optional)]
    on_play_at: Option<Callback<f64>>,
) -> impl IntoView {
    let session = use_session();
    let r = record.get_untracked();
    let when = local_date_time(&r.created_at.to_rfc3339());
    let iso = r.created_at.to_rfc3339();
    // A take still open is shown as it stands (the page refreshes it), and
    // cannot be played, shared or deleted until it is saved.
    let in_progress = r.status == RecordStatus::Recording;
    let status = move || {
        record.with(|r| match r.status {
            RecordStatus::Ready => None,
            RecordStatus::Pending => Some("uploading"),
            RecordStatus::Interrupted => Some("interrupted"),
            RecordStatus::Recording if r.client_connected == Some(false) => {
                Some("waiting for the device that recorded it")
            }
            RecordStatus::Recording => Some("in progress"),
        })
    };
    let record_id = r.id.to_string();
    let duration = format::duration_ms(r.duration_ms);
    let duration_words = format::duration_words(r.duration_ms);
    let size = move || record.with(|r| format::size(r.size_bytes));
    let name = move || record.with(|r| r.name.clone());
    let key = r.id.simple().to_string();
    let (name_id, input_id, error_id) = (format!("name-{key}"), format!("rename-{key}"), format!("rename-error-{key}"));

    // Rename, share and delete open panels whose code is fetched when one
    // is first opened (a module of its own: the list draws without it).
    let editing = RwSignal::new(false);
    let rename_button = NodeRef::<leptos::html::Button>::new();
    let share_url = RwSignal::new(None::<String>);
    let share_open = RwSignal::new(false);
    let share_busy = RwSignal::new(false);
    let confirming = RwSignal::new(false);
    let panels = RwSignal::new(None::<ItemPanels>);
    let fetching = StoredValue::new(false);
    Effect::new(move |_| {
        let wanted = editing.get() || share_open.get() || confirming.get();
        if !wanted || panels.get_untracked().is_some() || fetching.get_value() {
            return;
        }
        fetching.set_value(true);
        spawn_local(async move {
            match item_panels().await {
                Ok(loaded) => drop(panels.try_set(Some(loaded))),
                Err(e) => {
                    web_sys::console::warn_1(&format!("AudioBook: no rename, share or delete: {e}").into());
                    for open in [editing, share_open, confirming] {
                        let _ = open.try_set(false);
                    }
                    notify.run(Toast::error("That could not be loaded: check the connection and try again."));
                }
            }
            let _ = fetching.try_set_value(false);
        });
    });
    let ctx = PanelContext {
        record,
        editing,
        rename_button,
        share_url,
        share_open,
        share_busy,
        confirming,
        on_delete,
        notify,
        keys: StoredValue::new((input_id.clone(), error_id.clone())),
    };
    // A panel shows once its code is here (until then the name stays).
    let panel = move |open: RwSignal<bool>, pick: fn(&ItemPanels) -> fn(PanelContext) -> AnyView| {
        move || panels.get().filter(|_| open.get()).map(|p| pick(&p)(ctx))
    };
    let shown = move |open: RwSignal<bool>| move || open.get() && panels.with(Option::is_some);
    let start_rename = move || editing.set(true);
    let toggle_share = move |_| {
        if share_open.get_untracked() {
            return share_open.set(false);
        }
        let Some(s) = session.get_untracked() else { return };
        let id = record.with_untracked(|r| r.id);
        share_busy.set(true);
        spawn_local(async move {
            match api::share(&s, id).await {
                Ok(link) => {
                    share_url.set(Some(link.url));
                    share_open.set(true);
                }
                Err(e) => notify.run(Toast::error(format!("Could not share: {}", e.message))),
            }
            share_busy.set(false);
        });
    };

    let download = move || record.with(|r| format!("{}&download=1", r.link));
    view! {
        <li class="record" class:record-selected=move || selected.get() data-record-id=record_id>
            <div class="record-row">
                <button type="button" class="record-play" disabled=in_progress
                        aria-label=move || if in_progress {
                            format!("{} is still being recorded", name())
                        } else {
                            format!("Play {}", name())
                        }
                        aria-pressed=move || selected.get().to_string()
                        on:click=move |_| on_play.run(())>
                    <span class="record-icon" aria-hidden="true">"▶"</span>
                </button>
                <div class="record-body">
                    <Show when=shown(editing) fallback=move || view! {
                        <p class="record-name" id=name_id.clone() title="Click to rename" on:click=move |_| start_rename()>
                            {name}
                        </p>
                    }>
                        {panel(editing, |p| p.rename)}
                    </Show>
                    <p class="record-meta">
                        <time datetime=iso>{when}</time>
                        <span aria-hidden="true">" · "</span>
                        <span class="record-duration" aria-label=duration_words>{duration}</span>
                        <span aria-hidden="true">" · "</span>
                        <span class="record-size">{size}</span>
                        {move || status().map(|s| view! { <span class="tag">{s}</span> })}
                    </p>
                </div>
            </div>
            <Show when=move || !in_progress>
                <div class="record-actions">
                    <button type="button" class="action" node_ref=rename_button
                            aria-label=move || format!("Rename {}", name()) on:click=move |_| start_rename()>"Rename"</button>
                    <a class="action" href=download download=""
                       aria-label=move || format!("Download {}", name())>"Download"</a>
                    <button type="button" class="action" aria-expanded=move || share_open.get().to_string()
                            aria-label=move || format!("Share {}", name())
                            disabled=move || share_busy.get() on:click=toggle_share>"Share"</button>
                    <button type="button" class="action action-danger"
                            aria-label=move || format!("Delete {}", name())
                            on:click=move |_| confirming.set(true)>"Delete"</button>
                </div>
            </Show>
            {panel(share_open, |p| p.share)}
            {panel(confirming, |p| p.confirm)}
            // Transcript search (issue 16): where the query was said.
            {move || record.with(|r| r.transcript_match.clone().map(|m| (m, r.name.clone()))).zip(on_play_at)
                .map(|((hit, name), on_play_at)| view! { <super::SearchHit hit=hit name=name on_play_at=on_play_at /> })}
        </li>
    }
}

/// A date and time in the reader's locale and time zone.
fn local_date_time(rfc3339: &str) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(rfc3339));
    let options = js_sys::Object::new();
    for (k, v) in [("dateStyle", "medium"), ("timeStyle", "short")] {
        let _ = js_sys::Reflect::set(&options, &k.into(), &v.into());
    }
    date.to_locale_string("default", &options).into()
}

/// What an item's panels share with it.
#[derive(Clone, Copy)]
struct PanelContext {
    record: RwSignal<Record>,
    editing: RwSignal<bool>,
    rename_button: NodeRef<leptos::html::Button>,
    share_url: RwSignal<Option<String>>,
    share_open: RwSignal<bool>,
    share_busy: RwSignal<bool>,
    confirming: RwSignal<bool>,
    on_delete: Callback<()>,
    notify: Callback<Toast>,
    /// The rename field's and its error's element ids.
    keys: StoredValue<(String, String)>,
}

/// The views of an item's panels.
#[derive(Clone, Copy)]
struct ItemPanels {
    rename: fn(PanelContext) -> AnyView,
    share: fn(PanelContext) -> AnyView,
    confirm: fn(PanelContext) -> AnyView,
}

/// The panels, in a module of their own (wasm-split).
#[leptos::wasm_split::wasm_split(record_panels, wasm_split_path = ::leptos::wasm_split, fallible)]
fn item_panels() -> Result<ItemPanels, leptos::wasm_split::SplitLoaderError> {
    Ok(ItemPanels { rename: rename_form, share: share_panel, confirm: confirm_panel })
}

/// Fetches the panels' module ahead of a first click (the records page
/// calls it once its list is drawn).
pub async fn preload_panels() {
    let _ = item_panels().await;
}

/// The name as a field: Enter or Save renames, Escape or Cancel leaves it.
fn rename_form(ctx: PanelContext) -> AnyView {
    let PanelContext { record, editing, rename_button, notify, keys, .. } = ctx;
    let session = use_session();
    let (input_id, error_id) = keys.get_value();
    let draft = RwSignal::new(String::new());
    let rename_error = RwSignal::new(None::<String>);
    let saving = RwSignal::new(false);
    let input = NodeRef::<Input>::new();
    draft.set(record.with_untracked(|r| r.name.clone()));
    Effect::new(move |_| {
        if editing.get()
            && let Some(el) = input.get()
        {
            let _ = el.focus();
            el.select();
        }
    });
    let end_rename = move || {
        editing.set(false);
        if let Some(b) = rename_button.get_untracked() {
            let _ = b.focus();
        }
    };
    let save = move || {
        if saving.get_untracked() {
            return;
        }
        let new_name = match format::check_recording_name(&draft.get_untracked()) {
            Ok(n) => n,
            Err(e) => return rename_error.set(Some(e)),
        };
        if new_name == record.with_untracked(|r| r.name.clone()) {
            return end_rename();
        }
        let Some(s) = session.get_untracked() else { return };
        let id = record.with_untracked(|r| r.id);
        saving.set(true);
        spawn_local(async move {
            match api::rename(&s, id, &new_name).await {
                Ok(renamed) => {
                    // The link stays: the player keeps playing.
                    record.update(|r| {
                        r.name = renamed.name.clone();
                        r.updated_at = renamed.updated_at;
                    });
                    end_rename();
                    notify.run(Toast::info(format!("Renamed to “{}”.", renamed.name)));
                }
                Err(e) => rename_error.set(Some(e.message)),
            }
            saving.set(false);
        });
    };
    let on_key = move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
        "Enter" => {
            ev.prevent_default();
            save();
        }
        "Escape" => {
            ev.prevent_default();
            ev.stop_propagation();
            end_rename();
        }
        _ => {}
    };

    view! {
                        <div class="rename">
                            <label class="sr-only" for=input_id.clone()>"New name"</label>
                            <input id=input_id.clone() class="rename-input" type="text" node_ref=input
                                   maxlength="200" autocomplete="off"
                                   aria-invalid=move || rename_error.get().is_some().to_string()
                                   aria-describedby=error_id.clone()
                                   prop:value=move || draft.get()
                                   on:input=move |ev| { draft.set(event_target_value(&ev)); rename_error.set(None); }
                                   on:keydown=on_key />
                            <button type="button" class="button button-small button-primary"
                                    disabled=move || saving.get() on:click=move |_| save()>"Save"</button>
                            <button type="button" class="button button-small button-quiet"
                                    on:click=move |_| end_rename()>"Cancel"</button>
                            <p id=error_id.clone() class="field-error" role="alert">{move || rename_error.get()}</p>
                        </div>
    }
    .into_any()
}

/// The public link: copy, open or revoke it.
fn share_panel(ctx: PanelContext) -> AnyView {
    let PanelContext { record, share_url, share_open, share_busy, notify, .. } = ctx;
    let session = use_session();
    let link_input = NodeRef::<Input>::new();
    let copy = move |_| {
        let Some(url) = share_url.get_untracked() else { return };
        spawn_local(async move {
            if browser::copy_text(&url).await {
                notify.run(Toast::info("Link copied."));
            } else {
                if let Some(el) = link_input.get_untracked() {
                    let _ = el.focus();
                    el.select();
                }
                notify.run(Toast::info("Select the link and copy it (Ctrl+C or ⌘C)."));
            }
        });
    };
    let revoke = move |_| {
        let Some(s) = session.get_untracked() else { return };
        let id = record.with_untracked(|r| r.id);
        share_busy.set(true);
        spawn_local(async move {
            match api::unshare(&s, id).await {
                Ok(()) => {
                    share_url.set(None);
                    share_open.set(false);
                    notify.run(Toast::info("Share link revoked: it no longer works."));
                }
                Err(e) => notify.run(Toast::error(format!("Could not revoke the link: {}", e.message))),
            }
            share_busy.set(false);
        });
    };

    view! {
                <div class="panel share-panel" role="group" aria-label="Public link">
                    <p class="panel-text">"Anyone with this link can listen (and nothing else of yours is shown):"</p>
                    <div class="share-row">
                        <input class="share-url" type="text" readonly node_ref=link_input aria-label="Public link"
                               prop:value=move || share_url.get().unwrap_or_default()
                               on:focus=move |_| if let Some(el) = link_input.get_untracked() { el.select() } />
                        <button type="button" class="button button-small button-primary" on:click=copy>"Copy"</button>
                        <a class="button button-small" target="_blank" rel="noopener"
                           href=move || share_url.get().unwrap_or_default()>"Open"</a>
                        <button type="button" class="button button-small button-quiet" disabled=move || share_busy.get()
                                on:click=revoke>"Revoke"</button>
                    </div>
                </div>
    }
    .into_any()
}

/// "Delete …?" with Delete and Cancel; Escape cancels.
fn confirm_panel(ctx: PanelContext) -> AnyView {
    let PanelContext { record, confirming, on_delete, .. } = ctx;
    let name = move || record.with(|r| r.name.clone());
    let confirm_button = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        if confirming.get()
            && let Some(b) = confirm_button.get()
        {
            let _ = b.focus();
        }
    });

    view! {
                <div class="panel confirm-panel" role="alertdialog" aria-label="Confirm delete"
                     on:keydown=move |ev: leptos::ev::KeyboardEvent| if ev.key() == "Escape" {
                         ev.stop_propagation(); confirming.set(false);
                     }>
                    <p class="panel-text">{move || format!("Delete “{}”?", name())}</p>
                    <div class="share-row">
                        <button type="button" class="button button-small button-danger" node_ref=confirm_button
                                on:click=move |_| { confirming.set(false); on_delete.run(()); }>"Delete"</button>
                        <button type="button" class="button button-small button-quiet"
                                on:click=move |_| confirming.set(false)>"Cancel"</button>
                    </div>
                </div>
    }
    .into_any()
}
