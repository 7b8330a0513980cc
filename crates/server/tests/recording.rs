//! Live recording over a real Socket.IO connection to a real server: the
//! original protocol, the sequenced protocol and every refusal, resume after
//! a dropped connection, playback with Range, and the container fix.

mod common;

use std::time::Duration;

use audiobook_client::wire::{
    AppendAck, AppendChunk, Record, RecordStatus, ResumeAck, ResumeRecording, StartRecording, StopAck, StopRecording,
};
use audiobook_client::{Api, ClientError, Socket};
use bytes::Bytes;
use common::{Backend, spawn_app, spawn_app_with};
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

const SAVE_TIMEOUT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../media/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The 3 s MediaRecorder take split where Chromium's blobs ended.
fn three_second_blobs() -> Vec<Bytes> {
    let data = fixture("mediarecorder-opus-3s.webm");
    let (a, b) = (15917, 15917 + 16308);
    assert_eq!(data.len(), b + 16861);
    vec![Bytes::copy_from_slice(&data[..a]), Bytes::copy_from_slice(&data[a..b]), Bytes::copy_from_slice(&data[b..])]
}

/// SHA-256 over every audio block payload, in order.
fn audio_digest(webm: &[u8]) -> String {
    let mut h = Sha256::new();
    for block in audiobook_media::audio_blocks(webm).expect("parses as WebM") {
        h.update(&block.payload);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn chunk(seq: u64, id: Uuid, data: Bytes) -> AppendChunk {
    AppendChunk {
        data: Some(data),
        seq: Some(seq),
        recording_id: Some(id),
        mime_type: Some("audio/webm;codecs=opus".into()),
        ..Default::default()
    }
}

fn ok_ack(ack: AppendAck) -> audiobook_client::wire::AppendOk {
    match ack {
        AppendAck::Ok(ok) => ok,
        AppendAck::Err(e) => panic!("append refused: {e:?}"),
    }
}

fn err_ack(ack: AppendAck) -> audiobook_client::wire::Failure {
    match ack {
        AppendAck::Err(e) => e,
        AppendAck::Ok(ok) => panic!("expected a refusal, got {ok:?}"),
    }
}

async fn fetch(api: &Api, record: &Record) -> Vec<u8> {
    let (status, headers, body) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200, "{}", record.link);
    assert_eq!(headers["content-type"], record.mime_type.as_str());
    assert_eq!(body.len() as u64, record.size_bytes);
    body.to_vec()
}

async fn original_protocol_saves_the_take(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Original").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    // An original client: no seq, no recording_id, no callbacks.
    for blob in three_second_blobs() {
        socket.append_no_ack(&AppendChunk { data: Some(blob), ..Default::default() }).await.unwrap();
    }
    socket.append_no_ack(&AppendChunk { data: None, is_final: true, ..Default::default() }).await.unwrap();
    socket.stop_no_ack(&StopRecording { user_id: Some(me.user.id), ..Default::default() }).await.unwrap();
    let record = socket.wait_for_saved(SAVE_TIMEOUT).await.unwrap();

    assert_eq!(record.user_id, me.user.id);
    assert_eq!(record.status, RecordStatus::Ready);
    assert_eq!(record.mime_type, "audio/webm");
    assert_eq!(record.name, "Recording 1");
    assert_eq!(record.duration_ms, 3000, "Duration from the last block's timestamp + its 60 ms packet");
    let stored = fetch(&api, &record).await;
    let original = fixture("mediarecorder-opus-3s.webm");
    assert_eq!(audio_digest(&stored), audio_digest(&original), "audio blocks byte-identical");
    assert!(stored.len() > original.len(), "only header elements were added");
    assert_eq!(&stored[..36], &original[..36], "EBML header unchanged");

    assert_eq!(api.records(me.user.id, &me.token).await.unwrap(), vec![record]);
    socket.disconnect().await;
    app.stop().await;
}
both_backends!(original_protocol, original_protocol_saves_the_take);

async fn sequenced_protocol_refuses_bad_input_and_loses_nothing(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| {
        c.limits.max_chunk_bytes = 64 * 1024;
        c.limits.max_recording_bytes = 200 * 1024;
    })
    .await
    else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Seq").await.unwrap();
    let other = api.onboard("Other").await.unwrap();

    // Bad tokens are refused at the handshake.
    for auth in [json!({"token": "nope"}), json!({}), json!(null), json!({"token": 5})] {
        match Socket::connect_with_auth(&app.url, auth.clone()).await {
            Err(ClientError::ConnectRefused(msg)) => assert!(!msg.is_empty()),
            Err(e) => panic!("{auth}: expected a connect error, got {e:?}"),
            Ok(_) => panic!("{auth}: connected without a valid token"),
        }
    }

    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let start = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: Some("Interview".into()) })
        .await
        .unwrap();
    let id = start.recording_id;
    let blobs = three_second_blobs();

    let first = ok_ack(socket.append(&chunk(0, id, blobs[0].clone())).await.unwrap());
    assert_eq!((first.seq, first.received_bytes), (0, blobs[0].len() as u64));
    // A repeat is acknowledged again and not written twice.
    let again = ok_ack(socket.append(&chunk(0, id, blobs[0].clone())).await.unwrap());
    assert_eq!((again.seq, again.received_bytes), (0, blobs[0].len() as u64));
    // A gap is refused with the seq to send next.
    let gap = err_ack(socket.append(&chunk(2, id, blobs[2].clone())).await.unwrap());
    assert_eq!(gap.next_seq, Some(1));
    assert!(gap.error.contains("send chunk 1"), "{}", gap.error);
    // A chunk over the limit is refused, nothing stored.
    let huge = err_ack(socket.append(&chunk(1, id, Bytes::from(vec![0u8; 64 * 1024 + 1]))).await.unwrap());
    assert!(huge.error.contains("at most 65536 bytes"), "{}", huge.error);
    // Garbage payloads: each gets an error ack.
    for (payload, what) in [
        (json!("just a string"), "string payload"),
        (json!({"data": 5, "final": "yes"}), "wrong field types"),
        (json!({"final": false, "recording_id": id, "seq": 1}), "no data"),
        (json!({"data": null, "final": false, "recording_id": "not-a-uuid"}), "bad uuid"),
    ] {
        let ack = socket.emit_raw("append-recording", payload, vec![], true).await.unwrap().expect("an ack");
        assert_eq!(ack["ok"], false, "{what}: {ack}");
        assert!(ack["error"].as_str().is_some_and(|e| e.len() > 10), "{what}: {ack}");
    }
    // Another user cannot append to, resume or stop this recording.
    let intruder = Socket::connect(&app.url, &other.token).await.unwrap();
    let refused = err_ack(intruder.append(&chunk(1, id, blobs[1].clone())).await.unwrap());
    assert!(refused.error.contains("another user"), "{}", refused.error);
    assert!(matches!(intruder.resume(&ResumeRecording { recording_id: id }).await.unwrap(), ResumeAck::Err(_)));
    let stop = intruder
        .stop(&StopRecording {
            user_id: Some(other.user.id),
            recording_id: Some(id),
            chunks: Some(3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(matches!(stop, StopAck::Err(_)));
    // Nor claim to be its owner.
    let stop = intruder
        .stop(&StopRecording { user_id: Some(me.user.id), recording_id: Some(id), chunks: None, ..Default::default() })
        .await
        .unwrap();
    assert!(matches!(stop, StopAck::Err(_)));
    intruder.disconnect().await;

    // Stopping with a chunk missing is refused and says which.
    ok_ack(socket.append(&chunk(1, id, blobs[1].clone())).await.unwrap());
    match socket
        .stop(&StopRecording {
            user_id: Some(me.user.id),
            recording_id: Some(id),
            chunks: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
    {
        StopAck::Err(e) => assert_eq!(e.next_seq, Some(2), "{}", e.error),
        StopAck::Ok(_) => panic!("stopped with a missing chunk"),
    }
    let last = ok_ack(socket.append(&chunk(2, id, blobs[2].clone())).await.unwrap());
    assert_eq!(last.received_bytes, 49086);
    let saved = match socket
        .stop(&StopRecording {
            user_id: Some(me.user.id),
            recording_id: Some(id),
            chunks: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
    {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("stop refused: {e:?}"),
    };
    // The refusals above each emitted recording-error; then comes recording-saved.
    let mut errors = 0;
    let event = loop {
        let (name, payload) = socket.next_event(SAVE_TIMEOUT).await.unwrap();
        match name.as_str() {
            "recording-error" => errors += 1,
            "recording-saved" => break serde_json::from_value::<Record>(payload).unwrap(),
            other => panic!("unexpected event {other}"),
        }
    };
    assert!(errors >= 4, "each refusal is also emitted as recording-error ({errors})");
    assert_eq!(event, saved);
    assert_eq!((saved.name.as_str(), saved.status, saved.duration_ms), ("Interview", RecordStatus::Ready, 3000));
    assert_eq!(audio_digest(&fetch(&api, &saved).await), audio_digest(&fixture("mediarecorder-opus-3s.webm")));
    // A retried stop returns the same record; appends after it are refused.
    match socket
        .stop(&StopRecording { user_id: None, recording_id: Some(id), chunks: Some(3), ..Default::default() })
        .await
        .unwrap()
    {
        StopAck::Ok(ok) => assert_eq!(ok.record.id, id),
        StopAck::Err(e) => panic!("a retried stop failed: {e:?}"),
    }
    assert!(err_ack(socket.append(&chunk(3, id, blobs[0].clone())).await.unwrap()).error.contains("already saved"));

    // The recording-size limit (200 KiB here): refused with the seq to go on from, nothing lost.
    let big = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    let block = Bytes::from(vec![7u8; 60 * 1024]);
    for seq in 0..3 {
        ok_ack(socket.append(&chunk(seq, big, block.clone())).await.unwrap());
    }
    let over = err_ack(socket.append(&chunk(3, big, block.clone())).await.unwrap());
    assert_eq!(over.next_seq, Some(3));
    assert!(over.error.contains("at most 204800 bytes"), "{}", over.error);
    let StopAck::Ok(ok) =
        socket.stop(&StopRecording { recording_id: Some(big), chunks: Some(3), ..Default::default() }).await.unwrap()
    else {
        panic!("stop refused")
    };
    assert_eq!(fetch(&api, &ok.record).await, [&block[..], &block[..], &block[..]].concat());
    socket.disconnect().await;
    app.stop().await;
}
both_backends!(sequenced_protocol, sequenced_protocol_refuses_bad_input_and_loses_nothing);

async fn a_dropped_connection_resumes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Resume").await.unwrap();
    let data = fixture("mediarecorder-opus-20s.webm");
    let chunks: Vec<Bytes> = data.chunks(16 * 1024).map(Bytes::copy_from_slice).collect();

    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    for (seq, c) in chunks.iter().enumerate().take(7) {
        ok_ack(socket.append(&chunk(seq as u64, id, c.clone())).await.unwrap());
    }
    // The network goes away mid-take: no close frame, no disconnect packet.
    socket.cut();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let resumed = match socket.resume(&ResumeRecording { recording_id: id }).await.unwrap() {
        ResumeAck::Ok(ok) => ok,
        ResumeAck::Err(e) => panic!("resume refused: {e:?}"),
    };
    assert_eq!(resumed.next_seq, 7);
    assert_eq!(resumed.received_bytes, 7 * 16 * 1024);
    // The client re-sends from a chunk it was not sure of: acknowledged, not duplicated.
    for (seq, c) in chunks.iter().enumerate().skip(6) {
        ok_ack(socket.append(&chunk(seq as u64, id, c.clone())).await.unwrap());
    }
    let record = match socket
        .stop(&StopRecording {
            user_id: Some(me.user.id),
            recording_id: Some(id),
            chunks: Some(chunks.len() as u64),
            ..Default::default()
        })
        .await
        .unwrap()
    {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    assert_eq!(record.duration_ms, 19980);
    let stored = fetch(&api, &record).await;
    assert_eq!(audio_digest(&stored), audio_digest(&data), "every chunk once, in order");
    socket.disconnect().await;
    app.stop().await;
}
both_backends!(resume_after_drop, a_dropped_connection_resumes);

async fn abandoned_take_ends_interrupted_and_plays(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.limits.recording_grace = Duration::from_millis(600)).await else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Gone").await.unwrap();
    let data = fixture("mediarecorder-opus-20s.webm");
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    // About 10 s of audio, the last chunk cut mid-element.
    let cut_at = 170_001;
    for (seq, c) in data[..cut_at].chunks(20_000).enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, Bytes::copy_from_slice(c))).await.unwrap());
    }
    socket.cut();

    let record = wait_for_status(&api, &me, id, RecordStatus::Interrupted).await;
    let stored = fetch(&api, &record).await;
    let kept = audiobook_media::audio_blocks(&stored[..]).unwrap();
    let original = audiobook_media::audio_blocks(&data[..]).unwrap();
    assert!(kept.len() > 100 && kept.len() < original.len());
    assert_eq!(kept, original[..kept.len()], "every complete block that arrived, unchanged");
    assert_eq!(record.duration_ms as i64, kept.last().unwrap().timestamp_ms + 60);
    assert!(!app.spool_dir().join(format!("{id}.data")).exists(), "spool removed after the upload");
    app.stop().await;
}
both_backends!(abandoned_take, abandoned_take_ends_interrupted_and_plays);

async fn wait_for_status(api: &Api, me: &audiobook_client::wire::Onboarded, id: Uuid, status: RecordStatus) -> Record {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let records = api.records(me.user.id, &me.token).await.unwrap();
        if let Some(r) = records.into_iter().find(|r| r.id == id && r.status == status) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "recording {id} never became {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An open take is listed as `recording`, with the bytes received so far and
/// whether its client is connected: first while it records, then while it
/// waits for the device that recorded it.
async fn open_takes_are_listed_while_they_record(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.limits.recording_grace = Duration::from_secs(30)).await else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Live").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: Some("Open".into()) })
        .await
        .unwrap()
        .recording_id;
    let blobs = three_second_blobs();
    ok_ack(socket.append(&chunk(0, id, blobs[0].clone())).await.unwrap());
    let first_chunk = blobs[0].len() as u64;
    let listed = |connected: bool| {
        let (api, me) = (&api, &me);
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let records = api.records(me.user.id, &me.token).await.unwrap();
                if let Some(r) = records.into_iter().find(|r| r.id == id)
                    && r.status == RecordStatus::Recording
                    && r.size_bytes == first_chunk
                    && r.client_connected == Some(connected)
                {
                    return r;
                }
                assert!(std::time::Instant::now() < deadline, "the open take was not listed (connected: {connected})");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let record = listed(true).await;
    assert_eq!(record.name, "Open");
    // An open take cannot be shared or deleted.
    let (status, _) = api.raw(http::Method::DELETE, &format!("/recordings/{id}"), Some(&me.token), None).await.unwrap();
    assert_eq!(status, 409);
    socket.cut();
    listed(false).await;
    app.stop().await;
}
both_backends!(open_takes_listed, open_takes_are_listed_while_they_record);

/// The server loses a take's spool mid-take (its files deleted): the resume
/// answers `next_seq` 0, the client sends the take again from the start, and
/// the saved take is complete.
async fn a_lost_spool_is_sent_again_from_the_start(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Lost").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let blobs = three_second_blobs();
    ok_ack(socket.append(&chunk(0, id, blobs[0].clone())).await.unwrap());
    ok_ack(socket.append(&chunk(1, id, blobs[1].clone())).await.unwrap());
    socket.cut();
    // A restart that comes back without its spool.
    app.state.recordings.forget_for_tests(id).await;
    for ext in ["data", "idx", "peaks"] {
        let _ = std::fs::remove_file(app.spool_dir().join(format!("{id}.{ext}")));
    }
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    match socket.resume(&ResumeRecording { recording_id: id }).await.unwrap() {
        ResumeAck::Ok(ok) => assert_eq!((ok.next_seq, ok.received_bytes), (0, 0), "start over"),
        ResumeAck::Err(e) => panic!("{e:?}"),
    }
    for (seq, blob) in blobs.iter().enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, blob.clone())).await.unwrap());
    }
    let record = match socket
        .stop(&StopRecording { recording_id: Some(id), chunks: Some(3), ..Default::default() })
        .await
        .unwrap()
    {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    assert_eq!(record.duration_ms, 3000);
    let data: Vec<u8> = blobs.concat();
    assert_eq!(audio_digest(&fetch(&api, &record).await), audio_digest(&data), "the whole take");
    socket.cut();
    app.stop().await;
}
both_backends!(lost_spool, a_lost_spool_is_sent_again_from_the_start);

