//! One take on its way to the server: recorded on this page (live), or
//! found in the vault when the app opened (recovered).
//!
//! Every chunk goes into the vault before it is sent (a chunk the vault
//! refuses, because the device's storage is full, stays in memory and the
//! recorder stops there). One pump task per take does the requests of
//! [`Upload`] one at a time over the shared socket, reading each chunk back
//! from the vault; once the server saved the take, the vault forgets it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use audiobook_wire::{AppendAck, Record, ResumeAck, StopAck, StopRecording};
use futures::StreamExt;
use futures::channel::mpsc;
use uuid::Uuid;

use super::capture::{Capture, CaptureEvent};
use super::clock::Clock;
use super::locks::TakeLock;
use super::queue::Chunk;
use super::recovery::Why;
use super::upload::{Outcome, Step, Upload};
use super::vault::{TakeMeta, Vault, VaultError};
use super::{lifecycle, quota};
use crate::socket::{EmitError, Socket};
use crate::storage::Session;
use crate::waveform::PeakCollector;

/// How the take came to be uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Recorded on this page now.
    Live,
    /// Found in the vault when the app opened.
    Recovered(Why),
}

/// Where a take stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// The recorder runs (or is paused).
    Recording,
    /// Stopped: being sent, or waiting for the connection.
    Uploading,
    Saved(Record),
    /// The server refused it for good; the vault keeps it.
    Failed(String),
}

/// What a page shows of a take.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub stage: Stage,
    /// Bytes recorded.
    pub recorded_bytes: u64,
    /// Bytes the server has.
    pub sent_bytes: u64,
    /// Recorded bytes that are neither in the vault nor on the server: lost
    /// if the page closes now.
    pub unkept_bytes: u64,
    /// Media time recorded (pauses excluded).
    pub duration_ms: u64,
    /// Why the recorder stopped before it was asked to, in words.
    pub stopped_early: Option<String>,
    /// A warning about room on this device, in words.
    pub storage_warning: Option<String>,
}

/// The recorder of a live take.
struct Live {
    capture: Option<Capture>,
    clock: Clock,
    /// Level readings since the last chunk, for the waveform.
    peaks: PeakCollector,
}

/// What the take needs around it (shared by the outbox's takes).
#[derive(Clone)]
pub struct Env {
    pub session: Session,
    pub socket: Rc<Socket>,
    /// `None` where the browser keeps nothing (IndexedDB unavailable): the
    /// take then lives in memory only.
    pub vault: Option<Rc<Vault>>,
    /// Why there is no vault, in the browser's words.
    pub vault_problem: Option<String>,
}

type Listener = Rc<dyn Fn(&Progress)>;

/// One take being recorded and/or uploaded.
pub struct TakeTask {
    pub local_id: Uuid,
    pub origin: Origin,
    env: Env,
    meta: RefCell<TakeMeta>,
    upload: RefCell<Upload>,
    /// The vault refused a chunk: this and every later chunk stay in
    /// memory, so the vault keeps a gapless start of the take.
    vault_closed: Cell<bool>,
    /// Chunks not in the vault, by seq.
    unkept: RefCell<BTreeMap<u64, Chunk>>,
    live: RefCell<Option<Live>>,
    progress: RefCell<Progress>,
    listeners: RefCell<Vec<Listener>>,
    /// Told once the take is saved or refused (the outbox lets it go).
    on_end: RefCell<Option<Box<dyn FnOnce()>>>,
    wake: mpsc::UnboundedSender<()>,
    _lock: Option<TakeLock>,
}

