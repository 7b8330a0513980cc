use leptos::prelude::*;

use crate::recorder::studio::Conn;

/// The connection to the server, in a word and a colour.
#[component]
pub fn ConnectionBadge(#[prop(into)] conn: Signal<Conn>) -> impl IntoView {
    let text = move || match conn.get() {
        Conn::Connecting => "Connecting…".to_string(),
        Conn::Online => "Connected".to_string(),
        Conn::Offline => "Offline, reconnecting…".to_string(),
        Conn::Refused(why) => format!("Not connected: {why}"),
    };
    let class = move || match conn.get() {
        Conn::Online => "badge badge-online",
        Conn::Connecting | Conn::Offline => "badge badge-waiting",
        Conn::Refused(_) => "badge badge-error",
    };
    view! {
        <p class=class role="status" aria-live="polite" data-conn=move || match conn.get() {
            Conn::Connecting => "connecting", Conn::Online => "online",
            Conn::Offline => "offline", Conn::Refused(_) => "refused",
        }>
            <span class="badge-dot" aria-hidden="true"></span>
            {text}
        </p>
    }
}
