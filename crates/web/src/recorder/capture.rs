//! The microphone, MediaRecorder with a 1 s timeslice (Standard quality) or
//! the lossless PCM capture of [`super::pcm`] (Lossless, and the fallback
//! where MediaRecorder is missing or broken), and an AnalyserNode for the
//! input level. When the page is hidden or left, the recorder is
//! asked for what it holds at once (`requestData()`), so a page that is
//! then closed or killed loses at most about a second.

use futures::StreamExt;
use futures::channel::mpsc;
use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    AnalyserNode, AudioContext, Blob, BlobEvent, DomException, Event, MediaRecorder, MediaRecorderOptions, MediaStream,
    MediaStreamConstraints, MediaStreamTrack, RecordingState,
};

use std::rc::Rc;

use super::lifecycle::{self, Listener};
use super::pcm::PcmCapture;
use crate::storage::Quality;

/// MediaRecorder hands over data this often, so chunks stream live and a
/// crash loses at most this much.
const TIMESLICE_MS: i32 = 1000;

/// Container types in order of preference.
const MIME_TYPES: [&str; 3] = ["audio/webm;codecs=opus", "audio/webm", "audio/mp4"];

/// What the recorder reports, in the order it happened.
pub enum CaptureEvent {
    /// The next piece of the file.
    Data(Vec<u8>),
    /// The recorder stopped; every piece was reported before this.
    Stopped,
    /// The recorder failed (for example the microphone was unplugged).
    Failed(String),
}

/// Asks for the microphone, with the reason in words when it is refused.
pub async fn open_microphone() -> Result<MediaStream, String> {
    let window = web_sys::window().ok_or("No browser window.")?;
    let devices = window.navigator().media_devices().ok().filter(|d| !JsValue::from(d.clone()).is_undefined());
    let Some(devices) = devices else {
        return Err("This browser cannot record here. Recording needs a secure page (https:// or localhost) \
                    and a browser with microphone support."
            .into());
    };
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio_bool(true);
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .map_err(|_| "The browser refused to ask for the microphone.".to_string())?;
    match JsFuture::from(promise).await {
        Ok(stream) => Ok(stream.unchecked_into()),
        Err(e) => Err(mic_error(&e)),
    }
}

fn mic_error(e: &JsValue) -> String {
    let name = e.dyn_ref::<DomException>().map(|d| d.name()).unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" | "SecurityError" => "Microphone access was refused. Allow the microphone for this site \
                                                in your browser's settings, then try again."
            .into(),
        "NotFoundError" | "OverconstrainedError" => "No microphone was found. Connect one, then try again.".into(),
        "NotReadableError" | "AbortError" => "The microphone could not be started: another app may be using it. \
                                             Close it, then try again."
            .into(),
        _ => format!("The microphone could not be opened ({name}). Try again."),
    }
}

/// Whether this browser has MediaRecorder at all (calling into a missing one
/// would throw).
fn has_media_recorder() -> bool {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("MediaRecorder")).is_ok_and(|v| v.is_function())
}

/// The best container type this browser's MediaRecorder records, if any.
pub fn best_mime_type() -> Option<&'static str> {
    if !has_media_recorder() {
        return None;
    }
    MIME_TYPES.into_iter().find(|t| MediaRecorder::is_type_supported(t))
}

/// Whether "Standard" (compressed, by MediaRecorder) can record here; if
/// not, takes are lossless.
pub fn can_record_compressed() -> bool {
    best_mime_type().is_some()
}

/// What records the take.
enum Backend {
    /// MediaRecorder, compressed (Standard quality).
    Recorder {
        recorder: MediaRecorder,
        _on_data: Closure<dyn FnMut(BlobEvent)>,
        _on_stop: Closure<dyn FnMut(Event)>,
        _on_error: Closure<dyn FnMut(Event)>,
    },
    /// 16-bit PCM from an AudioWorklet (Lossless, or the fallback).
    Pcm(PcmCapture),
}

