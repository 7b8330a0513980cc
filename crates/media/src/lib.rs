//! Container fixes for recorded audio.
//!
//! Browsers' MediaRecorder writes files players handle badly: WebM without a Duration, without
//! Cues and with unknown sizes (Chromium, Firefox); fragmented MP4 with zero durations, a
//! repeated `ftyp` and a stale copy of the last `moof` (WebKit, Safari's engine). The server
//! calls [`fix_recording`], which sniffs the container and rewrites the file, streaming,
//! without changing a byte of the audio:
//! - WebM ([`fix_webm`]): Duration, Cues, a SeekHead, and known sizes for the Segment and every
//!   Cluster.
//! - MP4 ([`fix_mp4`]): the real duration in `mvhd`, `tkhd`, `mdhd` and `mehd`, the duplicates
//!   dropped, a contiguous timeline from 0, a `sidx` index; optionally spans of media time cut
//!   out (WebKit's `pause()` does not pause the recording).
//! - a lossless take (declared `audio/wav`, checked header, 16-bit mono samples): the server
//!   calls [`fix_wav_file`], which writes it with `hound` with its real sizes and measures its
//!   waveform.
//! - anything else: no output; the caller stores the bytes as received.
//!
//! Every entry point takes any input: time is linear in its size, memory is bounded by what is
//! kept (about 32 to 40 bytes per cluster or fragment, with caps beyond which
//! [`MediaError::Limit`] is returned), nothing panics and no arithmetic wraps. The fuzz
//! targets in `fuzz/` and the corpus test in `tests/corpus.rs` hold the crate to that.
//!
//! # What players need (checked in this project's browsers)
//! - WebM in Chromium: a Duration gives a finite `duration`; Cues make a seek in a long take
//!   one range request (2-hour file: 56-75 MB read without them). Known cluster sizes silence
//!   ffmpeg's "Unknown-sized element inside parent with finite size".
//! - MP4 (WebKit's) in Chromium, Firefox and WebKitGTK: the duration in mvhd / mehd, no stale
//!   moof, and a sidx for Chromium; see [`fix_mp4`] for the measurements.

mod ebml;
#[doc(hidden)]
pub mod invariants;
mod mp4;
mod mp4_fix;
mod mp4_scan;
mod opus;
mod source;
mod wav;
mod webm_fix;
mod webm_scan;

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::ops::Range;
use std::path::Path;

pub use mp4_fix::{Mp4FixReport, fix_mp4, fix_mp4_file};
pub use opus::packet_duration_ns as opus_packet_duration_ns;
pub use wav::{WavReport, fix_wav, fix_wav_file};
pub use webm_fix::{FixReport, fix_webm, fix_webm_file};

/// The caps beyond which a fixer gives up with [`MediaError::Limit`].
pub mod limits {
    pub use crate::mp4::{MAX_MOOF_BYTES, MAX_MOOV_BYTES};
    pub use crate::mp4_scan::{MAX_CUTS, MAX_FRAGMENTS};
    pub use crate::webm_scan::{MAX_BLOCK_BYTES, MAX_KEPT_ITEMS, MAX_TRACKS};
}

/// What the container sniffing found in the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    WebM,
    Mp4,
    /// RIFF/WAVE: written by the server itself, nothing to fix here.
    Wav,
    Unknown,
}

/// Guesses the container from the first bytes: the EBML magic `1A 45 DF A3` means WebM
/// (Matroska), `ftyp` at offset 4 means MP4, `RIFF....WAVE` means WAV.
pub fn sniff(first_bytes: &[u8]) -> ContainerKind {
    if first_bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        ContainerKind::WebM
    } else if first_bytes.get(4..8) == Some(b"ftyp") {
        ContainerKind::Mp4
    } else if first_bytes.starts_with(b"RIFF") && first_bytes.get(8..12) == Some(b"WAVE") {
        ContainerKind::Wav
    } else {
        ContainerKind::Unknown
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Anything unexpected in the input: the caller then stores the input byte for byte.
    #[error("not a WebM file this can fix: {0}")]
    NotWebM(String),
    #[error("not an MP4 file this can fix: {0}")]
    NotMp4(String),
    /// A lossless take whose header or length is not what the wire allows.
    #[error("not a lossless WAV take: {0}")]
    NotWav(String),
    /// The input is larger or more fragmented than any recording (see [`limits`]); stored as
    /// received.
    #[error("input beyond the fixer's limits: {0}")]
    Limit(String),
}

/// What [`fix_recording`] should do besides fixing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixOptions {
    /// Spans of media time to remove, in ms from the first sample's start. Applied to MP4
    /// (WebKit records through a pause); ignored for WebM, whose recorders honour `pause()`.
    pub cut_ms: Vec<Range<u64>>,
}

/// What [`fix_recording`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixOutcome {
    pub kind: ContainerKind,
    /// Whether `output` was written; if not, store the input as received.
    pub written: bool,
    /// Duration of the stored audio (0 when unknown).
    pub duration_ms: u64,
    /// Bytes of what is to be stored: the output, or the input when nothing was written.
    pub size_bytes: u64,
    /// Media removed by [`FixOptions::cut_ms`].
    pub removed_ms: u64,
    /// A cut-off tail of an interrupted take that was dropped.
    pub dropped_tail_bytes: u64,
}

