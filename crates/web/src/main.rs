//! AudioBook's web app (Leptos, client-side rendering). Built for
//! `wasm32-unknown-unknown` by `cargo xtask build-web`; on other targets only
//! the pure logic (the chunk queue, formatting) compiles, for its tests.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod format;
mod playback;
mod recorder;
mod theme;
mod waveform;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod browser;
#[cfg(target_arch = "wasm32")]
mod components;
#[cfg(target_arch = "wasm32")]
mod config;
#[cfg(target_arch = "wasm32")]
mod install;
#[cfg(target_arch = "wasm32")]
mod pages;
#[cfg(target_arch = "wasm32")]
mod session;
#[cfg(target_arch = "wasm32")]
mod socket;
#[cfg(target_arch = "wasm32")]
mod storage;

#[cfg(target_arch = "wasm32")]
fn main() {
    // index.html's "Loading AudioBook…" stays until a page is drawn (the
    // stylesheet hides it then): a lazy route's module may still be on
    // its way.
    leptos::mount::mount_to_body(app::App);
}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("audiobook-web runs in a browser: build it with `cargo xtask build-web`.");
}
