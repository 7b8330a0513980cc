//! `/recorder`: record, pause, resume and stop; the take is kept on this
//! device and streams to the server as it is recorded (offline, it uploads
//! when the connection is back). Takes recovered from this device when the
//! app opened are told about here.

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::NavigateOptions;
use leptos_router::components::A;
use leptos_router::hooks::{use_location, use_navigate};

use super::{Header, ICON_LIST, Icon};
use crate::browser::{self, WakeLock};
use crate::components::{
    Clock, ConnectionBadge, LiveWaveform, ShortcutButton, ShortcutHelp, Shortcuts, StatusBanner, Tone,
};
use crate::format;
use crate::recorder::studio::{Conn, NoticeKind, Phase, Studio};
use crate::session::{log_out, use_session};

const PATH: &str = "/recorder";

const SHORTCUTS: Shortcuts =
    &[(&["R", "Space"], "Record, pause or resume"), (&["S", "Esc"], "Stop and save"), (&["?"], "Show this help")];

#[component]
pub fn RecorderPage() -> impl IntoView {
    super::set_title("Recorder");
    let session = use_session();
    let navigate = use_navigate();
    let Some(current) = session.get_untracked() else {
        navigate("/onboard", NavigateOptions { replace: true, ..Default::default() });
        return ().into_any();
    };
    let studio = Studio::open(&current);
    let ui = studio.ui();
    let studio = StoredValue::new_local(studio);
    on_cleanup(move || studio.with_value(|s| s.close()));

    let record = move || {
        let s = studio.get_value();
        spawn_local(async move { s.record().await });
    };
    let pause = move |_| studio.with_value(|s| s.pause());
    let resume = move |_| studio.with_value(|s| s.resume());
    let stop = move |_| studio.with_value(|s| s.stop());
    let again = move |_| {
        studio.with_value(|s| s.reset());
        record();
    };
    // Leaving for the list mid-take asks first (closing the tab is guarded
    // by a beforeunload prompt): it stops the recording, which is kept.
    let guard_leave = move |ev: leptos::ev::MouseEvent| {
        if studio.with_value(|s| s.has_unsaved_audio()) {
            let leave = web_sys::window()
                .and_then(|w| {
                    w.confirm_with_message(
                        "Leaving stops the recording. What was recorded so far is kept and uploaded. Leave?",
                    )
                    .ok()
                })
                .unwrap_or(true);
            if !leave {
                ev.prevent_default();
            }
        }
    };

    let phase = ui.phase;
    let tone = Signal::derive(move || match phase.get() {
        Phase::MicError(_) | Phase::Failed(_) => Tone::Error,
        Phase::Saved(_) => Tone::Success,
        _ => Tone::Info,
    });
    let status_text = move || match phase.get() {
        Phase::Idle => "Ready. Press Record to start.".to_string(),
        Phase::AskingMic => "Waiting for access to the microphone…".to_string(),
        Phase::MicError(e) => e,
        Phase::Recording => "Recording…".to_string(),
        Phase::Paused => "Paused. Press Resume to go on.".to_string(),
        Phase::Saving if ui.conn.get() != Conn::Online && ui.unkept_bytes.get() == 0 => {
            "Saved on this device, will upload when online.".to_string()
        }
        Phase::Saving if ui.conn.get() != Conn::Online => {
            "Waiting for the connection: part of this recording is only in this page, keep it open.".to_string()
        }
        Phase::Stopping | Phase::Saving => "Saving…".to_string(),
        Phase::Saved(r) => format!("Saved “{}” ({}).", r.name, format::duration_ms(r.duration_ms)),
        Phase::Failed(e) if ui.unkept_bytes.get() == 0 => format!(
            "The recording could not be saved: {} It is kept on this device, and AudioBook tries again the next \
             time it opens.",
            e.trim_end_matches('.').to_string() + "."
        ),
        Phase::Failed(e) => format!("The recording could not be saved: {e}"),
    };
    // Recording with no connection: the take is kept here meanwhile.
    let offline_note = move || {
        (matches!(phase.get(), Phase::Recording | Phase::Paused) && ui.conn.get() != Conn::Online)
            .then_some("No connection: the recording is kept on this device and uploads when online.")
    };
    let storage_note = move || ui.stopped_early.get().or_else(|| ui.storage_warning.get());
    let recording = move || matches!(phase.get(), Phase::Recording);
    let paused = move || matches!(phase.get(), Phase::Paused);
    let live = move || matches!(phase.get(), Phase::Recording | Phase::Paused);
    let can_start = move || matches!(phase.get(), Phase::Idle);

    // The screen stays on while a take is under way (where supported).
    let wake_lock = StoredValue::new_local(WakeLock::new());
    Effect::new(move |_| {
        let live = live();
        wake_lock.with_value(|w| if live { w.hold() } else { w.release() });
    });
    on_cleanup(move || {
        let _ = wake_lock.try_with_value(WakeLock::close);
    });
    // Leaving the page stops the take (it goes on uploading) and frees the
    // screen, on cleanup and also when the location leaves /recorder:
    // leptos_router 0.8.17 did not dispose this page when onboarding had led
    // here, and the take went on recording unseen after "My recordings".
    let location = use_location();
    Effect::new(move |was: Option<String>| {
        let path = location.pathname.get();
        if was.as_deref() == Some(PATH) && path != PATH {
            let _ = studio.try_with_value(|s| s.close());
            let _ = wake_lock.try_with_value(WakeLock::close);
        }
        path
    });

    // Shortcuts: R or Space record/pause/resume, S or Escape stop, ? help.
    let help_open = RwSignal::new(false);
    let page = NodeRef::<leptos::html::Main>::new();
    browser::page_shortcuts(page, move |ev| {
        if help_open.get_untracked() {
            return;
        }
        match ev.key().as_str() {
            "?" => help_open.set(true),
            "r" | "R" | " " => match phase.get_untracked() {
                Phase::Idle | Phase::MicError(_) => {
                    studio.with_value(|s| s.reset());
                    record();
                }
                Phase::Saved(_) | Phase::Failed(_) => {
                    studio.with_value(|s| s.reset());
                    record();
                }
                Phase::Recording => studio.with_value(|s| s.pause()),
                Phase::Paused => studio.with_value(|s| s.resume()),
                Phase::AskingMic | Phase::Stopping | Phase::Saving => return,
            },
            "s" | "S" | "Escape" if live() => studio.with_value(|s| s.stop()),
            _ => return,
        }
        ev.prevent_default();
    });

    view! {
        <Header>
            <A href="/records" on:click=guard_leave attr:class="button button-small button-quiet icon-button">
                <Icon d=ICON_LIST /><span class="label">"My recordings"</span>
            </A>
            <ShortcutButton open=help_open />
        </Header>
        <ShortcutHelp open=help_open shortcuts=SHORTCUTS />
        <main id="main" class="page recorder" node_ref=page>
            <div class="recorder-head">
                <h1>"Recorder"</h1>
                <ConnectionBadge conn=ui.conn />
            </div>
            <Show when=move || matches!(ui.conn.get(), Conn::Refused(_))>
                <StatusBanner tone=Tone::Error>
                    <p>"The server did not accept this session. Sign in again to record."</p>
                    <A href="/onboard" attr:class="button" on:click=move |_| {
                        studio.with_value(|s| s.close());
                        log_out(session);
                    }>"Sign in again"</A>
                </StatusBanner>
            </Show>
            <section class="card studio" aria-label="Recording controls"
                     class:studio-live=recording class:studio-paused=paused>
                <Clock elapsed_ms=ui.elapsed_ms />
                <LiveWaveform peaks=ui.peaks level=ui.level elapsed_ms=ui.elapsed_ms
                              active=Signal::derive(recording) />
                <div class="controls">
                    <Show when=can_start>
                        <button type="button" class="button button-record" aria-keyshortcuts="R" on:click=move |_| record()>
                            <span class="dot" aria-hidden="true"></span>"Record"
                        </button>
                    </Show>
                    <Show when=recording>
                        <button type="button" class="button" aria-keyshortcuts="R" on:click=pause>"Pause"</button>
                    </Show>
                    <Show when=paused>
                        <button type="button" class="button" aria-keyshortcuts="R" on:click=resume>"Resume"</button>
                    </Show>
                    <Show when=live>
                        <button type="button" class="button button-stop" aria-keyshortcuts="S Escape" on:click=stop>
                            <span class="square" aria-hidden="true"></span>"Stop"
                        </button>
                    </Show>
                    <Show when=move || matches!(phase.get(), Phase::MicError(_))>
                        <button type="button" class="button button-primary" on:click=again>"Try again"</button>
                    </Show>
                    <Show when=move || matches!(phase.get(), Phase::Saved(_) | Phase::Failed(_))>
                        <button type="button" class="button button-record" on:click=again>
                            <span class="dot" aria-hidden="true"></span>"Record another"
                        </button>
                        <A href="/records" attr:class="button">"Listen in My recordings"</A>
                    </Show>
                </div>
                // Lossless mode (issue 12): the quality of the next take.
                <crate::components::QualitySetting disabled=Signal::derive(move || phase.get().is_busy()) />
                // End of the lossless mode's insertion.
                <StatusBanner tone=tone>
                    <span class="status-text">{status_text}</span>
                    // Keyboard hints only where there is a keyboard to use them.
                    <Show when=move || matches!(phase.get(), Phase::Idle)>
                        <span class="key-hint">"(Or press R.)"</span>
                    </Show>
                </StatusBanner>
                <Show when=move || offline_note().is_some()>
                    <p class="offline-note">{offline_note}</p>
                </Show>
                <Show when=move || storage_note().is_some()>
                    <StatusBanner tone=Tone::Error>
                        <span class="storage-note">{storage_note}</span>
                    </StatusBanner>
                </Show>
                <p class="transfer" aria-live="off">
                    {move || {
                        let (sent, unsent, unkept) = (ui.sent_bytes.get(), ui.unsent_bytes.get(), ui.unkept_bytes.get());
                        (live() || matches!(phase.get(), Phase::Stopping | Phase::Saving)).then(|| {
                            let mut text = format!("Sent {} · waiting {}", format::size(sent), format::size(unsent));
                            if unkept > 0 {
                                text.push_str(&format!(" ({} in this page only)", format::size(unkept)));
                            } else if unsent > 0 {
                                text.push_str(" (kept on this device)");
                            }
                            text
                        })
                    }}
                </p>
            </section>
            <Show when=move || !ui.notices.with(Vec::is_empty)>
                // Not status banners: the take recorded here keeps the one
                // success line of the page.
                <ul class="notices" aria-label="Recordings kept on this device" role="status" aria-live="polite">
                    <For each=move || ui.notices.get() key=|n| (n.key, n.kind, n.text.clone()) let:notice>
                        <li class="status notice" data-kind=match notice.kind {
                            NoticeKind::Pending => "pending", NoticeKind::Done => "done", NoticeKind::Problem => "problem",
                        }>{notice.text}</li>
                    </For>
                </ul>
            </Show>
        </main>
    }
    .into_any()
}
