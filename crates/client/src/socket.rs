//! One Socket.IO connection over a WebSocket.
//!
//! A background task owns the read half: it answers Engine.IO pings,
//! resolves acknowledgements by id and queues server events. Writes go
//! through a mutex around the write half, so that a binary event's text
//! frame and its attachment frames are never interleaved with another write.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audiobook_wire::{
    AppendAck, AppendChunk, Record, RecordingError, ResumeAck, ResumeRecording, StartAck, StartRecording, StopAck,
    StopRecording, events,
};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::ClientError;
use crate::packet::{self, EioPacket, SioPacket};

type Ws = WebSocketStream<TcpStream>;
type Sink = SplitSink<Ws, Message>;

/// Timeouts of a connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// TCP connect, WebSocket upgrade, Engine.IO open and namespace connect.
    pub connect_timeout: Duration,
    /// How long an emit with a callback waits for its ack.
    pub ack_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions { connect_timeout: Duration::from_secs(10), ack_timeout: Duration::from_secs(10) }
    }
}

/// One Socket.IO connection to the main namespace.
pub struct Socket {
    shared: Arc<Shared>,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    reader: JoinHandle<()>,
    cut: Option<oneshot::Sender<()>>,
    ack_timeout: Duration,
    sid: String,
}

struct Shared {
    sink: tokio::sync::Mutex<Option<Sink>>,
    /// Waiting acks by id; `None` once the connection is gone.
    acks: Mutex<Option<HashMap<u64, oneshot::Sender<Value>>>>,
    next_id: AtomicU64,
}

impl Socket {
    /// Connects with handshake `auth: {"token": token}`.
    pub async fn connect(base_url: &str, token: &str) -> Result<Socket, ClientError> {
        Self::connect_with_auth(base_url, serde_json::json!({ "token": token })).await
    }

    /// Connects with any handshake `auth` payload (`Null` sends none).
    pub async fn connect_with_auth(base_url: &str, auth: Value) -> Result<Socket, ClientError> {
        Self::connect_with_options(base_url, auth, ConnectOptions::default()).await
    }

