//! The studio behind the recorder page: it owns the socket, the microphone
//! and the current take, and streams the take chunk by chunk.
//!
//! One pump task per take does every request in turn, so the order of
//! requests is simple to follow:
//! `start-recording` → `append-recording` for each chunk (the queue keeps it
//! until acked) → after the last chunk, `stop-recording`. When the connection
//! drops, chunks in flight are rewound; when it comes back,
//! `resume-recording` tells where the server stands and sending goes on from
//! its `next_seq`. Pages only see the signals in [`Ui`].

use std::cell::RefCell;
use std::rc::Rc;

use audiobook_wire::{AppendAck, Record, ResumeAck, StopAck, StopRecording};
use futures::StreamExt;
use futures::channel::mpsc;
use leptos::prelude::*;
use uuid::Uuid;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::capture::{Capture, CaptureEvent, open_microphone};
use super::queue::ChunkQueue;
use crate::socket::{EmitError, Socket, SocketEvent};
use crate::storage::Session;
use crate::waveform::PeakCollector;

/// The connection as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    Connecting,
    Online,
    /// Dropped; socket.io-client is reconnecting.
    Offline,
    /// The server refused this session (for example an unknown token).
    Refused(String),
}

/// Where the take stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Idle,
    AskingMic,
    MicError(String),
    Recording,
    Paused,
    /// Stopped; the rest of the audio is being sent and the server finalizes.
    Saving,
    Saved(Record),
    Failed(String),
}

impl Phase {
    /// A take is under way (leaving would interrupt it).
    pub fn is_busy(&self) -> bool {
        matches!(self, Phase::AskingMic | Phase::Recording | Phase::Paused | Phase::Saving)
    }
}

/// Everything the recorder page shows, as signals.
#[derive(Clone, Copy)]
pub struct Ui {
    pub conn: RwSignal<Conn>,
    pub phase: RwSignal<Phase>,
    /// Media time of the take (pauses excluded).
    pub elapsed_ms: RwSignal<u64>,
    /// Input level, 0..=1.
    pub level: RwSignal<f64>,
    /// Recorded bytes the server has not confirmed yet.
    pub unsent_bytes: RwSignal<u64>,
    /// Bytes the server confirmed.
    pub sent_bytes: RwSignal<u64>,
}

impl Ui {
    fn new() -> Self {
        Ui {
            conn: RwSignal::new(Conn::Connecting),
            phase: RwSignal::new(Phase::Idle),
            elapsed_ms: RwSignal::new(0),
            level: RwSignal::new(0.0),
            unsent_bytes: RwSignal::new(0),
            sent_bytes: RwSignal::new(0),
        }
    }
}

/// Media time from `performance.now()`, pauses excluded.
#[derive(Default)]
struct Clock {
    started_at: f64,
    paused_at: Option<f64>,
    paused_total: f64,
}

impl Clock {
    fn elapsed_ms(&self, now: f64) -> u64 {
        let end = self.paused_at.unwrap_or(now);
        (end - self.started_at - self.paused_total).max(0.0) as u64
    }
}

/// One take, from the first chunk to the saved record.
struct Take {
    capture: Option<Capture>,
    mime_type: String,
    queue: ChunkQueue,
    /// The newest piece and its level peaks, held back until the next one
    /// (or the stop) shows whether it is the final chunk.
    held: Option<(Vec<u8>, Vec<u8>)>,
    /// Level readings since the last piece, for the waveform.
    peaks: PeakCollector,
    recording_id: Option<Uuid>,
    /// The server's position is known on the current connection.
    synced: bool,
    clock: Clock,
    wake: mpsc::UnboundedSender<()>,
}

impl Take {
    /// Recorded bytes the server has not confirmed, the held-back piece included.
    fn unsent_bytes(&self) -> u64 {
        self.queue.unsent_bytes() + self.held.as_ref().map_or(0, |(h, _)| h.len() as u64)
    }
}

struct Inner {
    session: Session,
    ui: Ui,
    socket: RefCell<Option<Rc<Socket>>>,
    take: RefCell<Option<Take>>,
}