async fn unknown_audio_is_stored_byte_for_byte(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Raw").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let id =
        socket.start(&StartRecording { mime_type: "audio/x-unknown".into(), name: None }).await.unwrap().recording_id;
    for (seq, c) in payload.chunks(30_000).enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, Bytes::copy_from_slice(c))).await.unwrap());
    }
    let StopAck::Ok(ok) = socket.stop(&StopRecording { recording_id: Some(id), ..Default::default() }).await.unwrap()
    else {
        panic!("stop refused")
    };
    assert_eq!(ok.record.duration_ms, 0);
    assert_eq!(fetch(&api, &ok.record).await, payload);
    socket.disconnect().await;
    app.stop().await;
}
both_backends!(unknown_audio, unknown_audio_is_stored_byte_for_byte);

async fn links_answer_ranges_and_refuse_tampering(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.link_secret = Some("test-secret".into())).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Ranges").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    for (seq, blob) in three_second_blobs().into_iter().enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, blob)).await.unwrap());
    }
    let StopAck::Ok(ok) =
        socket.stop(&StopRecording { recording_id: Some(id), chunks: Some(3), ..Default::default() }).await.unwrap()
    else {
        panic!("stop refused")
    };
    let record = ok.record;
    let whole = fetch(&api, &record).await;
    let size = whole.len();

    let (status, headers, _) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["accept-ranges"], "bytes");
    assert!(headers.contains_key("etag") && headers.contains_key("last-modified"));
    for (range, start, end) in [
        ("bytes=0-99", 0, 100),
        ("bytes=1000-2999", 1000, 3000),
        ("bytes=-500", size - 500, size),
        ("bytes=40000-", 40000, size),
    ] {
        let (status, headers, body) = api.get_bytes(&record.link, Some(range)).await.unwrap();
        assert_eq!(status, 206, "{range}");
        assert_eq!(headers["content-range"], format!("bytes {start}-{}/{size}", end - 1).as_str(), "{range}");
        assert_eq!(&body[..], &whole[start..end], "{range}");
    }
    let (status, headers, _) = api.get_bytes(&record.link, Some(&format!("bytes={size}-"))).await.unwrap();
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], format!("bytes */{size}").as_str());

    // Tampered: another signature, another id, a later expiry.
    let last = if record.link.ends_with('0') { "1" } else { "0" };
    let tampered_sig = format!("{}{last}", &record.link[..record.link.len() - 1]);
    let other_id = record.link.replace(&id.to_string(), &Uuid::new_v4().to_string());
    let exp: i64 = record.link.split("exp=").nth(1).unwrap().split('&').next().unwrap().parse().unwrap();
    let later = record.link.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600));
    for link in [tampered_sig, other_id, later, record.link.split('?').next().unwrap().to_string()] {
        let (status, _, body) = api.get_bytes(&link, None).await.unwrap();
        assert_eq!(status, 403, "{link}");
        assert!(String::from_utf8_lossy(&body).contains("error"));
    }
    // Expired: correctly signed, but in the past.
    let links = audiobook_server::links::Links::new(b"test-secret", &app.url, Duration::from_secs(0));
    let _ = links; // the signing key is the configured secret:
    let past = chrono::Utc::now().timestamp() - 60;
    let sig = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"test-secret").unwrap();
        mac.update(format!("media:{id}:{past}").as_bytes());
        hex(&mac.finalize().into_bytes())
    };
    let (status, _, body) = api.get_bytes(&format!("{}/media/{id}?exp={past}&sig={sig}", app.url), None).await.unwrap();
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("expired"));
    socket.disconnect().await;
    app.stop().await;
}
both_backends!(links_and_ranges, links_answer_ranges_and_refuse_tampering);

