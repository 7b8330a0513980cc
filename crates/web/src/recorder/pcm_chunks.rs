//! The lossless take's chunks: 16-bit mono samples from the capture worklet
//! (see [`super::pcm`]), each block tagged with the audio context's frame of
//! its first sample, cut at the frame where the person stopped (however late
//! the worklet hears of it), and batched into chunks of about a second, chunk 0 starting with
//! the WAV header of [`audiobook_wire::lossless`]. Every chunk holds whole
//! samples, as the server requires.
//!
//! Pure Rust, so its tests run natively.

use audiobook_wire::lossless;

/// Chunks of this much audio, like MediaRecorder's timeslice.
pub const CHUNK_MS: u64 = 1000;

#[derive(Debug)]
pub struct PcmChunker {
    sample_rate: u32,
    chunk_bytes: usize,
    pending: Vec<u8>,
    /// Chunk 0 (with the header) was handed out.
    started: bool,
    /// Stopped at this frame: nothing from it on is kept.
    stop_at: Option<u64>,
}

impl PcmChunker {
    pub fn new(sample_rate: u32) -> PcmChunker {
        let chunk_bytes = (lossless::bytes_per_second(sample_rate) * CHUNK_MS / 1000) as usize & !1;
        PcmChunker { sample_rate, chunk_bytes: chunk_bytes.max(2), pending: Vec::new(), started: false, stop_at: None }
    }

    /// The person stopped at context frame `frame`.
    pub fn stop_at(&mut self, frame: u64) {
        if self.stop_at.is_none() {
            self.stop_at = Some(frame);
        }
    }

    /// Adds the block of samples whose first one is at context frame
    /// `first_frame`, keeping only the samples before the stop, and returns
    /// the chunks now complete.
    pub fn push_at(&mut self, first_frame: u64, samples: &[u8]) -> Vec<Vec<u8>> {
        let keep = match self.stop_at {
            Some(at) => (at.saturating_sub(first_frame) as usize).min(samples.len() / 2) * 2,
            None => samples.len() & !1,
        };
        let kept = samples[..keep].to_vec();
        self.push(&kept)
    }

    /// Adds samples (little-endian, whole samples) and returns the chunks now complete.
    pub fn push(&mut self, samples: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(samples);
        let mut full = Vec::new();
        while self.pending.len() >= self.chunk_bytes {
            let rest = self.pending.split_off(self.chunk_bytes);
            let chunk = std::mem::replace(&mut self.pending, rest);
            full.push(self.framed(chunk));
        }
        full
    }

    /// What is held now, as a (shorter) chunk: when the page is hidden, so a
    /// page killed then loses nothing it had captured. `None` if nothing is held.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            return None;
        }
        let held = std::mem::take(&mut self.pending);
        Some(self.framed(held))
    }

    /// The last chunk at the end of the take: what is held, or the header
    /// alone if the take never had a chunk (so the server knows the rate).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if !self.started {
            let held = std::mem::take(&mut self.pending);
            return Some(self.framed(held));
        }
        self.flush()
    }

    fn framed(&mut self, samples: Vec<u8>) -> Vec<u8> {
        if self.started {
            return samples;
        }
        self.started = true;
        let mut chunk = Vec::with_capacity(lossless::HEADER_BYTES + samples.len());
        chunk.extend_from_slice(&lossless::stream_header(self.sample_rate));
        chunk.extend_from_slice(&samples);
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_of_a_second_with_the_header_first() {
        let mut c = PcmChunker::new(48_000);
        assert!(c.push(&[0; 8192]).is_empty());
        let block = vec![1u8; 8192];
        let mut chunks = Vec::new();
        for _ in 0..30 {
            chunks.extend(c.push(&block));
        }
        assert_eq!(chunks.len(), 2, "{} bytes", 8192 * 31);
        assert_eq!(lossless::parse_header(&chunks[0]), Ok(48_000));
        assert_eq!(chunks[0].len(), 44 + 96_000);
        assert_eq!(chunks[1].len(), 96_000);
        let last = c.finish().unwrap();
        assert_eq!(last.len(), 8192 * 31 - 2 * 96_000);
        assert!(c.finish().is_none());
        assert!(chunks.iter().chain([&last]).all(|c| c.len() % 2 == 0));
    }

    #[test]
    fn the_stop_is_cut_at_its_frame() {
        let mut c = PcmChunker::new(8_000);
        let block = |n: usize| vec![1u8; n * 2];
        assert!(c.push_at(0, &block(100)).is_empty());
        // Told before the worklet's last blocks came.
        c.stop_at(150);
        assert!(c.push_at(100, &block(100)).is_empty());
        assert!(c.push_at(200, &block(100)).is_empty());
        assert_eq!(c.finish().unwrap().len(), 44 + 150 * 2);
    }

    #[test]
    fn an_empty_take_still_sends_its_header() {
        let mut c = PcmChunker::new(44_100);
        assert!(c.flush().is_none());
        assert_eq!(c.finish().unwrap(), lossless::stream_header(44_100));
        assert!(c.finish().is_none());
    }

    #[test]
    fn a_flush_hands_over_what_is_held() {
        let mut c = PcmChunker::new(16_000);
        c.push(&[5; 100]);
        assert_eq!(c.flush().unwrap().len(), 144);
        c.push(&[6; 10]);
        assert_eq!(c.flush().unwrap(), [6; 10]);
    }
}
