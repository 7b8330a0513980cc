//! A take's clock: media time from the page's clock (`performance.now()`),
//! pauses excluded, and where the pauses were, for `stop-recording`'s
//! `paused_ms` (the server cuts them from a file whose recorder ignored
//! `pause()`, as WebKit's does).
//!
//! Pure Rust, so its tests run natively.

/// The clock of one take; times are milliseconds on the page's clock.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Clock {
    started_at: f64,
    paused_at: Option<f64>,
    paused_total: f64,
    /// `[pause, resume]` in ms since the start, in order, none empty.
    pauses: Vec<[u64; 2]>,
}

impl Clock {
    pub fn start(now: f64) -> Clock {
        Clock { started_at: now, ..Clock::default() }
    }

    /// The time recorded so far (pauses excluded).
    pub fn elapsed_ms(&self, now: f64) -> u64 {
        let end = self.paused_at.unwrap_or(now);
        (end - self.started_at - self.paused_total).max(0.0) as u64
    }

    pub fn is_paused(&self) -> bool {
        self.paused_at.is_some()
    }

    pub fn pause(&mut self, now: f64) {
        self.paused_at.get_or_insert(now);
    }

    pub fn resume(&mut self, now: f64) {
        if let Some(at) = self.paused_at.take() {
            self.paused_total += now - at;
            let span = [self.offset(at), self.offset(now)];
            // The server takes only well-formed spans (it checks each one).
            if span[0] < span[1] && self.pauses.last().is_none_or(|last| last[1] <= span[0]) {
                self.pauses.push(span);
            }
        }
    }

    /// The recorder stopped: a pause under way ends here, and the clock stands.
    pub fn stop(&mut self, now: f64) {
        self.resume(now);
        self.paused_at = Some(now);
    }

    pub fn pauses(&self) -> &[[u64; 2]] {
        &self.pauses
    }

    fn offset(&self, at: f64) -> u64 {
        (at - self.started_at).max(0.0).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_excluded_and_noted_from_the_start() {
        let mut c = Clock::start(1_000.0);
        assert_eq!(c.elapsed_ms(3_000.0), 2_000);
        c.pause(3_000.0);
        assert_eq!(c.elapsed_ms(4_500.0), 2_000, "the clock stands while paused");
        c.resume(4_500.0);
        assert_eq!(c.elapsed_ms(6_000.0), 3_500);
        c.stop(6_000.0);
        assert_eq!(c.elapsed_ms(9_000.0), 3_500, "and after the stop");
        assert_eq!(c.pauses(), &[[2_000, 3_500]]);
    }

    #[test]
    fn a_stop_while_paused_ends_the_pause() {
        let mut c = Clock::start(0.0);
        c.pause(1_000.0);
        c.stop(2_500.0);
        assert_eq!(c.elapsed_ms(5_000.0), 1_000);
        assert_eq!(c.pauses(), &[[1_000, 2_500]]);
    }

    #[test]
    fn empty_or_repeated_pauses_are_not_noted() {
        let mut c = Clock::start(0.0);
        c.pause(1_000.0);
        c.pause(1_200.0); // a second press changes nothing
        c.resume(1_000.2);
        c.resume(2_000.0); // not paused: nothing
        c.stop(3_000.0);
        assert!(c.pauses().is_empty(), "{:?}", c.pauses());
        assert!((2_999..=3_000).contains(&c.elapsed_ms(3_000.0)));
    }
}
