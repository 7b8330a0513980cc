//! The studio behind the recorder page: it opens the microphone, hands the
//! take to the outbox (which keeps every chunk in the vault and sends it),
//! runs the clock and level ticker, and turns the take's progress into the
//! signals in [`Ui`]. Leaving the page stops the recorder; the take goes on
//! uploading from the vault.
//!
//! The page holds a [`Studio`]: its signals and a handle on the [`Desk`]
//! that does the work. The desk and everything it reaches (capture, take,
//! outbox, vault, socket) are a module of their own (wasm-split), fetched as
//! the page opens: the page is drawn without them, and a Record pressed
//! before they arrived waits for them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use audiobook_wire::Record;
use futures::FutureExt;
use futures::channel::mpsc;
use futures::future::{LocalBoxFuture, Shared};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

use super::capture::{Capture, open_microphone};
use super::outbox::Outbox;
pub use super::outbox::{Conn, Notice, NoticeKind};
use super::take::{Progress, Stage, TakeTask};
use crate::storage::Session;
use crate::waveform::LivePeaks;

/// Where the take stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Idle,
    AskingMic,
    /// The take could not start, in words: the microphone was refused or
    /// missing, or the desk's module could not be fetched.
    MicError(String),
    Recording,
    Paused,
    /// Stop was pressed; the recorder is still handing over its last audio
    /// (nothing may say "saved" yet).
    Stopping,
    /// Stopped; kept on this device and being sent (or waiting for the
    /// connection), and the server finalizes.
    Saving,
    Saved(Record),
    Failed(String),
}

impl Phase {
    /// A take is under way.
    pub fn is_busy(&self) -> bool {
        matches!(self, Phase::AskingMic | Phase::Recording | Phase::Paused | Phase::Stopping | Phase::Saving)
    }
}

/// Everything the recorder page shows, as signals.
#[derive(Clone, Copy)]
pub struct Ui {
    pub conn: Signal<Conn>,
    /// Lines about recovered takes and takes uploaded after their page left.
    pub notices: Signal<Vec<Notice>>,
    pub phase: RwSignal<Phase>,
    /// Media time of the take (pauses excluded).
    pub elapsed_ms: RwSignal<u64>,
    /// Input level, 0..=1.
    pub level: RwSignal<f64>,
    /// The take's latest level peaks, for the live waveform (not a signal:
    /// the waveform reads it every frame).
    pub peaks: StoredValue<LivePeaks, LocalStorage>,
    /// Recorded bytes the server does not have yet.
    pub unsent_bytes: RwSignal<u64>,
    /// Bytes the server has.
    pub sent_bytes: RwSignal<u64>,
    /// Recorded bytes kept in memory only (the vault refused them).
    pub unkept_bytes: RwSignal<u64>,
    /// Why the recorder stopped before Stop was pressed.
    pub stopped_early: RwSignal<Option<String>>,
    /// Little or no room to keep the take on this device.
    pub storage_warning: RwSignal<Option<String>>,
    /// The outbox's connection and notices, once the desk has opened it.
    outbox_conn: RwSignal<Option<Signal<Conn>>>,
    outbox_notices: RwSignal<Option<Signal<Vec<Notice>>>>,
}

impl Ui {
    fn new() -> Ui {
        let outbox_conn = RwSignal::new(None::<Signal<Conn>>);
        let outbox_notices = RwSignal::new(None::<Signal<Vec<Notice>>>);
        Ui {
            conn: Signal::derive(move || outbox_conn.get().map_or(Conn::Connecting, |c| c.get())),
            notices: Signal::derive(move || outbox_notices.get().map(|n| n.get()).unwrap_or_default()),
            phase: RwSignal::new(Phase::Idle),
            elapsed_ms: RwSignal::new(0),
            level: RwSignal::new(0.0),
            peaks: StoredValue::new_local(LivePeaks::default()),
            unsent_bytes: RwSignal::new(0),
            sent_bytes: RwSignal::new(0),
            unkept_bytes: RwSignal::new(0),
            stopped_early: RwSignal::new(None),
            storage_warning: RwSignal::new(None),
            outbox_conn,
            outbox_notices,
        }
    }
}