async fn waveform_peaks_travel_with_the_chunks(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Wave").await.unwrap();
    let other = api.onboard("Nosy").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    let mut expected: Vec<u8> = Vec::new();
    for (seq, blob) in three_second_blobs().into_iter().enumerate() {
        let peaks: Vec<u8> = (0..10).map(|i| (seq * 10 + i) as u8).collect();
        expected.extend(&peaks);
        let c = AppendChunk { peaks: Some(peaks.clone()), ..chunk(seq as u64, id, blob.clone()) };
        ok_ack(socket.append(&c).await.unwrap());
        // A retried chunk does not add its peaks twice.
        ok_ack(socket.append(&AppendChunk { peaks: Some(peaks), ..chunk(seq as u64, id, blob) }).await.unwrap());
    }
    let StopAck::Ok(_) =
        socket.stop(&StopRecording { recording_id: Some(id), chunks: Some(3), ..Default::default() }).await.unwrap()
    else {
        panic!("stop refused")
    };
    let path = format!("/recordings/{id}/waveform");
    let (status, body) = api.raw(http::Method::GET, &path, Some(&me.token), None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, json!({"peaks": expected}));
    let (status, _) = api.raw(http::Method::GET, &path, Some(&other.token), None).await.unwrap();
    assert_eq!(status, 403);
    let (status, _) = api.raw(http::Method::GET, &path, None, None).await.unwrap();
    assert_eq!(status, 401);
    let (status, _) = api
        .raw(http::Method::GET, &format!("/recordings/{}/waveform", Uuid::new_v4()), Some(&me.token), None)
        .await
        .unwrap();
    assert_eq!(status, 404);
    socket.disconnect().await;
    app.stop().await;
}
both_backends!(waveform_peaks, waveform_peaks_travel_with_the_chunks);

