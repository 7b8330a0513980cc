use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::format;
use crate::waveform::{bars_path, downsample};

/// Most bars drawn, whatever the length of the take.
const MAX_BARS: usize = 160;

/// The playing recording's waveform as SVG bars, the played part in the
/// accent colour. A slider: a click or tap seeks there, and the arrow keys,
/// Home and End move the playhead.
#[component]
pub fn WaveformSeek(
    peaks: Vec<u8>,
    #[prop(into)] current: Signal<f64>,
    #[prop(into)] duration: Signal<f64>,
    on_seek: Callback<f64>,
) -> impl IntoView {
    let bars = StoredValue::new(downsample(&peaks, MAX_BARS));
    let n = bars.with_value(Vec::len).max(1);
    let fraction = move || {
        let d = duration.get();
        if d > 0.0 { (current.get() / d).clamp(0.0, 1.0) } else { 0.0 }
    };
    let split = move || ((fraction() * n as f64).round() as usize).min(n);
    let played = move || bars.with_value(|b| bars_path(&b[..split().min(b.len())], 0));
    let rest = move || {
        bars.with_value(|b| {
            let k = split().min(b.len());
            bars_path(&b[k..], k)
        })
    };
    let on_click = move |ev: leptos::ev::MouseEvent| {
        let Some(el) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
        let rect = el.get_bounding_client_rect();
        if rect.width() > 0.0 {
            let at = ((f64::from(ev.client_x()) - rect.left()) / rect.width()).clamp(0.0, 1.0);
            on_seek.run(at * duration.get_untracked());
        }
    };
    let on_key = move |ev: leptos::ev::KeyboardEvent| {
        let (now, total) = (current.get_untracked(), duration.get_untracked());
        let to = match ev.key().as_str() {
            "ArrowLeft" | "ArrowDown" => now - 5.0,
            "ArrowRight" | "ArrowUp" => now + 5.0,
            "PageDown" => now - total / 10.0,
            "PageUp" => now + total / 10.0,
            "Home" => 0.0,
            "End" => total,
            _ => return,
        };
        ev.prevent_default();
        ev.stop_propagation();
        on_seek.run(to.clamp(0.0, total.max(0.0)));
    };
    view! {
        <div class="waveform" role="slider" tabindex="0" aria-label="Seek"
             aria-valuemin="0"
             aria-valuemax=move || format!("{:.1}", duration.get())
             aria-valuenow=move || format!("{:.1}", current.get())
             aria-valuetext=move || format!("{} of {}", format::seconds(current.get()), format::seconds(duration.get()))
             data-bars=n
             on:click=on_click on:keydown=on_key>
            <svg viewBox=format!("0 0 {n} 100") preserveAspectRatio="none" aria-hidden="true" focusable="false">
                <path class="waveform-rest" d=rest></path>
                <path class="waveform-played" d=played></path>
            </svg>
            <span class="waveform-head" aria-hidden="true"
                  style:left=move || format!("{:.2}%", fraction() * 100.0)></span>
        </div>
    }
}
