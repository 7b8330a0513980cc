//! The chosen recording's transcript under the waveform: what was said, the
//! word being spoken highlighted as it plays, a word chosen (click, Enter or
//! Space) seeks there; and the captions track's blob URL (the VTT needs the
//! bearer token, which a `<track src>` cannot send).

use audiobook_wire::{Record, TranscriptPending, TranscriptStatus};
use leptos::html::Div;
use leptos::prelude::*;
use leptos::task::spawn_local;
use uuid::Uuid;
use wasm_bindgen::JsCast;

use crate::api::{self, TranscriptAnswer};
use crate::browser::sleep_ms;
use crate::format;
use crate::session::use_session;

/// How often a transcript still being made is asked for again.
const POLL_MS: u64 = 4000;
/// After the person scrolled the transcript themselves, it stops following
/// the playhead for this long.
const HANDS_OFF_MS: f64 = 4000.0;

/// One spoken word: its start in seconds, and its text.
#[derive(Clone, PartialEq)]
struct Word {
    start: f64,
    text: String,
}

#[derive(Clone, PartialEq)]
enum State {
    Loading,
    /// Queued, or never asked for yet where the server transcribes.
    Waiting,
    /// Being made; how far (0–100) when the worker said.
    Running(Option<u8>),
    /// Given up, with the reason in words.
    Failed(String),
    /// There is none and none is coming (transcription off, take not saved).
    Unavailable(String),
    /// Could not be fetched just now (offline, server error); asked again.
    Error(String),
    Ready(Vec<Word>),
}

/// Where a transcript that is not there stands, as a state.
fn state_of_pending(p: TranscriptPending) -> State {
    match p.transcript {
        TranscriptStatus::Queued => State::Waiting,
        TranscriptStatus::Running => State::Running(p.transcript_progress.map(|n| n.min(100))),
        TranscriptStatus::Failed => State::Failed(
            p.transcript_error.filter(|why| !why.trim().is_empty()).unwrap_or_else(|| "no reason given".into()),
        ),
        TranscriptStatus::None | TranscriptStatus::Ready => State::Unavailable(p.error),
    }
}

/// The index of the word being spoken at `t` seconds: the last one that
/// started at or before it, held until the next one starts (no flicker in
/// the pauses between words).
fn word_at(words: &[Word], t: f64) -> Option<usize> {
    // A hair of tolerance for the media clock's rounding only: a wider one
    // would light up the next word when a seek lands on this one's start.
    let n = words.partition_point(|w| w.start <= t + 0.001);
    (n > 0).then(|| n - 1)
}

fn now_ms() -> f64 {
    js_sys::Date::now()
}

fn revoke(url: Option<String>) {
    if let Some(url) = url {
        let _ = web_sys::Url::revoke_object_url(&url);
    }
}

fn blob_url(vtt: &str) -> Option<String> {
    let parts = js_sys::Array::of1(&vtt.into());
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/vtt");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options).ok()?;
    web_sys::Url::create_object_url_with_blob(&blob).ok()
}