/// An event emitted the moment the connect is acknowledged gets its ack:
/// the handlers exist before the acknowledgement (100 sockets at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_after_connect_is_never_dropped() {
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    // 100 users (one user may not open 100 sockets at once).
    let users = futures::future::join_all((0..100).map(|i| {
        let api = Api::new(&app.url);
        async move { api.onboard(&format!("Eager {i}")).await.unwrap() }
    }))
    .await;
    let starts = futures::future::join_all(users.iter().map(|me| {
        let (url, token) = (app.url.clone(), me.token.clone());
        async move {
            let mut socket = Socket::connect(&url, &token).await.unwrap();
            socket.set_ack_timeout(Duration::from_secs(10));
            let ack = socket.resume(&ResumeRecording { recording_id: Uuid::new_v4() }).await;
            socket.cut();
            ack
        }
    }))
    .await;
    for ack in starts {
        // An unknown recording: refused, but answered.
        assert!(matches!(ack, Ok(ResumeAck::Err(_))), "{ack:?}");
    }
    app.stop().await;
}

/// `GET /metrics` answers Prometheus text with the pipeline's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_pipeline() {
    let Some(app) = spawn_app(Backend::Sqlite).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Metered").await.unwrap();
    let data: Vec<u8> = three_second_blobs().concat();
    let record = common::record_take(&app.url, &me.token, None, &data, 16_000).await;
    assert_eq!(record.status, RecordStatus::Ready);
    let response = reqwest::get(format!("{}/metrics", app.url)).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    assert!(value("audiobook_chunks_received_total") >= 4.0);
    assert!(value("audiobook_bytes_received_total") >= data.len() as f64);
    assert!(value("audiobook_ack_seconds_count") >= 4.0);
    assert!(value("audiobook_finalize_seconds_count") >= 1.0);
    for name in ["audiobook_ack_seconds_bucket", "audiobook_sockets", "audiobook_http_connections"] {
        assert!(text.contains(name), "{name} missing in:\n{text}");
    }
    app.stop().await;
}