/// The interval that refreshes the clock and the level meter.
type Ticker = (i32, Closure<dyn FnMut()>);
/// The `beforeunload` listener that warns before unsent audio is lost.
type UnloadGuard = Closure<dyn FnMut(web_sys::BeforeUnloadEvent)>;

/// The recorder page's controller (cheap to clone).
#[derive(Clone)]
pub struct Studio {
    inner: Rc<Inner>,
    ticker: Rc<RefCell<Option<Ticker>>>,
    before_unload: Rc<RefCell<Option<UnloadGuard>>>,
}

impl Studio {
    /// Connects the socket and starts the clock and level ticker.
    pub fn open(session: Session, server_url: &str) -> Studio {
        let inner = Rc::new(Inner { session, ui: Ui::new(), socket: RefCell::new(None), take: RefCell::new(None) });
        let weak = Rc::downgrade(&inner);
        let socket = Socket::connect(server_url, &inner.session.token, move |event| {
            if let Some(inner) = weak.upgrade() {
                inner.on_socket_event(event);
            }
        });
        *inner.socket.borrow_mut() = Some(Rc::new(socket));
        let studio = Studio { inner, ticker: Rc::default(), before_unload: Rc::default() };
        studio.start_ticker();
        studio.guard_unload();
        studio
    }

    pub fn ui(&self) -> Ui {
        self.inner.ui
    }

    /// Asks for the microphone and starts a take.
    pub async fn record(&self) {
        let ui = self.inner.ui;
        if ui.phase.get_untracked().is_busy() {
            return;
        }
        ui.phase.set(Phase::AskingMic);
        let stream = match open_microphone().await {
            Ok(s) => s,
            Err(e) => return ui.phase.set(Phase::MicError(e)),
        };
        let weak = Rc::downgrade(&self.inner);
        let capture = match Capture::start(stream, move |event| {
            if let Some(inner) = weak.upgrade() {
                inner.on_capture_event(event);
            }
        }) {
            Ok(c) => c,
            Err(e) => return ui.phase.set(Phase::MicError(e)),
        };
        let (wake, wakes) = mpsc::unbounded();
        *self.inner.take.borrow_mut() = Some(Take {
            mime_type: capture.mime_type().to_string(),
            capture: Some(capture),
            queue: ChunkQueue::new(),
            held: None,
            peaks: PeakCollector::default(),
            recording_id: None,
            synced: false,
            clock: Clock { started_at: now(), ..Clock::default() },
            wake,
        });
        ui.elapsed_ms.set(0);
        ui.unsent_bytes.set(0);
        ui.sent_bytes.set(0);
        ui.phase.set(Phase::Recording);
        wasm_bindgen_futures::spawn_local(pump(self.inner.clone(), wakes));
        self.inner.wake();
    }

    pub fn pause(&self) {
        if let Some(take) = self.inner.take.borrow_mut().as_mut()
            && let Some(c) = &take.capture
        {
            c.pause();
            take.clock.paused_at.get_or_insert_with(now);
            self.inner.ui.phase.set(Phase::Paused);
        }
    }

    pub fn resume(&self) {
        if let Some(take) = self.inner.take.borrow_mut().as_mut()
            && let Some(c) = &take.capture
        {
            c.resume();
            if let Some(at) = take.clock.paused_at.take() {
                take.clock.paused_total += now() - at;
            }
            self.inner.ui.phase.set(Phase::Recording);
        }
    }

    /// Stops the take; the studio sends the rest and asks the server to save.
    pub fn stop(&self) {
        if let Some(take) = self.inner.take.borrow_mut().as_mut()
            && let Some(c) = take.capture.as_mut()
        {
            let now = now();
            if let Some(at) = take.clock.paused_at.take() {
                take.clock.paused_total += now - at;
            }
            take.clock.paused_at = Some(now);
            c.stop();
            self.inner.ui.level.set(0.0);
            self.inner.ui.phase.set(Phase::Saving);
        }
    }

