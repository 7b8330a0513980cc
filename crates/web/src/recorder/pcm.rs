//! Lossless capture: the microphone through an AudioWorklet
//! (`static/pcm-worklet.js`) that posts 16-bit mono samples at the device's
//! rate (the AudioContext's), batched here into the take's chunks by
//! [`PcmChunker`]. Used when the person picks "Lossless", and where
//! MediaRecorder is missing or cannot start.
//!
//! Pause drops samples in the worklet itself. The stop is cut at the audio
//! context's frame when Stop was pressed (the worklet tags each block with
//! its first frame): in WebKitGTK the "stop" message reached the audio
//! thread 150-250 ms late on a busy machine, which a frame cut ignores. (A
//! frame cut of pauses too was exact in Chromium and WebKitGTK but 0.5 s
//! short in Firefox, whose worklet messages arrive in time.) The AudioContext is closed once the worklet confirmed the
//! stop (its last samples are posted before that).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{ArrayBuffer, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AudioContext, AudioWorkletNode, MediaStream, MessageEvent, MessagePort};

use super::capture::CaptureEvent;
use super::pcm_chunks::PcmChunker;

/// The worklet's module (copied from `crates/web/static`).
const WORKLET_URL: &str = "/pcm-worklet.js";
/// The processor name it registers.
const PROCESSOR: &str = "audiobook-pcm";

/// The rate a lossless take would be recorded at on this device: the audio
/// context's, which the browser resamples the microphone to. `None` where
/// Web Audio is unavailable.
pub fn device_sample_rate() -> Option<u32> {
    let context = AudioContext::new().ok()?;
    let rate = context.sample_rate();
    let _ = context.close();
    (rate.is_finite() && rate > 0.0).then_some(rate.round() as u32)
}

/// Whether this browser has the Web Audio pieces lossless capture needs.
pub fn is_supported() -> bool {
    let global = js_sys::global();
    ["AudioContext", "AudioWorkletNode"]
        .iter()
        .all(|name| js_sys::Reflect::get(&global, &JsValue::from_str(name)).is_ok_and(|v| v.is_function()))
}

