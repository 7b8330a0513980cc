//! `spawn_app()` for integration tests: a real server on a free loopback
//! port, with a fresh database on the chosen backend and temporary folders.

#![allow(dead_code)]

pub mod process;

use std::path::PathBuf;

use audiobook_server::AppState;
use audiobook_server::config::{Config, StorageConfig};
use audiobook_server::testing::{TestDb, postgres_or_skip};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub url: String,
    pub state: AppState,
    pub db: TestDb,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Options {
    pub configure: Box<dyn FnOnce(&mut Config) + Send>,
}

/// A fresh database, or `None` when PostgreSQL is not available (skipped).
pub async fn database(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => Some(TestDb::sqlite().await),
        Backend::Postgres => postgres_or_skip().await,
    }
}

pub fn test_config(db_url: &str, dir: &std::path::Path) -> Config {
    let mut config = Config::from_lookup(|_| None).expect("defaults");
    config.host = "127.0.0.1".into();
    config.database_url = db_url.to_string();
    config.storage = StorageConfig::Local { dir: dir.join("public") };
    config.spool_dir = dir.join("spool");
    config.web_dist = None;
    // Tests onboard many users from 127.0.0.1; the limit has its own test.
    config.limits.onboard_per_minute = 0;
    config
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    init_logs();
    let db = database(backend).await?;
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = test_config(&db.url, dir.path());
    config.port = port;
    config.public_url = format!("http://127.0.0.1:{port}");
    configure(&mut config);
    let state = AppState::connect(config).await.expect("app starts");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let state = state.clone();
        async move {
            audiobook_server::serve_on(state, listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        }
    });
    Some(TestApp { url: format!("http://127.0.0.1:{port}"), state, db, dir, shutdown: Some(tx), task: Some(task) })
}

impl TestApp {
    pub fn spool_dir(&self) -> PathBuf {
        self.state.config.spool_dir.clone()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
        self.db.drop().await;
    }
}

/// Logs only when TEST_LOG is set.
pub fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt().with_env_filter("info,audiobook_server=debug").with_test_writer().try_init();
    }
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body(common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $body(common::Backend::Postgres).await
            }
        }
    };
}

/// Records `data` as one take through a real socket (sequenced protocol, in
/// chunks of `chunk_bytes`), every chunk acknowledged, and returns the saved
/// record. The ack timeout is generous: the test machine is shared with the
/// browser tests.
pub async fn record_take(
    url: &str,
    token: &str,
    name: Option<&str>,
    data: &[u8],
    chunk_bytes: usize,
) -> audiobook_client::wire::Record {
    record_take_as(url, token, "audio/webm;codecs=opus", name, data, chunk_bytes).await
}

/// [`record_take`] with the MIME type the client declares.
pub async fn record_take_as(
    url: &str,
    token: &str,
    mime_type: &str,
    name: Option<&str>,
    data: &[u8],
    chunk_bytes: usize,
) -> audiobook_client::wire::Record {
    use audiobook_client::wire::{AppendAck, AppendChunk, StartRecording, StopAck, StopRecording};
    let mut socket = audiobook_client::Socket::connect(url, token).await.unwrap();
    socket.set_ack_timeout(std::time::Duration::from_secs(30));
    let start = StartRecording { mime_type: mime_type.into(), name: name.map(str::to_string) };
    let id = socket.start(&start).await.unwrap().recording_id;
    let chunks: Vec<&[u8]> = data.chunks(chunk_bytes).collect();
    for (seq, c) in chunks.iter().enumerate() {
        let chunk = AppendChunk {
            data: Some(bytes::Bytes::copy_from_slice(c)),
            seq: Some(seq as u64),
            recording_id: Some(id),
            mime_type: Some(start.mime_type.clone()),
            ..Default::default()
        };
        let ack = socket.append(&chunk).await.unwrap();
        assert!(matches!(ack, AppendAck::Ok(_)), "{ack:?}");
    }
    let stop = StopRecording {
        user_id: None,
        recording_id: Some(id),
        chunks: Some(chunks.len() as u64),
        ..Default::default()
    };
    let record = match socket.stop(&stop).await.unwrap() {
        StopAck::Ok(ok) => ok.record,
        StopAck::Err(e) => panic!("stop refused: {e:?}"),
    };
    socket.disconnect().await;
    record
}
