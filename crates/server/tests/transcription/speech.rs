//! Known speech for the transcription tests and benchmark: sentences spoken
//! by espeak-ng, joined with pauses into one WebM/Opus file (ffmpeg), with
//! the time each sentence's first word is heard.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Sentences for the clips (espeak-ng says them clearly; each starts with a
/// word that occurs nowhere else in the list, so a search for it has one answer).
pub const SENTENCES: &[&str] = &[
    "Good morning, this is a short test of the recorder.",
    "The weather today is bright and sunny with a light breeze.",
    "Yesterday the neighbors painted their old fence green.",
    "Please remember to call your sister on the way home.",
    "Thank you for listening to this recording.",
    "Music makes a long drive feel much shorter.",
    "Every evening the children play football in the park.",
    "Our train to the city leaves early every morning.",
];

const PAUSE_SECONDS: f64 = 0.7;

pub struct Speech {
    pub webm: PathBuf,
    /// What was said, in order.
    pub text: String,
    /// When each sentence's first word starts, in ms.
    pub sentence_starts_ms: Vec<u64>,
    pub duration_ms: u64,
}

/// Reads a 16-bit mono PCM WAV as espeak-ng writes it: (rate, samples).
fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[0..4], b"RIFF");
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if &bytes[at..at + 4] == b"data" {
            let end = (at + 8 + size).min(bytes.len());
            let samples = bytes[at + 8..end].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
            return (rate, samples);
        }
        at += 8 + size + (size & 1);
    }
    panic!("no data chunk in {}", path.display());
}

fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    let data = (samples.len() * 2) as u32;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

/// Speaks `sentences` in order: each once, or (with `min_seconds` above 0)
/// as many as make that long, repeating the list,
/// into `dir/name.webm` (Opus, 48 kHz mono, as browsers record).
pub fn make(dir: &Path, name: &str, sentences: &[&str], min_seconds: f64) -> Speech {
    let mut pcm: Vec<i16> = Vec::new();
    let mut rate;
    let mut text = Vec::new();
    let mut starts = Vec::new();
    let mut spoken = std::collections::HashMap::new();
    let mut i = 0;
    loop {
        let sentence = sentences[i % sentences.len()];
        let (r, samples) = spoken
            .entry(sentence)
            .or_insert_with(|| {
                let wav = dir.join(format!("{name}-sentence-{}.wav", i % sentences.len()));
                let status = Command::new("espeak-ng").args(["-s", "160", "-w"]).arg(&wav).arg(sentence).status();
                assert!(status.is_ok_and(|s| s.success()), "espeak-ng runs (apt-get install espeak-ng)");
                read_wav(&wav)
            })
            .clone();
        rate = r;
        let pause = vec![0i16; (f64::from(rate) * PAUSE_SECONDS) as usize];
        let lead = samples.iter().position(|s| s.unsigned_abs() > 300).unwrap_or(0);
        starts.push(((pcm.len() + lead) as u64) * 1000 / u64::from(rate));
        pcm.extend_from_slice(&samples);
        pcm.extend_from_slice(&pause);
        text.push(sentence);
        i += 1;
        let long_enough = pcm.len() as f64 / f64::from(rate) >= min_seconds;
        // Without a length: every sentence once; with one: just that long.
        if long_enough && (min_seconds > 0.0 || i >= sentences.len()) {
            break;
        }
    }
    let wav = dir.join(format!("{name}.wav"));
    write_wav(&wav, rate, &pcm);
    let webm = dir.join(format!("{name}.webm"));
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-ar", "48000", "-ac", "1", "-c:a", "libopus", "-b:a", "48k"])
        .arg(&webm)
        .status();
    assert!(status.is_ok_and(|s| s.success()), "ffmpeg runs (apt-get install ffmpeg)");
    let _ = std::fs::remove_file(&wav);
    Speech {
        webm,
        text: text.join(" "),
        sentence_starts_ms: starts,
        duration_ms: pcm.len() as u64 * 1000 / u64::from(rate),
    }
}
