//! The recorder's "Quality: Standard / Lossless" setting, remembered per
//! browser. Each choice shows its data rate before it is picked: Standard
//! is what MediaRecorder writes (about 128 kbit/s), Lossless is 16-bit mono
//! PCM at this device's own rate (5.8 MB a minute at 48 kHz). Where the
//! browser has no usable MediaRecorder, Lossless is the only choice.

use leptos::prelude::*;

use crate::format;
use crate::recorder::{capture, pcm};
use crate::storage::{self, Quality};

/// What Standard costs: browsers' Opus and AAC run at about 128 kbit/s.
const STANDARD_BYTES_PER_MINUTE: u64 = 128_000 / 8 * 60;

#[component]
pub fn QualitySetting(
    /// True while a take is under way (the setting applies to the next one).
    #[prop(into)]
    disabled: Signal<bool>,
) -> impl IntoView {
    let compressed = capture::can_record_compressed();
    let lossless = pcm::is_supported();
    let rate = pcm::device_sample_rate();
    let initial = match (compressed, lossless) {
        (false, true) => Quality::Lossless,
        (_, false) => Quality::Standard,
        _ => storage::quality(),
    };
    let quality = RwSignal::new(initial);
    let pick = move |q: Quality| {
        quality.set(q);
        storage::set_quality(q);
    };
    let lossless_rate = match rate {
        Some(r) => format!(
            "uncompressed WAV, 16-bit mono at {} kHz: about {} per minute",
            khz(r),
            format::size(audiobook_wire::lossless::bytes_per_second(r) * 60)
        ),
        None => "uncompressed WAV, 16-bit mono: about 5.8 MB per minute at 48 kHz".to_string(),
    };
    let standard_rate = format!("compressed: about {} per minute", format::size(STANDARD_BYTES_PER_MINUTE));
    let note = match (compressed, lossless) {
        (false, true) => Some("This browser has no compressed recorder here, so it records lossless."),
        (true, false) => Some("This browser cannot record lossless (no AudioWorklet)."),
        _ => None,
    };
    view! {
        <fieldset class="quality" prop:disabled=move || disabled.get()>
            <legend>"Quality"</legend>
            <label class="quality-option">
                <input type="radio" name="quality" value="standard" disabled=!compressed
                       prop:checked=move || quality.get() == Quality::Standard
                       on:change=move |_| pick(Quality::Standard) />
                <span class="quality-name">"Standard"</span>
                <span class="quality-rate">{standard_rate}</span>
            </label>
            <label class="quality-option">
                <input type="radio" name="quality" value="lossless" disabled=!lossless
                       prop:checked=move || quality.get() == Quality::Lossless
                       on:change=move |_| pick(Quality::Lossless) />
                <span class="quality-name">"Lossless"</span>
                <span class="quality-rate" data-sample-rate=rate.map(|r| r.to_string())>{lossless_rate}</span>
            </label>
            {note.map(|n| view! { <p class="quality-note">{n}</p> })}
        </fieldset>
    }
}

/// 48000 as "48", 44100 as "44.1".
fn khz(rate: u32) -> String {
    if rate.is_multiple_of(1000) { (rate / 1000).to_string() } else { format!("{:.1}", f64::from(rate) / 1000.0) }
}