impl TakeTask {
    /// A new take recorded by `capture`, whose events arrive on `events`.
    /// Returns once the take is in the vault (or known not to be).
    pub async fn live(
        env: Env,
        capture: Capture,
        events: mpsc::UnboundedReceiver<CaptureEvent>,
        lock: Option<TakeLock>,
        local_id: Uuid,
    ) -> Rc<TakeTask> {
        let meta = TakeMeta::new(env.session.user_id, local_id, capture.mime_type(), lifecycle::now_ms());
        let live = Live { capture: Some(capture), clock: Clock::start(now()), peaks: PeakCollector::default() };
        let (task, wakes) = TakeTask::new(env, meta, Origin::Live, Upload::new(None, 0, false, Vec::new()), lock);
        *task.live.borrow_mut() = Some(live);
        task.set_progress(|p| p.stage = Stage::Recording);
        // Ask the browser to keep the vault under storage pressure, and say
        // early when there is little room.
        quota::ask_to_persist();
        let meta = task.meta.borrow().clone();
        match &task.env.vault {
            Some(vault) => {
                if let Err(e) = vault.save(&meta).await {
                    task.vault_refused(&e);
                }
            }
            None => {
                let why = task.env.vault_problem.clone().unwrap_or_default();
                task.set_progress(|p| p.storage_warning = Some(unkept_words(&why)));
            }
        }
        task.warn_when_short_of_room().await;
        wasm_bindgen_futures::spawn_local(task.clone().keep_chunks(events));
        wasm_bindgen_futures::spawn_local(task.clone().pump(wakes));
        task
    }

    /// A take found in the vault, uploaded and finished now.
    pub async fn recovered(env: Env, mut meta: TakeMeta, why: Why, lock: Option<TakeLock>) -> Rc<TakeTask> {
        if !meta.finished {
            // Its recorder is gone: the take ends with what the vault kept.
            meta.finished = true;
            if let Some(vault) = &env.vault {
                let _ = vault.save(&meta).await;
            }
        }
        let upload = Upload::new(meta.recording_id, meta.chunks, true, meta.replaces.clone());
        let (task, wakes) = TakeTask::new(env, meta, Origin::Recovered(why), upload, lock);
        let bytes = task.meta.borrow().bytes;
        let duration_ms = task.meta.borrow().duration_ms;
        task.set_progress(|p| {
            p.stage = Stage::Uploading;
            p.recorded_bytes = bytes;
            p.duration_ms = duration_ms;
        });
        wasm_bindgen_futures::spawn_local(task.clone().pump(wakes));
        task
    }

    fn new(
        env: Env,
        meta: TakeMeta,
        origin: Origin,
        upload: Upload,
        lock: Option<TakeLock>,
    ) -> (Rc<TakeTask>, mpsc::UnboundedReceiver<()>) {
        let (wake, wakes) = mpsc::unbounded();
        let vault_missing = env.vault.is_none();
        let task = Rc::new(TakeTask {
            local_id: meta.local_id,
            origin,
            env,
            meta: RefCell::new(meta),
            upload: RefCell::new(upload),
            vault_closed: Cell::new(vault_missing),
            unkept: RefCell::default(),
            live: RefCell::new(None),
            progress: RefCell::new(Progress {
                stage: Stage::Uploading,
                recorded_bytes: 0,
                sent_bytes: 0,
                unkept_bytes: 0,
                duration_ms: 0,
                stopped_early: None,
                storage_warning: None,
            }),
            listeners: RefCell::default(),
            on_end: RefCell::new(None),
            wake,
            _lock: lock,
        });
        (task, wakes)
    }

