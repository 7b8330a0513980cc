//! The lossless take on the wire: a take declared `audio/wav` carries 16-bit
//! little-endian mono PCM. Chunk 0 starts with the 44-byte header of
//! [`stream_header`] (RIFF/WAVE, a 16-byte PCM `fmt ` chunk, then `data`);
//! every byte after it, in every chunk, is samples, so each chunk's sample
//! bytes are a multiple of 2. The size fields of that header are unknown
//! while recording: clients write `0xFFFFFFFF` (a streaming WAV) and the
//! server ignores them, rewriting the sizes from what it received.
//!
//! Shared by the web app (which writes the header) and the server (which
//! checks it with [`parse_header`] before acknowledging chunk 0).

/// The declared type that selects the lossless path.
pub const MIME_TYPE: &str = "audio/wav";

/// Bytes of the canonical header.
pub const HEADER_BYTES: usize = 44;

/// Sample rates a lossless take may declare, in Hz: telephone quality up to
/// studio rates. Anything else is refused.
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;

/// The one sample layout accepted: 16-bit signed integers, one channel.
pub const BITS_PER_SAMPLE: u16 = 16;
pub const CHANNELS: u16 = 1;

/// Sample bytes per second at `sample_rate`.
pub fn bytes_per_second(sample_rate: u32) -> u64 {
    u64::from(sample_rate) * u64::from(BITS_PER_SAMPLE / 8) * u64::from(CHANNELS)
}

/// The header of chunk 0 for a take recorded at `sample_rate`, with the
/// streaming sizes (`0xFFFFFFFF`).
pub fn stream_header(sample_rate: u32) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    let byte_rate = sample_rate.wrapping_mul(2);
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // WAVE_FORMAT_PCM
    h[22..24].copy_from_slice(&CHANNELS.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&(CHANNELS * BITS_PER_SAMPLE / 8).to_le_bytes());
    h[34..36].copy_from_slice(&BITS_PER_SAMPLE.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
    h
}

/// Why a lossless chunk was refused, in words a client developer can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    TooShort(usize),
    NotRiffWave,
    /// Not a 16-byte PCM `fmt ` chunk right after `WAVE`.
    NotPcm,
    Channels(u16),
    Bits(u16),
    SampleRate(u32),
    /// `byte_rate` or `block_align` disagree with the rate and layout.
    Inconsistent,
    /// The `data` chunk does not follow `fmt ` at offset 36.
    NoData,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (lo, hi) = (SAMPLE_RATES.start(), SAMPLE_RATES.end());
        match self {
            HeaderError::TooShort(n) => {
                write!(
                    f,
                    "chunk 0 of an audio/wav take must start with a {HEADER_BYTES}-byte WAV header; it has {n} bytes"
                )
            }
            HeaderError::NotRiffWave => write!(f, "chunk 0 of an audio/wav take must start with RIFF....WAVE"),
            HeaderError::NotPcm => {
                write!(f, "the WAV header must have a 16-byte PCM (format 1) fmt chunk right after WAVE")
            }
            HeaderError::Channels(n) => write!(f, "only mono is accepted; the WAV header says {n} channels"),
            HeaderError::Bits(n) => write!(f, "only 16-bit samples are accepted; the WAV header says {n} bits"),
            HeaderError::SampleRate(r) => {
                write!(f, "the sample rate must be from {lo} to {hi} Hz; the WAV header says {r}")
            }
            HeaderError::Inconsistent => {
                write!(f, "the WAV header's byte rate or block alignment disagrees with its sample rate")
            }
            HeaderError::NoData => write!(f, "the WAV header's data chunk must follow the fmt chunk at byte 36"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// The sample rate of a lossless take from the start of its chunk 0, after
/// checking that the header is exactly the canonical one (sizes aside).
pub fn parse_header(bytes: &[u8]) -> Result<u32, HeaderError> {
    let h = bytes.get(..HEADER_BYTES).ok_or(HeaderError::TooShort(bytes.len()))?;
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if &h[0..4] != b"RIFF" || &h[8..12] != b"WAVE" {
        return Err(HeaderError::NotRiffWave);
    }
    if &h[12..16] != b"fmt " || u32_at(16) != 16 || u16_at(20) != 1 {
        return Err(HeaderError::NotPcm);
    }
    let (channels, rate, byte_rate, align, bits) = (u16_at(22), u32_at(24), u32_at(28), u16_at(32), u16_at(34));
    if channels != CHANNELS {
        return Err(HeaderError::Channels(channels));
    }
    if bits != BITS_PER_SAMPLE {
        return Err(HeaderError::Bits(bits));
    }
    if !SAMPLE_RATES.contains(&rate) {
        return Err(HeaderError::SampleRate(rate));
    }
    if u64::from(byte_rate) != bytes_per_second(rate) || align != 2 {
        return Err(HeaderError::Inconsistent);
    }
    if &h[36..40] != b"data" {
        return Err(HeaderError::NoData);
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_header_parses_back() {
        for rate in [8_000, 44_100, 48_000, 192_000] {
            assert_eq!(parse_header(&stream_header(rate)), Ok(rate));
        }
        let mut with_samples = stream_header(48_000).to_vec();
        with_samples.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(parse_header(&with_samples), Ok(48_000));
    }

    #[test]
    fn every_lie_is_named() {
        let patched = |at: usize, bytes: &[u8]| {
            let mut h = stream_header(48_000);
            h[at..at + bytes.len()].copy_from_slice(bytes);
            parse_header(&h)
        };
        assert_eq!(parse_header(&stream_header(48_000)[..43]), Err(HeaderError::TooShort(43)));
        assert_eq!(parse_header(b""), Err(HeaderError::TooShort(0)));
        assert_eq!(patched(0, b"RIFX"), Err(HeaderError::NotRiffWave));
        assert_eq!(patched(8, b"AVI "), Err(HeaderError::NotRiffWave));
        assert_eq!(patched(16, &18u32.to_le_bytes()), Err(HeaderError::NotPcm));
        assert_eq!(patched(20, &3u16.to_le_bytes()), Err(HeaderError::NotPcm), "float");
        assert_eq!(patched(20, &0xFFFEu16.to_le_bytes()), Err(HeaderError::NotPcm), "extensible");
        assert_eq!(patched(22, &2u16.to_le_bytes()), Err(HeaderError::Channels(2)));
        assert_eq!(patched(34, &24u16.to_le_bytes()), Err(HeaderError::Bits(24)));
        assert_eq!(patched(24, &7_999u32.to_le_bytes()), Err(HeaderError::SampleRate(7_999)));
        assert_eq!(patched(24, &u32::MAX.to_le_bytes()), Err(HeaderError::SampleRate(u32::MAX)));
        assert_eq!(patched(24, &0u32.to_le_bytes()), Err(HeaderError::SampleRate(0)));
        assert_eq!(patched(28, &1u32.to_le_bytes()), Err(HeaderError::Inconsistent));
        assert_eq!(patched(32, &4u16.to_le_bytes()), Err(HeaderError::Inconsistent));
        assert_eq!(patched(36, b"LIST"), Err(HeaderError::NoData));
        // Sizes are not checked: a client cannot know them while recording.
        assert_eq!(patched(40, &12u32.to_le_bytes()), Ok(48_000));
        assert_eq!(patched(4, &0u32.to_le_bytes()), Ok(48_000));
    }

    #[test]
    fn data_rate() {
        // About 5.76 MB a minute at 48 kHz.
        assert_eq!(bytes_per_second(48_000) * 60, 5_760_000);
    }
}
