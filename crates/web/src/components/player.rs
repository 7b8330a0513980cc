use audiobook_wire::Record;
use leptos::html::Audio;
use leptos::prelude::*;
use leptos::task::spawn_local;
use uuid::Uuid;
use web_sys::HtmlAudioElement;

use super::{TranscriptView, WaveformSeek};
use crate::playback::{skip_target, take_length};
use crate::session::use_session;
use crate::{api, format};

/// Playback speeds offered, as (rate, label).
const SPEEDS: [(f64, &str); 5] = [(0.75, "0.75×"), (1.0, "1×"), (1.25, "1.25×"), (1.5, "1.5×"), (2.0, "2×")];

/// Plays or pauses `audio`.
pub fn toggle_play(audio: &HtmlAudioElement) {
    if audio.paused() {
        let _ = audio.play();
    } else {
        let _ = audio.pause();
    }
}

/// Moves the playhead of `audio` by `delta` seconds, within the take of
/// `server_ms` (the server's `duration_ms`; see [`take_length`]).
pub fn seek_by(audio: &HtmlAudioElement, delta: f64, server_ms: u64) {
    let length = take_length(audio.duration(), server_ms);
    audio.set_current_time(skip_target(audio.current_time(), delta, length));
}

/// The page's one player: the waveform of the chosen recording (or a plain
/// seek bar for takes without one), play/pause, skip 10 s, and speed.
#[component]
pub fn Player(#[prop(into)] record: Signal<Option<Record>>, audio: NodeRef<Audio>) -> impl IntoView {
    let session = use_session();
    let duration = RwSignal::new(None::<f64>);
    let current = RwSignal::new(0.0_f64);
    let playing = RwSignal::new(false);
    let rate = RwSignal::new(1.0_f64);
    // None while loading; Some(empty) for a take without peaks.
    let peaks = RwSignal::new(None::<Vec<u8>>);
    let waveform_of = StoredValue::new(None::<Uuid>);
    // Transcript (issue 16): the captions track's blob URL, set by TranscriptView.
    let captions = RwSignal::new(None::<String>);

    // A new choice starts playing at once (the click that chose it allows it).
    Effect::new(move |_| {
        let chosen = record.with(|r| r.as_ref().map(|r| (r.id, r.link.clone())));
        let Some(el) = audio.get() else { return };
        let Some((id, link)) = chosen else {
            let _ = el.pause();
            waveform_of.set_value(None);
            return;
        };
        if waveform_of.get_value() != Some(id) {
            waveform_of.set_value(Some(id));
            duration.set(None);
            current.set(0.0);
            peaks.set(None);
            el.set_src(&link);
            el.set_default_playback_rate(rate.get_untracked());
            el.set_playback_rate(rate.get_untracked());
            let _ = el.play();
            if let Some(s) = session.get_untracked() {
                spawn_local(async move {
                    let loaded = api::waveform(&s, id).await.map(|w| w.peaks).unwrap_or_default();
                    if waveform_of.try_get_value().flatten() == Some(id) {
                        peaks.set(Some(loaded));
                    }
                });
            }
        }
    });
    let sync = move || {
        if let Some(el) = audio.get_untracked() {
            duration.set(Some(el.duration()));
            current.set(el.current_time());
            playing.set(!el.paused());
        }
    };
    let server_ms = move || record.with(|r| r.as_ref().map_or(0, |r| r.duration_ms));
    // The take's length for the time display, the seek bar and the waveform.
    let total = Signal::derive(move || take_length(duration.get().unwrap_or(f64::NAN), server_ms()));
    let seek_to = Callback::new(move |to: f64| {
        if let Some(el) = audio.get_untracked() {
            let to = skip_target(to, 0.0, total.get_untracked());
            el.set_current_time(to);
            current.set(to);
        }
    });
    // At the end the playhead is at the end of the take, even where the
    // browser's idea of the length was short.
    let on_ended = move |_| {
        sync();
        current.set(total.get_untracked());
    };
    let name = move || record.with(|r| r.as_ref().map(|r| r.name.clone()));

    // Docked players (phones and tablets) show a mini player until expanded.
    let expanded = RwSignal::new(false);
    let fraction = move || {
        let t = total.get();
        if t > 0.0 { (current.get() / t).clamp(0.0, 1.0) } else { 0.0 }
    };
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Escape" && expanded.get_untracked() {
            ev.stop_propagation();
            expanded.set(false);
        }
    };

    // The controls are fetched once the player is drawn (a module of their
    // own: the page draws without them), and again on a choice after a
    // failed fetch.
    let controls = Controls { record, audio, current, total, playing, rate, peaks, captions, expanded, seek_to };
    let controls_view = RwSignal::new(None::<Result<fn(Controls) -> AnyView, ()>>);
    let fetching = StoredValue::new(false);
    let fetch_controls = move || {
        if fetching.get_value() || matches!(controls_view.get_untracked(), Some(Ok(_))) {
            return;
        }
        fetching.set_value(true);
        spawn_local(async move {
            let loaded = full_controls().await;
            if let Err(e) = &loaded {
                web_sys::console::warn_1(&format!("AudioBook: no player controls: {e}").into());
            }
            let _ = fetching.try_set_value(false);
            let _ = controls_view.try_set(Some(loaded.map_err(|_| ())));
        });
    };
    request_animation_frame(fetch_controls);
    Effect::new(move |_| {
        if record.with(Option::is_some) && matches!(controls_view.get_untracked(), Some(Err(()))) {
            fetch_controls();
        }
    });

    // One set of controls for every layout: on phones and tablets the
    // stylesheet docks the player at the bottom and, until it is expanded,
    // shows only the play button, the name and the position (the mini
    // player); on desktops the player is the full one beside the list.
    view! {
        <section class="player" aria-labelledby="player-title"
                 class:player-empty=move || record.with(Option::is_none)
                 class:player-open=move || expanded.get()
                 on:keydown=on_key>
            <div class="player-progress" aria-hidden="true">
                <span style:width=move || format!("{:.2}%", fraction() * 100.0)></span>
            </div>
            <h2 id="player-title" class="player-title">{move || name().unwrap_or_else(|| "Player".into())}</h2>
            <audio
                id="player-audio"
                node_ref=audio
                preload="metadata"
                on:loadedmetadata=move |_| sync()
                on:durationchange=move |_| sync()
                on:timeupdate=move |_| sync()
                on:seeked=move |_| sync()
                on:play=move |_| sync()
                on:pause=move |_| sync()
                on:ended=on_ended
                aria-label=move || name().map(|n| format!("Player: {n}")).unwrap_or_else(|| "Player".into())
            >
                // Transcript (issue 16): the browser's own captions, from the VTT.
                {move || captions.get().map(|src| view! {
                    <track kind="captions" srclang="en" label="English" default=true src=src />
                })}
            </audio>
            <Show when=move || record.with(Option::is_some)>
                {move || match controls_view.get() {
                    Some(Ok(view)) => view(controls),
                    Some(Err(())) => view! {
                        <p class="field-error player-controls-missing" role="alert">
                            "The player's controls could not be loaded. Check the connection, then choose the recording again."
                        </p>
                    }.into_any(),
                    None => ().into_any(),
                }}
            </Show>
            <p class="player-duration">
                {move || match (record.with(|r| r.is_some()), total.get(), duration.get()) {
                    (false, _, _) => "Choose a recording to play it here.".to_string(),
                    (true, t, _) if t > 0.0 => format!("Duration {}", format::duration_ms((t * 1000.0).round() as u64)),
                    (true, _, None) => "Loading…".to_string(),
                    (true, _, Some(_)) => "Duration unknown".to_string(),
                }}
            </p>
        </section>
    }
}

