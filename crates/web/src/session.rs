//! The signed-in user for every page, as a context signal backed by
//! `localStorage`.

use leptos::prelude::*;

use crate::storage::{self, Session};

/// Provides the session signal (call once, in the app root).
pub fn provide_session() {
    provide_context(RwSignal::new(storage::load()));
}

pub fn use_session() -> RwSignal<Option<Session>> {
    expect_context::<RwSignal<Option<Session>>>()
}

/// Forgets the user on this device.
pub fn log_out(session: RwSignal<Option<Session>>) {
    storage::clear();
    session.set(None);
}