    pub async fn connect_with_options(
        base_url: &str,
        auth: Value,
        options: ConnectOptions,
    ) -> Result<Socket, ClientError> {
        tokio::time::timeout(options.connect_timeout, Self::handshake(base_url, auth, options))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn handshake(base_url: &str, auth: Value, options: ConnectOptions) -> Result<Socket, ClientError> {
        let uri: http::Uri =
            base_url.parse().map_err(|e| ClientError::Transport(format!("bad base URL {base_url:?}: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or("http");
        if scheme != "http" && scheme != "ws" {
            return Err(ClientError::Transport(format!("unsupported scheme {scheme:?} (plain http only)")));
        }
        let host = uri.host().ok_or_else(|| ClientError::Transport(format!("no host in {base_url:?}")))?;
        let port = uri.port_u16().unwrap_or(80);
        let prefix = uri.path().trim_end_matches('/');
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
        let url = format!("ws://{authority}{prefix}/socket.io/?EIO=4&transport=websocket");

        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((host, port)).await.map_err(|e| ClientError::Transport(e.to_string()))?;
        tcp.set_nodelay(true).ok();
        // Small buffers: the load program holds thousands of these.
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url.as_str(), tcp, Some(config)).await?;

        // Engine.IO open.
        let open = loop {
            match next_text(&mut ws).await? {
                t if t.starts_with('0') => break t,
                t if t == "2" => ws.send(Message::text(packet::PONG)).await?,
                t => {
                    return Err(ClientError::Protocol(format!("expected Engine.IO open, got {t:?}")));
                }
            }
        };
        let open: Value = serde_json::from_str(&open[1..])
            .map_err(|e| ClientError::Protocol(format!("bad Engine.IO open packet {open:?}: {e}")))?;
        if open.get("sid").is_none() {
            return Err(ClientError::Protocol(format!("Engine.IO open without sid: {open}")));
        }

        // Namespace connect.
        ws.send(Message::text(packet::encode_connect(&auth))).await?;
        let sid = loop {
            let text = next_text(&mut ws).await?;
            match packet::decode_eio(&text)? {
                EioPacket::Ping => ws.send(Message::text(packet::PONG)).await?,
                EioPacket::Noop | EioPacket::Pong => {}
                EioPacket::Close => return Err(ClientError::Closed),
                EioPacket::Message(msg) => match packet::decode_sio(msg)? {
                    SioPacket::Connect(v) => {
                        break v.get("sid").and_then(Value::as_str).unwrap_or_default().to_owned();
                    }
                    SioPacket::ConnectError(v) => {
                        let message = v
                            .get("message")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string());
                        return Err(ClientError::ConnectRefused(message));
                    }
                    other => {
                        return Err(ClientError::Protocol(format!("expected a connect answer, got {other:?}")));
                    }
                },
                other => {
                    return Err(ClientError::Protocol(format!("unexpected {other:?} during connect")));
                }
            }
        };

        let (sink, stream) = ws.split();
        let shared = Arc::new(Shared {
            sink: tokio::sync::Mutex::new(Some(sink)),
            acks: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(0),
        });
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (cut_tx, cut_rx) = oneshot::channel();
        let reader = tokio::spawn(read_loop(stream, shared.clone(), events_tx, cut_rx));
        Ok(Socket {
            shared,
            events: tokio::sync::Mutex::new(events_rx),
            reader,
            cut: Some(cut_tx),
            ack_timeout: options.ack_timeout,
            sid,
        })
    }

    /// The Socket.IO session id the server gave this connection.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Changes how long emits wait for their ack (default 10 s).
    pub fn set_ack_timeout(&mut self, timeout: Duration) {
        self.ack_timeout = timeout;
    }

    /// `false` once the connection is gone.
    pub fn is_connected(&self) -> bool {
        self.shared.acks.lock().unwrap().is_some()
    }

    /// `start-recording` with ack.
    pub async fn start(&self, req: &StartRecording) -> Result<StartAck, ClientError> {
        self.call(events::START_RECORDING, req).await
    }

    /// `append-recording` with ack; `data` travels as a binary attachment.
    pub async fn append(&self, chunk: &AppendChunk) -> Result<AppendAck, ClientError> {
        let (json, bins) = packet::split_chunk(chunk)?;
        let ack = self.emit_raw(events::APPEND_RECORDING, json, bins, true).await?;
        parse_ack(events::APPEND_RECORDING, ack)
    }

    /// `append-recording` without a callback, as original clients emit it.
    pub async fn append_no_ack(&self, chunk: &AppendChunk) -> Result<(), ClientError> {
        let (json, bins) = packet::split_chunk(chunk)?;
        self.emit_raw(events::APPEND_RECORDING, json, bins, false).await.map(|_| ())
    }

    /// `resume-recording` with ack.
    pub async fn resume(&self, req: &ResumeRecording) -> Result<ResumeAck, ClientError> {
        self.call(events::RESUME_RECORDING, req).await
    }

    /// `stop-recording` with ack.
    pub async fn stop(&self, req: &StopRecording) -> Result<StopAck, ClientError> {
        self.call(events::STOP_RECORDING, req).await
    }

    /// `stop-recording` without a callback (original clients).
    pub async fn stop_no_ack(&self, req: &StopRecording) -> Result<(), ClientError> {
        self.emit_raw(events::STOP_RECORDING, to_json(req)?, Vec::new(), false).await.map(|_| ())
    }

    /// Emits `event` with one argument `payload` (which must hold one
    /// placeholder per attachment, numbered in order). With `with_ack`,
    /// waits for the ack and returns its first argument (`Null` if the ack
    /// has none), attachments of a binary ack filled in as number arrays.
    pub async fn emit_raw(
        &self,
        event: &str,
        payload: Value,
        attachments: Vec<Bytes>,
        with_ack: bool,
    ) -> Result<Option<Value>, ClientError> {
        self.emit_args(event, std::slice::from_ref(&payload), attachments, with_ack).await
    }

    /// Like [`Socket::emit_raw`] with any number of arguments (none included).
    pub async fn emit_args(
        &self,
        event: &str,
        args: &[Value],
        attachments: Vec<Bytes>,
        with_ack: bool,
    ) -> Result<Option<Value>, ClientError> {
        if !with_ack {
            let text = packet::encode_event_args(event, args, None, attachments.len());
            self.send_frames(text, attachments).await?;
            return Ok(None);
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.shared.acks.lock().unwrap().as_mut() {
            Some(acks) => acks.insert(id, tx),
            None => return Err(ClientError::Closed),
        };
        let text = packet::encode_event_args(event, args, Some(id), attachments.len());
        if let Err(e) = self.send_frames(text, attachments).await {
            self.forget_ack(id);
            return Err(e);
        }
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(Ok(args)) => Ok(Some(first_arg(args))),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                self.forget_ack(id);
                Err(ClientError::Timeout)
            }
        }
    }

    /// Sends one text frame as-is (a whole Engine.IO packet, e.g. `"42[...]"`)
    /// followed by binary frames: for tests of malformed packets.
    pub async fn send_raw_frames(&self, text: String, binaries: Vec<Bytes>) -> Result<(), ClientError> {
        self.send_frames(text, binaries).await
    }

    /// The next event the server emitted (`recording-saved`,
    /// `recording-error`, ...): its name and first argument.
    pub async fn next_event(&self, timeout: Duration) -> Result<(String, Value), ClientError> {
        let mut events = self.events.lock().await;
        match tokio::time::timeout(timeout, events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout),
        }
    }