/// The transcript of `record`, following `current` (seconds); `on_seek` is
/// called with the start of a chosen word. `captions` gets the blob URL of
/// the VTT while the transcript is ready (revoked on change).
#[component]
pub fn TranscriptView(
    #[prop(into)] record: Signal<Option<Record>>,
    #[prop(into)] current: Signal<f64>,
    on_seek: Callback<f64>,
    captions: RwSignal<Option<String>>,
) -> impl IntoView {
    let session = use_session();
    let state = RwSignal::new(State::Loading);
    // The recording being shown: a poll or fetch for another one is dropped.
    let shown = StoredValue::new(None::<Uuid>);
    let id = Memo::new(move |_| record.with(|r| r.as_ref().map(|r| (r.id, r.transcript))));

    Effect::new(move |_| {
        let Some((rid, status)) = id.get() else {
            shown.set_value(None);
            revoke(captions.try_get_untracked().flatten());
            captions.set(None);
            return;
        };
        if shown.get_value() == Some(rid) {
            // The same recording, its status refreshed: the loop below is on it.
            return;
        }
        shown.set_value(Some(rid));
        revoke(captions.get_untracked());
        captions.set(None);
        state.set(match status {
            TranscriptStatus::Queued => State::Waiting,
            TranscriptStatus::Running => State::Running(None),
            _ => State::Loading,
        });
        let Some(s) = session.get_untracked() else { return };
        let current_one = move || shown.try_get_value().flatten() == Some(rid);
        spawn_local(async move {
            loop {
                if !current_one() {
                    return;
                }
                match api::transcript(&s, rid).await {
                    Ok(TranscriptAnswer::Ready(t)) => {
                        if !current_one() {
                            return;
                        }
                        let words = t
                            .segments
                            .iter()
                            .flat_map(|seg| seg.words.iter())
                            .map(|w| Word { start: w.start_ms as f64 / 1000.0, text: w.text.trim().to_string() })
                            .filter(|w| !w.text.is_empty())
                            .collect::<Vec<_>>();
                        state.set(State::Ready(words));
                        if let Ok(vtt) = api::transcript_vtt(&s, rid).await {
                            let url = blob_url(&vtt);
                            if current_one() {
                                captions.set(url);
                            } else {
                                revoke(url);
                            }
                        }
                        return;
                    }
                    Ok(TranscriptAnswer::Pending(pending)) => {
                        let next = state_of_pending(pending);
                        let done = matches!(next, State::Failed(_) | State::Unavailable(_));
                        if current_one() {
                            state.set(next);
                        }
                        if done {
                            return;
                        }
                    }
                    Err(e) if e.is_unauthorized() => {
                        state.set(State::Error(e.message));
                        return;
                    }
                    Err(e) => {
                        if current_one() {
                            state.set(State::Error(format!("{e} Trying again shortly.")));
                        }
                    }
                }
                sleep_ms(POLL_MS).await;
            }
        });
    });
    on_cleanup(move || {
        shown.set_value(None);
        revoke(captions.try_get_untracked().flatten());
        let _ = captions.try_set(None);
    });

    let words = Memo::new(move |_| match state.get() {
        State::Ready(w) => w,
        _ => Vec::new(),
    });
    let active = Memo::new(move |_| words.with(|w| word_at(w, current.get())));
    // Roving tabindex: one word is in the tab order; arrows move along.
    let focus_at = RwSignal::new(0_usize);
    let list = NodeRef::<Div>::new();
    let user_scrolled_at = StoredValue::new(f64::NEG_INFINITY);
    let auto_scroll_until = StoredValue::new(0.0_f64);

    let word_el = move |i: usize| -> Option<web_sys::Element> {
        list.get_untracked()?.query_selector(&format!("[data-word=\"{i}\"]")).ok().flatten()
    };
    // Keep the spoken word in view, unless the person is reading elsewhere.
    Effect::new(move |_| {
        let Some(i) = active.get() else { return };
        if now_ms() - user_scrolled_at.get_value() < HANDS_OFF_MS {
            return;
        }
        let (Some(b), Some(w)) = (list.get_untracked(), word_el(i)) else { return };
        let (br, wr) = (b.get_bounding_client_rect(), w.get_bounding_client_rect());
        let margin = br.height() / 5.0;
        if wr.top() < br.top() + 4.0 || wr.bottom() > br.bottom() - margin {
            auto_scroll_until.set_value(now_ms() + 800.0);
            let to = b.scroll_top() as f64 + (wr.top() - br.top()) - br.height() / 3.0;
            b.set_scroll_top(to.max(0.0) as i32);
        }
    });
    let on_user_scroll = move || user_scrolled_at.set_value(now_ms());
    let on_scroll = move |_| {
        if now_ms() > auto_scroll_until.get_value() {
            on_user_scroll();
        }
    };
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        let n = words.with_untracked(Vec::len);
        if n == 0 {
            return;
        }
        let at = focus_at.get_untracked().min(n - 1);
        let to = match ev.key().as_str() {
            "ArrowRight" | "ArrowDown" => (at + 1).min(n - 1),
            "ArrowLeft" | "ArrowUp" => at.saturating_sub(1),
            "Home" => 0,
            "End" => n - 1,
            _ => return,
        };
        ev.prevent_default();
        focus_at.set(to);
        on_user_scroll();
        if let Some(el) = word_el(to).and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
            let _ = el.focus();
        }
    };

    let status = move || match state.get() {
        State::Loading => "Loading the transcript…".to_string(),
        State::Waiting => "Waiting to transcribe".into(),
        State::Running(Some(p)) => format!("Transcribing… {p} %"),
        State::Running(None) => "Transcribing…".into(),
        State::Failed(reason) => format!("The transcript could not be made: {reason}."),
        State::Unavailable(why) => why,
        State::Error(e) => e,
        State::Ready(w) if w.is_empty() => "No speech was heard in this recording.".into(),
        State::Ready(_) => String::new(),
    };
    let progress = move || match state.get() {
        State::Running(p) => Some(p),
        _ => None,
    };

    view! {
        <section class="transcript" aria-labelledby="transcript-title">
            <h3 id="transcript-title" class="transcript-title">"Transcript"</h3>
            <p class="transcript-status" role="status" aria-live="polite">{status}</p>
            {move || progress().map(|p| match p {
                Some(p) => view! { <progress class="transcript-progress" max="100" value=p.to_string() aria-label="Transcribing"></progress> }.into_any(),
                None => view! { <progress class="transcript-progress" aria-label="Transcribing"></progress> }.into_any(),
            })}
            <Show when=move || words.with(|w| !w.is_empty())>
                <div class="transcript-words" node_ref=list role="list"
                     aria-label="Transcript: choose a word to play from there; arrow keys move between words"
                     on:scroll=on_scroll on:wheel=move |_| on_user_scroll() on:touchmove=move |_| on_user_scroll()
                     on:keydown=on_keydown>
                    {move || words.get().into_iter().enumerate().map(|(i, w)| {
                        let label = format!("{} at {}", w.text, format::seconds(w.start));
                        let start = w.start;
                        view! {
                            <span role="listitem" class="transcript-item">
                                <button type="button" class="transcript-word"
                                        class:transcript-word-current=move || active.get() == Some(i)
                                        aria-current=move || (active.get() == Some(i)).then_some("time")
                                        tabindex=move || if focus_at.get() == i { "0" } else { "-1" }
                                        data-word=i.to_string() data-start=format!("{start:.3}")
                                        aria-label=label
                                        on:focus=move |_| focus_at.set(i)
                                        on:click=move |_| { focus_at.set(i); on_seek.run(start) }>
                                    {w.text}
                                </button>
                                " "
                            </span>
                        }
                    }).collect_view()}
                </div>
            </Show>
        </section>
    }
}
