//! The outbox: the app's connection for recordings and every take on its
//! way to the server, for as long as the app is open. Pages come and go (a
//! take stopped on the recorder goes on uploading while `/records` is
//! open); the outbox is made for the signed-in user on first use.
//!
//! When the app opens, when the connection comes back, when the browser
//! says it is online again and when the page becomes visible, it looks in
//! the vault for takes that no page is handling (their lock is free: the
//! page that recorded them closed, reloaded or crashed) and recovers them
//! without asking, saying what it did in [`Outbox::notices`].

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use futures::FutureExt;
use futures::channel::mpsc;
use futures::future::{LocalBoxFuture, Shared};
use leptos::prelude::*;
use uuid::Uuid;

use super::capture::{Capture, CaptureEvent};
use super::lifecycle::{self, Listener};
use super::locks::{self, Acquired};
use super::recovery::{self, Triage, Why};
use super::take::{Env, Origin, Stage, TakeTask};
use super::vault::Vault;
use crate::format;
use crate::socket::{Socket, SocketEvent};
use crate::storage::Session;

/// The connection as pages show it.
#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    Connecting,
    Online,
    /// Dropped or not reachable; socket.io-client keeps trying.
    Offline,
    /// The server refused this session (for example an unknown token).
    Refused(String),
}

/// How a notice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Under way, or waiting for the connection.
    Pending,
    Done,
    Problem,
}

/// A line about a take the person did not just record on this page.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The take's local id.
    pub key: Uuid,
    pub kind: NoticeKind,
    pub text: String,
}

/// Takes another page holds are looked at again this often.
const RESCAN_MS: i32 = 5_000;
/// Notices kept (oldest go first).
const MAX_NOTICES: usize = 6;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    Idle,
    Running,
    /// Asked again while running: run once more.
    Again,
}

type VaultFuture = Shared<LocalBoxFuture<'static, Result<Rc<Vault>, String>>>;

pub struct Outbox {
    session: Session,
    socket: Rc<Socket>,
    vault: VaultFuture,
    takes: RefCell<Vec<Rc<TakeTask>>>,
    pub conn: ArcRwSignal<Conn>,
    pub notices: ArcRwSignal<Vec<Notice>>,
    /// Counts takes saved since the app opened (a list can refresh on it).
    pub saved: ArcRwSignal<u64>,
    scan: Cell<Scan>,
    rescan_timer: Cell<Option<i32>>,
    _listeners: RefCell<Vec<Listener>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Outbox>>> = const { RefCell::new(None) };
}

/// The lock a page holds while it records or uploads take `id`.
fn lock_name(id: Uuid) -> String {
    format!("audiobook-take-{id}")
}

/// The outbox of `session` for a page that only shows what it does (the
/// records page), in a module of its own (wasm-split): that page draws
/// without the uploader, the vault and the socket, and they follow. Its
/// count of saved takes; an error where the module could not be fetched.
#[leptos::wasm_split::wasm_split(outbox, wasm_split_path = ::leptos::wasm_split, fallible)]
pub fn open_later(session: Session) -> Result<ArcRwSignal<u64>, leptos::wasm_split::SplitLoaderError> {
    Ok(Outbox::for_session(&session).saved.clone())
}

