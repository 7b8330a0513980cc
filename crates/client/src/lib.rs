//! A native async client for AudioBook: the REST API over HTTP ([`Api`]) and
//! live recording over a real Socket.IO v5 / Engine.IO v4 WebSocket
//! ([`Socket`]).
//!
//! It speaks the wire format of `shared/CONTRACT.md` with the types of
//! `audiobook-wire`, and is what the server's integration tests and the load
//! program (`loadgen`) drive the server with. The packet encoding and decoding
//! lives in [`packet`] as pure functions; [`Socket`] adds one background task
//! per connection that owns the WebSocket's read half, answers Engine.IO pings
//! and routes acknowledgements and server events.

mod error;
pub mod packet;
mod rest;
mod socket;

pub use error::ClientError;
pub use rest::Api;
pub use socket::{ConnectOptions, Socket};

/// Re-exported so callers need no direct dependency on the wire crate.
pub use audiobook_wire as wire;