/// WebKit's MediaRecorder ignores `pause()`: its real file (blobs as it
/// handed them out) with the page's timeline is saved without the paused
/// span, as long as the time recorded; the same take from a recorder that
/// honoured the pause (Chromium's) is left whole.
async fn a_pause_the_recorder_ignored_is_cut(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Safari").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let data = fixture("webkitgtk-aac-pause.m4a");
    let id = socket
        .start(&StartRecording { mime_type: "audio/mp4; codecs=mp4a".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let mut at = 0;
    for (seq, size) in [817usize, 8563, 26289, 13128].into_iter().enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, Bytes::copy_from_slice(&data[at..at + size]))).await.unwrap());
        at += size;
    }
    let stop = StopRecording {
        recording_id: Some(id),
        chunks: Some(4),
        paused_ms: Some(vec![[2068, 3579]]),
        recorded_ms: Some(4074),
        ..Default::default()
    };
    let record = match socket.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    println!("WebKit take with a 1.5 s pause: saved {} ms for 4074 ms recorded", record.duration_ms);
    assert!(record.duration_ms.abs_diff(4074) <= 300, "{} ms saved for 4074 ms recorded", record.duration_ms);
    assert_eq!(record.mime_type, "audio/mp4;codecs=mp4a");

    // Chromium honours pause(): its 6.0 s of media for 6.0 s recorded stay whole.
    let webm = fixture("mediarecorder-opus-pause.webm");
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    ok_ack(socket.append(&chunk(0, id, Bytes::from(webm))).await.unwrap());
    let stop = StopRecording {
        recording_id: Some(id),
        chunks: Some(1),
        paused_ms: Some(vec![[3000, 5000]]),
        recorded_ms: Some(6000),
        ..Default::default()
    };
    match socket.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => assert_eq!(ok.record.duration_ms, 6009),
        StopAck::Err(e) => panic!("{e:?}"),
    }
    socket.cut();
    app.stop().await;
}
both_backends!(ignored_pause, a_pause_the_recorder_ignored_is_cut);

