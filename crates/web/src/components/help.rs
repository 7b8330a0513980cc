use leptos::html::Dialog;
use leptos::prelude::*;

/// Keys (alternatives) and what they do.
pub type Shortcuts = &'static [(&'static [&'static str], &'static str)];

/// The keyboard shortcuts of a page in a modal dialog: `?` opens it (the
/// page's key handler sets `open`), Escape or Close closes it, and focus
/// stays inside while it is open. The dialog is a module of its own
/// (wasm-split), fetched the first time it is opened.
#[component]
pub fn ShortcutHelp(open: RwSignal<bool>, shortcuts: Shortcuts) -> impl IntoView {
    let dialog = RwSignal::new(None::<HelpView>);
    let fetching = StoredValue::new(false);
    Effect::new(move |_| {
        if !open.get() || dialog.get_untracked().is_some() || fetching.get_value() {
            return;
        }
        fetching.set_value(true);
        leptos::task::spawn_local(async move {
            match help_dialog().await {
                Ok(view) => drop(dialog.try_set(Some(view))),
                Err(e) => {
                    web_sys::console::warn_1(&format!("AudioBook: no shortcuts help: {e}").into());
                    let _ = open.try_set(false);
                }
            }
            let _ = fetching.try_set_value(false);
        });
    });
    move || dialog.get().map(|view| view(open, shortcuts))
}

/// The dialog's view, from its module.
type HelpView = fn(RwSignal<bool>, Shortcuts) -> AnyView;

#[leptos::wasm_split::wasm_split(shortcut_help, wasm_split_path = ::leptos::wasm_split, fallible)]
fn help_dialog() -> Result<HelpView, leptos::wasm_split::SplitLoaderError> {
    Ok(|open, shortcuts| view! { <HelpDialog open=open shortcuts=shortcuts /> }.into_any())
}

#[component]
fn HelpDialog(open: RwSignal<bool>, shortcuts: Shortcuts) -> impl IntoView {
    let dialog = NodeRef::<Dialog>::new();
    let close = NodeRef::<leptos::html::Button>::new();
    Effect::new(move |_| {
        let Some(el) = dialog.get() else { return };
        if open.get() {
            if !el.open() {
                let _ = el.show_modal();
                if let Some(b) = close.get_untracked() {
                    let _ = b.focus();
                }
            }
        } else if el.open() {
            el.close();
        }
    });
    // Escape closes the dialog at once, but its `close` event comes a task
    // later: `cancel` (fired with the key) clears `open`, so the page's keys
    // work again the moment the dialog is gone.
    // The Close button is the only control: Tab keeps focus on it.
    let trap = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Tab" {
            ev.prevent_default();
            if let Some(b) = close.get_untracked() {
                let _ = b.focus();
            }
        }
    };
    view! {
        <dialog node_ref=dialog class="help" aria-labelledby="help-title"
                on:cancel=move |_: leptos::ev::Event| open.set(false) on:close=move |_| open.set(false) on:keydown=trap>
            <h2 id="help-title">"Keyboard shortcuts"</h2>
            <dl class="shortcuts">
                {shortcuts.iter().map(|(keys, what)| view! {
                    <div class="shortcut">
                        <dt>{keys.iter().enumerate().map(|(i, k)| view! {
                            {(i > 0).then_some(" or ")}<kbd>{*k}</kbd>
                        }).collect_view()}</dt>
                        <dd>{*what}</dd>
                    </div>
                }).collect_view()}
            </dl>
            <button type="button" class="button button-primary" node_ref=close on:click=move |_| open.set(false)>
                "Close"
            </button>
        </dialog>
    }
}

/// The button that opens the help, for people who do not know about `?`
/// (hidden on touch-only devices, which have no keyboard to use it with).
#[component]
pub fn ShortcutButton(open: RwSignal<bool>) -> impl IntoView {
    view! {
        <button type="button" class="button button-small button-quiet shortcut-button" aria-haspopup="dialog"
                aria-keyshortcuts="?" on:click=move |_| open.set(true)>
            <kbd aria-hidden="true">"?"</kbd><span class="label">"Shortcuts"</span>
        </button>
    }
}