/// What the page asks of the desk (the desk's code is in another module,
/// reached through this trait only).
trait Engine {
    fn record(&self) -> LocalBoxFuture<'static, ()>;
    fn pause(&self);
    fn resume(&self);
    fn stop(&self);
    fn reset(&self);
    fn has_unsaved_audio(&self) -> bool;
    fn close(&self);
}

type DeskLoad = Shared<LocalBoxFuture<'static, Result<Rc<dyn Engine>, String>>>;

/// The recorder page's controller (cheap to clone): the page's signals and
/// the desk, fetched as the page opens.
#[derive(Clone)]
pub struct Studio {
    ui: Ui,
    session: Session,
    desk: Rc<RefCell<DeskLoad>>,
    closed: Rc<Cell<bool>>,
}

impl Studio {
    /// Fetches the desk, which uses the outbox of `session` (opening the
    /// connection and recovering what the vault holds, on first use).
    pub fn open(session: &Session) -> Studio {
        let ui = Ui::new();
        let desk = Rc::new(RefCell::new(fetch_desk(session.clone(), ui)));
        let studio = Studio { ui, session: session.clone(), desk, closed: Rc::default() };
        studio.open_desk_now();
        studio
    }

    pub fn ui(&self) -> Ui {
        self.ui
    }

    /// Asks for the microphone and starts a take.
    pub async fn record(&self) {
        let ui = self.ui;
        if ui.phase.get_untracked().is_busy() {
            return;
        }
        ui.phase.set(Phase::AskingMic);
        let desk = self.desk().await;
        if self.closed.get() {
            return;
        }
        ui.phase.set(Phase::Idle);
        match desk {
            Ok(desk) => desk.record().await,
            Err(message) => ui.phase.set(Phase::MicError(message)),
        }
    }

    pub fn pause(&self) {
        if let Some(desk) = self.desk_now() {
            desk.pause();
        }
    }

    pub fn resume(&self) {
        if let Some(desk) = self.desk_now() {
            desk.resume();
        }
    }

    /// Stops the take; it is kept on this device and sent.
    pub fn stop(&self) {
        if let Some(desk) = self.desk_now() {
            desk.stop();
        }
    }

    /// Back to the idle screen after a saved or failed take.
    pub fn reset(&self) {
        match self.desk_now() {
            Some(desk) => desk.reset(),
            None if !self.ui.phase.get_untracked().is_busy() => self.ui.phase.set(Phase::Idle),
            None => {}
        }
    }

    /// Whether leaving now cuts a take short or loses audio kept only in memory.
    pub fn has_unsaved_audio(&self) -> bool {
        self.desk_now().is_some_and(|desk| desk.has_unsaved_audio())
    }

    /// Leaves the page: the recorder stops and the take goes on uploading.
    pub fn close(&self) {
        self.closed.set(true);
        if let Some(desk) = self.desk_now() {
            desk.close();
        }
    }

    /// The desk, if it has arrived.
    fn desk_now(&self) -> Option<Rc<dyn Engine>> {
        self.desk.borrow().peek().and_then(|d| d.as_ref().ok().cloned())
    }

    /// The desk, once it has arrived; after a failed fetch the next call
    /// fetches it again.
    async fn desk(&self) -> Result<Rc<dyn Engine>, String> {
        let load = self.desk.borrow().clone();
        let desk = load.await;
        if desk.is_err() {
            *self.desk.borrow_mut() = fetch_desk(self.session.clone(), self.ui);
        }
        desk
    }

    /// Starts the fetch at once (not when Record is pressed), and closes a
    /// desk that arrives after the page was left.
    fn open_desk_now(&self) {
        let load = self.desk.borrow().clone();
        let closed = self.closed.clone();
        spawn_local(async move {
            if let Ok(desk) = load.await
                && closed.get()
            {
                desk.close();
            }
        });
    }
}

