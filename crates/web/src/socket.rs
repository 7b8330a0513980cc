//! A small typed binding to the vendored official Socket.IO client
//! (`/vendor/socket.io.min.js`, which defines the global `io`; fetched by
//! the first connection).
//!
//! Pages and the uploader only see Rust types: events arrive as
//! [`SocketEvent`], requests are `async fn`s returning the wire crate's acks.
//! Payloads cross the boundary as JSON text, parsed on the other side with the
//! same serde types the server uses; the audio chunk travels as a
//! `Uint8Array` (a Socket.IO binary attachment).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use audiobook_wire::{
    AppendAck, Failure, HandshakeAuth, Record, RecordingError, ResumeAck, ResumeRecording, StartAck, StartRecording,
    StopAck, StopRecording, events,
};
use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::recorder::queue::Chunk;

/// How long an emit waits for its acknowledgement before it counts as lost.
const ACK_TIMEOUT_MS: u32 = 10_000;
/// The vendored client (the service worker keeps it for offline use).
const CLIENT_SCRIPT: &str = "/vendor/socket.io.min.js";
/// Pause before fetching the client script again after it failed.
const SCRIPT_RETRY_MS: u64 = 3_000;

#[wasm_bindgen]
extern "C" {
    /// `io(url?, options)`.
    #[wasm_bindgen(js_name = io)]
    fn io_connect(url: &JsValue, options: &JsValue) -> RawSocket;

    type RawSocket;

    #[wasm_bindgen(method)]
    fn on(this: &RawSocket, event: &str, callback: &Function);
    #[wasm_bindgen(method)]
    fn timeout(this: &RawSocket, ms: u32) -> RawSocket;
    #[wasm_bindgen(method, js_name = emitWithAck)]
    fn emit_with_ack(this: &RawSocket, event: &str, payload: &JsValue) -> Promise;
    #[wasm_bindgen(method)]
    fn disconnect(this: &RawSocket);
    #[wasm_bindgen(method, getter)]
    fn connected(this: &RawSocket) -> bool;
    #[wasm_bindgen(method, getter)]
    fn active(this: &RawSocket) -> bool;
    /// The socket's Manager (reconnection events live there).
    #[wasm_bindgen(method, getter, js_name = io)]
    fn manager(this: &RawSocket) -> RawManager;

    type RawManager;

    #[wasm_bindgen(method, js_name = on)]
    fn manager_on(this: &RawManager, event: &str, callback: &Function);
}

/// What the server or the connection tells the page.
#[derive(Debug, Clone)]
pub enum SocketEvent {
    Connected,
    /// The connection dropped; the client reconnects by itself.
    Disconnected,
    /// A reconnection attempt is under way.
    Reconnecting,
    /// The server refused the handshake (bad token) or could not be reached;
    /// [`Socket::will_reconnect`] tells which.
    ConnectError {
        message: String,
    },
    RecordingSaved(Record),
    RecordingError(RecordingError),
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq)]
pub enum EmitError {
    /// Not connected, or the ack did not come in time: the request may or may
    /// not have reached the server.
    NoAnswer,
    /// The answer did not have the contract's shape.
    BadAnswer(String),
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmitError::NoAnswer => write!(f, "the server did not answer"),
            EmitError::BadAnswer(e) => write!(f, "the server's answer was not understood ({e})"),
        }
    }
}

/// One Socket.IO connection, authenticated with the user's token. The
/// client script is fetched by the first connection (no page draws with it,
/// so it stays off the first load); until it has run the socket is simply
/// not connected yet.
pub struct Socket {
    live: Rc<RefCell<Option<Live>>>,
    closed: Rc<Cell<bool>>,
}

/// The client's socket, once its script has run.
struct Live {
    raw: RawSocket,
    // The JS callbacks must live as long as the socket.
    _callbacks: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Socket {
    /// Connects to `server_url` (empty: the page's origin) and reports every
    /// event to `on_event`.
    pub fn connect(server_url: &str, token: &str, on_event: impl Fn(SocketEvent) + 'static) -> Socket {
        let socket = Socket { live: Rc::default(), closed: Rc::default() };
        let (live, closed) = (socket.live.clone(), socket.closed.clone());
        let (server_url, token) = (server_url.to_string(), token.to_string());
        wasm_bindgen_futures::spawn_local(async move {
            let on_event = Rc::new(on_event);
            // The service worker keeps the script, so this fails only where
            // the page itself could barely load: it is tried again, as
            // socket.io-client retries a connection.
            while !client_loaded() {
                let loaded = crate::browser::load_script(CLIENT_SCRIPT).await;
                if closed.get() {
                    return;
                }
                if !client_loaded() {
                    let message = loaded.err().unwrap_or_else(|| format!("{CLIENT_SCRIPT} did not define `io`"));
                    on_event(SocketEvent::ConnectError { message });
                    crate::browser::sleep_ms(SCRIPT_RETRY_MS).await;
                    if closed.get() {
                        return;
                    }
                }
            }
            *live.borrow_mut() = Some(Live::connect(&server_url, &token, on_event));
        });
        socket
    }
    pub fn is_connected(&self) -> bool {
        self.live.borrow().as_ref().is_some_and(|l| l.raw.connected())
    }

    /// False once the server refused the handshake: socket.io-client retries
    /// network errors by itself, but not a refusal (nor is its script given
    /// up on).
    pub fn will_reconnect(&self) -> bool {
        self.live.borrow().as_ref().is_none_or(|l| l.raw.active())
    }

    /// `start-recording`: the server opens a recording and names its id, or
    /// refuses (for a while, when the refusal carries `retry_after_ms`).
    pub async fn start_recording(
        &self,
        mime_type: &str,
        name: Option<&str>,
    ) -> Result<Result<Uuid, Failure>, EmitError> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Answer {
            Ok(StartAck),
            Err(Failure),
        }
        let payload = StartRecording { mime_type: mime_type.to_string(), name: name.map(str::to_string) };
        Ok(match self.request(events::START_RECORDING, &to_js(&payload)).await? {
            Answer::Ok(ack) => Ok(ack.recording_id),
            Answer::Err(failure) => Err(failure),
        })
    }