    /// Back to the idle screen after a saved or failed take.
    pub fn reset(&self) {
        if !self.inner.ui.phase.get_untracked().is_busy() {
            self.inner.take.borrow_mut().take();
            self.inner.ui.phase.set(Phase::Idle);
            self.inner.ui.elapsed_ms.set(0);
        }
    }

    /// Whether leaving now would lose audio.
    pub fn has_unsaved_audio(&self) -> bool {
        self.inner.has_unsaved_audio()
    }

    /// Leaves the page: releases the microphone and disconnects.
    pub fn close(&self) {
        if let Some((id, _)) = self.ticker.borrow_mut().take()
            && let Some(w) = web_sys::window()
        {
            w.clear_interval_with_handle(id);
        }
        if let Some(closure) = self.before_unload.borrow_mut().take()
            && let Some(w) = web_sys::window()
        {
            let _ = w.remove_event_listener_with_callback("beforeunload", closure.as_ref().unchecked_ref());
        }
        self.inner.take.borrow_mut().take();
        self.inner.socket.borrow_mut().take();
    }

    fn start_ticker(&self) {
        let weak = Rc::downgrade(&self.inner);
        let closure = Closure::<dyn FnMut()>::new(move || {
            let Some(inner) = weak.upgrade() else { return };
            let mut take = inner.take.borrow_mut();
            let Some(take) = take.as_mut() else { return };
            inner.ui.elapsed_ms.set(take.clock.elapsed_ms(now()));
            if let Some(c) = take.capture.as_mut() {
                let level = if take.clock.paused_at.is_some() {
                    0.0
                } else {
                    let level = c.level();
                    // One waveform peak per tick (10 a second) of recorded time.
                    take.peaks.push_level(level);
                    level
                };
                inner.ui.level.set(level);
            }
        });
        let window = web_sys::window().expect("a browser window");
        if let Ok(id) =
            window.set_interval_with_callback_and_timeout_and_arguments_0(closure.as_ref().unchecked_ref(), 100)
        {
            *self.ticker.borrow_mut() = Some((id, closure));
        }
    }

    fn guard_unload(&self) {
        let weak = Rc::downgrade(&self.inner);
        let closure = Closure::<dyn FnMut(web_sys::BeforeUnloadEvent)>::new(move |e: web_sys::BeforeUnloadEvent| {
            if weak.upgrade().is_some_and(|inner| inner.has_unsaved_audio()) {
                e.prevent_default();
                e.set_return_value("Your recording is not saved yet. Leave anyway?");
            }
        });
        if let Some(w) = web_sys::window() {
            let _ = w.add_event_listener_with_callback("beforeunload", closure.as_ref().unchecked_ref());
        }
        *self.before_unload.borrow_mut() = Some(closure);
    }
}

impl Inner {
    fn socket(&self) -> Option<Rc<Socket>> {
        self.socket.borrow().clone()
    }

    fn wake(&self) {
        if let Some(take) = self.take.borrow().as_ref() {
            let _ = take.wake.unbounded_send(());
        }
    }

    fn has_unsaved_audio(&self) -> bool {
        let phase = self.ui.phase.get_untracked();
        phase.is_busy() && !matches!(phase, Phase::AskingMic)
    }