fn fetch_desk(session: Session, ui: Ui) -> DeskLoad {
    async move {
        open_desk(session, ui)
            .await
            .map_err(|e| format!("The recorder could not be loaded ({e}). Check the connection and try again."))
    }
    .boxed_local()
    .shared()
}

/// Opens the desk, in the module of its own.
#[leptos::wasm_split::wasm_split(recorder_desk, wasm_split_path = ::leptos::wasm_split, fallible)]
fn open_desk(session: Session, ui: Ui) -> Result<Rc<dyn Engine>, leptos::wasm_split::SplitLoaderError> {
    Ok(Rc::new(Desk::open(&session, ui)))
}

struct Inner {
    outbox: Rc<Outbox>,
    ui: Ui,
    take: RefCell<Option<Rc<TakeTask>>>,
    paused: Cell<bool>,
    /// Stop was pressed: the recorder's last chunk is still on its way.
    stopping: Cell<bool>,
}

/// The interval that refreshes the clock and the level meter.
type Ticker = (i32, Closure<dyn FnMut()>);
/// The `beforeunload` listener that warns before a take is cut off.
type UnloadGuard = Closure<dyn FnMut(web_sys::BeforeUnloadEvent)>;

/// The desk: the microphone, the take and the outbox (cheap to clone).
#[derive(Clone)]
struct Desk {
    inner: Rc<Inner>,
    ticker: Rc<RefCell<Option<Ticker>>>,
    before_unload: Rc<RefCell<Option<UnloadGuard>>>,
}

impl Desk {
    /// Uses the outbox of `session` (opening the connection and recovering
    /// what the vault holds, on first use), shows it in `ui` and starts the
    /// ticker.
    fn open(session: &Session, ui: Ui) -> Desk {
        let outbox = Outbox::for_session(session);
        ui.outbox_conn.set(Some(Signal::from(outbox.conn.clone())));
        ui.outbox_notices.set(Some(Signal::from(outbox.notices.clone())));
        let inner = Rc::new(Inner {
            outbox,
            ui,
            take: RefCell::new(None),
            paused: Cell::new(false),
            stopping: Cell::new(false),
        });
        let desk = Desk { inner, ticker: Rc::default(), before_unload: Rc::default() };
        desk.start_ticker();
        desk.guard_unload();
        desk
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
        let (events, received) = mpsc::unbounded();
        let quality = crate::storage::quality();
        let capture = match Capture::start(stream, quality, move |event| {
            let _ = events.unbounded_send(event);
        })
        .await
        {
            Ok(c) => c,
            Err(e) => return ui.phase.set(Phase::MicError(e)),
        };
        ui.elapsed_ms.set(0);
        ui.peaks.update_value(LivePeaks::clear);
        ui.stopped_early.set(None);
        ui.storage_warning.set(None);
        self.inner.paused.set(false);
        self.inner.stopping.set(false);
        let task = self.inner.outbox.record(capture, received).await;
        let weak = Rc::downgrade(&self.inner);
        task.watch(move |progress| {
            if let Some(inner) = weak.upgrade() {
                inner.show(progress);
            }
        });
        *self.inner.take.borrow_mut() = Some(task);
    }

    pub fn pause(&self) {
        if let Some(take) = self.recording_take() {
            take.pause();
            self.inner.paused.set(true);
            // The clock shows where it stopped as "Paused" appears, not up
            // to a tick (100 ms) later.
            self.inner.ui.elapsed_ms.set(take.elapsed_ms());
            self.inner.ui.phase.set(Phase::Paused);
        }
    }

    pub fn resume(&self) {
        if let Some(take) = self.recording_take() {
            take.resume();
            self.inner.paused.set(false);
            self.inner.ui.phase.set(Phase::Recording);
        }
    }

    /// Stops the take; it is kept on this device and sent.
    pub fn stop(&self) {
        if let Some(take) = self.recording_take() {
            self.inner.stopping.set(true);
            take.stop();
            self.inner.ui.level.set(0.0);
            self.inner.ui.phase.set(Phase::Stopping);
        }
    }

