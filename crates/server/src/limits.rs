//! Limits that keep one client from hurting the others: how fast a socket
//! may send events, how much it may have queued, how often an address may
//! onboard, and how much free disk the spool keeps. Limits that must hold
//! across instances (live takes and sockets per user, bytes stored per user)
//! are checked in the database (`db`), where every instance sees them.
//!
//! Each refusal costs next to nothing: a limit that needed a database round
//! trip to say no would itself be the way to overload the server.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

/// Events one socket may send per second, sustained, and in a burst. A
/// recorder sends about one chunk a second; a resume after a blip sends a
/// few dozen at once.
pub const SOCKET_EVENTS_PER_SEC: u32 = 50;
pub const SOCKET_EVENT_BURST: u32 = 200;
/// The byte burst: 16 seconds' worth of the per-user upload rate (at least
/// four of the largest chunks), so a client can re-send a backlog after a blip.
pub const BYTE_BURST_SECS: u64 = 16;

/// New Socket.IO connections per user: a burst, then one a second.
pub const USER_CONNECTS_PER_SEC: u32 = 1;
pub const USER_CONNECT_BURST: u32 = 10;

/// Per-user rates (on this instance) of socket events, audio bytes and new
/// connections: refuses what comes faster than recorders ever need, so that
/// one account cannot take the disk's bandwidth or the CPU, and cannot get a
/// fresh allowance by opening another socket.
pub struct UserRates {
    events: DefaultKeyedRateLimiter<Uuid>,
    /// In KiB, so that the numbers stay small.
    kib: DefaultKeyedRateLimiter<Uuid>,
    connects: DefaultKeyedRateLimiter<Uuid>,
}

