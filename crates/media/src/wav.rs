//! The WAV of a lossless take, written with `hound` from what the server
//! received: the canonical header of chunk 0 (see
//! [`audiobook_wire::lossless`]) followed by 16-bit mono samples.
//!
//! The client cannot know the sizes while it records, so the header it sent
//! carries placeholders; this rewrites the file with the sizes of the
//! samples actually received (a cut-off half sample at the end of an
//! interrupted take is dropped), which is also how a take interrupted by a
//! crash becomes a valid WAV of every acknowledged sample. One pass, blocks
//! of [`BLOCK_BYTES`]: memory does not grow with the take. The same pass
//! measures the waveform peaks from the samples, on the scale of the web
//! app's level meter.

use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::Path;

use audiobook_wire::lossless;

use crate::MediaError;

/// Peaks per second of audio, as the web app's meter takes them (every 100 ms).
pub const PEAKS_PER_SECOND: u64 = 10;
/// Most peaks kept for one take (the server stores at most 100 kB of them);
/// a longer take gets wider windows.
pub const MAX_PEAKS: u64 = 100_000;
/// Samples are read and written in blocks of this many bytes.
pub const BLOCK_BYTES: usize = 256 * 1024;
/// Most sample bytes a WAV can hold (its sizes are 32-bit).
pub const MAX_DATA_BYTES: u64 = (u32::MAX - 36) as u64 & !1;

/// What [`fix_wav`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavReport {
    pub sample_rate: u32,
    pub samples: u64,
    /// From the sample count, rounded to the nearest ms.
    pub duration_ms: u64,
    pub output_bytes: u64,
    /// A cut-off half sample at the end (an interrupted take).
    pub dropped_tail_bytes: u64,
    /// Level peaks (0–255) of consecutive windows of the samples.
    pub peaks: Vec<u8>,
}

/// Rewrites the received lossless take `input` (`input_len` bytes: header
/// and samples) as a WAV with exact sizes into `output`.
pub fn fix_wav<R: Read, W: Write + Seek>(mut input: R, input_len: u64, output: W) -> Result<WavReport, MediaError> {
    let mut header = [0u8; lossless::HEADER_BYTES];
    input.read_exact(&mut header).map_err(|_| MediaError::NotWav(format!("{input_len} bytes: no complete header")))?;
    let sample_rate = lossless::parse_header(&header).map_err(|e| MediaError::NotWav(e.to_string()))?;
    let data_bytes = input_len.saturating_sub(lossless::HEADER_BYTES as u64);
    let kept_bytes = data_bytes & !1;
    if kept_bytes > MAX_DATA_BYTES {
        return Err(MediaError::Limit(format!("{kept_bytes} bytes of samples: more than a WAV holds")));
    }
    let samples = kept_bytes / 2;
    let spec = hound::WavSpec {
        channels: lossless::CHANNELS,
        sample_rate,
        bits_per_sample: lossless::BITS_PER_SAMPLE,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::new(output, spec).map_err(hound_error)?;
    let window = (u64::from(sample_rate) / PEAKS_PER_SECOND).max(samples.div_ceil(MAX_PEAKS)).max(1);
    let mut peaks = PeakMeter::new(window);
    let mut buf = vec![0u8; BLOCK_BYTES];
    let mut left = kept_bytes;
    while left > 0 {
        let n = (left.min(BLOCK_BYTES as u64)) as usize;
        input.read_exact(&mut buf[..n]).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => MediaError::NotWav("the file is shorter than its length".into()),
            _ => MediaError::Io(e),
        })?;
        let mut block = writer.get_i16_writer((n / 2) as u32);
        for pair in buf[..n].chunks_exact(2) {
            let sample = i16::from_le_bytes([pair[0], pair[1]]);
            block.write_sample(sample);
            peaks.push(sample);
        }
        block.flush().map_err(hound_error)?;
        left -= n as u64;
    }
    writer.finalize().map_err(hound_error)?;
    let rate = u64::from(sample_rate);
    Ok(WavReport {
        sample_rate,
        samples,
        duration_ms: (samples * 1000 + rate / 2) / rate,
        output_bytes: lossless::HEADER_BYTES as u64 + kept_bytes,
        dropped_tail_bytes: data_bytes - kept_bytes,
        peaks: peaks.finish(),
    })
}

/// [`fix_wav`] from file to file; `output` is fsynced, and removed on error.
pub fn fix_wav_file(input: &Path, output: &Path) -> Result<WavReport, MediaError> {
    let len = std::fs::metadata(input)?.len();
    crate::fix_file(input, output, |input, out| {
        fix_wav(io::BufReader::with_capacity(BLOCK_BYTES, input), len, BufWriter::with_capacity(BLOCK_BYTES, out))
    })
}

fn hound_error(e: hound::Error) -> MediaError {
    match e {
        hound::Error::IoError(e) => MediaError::Io(e),
        other => MediaError::NotWav(other.to_string()),
    }
}