    fn recording_take(&self) -> Option<Rc<TakeTask>> {
        self.inner.take.borrow().clone().filter(|t| t.is_recording())
    }

    /// Back to the idle screen after a saved or failed take.
    pub fn reset(&self) {
        if !self.inner.ui.phase.get_untracked().is_busy() {
            if let Some(take) = self.inner.take.borrow_mut().take() {
                take.unwatch();
            }
            self.inner.ui.phase.set(Phase::Idle);
            self.inner.ui.elapsed_ms.set(0);
            self.inner.ui.stopped_early.set(None);
        }
    }

    /// Whether leaving now cuts a take short or loses audio kept only in memory.
    pub fn has_unsaved_audio(&self) -> bool {
        self.inner.outbox.has_unkept_audio()
    }

    /// Leaves the page: the recorder stops and the take goes on uploading.
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
        if let Some(take) = self.inner.take.borrow_mut().take() {
            take.unwatch();
            take.stop();
        }
        self.inner.outbox.clear_done_notices();
    }

    fn start_ticker(&self) {
        let weak = Rc::downgrade(&self.inner);
        let closure = Closure::<dyn FnMut()>::new(move || {
            let Some(inner) = weak.upgrade() else { return };
            let Some(take) = inner.take.borrow().clone() else { return };
            if take.is_recording() {
                let (elapsed, level) = take.tick();
                inner.ui.elapsed_ms.set(elapsed);
                inner.ui.level.set(level);
                inner.ui.peaks.try_update_value(|p| p.push_level(level));
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
            if weak.upgrade().is_some_and(|inner| inner.outbox.has_unkept_audio()) {
                e.prevent_default();
                e.set_return_value("Leaving stops the recording. Leave anyway?");
            }
        });
        if let Some(w) = web_sys::window() {
            let _ = w.add_event_listener_with_callback("beforeunload", closure.as_ref().unchecked_ref());
        }
        *self.before_unload.borrow_mut() = Some(closure);
    }
}

impl Engine for Desk {
    fn record(&self) -> LocalBoxFuture<'static, ()> {
        let desk = self.clone();
        async move { Desk::record(&desk).await }.boxed_local()
    }
    fn pause(&self) {
        Desk::pause(self)
    }
    fn resume(&self) {
        Desk::resume(self)
    }
    fn stop(&self) {
        Desk::stop(self)
    }
    fn reset(&self) {
        Desk::reset(self)
    }
    fn has_unsaved_audio(&self) -> bool {
        Desk::has_unsaved_audio(self)
    }
    fn close(&self) {
        Desk::close(self)
    }
}

impl Inner {
    fn show(&self, p: &Progress) {
        let ui = self.ui;
        let phase = match &p.stage {
            Stage::Recording if self.stopping.get() => Phase::Stopping,
            Stage::Recording if self.paused.get() => Phase::Paused,
            Stage::Recording => Phase::Recording,
            Stage::Uploading => Phase::Saving,
            Stage::Saved(record) => Phase::Saved(record.clone()),
            Stage::Failed(e) => Phase::Failed(e.clone()),
        };
        if !matches!(phase, Phase::Recording | Phase::Paused) {
            ui.level.try_set(0.0);
            ui.elapsed_ms.try_set(p.duration_ms.max(ui.elapsed_ms.try_get_untracked().unwrap_or(0)));
        }
        if ui.phase.try_get_untracked().as_ref() != Some(&phase) {
            ui.phase.try_set(phase);
        }
        ui.sent_bytes.try_set(p.sent_bytes);
        ui.unsent_bytes.try_set(p.recorded_bytes.saturating_sub(p.sent_bytes));
        ui.unkept_bytes.try_set(p.unkept_bytes);
        ui.stopped_early.try_set(p.stopped_early.clone());
        ui.storage_warning.try_set(p.storage_warning.clone());
    }
}
