//! The lossless take's chunks: 16-bit mono samples from the capture worklet
//! (see [`super::pcm`]), each block tagged with the audio context's frame of
//! its first sample, cut at the frames where the person paused, resumed and
//! stopped (so no sample of a pause is kept, however late the worklet hears
//! of it), and batched into chunks of about a second, chunk 0 starting with
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
    /// Frames not to keep: closed pauses `[from, to)`, in order.
    gaps: std::collections::VecDeque<(u64, u64)>,
    /// Paused since this frame.
    paused_from: Option<u64>,
    /// Stopped at this frame: nothing from it on is kept.
    stop_at: Option<u64>,
}

impl PcmChunker {
    pub fn new(sample_rate: u32) -> PcmChunker {
        let chunk_bytes = (lossless::bytes_per_second(sample_rate) * CHUNK_MS / 1000) as usize & !1;
        PcmChunker {
            sample_rate,
            chunk_bytes: chunk_bytes.max(2),
            pending: Vec::new(),
            started: false,
            gaps: Default::default(),
            paused_from: None,
            stop_at: None,
        }
    }

    /// The person paused at context frame `frame`.
    pub fn pause_at(&mut self, frame: u64) {
        if self.paused_from.is_none() && self.stop_at.is_none() {
            self.paused_from = Some(frame);
        }
    }

    /// The person resumed at context frame `frame`.
    pub fn resume_at(&mut self, frame: u64) {
        if let Some(from) = self.paused_from.take() {
            self.gaps.push_back((from, frame.max(from)));
        }
    }

    /// The person stopped at context frame `frame`.
    pub fn stop_at(&mut self, frame: u64) {
        if self.stop_at.is_none() {
            self.stop_at = Some(self.paused_from.map_or(frame, |p| p.min(frame)));
        }
    }

    /// Adds the block of samples whose first one is at context frame
    /// `first_frame`, keeping only the samples recorded (not paused, not
    /// after the stop), and returns the chunks now complete.
    pub fn push_at(&mut self, first_frame: u64, samples: &[u8]) -> Vec<Vec<u8>> {
        let mut kept = Vec::with_capacity(samples.len());
        for (i, sample) in samples.chunks_exact(2).enumerate() {
            let frame = first_frame + i as u64;
            while self.gaps.front().is_some_and(|&(_, to)| to <= frame) {
                self.gaps.pop_front();
            }
            let in_gap = self.gaps.front().is_some_and(|&(from, _)| from <= frame);
            let paused = self.paused_from.is_some_and(|from| from <= frame);
            let stopped = self.stop_at.is_some_and(|at| at <= frame);
            if !(in_gap || paused || stopped) {
                kept.extend_from_slice(sample);
            }
        }
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
    fn pauses_and_the_stop_are_cut_at_their_frames() {
        let mut c = PcmChunker::new(8_000);
        let block = |n: usize| vec![1u8; n * 2];
        // Frames 0..100 kept; paused from 60 to 80 (told late: after the block came).
        assert!(c.push_at(0, &block(100)).is_empty());
        c.pause_at(160);
        c.resume_at(180);
        assert!(c.push_at(100, &block(100)).is_empty()); // 100..200: 80 kept
        c.stop_at(250);
        assert!(c.push_at(200, &block(100)).is_empty()); // 200..300: 50 kept
        let last = c.finish().unwrap();
        assert_eq!(last.len(), 44 + (100 + 80 + 50) * 2);
    }

    #[test]
    fn a_stop_while_paused_cuts_at_the_pause() {
        let mut c = PcmChunker::new(8_000);
        c.pause_at(50);
        c.stop_at(90);
        c.push_at(0, &vec![1u8; 200]);
        assert_eq!(c.finish().unwrap().len(), 44 + 50 * 2);
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
