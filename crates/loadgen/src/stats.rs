//! Latency percentiles (overall and per phase of a fault) and process
//! resources read from `/proc`.

use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Value, json};

/// Where a run stands relative to the fault a harness injects: it switches
/// the phase by writing `phase during` / `phase after` lines on the load
/// program's standard input (see `--phases-from-stdin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Before = 0,
    During = 1,
    After = 2,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Before, Phase::During, Phase::After];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.name() == s)
    }

    /// The phase the run is in now.
    pub fn current() -> Phase {
        match CURRENT_PHASE.load(Ordering::Relaxed) {
            0 => Phase::Before,
            1 => Phase::During,
            _ => Phase::After,
        }
    }

    pub fn set(self) {
        SWITCHES.lock().expect("phase switches").push((std::time::Instant::now(), self));
        CURRENT_PHASE.store(self as u8, Ordering::Relaxed);
    }

    /// The phase the run was in at `when` (a chunk due while the
    /// connection was down belongs to the phase it was due in).
    pub fn at(when: std::time::Instant) -> Phase {
        let switches = SWITCHES.lock().expect("phase switches");
        switches.iter().rev().find(|(at, _)| *at <= when).map_or(Phase::Before, |(_, p)| *p)
    }
}

static CURRENT_PHASE: AtomicU8 = AtomicU8::new(0);
static SWITCHES: std::sync::Mutex<Vec<(std::time::Instant, Phase)>> = std::sync::Mutex::new(Vec::new());

/// Samples kept apart by the phase they started in.
#[derive(Debug, Default)]
pub struct Phased([Samples; 3]);

impl Phased {
    pub fn push(&mut self, phase: Phase, d: std::time::Duration) {
        self.0[phase as usize].push(d);
    }

    pub fn extend(&mut self, other: Phased) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            mine.extend(theirs);
        }
    }

    pub fn phase(&mut self, phase: Phase) -> &mut Samples {
        &mut self.0[phase as usize]
    }

    /// All phases together.
    pub fn all(&self) -> Samples {
        Samples(self.0.iter().flat_map(|s| s.0.iter().copied()).collect())
    }
}

/// Latency samples in microseconds.
#[derive(Debug, Default)]
pub struct Samples(Vec<u32>);

impl Samples {
    pub fn push(&mut self, d: std::time::Duration) {
        self.0.push(d.as_micros().min(u32::MAX as u128) as u32);
    }

    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    /// `(p50, p99, max)` in milliseconds, `None` without samples.
    pub fn summary(&mut self) -> Option<(f64, f64, f64)> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let at = |q: f64| {
            let i = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
            self.0[i] as f64 / 1000.0
        };
        Some((at(0.50), at(0.99), *self.0.last().unwrap() as f64 / 1000.0))
    }

    pub fn json(&mut self) -> Value {
        let count = self.0.len();
        match self.summary() {
            Some((p50, p99, max)) => {
                json!({"count": count, "p50": round(p50), "p99": round(p99), "max": round(max)})
            }
            None => json!({"count": 0, "p50": null, "p99": null, "max": null}),
        }
    }

    pub fn human(&mut self) -> String {
        let count = self.0.len();
        match self.summary() {
            Some((p50, p99, max)) => {
                format!("p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms ({count} samples)")
            }
            None => "no samples".into(),
        }
    }
}

pub fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// One reading of a process: resident and peak resident memory, CPU time.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcReading {
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub cpu_secs: f64,
}

/// Reads `/proc/<pid>/status` (VmRSS, VmHWM) and `/proc/<pid>/stat`
/// (utime + stime; clock ticks of 1/100 s, Linux's USER_HZ).
pub fn read_proc(pid: &str) -> Option<ProcReading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcReading { rss_kb: field("VmRSS:"), hwm_kb: field("VmHWM:"), cpu_secs: ticks as f64 / 100.0 })
}

/// The soft limit on open files of this process, if readable.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentiles() {
        let mut s = Samples::default();
        assert!(s.summary().is_none());
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.summary(), Some((50.0, 99.0, 100.0)));
    }

    #[test]
    fn phases_keep_their_samples_apart() {
        let mut p = Phased::default();
        p.push(Phase::Before, Duration::from_millis(1));
        p.push(Phase::After, Duration::from_millis(3));
        p.push(Phase::After, Duration::from_millis(5));
        assert_eq!(p.phase(Phase::During).summary(), None);
        assert_eq!(p.phase(Phase::After).summary(), Some((3.0, 5.0, 5.0)));
        assert_eq!(p.all().summary(), Some((3.0, 5.0, 5.0)));
        assert_eq!(Phase::parse("during"), Some(Phase::During));
        let before = std::time::Instant::now();
        Phase::During.set();
        let during = std::time::Instant::now();
        assert_eq!(Phase::at(before), Phase::Before);
        assert_eq!(Phase::at(during), Phase::During);
        assert_eq!(Phase::current(), Phase::During);
        Phase::Before.set();
        assert_eq!(Phase::parse("later"), None);
    }

    #[test]
    fn reads_own_process() {
        let r = read_proc("self").expect("/proc/self");
        assert!(r.rss_kb > 0 && r.hwm_kb >= r.rss_kb);
        assert!(open_files_limit().unwrap_or(1) > 0);
    }
}
