use leptos::prelude::*;

/// The live input level, 0..=1, as a bar.
#[component]
pub fn LevelMeter(#[prop(into)] level: Signal<f64>, #[prop(into)] active: Signal<bool>) -> impl IntoView {
    let percent = move || (level.get() * 100.0).round() as u32;
    view! {
        <div class="meter" class:meter-active=move || active.get()
             role="meter" aria-label="Microphone input level"
             aria-valuemin="0" aria-valuemax="100" aria-valuenow=move || percent().to_string()>
            <div class="meter-bar" style:width=move || format!("{}%", percent())></div>
        </div>
    }
}