    fn on_socket_event(&self, event: SocketEvent) {
        match event {
            SocketEvent::Connected => {
                self.ui.conn.set(Conn::Online);
                if let Some(take) = self.take.borrow_mut().as_mut() {
                    // A new connection: ask where the server stands first.
                    take.synced = false;
                    take.queue.rewind();
                }
                self.wake();
            }
            SocketEvent::Disconnected | SocketEvent::Reconnecting => {
                let refused = matches!(self.ui.conn.get_untracked(), Conn::Refused(_));
                if !refused {
                    self.ui.conn.set(Conn::Offline);
                }
                if let Some(take) = self.take.borrow_mut().as_mut() {
                    take.synced = false;
                    take.queue.rewind();
                }
            }
            SocketEvent::ConnectError { message } => {
                let retrying = self.socket().is_some_and(|s| s.will_reconnect());
                if retrying {
                    self.ui.conn.set(Conn::Offline);
                } else {
                    let message = if message.is_empty() { "the server refused this session".into() } else { message };
                    self.ui.conn.set(Conn::Refused(message));
                }
            }
            SocketEvent::RecordingSaved(record) => {
                let ours = self.take.borrow().as_ref().and_then(|t| t.recording_id) == Some(record.id);
                if ours && matches!(self.ui.phase.get_untracked(), Phase::Saving) {
                    self.finish(Phase::Saved(record));
                }
            }
            SocketEvent::RecordingError(e) => {
                let ours = self.take.borrow().as_ref().and_then(|t| t.recording_id);
                if e.recording_id.is_none() || e.recording_id == ours {
                    self.fail(e.error);
                }
            }
        }
    }

    fn on_capture_event(&self, event: CaptureEvent) {
        let mut failed = None;
        if let Some(take) = self.take.borrow_mut().as_mut() {
            let pushed = match event {
                CaptureEvent::Data(bytes) => match take.held.replace((bytes, take.peaks.take_for_chunk())) {
                    Some((previous, peaks)) => take.queue.push_with_peaks(previous, peaks, false).map(|_| ()),
                    None => Ok(()),
                },
                CaptureEvent::Stopped => {
                    take.capture = None;
                    let (data, mut peaks) = take.held.take().unwrap_or_default();
                    peaks.extend(take.peaks.take_for_chunk());
                    peaks.truncate(crate::waveform::MAX_PEAKS_PER_CHUNK);
                    take.queue.push_with_peaks(data, peaks, true).map(|_| ())
                }
                CaptureEvent::Failed(e) => {
                    failed = Some(e);
                    Ok(())
                }
            };
            if let Err(e) = pushed {
                failed = Some(e.to_string());
            }
            self.ui.unsent_bytes.set(take.unsent_bytes());
            let _ = take.wake.unbounded_send(());
        }
        if let Some(e) = failed {
            self.fail(e);
        }
    }

    fn fail(&self, message: String) {
        self.finish(Phase::Failed(message));
    }

    fn finish(&self, phase: Phase) {
        if let Some(take) = self.take.borrow_mut().as_mut() {
            if let Some(mut c) = take.capture.take() {
                c.stop();
            }
            take.wake.close_channel();
        }
        self.ui.level.set(0.0);
        self.ui.phase.set(phase);
    }

    /// The next request for the pump, decided without awaiting.
    fn next_action(&self) -> Action {
        let Some(socket) = self.socket() else { return Action::Quit };
        let mut take = self.take.borrow_mut();
        let Some(take) = take.as_mut() else { return Action::Quit };
        if matches!(self.ui.phase.get_untracked(), Phase::Saved(_) | Phase::Failed(_)) {
            return Action::Quit;
        }
        if !socket.is_connected() {
            return Action::Wait;
        }
        let Some(id) = take.recording_id else {
            return Action::Start { socket, mime_type: take.mime_type.clone() };
        };
        if !take.synced {
            return Action::Resume { socket, id };
        }
        if let Some(chunk) = take.queue.next_to_send() {
            return Action::Send { socket, id, mime_type: take.mime_type.clone(), chunk };
        }
        if take.queue.is_complete() {
            let stop = StopRecording {
                user_id: Some(self.session.user_id),
                recording_id: Some(id),
                chunks: Some(take.queue.chunk_count()),
                ..Default::default()
            };
            return Action::Stop { socket, stop };
        }
        Action::Wait
    }