/// A running lossless capture.
pub struct PcmCapture {
    context: AudioContext,
    port: MessagePort,
    sample_rate: u32,
    /// Cuts pauses and the stop at the frames noted here.
    chunker: Rc<RefCell<PcmChunker>>,
    /// `performance.now()` minus the capture time of the worklet's frames,
    /// at its smallest seen (the fastest block's delivery).
    clock_offset: Rc<std::cell::Cell<Option<f64>>>,
    _node: AudioWorkletNode,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl PcmCapture {
    /// Starts capturing `stream`; `on_event` gets every chunk in order,
    /// then [`CaptureEvent::Stopped`].
    pub async fn start(stream: &MediaStream, on_event: Rc<dyn Fn(CaptureEvent)>) -> Result<PcmCapture, String> {
        if !is_supported() {
            return Err("This browser cannot record losslessly (no AudioWorklet).".into());
        }
        let context = AudioContext::new().map_err(|_| "The browser could not open its audio engine.".to_string())?;
        let sample_rate = context.sample_rate().round() as u32;
        if !audiobook_wire::lossless::SAMPLE_RATES.contains(&sample_rate) {
            let _ = context.close();
            return Err(format!("This device's audio runs at {sample_rate} Hz, which cannot be recorded losslessly."));
        }
        let loaded = match context.audio_worklet() {
            Ok(worklet) => match worklet.add_module(WORKLET_URL) {
                Ok(promise) => JsFuture::from(promise).await.is_ok(),
                Err(_) => false,
            },
            Err(_) => false,
        };
        let node = loaded.then(|| AudioWorkletNode::new(&context, PROCESSOR).ok()).flatten();
        let source = context.create_media_stream_source(stream).ok();
        let (Some(node), Some(source), Ok(port)) =
            (node.clone(), source, node.as_ref().map_or(Err(JsValue::NULL), |n| n.port()))
        else {
            let _ = context.close();
            return Err("The browser could not start lossless recording (its audio worklet did not load).".into());
        };
        let chunker = Rc::new(RefCell::new(PcmChunker::new(sample_rate)));
        let clock_offset = Rc::new(std::cell::Cell::new(None));
        let on_message = {
            let context = context.clone();
            let chunker = chunker.clone();
            let clock_offset = clock_offset.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
                let data = e.data();
                if data.is_object() {
                    // `{frame, samples}`: a block and the frame of its first sample.
                    let frame = js_sys::Reflect::get(&data, &JsValue::from_str("frame")).ok().and_then(|f| f.as_f64());
                    let samples = js_sys::Reflect::get(&data, &JsValue::from_str("samples")).ok();
                    if let (Some(frame), Some(buffer)) =
                        (frame, samples.as_ref().and_then(|s| s.dyn_ref::<ArrayBuffer>()))
                    {
                        let samples = Uint8Array::new(buffer).to_vec();
                        // The block's last sample was captured at most now.
                        let end_ms = (frame + (samples.len() / 2) as f64) * 1000.0 / f64::from(sample_rate);
                        let offset = performance_now() - end_ms;
                        if clock_offset.get().is_none_or(|o| offset < o) {
                            clock_offset.set(Some(offset));
                        }
                        let full = chunker.borrow_mut().push_at(frame.max(0.0) as u64, &samples);
                        for chunk in full {
                            on_event(CaptureEvent::Data(chunk));
                        }
                    }
                    return;
                }
                match data.as_string().as_deref() {
                    Some("flushed") => {
                        let held = chunker.borrow_mut().flush();
                        if let Some(chunk) = held {
                            on_event(CaptureEvent::Data(chunk));
                        }
                    }
                    Some("stopped") => {
                        let last = chunker.borrow_mut().finish();
                        if let Some(chunk) = last {
                            on_event(CaptureEvent::Data(chunk));
                        }
                        on_event(CaptureEvent::Stopped);
                        let _ = context.close();
                    }
                    _ => {}
                }
            })
        };
        port.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        // The worklet outputs silence; connected so that every browser runs it.
        let connected =
            source.connect_with_audio_node(&node).and_then(|_| node.connect_with_audio_node(&context.destination()));
        if connected.is_err() {
            let _ = context.close();
            return Err("The browser could not connect the microphone to the lossless recorder.".into());
        }
        if let Ok(resumed) = context.resume() {
            let _ = JsFuture::from(resumed).await;
        }
        Ok(PcmCapture { context, port, sample_rate, chunker, clock_offset, _node: node, _on_message: on_message })
    }

    fn tell(&self, what: &str) {
        let _ = self.port.post_message(&JsValue::from_str(what));
    }

    /// The audio context's frame now: where a button press cuts the take.
    /// `currentTime` on the page can be stale on a busy machine (Firefox
    /// updates it from the audio thread: 0.4 s behind was seen), so the
    /// frame is also estimated from when the worklet's blocks arrived; the
    /// later of the two is the fresher.
    fn frame_now(&self) -> u64 {
        let rate = f64::from(self.sample_rate);
        let from_context = self.context.current_time() * rate;
        let from_blocks = self.clock_offset.get().map_or(0.0, |offset| (performance_now() - offset) * rate / 1000.0);
        from_context.max(from_blocks).round().max(0.0) as u64
    }

    /// No samples are kept until [`PcmCapture::resume`] (the worklet drops them).
    pub fn pause(&self) {
        self.tell("pause");
    }

    pub fn resume(&self) {
        self.tell("resume");
    }

    /// Ends the capture: the last chunk and [`CaptureEvent::Stopped`] follow.
    pub fn stop(&self) {
        let frame = self.frame_now();
        self.chunker.borrow_mut().stop_at(frame);
        self.tell("stop");
    }

    /// Hands over what is held now as a chunk (the page is being hidden),
    /// callable from an event listener.
    pub fn flusher(&self) -> impl Fn() + Clone + 'static {
        let port = self.port.clone();
        move || {
            let _ = port.post_message(&JsValue::from_str("flush"));
        }
    }
}

impl Drop for PcmCapture {
    fn drop(&mut self) {
        // Dropped after the stop was confirmed, or when the take is abandoned.
        self.port.set_onmessage(None);
        let _ = self.context.close();
    }
}

fn performance_now() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}