    /// Waits for `recording-saved` (skipping other events); a
    /// `recording-error` ends the wait with [`ClientError::Recording`].
    pub async fn wait_for_saved(&self, timeout: Duration) -> Result<Record, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (name, payload) = self.next_event(left).await?;
            match name.as_str() {
                events::RECORDING_SAVED => {
                    return serde_json::from_value(payload.clone())
                        .map_err(|e| ClientError::Protocol(format!("bad recording-saved payload ({e}): {payload}")));
                }
                events::RECORDING_ERROR => {
                    return Err(match serde_json::from_value::<RecordingError>(payload.clone()) {
                        Ok(err) => ClientError::Recording(err),
                        Err(e) => ClientError::Protocol(format!("bad recording-error payload ({e}): {payload}")),
                    });
                }
                _ => {}
            }
        }
    }

    /// A clean disconnect: Socket.IO disconnect (`41`), WebSocket close, and
    /// a short wait for the server to close its side.
    pub async fn disconnect(mut self) {
        {
            let mut sink = self.shared.sink.lock().await;
            if let Some(s) = sink.as_mut() {
                let _ = s.send(Message::text(packet::DISCONNECT)).await;
                let _ = s.send(Message::Close(None)).await;
            }
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.reader).await.is_err() {
            self.reader.abort();
        }
        drop(self.cut.take());
    }

    /// Abrupt loss of the connection: the TCP connection is reset with no
    /// Socket.IO disconnect and no WebSocket close frame.
    pub fn cut(mut self) {
        if let Some(cut) = self.cut.take() {
            let _ = cut.send(());
        }
    }

    async fn call<Req: Serialize, Ack: DeserializeOwned>(&self, event: &str, req: &Req) -> Result<Ack, ClientError> {
        let ack = self.emit_raw(event, to_json(req)?, Vec::new(), true).await?;
        parse_ack(event, ack)
    }

    async fn send_frames(&self, text: String, binaries: Vec<Bytes>) -> Result<(), ClientError> {
        let mut guard = self.shared.sink.lock().await;
        let sink = guard.as_mut().ok_or(ClientError::Closed)?;
        let result = async {
            sink.feed(Message::text(text)).await?;
            for bin in binaries {
                sink.feed(Message::Binary(bin)).await?;
            }
            sink.flush().await
        }
        .await;
        result.map_err(ClientError::from)
    }

    fn forget_ack(&self, id: u64) {
        if let Some(acks) = self.shared.acks.lock().unwrap().as_mut() {
            acks.remove(&id);
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Dropping `cut` ends the reader, which drops the connection.
        self.cut.take();
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("sid", &self.sid).field("connected", &self.is_connected()).finish()
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, ClientError> {
    serde_json::to_value(value).map_err(|e| ClientError::Protocol(e.to_string()))
}

fn first_arg(args: Value) -> Value {
    match args {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        _ => Value::Null,
    }
}

fn parse_ack<T: DeserializeOwned>(event: &str, ack: Option<Value>) -> Result<T, ClientError> {
    let ack = ack.unwrap_or(Value::Null);
    serde_json::from_value(ack.clone())
        .map_err(|e| ClientError::Protocol(format!("unexpected {event} ack ({e}): {ack}")))
}

async fn next_text(ws: &mut Ws) -> Result<String, ClientError> {
    loop {
        match ws.next().await {
            None => return Err(ClientError::Closed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) => return Err(ClientError::Closed),
            Some(Ok(Message::Binary(_))) => {
                return Err(ClientError::Protocol("unexpected binary frame during connect".into()));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// A binary packet waiting for its attachments.
struct PendingBinary {
    ack_id: Option<u64>,
    is_ack: bool,
    expected: usize,
    args: Value,
    attachments: Vec<Bytes>,
}

async fn read_loop(
    mut stream: SplitStream<Ws>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<(String, Value)>,
    mut cut: oneshot::Receiver<()>,
) {
    let mut pending: Option<PendingBinary> = None;
    let mut abrupt = false;
    loop {
        let msg = tokio::select! {
            msg = stream.next() => msg,
            _ = &mut cut => { abrupt = true; break; }
        };
        match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(text))) => {
                let Ok(eio) = packet::decode_eio(text.as_str()) else {
                    continue;
                };
                match eio {
                    EioPacket::Ping => {
                        let mut sink = shared.sink.lock().await;
                        if let Some(s) = sink.as_mut() {
                            let _ = s.send(Message::text(packet::PONG)).await;
                        }
                    }
                    EioPacket::Close => break,
                    EioPacket::Message(msg) => match packet::decode_sio(msg) {
                        Ok(SioPacket::Event { args, .. }) => dispatch_event(&events, args),
                        Ok(SioPacket::Ack { id, args }) => resolve_ack(&shared, id, args),
                        Ok(SioPacket::BinaryEvent { attachments, id, args }) => {
                            pending = Some(PendingBinary {
                                ack_id: id,
                                is_ack: false,
                                expected: attachments,
                                args,
                                attachments: Vec::new(),
                            })
                        }
                        Ok(SioPacket::BinaryAck { attachments, id, args }) => {
                            pending = Some(PendingBinary {
                                ack_id: Some(id),
                                is_ack: true,
                                expected: attachments,
                                args,
                                attachments: Vec::new(),
                            })
                        }
                        Ok(SioPacket::Disconnect) => break,
                        Ok(_) | Err(_) => {}
                    },
                    _ => {}
                }
                if let Some(p) = pending.take_if(|p| p.attachments.len() >= p.expected) {
                    finish_binary(&shared, &events, p);
                }
            }
            Some(Ok(Message::Binary(bin))) => {
                if let Some(p) = pending.as_mut() {
                    p.attachments.push(bin);
                }
                if let Some(p) = pending.take_if(|p| p.attachments.len() >= p.expected) {
                    finish_binary(&shared, &events, p);
                }
            }
            Some(Ok(_)) => {}
        }
    }

    // The connection is gone: fail every waiting ack.
    shared.acks.lock().unwrap().take();
    let sink = shared.sink.lock().await.take();
    if abrupt
        && let Some(sink) = sink
        && let Ok(ws) = sink.reunite(stream)
    {
        let _ = ws.get_ref().set_zero_linger();
    }
}

fn finish_binary(shared: &Shared, events: &mpsc::UnboundedSender<(String, Value)>, mut p: PendingBinary) {
    if packet::fill_placeholders(&mut p.args, &p.attachments).is_err() {
        return;
    }
    match (p.is_ack, p.ack_id) {
        (true, Some(id)) => resolve_ack(shared, id, p.args),
        _ => dispatch_event(events, p.args),
    }
}

fn dispatch_event(events: &mpsc::UnboundedSender<(String, Value)>, args: Value) {
    let Value::Array(mut items) = args else {
        return;
    };
    if items.is_empty() {
        return;
    }
    let Value::String(name) = items.remove(0) else {
        return;
    };
    let payload = if items.is_empty() { Value::Null } else { items.swap_remove(0) };
    let _ = events.send((name, payload));
}

fn resolve_ack(shared: &Shared, id: u64, args: Value) {
    let waiter = shared.acks.lock().unwrap().as_mut().and_then(|acks| acks.remove(&id));
    if let Some(waiter) = waiter {
        let _ = waiter.send(args);
    }
}
