//! Socket.IO: authenticates the handshake, decodes events and calls the
//! `recording` module. It owns no recording logic.
//!
//! socketioxide runs every event handler in its own task, which could reorder
//! chunks. So each handler only queues its event (synchronously, in arrival
//! order) and one worker task per socket processes the queue in order.

use std::collections::HashSet;
use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use tokio::sync::mpsc;
use uuid::Uuid;

use audiobook_wire::{
    AppendAck, AppendChunk, AppendOk, Failure, HandshakeAuth, RecordingError as WireRecordingError, ResumeAck,
    ResumeOk, ResumeRecording, StartAck, StartRecording, StopAck, StopOk, StopRecording, events, monostate,
};

mod payload;

use crate::AppState;
use crate::db::UserRow;
use crate::recording::RecordingError;
use payload::ChunkPayload;

type Parsed<T> = Result<T, socketioxide::ParserError>;

/// One event from the socket, queued for the socket's worker.
enum Command {
    Start(Parsed<StartRecording>, AckSender),
    Append(Result<AppendChunk, String>, AckSender),
    Resume(Parsed<ResumeRecording>, AckSender),
    /// With the time it arrived, to log how long the stop took.
    Stop(Parsed<StopRecording>, AckSender, std::time::Instant),
    Disconnect,
}

#[derive(Debug)]
struct AuthRefused(&'static str);

impl std::fmt::Display for AuthRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Registers the namespace `/` on `io`.
pub fn register(io: &SocketIo) {
    // The event handlers are registered by the handshake middleware, which
    // socketioxide runs before it acknowledges the connect: registered in the
    // connect handler (after the acknowledgement), an event the client sends
    // at once could arrive first and be dropped, with no ack ever coming.
    let connected = |s: SocketRef| {
        tracing::debug!(socket = %s.id, "socket connected");
        std::future::ready(())
    };
    io.ns("/", connected.with(authenticate));
}

/// Handshake middleware: `auth: {"token": "..."}` must name a user.
async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<HandshakeAuth>,
    State(state): State<AppState>,
) -> Result<(), AuthRefused> {
    let token =
        auth.map_err(|_| AuthRefused("Authentication required: connect with auth {\"token\": \"<token>\"}."))?.token;
    match crate::auth::user_for_token(&state.db, &token).await {
        Ok(Some(user)) => {
            register_handlers(s, state, Arc::new(user));
            Ok(())
        }
        Ok(None) => Err(AuthRefused("This token is not valid; onboard again to get a new one.")),
        Err(e) => {
            tracing::error!(error = %e, "database error during socket authentication");
            Err(AuthRefused("The server cannot check your token right now; try again."))
        }
    }
}

/// Queues the socket's events for one worker that handles them in order.
fn register_handlers(s: SocketRef, state: AppState, user: Arc<UserRow>) {
    let (tx, rx) = mpsc::unbounded_channel();
    // Handlers run synchronously here, so queue order is arrival order.
    macro_rules! queue {
        ($event:expr, |$payload:pat_param, $ack:ident| $command:expr) => {{
            let tx = tx.clone();
            s.on($event, move |$payload, $ack: AckSender| {
                let _ = tx.send($command);
                std::future::ready(())
            });
        }};
    }
    queue!(events::START_RECORDING, |TryData(req), ack| Command::Start(req, ack));
    queue!(events::APPEND_RECORDING, |ChunkPayload(chunk), ack| Command::Append(chunk, ack));
    queue!(events::RESUME_RECORDING, |TryData(req), ack| Command::Resume(req, ack));
    queue!(events::STOP_RECORDING, |TryData(req), ack| Command::Stop(req, ack, std::time::Instant::now()));
    let disconnect_tx = tx.clone();
    s.on_disconnect(move || {
        let _ = disconnect_tx.send(Command::Disconnect);
        std::future::ready(())
    });
    tokio::spawn(Worker { state, socket: s, user, current: None, attached: HashSet::new() }.run(rx));
}

