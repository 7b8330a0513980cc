//! Accepting connections, with the limits a public server needs: request
//! headers must arrive within `HTTP_HEADER_TIMEOUT_SECS` (a slowloris client
//! that dribbles bytes is cut off, and so is a keep-alive connection idle for
//! as long), at most `MAX_HTTP_CONNECTIONS` connections are open at once
//! (WebSockets included; further ones are closed at once), and shutdown is
//! graceful: no new connections, then the open ones finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::Instrument;

/// How long open connections may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

pub struct ServeOptions {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
/// Handlers see the peer address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(options.header_timeout).keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(options.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: wait a little instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, max = options.max_connections, "too many connections; closing a new one");
            crate::telemetry::refused("http_connections");
            drop(stream);
            continue;
        };
        metrics::gauge!(crate::telemetry::HTTP_CONNECTIONS).increment(1);
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(
            async move {
                if let Err(e) = connection.await {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                drop(slot);
                metrics::gauge!(crate::telemetry::HTTP_CONNECTIONS).decrement(1);
            }
            .in_current_span(),
        );
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {} s; closing them", DRAIN.as_secs());
    }
}

/// The peer of the connection a request came on (`None` for requests that
/// did not come through [`serve`], as in tests that call the router directly).
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerAddr(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer)))
    }
}

/// The address a request came from: the peer, or the last address of
/// `X-Forwarded-For` when the server sits behind one proxy that appends it.
pub fn client_address(
    headers: &axum::http::HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded_for: bool,
) -> Option<std::net::IpAddr> {
    if trust_forwarded_for && let Some(forwarded) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        // The load balancer appends the address it saw; anything before it
        // was written by the client and proves nothing.
        if let Some(ip) = forwarded.rsplit(',').next().and_then(|ip| ip.trim().parse().ok()) {
            return Some(ip);
        }
    }
    peer.map(|p| p.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn forwarded_for_is_trusted_only_when_configured() {
        let peer: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 203.0.113.9".parse().unwrap());
        assert_eq!(client_address(&h, Some(peer), false), Some(peer.ip()));
        // The address the balancer itself saw, not what the client wrote first.
        assert_eq!(client_address(&h, Some(peer), true), Some("203.0.113.9".parse().unwrap()));
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_address(&h, Some(peer), true), Some(peer.ip()));
    }
}