impl Outbox {
    /// The outbox of `session`, opened (and recovery started) on first use.
    pub fn for_session(session: &Session) -> Rc<Outbox> {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if let Some(outbox) = current.as_ref().filter(|o| o.session == *session) {
                return outbox.clone();
            }
            if let Some(old) = current.take() {
                old.close();
            }
            let outbox = Outbox::open(session.clone());
            *current = Some(outbox.clone());
            outbox
        })
    }

    fn open(session: Session) -> Rc<Outbox> {
        let vault: VaultFuture = async {
            match Vault::open().await {
                Ok(v) => Ok(Rc::new(v)),
                Err(e) => {
                    web_sys::console::warn_1(&format!("AudioBook: no vault on this device: {e}").into());
                    Err(e.to_string())
                }
            }
        }
        .boxed_local()
        .shared();
        let outbox = Rc::new_cyclic(|weak: &Weak<Outbox>| {
            let on_event = weak.clone();
            let socket = Socket::connect(&crate::config::server_url(), &session.token, move |event| {
                if let Some(outbox) = on_event.upgrade() {
                    outbox.on_socket_event(event);
                }
            });
            Outbox {
                session,
                socket: Rc::new(socket),
                vault,
                takes: RefCell::default(),
                conn: ArcRwSignal::new(Conn::Connecting),
                notices: ArcRwSignal::new(Vec::new()),
                saved: ArcRwSignal::new(0),
                scan: Cell::new(Scan::Idle),
                rescan_timer: Cell::new(None),
                _listeners: RefCell::default(),
            }
        });
        let weak = Rc::downgrade(&outbox);
        let come_back = move || {
            if let Some(outbox) = weak.upgrade() {
                outbox.nudge_all();
                outbox.scan_soon();
            }
        };
        let visible = {
            let come_back = come_back.clone();
            move || {
                if !lifecycle::page_hidden() {
                    come_back();
                }
            }
        };
        let listeners =
            [lifecycle::on_window("online", come_back), lifecycle::on_document("visibilitychange", visible)];
        *outbox._listeners.borrow_mut() = listeners.into_iter().flatten().collect();
        outbox.scan_soon();
        outbox
    }

    fn close(&self) {
        for task in self.takes.borrow_mut().drain(..) {
            task.abandon();
        }
        self._listeners.borrow_mut().clear();
        if let Some(id) = self.rescan_timer.take()
            && let Some(w) = web_sys::window()
        {
            w.clear_timeout_with_handle(id);
        }
    }

    async fn env(&self) -> Env {
        let vault = self.vault.clone().await;
        Env {
            session: self.session.clone(),
            socket: self.socket.clone(),
            vault_problem: vault.as_ref().err().cloned(),
            vault: vault.ok(),
        }
    }

    fn handles(&self, local_id: Uuid) -> bool {
        self.takes.borrow().iter().any(|t| t.local_id == local_id)
    }

    /// A take this page records now: `capture` is running and sends its
    /// events on `events`.
    pub async fn record(
        self: &Rc<Self>,
        capture: Capture,
        events: mpsc::UnboundedReceiver<CaptureEvent>,
    ) -> Rc<TakeTask> {
        let local_id = Uuid::new_v4();
        let lock = match locks::try_lock(&lock_name(local_id)).await {
            Acquired::Held(lock) => Some(lock),
            Acquired::Busy | Acquired::Unsupported => None,
        };
        let task = TakeTask::live(self.env().await, capture, events, lock, local_id).await;
        self.adopt(task.clone());
        task
    }

    /// Whether closing the page now would lose audio: a take is being
    /// recorded, or audio is neither in the vault nor on the server.
    pub fn has_unkept_audio(&self) -> bool {
        self.takes.borrow().iter().any(|t| t.is_recording() || t.progress().unkept_bytes > 0)
    }

    /// Drops the notices of takes that are done (the page showing them closes).
    pub fn clear_done_notices(&self) {
        self.notices.update(|list| list.retain(|n| n.kind == NoticeKind::Pending));
    }

    fn adopt(self: &Rc<Self>, task: Rc<TakeTask>) {
        let weak = Rc::downgrade(self);
        let ended = Rc::downgrade(&task);
        task.on_end(move || {
            if let (Some(outbox), Some(task)) = (weak.upgrade(), ended.upgrade()) {
                outbox.ended(&task);
            }
        });
        self.takes.borrow_mut().push(task.clone());
        if let Origin::Recovered(_) = task.origin {
            self.notice_pending(&task);
        }
    }

    fn ended(&self, task: &TakeTask) {
        self.takes.borrow_mut().retain(|t| t.local_id != task.local_id);
        let progress = task.progress();
        if let Stage::Saved(_) = progress.stage {
            self.saved.update(|n| *n += 1);
        }
        let notice = match (task.origin, &progress.stage) {
            (Origin::Recovered(why), Stage::Saved(r)) => {
                Some((NoticeKind::Done, recovery::recovered_words(&r.name, r.duration_ms, why)))
            }
            (Origin::Recovered(_), Stage::Failed(e)) => {
                Some((NoticeKind::Problem, recovery::failed_words(progress.duration_ms, e)))
            }
            // A take recorded here whose page was left before it was saved.
            (Origin::Live, Stage::Saved(r)) if !task.is_watched() => {
                Some((NoticeKind::Done, format!("Saved “{}” ({}).", r.name, format::duration_ms(r.duration_ms))))
            }
            (Origin::Live, Stage::Failed(e)) if !task.is_watched() => {
                Some((NoticeKind::Problem, recovery::failed_words(progress.duration_ms, e)))
            }
            _ => None,
        };
        match notice {
            Some((kind, text)) => self.set_notice(task.local_id, kind, text),
            None => self.notices.update(|list| list.retain(|n| n.key != task.local_id)),
        }
    }

    fn notice_pending(&self, task: &TakeTask) {
        let connected = self.conn.with_untracked(|c| *c == Conn::Online);
        self.set_notice(
            task.local_id,
            NoticeKind::Pending,
            recovery::pending_words(task.progress().duration_ms, connected),
        );
    }

    fn set_notice(&self, key: Uuid, kind: NoticeKind, text: String) {
        self.notices.update(|list| {
            match list.iter_mut().find(|n| n.key == key) {
                Some(n) => {
                    n.kind = kind;
                    n.text = text;
                }
                None => list.push(Notice { key, kind, text }),
            }
            while list.len() > MAX_NOTICES {
                list.remove(0);
            }
        });
    }

    fn nudge_all(&self) {
        for task in self.takes.borrow().iter() {
            task.nudge();
        }
    }

    fn on_socket_event(self: &Rc<Self>, event: SocketEvent) {
        match event {
            SocketEvent::Connected => {
                self.conn.set(Conn::Online);
                // A new connection: each take asks where the server stands first.
                for task in self.takes.borrow().iter() {
                    task.connection_lost();
                    task.nudge();
                }
                self.refresh_pending_notices();
                self.scan_soon();
            }
            SocketEvent::Disconnected | SocketEvent::Reconnecting => {
                if !matches!(self.conn.get_untracked(), Conn::Refused(_)) {
                    self.conn.set(Conn::Offline);
                }
                for task in self.takes.borrow().iter() {
                    task.connection_lost();
                }
                self.refresh_pending_notices();
            }
            SocketEvent::ConnectError { message } => {
                if self.socket.will_reconnect() {
                    self.conn.set(Conn::Offline);
                } else {
                    let message = if message.is_empty() { "the server refused this session".into() } else { message };
                    self.conn.set(Conn::Refused(message));
                }
                self.refresh_pending_notices();
            }
            // Every request of a take has its own answer, and a refusal is
            // handled where it is answered; these events (sent for the
            // original clients) only hurry a take whose answer was lost.
            SocketEvent::RecordingSaved(record) => {
                for task in self.takes.borrow().iter().filter(|t| t.recording_id() == Some(record.id)) {
                    task.nudge();
                }
            }
            SocketEvent::RecordingError(e) => {
                web_sys::console::info_1(&format!("AudioBook: the server refused a request: {}", e.error).into());
            }
        }
    }

    fn refresh_pending_notices(&self) {
        let recovered: Vec<_> =
            self.takes.borrow().iter().filter(|t| matches!(t.origin, Origin::Recovered(_))).cloned().collect();
        for task in recovered {
            if !task.is_done() {
                self.notice_pending(&task);
            }
        }
    }

    /// Looks in the vault soon (once at a time).
    fn scan_soon(self: &Rc<Self>) {
        match self.scan.get() {
            Scan::Idle => {
                self.scan.set(Scan::Running);
                wasm_bindgen_futures::spawn_local(self.clone().scan());
            }
            Scan::Running | Scan::Again => self.scan.set(Scan::Again),
        }
    }

    async fn scan(self: Rc<Self>) {
        loop {
            let others_hold_some = self.scan_once().await;
            if self.scan.get() == Scan::Again {
                self.scan.set(Scan::Running);
                continue;
            }
            self.scan.set(Scan::Idle);
            if others_hold_some {
                self.rescan_later();
            }
            return;
        }
    }

    fn rescan_later(self: &Rc<Self>) {
        let Some(window) = web_sys::window() else { return };
        if self.rescan_timer.get().is_some() {
            return;
        }
        let weak = Rc::downgrade(self);
        let callback = wasm_bindgen::closure::Closure::once_into_js(move || {
            if let Some(outbox) = weak.upgrade() {
                outbox.rescan_timer.set(None);
                outbox.scan_soon();
            }
        });
        if let Ok(id) = window.set_timeout_with_callback_and_timeout_and_arguments_0(
            wasm_bindgen::JsCast::unchecked_ref(&callback),
            RESCAN_MS,
        ) {
            self.rescan_timer.set(Some(id));
        }
    }

    /// Recovers the takes of the vault no page handles; true when some are
    /// held by another page (to look again later).
    async fn scan_once(self: &Rc<Self>) -> bool {
        let Ok(vault) = self.vault.clone().await else { return false };
        let takes = match vault.takes().await {
            Ok(t) => t,
            Err(e) => {
                web_sys::console::warn_1(&format!("AudioBook: cannot read the vault: {e}").into());
                return false;
            }
        };
        let mut others_hold_some = false;
        for meta in takes {
            if meta.user_id != self.session.user_id || self.handles(meta.local_id) {
                continue;
            }
            let lock = match locks::try_lock(&lock_name(meta.local_id)).await {
                Acquired::Held(lock) => Some(lock),
                Acquired::Busy => {
                    others_hold_some = true;
                    continue;
                }
                Acquired::Unsupported if recovery::looks_abandoned(&meta, lifecycle::now_ms()) => None,
                Acquired::Unsupported => {
                    others_hold_some = true;
                    continue;
                }
            };
            if self.handles(meta.local_id) {
                continue;
            }
            match recovery::triage(&meta, self.session.user_id) {
                Triage::Discard => {
                    let _ = vault.remove(meta.local_id).await;
                }
                Triage::Recover(why) => self.recover(meta, why, lock).await,
                Triage::OtherUser => {}
            }
        }
        others_hold_some
    }

    async fn recover(self: &Rc<Self>, meta: super::vault::TakeMeta, why: Why, lock: Option<locks::TakeLock>) {
        let task = TakeTask::recovered(self.env().await, meta, why, lock).await;
        self.adopt(task);
    }
}
