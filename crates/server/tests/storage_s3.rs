//! Recordings in a real S3-compatible server (moto, started by the test
//! command): stored with the right bytes and type, played through a
//! presigned link with Range, and kept safe while the bucket is unreachable.

mod common;

use std::time::{Duration, Instant};

use audiobook_client::Api;
use audiobook_client::wire::{Record, RecordStatus};
use audiobook_server::storage::Storage;
use audiobook_server::testing::{s3_config, s3_or_skip};
use common::{Backend, record_take, spawn_app_with};
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};

fn fixture() -> Vec<u8> {
    std::fs::read(format!("{}/../media/tests/data/mediarecorder-opus-20s.webm", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn object_bytes(storage: &Storage, key: &str) -> Vec<u8> {
    let read = storage.get(key, None).await.unwrap();
    read.stream.map(|b| b.unwrap().to_vec()).concat().await
}

fn key_of(record: &Record) -> String {
    format!("recordings/{}/{}.webm", record.user_id, record.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_goes_to_the_bucket_and_plays_with_range() {
    let Some(s3) = s3_or_skip() else { return };
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.storage = s3.clone()).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Cloud").await.unwrap();
    let data = fixture();
    let record = record_take(&app.url, &me.token, None, &data, 40_000).await;
    assert_eq!((record.status, record.duration_ms), (RecordStatus::Ready, 19980));

    // The object is in the bucket: the fixed file, with its content type.
    let bucket = Storage::from_config(&s3).unwrap();
    let stored = object_bytes(&bucket, &key_of(&record)).await;
    assert_eq!(stored.len() as u64, record.size_bytes);
    let blocks = |b: &[u8]| audiobook_media::audio_blocks(b).unwrap();
    assert_eq!(blocks(&stored), blocks(&data), "audio blocks unchanged");

    // The link redirects to a presigned URL; Range works through it.
    let (status, headers, body) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "audio/webm;codecs=opus");
    assert_eq!(&body[..], &stored[..]);
    let (status, headers, body) = api.get_bytes(&record.link, Some("bytes=1000-1999")).await.unwrap();
    assert_eq!(status, 206);
    assert_eq!(headers["content-range"], format!("bytes 1000-1999/{}", stored.len()).as_str());
    assert_eq!(&body[..], &stored[1000..2000]);
    // A download goes through the server, with a file name.
    let (status, headers, body) = api.get_bytes(&format!("{}&download=1", record.link), None).await.unwrap();
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"Recording 1.webm\""));
    assert_eq!(&body[..], &stored[..]);
    app.stop().await;
}

/// A TCP proxy to the S3 server that can be taken down and brought back on
/// the same port: the bucket becomes unreachable, then reachable again.
struct Outage {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Outage {
    async fn proxy_to(target: String, port: u16) -> tokio::task::JoinHandle<()> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { break };
                let target = target.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        })
    }

    async fn start(target: &str) -> Outage {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let task = Outage::proxy_to(target.to_string(), port).await;
        Outage { port, task }
    }

    /// Closes the port and every open connection (aborting the task drops them).
    fn down(&self) {
        self.task.abort();
    }

    async fn back(&mut self, target: &str) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task = Outage::proxy_to(target.to_string(), self.port).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_down_at_stop_keeps_the_take_pending_until_it_is_back() {
    let Some(s3) = s3_or_skip() else { return };
    let audiobook_server::config::StorageConfig::S3 { endpoint: Some(real), .. } = &s3 else { unreachable!() };
    let target = real.trim_start_matches("http://").to_string();
    let mut outage = Outage::start(&target).await;
    let proxied = s3_config(&format!("http://127.0.0.1:{}", outage.port));
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| c.storage = proxied.clone()).await else { return };
    let api = Api::new(&app.url);
    let me = api.onboard("Outage").await.unwrap();
    let data = fixture();

    outage.down();
    let record = record_take(&app.url, &me.token, None, &data, 40_000).await;
    assert_eq!(record.status, RecordStatus::Pending, "not shown as ready, not lost");
    assert_eq!(record.duration_ms, 19980);
    assert!(app.spool_dir().join(format!("{}.data", record.id)).exists(), "the spool is kept");
    // Meanwhile it plays from the server's spool.
    let (status, _, pending_bytes) = api.get_bytes(&record.link, None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(pending_bytes.len() as u64, record.size_bytes);

    outage.back(&target).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let records = api.records(me.user.id, &me.token).await.unwrap();
        let r = records.into_iter().find(|r| r.id == record.id).unwrap();
        if r.status == RecordStatus::Ready {
            break r;
        }
        assert!(Instant::now() < deadline, "never uploaded after the bucket came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bucket = Storage::from_config(&s3).unwrap();
    assert_eq!(object_bytes(&bucket, &key_of(&ready)).await, pending_bytes.to_vec(), "the same bytes");
    assert!(!app.spool_dir().join(format!("{}.data", record.id)).exists(), "spool removed once uploaded");
    app.stop().await;
}
