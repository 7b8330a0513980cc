//! The length the player goes by, and where a skip lands.
//!
//! A browser's `<audio>.duration` is not always the take's length: it is NaN
//! before the metadata loads, Infinity for a WebM without a Duration, and
//! WebKit reports only the part loaded so far for a fragmented MP4 whose
//! headers say 0. The server measured the take (`duration_ms`), so the
//! player uses the larger of the two.
//!
//! Pure Rust, so its tests run natively.

/// The take's length in seconds: the browser's `duration` when it is finite
/// and at least the server's `duration_ms`, else the server's (0 when
/// neither knows).
pub fn take_length(browser_duration: f64, server_ms: u64) -> f64 {
    let server = server_ms as f64 / 1000.0;
    if browser_duration.is_finite() && browser_duration >= server { browser_duration } else { server }
}

/// Where a skip of `delta` seconds from `current` lands: never before the
/// start, and never past the end when the length is known (`length` > 0).
pub fn skip_target(current: f64, delta: f64, length: f64) -> f64 {
    let to = (current + delta).max(0.0);
    if length > 0.0 { to.min(length) } else { to }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_duration_counts_only_when_known_and_not_shorter() {
        // Chromium and Firefox with a fixed file: the browser's exact length.
        assert_eq!(take_length(5.126, 5_120), 5.126);
        // Not loaded yet, or a WebM without Duration.
        assert_eq!(take_length(f64::NAN, 5_120), 5.12);
        assert_eq!(take_length(f64::INFINITY, 5_120), 5.12);
        // WebKit's MP4 as recorded: only the part loaded so far.
        assert_eq!(take_length(0.39, 5_120), 5.12);
        // A container the server cannot measure (duration_ms 0).
        assert_eq!(take_length(3.5, 0), 3.5);
        assert_eq!(take_length(f64::NAN, 0), 0.0);
        assert_eq!(take_length(f64::NEG_INFINITY, 0), 0.0);
    }

    #[test]
    fn skips_stay_inside_the_take() {
        assert_eq!(skip_target(3.0, -10.0, 8.0), 0.0);
        assert_eq!(skip_target(3.0, 10.0, 8.0), 8.0);
        assert_eq!(skip_target(3.0, 2.0, 8.0), 5.0);
        // Length unknown: no upper bound.
        assert_eq!(skip_target(3.0, 10.0, 0.0), 13.0);
    }
}
