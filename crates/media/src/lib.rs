//! Container fixes for recorded audio.
//!
//! Browsers' MediaRecorder writes WebM without a Duration and without Cues (players show an
//! infinite duration and seek by reading up to the target). [`fix_webm`] rewrites such a file
//! with both, streaming, without changing a byte of the audio blocks. [`mp4_duration_ms`]
//! reads the duration of Safari's MP4 recordings, which need no fix.

mod ebml;
mod fix;
mod mp4;
mod opus;
mod scan;

use std::io::Read;

pub use fix::{FixReport, fix_webm, fix_webm_file};
pub use mp4::mp4_duration_ms;
pub use opus::packet_duration_ns as opus_packet_duration_ns;

/// What the container sniffing found in the first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    WebM,
    Mp4,
    Unknown,
}

/// Guesses the container from the first bytes: the EBML magic `1A 45 DF A3` means WebM
/// (Matroska), `ftyp` at offset 4 means MP4.
pub fn sniff(first_bytes: &[u8]) -> ContainerKind {
    if first_bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        ContainerKind::WebM
    } else if first_bytes.get(4..8) == Some(b"ftyp") {
        ContainerKind::Mp4
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

/// Every block of a WebM file, in file order. Reads the input once, front to back. A cut-off
/// element at the end is ignored, as in [`fix_webm`]: only complete blocks are returned.
pub fn audio_blocks<R: Read>(input: R) -> Result<Vec<AudioBlock>, MediaError> {
    let mut src = ebml::StreamSource::new(input);
    let mut blocks = Vec::new();
    let scan = scan::scan(&mut src, scan::PayloadMode::Full, |b| {
        blocks.push(AudioBlock {
            track: b.track,
            // Still in TimecodeScale units: converted below, once Info has surely been read.
            timestamp_ms: b.time,
            payload: b.payload,
        })
    })?;
    let scale = scan.timecode_scale as i128;
    for b in &mut blocks {
        b.timestamp_ms = (b.timestamp_ms as i128 * scale + 500_000).div_euclid(1_000_000) as i64;
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]), ContainerKind::WebM);
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A \0\0\0\0"), ContainerKind::Mp4);
        assert_eq!(sniff(b"RIFF....WAVE"), ContainerKind::Unknown);
        assert_eq!(sniff(&[]), ContainerKind::Unknown);
    }
}