/// The one entry point for the server: sniffs `input` and writes the fixed file to `output`
/// (fsynced), or writes nothing for a container it does not fix (WAV, unknown). On an error
/// `output` does not exist and the input should be stored as received, with
/// [`probe_duration_ms`] as its duration. `input` and `output` must be different files.
pub fn fix_recording(input: &Path, output: &Path, options: &FixOptions) -> Result<FixOutcome, MediaError> {
    let kind = sniff(&read_prefix(input)?);
    let unchanged = |kind| -> Result<FixOutcome, MediaError> {
        let size_bytes = fs::metadata(input)?.len();
        Ok(FixOutcome { kind, written: false, duration_ms: 0, size_bytes, removed_ms: 0, dropped_tail_bytes: 0 })
    };
    match kind {
        ContainerKind::WebM => {
            let r = fix_webm_file(input, output)?;
            Ok(FixOutcome {
                kind,
                written: true,
                duration_ms: r.duration_ms,
                size_bytes: r.output_bytes,
                removed_ms: 0,
                dropped_tail_bytes: r.dropped_tail_bytes,
            })
        }
        ContainerKind::Mp4 => {
            let r = fix_mp4_file(input, output, &options.cut_ms)?;
            Ok(FixOutcome {
                kind,
                written: true,
                duration_ms: r.duration_ms,
                size_bytes: r.output_bytes,
                removed_ms: r.removed_ms,
                dropped_tail_bytes: r.dropped_tail_bytes,
            })
        }
        // Only a take declared `audio/wav` (the lossless path) is rewritten, by [`fix_wav_file`]:
        // WAV bytes under another declared type are kept as received.
        ContainerKind::Wav => unchanged(kind),
        ContainerKind::Unknown => unchanged(kind),
    }
}

/// Best-effort duration of a file stored as received after [`fix_recording`] failed: an MP4's
/// header or fragment durations; `None` for anything else.
pub fn probe_duration_ms(input: &Path) -> Option<u64> {
    match sniff(&read_prefix(input).ok()?) {
        ContainerKind::Mp4 => mp4_duration_ms(io::BufReader::new(File::open(input).ok()?)),
        _ => None,
    }
}

/// Duration in ms of an MP4 / M4A: for a fragmented MP4 the sum of the kept samples'
/// durations (as [`fix_mp4`] counts them: no stale `moof`, no cut-off tail); otherwise, or if
/// the fragments cannot be read, `mvhd`'s or `mehd`'s duration. `None` if the file does not
/// say (or is not an MP4).
pub fn mp4_duration_ms<R: Read + Seek>(input: R) -> Option<u64> {
    let mut src = source::SeekSource::new(input).ok()?;
    let len = src.len();
    if let Ok(scan) = mp4_scan::scan(&mut src, len, &[]) {
        return Some(mp4_fix::ms(scan.duration, scan.timescale())).filter(|&d| d > 0);
    }
    let moov = mp4_scan::find_moov(&mut src, len)?;
    let header = if moov.movie_duration > 0 { moov.movie_duration } else { moov.mehd?.0 };
    let ms = mp4_fix::ms(header, moov.movie_timescale);
    (header > 0 && header != u64::MAX && header != u64::from(u32::MAX)).then_some(ms)
}

/// One SimpleBlock / Block of a WebM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioBlock {
    pub track: u64,
    /// Absolute time (cluster timecode + block timecode) in ms, rounded.
    pub timestamp_ms: i64,
    /// The bytes after the block header (track number, timecode, flags). For a laced block
    /// this includes the lace sizes; MediaRecorder never laces.
    pub payload: Vec<u8>,
}

/// Every block of a declared track of a WebM file, in file order. Reads the input once, front
/// to back. A cut-off element at the end is ignored, as in [`fix_webm`]: only complete blocks
/// are returned. Holds every payload, so memory grows with the input: for checking files, not
/// for the server.
pub fn audio_blocks<R: Read>(input: R) -> Result<Vec<AudioBlock>, MediaError> {
    let mut src = source::StreamSource::new(input);
    let mut blocks = Vec::new();
    let scan = webm_scan::scan(&mut src, webm_scan::PayloadMode::Full, |b| {
        blocks.push((b.track, b.time, b.payload.to_vec()));
    })?;
    let scale = i128::from(scan.timecode_scale);
    Ok(blocks
        .into_iter()
        .map(|(track, time, payload)| AudioBlock {
            track: scan.tracks.get(track).map_or(0, |t| t.number),
            // Converted here, once Info has surely been read.
            timestamp_ms: (i128::from(time).saturating_mul(scale).saturating_add(500_000).div_euclid(1_000_000))
                .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64,
            payload,
        })
        .collect())
}

/// Runs `fix` from `input` to a new `output` file, fsyncs it, removes it on error.
fn fix_file<T>(
    input: &Path,
    output: &Path,
    fix: impl FnOnce(File, &mut File) -> Result<T, MediaError>,
) -> Result<T, MediaError> {
    if output.exists() && fs::canonicalize(input)? == fs::canonicalize(output)? {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "input and output are the same file").into());
    }
    let input = File::open(input)?;
    let mut out = File::create(output)?;
    let result = fix(input, &mut out).and_then(|report| {
        out.sync_all()?;
        Ok(report)
    });
    if result.is_err() {
        drop(out);
        let _ = fs::remove_file(output);
    }
    result
}

/// The first bytes of a file, enough for [`sniff`].
fn read_prefix(path: &Path) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(16);
    File::open(path)?.take(16).read_to_end(&mut head)?;
    Ok(head)
}

/// Counts what goes through, so a fixer can check its output against its plan.
struct CountingWriter<W: Write> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]), ContainerKind::WebM);
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A \0\0\0\0"), ContainerKind::Mp4);
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), ContainerKind::Wav);
        assert_eq!(sniff(b"RIFF....AVI "), ContainerKind::Unknown);
        assert_eq!(sniff(&[]), ContainerKind::Unknown);
    }
}
