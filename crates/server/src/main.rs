//! `audiobook-server [serve|migrate|healthcheck]`: configured only by
//! environment variables (see README.md).

use audiobook_server::config::Config;
use audiobook_server::db::Db;
use audiobook_server::{AppState, serve, shutdown_signal};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info,socketioxide=warn,engineioxide=warn,sqlx=warn".into()),
        )
        .init();
    raise_open_files_limit();
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => fail(&e.to_string()),
    };
    match command.as_str() {
        "serve" => {
            let state = AppState::connect(config).await.unwrap_or_else(|e| fail(&e.to_string()));
            if let Err(e) = serve(state, shutdown_signal()).await {
                fail(&e.to_string());
            }
        }
        "migrate" => {
            let db = Db::connect(&config.database_url).await.unwrap_or_else(|e| fail(&e.to_string()));
            db.migrate().await.unwrap_or_else(|e| fail(&e.to_string()));
            println!("migrations applied ({})", db.backend());
        }
        "healthcheck" => std::process::exit(healthcheck(config.port)),
        other => fail(&format!("unknown command `{other}`; use serve, migrate or healthcheck")),
    }
}

/// Each live take holds a socket and two spool files open: lift the soft
/// limit on open files to the hard limit, as busy servers do.
fn raise_open_files_limit() {
    #[cfg(unix)]
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// For container health checks (the runtime image has no curl).
fn healthcheck(port: u16) -> i32 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return 1 };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(3)));
    if s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return 1;
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    if response.starts_with("HTTP/1.1 200") { 0 } else { 1 }
}

fn fail(message: &str) -> ! {
    eprintln!("audiobook-server: {message}");
    std::process::exit(1);
}