impl UserRates {
    /// `bytes_per_sec` is the sustained upload rate per user;
    /// `largest_event` the biggest event a socket may send (a chunk).
    pub fn new(bytes_per_sec: u64, largest_event: u64) -> UserRates {
        let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("non-zero");
        let kib = |bytes: u64| u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        let burst_kib = kib(bytes_per_sec.saturating_mul(BYTE_BURST_SECS).max(largest_event.saturating_mul(4)));
        UserRates {
            events: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(nz(SOCKET_EVENTS_PER_SEC)).allow_burst(nz(SOCKET_EVENT_BURST)),
            ),
            kib: DefaultKeyedRateLimiter::keyed(Quota::per_second(nz(kib(bytes_per_sec))).allow_burst(nz(burst_kib))),
            connects: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(nz(USER_CONNECTS_PER_SEC)).allow_burst(nz(USER_CONNECT_BURST)),
            ),
        }
    }

    /// Whether one more event of `bytes` from `user` may go through now.
    pub fn allow_event(&self, user: Uuid, bytes: u64) -> bool {
        if self.events.check_key(&user).is_err() {
            return false;
        }
        let kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
        match NonZeroU32::new(kib) {
            None => true,
            Some(n) => matches!(self.kib.check_key_n(&user, n), Ok(Ok(()))),
        }
    }

    /// Whether `user` may open one more socket now.
    pub fn allow_connect(&self, user: Uuid) -> bool {
        self.connects.check_key(&user).is_ok()
    }

    /// Forgets users whose allowances have refilled.
    pub fn forget_idle(&self) {
        for limiter in [&self.events, &self.kib, &self.connects] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Refused events one socket may collect within [`REFUSAL_WINDOW`] before it
/// is disconnected: a recorder waits for its acks and is never refused this
/// often, a flood is cut off instead of being read at full speed.
pub const MAX_REFUSALS: u32 = 16;
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(5);

/// Counts a socket's refused events in a sliding window of [`REFUSAL_WINDOW`].
#[derive(Default)]
pub struct Refusals {
    window: std::sync::Mutex<(Option<std::time::Instant>, u32)>,
}

impl Refusals {
    /// Counts one refusal; `true` when the socket should be cut off.
    pub fn record(&self) -> bool {
        let mut w = self.window.lock().expect("refusal window");
        let now = std::time::Instant::now();
        match w.0 {
            Some(start) if now.duration_since(start) < REFUSAL_WINDOW => w.1 += 1,
            _ => *w = (Some(now), 1),
        }
        w.1 > MAX_REFUSALS
    }
}

/// What one socket has queued for its worker: events and payload bytes,
/// both bounded. A slot is taken when an event is queued and given back when
/// the worker is done with it (the [`QueuedSlot`] is dropped).
#[derive(Clone)]
pub struct SocketQueue {
    inner: Arc<QueueCounters>,
}

struct QueueCounters {
    events: AtomicU64,
    bytes: AtomicU64,
    max_events: u64,
    max_bytes: u64,
}

/// One queued event's share of its socket's queue.
pub struct QueuedSlot {
    inner: Arc<QueueCounters>,
    bytes: u64,
}

impl Drop for QueuedSlot {
    fn drop(&mut self) {
        self.inner.events.fetch_sub(1, Ordering::AcqRel);
        self.inner.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl SocketQueue {
    pub fn new(max_events: u64, max_bytes: u64) -> SocketQueue {
        SocketQueue {
            inner: Arc::new(QueueCounters {
                events: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                max_events,
                max_bytes,
            }),
        }
    }

    /// A slot for an event carrying `bytes`, or `None` when the queue is
    /// full. One event is always admitted into an empty queue, whatever its
    /// size (the chunk size limit applies separately).
    pub fn try_reserve(&self, bytes: u64) -> Option<QueuedSlot> {
        let c = &self.inner;
        let events = c.events.fetch_add(1, Ordering::AcqRel);
        let queued = c.bytes.fetch_add(bytes, Ordering::AcqRel);
        let slot = QueuedSlot { inner: c.clone(), bytes };
        let empty = events == 0;
        if !empty && (events >= c.max_events || queued.saturating_add(bytes) > c.max_bytes) {
            return None; // `slot` is dropped here and gives its share back
        }
        Some(slot)
    }

    /// Bytes queued right now (for tests and logs).
    pub fn queued_bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Acquire)
    }
}

/// `POST /onboard` per client address: a small burst, then a steady rate.
pub struct OnboardRate {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl OnboardRate {
    /// `per_minute` onboards per address per minute (0: unlimited).
    pub fn new(per_minute: u32) -> Option<OnboardRate> {
        let n = NonZeroU32::new(per_minute)?;
        Some(OnboardRate { limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(n)) })
    }

    /// `Ok` or how long the address must wait.
    pub fn check(&self, address: IpAddr) -> Result<(), Duration> {
        self.limiter.check_key(&address).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets addresses whose allowance has refilled (memory stays bounded
    /// by the addresses seen within a minute).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Bytes free for unprivileged writers on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a valid out-pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Whether `dir` is on a network file system (NFS, as EFS is; SMB; FUSE),
/// where a single write can stall for a long time.
pub fn is_network_file_system(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const NETWORK: [i64; 5] = [0x6969, 0xFF53_4D42, 0xFE53_4D42, 0x6573_5546, 0x00C3_6400];
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a valid out-pointer.
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return false;
    }
    NETWORK.contains(&(stat.f_type as i64))
}

/// The spool's free space, read at most every `every` (a `statvfs` per
/// chunk would be cheap, but thousands of chunks a second need not ask).
pub struct DiskGuard {
    dir: std::path::PathBuf,
    min_free: u64,
    cached: std::sync::Mutex<(std::time::Instant, u64)>,
    every: Duration,
}

impl DiskGuard {
    pub fn new(dir: &Path, min_free: u64) -> DiskGuard {
        DiskGuard {
            dir: dir.to_path_buf(),
            min_free,
            cached: std::sync::Mutex::new((std::time::Instant::now() - Duration::from_secs(3600), 0)),
            every: Duration::from_millis(250),
        }
    }

    /// Whether `incoming` more bytes leave at least the minimum free. Bytes
    /// accepted since the last reading are subtracted, so a burst between
    /// two readings cannot run the disk full.
    pub fn has_room_for(&self, incoming: u64) -> bool {
        if self.min_free == 0 {
            return true;
        }
        let mut cached = self.cached.lock().expect("disk guard");
        if cached.0.elapsed() >= self.every {
            // An unreadable file system counts as full: refusing is safe, acknowledging is not.
            *cached = (std::time::Instant::now(), free_bytes(&self.dir).unwrap_or(0));
        }
        if cached.1 < self.min_free.saturating_add(incoming) {
            return false;
        }
        cached.1 -= incoming;
        true
    }

    pub fn min_free(&self) -> u64 {
        self.min_free
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_queue_is_bounded_in_events_and_bytes() {
        let q = SocketQueue::new(3, 100);
        let a = q.try_reserve(60).unwrap();
        assert!(q.try_reserve(50).is_none(), "60 + 50 > 100");
        let b = q.try_reserve(40).unwrap();
        assert!(q.try_reserve(0).is_some());
        let c = q.try_reserve(0).unwrap();
        assert!(q.try_reserve(0).is_none(), "3 events queued");
        drop((a, b, c));
        assert_eq!(q.queued_bytes(), 0);
        // An empty queue admits one oversized event (the chunk limit is checked elsewhere).
        let big = q.try_reserve(1_000).unwrap();
        assert!(q.try_reserve(1).is_none());
        drop(big);
        assert!(q.try_reserve(1).is_some());
    }

    #[test]
    fn an_event_flood_is_cut_after_the_burst() {
        let rates = UserRates::new(1 << 20, 1 << 20);
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        let allowed = (0..10_000).filter(|_| rates.allow_event(user, 0)).count() as u32;
        assert!((SOCKET_EVENT_BURST..SOCKET_EVENT_BURST + 20).contains(&allowed), "{allowed}");
        assert!(rates.allow_event(other, 0), "users are counted apart");
    }

    #[test]
    fn a_byte_flood_is_cut_after_the_burst() {
        let rates = UserRates::new(1 << 20, 1 << 20);
        let user = Uuid::new_v4();
        // 1 MiB chunks at 1 MiB/s: the 16 MiB burst, then about one a second.
        let allowed = (0..100).filter(|_| rates.allow_event(user, 1 << 20)).count();
        assert!((16..=18).contains(&allowed), "{allowed}");
        // A chunk larger than the burst is never admitted by the rate alone;
        // the chunk size limit refuses it first in practice.
        assert!(!UserRates::new(1 << 20, 1 << 20).allow_event(user, 64 << 20));
        // The burst grows with the largest chunk allowed.
        assert!(UserRates::new(1 << 20, 64 << 20).allow_event(user, 64 << 20));
    }

    #[test]
    fn reconnecting_is_rate_limited() {
        let rates = UserRates::new(1 << 20, 1 << 20);
        let user = Uuid::new_v4();
        let allowed = (0..100).filter(|_| rates.allow_connect(user)).count() as u32;
        assert!((USER_CONNECT_BURST..=USER_CONNECT_BURST + 1).contains(&allowed), "{allowed}");
    }

    #[test]
    fn a_socket_is_cut_after_many_refusals_in_a_row() {
        let refusals = Refusals::default();
        let cut = (0..100).position(|_| refusals.record()).unwrap() as u32;
        assert_eq!(cut, MAX_REFUSALS);
    }

    #[test]
    fn onboard_rate_answers_how_long_to_wait() {
        let rate = OnboardRate::new(2).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(rate.check(ip).is_ok());
        assert!(rate.check(ip).is_ok());
        let wait = rate.check(ip).unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(30), "{wait:?}");
        assert!(rate.check("192.0.2.2".parse().unwrap()).is_ok(), "addresses are counted apart");
        assert!(OnboardRate::new(0).is_none());
    }

    #[test]
    fn the_disk_guard_keeps_the_minimum_free() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_bytes(dir.path()).unwrap();
        assert!(free > 0);
        assert!(DiskGuard::new(dir.path(), 0).has_room_for(u64::MAX));
        // A wide margin: other processes write to this disk meanwhile.
        let guard = DiskGuard::new(dir.path(), free.saturating_sub(100_000_000));
        assert!(guard.has_room_for(1_000));
        assert!(!guard.has_room_for(200_000_000), "would go below the minimum");
        assert!(!DiskGuard::new(dir.path(), free + (1 << 40)).has_room_for(1));
    }
}
