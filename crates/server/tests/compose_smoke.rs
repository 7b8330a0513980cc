//! The server binary started with exactly the environment `compose.yaml`
//! gives it (as resolved by `docker compose config`), except what only
//! exists inside containers: the database host, the volume paths and the
//! published port. No Docker engine runs on the test machines, so this is
//! the closest check of the compose set-up: /health, the healthcheck
//! subcommand, and an onboard → record → play round trip.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use audiobook_client::wire::{AppendAck, AppendChunk, RecordStatus, StartRecording, StopAck, StopRecording};
use audiobook_client::{Api, Socket};
use audiobook_server::testing::{postgres_or_skip, required};
use bytes::Bytes;

fn compose_environment() -> Option<serde_json::Map<String, serde_json::Value>> {
    let bin = match std::env::var("TEST_COMPOSE_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ if required() => panic!("TEST_COMPOSE_BIN is not set; run the tests with `cargo xtask test`"),
        _ => {
            eprintln!("skipped: TEST_COMPOSE_BIN is not set");
            return None;
        }
    };
    let compose = format!("{}/../../compose.yaml", env!("CARGO_MANIFEST_DIR"));
    let out =
        Command::new(bin).args(["-f", &compose, "config", "--format", "json"]).output().expect("docker-compose runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(config["services"]["server"]["environment"].as_object().expect("server environment").clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_runs_with_the_compose_environment() {
    let Some(mut env) = compose_environment() else { return };
    let Some(db) = postgres_or_skip().await else { return };
    assert!(env["DATABASE_URL"].as_str().unwrap().starts_with("postgres://"), "compose uses PostgreSQL");
    assert_eq!(env["STORAGE"], "local");
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let public_url = env["PUBLIC_URL"].as_str().unwrap().replace(":3000", &format!(":{port}"));
    env.insert("DATABASE_URL".into(), db.url.clone().into());
    env.insert("STORAGE_DIR".into(), dir.path().join("public").display().to_string().into());
    env.insert("SPOOL_DIR".into(), dir.path().join("spool").display().to_string().into());
    env.insert("PORT".into(), port.to_string().into());
    env.insert("PUBLIC_URL".into(), public_url.clone().into());
    let vars: Vec<(String, String)> =
        env.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect();

    let mut child = Command::new(env!("CARGO_BIN_EXE_audiobook-server"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.clone())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let api = Api::new(&url);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(api.raw(http::Method::GET, "/health", None, None).await, Ok((200, _))) {
        assert!(Instant::now() < deadline, "no /health");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = Command::new(env!("CARGO_BIN_EXE_audiobook-server")).arg("healthcheck").envs(vars).status().unwrap();
    assert!(health.success(), "the container HEALTHCHECK command passes");

    let me = api.onboard("Compose").await.unwrap();
    let socket = Socket::connect(&url, &me.token).await.unwrap();
    let id = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    let data = std::fs::read(format!("{}/../media/tests/data/mediarecorder-opus-3s.webm", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    for (seq, c) in data.chunks(16_384).enumerate() {
        let chunk = AppendChunk {
            data: Some(Bytes::copy_from_slice(c)),
            seq: Some(seq as u64),
            recording_id: Some(id),
            ..Default::default()
        };
        assert!(matches!(socket.append(&chunk).await.unwrap(), AppendAck::Ok(_)));
    }
    let StopAck::Ok(ok) = socket.stop(&StopRecording { recording_id: Some(id), ..Default::default() }).await.unwrap()
    else {
        panic!("stop refused")
    };
    assert_eq!((ok.record.status, ok.record.duration_ms), (RecordStatus::Ready, 3000));
    assert!(ok.record.link.starts_with(&public_url));
    let (status, _, body) = api.get_bytes(&ok.record.link, Some("bytes=0-99")).await.unwrap();
    assert_eq!((status, body.len()), (206, 100));

    // SIGTERM with a live take and its socket open: a clean, prompt stop.
    let live = socket.start(&StartRecording { mime_type: "audio/webm".into(), name: None }).await.unwrap().recording_id;
    let first = AppendChunk {
        data: Some(Bytes::copy_from_slice(&data[..4096])),
        seq: Some(0),
        recording_id: Some(live),
        ..Default::default()
    };
    assert!(matches!(socket.append(&first).await.unwrap(), AppendAck::Ok(_)));
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    drop(socket);
    db.drop().await;
}
