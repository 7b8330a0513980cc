//! AudioBook's wire format: the JSON bodies of the REST API and the payloads
//! and acknowledgements of the Socket.IO events, exactly as
//! `shared/CONTRACT.md` fixes them. The server, the web app and the load
//! program all use these types, so they cannot drift apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod lossless;

/// Longest user name, in characters (not bytes).
pub const MAX_USER_NAME_CHARS: usize = 20;
/// Longest recording name, in characters (not bytes).
pub const MAX_RECORDING_NAME_CHARS: usize = 50;

/// Socket.IO event names.
pub mod events {
    pub const START_RECORDING: &str = "start-recording";
    pub const APPEND_RECORDING: &str = "append-recording";
    pub const RESUME_RECORDING: &str = "resume-recording";
    pub const STOP_RECORDING: &str = "stop-recording";
    pub const RECORDING_SAVED: &str = "recording-saved";
    pub const RECORDING_ERROR: &str = "recording-error";
}

// ---------------------------------------------------------------- REST

/// `POST /onboard` body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OnboardRequest {
    pub name: String,
}

/// A user as the API shows it (never with its token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `POST /onboard` answer: the user plus the bearer token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Onboarded {
    #[serde(flatten)]
    pub user: User,
    pub token: String,
}

/// Where a recording stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Stored in the storage backend and playable.
    Ready,
    /// The client never came back; what the server held was finalized.
    Interrupted,
    /// Safe on the server (being saved, or its upload to the storage
    /// backend not confirmed yet).
    Pending,
    /// Still open: listed with the bytes received so far, so that a take
    /// another tab or device is recording (or that waits for its client to
    /// come back) is visible.
    Recording,
}

/// A saved recording.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    /// Absolute URL that plays the audio without any header.
    pub link: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub duration_ms: u64,
    pub status: RecordStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// For a take still `recording`: whether a client is connected to it
    /// now (`false`: it waits for the device that recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_connected: Option<bool>,
    /// Where its transcript stands (`none` from servers that predate them).
    #[serde(default)]
    pub transcript: TranscriptStatus,
    /// While the transcript is `running`: how far it got, 0–100, when the
    /// worker has said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_progress: Option<u8>,
    /// In an answer to `GET /records/:id?q=`: where the transcript matches
    /// (absent when only the name does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_match: Option<TranscriptMatch>,
}

/// Where a recording's transcript stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptStatus {
    /// None was asked for (transcription off, or the take is not `ready`).
    #[default]
    None,
    /// Waiting for a worker (or for a retry after a failed attempt).
    Queued,
    /// A worker is transcribing it.
    Running,
    /// `GET /recordings/:id/transcript` has it.
    Ready,
    /// Given up after a few attempts; the transcript endpoint says why.
    Failed,
}

/// `GET /recordings/:id/transcript`: what was said, in time order. Times
/// are milliseconds from the start of the audio.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Transcript {
    pub recording_id: Uuid,
    /// The spoken language (e.g. `en`), when the model said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The model that made it (e.g. `tiny.en`).
    pub model: String,
    pub segments: Vec<TranscriptSegment>,
}

/// A stretch of speech (a sentence or so) with its words.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TranscriptSegment {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    #[serde(default)]
    pub words: Vec<TranscriptWord>,
}

/// One word as spoken, with its punctuation (`"dog,"`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TranscriptWord {
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// The model's confidence, 0–1.
    #[serde(default)]
    pub probability: f32,
}

/// Where a search matched a transcript: a few words around the first match,
/// the matching words marked, and when the first match is spoken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TranscriptMatch {
    /// Plain text pieces in order; render `hit` pieces highlighted (they are
    /// text, never markup).
    pub snippet: Vec<SnippetPart>,
    /// Milliseconds from the start of the audio.
    pub at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SnippetPart {
    pub text: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hit: bool,
}

/// `POST /recordings/:id/share` body (optional): whether the share page
/// shows the transcript too. Absent: as it was (new shares: `false`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ShareOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript: Option<bool>,
}

/// Every error body of the REST API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: String,
}

/// The `404` of `GET /recordings/:id/transcript` while there is no
/// transcript: `error` in words, as in every error body, and where the
/// transcript stands, so that a client needs no wording to tell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TranscriptPending {
    pub error: String,
    #[serde(default)]
    pub transcript: TranscriptStatus,
    /// While `running`: how far it got, 0–100, when the worker said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_progress: Option<u8>,
    /// When `failed`: why, in the worker's or the server's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_error: Option<String>,
}

/// `GET /health` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `PATCH /recordings/:id` body: the new name (1–50 characters after trim).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RenameRecording {
    pub name: String,
}

/// `POST /recordings/:id/share` answer: the public page that plays it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShareLink {
    pub url: String,
}