/// Levels of consecutive windows of samples: the mean square on a decibel
/// scale from -60 dB (0) to full scale (255), as the web app's meter.
struct PeakMeter {
    window: u64,
    count: u64,
    sum_squares: f64,
    peaks: Vec<u8>,
}

impl PeakMeter {
    fn new(window: u64) -> PeakMeter {
        PeakMeter { window, count: 0, sum_squares: 0.0, peaks: Vec::new() }
    }

    #[inline]
    fn push(&mut self, sample: i16) {
        let s = f64::from(sample) / 32768.0;
        self.sum_squares += s * s;
        self.count += 1;
        if self.count == self.window {
            self.close();
        }
    }

    fn close(&mut self) {
        if self.count == 0 {
            return;
        }
        let mean_square = self.sum_squares / self.count as f64;
        let db = 10.0 * mean_square.max(1e-12).log10();
        let level = ((db + 60.0) / 60.0).clamp(0.0, 1.0);
        self.peaks.push((level * 255.0).round() as u8);
        self.count = 0;
        self.sum_squares = 0.0;
    }

    fn finish(mut self) -> Vec<u8> {
        self.close();
        self.peaks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn take(rate: u32, samples: &[i16], extra: &[u8]) -> Vec<u8> {
        let mut bytes = lossless::stream_header(rate).to_vec();
        for s in samples {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        bytes.extend_from_slice(extra);
        bytes
    }

    fn fix(bytes: &[u8]) -> Result<(WavReport, Vec<u8>), MediaError> {
        let mut out = Cursor::new(Vec::new());
        let report = fix_wav(Cursor::new(bytes), bytes.len() as u64, &mut out)?;
        Ok((report, out.into_inner()))
    }

    #[test]
    fn sizes_and_duration_come_from_the_samples() {
        let samples: Vec<i16> = (0..48_000 * 3 / 2).map(|i| ((i % 100) * 300 - 15_000) as i16).collect();
        let (report, out) = fix(&take(48_000, &samples, &[])).unwrap();
        assert_eq!((report.samples, report.duration_ms, report.dropped_tail_bytes), (72_000, 1500, 0));
        assert_eq!(report.output_bytes, out.len() as u64);
        assert_eq!(report.peaks.len(), 15, "ten a second");
        let reader = hound::WavReader::new(Cursor::new(&out)).unwrap();
        assert_eq!(reader.spec().sample_rate, 48_000);
        assert_eq!(reader.duration(), 72_000);
        let read: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
        assert_eq!(read, samples, "every sample byte for byte");
        assert_eq!(&out[4..8], &(out.len() as u32 - 8).to_le_bytes());
        assert_eq!(&out[40..44], &144_000u32.to_le_bytes());
    }

    #[test]
    fn a_cut_off_half_sample_is_dropped() {
        let (report, out) = fix(&take(44_100, &[1, 2, 3], &[9])).unwrap();
        assert_eq!((report.samples, report.dropped_tail_bytes), (3, 1));
        assert_eq!(hound::WavReader::new(Cursor::new(&out)).unwrap().duration(), 3);
    }

    #[test]
    fn a_header_alone_is_an_empty_wav() {
        let (report, out) = fix(&take(16_000, &[], &[])).unwrap();
        assert_eq!((report.samples, report.duration_ms, out.len()), (0, 0, 44));
        assert!(report.peaks.is_empty());
        assert_eq!(hound::WavReader::new(Cursor::new(&out)).unwrap().duration(), 0);
    }

    #[test]
    fn peaks_follow_the_level() {
        let mut samples = vec![0i16; 4_800];
        samples.extend(std::iter::repeat_n(i16::MAX, 4_800));
        let (report, _) = fix(&take(48_000, &samples, &[])).unwrap();
        assert_eq!(report.peaks, [0, 255]);
    }

    #[test]
    fn hostile_headers_are_refused() {
        assert!(matches!(fix(b"RIFF"), Err(MediaError::NotWav(_))));
        let mut stereo = take(48_000, &[0; 4], &[]);
        stereo[22] = 2;
        assert!(matches!(fix(&stereo), Err(MediaError::NotWav(e)) if e.contains("mono")));
        let mut absurd = take(48_000, &[0; 4], &[]);
        absurd[24..28].copy_from_slice(&4_000_000_000u32.to_le_bytes());
        assert!(matches!(fix(&absurd), Err(MediaError::NotWav(e)) if e.contains("sample rate")));
    }

    #[test]
    fn a_length_that_lies_is_an_error_not_a_panic() {
        let bytes = take(48_000, &[1, 2], &[]);
        let mut out = Cursor::new(Vec::new());
        let told = bytes.len() as u64 + 1000;
        assert!(matches!(fix_wav(Cursor::new(&bytes), told, &mut out), Err(MediaError::NotWav(_))));
        let mut out = Cursor::new(Vec::new());
        assert!(matches!(fix_wav(Cursor::new(&bytes), u64::MAX, &mut out), Err(MediaError::Limit(_))));
    }
}
