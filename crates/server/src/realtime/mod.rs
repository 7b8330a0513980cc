//! Socket.IO: authenticates the handshake, decodes events and calls the
//! `recording` module. It owns no recording logic.
//!
//! socketioxide runs every event handler in its own task, which could reorder
//! chunks. So each handler only queues its event (synchronously, in arrival
//! order) and one worker task per socket processes the queue in order.
//!
//! A socket's queue is bounded in events and bytes, and its user's event
//! and byte rates too: an event beyond either is answered at once with a
//! temporary refusal (`retry_after_ms`) and dropped, so a client that does
//! not wait for its acks cannot make the server hold more than a few chunks
//! for it; a socket refused again and again is disconnected rather than read
//! at full speed. Nothing already acknowledged is affected.

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
use crate::limits::{QueuedSlot, Refusals, SocketQueue};
use crate::recording::RecordingError;
use payload::ChunkPayload;

type Parsed<T> = Result<T, socketioxide::ParserError>;

/// One event from the socket, queued for the socket's worker.
enum Command {
    Start(Parsed<StartRecording>, AckSender),
    /// With the time it arrived, for the ack latency.
    Append(Result<AppendChunk, String>, AckSender, std::time::Instant),
    Resume(Parsed<ResumeRecording>, AckSender),
    /// With the time it arrived, to log how long the stop took.
    Stop(Parsed<StopRecording>, AckSender, std::time::Instant),
    Disconnect,
}

/// Events one socket may have queued, and their bytes (in chunks of the
/// largest size): a recorder waits for each ack, so it never has more than
/// a couple in the queue.
const QUEUE_EVENTS: u64 = 64;
const QUEUE_CHUNKS: u64 = 4;

