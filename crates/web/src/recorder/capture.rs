//! The microphone, MediaRecorder with a 1 s timeslice, and an AnalyserNode
//! for the input level. When the page is hidden or left, the recorder is
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

use super::lifecycle::{self, Listener};

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

/// The best container type this browser records, if any.
pub fn best_mime_type() -> Option<&'static str> {
    MIME_TYPES.into_iter().find(|t| MediaRecorder::is_type_supported(t))
}

/// A running recorder on an open microphone.
pub struct Capture {
    stream: MediaStream,
    recorder: MediaRecorder,
    mime_type: String,
    audio: Option<(AudioContext, AnalyserNode)>,
    samples: Vec<f32>,
    _on_data: Closure<dyn FnMut(BlobEvent)>,
    _on_stop: Closure<dyn FnMut(Event)>,
    _on_error: Closure<dyn FnMut(Event)>,
    /// `requestData()` on `pagehide` and when the page is hidden.
    _flush_on_leave: Vec<Listener>,
}

impl Capture {
    /// Starts recording `stream`; `on_event` gets every piece in order.
    pub fn start(stream: MediaStream, on_event: impl Fn(CaptureEvent) + 'static) -> Result<Capture, String> {
        let mime_type = best_mime_type().ok_or("This browser cannot record audio in WebM or MP4.")?;
        let options = MediaRecorderOptions::new();
        options.set_mime_type(mime_type);
        let recorder = MediaRecorder::new_with_media_stream_and_media_recorder_options(&stream, &options)
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

        recorder.start_with_time_slice(TIMESLICE_MS).map_err(|_| "The recorder could not start.".to_string())?;
        let flush = {
            let recorder = recorder.clone();
            move || {
                if recorder.state() != RecordingState::Inactive {
                    let _ = recorder.request_data();
                }
            }
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
            [lifecycle::on_window("pagehide", flush), lifecycle::on_document("visibilitychange", on_hidden)]
                .into_iter()
                .flatten()
                .collect();
        let audio = level_meter(&stream);
        Ok(Capture {
            stream,
            recorder,
            mime_type: mime_type.to_string(),
            audio,
            samples: vec![0.0; 1024],
            _on_data: on_data,
            _on_stop: on_stop,
            _on_error: on_error,
            _flush_on_leave: flush_on_leave,
        })
    }

    pub fn mime_type(&self) -> &str {
        &self.mime_type
    }

    pub fn pause(&self) {
        if self.recorder.state() == RecordingState::Recording {
            let _ = self.recorder.pause();
        }
    }

    pub fn resume(&self) {
        if self.recorder.state() == RecordingState::Paused {
            let _ = self.recorder.resume();
        }
    }

    /// Stops the recorder (its last piece and [`CaptureEvent::Stopped`]
    /// follow) and releases the microphone.
    pub fn stop(&mut self) {
        if self.recorder.state() != RecordingState::Inactive {
            let _ = self.recorder.stop();
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
        self.recorder.set_ondataavailable(None);
        self.recorder.set_onstop(None);
        self.recorder.set_onerror(None);
        if self.recorder.state() != RecordingState::Inactive {
            let _ = self.recorder.stop();
        }
        self.release();
    }
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
