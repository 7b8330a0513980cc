//! Real `audiobook-server` processes for tests that kill them, restart
//! them or measure their memory.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use audiobook_client::Api;

/// An `audiobook-server` process.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub env: Vec<(String, String)>,
}

impl Server {
    pub async fn start(env: Vec<(String, String)>) -> Server {
        let port = env.iter().find(|(k, _)| k == "PORT").map(|(_, v)| v.clone()).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_audiobook-server"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", std::env::var("TEST_LOG").map(|_| "info").unwrap_or("warn"))
            .stdout(Stdio::null())
            .spawn()
            .expect("server starts");
        let server = Server { child, url: format!("http://127.0.0.1:{port}"), env };
        let api = Api::new(&server.url);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(api.raw(http::Method::GET, "/health", None, None).await, Ok((200, _))) {
            assert!(Instant::now() < deadline, "server on {port} did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn restart(mut self) -> Server {
        self.kill();
        Server::start(self.env.clone()).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn server_env(db_url: &str, dir: &std::path::Path, grace_secs: f64) -> Vec<(String, String)> {
    let port = free_port();
    [
        ("PORT", port.to_string()),
        ("HOST", "127.0.0.1".into()),
        ("PUBLIC_URL", format!("http://127.0.0.1:{port}")),
        ("DATABASE_URL", db_url.into()),
        ("STORAGE_DIR", dir.join("public").display().to_string()),
        ("SPOOL_DIR", dir.join("spool").display().to_string()),
        ("RECORDING_GRACE_SECS", grace_secs.to_string()),
        ("MAX_LIVE_RECORDINGS_PER_USER", "2".into()),
        // Every recorder here onboards from 127.0.0.1.
        ("ONBOARD_PER_MINUTE", "0".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn with_port(env: &[(String, String)], port: u16) -> Vec<(String, String)> {
    env.iter()
        .map(|(k, v)| match k.as_str() {
            "PORT" => (k.clone(), port.to_string()),
            "PUBLIC_URL" => (k.clone(), format!("http://127.0.0.1:{port}")),
            _ => (k.clone(), v.clone()),
        })
        .collect()
}

impl Server {
    /// The process's resident memory now and at its peak (`VmRSS`,
    /// `VmHWM` in /proc), in bytes.
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}
