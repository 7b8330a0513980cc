//! A search hit inside a recording's transcript: the snippet with the
//! matching words marked (the server's pieces become text nodes and
//! `<mark>`, never markup), and when it is said; choosing it plays the
//! recording from there.

use audiobook_wire::TranscriptMatch;
use leptos::html::Audio;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use crate::format;

/// Seeks the page's player to `at` seconds and plays, once the recording
/// just chosen has loaded far enough to seek (at once if it already has).
pub fn play_from(audio: NodeRef<Audio>, at: f64) {
    spawn_local(async move {
        // After the player's effect has set the new source.
        crate::browser::sleep_ms(0).await;
        let Some(el) = audio.get_untracked() else { return };
        if el.ready_state() >= 1 {
            el.set_current_time(at);
            let _ = el.play();
            return;
        }
        let target = el.clone();
        let seek = Closure::once_into_js(move || {
            target.set_current_time(at);
            let _ = target.play();
        });
        let options = web_sys::AddEventListenerOptions::new();
        options.set_once(true);
        let _ = el.add_event_listener_with_callback_and_add_event_listener_options(
            "loadedmetadata",
            seek.unchecked_ref(),
            &options,
        );
    });
}

#[component]
pub fn SearchHit(hit: TranscriptMatch, name: String, on_play_at: Callback<f64>) -> impl IntoView {
    let at = hit.at_ms as f64 / 1000.0;
    let when = format::seconds(at);
    let said: String = hit.snippet.iter().map(|p| p.text.as_str()).collect();
    let label = format!("Play “{name}” from {when}, where it says: {said}");
    view! {
        <button type="button" class="search-hit" aria-label=label data-at-ms=hit.at_ms.to_string()
                on:click=move |_| on_play_at.run(at)>
            <span class="search-hit-time">{when}</span>
            <span class="search-hit-snippet">
                {hit.snippet.into_iter().map(|p| if p.hit {
                    view! { <mark>{p.text}</mark> }.into_any()
                } else {
                    p.text.into_any()
                }).collect_view()}
            </span>
        </button>
    }
}
