use audiobook_wire::{Record, RecordStatus};
use leptos::prelude::*;

use crate::format;

/// One recording in the list: name, date and time, duration, size, and a
/// button that plays it in the page's player.
#[component]
pub fn RecordItem(record: Record, #[prop(into)] selected: Signal<bool>, on_play: Callback<Record>) -> impl IntoView {
    let when = local_date_time(&record.created_at.to_rfc3339());
    let iso = record.created_at.to_rfc3339();
    let status = match record.status {
        RecordStatus::Ready => None,
        RecordStatus::Pending => Some("uploading"),
        RecordStatus::Interrupted => Some("interrupted"),
    };
    let label = format!("Play {}", record.name);
    let record_id = record.id.to_string();
    let name = record.name.clone();
    let duration = format::duration_ms(record.duration_ms);
    let duration_words = format::duration_words(record.duration_ms);
    let size = format::size(record.size_bytes);
    view! {
        <li class="record" class:record-selected=move || selected.get() data-record-id=record_id>
            <button type="button" class="record-play" aria-label=label
                    aria-pressed=move || selected.get().to_string()
                    on:click=move |_| on_play.run(record.clone())>
                <span class="record-icon" aria-hidden="true">"▶"</span>
            </button>
            <div class="record-body">
                <p class="record-name">{name}</p>
                <p class="record-meta">
                    <time datetime=iso>{when}</time>
                    <span aria-hidden="true">" · "</span>
                    <span class="record-duration" aria-label=duration_words>{duration}</span>
                    <span aria-hidden="true">" · "</span>
                    <span class="record-size">{size}</span>
                    {status.map(|s| view! { <span class="tag">{s}</span> })}
                </p>
            </div>
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
