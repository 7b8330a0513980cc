//! AudioBook's server: REST API (`http`), live recording over Socket.IO
//! (`realtime` → `recording`), metadata in `db`, audio in `storage`.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod limits;
pub mod links;
pub mod media_type;
pub mod realtime;
pub mod recording;
pub mod storage;
pub mod telemetry;
pub mod testing;
pub mod transcription;

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
    /// `POST /onboard` per address (`None`: no limit).
    pub onboard_rate: Option<limits::OnboardRate>,
    /// Socket events, audio bytes and connections per user.
    pub rates: limits::UserRates,
    /// The transcription workers, when this instance transcribes.
    pub transcription: Option<Arc<transcription::Transcription>>,
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
        telemetry::handle();
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
        let onboard_rate = limits::OnboardRate::new(config.limits.onboard_per_minute);
        let rates = limits::UserRates::new(config.limits.upload_bytes_per_sec, config.limits.max_chunk_bytes as u64);
        let transcription =
            transcription::Transcription::new(&config, db.clone(), storage.clone(), recordings.instance_id);
        // Whether takes that become ready get a transcript job (in the
        // database, for every instance); without a worker command this
        // instance leaves the choice as it is.
        if transcription.is_some() {
            db.set_transcripts_queued(true).await?;
        } else if !config.transcription.enabled {
            db.set_transcripts_queued(false).await?;
        } else {
            tracing::info!("no transcripts: TRANSCRIBER_COMMAND is not set");
        }
        Ok(AppState(Arc::new(AppContext {
            config,
            db,
            storage,
            recordings,
            links,
            onboard_rate,
            rates,
            transcription,
        })))
    }
}

/// The whole application: REST, Socket.IO and (if configured) the web app.
pub fn app(state: AppState) -> Router {
    app_with_socket_io(state).0
}

/// The application and its Socket.IO handle (to close live sockets at shutdown).
pub fn app_with_socket_io(state: AppState) -> (Router, SocketIo) {
    // At most 64 MiB (checked in `config`), so none of this overflows.
    let chunk = state.config.limits.max_chunk_bytes;
    let (layer, io) = SocketIo::builder()
        .with_state(state.clone())
        // Long-polling payloads: a chunk, base64-encoded (4/3 of its size),
        // plus its JSON envelope.
        .max_payload((chunk / 3 * 4 + 4 + 64 * 1024) as u64)
        // WebSocket messages up to 4 chunks reach our handler and get a clear
        // error; anything larger closes the connection before it is buffered.
        .ws_max_message_size(4 * chunk + 64 * 1024)
        .max_buffer_size(1024)
        .build_layer();
    realtime::register(&io);
    (http::outer(http::router(state.clone()).layer(layer), &state), io)
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
    // Every log line of this server says which instance wrote it, so an
    // operator can follow one take across instances.
    let span = tracing::info_span!("instance", instance_id = %state.recordings.instance_id);
    tracing::Instrument::instrument(serve_in_span(state, listener, shutdown), span).await
}

/// How long shutdown waits for takes being saved (within ECS's 30 s
/// stop timeout, after the connections' drain).
const SAVES_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(15);

async fn serve_in_span(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    use tracing::Instrument;
    let local: SocketAddr = listener.local_addr().map_err(|e| StartError::Bind("listener".into(), e))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reaper = tokio::spawn(state.recordings.clone().run_reaper(stop_rx.clone()).in_current_span());
    let forget = tokio::spawn(forget_idle_rates(state.clone(), stop_rx.clone()).in_current_span());
    let transcription = state.transcription.clone().map(|t| tokio::spawn(t.run(stop_rx).in_current_span()));
    tracing::info!(
        address = %local, public_url = %state.config.public_url, database = state.db.backend(),
        storage = if state.storage.is_s3() { "s3" } else { "local" }, instance_id = %state.recordings.instance_id,
        "AudioBook is listening"
    );
    let (router, io) = app_with_socket_io(state.clone());
    let options = http::serve::ServeOptions {
        header_timeout: state.config.limits.http_header_timeout,
        max_connections: state.config.limits.max_http_connections,
    };
    http::serve::serve(listener, router, options, async move {
        shutdown.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        // WebSockets never end by themselves: close them so the graceful
        // shutdown can finish. Clients reconnect and resume elsewhere.
        io.close().await;
    })
    .await;
    let _ = reaper.await;
    let _ = forget.await;
    if let Some(transcription) = transcription {
        let _ = transcription.await;
    }
    let cut = state.recordings.finish_saves(SAVES_AT_SHUTDOWN).await;
    if cut > 0 {
        tracing::warn!(takes = cut, "shutting down with takes still being saved; another instance will finish them");
    }
    state.recordings.sync_all().await;
    state.db.close().await;
    Ok(())
}

/// Keeps the rate limiters' memory to the addresses and users of the last minute.
async fn forget_idle_rates(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        let stopped = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => true,
            _ = every.tick() => false,
        };
        if stopped {
            return;
        }
        if let Some(rate) = &state.onboard_rate {
            rate.forget_idle();
        }
        state.rates.forget_idle();
    }
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