    /// Applies a change to the take's queue and refreshes the byte counters.
    fn with_take(&self, f: impl FnOnce(&mut Take) -> Result<(), String>) {
        let result = {
            let mut take = self.take.borrow_mut();
            let Some(take) = take.as_mut() else { return };
            let result = f(take);
            self.ui.unsent_bytes.set(take.unsent_bytes());
            self.ui.sent_bytes.set(take.queue.confirmed_bytes());
            result
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }
}

enum Action {
    Quit,
    Wait,
    Start { socket: Rc<Socket>, mime_type: String },
    Resume { socket: Rc<Socket>, id: Uuid },
    Send { socket: Rc<Socket>, id: Uuid, mime_type: String, chunk: super::queue::Chunk },
    Stop { socket: Rc<Socket>, stop: StopRecording },
}

/// Does the take's requests one at a time until it is saved or failed.
async fn pump(inner: Rc<Inner>, mut wakes: mpsc::UnboundedReceiver<()>) {
    loop {
        match inner.next_action() {
            Action::Quit => return,
            Action::Wait => {
                if wakes.next().await.is_none() {
                    return;
                }
            }
            Action::Start { socket, mime_type } => match socket.start_recording(&mime_type).await {
                Ok(id) => inner.with_take(|t| {
                    t.recording_id = Some(id);
                    t.synced = true;
                    Ok(())
                }),
                // Not answered: try again once connected.
                Err(_) if !socket.is_connected() => {}
                Err(e) => return inner.fail(format!("The server could not start a recording: {e}")),
            },
            Action::Resume { socket, id } => match socket.resume(id).await {
                Ok(ResumeAck::Ok(ok)) => inner.with_take(|t| {
                    t.queue.server_expects(ok.next_seq).map_err(|e| format!("Resuming failed: {e}"))?;
                    t.synced = true;
                    Ok(())
                }),
                // Temporarily unable (its database or disk): ask again later.
                Ok(ResumeAck::Err(f)) if f.retry_after_ms.is_some() => {
                    crate::browser::sleep_ms(f.retry_after_ms.unwrap_or(1000)).await;
                }
                Ok(ResumeAck::Err(f)) => {
                    return inner.fail(format!("The server could not resume this recording: {}", f.error));
                }
                Err(EmitError::NoAnswer) => {}
                Err(e) => return inner.fail(e.to_string()),
            },
            Action::Send { socket, id, mime_type, chunk } => match socket.append(id, &mime_type, &chunk).await {
                Ok(AppendAck::Ok(ok)) => {
                    inner.with_take(|t| t.queue.ack(ok.seq).map(|_| ()).map_err(|e| e.to_string()))
                }
                // Busy, or its disk or database unavailable: nothing sent
                // before is affected; ask where it stands and go on later.
                Ok(AppendAck::Err(e)) if e.retry_after_ms.is_some() => {
                    crate::browser::sleep_ms(e.retry_after_ms.unwrap_or(1000)).await;
                    inner.with_take(|t| {
                        t.queue.rewind();
                        t.synced = false;
                        Ok(())
                    });
                }
                Ok(AppendAck::Err(e)) => match e.next_seq {
                    Some(next) => inner.with_take(|t| t.queue.server_expects(next).map_err(|e| e.to_string())),
                    None => return inner.fail(format!("The server refused the audio: {}", e.error)),
                },
                Err(EmitError::NoAnswer) => inner.with_take(|t| {
                    t.queue.rewind();
                    t.synced = false;
                    Ok(())
                }),
                Err(e) => return inner.fail(e.to_string()),
            },
            Action::Stop { socket, stop } => match socket.stop(&stop).await {
                Ok(StopAck::Ok(ok)) => return inner.finish(Phase::Saved(ok.record)),
                // Being saved, or saving is retried on the server: ask again.
                Ok(StopAck::Err(f)) if f.retry_after_ms.is_some() => {
                    crate::browser::sleep_ms(f.retry_after_ms.unwrap_or(1000)).await;
                }
                Ok(StopAck::Err(f)) => {
                    return inner.fail(format!("The server could not save the recording: {}", f.error));
                }
                Err(EmitError::NoAnswer) if !socket.is_connected() => {
                    // Sent again after the reconnect (and resume).
                    inner.with_take(|t| {
                        t.synced = false;
                        Ok(())
                    });
                }
                Err(e) => return inner.fail(format!("The server did not confirm the save: {e}")),
            },
        }
    }
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}
