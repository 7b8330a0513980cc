//! Lossless takes (`audio/wav`, see `audiobook_wire::lossless`) over a real
//! socket to a real server: saved as a WAV with exact sizes, duration and
//! peaks from the samples; an abandoned take still a valid WAV of every
//! acknowledged sample; and what an attacker may send, refused in words.

mod common;

use std::io::Cursor;
use std::time::Duration;

use audiobook_client::wire::{
    AppendAck, AppendChunk, Failure, Record, RecordStatus, StartRecording, StopAck, StopRecording,
};
use audiobook_client::{Api, Socket};
use audiobook_wire::lossless;
use bytes::Bytes;
use common::{Backend, spawn_app, spawn_app_with};
use uuid::Uuid;

fn chunk(seq: Option<u64>, id: Option<Uuid>, data: Vec<u8>) -> AppendChunk {
    AppendChunk {
        data: Some(Bytes::from(data)),
        seq,
        recording_id: id,
        mime_type: Some("audio/wav".into()),
        ..Default::default()
    }
}

/// `seconds` of a 440 Hz tone at `rate`, as little-endian samples.
fn tone(rate: u32, seconds: f64) -> Vec<u8> {
    let n = (f64::from(rate) * seconds) as usize;
    (0..n)
        .flat_map(|i| {
            let t = i as f64 / f64::from(rate);
            (((t * 440.0 * std::f64::consts::TAU).sin() * 12_000.0) as i16).to_le_bytes()
        })
        .collect()
}

/// The take's chunks as the web app sends them: the header, then 1 s pieces.
fn chunks_of(rate: u32, samples: &[u8]) -> Vec<Vec<u8>> {
    let second = lossless::bytes_per_second(rate) as usize;
    let mut chunks: Vec<Vec<u8>> = samples.chunks(second).map(<[u8]>::to_vec).collect();
    chunks[0].splice(0..0, lossless::stream_header(rate));
    chunks
}

fn refused(ack: AppendAck) -> Failure {
    match ack {
        AppendAck::Err(e) => e,
        AppendAck::Ok(ok) => panic!("expected a refusal, got {ok:?}"),
    }
}

async fn stop(socket: &Socket, id: Uuid, chunks: u64) -> Record {
    match socket.stop(&StopRecording { recording_id: Some(id), chunks: Some(chunks), ..Default::default() }).await {
        Ok(StopAck::Ok(ok)) => ok.record,
        other => panic!("stop: {other:?}"),
    }
}

async fn start(socket: &Socket) -> Uuid {
    socket.start(&StartRecording { mime_type: "audio/wav".into(), name: None }).await.unwrap().recording_id
}

/// The stored file read by hound: rate and samples.
fn decode(wav: &[u8]) -> (u32, Vec<i16>) {
    let reader = hound::WavReader::new(Cursor::new(wav)).expect("a valid WAV");
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    (spec.sample_rate, reader.into_samples().map(Result::unwrap).collect())
}

fn samples_of(bytes: &[u8]) -> Vec<i16> {
    bytes.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])).collect()
}

async fn a_lossless_take_is_saved_as_an_exact_wav(backend: Backend) {
    let Some(app) = spawn_app(backend).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Lossless").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = start(&socket).await;
    let samples = tone(48_000, 3.5);
    let chunks = chunks_of(48_000, &samples);
    for (seq, c) in chunks.iter().enumerate() {
        let ack = socket.append(&chunk(Some(seq as u64), Some(id), c.clone())).await.unwrap();
        assert!(matches!(ack, AppendAck::Ok(_)), "{ack:?}");
    }
    // A retried chunk is not written twice.
    assert!(matches!(socket.append(&chunk(Some(1), Some(id), chunks[1].clone())).await.unwrap(), AppendAck::Ok(_)));
    let record = stop(&socket, id, chunks.len() as u64).await;
    assert_eq!(record.status, RecordStatus::Ready);
    assert_eq!(record.mime_type, "audio/wav");
    assert_eq!(record.duration_ms, 3500, "exact, from the sample count");
    assert_eq!(record.size_bytes, 44 + samples.len() as u64);

    let (status, headers, wav) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "audio/wav");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(&wav[4..8], &(wav.len() as u32 - 8).to_le_bytes(), "RIFF size");
    assert_eq!(&wav[40..44], &(samples.len() as u32).to_le_bytes(), "data size");
    let (rate, decoded) = decode(&wav);
    assert_eq!(rate, 48_000);
    assert_eq!(decoded, samples_of(&samples), "every sample, once, in order");

    // Seeking: a range in the middle is the same bytes.
    let middle = 44 + samples.len() / 2;
    let (status, _, part) =
        api.get_bytes(&record.link, Some(&format!("bytes={middle}-{}", middle + 999))).await.unwrap();
    assert_eq!(status, 206);
    assert_eq!(&part[..], &wav[middle..middle + 1000]);

    // Peaks come from the samples: ten a second, the tone well above silence.
    let path = format!("/recordings/{id}/waveform");
    let (status, body) = api.raw(http::Method::GET, &path, Some(&me.token), None).await.unwrap();
    assert_eq!(status, 200);
    let peaks: Vec<u64> = serde_json::from_value(body["peaks"].clone()).unwrap();
    assert_eq!(peaks.len(), 35);
    assert!(peaks.iter().all(|&p| (180..=255).contains(&p)), "{peaks:?}");
    socket.disconnect().await;
    app.stop().await;
}
both_backends!(exact_wav, a_lossless_take_is_saved_as_an_exact_wav);

