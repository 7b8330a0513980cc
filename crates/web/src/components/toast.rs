use leptos::prelude::*;

/// A short message at the bottom of the page, with an optional Undo.
#[derive(Clone)]
pub struct Toast {
    pub message: String,
    pub undo: Option<Callback<()>>,
    pub error: bool,
}

impl Toast {
    pub fn info(message: impl Into<String>) -> Toast {
        Toast { message: message.into(), undo: None, error: false }
    }

    pub fn error(message: impl Into<String>) -> Toast {
        Toast { message: message.into(), undo: None, error: true }
    }
}

/// Where toasts appear; always in the page so screen readers announce each
/// new message.
#[component]
pub fn ToastRegion(toast: RwSignal<Option<Toast>>) -> impl IntoView {
    view! {
        <div class="toast-region" role="status" aria-live="polite">
            {move || toast.get().map(|t| {
                let undo = t.undo;
                view! {
                    <div class="toast" class:toast-error=t.error>
                        <span class="toast-text">{t.message}</span>
                        {undo.map(|u| view! {
                            <button type="button" class="button button-small toast-undo" on:click=move |_| u.run(())>
                                "Undo"
                            </button>
                        })}
                        <button type="button" class="toast-close" aria-label="Dismiss" on:click=move |_| toast.set(None)>
                            "×"
                        </button>
                    </div>
                }
            })}
        </div>
    }
}