/// An instance died while saving a take, and its spool died with it (no
/// shared spool): the client's retried stop is told to send the take again
/// from the start, and it is saved complete.
async fn a_take_lost_while_being_saved_is_sent_again(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.limits.recording_grace = Duration::from_secs(2)).await else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Unlucky").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    let blobs = three_second_blobs();
    for (seq, blob) in blobs.iter().enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, blob.clone())).await.unwrap());
    }
    socket.cut();
    // Another instance claimed it for saving, then died with its disk.
    app.state.recordings.forget_for_tests(id).await;
    saving_elsewhere(&app.state.db, id, Uuid::new_v4(), 60).await;
    for ext in ["data", "idx", "peaks"] {
        let _ = std::fs::remove_file(app.spool_dir().join(format!("{id}.{ext}")));
    }
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let stop = StopRecording { recording_id: Some(id), chunks: Some(3), ..Default::default() };
    match socket.stop(&stop).await.unwrap() {
        StopAck::Err(e) => assert_eq!(e.next_seq, Some(0), "send it all again: {e:?}"),
        StopAck::Ok(ok) => panic!("saved without its audio: {ok:?}"),
    }
    for (seq, blob) in blobs.iter().enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, blob.clone())).await.unwrap());
    }
    let record = match socket.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("{e:?}"),
    };
    assert_eq!((record.status, record.duration_ms), (RecordStatus::Ready, 3000));
    socket.cut();
    app.stop().await;
}
both_backends!(lost_while_saving, a_take_lost_while_being_saved_is_sent_again);