    /// `append-recording` with the chunk as a binary attachment.
    pub async fn append(&self, recording_id: Uuid, mime_type: &str, chunk: &Chunk) -> Result<AppendAck, EmitError> {
        let payload = Object::new();
        let set = |k: &str, v: &JsValue| {
            Reflect::set(&payload, &k.into(), v).expect("set a field of a plain object");
        };
        set("data", &Uint8Array::from(&chunk.data[..]).into());
        set("final", &chunk.is_final.into());
        set("seq", &(chunk.seq as f64).into());
        set("recording_id", &recording_id.to_string().into());
        set("mime_type", &mime_type.into());
        if !chunk.peaks.is_empty() {
            // A JSON array of numbers (0–255), as the contract has it.
            let peaks: js_sys::Array = chunk.peaks.iter().map(|&p| JsValue::from(p)).collect();
            set("peaks", &peaks.into());
        }
        self.request(events::APPEND_RECORDING, &payload).await
    }

    /// `resume-recording`: where the server wants this take to go on.
    pub async fn resume(&self, recording_id: Uuid) -> Result<ResumeAck, EmitError> {
        self.request(events::RESUME_RECORDING, &to_js(&ResumeRecording { recording_id })).await
    }

    /// `stop-recording`: the server finalizes the take.
    pub async fn stop(&self, payload: &StopRecording) -> Result<StopAck, EmitError> {
        self.request(events::STOP_RECORDING, &to_js(payload)).await
    }

    async fn request<T: DeserializeOwned>(&self, event: &str, payload: &JsValue) -> Result<T, EmitError> {
        let promise = match self.live.borrow().as_ref() {
            Some(live) if live.raw.connected() => live.raw.timeout(ACK_TIMEOUT_MS).emit_with_ack(event, payload),
            _ => return Err(EmitError::NoAnswer),
        };
        let answer = JsFuture::from(promise).await.map_err(|_| EmitError::NoAnswer)?;
        parse(&answer).map_err(EmitError::BadAnswer)
    }
}

impl Live {
    fn connect(server_url: &str, token: &str, on_event: Rc<dyn Fn(SocketEvent)>) -> Live {
        let options = to_js(&serde_json::json!({
            "auth": HandshakeAuth { token: token.to_string() },
            // WebSocket first; long-polling where a proxy blocks it.
            "transports": ["websocket", "polling"],
            "tryAllTransports": true,
            "reconnectionDelay": 500,
            "reconnectionDelayMax": 2000,
        }));
        let url = if server_url.is_empty() { JsValue::UNDEFINED } else { JsValue::from_str(server_url) };
        let raw = io_connect(&url, &options);
        let mut callbacks = Vec::new();
        let mut listen = |target: &dyn Fn(&str, &Function), event: &str, map: fn(JsValue) -> Option<SocketEvent>| {
            let on_event = on_event.clone();
            let closure = Closure::<dyn FnMut(JsValue)>::new(move |value: JsValue| {
                if let Some(e) = map(value) {
                    on_event(e)
                }
            });
            target(event, closure.as_ref().unchecked_ref());
            callbacks.push(closure);
        };
        let socket_on = |e: &str, f: &Function| raw.on(e, f);
        listen(&socket_on, "connect", |_| Some(SocketEvent::Connected));
        listen(&socket_on, "disconnect", |_| Some(SocketEvent::Disconnected));
        listen(&socket_on, "connect_error", |err| {
            let message = Reflect::get(&err, &"message".into()).ok().and_then(|m| m.as_string()).unwrap_or_default();
            Some(SocketEvent::ConnectError { message })
        });
        listen(&socket_on, events::RECORDING_SAVED, |v| parse::<Record>(&v).ok().map(SocketEvent::RecordingSaved));
        listen(&socket_on, events::RECORDING_ERROR, |v| {
            parse::<RecordingError>(&v).ok().map(SocketEvent::RecordingError)
        });
        let manager = raw.manager();
        let manager_on = |e: &str, f: &Function| manager.manager_on(e, f);
        listen(&manager_on, "reconnect_attempt", |_| Some(SocketEvent::Reconnecting));
        Live { raw, _callbacks: callbacks }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.closed.set(true);
        if let Some(live) = self.live.borrow_mut().take() {
            live.raw.disconnect();
        }
    }
}

/// Whether the client script has run (it defines the global `io`).
fn client_loaded() -> bool {
    Reflect::has(&js_sys::global(), &"io".into()).unwrap_or(false)
}

fn to_js(value: &impl Serialize) -> JsValue {
    let text = serde_json::to_string(value).expect("wire types serialize");
    js_sys::JSON::parse(&text).expect("serde_json writes valid JSON")
}

fn parse<T: DeserializeOwned>(value: &JsValue) -> Result<T, String> {
    let text: String = js_sys::JSON::stringify(value).map_err(|_| "not JSON".to_string())?.into();
    serde_json::from_str(&text).map_err(|e| e.to_string())
}
