//! The client against an in-process socketioxide server: handshake auth,
//! connect errors, binary attachments, acks, server events, pings.

use std::time::Duration;

use audiobook_client::{ClientError, ConnectOptions, Socket};
use audiobook_wire::{AppendAck, AppendChunk, HandshakeAuth};
use bytes::Bytes;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

#[derive(Debug)]
struct Refused;
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bad token")
    }
}

async fn auth(TryData(auth): TryData<HandshakeAuth>) -> Result<(), Refused> {
    match auth {
        Ok(a) if a.token == "good" => Ok(()),
        _ => Err(Refused),
    }
}

/// What the test server decodes: `data` as plain `Bytes`, as socketioxide
/// needs for a binary placeholder.
#[derive(serde::Deserialize)]
struct Chunk {
    data: Bytes,
    seq: u64,
    #[serde(rename = "final")]
    is_final: bool,
}

async fn on_connect(s: SocketRef) {
    s.on("append-recording", |TryData(chunk): TryData<Chunk>, ack: AckSender| async move {
        let reply = match chunk {
            Ok(c) => json!({"ok": true, "recording_id": uuid::Uuid::nil(), "seq": c.seq,
                            "received_bytes": c.data.len() + c.is_final as usize}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        ack.send(&reply).ok();
    });
    s.on("echo", |Data(v): Data<Value>, ack: AckSender| async move {
        ack.send(&v).ok();
    });
    s.on("binary-echo", |Data(v): Data<Chunk>, ack: AckSender| async move {
        ack.send(&json!({"got": v.data})).ok();
    });
    s.on("shout", |s: SocketRef, Data(v): Data<Value>| async move {
        s.emit("recording-error", &json!({"error": v})).ok();
    });
}

async fn serve() -> String {
    let (layer, io) = SocketIo::builder()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(200))
        .build_layer();
    io.ns("/", on_connect.with(auth));
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn refused_without_a_good_token() {
    let url = serve().await;
    match Socket::connect(&url, "bad").await {
        Err(ClientError::ConnectRefused(m)) => assert_eq!(m, "bad token"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(Socket::connect_with_auth(&url, Value::Null).await, Err(ClientError::ConnectRefused(_))));
}

#[tokio::test]
async fn binary_chunks_are_acked_in_order_and_pings_answered() {
    let url = serve().await;
    let socket = Socket::connect(&url, "good").await.unwrap();
    for seq in 0..20u64 {
        let data = Bytes::from(vec![seq as u8; 1000 + seq as usize]);
        let chunk = AppendChunk { data: Some(data), seq: Some(seq), ..Default::default() };
        match socket.append(&chunk).await.unwrap() {
            AppendAck::Ok(ok) => {
                assert_eq!(ok.seq, seq);
                assert_eq!(ok.received_bytes, 1000 + seq);
            }
            AppendAck::Err(e) => panic!("refused: {}", e.error),
        }
    }
    // Several ping intervals pass: the background task must answer them.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(socket.is_connected());
    let back = socket.emit_raw("echo", json!({"a": [1, 2]}), vec![], true).await.unwrap();
    assert_eq!(back, Some(json!({"a": [1, 2]})));
    socket.disconnect().await;
}

#[tokio::test]
async fn concurrent_acks_match_by_id() {
    let url = serve().await;
    let socket = Socket::connect(&url, "good").await.unwrap();
    let calls = (0..50).map(|i| {
        let socket = &socket;
        async move { socket.emit_raw("echo", json!(i), vec![], true).await.unwrap() }
    });
    let results = futures_util::future::join_all(calls).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r, Some(json!(i)));
    }
}

#[tokio::test]
async fn binary_ack_and_events() {
    let url = serve().await;
    let socket = Socket::connect(&url, "good").await.unwrap();
    let payload = json!({"data": {"_placeholder": true, "num": 0}, "seq": 1, "final": false});
    let back = socket.emit_raw("binary-echo", payload, vec![Bytes::from_static(b"\x00\x01\xff")], true).await.unwrap();
    assert_eq!(back, Some(json!({"got": [0, 1, 255]})));

    socket.emit_raw("shout", json!("hi"), vec![], false).await.unwrap();
    let (name, payload) = socket.next_event(Duration::from_secs(2)).await.unwrap();
    assert_eq!((name.as_str(), payload), ("recording-error", json!({"error": "hi"})));
    assert!(matches!(socket.next_event(Duration::from_millis(50)).await, Err(ClientError::Timeout)));

    socket.emit_raw("shout", json!("boom"), vec![], false).await.unwrap();
    match socket.wait_for_saved(Duration::from_secs(2)).await {
        Err(ClientError::Recording(e)) => assert_eq!(e.error, "boom"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unanswered_acks_time_out_and_a_cut_fails_waiters() {
    let url = serve().await;
    let options = ConnectOptions { ack_timeout: Duration::from_millis(200), ..Default::default() };
    let socket = Socket::connect_with_options(&url, json!({"token": "good"}), options).await.unwrap();
    // No handler answers "nobody": the ack times out.
    assert!(matches!(socket.emit_raw("nobody", json!(1), vec![], true).await, Err(ClientError::Timeout)));
    socket.cut();
    // The server sees the loss; a new connection works.
    let again = Socket::connect(&url, "good").await.unwrap();
    assert_eq!(again.emit_raw("echo", json!("x"), vec![], true).await.unwrap(), Some(json!("x")));
}
