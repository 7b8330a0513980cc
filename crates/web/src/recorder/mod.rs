//! Recording: the microphone and MediaRecorder ([`capture`]) or lossless
//! PCM ([`pcm`], chunked by [`pcm_chunks`]) and the take's
//! [`clock`], the vault that
//! keeps every chunk on this device until the server saved the take
//! ([`vault`]), the upload protocol of a take ([`upload`], over the chunk
//! numbers of [`queue`]), what the app does with takes it finds in the
//! vault when it opens ([`recovery`]), the outbox that sends every take
//! over the one socket ([`outbox`], one [`take`] each), and the studio
//! behind the recorder page ([`studio`]).

pub mod clock;
pub mod pcm_chunks;
pub mod queue;
pub mod recovery;
pub mod upload;
pub mod vault;

#[cfg(target_arch = "wasm32")]
pub mod capture;
#[cfg(target_arch = "wasm32")]
mod idb;
#[cfg(target_arch = "wasm32")]
mod lifecycle;
#[cfg(target_arch = "wasm32")]
mod locks;
#[cfg(target_arch = "wasm32")]
pub mod outbox;
#[cfg(target_arch = "wasm32")]
pub mod pcm;
#[cfg(target_arch = "wasm32")]
mod quota;
#[cfg(target_arch = "wasm32")]
pub mod studio;
#[cfg(target_arch = "wasm32")]
pub mod take;
