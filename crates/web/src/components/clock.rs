use leptos::prelude::*;

use crate::format;

/// The elapsed time of a take, large. Not live for screen readers (it would
/// speak every second); its label gives the time on demand.
#[component]
pub fn Clock(#[prop(into)] elapsed_ms: Signal<u64>) -> impl IntoView {
    view! {
        <p class="clock" role="timer" aria-live="off"
           aria-label=move || format!("Elapsed time {}", format::duration_words(elapsed_ms.get()))>
            <time datetime=move || format!("PT{}S", elapsed_ms.get() / 1000)>
                {move || format::duration_ms(elapsed_ms.get())}
            </time>
        </p>
    }
}
