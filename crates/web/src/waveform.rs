//! Waveform peaks: collected while recording (one level reading every
//! 100 ms, 0–255), sent with each chunk, drawn live while recording and as
//! bars on `/records`.
//!
//! Pure Rust, so its tests run natively.

/// Most peaks one `append-recording` chunk may carry (the server's limit).
pub const MAX_PEAKS_PER_CHUNK: usize = 256;

/// Level readings of the chunk being recorded, handed over with the chunk.
#[derive(Debug, Default)]
pub struct PeakCollector {
    current: Vec<u8>,
}

impl PeakCollector {
    /// Records one input level reading, `level` in 0..=1.
    pub fn push_level(&mut self, level: f64) {
        self.current.push(level_to_peak(level));
    }

    /// The readings since the last call, for the chunk that just arrived, at
    /// most [`MAX_PEAKS_PER_CHUNK`] (more are merged by keeping maxima, so a
    /// throttled or long chunk keeps its shape).
    pub fn take_for_chunk(&mut self) -> Vec<u8> {
        let peaks = std::mem::take(&mut self.current);
        if peaks.len() <= MAX_PEAKS_PER_CHUNK { peaks } else { downsample(&peaks, MAX_PEAKS_PER_CHUNK) }
    }
}

/// 0..=1 to 0..=255, rounded; out-of-range and NaN readings are clamped.
pub fn level_to_peak(level: f64) -> u8 {
    if level.is_nan() {
        return 0;
    }
    (level.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// At most `max` bars from `peaks`, each the maximum of its share of the
/// peaks (fewer peaks than `max` are returned as they are).
pub fn downsample(peaks: &[u8], max: usize) -> Vec<u8> {
    if max == 0 {
        return Vec::new();
    }
    if peaks.len() <= max {
        return peaks.to_vec();
    }
    (0..max)
        .map(|i| {
            let start = i * peaks.len() / max;
            let end = ((i + 1) * peaks.len() / max).max(start + 1);
            peaks[start..end].iter().copied().max().unwrap_or(0)
        })
        .collect()
}

/// Where the bar of `peak` starts and how tall it is, in a box 100 high,
/// centred on the middle line; silence still shows a thin bar. The one
/// geometry of the playback waveform (SVG) and the live one (canvas).
pub fn bar_span(peak: u8) -> (f64, f64) {
    let height = (f64::from(peak) / 255.0 * 96.0).max(4.0);
    (50.0 - height / 2.0, height)
}

/// An SVG path of one bar per peak, bar `i` at x = `first + i` in a box one
/// unit wide per bar and 100 high (see [`bar_span`]).
pub fn bars_path(bars: &[u8], first: usize) -> String {
    use std::fmt::Write;
    let mut d = String::with_capacity(bars.len() * 24);
    for (i, &peak) in bars.iter().enumerate() {
        let (top, height) = bar_span(peak);
        let _ = write!(d, "M{:.2} {top:.1}h0.7v{height:.1}h-0.7z", (first + i) as f64 + 0.15);
    }
    d
}

/// The latest peaks of the take being recorded, for the live waveform (the
/// same readings [`PeakCollector`] hands over with each chunk).
#[derive(Debug, Default)]
pub struct LivePeaks {
    peaks: std::collections::VecDeque<u8>,
    count: u64,
}

impl LivePeaks {
    /// Peaks kept: a minute, more than the widest waveform shows.
    pub const KEEP: usize = 600;

    pub fn push_level(&mut self, level: f64) {
        if self.peaks.len() == Self::KEEP {
            self.peaks.pop_front();
        }
        self.peaks.push_back(level_to_peak(level));
        self.count += 1;
    }

    pub fn clear(&mut self) {
        self.peaks.clear();
        self.count = 0;
    }

    /// Readings pushed since the last clear (changes with every push).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The kept peaks, newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = u8> + '_ {
        self.peaks.iter().rev().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_become_bytes() {
        assert_eq!(level_to_peak(0.0), 0);
        assert_eq!(level_to_peak(1.0), 255);
        assert_eq!(level_to_peak(0.5), 128);
        assert_eq!(level_to_peak(7.0), 255);
        assert_eq!(level_to_peak(-1.0), 0);
        assert_eq!(level_to_peak(f64::NAN), 0);
    }

    #[test]
    fn each_chunk_takes_the_readings_since_the_last() {
        let mut c = PeakCollector::default();
        for l in [0.0, 0.5, 1.0] {
            c.push_level(l);
        }
        assert_eq!(c.take_for_chunk(), [0, 128, 255]);
        assert_eq!(c.take_for_chunk(), Vec::<u8>::new());
        for _ in 0..1000 {
            c.push_level(0.1);
        }
        c.push_level(1.0);
        let many = c.take_for_chunk();
        assert_eq!(many.len(), MAX_PEAKS_PER_CHUNK);
        assert_eq!(many.last(), Some(&255), "a loud reading survives the merge");
    }

    #[test]
    fn downsampling_keeps_maxima_and_length() {
        assert_eq!(downsample(&[1, 2, 3], 10), [1, 2, 3]);
        assert_eq!(downsample(&[1, 9, 3, 4, 5, 2], 3), [9, 4, 5]);
        assert_eq!(downsample(&[5; 1001], 160).len(), 160);
        assert!(downsample(&[1, 2], 0).is_empty());
    }

    #[test]
    fn live_peaks_keep_the_latest_minute_newest_first() {
        let mut live = LivePeaks::default();
        for i in 0..(LivePeaks::KEEP + 5) {
            live.push_level(if i % 2 == 0 { 0.0 } else { 1.0 });
        }
        assert_eq!(live.count(), (LivePeaks::KEEP + 5) as u64);
        assert_eq!(live.newest_first().count(), LivePeaks::KEEP);
        assert_eq!(live.newest_first().take(2).collect::<Vec<_>>(), [0, 255]);
        live.clear();
        assert_eq!((live.count(), live.newest_first().count()), (0, 0));
    }

    #[test]
    fn bars_are_centred_and_never_vanish() {
        assert_eq!(bar_span(0), (48.0, 4.0));
        assert_eq!(bar_span(255), (2.0, 96.0));
    }

    #[test]
    fn the_path_has_one_bar_per_peak() {
        let d = bars_path(&[0, 255], 0);
        assert_eq!(d.matches('M').count(), 2);
        assert!(d.starts_with("M0.15 48.0h0.7v4.0"), "{d}");
        assert!(d.contains("M1.15 2.0h0.7v96.0"), "{d}");
        assert!(bars_path(&[], 3).is_empty());
        assert!(bars_path(&[10], 3).starts_with("M3.15 "));
    }
}
