use audiobook_wire::RecordingError;

/// Everything that can go wrong talking to an AudioBook server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered an HTTP request with an error status and a body
    /// `{"error": "..."}` (or, if the body was not that, its raw text).
    #[error("HTTP {status}: {error}")]
    Http { status: u16, error: String },
    /// The connection could not be made or broke (I/O, TLS, HTTP machinery).
    #[error("transport error: {0}")]
    Transport(String),
    /// The server sent something this client does not understand, or an ack
    /// that does not have the expected shape.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The Socket.IO connect was refused (`44{"message": ...}`).
    #[error("connection refused by the server: {0}")]
    ConnectRefused(String),
    /// No answer (ack, event, handshake) within the allotted time.
    #[error("timed out")]
    Timeout,
    /// The socket is closed (by us, by the server, or by a network failure).
    #[error("socket closed")]
    Closed,
    /// The server emitted `recording-error` while we waited for a save.
    #[error("recording-error from the server: {}", .0.error)]
    Recording(RecordingError),
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() { ClientError::Timeout } else { ClientError::Transport(e.to_string()) }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        use tokio_tungstenite::tungstenite::Error as E;
        match e {
            E::ConnectionClosed | E::AlreadyClosed => ClientError::Closed,
            E::Http(resp) => ClientError::Http {
                status: resp.status().as_u16(),
                error: resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default(),
            },
            other => ClientError::Transport(other.to_string()),
        }
    }
}
