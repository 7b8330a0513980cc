//! Faults with real server processes: SIGKILL mid-take then a restart, a
//! take whose client never comes back, a third of the sockets cut, and two
//! instances sharing one PostgreSQL, storage and spool where the first dies.
//! Every take either completes with every byte or ends `interrupted` holding
//! every acknowledged byte.

mod common;

use std::time::{Duration, Instant};

use audiobook_client::wire::{
    AppendAck, AppendChunk, Onboarded, Record, RecordStatus, ResumeAck, ResumeRecording, StartRecording, StopAck,
    StopRecording,
};
use audiobook_client::{Api, Socket};
use audiobook_server::testing::{TestDb, postgres_or_skip};
use bytes::Bytes;
use futures::future::join_all;
use uuid::Uuid;

use common::process::{Server, free_port, server_env, with_port};

/// Deterministic pseudo-random audio for take `n` (not a container the
/// server knows, so it is stored byte for byte).
fn payload(n: u64, chunks: usize, chunk_bytes: usize) -> Vec<Bytes> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ n.wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..chunks)
        .map(|_| {
            Bytes::from(
                (0..chunk_bytes)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect::<Vec<u8>>(),
            )
        })
        .collect()
}

/// One recorder: its user, its socket and what it has had acknowledged.
struct Take {
    me: Onboarded,
    chunks: Vec<Bytes>,
    id: Uuid,
    acked: u64,
}

impl Take {
    async fn begin(url: &str, n: u64, chunks: usize) -> (Take, Socket) {
        let me = Api::new(url).onboard(&format!("Rec {n}")).await.unwrap();
        let socket = Socket::connect(url, &me.token).await.unwrap();
        let id = socket
            .start(&StartRecording { mime_type: "application/octet-stream".into(), name: None })
            .await
            .unwrap()
            .recording_id;
        (Take { me, chunks: payload(n, chunks, 4096), id, acked: 0 }, socket)
    }

    async fn send(&mut self, socket: &Socket, upto: usize) {
        for seq in self.acked as usize..upto {
            let chunk = AppendChunk {
                data: Some(self.chunks[seq].clone()),
                seq: Some(seq as u64),
                recording_id: Some(self.id),
                ..Default::default()
            };
            match socket.append(&chunk).await.unwrap() {
                AppendAck::Ok(ok) => self.acked = ok.seq + 1,
                AppendAck::Err(e) => panic!("chunk {seq} refused: {e:?}"),
            }
        }
    }

    async fn resume_and_finish(&mut self, url: &str) -> Record {
        let socket = Socket::connect(url, &self.me.token).await.unwrap();
        match socket.resume(&ResumeRecording { recording_id: self.id }).await.unwrap() {
            ResumeAck::Ok(ok) => {
                assert_eq!(ok.next_seq, self.acked, "the server holds every acknowledged chunk");
                assert_eq!(ok.received_bytes, self.acked * 4096);
            }
            ResumeAck::Err(e) => panic!("resume refused: {e:?}"),
        }
        self.send(&socket, self.chunks.len()).await;
        let stop = StopRecording {
            user_id: Some(self.me.user.id),
            recording_id: Some(self.id),
            chunks: Some(self.chunks.len() as u64),
            ..Default::default()
        };
        let record = match socket.stop(&stop).await.unwrap() {
            StopAck::Ok(ok) => ok.record,
            StopAck::Err(e) => panic!("stop refused: {e:?}"),
        };
        socket.disconnect().await;
        record
    }

