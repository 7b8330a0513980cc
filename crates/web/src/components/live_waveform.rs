use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::html::Canvas;
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::HtmlCanvasElement;

use crate::format;
use crate::waveform::{LivePeaks, bar_span};

/// Width of one peak's bar and the gap after it, in CSS pixels: 10 peaks a
/// second scroll by 40 px a second.
const BAR: f64 = 2.5;
const STEP: f64 = 4.0;
/// Milliseconds between two level readings (the studio's ticker).
const READING_MS: f64 = 100.0;
/// How often the elapsed time and the level are told to screen readers.
const ANNOUNCE_EVERY_MS: u64 = 10_000;

// The few 2D-context calls drawn with (no web-sys feature needed for them).
#[wasm_bindgen]
extern "C" {
    type Context2d;
    #[wasm_bindgen(method, js_name = clearRect)]
    fn clear_rect(this: &Context2d, x: f64, y: f64, w: f64, h: f64);
    #[wasm_bindgen(method, js_name = fillRect)]
    fn fill_rect(this: &Context2d, x: f64, y: f64, w: f64, h: f64);
    #[wasm_bindgen(method, setter = fillStyle)]
    fn set_fill_style(this: &Context2d, style: &str);
}

/// What the drawing loop remembers between frames.
#[derive(Default)]
struct Frames {
    /// The component is still on the page.
    alive: Cell<bool>,
    /// A frame is scheduled.
    looping: Cell<bool>,
    /// The take is recording: the bars slide.
    active: Cell<bool>,
    /// The canvas' size must be read again (first frame, window resized).
    resized: Cell<bool>,
    /// Canvas size in CSS pixels, and the device pixel ratio.
    size: Cell<(f64, f64, f64)>,
    /// The peak count last drawn, and when it changed (ms).
    seen: Cell<(u64, f64)>,
    /// The bars' colour (CSS), read again with each new reading.
    colour: RefCell<String>,
    /// When the last frame ran, and the average time between frames (ms).
    pace: Cell<(f64, f64)>,
}

/// The take's level peaks as a waveform scrolling from right to left while
/// recording, drawn on a canvas once per animation frame (only while
/// recording; the canvas' size is read once and again on resize, so frames
/// never force a layout; a busy device redraws only with each reading).
/// Screen readers get the elapsed time and the level
/// every 10 seconds, politely.
#[component]
pub fn LiveWaveform(
    peaks: StoredValue<LivePeaks, LocalStorage>,
    #[prop(into)] elapsed_ms: Signal<u64>,
    #[prop(into)] level: Signal<f64>,
    #[prop(into)] active: Signal<bool>,
) -> impl IntoView {
    let canvas = NodeRef::<Canvas>::new();
    let frames = Rc::new(Frames { alive: Cell::new(true), resized: Cell::new(true), ..Frames::default() });

    let start = {
        let frames = frames.clone();
        move || {
            if !frames.looping.get() {
                frames.looping.set(true);
                schedule(frames.clone(), canvas, peaks);
            }
        }
    };
    Effect::new({
        let (frames, start) = (frames.clone(), start.clone());
        move |_| {
            let on = active.get();
            let _ = level.get(); // a reading while paused or idle redraws once
            frames.active.set(on);
            if canvas.get().is_some() {
                start();
            }
        }
    });
    let resize = window_event_listener(leptos::ev::resize, {
        let frames = frames.clone();
        move |_| {
            frames.resized.set(true);
            start();
        }
    });
    let alive = StoredValue::new_local(frames.clone());
    on_cleanup(move || {
        let _ = alive.try_with_value(|f| f.alive.set(false));
        resize.remove();
    });

    // The text alternative: every 10 s of recording, the time and the level.
    let announcement = RwSignal::new(String::new());
    Effect::new(move |last: Option<u64>| {
        let ms = elapsed_ms.get();
        let bucket = ms / ANNOUNCE_EVERY_MS;
        if active.get_untracked() && bucket > 0 && last.is_some_and(|l| l != bucket) {
            let loudest = peaks.with_value(|p| p.newest_first().take(10).max().unwrap_or(0));
            announcement.set(format!(
                "Recording, {} elapsed, level {}",
                format::duration_words(bucket * ANNOUNCE_EVERY_MS),
                level_word(loudest)
            ));
        }
        bucket
    });

    view! {
        <div class="live-wave">
            <canvas node_ref=canvas aria-hidden="true"></canvas>
            <p class="sr-only" aria-live="polite" aria-atomic="true">{move || announcement.get()}</p>
        </div>
    }
}

