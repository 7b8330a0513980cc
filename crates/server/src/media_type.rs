//! What a recording is served as. The MIME type comes from the client, so it
//! is never trusted: only audio container types from an allow-list (with only
//! the codec parameters we know) are kept, anything else becomes
//! `application/octet-stream` and is served as an attachment. Every media
//! response also carries headers that make it inert even if a browser were
//! talked into rendering it (see [`inert_headers`]).

use axum::http::{HeaderMap, HeaderValue, header};

/// The type for anything that is not known audio.
pub const OPAQUE: &str = "application/octet-stream";

/// `Content-Security-Policy` of every media response: no script, no
/// plug-in, no same-origin access, even if the bytes were HTML.
pub const MEDIA_CSP: &str = "sandbox; default-src 'none'";

/// Container types we store and serve as themselves, with the codecs each
/// may name. Aliases map onto one spelling.
const CONTAINERS: &[(&[&str], &str, &[&str])] = &[
    (&["audio/webm", "video/webm"], "audio/webm", &["opus", "vorbis", "pcm"]),
    (&["audio/ogg", "application/ogg", "audio/opus"], "audio/ogg", &["opus", "vorbis", "flac", "speex"]),
    (
        &["audio/mp4", "audio/x-m4a", "audio/m4a", "video/mp4"],
        "audio/mp4",
        &["mp4a", "mp4a.40.2", "mp4a.40.5", "mp4a.40.29", "mp4a.67", "opus", "flac", "alac"],
    ),
    (&["audio/aac", "audio/aacp"], "audio/aac", &[]),
    (&["audio/mpeg", "audio/mp3"], "audio/mpeg", &[]),
    (&["audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"], "audio/wav", &["1"]),
];

/// The stored type for a client-declared one: `audio/webm;codecs=opus` for
/// `Audio/WebM; codecs="opus"`, [`OPAQUE`] for `text/html` or garbage.
/// Unknown codecs are dropped (the container type alone still plays).
pub fn safe_audio_type(declared: &str) -> String {
    let mut parts = declared.split(';');
    let base = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let Some((_, canonical, codecs)) = CONTAINERS.iter().find(|(names, _, _)| names.contains(&base.as_str())) else {
        return OPAQUE.to_string();
    };
    let mut kept: Vec<String> = Vec::new();
    for param in parts {
        let Some((key, value)) = param.split_once('=') else { continue };
        if !key.trim().eq_ignore_ascii_case("codecs") {
            continue;
        }
        for codec in value.trim().trim_matches('"').split(',') {
            let codec = codec.trim().to_ascii_lowercase();
            if codecs.contains(&codec.as_str()) && !kept.contains(&codec) {
                kept.push(codec);
            }
        }
    }
    if kept.is_empty() { canonical.to_string() } else { format!("{canonical};codecs={}", kept.join(",")) }
}

/// Whether a stored type is one a browser may play inline.
pub fn is_playable(mime: &str) -> bool {
    safe_audio_type(mime) != OPAQUE
}

/// Sets the headers every media response carries: the (re-checked) type,
/// `nosniff`, a sandboxing CSP and a same-site resource policy.
pub fn inert_headers(headers: &mut HeaderMap, stored_type: &str) {
    let content_type = safe_audio_type(stored_type);
    headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static(OPAQUE)));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(MEDIA_CSP));
    headers
        .insert(header::HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-site"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_types_are_kept_in_one_spelling() {
        assert_eq!(safe_audio_type("audio/webm;codecs=opus"), "audio/webm;codecs=opus");
        assert_eq!(safe_audio_type("Audio/WebM; codecs=\"OPUS\""), "audio/webm;codecs=opus");
        assert_eq!(safe_audio_type("audio/mp4; codecs=mp4a"), "audio/mp4;codecs=mp4a");
        assert_eq!(safe_audio_type("audio/x-m4a"), "audio/mp4");
        assert_eq!(safe_audio_type("audio/ogg;codecs=opus,vorbis"), "audio/ogg;codecs=opus,vorbis");
        assert_eq!(safe_audio_type("audio/wav"), "audio/wav");
        assert_eq!(safe_audio_type("audio/x-wav"), "audio/wav");
        assert_eq!(safe_audio_type("audio/mpeg"), "audio/mpeg");
    }

    #[test]
    fn anything_else_is_opaque() {
        for hostile in [
            "text/html",
            "text/html;charset=utf-8",
            "image/svg+xml",
            "application/xhtml+xml",
            "text/javascript",
            "audio/webm\r\nX-Evil: 1",
            "",
            "audio",
            "audio/webm-but-not",
            "multipart/x-mixed-replace;boundary=x",
        ] {
            assert_eq!(safe_audio_type(hostile), OPAQUE, "{hostile:?}");
        }
    }

    #[test]
    fn unknown_codecs_and_parameters_are_dropped() {
        assert_eq!(safe_audio_type("audio/webm;codecs=\"<script>\""), "audio/webm");
        assert_eq!(safe_audio_type("audio/webm;charset=utf-8;codecs=opus"), "audio/webm;codecs=opus");
        assert_eq!(safe_audio_type("audio/webm;codecs=opus,opus"), "audio/webm;codecs=opus");
    }

    #[test]
    fn media_headers_are_inert() {
        let mut h = HeaderMap::new();
        inert_headers(&mut h, "text/html");
        assert_eq!(h[header::CONTENT_TYPE], OPAQUE);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], MEDIA_CSP);
        assert_eq!(h["cross-origin-resource-policy"], "same-site");
    }
}