/// A client that never comes back: the take is finalized as interrupted,
/// a valid WAV of every sample acknowledged (the half sample of a chunk
/// torn by the crash of the spool never counted).
async fn an_abandoned_lossless_take_is_a_valid_wav_of_every_acked_sample(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.limits.recording_grace = Duration::from_millis(600)).await else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Gone").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let id = start(&socket).await;
    let samples = tone(44_100, 2.2);
    let chunks = chunks_of(44_100, &samples);
    for (seq, c) in chunks.iter().enumerate() {
        assert!(matches!(
            socket.append(&chunk(Some(seq as u64), Some(id), c.clone())).await.unwrap(),
            AppendAck::Ok(_)
        ));
    }
    socket.cut();
    let record = wait_for_status(&api, &me, id, RecordStatus::Interrupted).await;
    assert_eq!(record.duration_ms, 2200);
    let (_, _, wav) = api.get_bytes(&record.link, None).await.unwrap();
    let (rate, decoded) = decode(&wav);
    assert_eq!((rate, decoded), (44_100, samples_of(&samples)));
    app.stop().await;
}
both_backends!(abandoned_wav, an_abandoned_lossless_take_is_a_valid_wav_of_every_acked_sample);

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

/// What an attacker may send as a lossless take, each refused with words
/// that say what is wrong, and nothing of it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_lossless_chunks_are_refused_in_words() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.limits.max_live_recordings_per_user = 50).await else {
        return;
    };
    let api = Api::new(&app.url);
    let me = api.onboard("Attacker").await.unwrap();
    let socket = Socket::connect(&app.url, &me.token).await.unwrap();
    let header = |patch: &dyn Fn(&mut [u8; 44])| {
        let mut h = lossless::stream_header(48_000);
        patch(&mut h);
        let mut c = h.to_vec();
        c.extend_from_slice(&[0; 100]);
        c
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("no header", vec![0u8; 4000], "RIFF"),
        ("a header cut short", lossless::stream_header(48_000)[..30].to_vec(), "44-byte"),
        ("HTML", b"<html><script>alert(1)</script></html>".repeat(3), "RIFF"),
        ("an absurd rate", header(&|h| h[24..28].copy_from_slice(&4_000_000_000u32.to_le_bytes())), "sample rate"),
        ("a rate of zero", header(&|h| h[24..28].copy_from_slice(&0u32.to_le_bytes())), "sample rate"),
        ("stereo", header(&|h| h[22] = 2), "mono"),
        ("32-bit float", header(&|h| h[20] = 3), "PCM"),
        ("24-bit", header(&|h| h[34] = 24), "16-bit"),
        ("a byte rate that lies", header(&|h| h[28..32].copy_from_slice(&8_000u32.to_le_bytes())), "byte rate"),
        ("an extra chunk before data", header(&|h| h[36..40].copy_from_slice(b"LIST")), "data chunk"),
        (
            "half a sample",
            {
                let mut c = lossless::stream_header(48_000).to_vec();
                c.extend_from_slice(&[1, 2, 3]);
                c
            },
            "whole number",
        ),
    ];
    for (what, data, words) in cases {
        let id = start(&socket).await;
        let e = refused(socket.append(&chunk(Some(0), Some(id), data)).await.unwrap());
        assert!(e.error.contains(words), "{what}: {e:?}");
        assert!(e.retry_after_ms.is_none(), "{what}: not temporary");
        assert!(e.error.starts_with("This lossless recording's audio is refused"), "{what}: {e:?}");
        let spooled = std::fs::metadata(app.spool_dir().join(format!("{id}.data"))).map_or(0, |m| m.len());
        assert_eq!(spooled, 0, "{what}: nothing written");
    }

    // Chunk 0 missing: a later chunk first is a gap.
    let id = start(&socket).await;
    let e = refused(socket.append(&chunk(Some(1), Some(id), vec![0; 96_000])).await.unwrap());
    assert_eq!(e.next_seq, Some(0), "{e:?}");
    // An odd later chunk after a good chunk 0.
    assert!(matches!(socket.append(&chunk(Some(0), Some(id), header(&|_| {}))).await.unwrap(), AppendAck::Ok(_)));
    let e = refused(socket.append(&chunk(Some(1), Some(id), vec![0; 95_999])).await.unwrap());
    assert!(e.error.contains("chunk 1 holds 95999 bytes"), "{e:?}");
    // The take goes on after the refusal, and its sizes are the server's,
    // whatever the header claimed.
    assert!(matches!(socket.append(&chunk(Some(1), Some(id), vec![0; 96_000])).await.unwrap(), AppendAck::Ok(_)));
    let record = stop(&socket, id, 2).await;
    assert_eq!((record.duration_ms, record.size_bytes), (1001, 44 + 96_100));

    // A header whose sizes lie (a data size of 10 bytes) is accepted: sizes
    // cannot be known while recording, and the server writes its own.
    let id = start(&socket).await;
    let lying = header(&|h| h[40..44].copy_from_slice(&10u32.to_le_bytes()));
    assert!(matches!(socket.append(&chunk(Some(0), Some(id), lying)).await.unwrap(), AppendAck::Ok(_)));
    let record = stop(&socket, id, 1).await;
    let (_, _, wav) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(decode(&wav).1.len(), 50);
    assert_eq!(&wav[40..44], &100u32.to_le_bytes());

    // The original protocol (no seq): the first chunk opens the take and is checked too.
    let other = Socket::connect(&app.url, &me.token).await.unwrap();
    let e = refused(other.append(&chunk(None, None, vec![7; 1000])).await.unwrap());
    assert!(e.error.contains("RIFF"), "{e:?}");
    socket.disconnect().await;
    other.disconnect().await;
    app.stop().await;
}