/// `GET /s/:token/info`: what a share page shows, and nothing of the owner.
/// The audio plays from `/s/:token/audio`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SharedRecording {
    pub name: String,
    pub duration_ms: u64,
    pub created_at: DateTime<Utc>,
    pub mime_type: String,
    /// Whether the owner shared the transcript: then it is at
    /// `/s/:token/transcript` (JSON, `?format=vtt`, `?format=txt`) once ready.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transcript: bool,
}

/// `GET /records/:id?limit=N`: the response header holding the `before`
/// cursor of the next page (absent on the last page).
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";
/// Largest `limit` of `GET /records/:id`.
pub const MAX_PAGE_LIMIT: u32 = 100;

/// `GET /recordings/:id/waveform` answer: input level peaks (0–255) spread
/// evenly over the take; empty when the recorder sent none.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Waveform {
    pub peaks: Vec<u8>,
}

// ---------------------------------------------------------------- Socket.IO

/// Handshake `auth` payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HandshakeAuth {
    pub token: String,
}

/// `start-recording` payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartRecording {
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `start-recording` ack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StartAck {
    pub ok: bool,
    pub recording_id: Uuid,
}

/// `append-recording` payload. `data` is a Socket.IO binary attachment;
/// original clients send `{"data": null, "final": true}` to mark the end.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AppendChunk {
    #[serde(default)]
    pub data: Option<bytes::Bytes>,
    #[serde(default, rename = "final")]
    pub is_final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Input level peaks (0..=255) for this chunk's span, for the waveform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peaks: Option<Vec<u8>>,
}

/// `append-recording` ack: `{"ok": true, ...}` or `{"ok": false, ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum AppendAck {
    Ok(AppendOk),
    /// `next_seq` says where to go on, when the server knows the recording.
    Err(Failure),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppendOk {
    pub ok: monostate::True,
    pub recording_id: Uuid,
    pub seq: u64,
    pub received_bytes: u64,
}

/// `resume-recording` payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResumeRecording {
    pub recording_id: Uuid,
}

/// `resume-recording` ack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ResumeAck {
    Ok(ResumeOk),
    Err(Failure),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResumeOk {
    pub ok: monostate::True,
    pub recording_id: Uuid,
    pub next_seq: u64,
    pub received_bytes: u64,
}

/// `stop-recording` payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StopRecording {
    /// Kept for original clients; it must be the token's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<Uuid>,
    /// How many chunks the client sent (seq 0..chunks); the server refuses to
    /// finalize while any of them is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<u64>,
    /// Where the person paused: `[pause, resume]` in ms since the recorder
    /// started (the page's clock), in order. With `recorded_ms`, lets the
    /// server remove the paused spans from a file whose recorder ignored
    /// `pause()` (WebKit's MediaRecorder keeps recording while "paused").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_ms: Option<Vec<[u64; 2]>>,
    /// The time actually recorded (pauses excluded), by the page's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_ms: Option<u64>,
}

/// Longest `paused_ms` list a stop may carry.
pub const MAX_PAUSES: usize = 10_000;

/// `stop-recording` ack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StopAck {
    Ok(StopOk),
    Err(Failure),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StopOk {
    pub ok: monostate::True,
    pub record: Record,
}

/// A refused request on the socket: `{"ok": false, "error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub ok: monostate::False,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<Uuid>,
    /// Set when the refusal is temporary (the server is busy, its database
    /// or disk is unavailable): send the same request again after this many
    /// milliseconds. Nothing acknowledged before is affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Failure {
    pub fn new(error: impl Into<String>) -> Self {
        Failure { ok: monostate::False, error: error.into(), next_seq: None, recording_id: None, retry_after_ms: None }
    }
}

/// `recording-error` payload (server → client).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordingError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_id: Option<Uuid>,
    pub error: String,
}

/// `true` and `false` as types, so that `{"ok": true}` and `{"ok": false}`
/// select the right variant of an untagged ack.
pub mod monostate {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct True;
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct False;

    macro_rules! bool_type {
        ($ty:ident, $value:literal) => {
            impl Serialize for $ty {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_bool($value)
                }
            }
            impl<'de> Deserialize<'de> for $ty {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    if bool::deserialize(d)? == $value {
                        Ok($ty)
                    } else {
                        Err(D::Error::custom(concat!("expected ", stringify!($value))))
                    }
                }
            }
        };
    }
    bool_type!(True, true);
    bool_type!(False, false);
}

/// Counts characters the way the limits mean them (Unicode scalar values).
pub fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Why a user or recording name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong { len: usize, max: usize },
    ControlCharacters,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => f.write_str("`name` is empty: type at least one character."),
            NameError::TooLong { len, max } => {
                write!(f, "`name` is {len} characters long; at most {max} are allowed.")
            }
            NameError::ControlCharacters => f.write_str("`name` must not contain control characters."),
        }
    }
}