    /// The stored audio is exactly the first `chunks` chunks, in order.
    async fn verify(&self, url: &str, record: &Record, chunks: usize) {
        let (status, _, body) = Api::new(url).get_bytes(&record.link, None).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body.len(), chunks * 4096, "take {}", self.id);
        assert!(body[..] == self.chunks[..chunks].concat()[..], "take {}: bytes differ", self.id);
    }

    async fn wait_for(&self, url: &str, status: RecordStatus) -> Record {
        let api = Api::new(url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(records) = api.records(self.me.user.id, &self.me.token).await
                && let Some(r) = records.into_iter().find(|r| r.id == self.id && r.status == status)
            {
                return r;
            }
            assert!(Instant::now() < deadline, "take {} never became {status:?}", self.id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn sqlite() -> TestDb {
    TestDb::sqlite().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_take_then_restart_every_take_resumes() {
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_env(&db.url, dir.path(), 30.0)).await;
    let mut takes = Vec::new();
    for n in 0..20 {
        let (mut take, socket) = Take::begin(&server.url, n, 12).await;
        take.send(&socket, 5 + (n as usize % 4)).await;
        takes.push((take, socket));
    }
    let server = server.restart().await;
    let url = server.url.clone();
    let records = join_all(takes.iter_mut().map(|(take, _)| take.resume_and_finish(&url))).await;
    for ((take, _), record) in takes.iter().zip(&records) {
        assert_eq!(record.status, RecordStatus::Ready);
        take.verify(&url, record, 12).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_no_client_ends_interrupted_with_every_acked_byte() {
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_env(&db.url, dir.path(), 1.0)).await;
    let mut takes = Vec::new();
    for n in 0..20 {
        let (mut take, socket) = Take::begin(&server.url, n, 12).await;
        take.send(&socket, 1 + (n as usize % 9)).await;
        takes.push((take, socket));
    }
    let server = server.restart().await;
    // Nobody comes back: after the grace period each take is finalized as it was.
    for (take, _) in &takes {
        let record = take.wait_for(&server.url, RecordStatus::Interrupted).await;
        take.verify(&server.url, &record, take.acked as usize).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_of_the_sockets_cut_all_resume() {
    let db = sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_env(&db.url, dir.path(), 30.0)).await;
    let url = server.url.clone();
    let results = join_all((0..20u64).map(|n| {
        let url = url.clone();
        async move {
            let (mut take, socket) = Take::begin(&url, n, 16).await;
            take.send(&socket, 6).await;
            if n % 3 == 0 {
                socket.cut();
                tokio::time::sleep(Duration::from_millis(100)).await;
                let record = take.resume_and_finish(&url).await;
                (take, record)
            } else {
                take.send(&socket, 16).await;
                let stop = StopRecording {
                    user_id: None,
                    recording_id: Some(take.id),
                    chunks: Some(16),
                    ..Default::default()
                };
                let StopAck::Ok(ok) = socket.stop(&stop).await.unwrap() else { panic!("stop refused") };
                socket.disconnect().await;
                (take, ok.record)
            }
        }
    }))
    .await;
    for (take, record) in &results {
        assert_eq!(record.status, RecordStatus::Ready);
        take.verify(&url, record, 16).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_instance_takes_over_when_the_first_dies() {
    let Some(db) = postgres_or_skip().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env_a = server_env(&db.url, dir.path(), 30.0);
    let env_b = with_port(&env_a, free_port());
    let mut a = Server::start(env_a).await;
    let b = Server::start(env_b).await;

    let mut takes = Vec::new();
    for n in 0..5 {
        let (mut take, socket) = Take::begin(&a.url, n, 10).await;
        take.send(&socket, 4).await;
        takes.push((take, socket));
    }
    a.kill();
    for (take, _) in &mut takes {
        let record = take.resume_and_finish(&b.url).await;
        assert_eq!(record.status, RecordStatus::Ready);
        take.verify(&b.url, &record, 10).await;
    }
    drop(b);
    db.drop().await;
}

/// The first instance stays alive but its socket is gone; the client resumes
/// on the second. The first one's reaper must not finalize (and delete) a
/// take that the second now holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_resumed_elsewhere_is_not_reaped_by_its_old_holder() {
    let Some(db) = postgres_or_skip().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env_a = server_env(&db.url, dir.path(), 1.0);
    let env_b = with_port(&env_a, free_port());
    let a = Server::start(env_a).await;
    let b = Server::start(env_b).await;

    let (mut take, socket) = Take::begin(&a.url, 7, 16).await;
    take.send(&socket, 4).await;
    socket.cut();
    // Resume on B and keep streaming, slowly, for well past A's grace period.
    let on_b = Socket::connect(&b.url, &take.me.token).await.unwrap();
    let ResumeAck::Ok(resumed) = on_b.resume(&ResumeRecording { recording_id: take.id }).await.unwrap() else {
        panic!("resume refused")
    };
    assert_eq!(resumed.next_seq, 4);
    for upto in 5..=16 {
        take.send(&on_b, upto).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stop = StopRecording { user_id: None, recording_id: Some(take.id), chunks: Some(16), ..Default::default() };
    let record = match on_b.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("stop refused: {e:?}"),
    };
    assert_eq!(record.status, RecordStatus::Ready);
    take.verify(&b.url, &record, 16).await;
    drop((a, b));
    db.drop().await;
}

/// A client that lands on another instance at every chunk (no stickiness,
/// a new WebSocket each time; the connection to the previous one simply
/// cut): each resume tells it exactly where the take stands, no chunk is
/// stored twice or lost, and the take is held by one instance at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bouncing_between_instances_stores_every_chunk_once() {
    let Some(db) = postgres_or_skip().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let env_a = server_env(&db.url, dir.path(), 30.0);
    let env_b = with_port(&env_a, free_port());
    let a = Server::start(env_a).await;
    let b = Server::start(env_b).await;
    let urls = [a.url.clone(), b.url.clone()];

    let (mut take, socket) = Take::begin(&a.url, 11, 24).await;
    take.send(&socket, 1).await;
    socket.cut();
    let mut resumes = Vec::new();
    for hop in 1..24usize {
        let url = &urls[hop % 2];
        // A reconnect every 250 ms: within the per-user connection rate.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let socket = Socket::connect(url, &take.me.token).await.unwrap();
        let next_seq = loop {
            match socket.resume(&ResumeRecording { recording_id: take.id }).await.unwrap() {
                ResumeAck::Ok(ok) => break ok.next_seq,
                // The previous instance may still be closing its side.
                ResumeAck::Err(e) if e.retry_after_ms.is_some() => {
                    tokio::time::sleep(Duration::from_millis(e.retry_after_ms.unwrap())).await;
                }
                ResumeAck::Err(e) => panic!("resume refused at hop {hop}: {e:?}"),
            }
        };
        assert_eq!(next_seq, take.acked, "hop {hop}: the server knows every acknowledged chunk");
        resumes.push(next_seq);
        // Every other hop, the previous chunk is sent again (its ack was
        // "lost"): acknowledged again, stored once.
        if hop % 2 == 0 {
            let again = AppendChunk {
                data: Some(take.chunks[hop - 1].clone()),
                seq: Some(hop as u64 - 1),
                recording_id: Some(take.id),
                ..Default::default()
            };
            assert!(matches!(socket.append(&again).await.unwrap(), AppendAck::Ok(_)));
        }
        take.send(&socket, hop + 1).await;
        if hop == 23 {
            let stop =
                StopRecording { user_id: None, recording_id: Some(take.id), chunks: Some(24), ..Default::default() };
            let record = match socket.stop(&stop).await.unwrap() {
                StopAck::Ok(ok) => ok.record,
                StopAck::Err(e) => panic!("stop refused: {e:?}"),
            };
            take.verify(url, &record, 24).await;
        }
        socket.cut();
    }
    assert_eq!(resumes, (1..24).collect::<Vec<u64>>());
    drop((a, b));
    db.drop().await;
}