    /// The server's id of the take, once it has one.
    pub fn recording_id(&self) -> Option<Uuid> {
        self.upload.borrow().recording_id()
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Calls `f` with every change of the take's progress (and now).
    pub fn watch(&self, f: impl Fn(&Progress) + 'static) {
        f(&self.progress.borrow());
        self.listeners.borrow_mut().push(Rc::new(f));
    }

    /// Calls `f` once the take is saved or refused.
    pub fn on_end(&self, f: impl FnOnce() + 'static) {
        *self.on_end.borrow_mut() = Some(Box::new(f));
    }

    /// Whether a page shows this take.
    pub fn is_watched(&self) -> bool {
        !self.listeners.borrow().is_empty()
    }

    pub fn unwatch(&self) {
        self.listeners.borrow_mut().clear();
    }

    fn set_progress(&self, f: impl FnOnce(&mut Progress)) {
        let now = {
            let mut p = self.progress.borrow_mut();
            f(&mut p);
            p.clone()
        };
        // A listener may read or watch the take: no borrow is held while it runs.
        let listeners = self.listeners.borrow().clone();
        for listener in listeners {
            listener(&now);
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.progress.borrow().stage, Stage::Saved(_) | Stage::Failed(_))
    }

    /// The recorder runs or is paused.
    pub fn is_recording(&self) -> bool {
        self.live.borrow().as_ref().is_some_and(|l| l.capture.is_some())
    }

    /// Wakes the pump (the connection came back, the page is visible again).
    pub fn nudge(&self) {
        let _ = self.wake.unbounded_send(());
    }

    /// The app lets this take go without finishing it (the user signed
    /// out): its pump ends; the vault keeps it.
    pub fn abandon(&self) {
        self.stop();
        self.wake.close_channel();
    }

    /// The connection dropped.
    pub fn connection_lost(&self) {
        self.upload.borrow_mut().connection_lost();
    }

    pub fn pause(&self) {
        if let Some(live) = self.live.borrow_mut().as_mut()
            && let Some(c) = &live.capture
        {
            c.pause();
            live.clock.pause(now());
        }
    }

    pub fn resume(&self) {
        if let Some(live) = self.live.borrow_mut().as_mut()
            && let Some(c) = &live.capture
        {
            c.resume();
            live.clock.resume(now());
        }
    }

    /// Stops the recorder: its last chunk follows, then the take finishes.
    pub fn stop(&self) {
        if let Some(live) = self.live.borrow_mut().as_mut()
            && let Some(c) = live.capture.as_mut()
        {
            live.clock.stop(now());
            c.stop();
        }
    }

    /// The media time recorded so far (it stands still while paused).
    pub fn elapsed_ms(&self) -> u64 {
        match self.live.borrow().as_ref() {
            Some(live) => live.clock.elapsed_ms(now()),
            None => self.progress.borrow().duration_ms,
        }
    }

    /// The media time recorded and the input level now (0..=1), read ten
    /// times a second by the page; each reading is a waveform peak.
    pub fn tick(&self) -> (u64, f64) {
        let mut live = self.live.borrow_mut();
        let Some(live) = live.as_mut() else { return (self.progress.borrow().duration_ms, 0.0) };
        let elapsed = live.clock.elapsed_ms(now());
        let level = match live.capture.as_mut() {
            Some(c) if !live.clock.is_paused() => {
                let level = c.level();
                live.peaks.push_level(level);
                level
            }
            _ => 0.0,
        };
        (elapsed, level)
    }

    fn vault_refused(&self, e: &VaultError) {
        if self.vault_closed.replace(true) {
            return;
        }
        web_sys::console::warn_1(&format!("AudioBook: the vault refused the take: {e}").into());
        let why = match e {
            VaultError::Full => "This device's storage for AudioBook is full, so the recording stopped here. \
                                 Everything up to this point is kept and being saved; keep this page open until \
                                 it is uploaded."
                .to_string(),
            VaultError::Unavailable(why) => unkept_words(why),
        };
        if matches!(e, VaultError::Full) {
            // Never silently truncated: the take ends cleanly here.
            self.set_progress(|p| p.stopped_early = Some(why));
            self.stop();
        } else {
            self.set_progress(|p| p.storage_warning = Some(why));
        }
    }

    async fn warn_when_short_of_room(&self) {
        // Bytes a second: the 128 kbit/s browsers record, or a lossless
        // take's 16-bit samples (at 48 kHz: the rate is not known here).
        let per_second = if self.meta.borrow().mime_type == audiobook_wire::lossless::MIME_TYPE {
            audiobook_wire::lossless::bytes_per_second(48_000) as f64
        } else {
            16_000.0
        };
        // About two minutes of recording.
        let low = per_second * 120.0;
        if let Some(room) = quota::estimate().await
            && room.free() < low
        {
            let minutes = (room.free() / per_second / 60.0).floor();
            let text = format!(
                "Little room is left on this device for recordings ({}, about {minutes} min); the recording \
                 stops when it is full.",
                crate::format::size(room.free() as u64)
            );
            self.set_progress(|p| p.storage_warning = Some(text));
        }
    }

    /// Keeps the recorder's chunks in order: vault first, then the queue.
    async fn keep_chunks(self: Rc<Self>, mut events: mpsc::UnboundedReceiver<CaptureEvent>) {
        while let Some(event) = events.next().await {
            match event {
                CaptureEvent::Data(bytes) => self.keep_chunk(bytes).await,
                CaptureEvent::Failed(e) => {
                    self.set_progress(|p| p.stopped_early = Some(e));
                    self.stop();
                }
                CaptureEvent::Stopped => {
                    self.finish_recording().await;
                    break;
                }
            }
        }
    }

    async fn keep_chunk(&self, bytes: Vec<u8>) {
        let (duration_ms, peaks, pauses) = {
            let mut live = self.live.borrow_mut();
            match live.as_mut() {
                Some(l) => (l.clock.elapsed_ms(now()), l.peaks.take_for_chunk(), l.clock.pauses().to_vec()),
                None => (0, Vec::new(), Vec::new()),
            }
        };
        let len = bytes.len() as u64;
        let seq = self.upload.borrow().chunk_count();
        let mut kept = false;
        if !self.vault_closed.get()
            && let Some(vault) = &self.env.vault
        {
            let mut meta = self.meta.borrow().clone();
            meta.chunks = seq + 1;
            meta.bytes += len;
            meta.duration_ms = duration_ms;
            meta.paused_ms = pauses;
            meta.updated_at_ms = lifecycle::now_ms();
            match vault.add_chunk(&meta, seq, &bytes, &peaks).await {
                Ok(()) => {
                    *self.meta.borrow_mut() = meta;
                    kept = true;
                }
                Err(e) => self.vault_refused(&e),
            }
        }
        if !kept {
            let chunk = Chunk { seq, data: bytes.into(), is_final: false, peaks: peaks.into() };
            self.unkept.borrow_mut().insert(seq, chunk);
        }
        if self.upload.borrow_mut().push_chunk().is_err() {
            return; // after the end: cannot happen, the recorder stops once
        }
        self.set_progress(|p| {
            p.recorded_bytes += len;
            p.duration_ms = duration_ms;
            if !kept {
                p.unkept_bytes += len;
            }
        });
        self.nudge();
    }

    async fn finish_recording(&self) {
        let timeline = self.live.borrow().as_ref().map(|l| (l.clock.elapsed_ms(now()), l.clock.pauses().to_vec()));
        if let Some(live) = self.live.borrow_mut().as_mut() {
            live.capture = None;
        }
        self.upload.borrow_mut().finish();
        let mut meta = self.meta.borrow().clone();
        meta.finished = true;
        let duration_ms = timeline.as_ref().map(|(d, _)| *d);
        if let Some((duration, pauses)) = timeline {
            meta.duration_ms = duration;
            meta.paused_ms = pauses;
        }
        meta.updated_at_ms = lifecycle::now_ms();
        if let Some(vault) = &self.env.vault {
            let _ = vault.save(&meta).await;
        }
        *self.meta.borrow_mut() = meta;
        self.set_progress(|p| {
            p.stage = Stage::Uploading;
            if let Some(d) = duration_ms {
                p.duration_ms = d;
            }
        });
        self.nudge();
    }

    /// The chunk to send: from memory when the vault did not keep it.
    async fn chunk(&self, seq: u64, is_final: bool) -> Result<Chunk, String> {
        if let Some(chunk) = self.unkept.borrow().get(&seq) {
            return Ok(Chunk { is_final, ..chunk.clone() });
        }
        let missing = || format!("chunk {seq} of this take is missing from this device's storage");
        let vault = self.env.vault.as_ref().ok_or_else(missing)?;
        match vault.chunk(self.local_id, seq).await {
            Ok(Some(c)) => Ok(Chunk { seq, data: c.data.into(), is_final, peaks: c.peaks.into() }),
            Ok(None) => Err(missing()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Does the take's requests one at a time until it is saved or refused.
    async fn pump(self: Rc<Self>, mut wakes: mpsc::UnboundedReceiver<()>) {
        let socket = self.env.socket.clone();
        loop {
            if !socket.is_connected() {
                if wakes.next().await.is_none() {
                    return;
                }
                continue;
            }
            let step = self.upload.borrow_mut().next_step();
            let outcome = match step {
                Step::Wait => {
                    if wakes.next().await.is_none() {
                        return;
                    }
                    Outcome::Going
                }
                Step::Empty => {
                    self.forget().await;
                    return self.end(Stage::Failed("Nothing was recorded.".into()));
                }
                Step::Start => {
                    let (mime_type, name) = {
                        let m = self.meta.borrow();
                        (m.mime_type.clone(), m.name.clone())
                    };
                    match socket.start_recording(&mime_type, name.as_deref()).await {
                        Ok(Ok(id)) => {
                            self.upload.borrow_mut().started(id);
                            self.remember(|m| m.recording_id = Some(id)).await;
                            Outcome::Going
                        }
                        Ok(Err(f)) if f.retry_after_ms.is_some() => {
                            crate::browser::sleep_ms(f.retry_after_ms.unwrap_or(1000)).await;
                            Outcome::Going
                        }
                        Ok(Err(f)) => Outcome::Failed(format!("The server could not start a recording: {}", f.error)),
                        Err(EmitError::NoAnswer) => Outcome::Going,
                        Err(e) => Outcome::Failed(e.to_string()),
                    }
                }
                Step::Resume { recording_id } => match socket.resume(recording_id).await {
                    Ok(ResumeAck::Ok(ok)) => self.upload.borrow_mut().resumed(ok.next_seq, ok.received_bytes),
                    // Busy, its database or disk unavailable, or the spool
                    // held by another instance: ask again later.
                    Ok(ResumeAck::Err(f)) if f.retry_after_ms.is_some() => {
                        crate::browser::sleep_ms(f.retry_after_ms.unwrap_or(1000)).await;
                        Outcome::Going
                    }
                    Ok(ResumeAck::Err(_)) => {
                        self.upload.borrow_mut().resume_refused();
                        Outcome::Going
                    }
                    Err(EmitError::NoAnswer) => Outcome::Going,
                    Err(e) => Outcome::Failed(e.to_string()),
                },
                Step::Send { recording_id, seq, is_final } => {
                    let chunk = match self.chunk(seq, is_final).await {
                        Ok(c) => c,
                        Err(e) => {
                            let message = format!("The recording cannot be sent: {e}.");
                            return self.end(Stage::Failed(message));
                        }
                    };
                    let mime_type = self.meta.borrow().mime_type.clone();
                    match socket.append(recording_id, &mime_type, &chunk).await {
                        Ok(AppendAck::Ok(ok)) => self.upload.borrow_mut().acked(ok.seq, ok.received_bytes),
                        // Nothing sent before is affected: ask where it
                        // stands and go on after the delay.
                        Ok(AppendAck::Err(f)) if f.retry_after_ms.is_some() => {
                            crate::browser::sleep_ms(f.retry_after_ms.unwrap_or(1000)).await;
                            self.upload.borrow_mut().connection_lost();
                            Outcome::Going
                        }
                        Ok(AppendAck::Err(f)) => {
                            let refused = self.upload.borrow_mut().append_refused(seq, f.next_seq, &f.error);
                            match refused {
                                Outcome::Failed(e) => Outcome::Failed(format!("The server refused the audio: {e}")),
                                other => other,
                            }
                        }
                        Err(EmitError::NoAnswer) => {
                            self.upload.borrow_mut().connection_lost();
                            Outcome::Going
                        }
                        Err(e) => Outcome::Failed(e.to_string()),
                    }
                }
                Step::Stop { recording_id, chunks } => {
                    // The page's timeline: the server cuts the pauses from a
                    // file whose recorder kept recording through them.
                    let (paused_ms, recorded_ms) = {
                        let m = self.meta.borrow();
                        ((!m.paused_ms.is_empty()).then(|| m.paused_ms.clone()), Some(m.duration_ms))
                    };
                    let stop = StopRecording {
                        user_id: Some(self.env.session.user_id),
                        recording_id: Some(recording_id),
                        chunks: Some(chunks),
                        paused_ms,
                        recorded_ms,
                    };
                    match socket.stop(&stop).await {
                        Ok(StopAck::Ok(ok)) => self.upload.borrow_mut().stopped(ok.record),
                        // Being saved, or saving is retried on the server: ask again.
                        Ok(StopAck::Err(f)) if f.retry_after_ms.is_some() => {
                            crate::browser::sleep_ms(f.retry_after_ms.unwrap_or(1000)).await;
                            Outcome::Going
                        }
                        Ok(StopAck::Err(f)) => match self.upload.borrow_mut().stop_refused(f.next_seq, &f.error) {
                            Outcome::Failed(e) => Outcome::Failed(format!("The server could not save it: {e}")),
                            other => other,
                        },
                        Err(EmitError::NoAnswer) => {
                            self.upload.borrow_mut().connection_lost();
                            Outcome::Going
                        }
                        Err(e) => Outcome::Failed(format!("The server did not confirm the save: {e}")),
                    }
                }
            };
            let sent = self.upload.borrow().received_bytes();
            self.set_progress(|p| p.sent_bytes = sent);
            match outcome {
                Outcome::Going => {}
                Outcome::StartedOver => {
                    let replaces = self.upload.borrow().replaces().to_vec();
                    self.remember(|m| {
                        m.recording_id = None;
                        m.replaces = replaces;
                    })
                    .await;
                }
                Outcome::Saved { record, replaces } => {
                    // The complete take is saved: the partial copies it
                    // replaces go (a failure leaves them listed, nothing lost).
                    for id in replaces {
                        let _ = crate::api::delete(&self.env.session, id).await;
                    }
                    self.forget().await;
                    return self.end(Stage::Saved(*record));
                }
                Outcome::Failed(e) => return self.end(Stage::Failed(e)),
            }
        }
    }

    /// Updates the take's metadata here and in the vault.
    async fn remember(&self, f: impl FnOnce(&mut TakeMeta)) {
        let meta = {
            let mut m = self.meta.borrow_mut();
            f(&mut m);
            m.updated_at_ms = lifecycle::now_ms();
            m.clone()
        };
        if let Some(vault) = &self.env.vault {
            let _ = vault.save(&meta).await;
        }
    }

    /// The server has the take: the vault lets it go.
    async fn forget(&self) {
        if let Some(vault) = &self.env.vault
            && let Err(e) = vault.remove(self.local_id).await
        {
            web_sys::console::warn_1(&format!("AudioBook: a saved take stays in the vault: {e}").into());
        }
        self.unkept.borrow_mut().clear();
    }

    fn end(&self, stage: Stage) {
        if let Some(live) = self.live.borrow_mut().as_mut()
            && let Some(mut c) = live.capture.take()
        {
            c.stop();
        }
        self.wake.close_channel();
        let kept_only_here = matches!(stage, Stage::Failed(_));
        self.set_progress(|p| {
            p.stage = stage;
            if !kept_only_here {
                p.unkept_bytes = 0;
            }
        });
        let on_end = self.on_end.borrow_mut().take();
        if let Some(f) = on_end {
            f();
        }
    }
}

/// The warning when the vault cannot keep a take (`why`: the browser's words).
fn unkept_words(why: &str) -> String {
    format!(
        "This browser does not let AudioBook keep the recording on this device ({why}); keep this page open until \
         it is uploaded."
    )
}

fn now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}