/// The one check of a name, wherever it comes from (REST or Socket.IO):
/// trimmed, 1 to `max` characters, no control characters (NUL included).
pub fn clean_name(raw: &str, max: usize) -> Result<String, NameError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let len = char_len(name);
    if len > max {
        return Err(NameError::TooLong { len, max });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacters);
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plain_error_body_reads_as_a_pending_transcript_of_none() {
        // The 404 of a recording that is gone has `error` only.
        let gone: TranscriptPending = serde_json::from_value(json!({"error": "Not found."})).unwrap();
        assert_eq!(
            (gone.transcript, gone.transcript_progress, gone.transcript_error),
            (TranscriptStatus::None, None, None)
        );
        let failed: TranscriptPending = serde_json::from_value(
            json!({"error": "Transcribing this recording failed: boom.", "transcript": "failed", "transcript_error": "boom"}),
        )
        .unwrap();
        assert_eq!((failed.transcript, failed.transcript_error.as_deref()), (TranscriptStatus::Failed, Some("boom")));
        let running = serde_json::to_value(TranscriptPending {
            error: "The transcript is being made (42 % done).".into(),
            transcript: TranscriptStatus::Running,
            transcript_progress: Some(42),
            transcript_error: None,
        })
        .unwrap();
        assert_eq!(running["transcript"], "running");
        assert_eq!(running["transcript_progress"], 42);
        assert!(running.get("transcript_error").is_none());
    }

    #[test]
    fn append_ack_variants_follow_ok() {
        let ok: AppendAck = serde_json::from_value(json!({
            "ok": true, "recording_id": Uuid::nil(), "seq": 3, "received_bytes": 10
        }))
        .unwrap();
        assert!(matches!(ok, AppendAck::Ok(AppendOk { seq: 3, received_bytes: 10, .. })));
        let err: AppendAck = serde_json::from_value(json!({"ok": false, "error": "gap", "next_seq": 2})).unwrap();
        assert!(matches!(err, AppendAck::Err(Failure { next_seq: Some(2), .. })));
        assert_eq!(
            serde_json::to_value(AppendAck::Err(Failure { next_seq: Some(1), ..Failure::new("x") })).unwrap(),
            json!({"ok": false, "error": "x", "next_seq": 1})
        );
    }

    #[test]
    fn original_final_marker_parses() {
        let c: AppendChunk = serde_json::from_value(json!({"data": null, "final": true})).unwrap();
        assert!(c.is_final && c.data.is_none() && c.seq.is_none());
    }

    #[test]
    fn onboarded_flattens_user_and_status_is_lowercase() {
        let now = Utc::now();
        let v = serde_json::to_value(Onboarded {
            user: User { id: Uuid::nil(), name: "Ann".into(), created_at: now, updated_at: now },
            token: "t".into(),
        })
        .unwrap();
        assert_eq!(v["name"], "Ann");
        assert_eq!(v["token"], "t");
        assert_eq!(serde_json::to_value(RecordStatus::Interrupted).unwrap(), json!("interrupted"));
    }

    #[test]
    fn records_of_older_servers_parse_with_no_transcript() {
        let now = Utc::now();
        let v = json!({
            "id": Uuid::nil(), "user_id": Uuid::nil(), "name": "A", "link": "http://x/m", "mime_type": "audio/webm",
            "size_bytes": 1, "duration_ms": 2, "status": "ready", "created_at": now, "updated_at": now
        });
        let r: Record = serde_json::from_value(v).unwrap();
        assert_eq!((r.transcript, r.transcript_progress, &r.transcript_match), (TranscriptStatus::None, None, &None));
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out["transcript"], "none");
        assert!(out.get("transcript_match").is_none() && out.get("transcript_progress").is_none());
        let part = serde_json::to_value(SnippetPart { text: "x".into(), hit: false }).unwrap();
        assert_eq!(part, json!({"text": "x"}));
    }

    #[test]
    fn names_are_checked_once_for_every_path() {
        assert_eq!(clean_name("  Ada  ", 20).unwrap(), "Ada");
        assert_eq!(clean_name(&"é".repeat(20), 20).unwrap(), "é".repeat(20));
        assert_eq!(clean_name(&"é".repeat(21), 20), Err(NameError::TooLong { len: 21, max: 20 }));
        assert_eq!(clean_name(" \t ", 20), Err(NameError::Empty));
        assert_eq!(clean_name("a\0b", 20), Err(NameError::ControlCharacters));
        assert_eq!(clean_name("a\u{7f}", 20), Err(NameError::ControlCharacters));
    }

    #[test]
    fn char_len_counts_characters_not_bytes() {
        assert_eq!(char_len("héllo wörld ✓"), 13);
        assert_eq!(char_len(""), 0);
    }
}
