//! A transcript as WebVTT (captions: `<track kind="captions">`) and as plain
//! text. Transcript text comes from audio anyone can record, so WebVTT's
//! markup characters are escaped and a cue never holds a blank line or `-->`.

use audiobook_wire::Transcript;

/// `HH:MM:SS.mmm`.
fn timestamp(ms: u64) -> String {
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

/// Cue text on one line with `&`, `<` and `>` escaped (so `-->` cannot occur).
fn cue_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in word.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                c if c.is_control() => {}
                c => out.push(c),
            }
        }
    }
    out
}

pub fn to_vtt(t: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n");
    let mut number = 0;
    for s in &t.segments {
        let text = cue_text(&s.text);
        if text.is_empty() {
            continue;
        }
        number += 1;
        let end = s.end_ms.max(s.start_ms + 1);
        out.push_str(&format!("\n{number}\n{} --> {}\n{text}\n", timestamp(s.start_ms), timestamp(end)));
    }
    out
}

/// One line per segment.
pub fn to_text(t: &Transcript) -> String {
    let mut out = String::new();
    for s in &t.segments {
        let line: Vec<&str> = s.text.split_whitespace().collect();
        if !line.is_empty() {
            out.push_str(&line.join(" "));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiobook_wire::TranscriptSegment;

    #[test]
    fn vtt_is_well_formed_whatever_was_said() {
        let t = Transcript {
            segments: vec![
                TranscriptSegment { start_ms: 0, end_ms: 4840, text: "Hello, world.".into(), words: vec![] },
                TranscriptSegment { start_ms: 3_723_004, end_ms: 3_723_004, text: " ".into(), words: vec![] },
                TranscriptSegment {
                    start_ms: 3_723_004,
                    end_ms: 3_725_000,
                    text: "a --> b\n\nWEBVTT <script>&\u{0}".into(),
                    words: vec![],
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            to_vtt(&t),
            "WEBVTT\n\n1\n00:00:00.000 --> 00:00:04.840\nHello, world.\n\n\
             2\n01:02:03.004 --> 01:02:05.000\na --&gt; b WEBVTT &lt;script&gt;&amp;\n"
        );
        assert_eq!(to_text(&t), "Hello, world.\na --> b WEBVTT <script>&\u{0}\n");
    }
}