/// A running recorder on an open microphone.
pub struct Capture {
    stream: MediaStream,
    backend: Backend,
    mime_type: String,
    audio: Option<(AudioContext, AnalyserNode)>,
    samples: Vec<f32>,
    /// Asks for what is held on `pagehide` and when the page is hidden.
    _flush_on_leave: Vec<Listener>,
}

impl Capture {
    /// Starts recording `stream` at `quality`; `on_event` gets every piece
    /// in order. Standard falls back to lossless where MediaRecorder is
    /// missing, records none of our types or cannot start.
    pub async fn start(
        stream: MediaStream,
        quality: Quality,
        on_event: impl Fn(CaptureEvent) + 'static,
    ) -> Result<Capture, String> {
        let on_event: Rc<dyn Fn(CaptureEvent)> = Rc::new(on_event);
        let compressed = match quality {
            Quality::Standard => best_mime_type(),
            Quality::Lossless => None,
        };
        let recorder = compressed.and_then(|mime_type| match start_recorder(&stream, mime_type, on_event.clone()) {
            Ok(backend) => Some((backend, mime_type.to_string())),
            Err(e) => {
                web_sys::console::warn_1(
                    &format!("AudioBook: MediaRecorder failed ({e}); recording losslessly").into(),
                );
                None
            }
        });
        let (backend, mime_type) = match recorder {
            Some(started) => started,
            None => {
                let pcm = PcmCapture::start(&stream, on_event).await.map_err(|e| {
                    if compressed.is_none() && quality == Quality::Standard {
                        format!("This browser cannot record audio in WebM or MP4, and {}", lowercase_first(&e))
                    } else {
                        e
                    }
                })?;
                (Backend::Pcm(pcm), audiobook_wire::lossless::MIME_TYPE.to_string())
            }
        };
        let flush: Rc<dyn Fn()> = match &backend {
            Backend::Recorder { recorder, .. } => {
                let recorder = recorder.clone();
                Rc::new(move || {
                    if recorder.state() != RecordingState::Inactive {
                        let _ = recorder.request_data();
                    }
                })
            }
            Backend::Pcm(pcm) => Rc::new(pcm.flusher()),
        };
        let on_hidden = {
            let flush = flush.clone();
            move || {
                if lifecycle::page_hidden() {
                    flush();
                }
            }
        };
        let flush_on_leave =
            [lifecycle::on_window("pagehide", move || flush()), lifecycle::on_document("visibilitychange", on_hidden)]
                .into_iter()
                .flatten()
                .collect();
        let audio = level_meter(&stream);
        Ok(Capture { stream, backend, mime_type, audio, samples: vec![0.0; 1024], _flush_on_leave: flush_on_leave })
    }

    pub fn mime_type(&self) -> &str {
        &self.mime_type
    }

    pub fn pause(&self) {
        match &self.backend {
            Backend::Recorder { recorder, .. } if recorder.state() == RecordingState::Recording => {
                let _ = recorder.pause();
            }
            Backend::Recorder { .. } => {}
            Backend::Pcm(pcm) => pcm.pause(),
        }
    }

    pub fn resume(&self) {
        match &self.backend {
            Backend::Recorder { recorder, .. } if recorder.state() == RecordingState::Paused => {
                let _ = recorder.resume();
            }
            Backend::Recorder { .. } => {}
            Backend::Pcm(pcm) => pcm.resume(),
        }
    }

    /// Stops the recorder (its last piece and [`CaptureEvent::Stopped`]
    /// follow) and releases the microphone.
    pub fn stop(&mut self) {
        match &self.backend {
            Backend::Recorder { recorder, .. } if recorder.state() != RecordingState::Inactive => {
                let _ = recorder.stop();
            }
            Backend::Recorder { .. } => {}
            Backend::Pcm(pcm) => pcm.stop(),
        }
        self.release();
    }

    fn release(&mut self) {
        for track in self.stream.get_tracks().iter() {
            track.unchecked_into::<MediaStreamTrack>().stop();
        }
        if let Some((context, _)) = self.audio.take() {
            let _ = context.close();
        }
    }

