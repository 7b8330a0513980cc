//! AudioBook's server: REST API (`http`), live recording over Socket.IO
//! (`realtime` → `recording`), metadata in `db`, audio in `storage`.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod links;
pub mod realtime;
pub mod recording;
pub mod storage;
pub mod testing;

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use socketioxide::SocketIo;

use config::Config;
use db::Db;
use links::Links;
use recording::Recordings;
use storage::Storage;

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

pub struct AppContext {
    pub config: Config,
    pub db: Db,
    pub storage: Storage,
    pub recordings: Arc<Recordings>,
    pub links: Links,
}

impl Deref for AppState {
    type Target = AppContext;
    fn deref(&self) -> &AppContext {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot open the audio storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("cannot prepare SPOOL_DIR: {0}")]
    Spool(std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

impl AppState {
    /// Connects to the database (applying migrations) and the storage.
    pub async fn connect(config: Config) -> Result<AppState, StartError> {
        let db = Db::connect(&config.database_url).await?;
        db.migrate().await?;
        let storage = Storage::from_config(&config.storage)?;
        std::fs::create_dir_all(&config.spool_dir).map_err(StartError::Spool)?;
        let secret = match &config.link_secret {
            Some(s) => s.clone(),
            None => {
                let mut bytes = [0u8; 32];
                getrandom::fill(&mut bytes).expect("OS random number generator");
                db.setting_or_insert("link_secret", &hex::encode(bytes)).await?
            }
        };
        let links = Links::new(secret.as_bytes(), &config.public_url, config.limits.link_ttl);
        let recordings =
            Arc::new(Recordings::new(db.clone(), storage.clone(), config.limits.clone(), config.spool_dir.clone()));
        Ok(AppState(Arc::new(AppContext { config, db, storage, recordings, links })))
    }
}

/// The whole application: REST, Socket.IO and (if configured) the web app.
pub fn app(state: AppState) -> Router {
    app_with_socket_io(state).0
}

/// The application and its Socket.IO handle (to close live sockets at shutdown).
pub fn app_with_socket_io(state: AppState) -> (Router, SocketIo) {
    let chunk = state.config.limits.max_chunk_bytes;
    let (layer, io) = SocketIo::builder()
        .with_state(state.clone())
        // Long-polling payloads: a chunk plus its JSON envelope.
        .max_payload((chunk + 64 * 1024) as u64)
        // WebSocket messages up to 4 chunks reach our handler and get a clear
        // error; anything larger closes the connection before it is buffered.
        .ws_max_message_size(4 * chunk + 64 * 1024)
        .max_buffer_size(1024)
        .build_layer();
    realtime::register(&io);
    (http::router(state.clone()).layer(layer), io)
}

/// Runs the server until `shutdown` resolves, then stops accepting, lets
/// requests finish, and flushes live recordings to disk.
pub async fn serve(
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let addr = format!("{}:{}", state.config.host, state.config.port);
    let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| StartError::Bind(addr.clone(), e))?;
    serve_on(state, listener, shutdown).await
}

pub async fn serve_on(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let local: SocketAddr = listener.local_addr().map_err(|e| StartError::Bind("listener".into(), e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reaper = tokio::spawn(state.recordings.clone().run_reaper({
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    }));
    tracing::info!(
        address = %local, public_url = %state.config.public_url, database = state.db.backend(),
        storage = if state.storage.is_s3() { "s3" } else { "local" }, "AudioBook is listening"
    );
    let (router, io) = app_with_socket_io(state.clone());
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
            // WebSockets never end by themselves: close them so the graceful
            // shutdown can finish. Clients reconnect and resume elsewhere.
            io.close().await;
        })
        .await;
    let _ = reaper.await;
    state.recordings.sync_all().await;
    state.db.close().await;
    result.map_err(|e| StartError::Bind(local.to_string(), e))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
