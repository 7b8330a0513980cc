use audiobook_wire::Record;
use leptos::html::Audio;
use leptos::prelude::*;

use crate::format;

/// The page's one player: native controls (seek bar, keyboard support) on
/// the chosen recording, with its duration as the browser reads it.
#[component]
pub fn Player(#[prop(into)] record: Signal<Option<Record>>) -> impl IntoView {
    let audio = NodeRef::<Audio>::new();
    let duration = RwSignal::new(None::<f64>);
    // A new choice starts playing at once (the click that chose it allows it).
    Effect::new(move |_| {
        let link = record.with(|r| r.as_ref().map(|r| r.link.clone()));
        if let (Some(el), Some(link)) = (audio.get(), link)
            && el.src() != link
        {
            duration.set(None);
            el.set_src(&link);
            let _ = el.play();
        }
    });
    let on_metadata = move |_| {
        if let Some(el) = audio.get_untracked() {
            duration.set(Some(el.duration()));
        }
    };
    view! {
        <section class="player" aria-labelledby="player-title">
            <h2 id="player-title" class="player-title">
                {move || record.with(|r| r.as_ref().map(|r| r.name.clone()).unwrap_or_else(|| "Player".into()))}
            </h2>
            <audio
                id="player-audio"
                node_ref=audio
                controls
                preload="metadata"
                on:loadedmetadata=on_metadata
                on:durationchange=on_metadata
                aria-label=move || record.with(|r| r.as_ref().map(|r| format!("Player: {}", r.name)).unwrap_or_else(|| "Player".into()))
            ></audio>
            <p class="player-duration">
                {move || match (record.with(|r| r.is_some()), duration.get()) {
                    (false, _) => "Choose a recording to play it here.".to_string(),
                    (true, None) => "Loading…".to_string(),
                    (true, Some(d)) if !d.is_finite() => "Duration unknown".to_string(),
                    (true, Some(d)) => format!("Duration {}", format::duration_ms((d * 1000.0).round() as u64)),
                }}
            </p>
        </section>
    }
}