/// Makes take `id` look claimed for saving by instance `holder`, whose last
/// heartbeat was `silent_secs` ago.
async fn saving_elsewhere(db: &audiobook_server::db::Db, id: Uuid, holder: Uuid, silent_secs: i64) {
    let since = chrono::Utc::now() - chrono::Duration::seconds(silent_secs);
    let sql = "UPDATE records SET status = 'finalizing', outcome = 'ready', owner_instance = $2, last_seen_at = $3 WHERE id = $1";
    match db {
        audiobook_server::db::Db::Sqlite(p) => {
            sqlx::query(sql).bind(id).bind(holder).bind(since).execute(&p.write).await.unwrap();
        }
        audiobook_server::db::Db::Postgres(p) => {
            sqlx::query(sql).bind(id).bind(holder).bind(since).execute(p).await.unwrap();
        }
    }
}

/// A take whose holder died while saving it, spool intact (a shared spool
/// folder): another instance's reaper saves it once the holder's lease has
/// run out, not after the whole grace period (its client has stopped and
/// waits on "being saved"); while the holder still holds the spool's lock
/// (slow, not dead), it is left alone. Found by the cluster harness.
async fn a_take_whose_saver_died_is_saved_after_its_lease(backend: Backend) {
    // Grace 600 s: tick 5 s, lease 15 s.
    let Some(app) = spawn_app_with(backend, |c| c.limits.recording_grace = Duration::from_secs(600)).await else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Patient").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = socket
        .start(&StartRecording { mime_type: "audio/webm;codecs=opus".into(), name: None })
        .await
        .unwrap()
        .recording_id;
    for (seq, blob) in three_second_blobs().iter().enumerate() {
        ok_ack(socket.append(&chunk(seq as u64, id, blob.clone())).await.unwrap());
    }
    socket.cut();
    app.state.recordings.forget_for_tests(id).await;
    // "Another instance" claimed it for saving 20 s ago (past its 15 s
    // lease, well within the grace period) and still holds the spool's lock.
    let holder_lock = audiobook_server::recording::spool::Spool::recover(&app.spool_dir(), id).expect("spool");
    let dead = Uuid::new_v4();
    saving_elsewhere(&app.state.db, id, dead, 20).await;
    // Two reaper ticks with the lock held: not touched.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let row = app.state.db.record(id).await.unwrap().unwrap();
    assert_eq!(row.status, "finalizing", "taken while its holder still held the spool");
    assert_eq!(row.owner_instance, Some(dead));
    // The holder dies (its lock goes with it): saved by this instance.
    drop(holder_lock);
    let released = std::time::Instant::now();
    let record = wait_for_status(&api, &me, id, RecordStatus::Ready).await;
    eprintln!("saved {:.1} s after the holder's lock went", released.elapsed().as_secs_f64());
    assert_eq!(record.duration_ms, 3000);
    app.stop().await;
}
both_backends!(saver_died, a_take_whose_saver_died_is_saved_after_its_lease);