/// What the full controls share with the player.
#[derive(Clone, Copy)]
struct Controls {
    record: Signal<Option<Record>>,
    audio: NodeRef<Audio>,
    current: RwSignal<f64>,
    total: Signal<f64>,
    playing: RwSignal<bool>,
    rate: RwSignal<f64>,
    peaks: RwSignal<Option<Vec<u8>>>,
    captions: RwSignal<Option<String>>,
    expanded: RwSignal<bool>,
    seek_to: Callback<f64>,
}

/// The player's full controls (waveform, transport, speed, transcript) in a
/// module of their own (wasm-split), fetched after the page is drawn.
#[leptos::wasm_split::wasm_split(player_controls, wasm_split_path = ::leptos::wasm_split, fallible)]
fn full_controls() -> Result<fn(Controls) -> AnyView, leptos::wasm_split::SplitLoaderError> {
    // The transcript's styles come with it, not with the first load.
    crate::browser::add_stylesheet("/transcript.css");
    Ok(controls_view)
}

fn controls_view(controls: Controls) -> AnyView {
    let Controls { record, audio, current, total, playing, rate, peaks, captions, expanded, seek_to } = controls;
    let server_ms = move || record.with(|r| r.as_ref().map_or(0, |r| r.duration_ms));
    let skip = move |delta: f64| {
        if let Some(el) = audio.get_untracked() {
            seek_by(&el, delta, server_ms());
            current.set(el.current_time());
        }
    };
    let on_speed = move |ev: leptos::ev::Event| {
        let value = event_target_value(&ev).parse::<f64>().unwrap_or(1.0);
        rate.set(value);
        if let Some(el) = audio.get_untracked() {
            el.set_default_playback_rate(value);
            el.set_playback_rate(value);
        }
    };
    let seeker = move || {
        match peaks.get() {
        None => view! { <div class="waveform waveform-loading" aria-hidden="true"></div> }.into_any(),
        Some(p) if p.is_empty() => view! {
            <input type="range" class="seekbar" aria-label="Seek" min="0" step="0.1"
                   max=move || format!("{:.1}", total.get())
                   prop:value=move || current.get()
                   aria-valuetext=move || format!("{} of {}", format::seconds(current.get()), format::seconds(total.get()))
                   on:input=move |ev| {
                       if let Ok(to) = event_target_value(&ev).parse::<f64>() { seek_to.run(to) }
                   } />
        }
        .into_any(),
        Some(p) => view! { <WaveformSeek peaks=p current=current duration=total on_seek=seek_to /> }.into_any(),
    }
    };

    view! {
                <button type="button" class="player-expand" aria-controls="player-full"
                        aria-expanded=move || expanded.get().to_string()
                        aria-label=move || if expanded.get() { "Show the mini player" } else { "Show the full player" }
                        on:click=move |_| expanded.update(|e| *e = !*e)>
                    <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">
                        <path d="M6 15l6-6 6 6" fill="none" stroke="currentColor" stroke-width="2.2"
                              stroke-linecap="round" stroke-linejoin="round"></path>
                    </svg>
                </button>
                <div id="player-full" class="player-seek">{seeker}</div>
                <p class="player-time">
                    <span>{move || format::seconds(current.get())}</span>
                    <small class="sr-only">" of "</small>
                    <span>{move || format::seconds(total.get())}</span>
                </p>
                <div class="transport">
                    <button type="button" class="button button-round skip-back" aria-label="Back 10 seconds"
                            aria-keyshortcuts="J" on:click=move |_| skip(-10.0)>
                        <span aria-hidden="true">"↺ 10"</span>
                    </button>
                    <button type="button" class="button button-round button-primary play-toggle"
                            aria-label=move || if playing.get() { "Pause" } else { "Play" }
                            aria-keyshortcuts="Space"
                            on:click=move |_| if let Some(el) = audio.get_untracked() { toggle_play(&el) }>
                        <span aria-hidden="true">{move || if playing.get() { "❚❚" } else { "▶" }}</span>
                    </button>
                    <button type="button" class="button button-round skip-forward" aria-label="Forward 10 seconds"
                            aria-keyshortcuts="L" on:click=move |_| skip(10.0)>
                        <span aria-hidden="true">"10 ↻"</span>
                    </button>
                    <label class="speed">
                        <span>"Speed"</span>
                        <select id="player-speed" on:change=on_speed>
                            {SPEEDS.iter().map(|(value, label)| view! {
                                <option value=value.to_string() selected=move || rate.get() == *value>{*label}</option>
                            }).collect_view()}
                        </select>
                    </label>
                </div>
                // Transcript (issue 16): read along, choose a word to seek there;
                // in the full player only (the mini player hides it).
                <TranscriptView record=record current=current on_seek=seek_to captions=captions />
    }
    .into_any()
}
