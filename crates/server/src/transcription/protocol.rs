//! The worker protocol (version 1): JSON lines on the worker's stdin and
//! stdout; `transcriber/transcriber.py` documents it from the worker's side.
//! Nothing here knows which engine is behind it.
//!
//! - in: `{"type": "transcribe", "id", "audio": path, "options": {...}}`, one at a time;
//! - out: `ready` once (model loaded); per job `started`, its `segment`s in
//!   time order, then `done` or `error` (`retry: false` when trying again
//!   cannot help).
//!
//! The worker is not trusted more than its input: every line is bounded,
//! every field checked, text cleaned of control characters.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use audiobook_wire::{TranscriptSegment, TranscriptWord};

pub const PROTOCOL_VERSION: u32 = 1;
/// Longest line the worker may write (a segment is a few KB).
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Bounds of one job's result: about 100 hours of speech.
pub const MAX_SEGMENTS: usize = 200_000;
pub const MAX_WORDS: usize = 2_000_000;
const MAX_TEXT_CHARS: usize = 10_000;
const MAX_WORD_CHARS: usize = 200;
const MAX_WORDS_PER_SEGMENT: usize = 2_000;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Transcribe { id: String, audio: PathBuf, options: JobOptions },
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct JobOptions {
    /// `None`: the model's language (English for `.en` models), else detected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Seconds of audio transcribed at once (the worker bounds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u32>,
}

/// A line from the worker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Ready {
        protocol: u32,
        model: String,
        #[serde(default)]
        engine: String,
    },
    Started {
        id: String,
        #[serde(default)]
        duration_ms: u64,
        #[serde(default)]
        language: Option<String>,
    },
    Segment {
        id: String,
        start_ms: u64,
        end_ms: u64,
        text: String,
        #[serde(default)]
        words: Vec<WorkerWord>,
    },
    Done {
        id: String,
    },
    Error {
        #[serde(default)]
        id: Option<String>,
        error: String,
        #[serde(default = "yes")]
        retry: bool,
    },
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WorkerWord {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    #[serde(default)]
    pub probability: f32,
}

/// Parses one line, or says what is wrong with it.
pub fn parse(line: &[u8]) -> Result<Message, String> {
    serde_json::from_slice(line).map_err(|e| {
        let shown: String = String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned();
        format!("the worker wrote a line that is not protocol ({e}): {shown:?}")
    })
}

/// Text on one line, without control characters, bounded.
pub fn clean(text: &str, max_chars: usize) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max_chars).collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A segment as the API shows it: text cleaned, times ordered, words within bounds.
pub fn segment(start_ms: u64, end_ms: u64, text: &str, words: Vec<WorkerWord>) -> Option<TranscriptSegment> {
    let text = clean(text, MAX_TEXT_CHARS);
    if text.is_empty() {
        return None;
    }
    let words = words
        .into_iter()
        .take(MAX_WORDS_PER_SEGMENT)
        .filter_map(|w| {
            let text = clean(&w.text, MAX_WORD_CHARS);
            (!text.is_empty()).then(|| TranscriptWord {
                start_ms: w.start_ms,
                end_ms: w.end_ms.max(w.start_ms),
                text,
                probability: if w.probability.is_finite() { w.probability.clamp(0.0, 1.0) } else { 0.0 },
            })
        })
        .collect();
    Some(TranscriptSegment { start_ms, end_ms: end_ms.max(start_ms), text, words })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_messages_round_trip_the_documented_shapes() {
        let r = Request::Transcribe { id: "j".into(), audio: "/a.webm".into(), options: JobOptions::default() };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"type": "transcribe", "id": "j", "audio": "/a.webm", "options": {}})
        );
        assert!(matches!(
            parse(br#"{"type":"ready","protocol":1,"model":"tiny.en","engine":"x","threads":1}"#),
            Ok(Message::Ready { protocol: 1, .. })
        ));
        assert!(matches!(parse(br#"{"type":"error","id":null,"error":"x"}"#), Ok(Message::Error { retry: true, .. })));
        for bad in [&b"not json"[..], br#"{"type":"segment","id":"j"}"#, br#"{"type":"reboot"}"#, br#"[1]"#] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn segments_are_cleaned_and_bounded() {
        let words = vec![
            WorkerWord { start_ms: 10, end_ms: 5, text: " hi\u{7}\n".into(), probability: f32::NAN },
            WorkerWord { start_ms: 20, end_ms: 30, text: "\u{0}".into(), probability: 3.0 },
        ];
        let s = segment(10, 0, "  hi \u{1b}[31m there\r\n", words).unwrap();
        assert_eq!(s.text, "hi [31m there");
        assert_eq!((s.start_ms, s.end_ms), (10, 10));
        assert_eq!(s.words.len(), 1);
        assert_eq!((s.words[0].text.as_str(), s.words[0].end_ms, s.words[0].probability), ("hi", 10, 0.0));
        assert!(segment(0, 1, " \u{0} ", vec![]).is_none());
        assert_eq!(clean(&"é".repeat(20_000), MAX_TEXT_CHARS).chars().count(), MAX_TEXT_CHARS);
    }
}