/// What a socket is told when its queue or event rate is exceeded.
fn slow_down() -> Failure {
    Failure {
        retry_after_ms: Some(500),
        ..Failure::new(
            "Too many events at once on this connection: wait for the acks of earlier ones, then send again.",
        )
    }
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
            if !state.rates.allow_connect(user.id) {
                crate::telemetry::refused("connect_rate");
                return Err(AuthRefused("Too many connections in a short time; wait a moment and try again."));
            }
            let connection = Uuid::new_v4();
            let recordings = &state.recordings;
            let fresh_since = crate::db::now()
                - chrono::Duration::from_std(recordings.connection_freshness()).unwrap_or(chrono::Duration::MAX);
            let max = state.config.limits.max_sockets_per_user;
            match state.db.open_connection(connection, user.id, recordings.instance_id, max, fresh_since).await {
                Ok(true) => {}
                Ok(false) => {
                    crate::telemetry::refused("sockets_per_user");
                    tracing::info!(user_id = %user.id, max, "socket refused: too many connections");
                    return Err(AuthRefused(
                        "You have too many connections open at once; close another tab or device and try again.",
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, "database error while registering a socket");
                    return Err(AuthRefused("The server cannot check your token right now; try again."));
                }
            }
            register_handlers(s, state, Arc::new(user), connection);
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
fn register_handlers(s: SocketRef, state: AppState, user: Arc<UserRow>, connection: Uuid) {
    let (tx, rx) = mpsc::unbounded_channel::<(Command, Option<QueuedSlot>)>();
    let queue = SocketQueue::new(QUEUE_EVENTS, QUEUE_CHUNKS * state.config.limits.max_chunk_bytes as u64);
    let refusals = Arc::new(Refusals::default());
    // Handlers run synchronously here, so queue order is arrival order. The
    // channel itself is unbounded; what may be in it is bounded by `queue`.
    macro_rules! queue {
        ($event:expr, |$payload:pat_param, $ack:ident| $bytes:expr, $command:expr) => {{
            let (tx, queue, refusals, state, user_id) =
                (tx.clone(), queue.clone(), refusals.clone(), state.clone(), user.id);
            s.on($event, move |socket: SocketRef, $payload, $ack: AckSender| {
                let bytes: u64 = $bytes;
                let admitted = state.rates.allow_event(user_id, bytes).then(|| queue.try_reserve(bytes)).flatten();
                match admitted {
                    Some(slot) => {
                        let _ = tx.send(($command, Some(slot)));
                    }
                    None => {
                        crate::telemetry::refused("socket_rate");
                        send_ack($ack, &slow_down());
                        if refusals.record() {
                            tracing::warn!(user_id = %user_id, socket = %socket.id, "socket floods events; disconnected");
                            let _ = socket.disconnect();
                        }
                    }
                }
                std::future::ready(())
            });
        }};
    }
    queue!(events::START_RECORDING, |TryData(req), ack| 0, Command::Start(req, ack));
    queue!(
        events::APPEND_RECORDING,
        |ChunkPayload(chunk), ack| chunk.as_ref().ok().and_then(|c| c.data.as_ref()).map_or(0, |d| d.len() as u64),
        Command::Append(chunk, ack, std::time::Instant::now())
    );
    queue!(events::RESUME_RECORDING, |TryData(req), ack| 0, Command::Resume(req, ack));
    queue!(events::STOP_RECORDING, |TryData(req), ack| 0, Command::Stop(req, ack, std::time::Instant::now()));
    let disconnect_tx = tx.clone();
    s.on_disconnect(move || {
        let _ = disconnect_tx.send((Command::Disconnect, None));
        std::future::ready(())
    });
    metrics::gauge!(crate::telemetry::SOCKETS).increment(1);
    // Every log line of the socket's takes says which instance and user.
    let span = tracing::info_span!("socket", instance_id = %state.recordings.instance_id, user_id = %user.id);
    let worker = Worker { state, socket: s, user, connection, current: None, attached: HashSet::new() };
    tokio::spawn(tracing::Instrument::instrument(worker.run(rx), span));
}

/// Processes one socket's events in order.
struct Worker {
    state: AppState,
    socket: SocketRef,
    user: Arc<UserRow>,
    /// This socket's row in the store's `connections` (the per-user limit).
    connection: Uuid,
    /// The take that original clients (no `recording_id`) append to.
    current: Option<Uuid>,
    /// Takes this socket uses; detached (their grace period starts) on disconnect.
    attached: HashSet<Uuid>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(Command, Option<QueuedSlot>)>) {
        // The slot is given back when the event is done with.
        while let Some((cmd, _slot)) = rx.recv().await {
            match cmd {
                Command::Start(req, ack) => match self.start(req).await {
                    Ok(ok) => send_ack(ack, &ok),
                    Err(e) => send_ack(ack, &e),
                },
                Command::Append(req, ack, arrived) => {
                    let reply = self.append(req).await;
                    // A temporary refusal is only for the ack: nothing failed.
                    if let AppendAck::Err(e) = &reply
                        && e.retry_after_ms.is_none()
                    {
                        self.emit_error(e.recording_id, &e.error);
                    }
                    send_ack(ack, &reply);
                    crate::telemetry::observe(crate::telemetry::ACK_SECONDS, arrived.elapsed());
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
                        StopAck::Err(e) if e.retry_after_ms.is_none() => self.emit_error(e.recording_id, &e.error),
                        StopAck::Err(_) => {}
                    }
                    send_ack(ack, &reply);
                }
                Command::Disconnect => break,
            }
        }
        for id in self.attached.drain() {
            self.state.recordings.detach(id).await;
        }
        metrics::gauge!(crate::telemetry::SOCKETS).decrement(1);
        if let Err(e) = self.state.db.close_connection(self.connection).await {
            // The row goes stale and is forgotten by the reaper.
            tracing::debug!(error = %e, "cannot remove the socket's row");
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
            // Original clients: the first chunk opens the socket's take, and
            // a retry of a chunk that failed goes to that same take.
            None => {
                let mime = chunk.mime_type.as_deref().unwrap_or("audio/webm");
                match self.state.recordings.open(self.user.id, mime, None).await {
                    Ok(id) => {
                        self.use_recording(id).await;
                        id
                    }
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
        let timeline = crate::recording::finalize::Timeline::from_stop(req.paused_ms.as_deref(), req.recorded_ms);
        match self.state.recordings.stop(self.user.id, id, req.chunks, timeline).await {
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
    match e {
        RecordingError::Db(_) => crate::telemetry::db_error(),
        RecordingError::DiskFull => crate::telemetry::refused("disk_full"),
        RecordingError::QuotaExceeded { .. } => crate::telemetry::refused("bytes_per_user"),
        RecordingError::TooManyLive { .. } => crate::telemetry::refused("live_takes_per_user"),
        RecordingError::Unavailable => crate::telemetry::refused("no_heartbeat"),
        _ => {}
    }
    Failure {
        ok: monostate::False,
        error: e.to_string(),
        next_seq: e.next_seq(),
        recording_id,
        retry_after_ms: e.retry_after().map(|d| d.as_millis() as u64),
    }
}

fn send_ack<T: serde::Serialize + ?Sized>(ack: AckSender, reply: &T) {
    if let Err(e) = ack.send(reply) {
        tracing::debug!(error = %e, "cannot send ack");
    }
}