    /// The input level now, from 0 (silence) to 1 (full scale), on a
    /// decibel scale so speech moves the meter.
    pub fn level(&mut self) -> f64 {
        let Some((_, analyser)) = &self.audio else { return 0.0 };
        analyser.get_float_time_domain_data(&mut self.samples);
        let mean_square = self.samples.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / self.samples.len() as f64;
        let db = 10.0 * mean_square.max(1e-12).log10();
        ((db + 60.0) / 60.0).clamp(0.0, 1.0)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Backend::Recorder { recorder, .. } = &self.backend {
            recorder.set_ondataavailable(None);
            recorder.set_onstop(None);
            recorder.set_onerror(None);
            if recorder.state() != RecordingState::Inactive {
                let _ = recorder.stop();
            }
        }
        self.release();
    }
}

/// MediaRecorder on `stream` in `mime_type`, started with the timeslice.
fn start_recorder(
    stream: &MediaStream,
    mime_type: &str,
    on_event: Rc<dyn Fn(CaptureEvent)>,
) -> Result<Backend, String> {
    let options = MediaRecorderOptions::new();
    options.set_mime_type(mime_type);
    let recorder = MediaRecorder::new_with_media_stream_and_media_recorder_options(stream, &options)
        .map_err(|_| "The browser could not start a recorder.".to_string())?;

    // Blobs are read asynchronously; a channel keeps them in order.
    enum Item {
        Blob(Blob),
        Stopped,
        Failed(String),
    }
    let (tx, mut rx) = mpsc::unbounded::<Item>();
    let on_data = {
        let tx = tx.clone();
        Closure::<dyn FnMut(BlobEvent)>::new(move |e: BlobEvent| {
            if let Some(blob) = e.data() {
                let _ = tx.unbounded_send(Item::Blob(blob));
            }
        })
    };
    let on_stop = {
        let tx = tx.clone();
        Closure::<dyn FnMut(Event)>::new(move |_| {
            let _ = tx.unbounded_send(Item::Stopped);
        })
    };
    let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
        let _ = tx.unbounded_send(Item::Failed(
            "The recorder stopped with an error (was the microphone disconnected?).".into(),
        ));
    });
    recorder.set_ondataavailable(Some(on_data.as_ref().unchecked_ref()));
    recorder.set_onstop(Some(on_stop.as_ref().unchecked_ref()));
    recorder.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    if recorder.start_with_time_slice(TIMESLICE_MS).is_err() {
        recorder.set_ondataavailable(None);
        recorder.set_onstop(None);
        recorder.set_onerror(None);
        return Err("The recorder could not start.".into());
    }
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(item) = rx.next().await {
            match item {
                Item::Blob(blob) => match blob_bytes(&blob).await {
                    Ok(bytes) => on_event(CaptureEvent::Data(bytes)),
                    Err(e) => on_event(CaptureEvent::Failed(e)),
                },
                Item::Stopped => {
                    on_event(CaptureEvent::Stopped);
                    break;
                }
                Item::Failed(e) => on_event(CaptureEvent::Failed(e)),
            }
        }
    });
    Ok(Backend::Recorder { recorder, _on_data: on_data, _on_stop: on_stop, _on_error: on_error })
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

fn level_meter(stream: &MediaStream) -> Option<(AudioContext, AnalyserNode)> {
    let context = AudioContext::new().ok()?;
    let source = context.create_media_stream_source(stream).ok()?;
    let analyser = context.create_analyser().ok()?;
    analyser.set_fft_size(1024);
    source.connect_with_audio_node(&analyser).ok()?;
    let _ = context.resume();
    Some((context, analyser))
}

async fn blob_bytes(blob: &Blob) -> Result<Vec<u8>, String> {
    let buffer = JsFuture::from(blob.array_buffer())
        .await
        .map_err(|_| "The browser could not read a recorded piece.".to_string())?;
    Ok(Uint8Array::new(&buffer).to_vec())
}