/// The level in a word, from a peak (0–255).
fn level_word(peak: u8) -> &'static str {
    match peak {
        0..20 => "silent",
        20..77 => "quiet",
        77..180 => "good",
        _ => "loud",
    }
}

fn schedule(frames: Rc<Frames>, canvas: NodeRef<Canvas>, peaks: StoredValue<LivePeaks, LocalStorage>) {
    request_animation_frame(move || {
        if !frames.alive.get() {
            return;
        }
        if let Some(el) = canvas.get_untracked() {
            draw(&frames, &el, peaks);
        }
        if frames.active.get() {
            schedule(frames, canvas, peaks);
        } else {
            frames.looping.set(false);
        }
    });
}

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

fn draw(frames: &Frames, el: &HtmlCanvasElement, peaks: StoredValue<LivePeaks, LocalStorage>) {
    let Some(window) = web_sys::window() else { return };
    if frames.resized.replace(false) {
        // Reads first, then writes: at most one layout, and only after a resize.
        let (w, h, dpr) = (f64::from(el.client_width()), f64::from(el.client_height()), window.device_pixel_ratio());
        frames.size.set((w, h, dpr));
        el.set_width((w * dpr).round() as u32);
        el.set_height((h * dpr).round() as u32);
    }
    let (w, h, dpr) = frames.size.get();
    let Some(ctx) = el.get_context("2d").ok().flatten().map(JsCast::unchecked_into::<Context2d>) else { return };
    let now = now_ms();
    let count = peaks.try_with_value(LivePeaks::count).unwrap_or(0);
    let (seen, changed_at) = frames.seen.get();
    let fresh = count != seen || !frames.active.get();
    let changed_at = if count != seen { now } else { changed_at };
    frames.seen.set((count, changed_at));
    // A device too busy for smooth frames (well under 40 a second) gets
    // the bars moved only with each new reading, so the recorder keeps the CPU.
    let (last, average) = frames.pace.get();
    let average = if last > 0.0 { average * 0.9 + (now - last).min(200.0) * 0.1 } else { 16.7 };
    frames.pace.set((now, average));
    if !fresh && average > 25.0 {
        return;
    }
    // The colour follows the theme and the recording state (the stylesheet's
    // `color` of the canvas): computed style, not layout, read with each new
    // reading (ten times a second), not every frame.
    if fresh || frames.colour.borrow().is_empty() {
        let colour = window
            .get_computed_style(el)
            .ok()
            .flatten()
            .and_then(|s| s.get_property_value("color").ok())
            .unwrap_or_else(|| "#888".into());
        frames.colour.replace(colour);
    }
    // The newest bar slides in from the right edge until the next reading.
    let slide = if frames.active.get() { ((now - changed_at) / READING_MS).clamp(0.0, 1.0) } else { 1.0 };

    ctx.clear_rect(0.0, 0.0, w * dpr, h * dpr);
    ctx.set_fill_style(&frames.colour.borrow());
    if count == 0 {
        let (top, height) = bar_span(0);
        ctx.fill_rect(0.0, top / 100.0 * h * dpr, w * dpr, height / 100.0 * h * dpr / 2.0);
        return;
    }
    peaks.with_value(|p| {
        for (i, peak) in p.newest_first().enumerate() {
            let x = w - (i as f64 + slide) * STEP;
            if x + BAR < 0.0 {
                break;
            }
            let (top, height) = bar_span(peak);
            ctx.fill_rect(x * dpr, top / 100.0 * h * dpr, BAR * dpr, height / 100.0 * h * dpr);
        }
    });
}