/// Processes one socket's events in order.
struct Worker {
    state: AppState,
    socket: SocketRef,
    user: Arc<UserRow>,
    /// The take that original clients (no `recording_id`) append to.
    current: Option<Uuid>,
    /// Takes this socket uses; detached (their grace period starts) on disconnect.
    attached: HashSet<Uuid>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Start(req, ack) => match self.start(req).await {
                    Ok(ok) => send_ack(ack, &ok),
                    Err(e) => send_ack(ack, &e),
                },
                Command::Append(req, ack) => {
                    let reply = self.append(req).await;
                    if let AppendAck::Err(e) = &reply {
                        self.emit_error(e.recording_id, &e.error);
                    }
                    send_ack(ack, &reply);
                }
                Command::Resume(req, ack) => {
                    let reply = self.resume(req).await;
                    send_ack(ack, &reply);
                }
                Command::Stop(req, ack, arrived) => {
                    let reply = self.stop(req).await;
                    tracing::debug!(elapsed_ms = arrived.elapsed().as_millis() as u64, "stop-recording answered");
                    match &reply {
                        StopAck::Ok(ok) => {
                            if let Err(e) = self.socket.emit(events::RECORDING_SAVED, &ok.record) {
                                tracing::debug!(error = %e, "cannot emit recording-saved");
                            }
                        }
                        StopAck::Err(e) => self.emit_error(e.recording_id, &e.error),
                    }
                    send_ack(ack, &reply);
                }
                Command::Disconnect => break,
            }
        }
        for id in self.attached.drain() {
            self.state.recordings.detach(id).await;
        }
        tracing::debug!(socket = %self.socket.id, user_id = %self.user.id, "socket worker ended");
    }

    fn emit_error(&self, recording_id: Option<Uuid>, error: &str) {
        let _ =
            self.socket.emit(events::RECORDING_ERROR, &WireRecordingError { recording_id, error: error.to_string() });
    }

    async fn use_recording(&mut self, id: Uuid) {
        self.current = Some(id);
        if self.attached.insert(id) {
            self.state.recordings.attach(id).await;
        }
    }

    async fn start(&mut self, req: Parsed<StartRecording>) -> Result<StartAck, Failure> {
        let req = req.map_err(|e| {
            Failure::new(format!("start-recording needs {{\"mime_type\": string, \"name\"?: string}} ({e})."))
        })?;
        let id = self
            .state
            .recordings
            .open(self.user.id, &req.mime_type, req.name.as_deref())
            .await
            .map_err(|e| failure(&e, None))?;
        self.use_recording(id).await;
        Ok(StartAck { ok: true, recording_id: id })
    }

    async fn append(&mut self, req: Result<AppendChunk, String>) -> AppendAck {
        let chunk = match req {
            Ok(c) => c,
            Err(e) => {
                return AppendAck::Err(Failure::new(format!(
                    "append-recording needs {{\"data\": binary, \"final\": bool, \"seq\"?: int, \"recording_id\"?: uuid}} ({e})."
                )));
            }
        };
        let id = match chunk.recording_id.or(self.current) {
            Some(id) => id,
            None if chunk.data.is_none() => {
                return AppendAck::Err(Failure::new("There is no recording to end on this connection."));
            }
            // Original clients: the first chunk opens the socket's take.
            None => {
                let mime = chunk.mime_type.as_deref().unwrap_or("audio/webm");
                match self.state.recordings.open(self.user.id, mime, None).await {
                    Ok(id) => id,
                    Err(e) => return AppendAck::Err(failure(&e, None)),
                }
            }
        };
        let Some(data) = chunk.data else {
            if chunk.is_final {
                // `{"data": null, "final": true}` marks the end; stop saves it.
                return match self.state.recordings.resume(self.user.id, id).await {
                    Ok(p) => {
                        self.use_recording(id).await;
                        AppendAck::Ok(AppendOk {
                            ok: monostate::True,
                            recording_id: id,
                            seq: p.next_seq.saturating_sub(1),
                            received_bytes: p.received_bytes,
                        })
                    }
                    Err(e) => AppendAck::Err(failure(&e, Some(id))),
                };
            }
            return AppendAck::Err(Failure {
                recording_id: Some(id),
                ..Failure::new("This chunk has no data: send the audio as a binary `data` field.")
            });
        };
        match self.state.recordings.append(self.user.id, id, chunk.seq, data, chunk.peaks).await {
            Ok(p) => {
                self.use_recording(id).await;
                AppendAck::Ok(AppendOk {
                    ok: monostate::True,
                    recording_id: id,
                    seq: p.seq,
                    received_bytes: p.received_bytes,
                })
            }
            Err(e) => {
                if matches!(e, RecordingError::Gap { .. } | RecordingError::RecordingTooLarge { .. }) {
                    tracing::debug!(recording_id = %id, error = %e, "chunk refused");
                }
                AppendAck::Err(failure(&e, Some(id)))
            }
        }
    }

    async fn resume(&mut self, req: Parsed<ResumeRecording>) -> ResumeAck {
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                return ResumeAck::Err(Failure::new(format!(
                    "resume-recording needs {{\"recording_id\": uuid}} ({e})."
                )));
            }
        };
        match self.state.recordings.resume(self.user.id, req.recording_id).await {
            Ok(p) => {
                self.use_recording(req.recording_id).await;
                ResumeAck::Ok(ResumeOk {
                    ok: monostate::True,
                    recording_id: req.recording_id,
                    next_seq: p.next_seq,
                    received_bytes: p.received_bytes,
                })
            }
            Err(e) => ResumeAck::Err(failure(&e, Some(req.recording_id))),
        }
    }

    async fn stop(&mut self, req: Parsed<StopRecording>) -> StopAck {
        let req = match req {
            Ok(r) => r,
            Err(e) => {
                return StopAck::Err(Failure::new(format!(
                    "stop-recording needs {{\"user_id\": uuid, \"recording_id\"?: uuid, \"chunks\"?: int}} ({e})."
                )));
            }
        };
        if req.user_id.is_some_and(|u| u != self.user.id) {
            return StopAck::Err(Failure::new("user_id is not the user of this connection's token."));
        }
        let Some(id) = req.recording_id.or(self.current) else {
            return StopAck::Err(Failure::new("There is no recording to stop on this connection."));
        };
        match self.state.recordings.stop(self.user.id, id, req.chunks).await {
            Ok(row) => {
                if self.current == Some(id) {
                    self.current = None;
                }
                self.attached.remove(&id);
                StopAck::Ok(StopOk { ok: monostate::True, record: self.state.links.record(&row) })
            }
            Err(e) => StopAck::Err(failure(&e, Some(id))),
        }
    }
}

fn failure(e: &RecordingError, recording_id: Option<Uuid>) -> Failure {
    Failure { ok: monostate::False, error: e.to_string(), next_seq: e.next_seq(), recording_id }
}

fn send_ack<T: serde::Serialize + ?Sized>(ack: AckSender, reply: &T) {
    if let Err(e) = ack.send(reply) {
        tracing::debug!(error = %e, "cannot send ack");
    }
}
