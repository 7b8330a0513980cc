//! The recording pipeline, independent of any transport: open a recording,
//! append chunk `seq` (a repeat is acknowledged again and not written twice,
//! a gap is refused), resume, finalize, expire.
//!
//! A chunk travels: `realtime` handler → [`Recordings::append`] → the
//! recording's [`spool::Spool`] on disk → acknowledged. At stop,
//! [`finalize`] fixes the container and hands the file to `storage`; the
//! [`reaper`] tasks keep this instance's takes alive in the database, finish
//! abandoned ones and retry what failed.

pub mod finalize;
pub mod reaper;
pub mod spool;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::config::Limits;
use crate::db::takes::{OpenRefused, UserLimits};
use crate::db::{Db, NewRecording, RecordRow, StoredStatus};
use crate::limits::DiskGuard;
use crate::storage::Storage;
use spool::Spool;

/// Why a recording operation was refused, in words a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("No recording {0} is open; start a new one.")]
    NotFound(Uuid),
    #[error("Recording {0} belongs to another user.")]
    NotYours(Uuid),
    #[error("Chunk {got} is ahead of the recording; send chunk {expected} first.")]
    Gap { got: u64, expected: u64 },
    #[error("A chunk may hold at most {max} bytes; this one has {got}.")]
    ChunkTooLarge { got: usize, max: usize },
    #[error("A recording may hold at most {max} bytes; stop this one and start a new one.")]
    RecordingTooLarge { max: u64, next_seq: u64 },
    #[error("You already have {max} recordings in progress; stop one first.")]
    TooManyLive { max: u64 },
    #[error("You have {max} recordings, the most one person may keep; delete some to record more.")]
    TooManyRecordings { max: u64 },
    #[error("Your recordings use all of the {} MB you may keep; delete some to record more.", max / 1_000_000)]
    QuotaExceeded { max: u64, next_seq: Option<u64> },
    #[error("{0}")]
    BadName(String),
    /// A lossless (`audio/wav`) chunk that is not what the wire allows.
    #[error("This lossless recording's audio is refused: {0}.")]
    BadLossless(String),
    #[error("Chunks {next_seq}..{expected} have not arrived yet; send them before stopping.")]
    MissingChunks { next_seq: u64, expected: u64 },
    #[error("Nothing was recorded yet.")]
    Empty,
    #[error("Recording {0} is already saved.")]
    AlreadySaved(Uuid),
    #[error("Recording {0} is being saved; try again in a moment.")]
    Busy(Uuid),
    #[error("The recording's data is held by another server right now; trying again shortly.")]
    SpoolMissing(Uuid),
    #[error("The server is running out of disk space; what you recorded so far is safe. Trying again shortly.")]
    DiskFull,
    #[error("The server cannot reach its database right now; what you recorded so far is safe. Trying again shortly.")]
    Unavailable,
    #[error("Recording {0} is safe on the server, but saving it failed; the server keeps trying.")]
    SaveDelayed(Uuid),
    #[error("The server could not write the audio; please try again.")]
    Io(#[from] std::io::Error),
    #[error("The server's database did not answer; please try again.")]
    Db(#[from] sqlx::Error),
}

impl RecordingError {
    /// The seq the client should send next, where the error implies one.
    pub fn next_seq(&self) -> Option<u64> {
        match self {
            RecordingError::Gap { expected, .. } => Some(*expected),
            RecordingError::RecordingTooLarge { next_seq, .. } | RecordingError::MissingChunks { next_seq, .. } => {
                Some(*next_seq)
            }
            RecordingError::QuotaExceeded { next_seq, .. } => *next_seq,
            _ => None,
        }
    }

    /// For a temporary refusal: when to send the same request again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RecordingError::Busy(_) | RecordingError::Io(_) | RecordingError::SaveDelayed(_) => {
                Some(Duration::from_secs(1))
            }
            RecordingError::Unavailable | RecordingError::Db(_) => Some(Duration::from_secs(2)),
            RecordingError::DiskFull | RecordingError::SpoolMissing(_) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

pub type RecordingResult<T> = Result<T, RecordingError>;

/// The stored type of a lossless take (see [`check_lossless_chunk`]).
pub const LOSSLESS_TYPE: &str = audiobook_wire::lossless::MIME_TYPE;

/// A take declared `audio/wav` is the lossless path: chunk 0 must start with
/// the canonical header of [`audiobook_wire::lossless`] (16-bit mono, a sane
/// rate), and every chunk's sample bytes must be whole samples. Checked
/// before the chunk is written, so the spool only ever holds a take that
/// [`finalize`] can turn into a valid WAV.
pub fn check_lossless_chunk(seq: u64, data: &[u8]) -> RecordingResult<()> {
    use audiobook_wire::lossless;
    let samples = if seq == 0 {
        lossless::parse_header(data).map_err(|e| RecordingError::BadLossless(e.to_string()))?;
        data.len() - lossless::HEADER_BYTES
    } else {
        data.len()
    };
    if samples % 2 != 0 {
        return Err(RecordingError::BadLossless(format!(
            "chunk {seq} holds {samples} bytes of samples, not a whole number of 16-bit samples"
        )));
    }
    Ok(())
}

/// Waveform peaks kept per chunk.
pub const MAX_PEAKS_PER_CHUNK: usize = 256;

/// Where a take stands after a chunk or a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub recording_id: Uuid,
    /// The seq of the chunk just acknowledged (for `append`).
    pub seq: u64,
    pub next_seq: u64,
    pub received_bytes: u64,
}

/// A take held by this instance. Whose it is never changes, so the owner
/// check reads it without the lock, and a chunk takes the lock once.
#[derive(Debug)]
struct Held {
    user_id: Uuid,
    live: Mutex<Live>,
}

impl Held {
    fn new(user_id: Uuid, live: Live) -> Arc<Held> {
        Arc::new(Held { user_id, live: Mutex::new(live) })
    }

    /// This take, if it is `user_id`'s.
    fn owned_by(self: Arc<Held>, user_id: Uuid, id: Uuid) -> RecordingResult<Arc<Held>> {
        if self.user_id == user_id { Ok(self) } else { Err(RecordingError::NotYours(id)) }
    }
}

#[derive(Debug)]
struct Live {
    id: Uuid,
    mime_type: String,
    paths: spool::SpoolPaths,
    /// Open (and locked) while a socket of this instance uses the take; the
    /// take is released when none does, so another instance can take it over.
    spool: Option<Spool>,
    /// Audio bytes received, as of the spool's last reading here.
    received: u64,
    last_activity: Instant,
    /// Sockets currently using this recording.
    attached: u32,
    /// Set once finalizing started: later appends are refused.
    closed: bool,
    /// Audio bytes this take may reach: the user's byte allowance when it
    /// was opened (or taken over).
    byte_budget: u64,
    /// Received bytes and whether a client was attached, as last written to
    /// the database (see the heartbeat).
    reported: (u64, bool),
}

/// Whether this instance may still acknowledge chunks: only while its
/// heartbeat reaches the database. After `RECORDING_GRACE_SECS` without one,
/// another instance may take its takes as orphans, so chunks are refused
/// well before that, after a few missed heartbeats (and a take claimed
/// elsewhere meanwhile is dropped here when the heartbeat comes back, see
/// [`reaper`]). While the database is down, chunks are thus refused with a
/// temporary error, and recording goes on when it is back.
#[derive(Debug)]
pub struct Lease {
    last_ok: SyncMutex<Instant>,
    valid_for: Duration,
}

impl Lease {
    /// Valid for three heartbeats (15 s with the default grace period), at
    /// most 60 % of the grace period, at least 2 s.
    fn new(grace: Duration, tick: Duration) -> Lease {
        let valid_for = (grace * 3 / 5).min(tick * 3).max(Duration::from_secs(2));
        Lease { last_ok: SyncMutex::new(Instant::now()), valid_for }
    }

    pub fn is_fresh(&self) -> bool {
        self.last_ok.lock().expect("lease").elapsed() < self.valid_for
    }

    fn renew(&self, at: Instant) {
        let mut last = self.last_ok.lock().expect("lease");
        *last = (*last).max(at);
    }
}

/// The live recordings of this server instance.
pub struct Recordings {
    db: Db,
    storage: Storage,
    limits: Limits,
    spool_dir: std::path::PathBuf,
    /// Identifies this process in the database, so another instance can tell
    /// whether a live take's holder is still alive.
    pub instance_id: Uuid,
    live: SyncMutex<HashMap<Uuid, Arc<Held>>>,
    /// One lock per take being loaded from the spool, so two sockets resuming
    /// the same take at once get one `Live` (and other takes do not wait).
    loading: SyncMutex<HashMap<Uuid, Arc<Mutex<()>>>>,
    /// Takes being finalized on this instance: a retry never runs beside one.
    finalizing: Arc<SyncMutex<HashSet<Uuid>>>,
    disk: DiskGuard,
    lease: Lease,
    /// Spool writes through the blocking thread pool (see `SPOOL_IO`).
    blocking_io: bool,
}

/// Marks a take as being finalized here until dropped.
struct FinalizeGuard {
    set: Arc<SyncMutex<HashSet<Uuid>>>,
    id: Uuid,
}

impl Drop for FinalizeGuard {
    fn drop(&mut self) {
        self.set.lock().expect("finalizing set").remove(&self.id);
    }
}

impl Recordings {
    pub fn new(db: Db, storage: Storage, limits: Limits, spool_dir: std::path::PathBuf) -> Recordings {
        let blocking_io = match limits.spool_io {
            crate::config::SpoolIo::Inline => false,
            crate::config::SpoolIo::Blocking => true,
            crate::config::SpoolIo::Auto => crate::limits::is_network_file_system(&spool_dir),
        };
        if blocking_io {
            tracing::info!(spool_dir = %spool_dir.display(), "spool writes go through the blocking thread pool");
        }
        Recordings {
            disk: DiskGuard::new(&spool_dir, limits.min_free_spool_bytes),
            lease: Lease::new(limits.recording_grace, reaper::tick_for(limits.recording_grace)),
            blocking_io,
            db,
            storage,
            limits,
            spool_dir,
            instance_id: Uuid::new_v4(),
            live: SyncMutex::new(HashMap::new()),
            loading: SyncMutex::new(HashMap::new()),
            finalizing: Arc::new(SyncMutex::new(HashSet::new())),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    fn get_live(&self, id: Uuid) -> Option<Arc<Held>> {
        self.live.lock().expect("live map").get(&id).cloned()
    }

    /// How many takes this instance holds open (for logs and the benchmark).
    pub fn live_count(&self) -> usize {
        self.live.lock().expect("live map").len()
    }

    /// Claims the right to finalize `id` here; `None` if one already runs.
    fn start_finalizing(&self, id: Uuid) -> Option<FinalizeGuard> {
        self.finalizing
            .lock()
            .expect("finalizing set")
            .insert(id)
            .then(|| FinalizeGuard { set: self.finalizing.clone(), id })
    }

    fn user_limits(&self) -> UserLimits {
        UserLimits {
            max_live: self.limits.max_live_recordings_per_user as u64,
            max_records: self.limits.max_recordings_per_user,
            max_bytes: self.limits.max_bytes_per_user,
        }
    }

    /// Opens a new recording for `user_id`, within the user's limits (held
    /// across instances by the database) and the spool's free space.
    pub async fn open(&self, user_id: Uuid, mime_type: &str, name: Option<&str>) -> RecordingResult<Uuid> {
        let name = match name.filter(|n| !n.trim().is_empty()) {
            Some(n) => audiobook_wire::clean_name(n, audiobook_wire::MAX_RECORDING_NAME_CHARS)
                .map_err(|e| RecordingError::BadName(e.to_string()))?,
            // The store numbers it ("Recording 3").
            None => String::new(),
        };
        if !self.lease.is_fresh() {
            return Err(RecordingError::Unavailable);
        }
        // A new take needs room for at least one chunk of the largest size.
        if !self.disk.has_room_for(self.limits.max_chunk_bytes as u64) {
            return Err(RecordingError::DiskFull);
        }
        let id = Uuid::new_v4();
        let mime_type = crate::media_type::safe_audio_type(mime_type);
        let new = NewRecording { id, user_id, name, mime_type: mime_type.clone(), owner_instance: self.instance_id };
        let opened = self.db.open_recording(&new, &self.user_limits()).await?.map_err(|refused| match refused {
            OpenRefused::TooManyLive { max } => RecordingError::TooManyLive { max },
            OpenRefused::TooManyRecordings { max } => RecordingError::TooManyRecordings { max },
            OpenRefused::StorageFull { max } => RecordingError::QuotaExceeded { max, next_seq: None },
        })?;
        // The spool is created once the row exists, so a refused insert
        // leaves no files behind.
        let spool = match Spool::create(&self.spool_dir, id) {
            Ok(spool) => spool.with_blocking_io(self.blocking_io),
            Err(e) => {
                if let Err(db) = self.db.discard_empty_take(id).await {
                    tracing::warn!(recording_id = %id, error = %db, "cannot discard a take without a spool");
                }
                return Err(e.into());
            }
        };
        let live = Live {
            id,
            mime_type,
            paths: spool.paths.clone(),
            spool: Some(spool),
            received: 0,
            last_activity: Instant::now(),
            attached: 0,
            closed: false,
            byte_budget: opened.bytes_left.min(self.limits.max_recording_bytes),
            reported: (0, false),
        };
        self.live.lock().expect("live map").insert(id, Held::new(user_id, live));
        tracing::info!(recording_id = %id, user_id = %user_id, "recording opened");
        Ok(id)
    }

    /// The live recording `id` of `user_id`, reloaded from the spool if this
    /// instance does not hold it (after a restart, or a take started on
    /// another instance sharing the database and the spool).
    async fn live_of(&self, user_id: Uuid, id: Uuid) -> RecordingResult<Arc<Held>> {
        if let Some(held) = self.get_live(id) {
            return held.owned_by(user_id, id);
        }
        let lock = self.loading.lock().expect("loading locks").entry(id).or_default().clone();
        let result = async {
            let _guard = lock.lock().await;
            if let Some(held) = self.get_live(id) {
                // Loaded meanwhile by another socket: the owner check applies all the same.
                return held.owned_by(user_id, id);
            }
            self.load(user_id, id).await
        }
        .await;
        let mut locks = self.loading.lock().expect("loading locks");
        if locks.get(&id).is_some_and(|l| Arc::strong_count(l) <= 2) {
            locks.remove(&id);
        }
        result
    }

    /// Takes over a live take from the spool and the database.
    async fn load(&self, user_id: Uuid, id: Uuid) -> RecordingResult<Arc<Held>> {
        let mut row = self.db.record(id).await?.ok_or(RecordingError::NotFound(id))?;
        if row.user_id != user_id {
            return Err(RecordingError::NotYours(id));
        }
        match row.status() {
            StoredStatus::Recording => {}
            StoredStatus::Finalizing if self.reopen_lost_finalize(&row).await? => {
                row = self.db.record(id).await?.ok_or(RecordingError::NotFound(id))?;
            }
            StoredStatus::Finalizing => return Err(RecordingError::Busy(id)),
            _ => return Err(RecordingError::AlreadySaved(id)),
        }
        let spool = match self.lock_spool(id).await {
            Ok(spool) => spool,
            Err(RecordingError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                self.restart_lost_spool(&row)?.with_blocking_io(self.blocking_io)
            }
            Err(e) => return Err(e),
        };
        if !self.db.take_over(id, self.instance_id).await? {
            // Claimed for finalizing between our read and now.
            return Err(RecordingError::Busy(id));
        }
        // The user's allowance counts this take's reported bytes already.
        let left = self.db.bytes_left(user_id, self.limits.max_bytes_per_user).await?;
        let byte_budget = left.saturating_add(row.size_bytes.max(0) as u64).min(self.limits.max_recording_bytes);
        tracing::info!(recording_id = %id, chunks = spool.chunks, bytes = spool.bytes, "recording taken over from spool");
        let live = Live {
            id,
            mime_type: row.mime_type,
            reported: (spool.bytes, false),
            received: spool.bytes,
            paths: spool.paths.clone(),
            spool: Some(spool),
            last_activity: Instant::now(),
            attached: 0,
            closed: false,
            byte_budget,
        };
        let held = Held::new(user_id, live);
        self.live.lock().expect("live map").insert(id, held.clone());
        Ok(held)
    }

    /// Opens and locks a take's spool, waiting a little while another
    /// instance (or socket) still holds it; `Busy` if it keeps holding it.
    async fn lock_spool(&self, id: Uuid) -> RecordingResult<Spool> {
        for _ in 0..20 {
            let dir = self.spool_dir.clone();
            let opened =
                tokio::task::spawn_blocking(move || Spool::recover(&dir, id)).await.map_err(std::io::Error::other)?;
            match opened {
                Ok(spool) => return Ok(spool.with_blocking_io(self.blocking_io)),
                Err(spool::OpenError::Locked) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(spool::OpenError::Io(e)) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(recording_id = %id, error = %e, "cannot reopen spool");
                    }
                    return Err(e.into());
                }
            }
        }
        tracing::info!(recording_id = %id, "spool still held elsewhere");
        Err(RecordingError::Busy(id))
    }

    /// The take's open spool: reopened from the disk if this instance had
    /// released it, and taken over in the database, so that chunks another
    /// instance appended meanwhile are counted and nobody else writes now.
    async fn open_spool<'a>(&self, live: &'a mut Live) -> RecordingResult<&'a mut Spool> {
        if live.spool.is_none() {
            let spool = self.lock_spool(live.id).await?;
            if !self.db.take_over(live.id, self.instance_id).await? {
                self.drop_stale(live);
                return Err(RecordingError::AlreadySaved(live.id));
            }
            live.received = spool.bytes;
            live.spool = Some(spool);
        }
        Ok(live.spool.as_mut().expect("opened above"))
    }

    /// A take whose holder died while finalizing it, with its spool (no
    /// shared spool folder): nothing on the server can finish it, but its
    /// client still has the audio. It is opened again as a live take, so the
    /// client's retried stop answers `next_seq` 0 and the take is sent again.
    async fn reopen_lost_finalize(&self, row: &RecordRow) -> RecordingResult<bool> {
        if spool::SpoolPaths::new(&self.spool_dir, row.id).exists() || row.owner_instance == Some(self.instance_id) {
            return Ok(false);
        }
        let silent_since =
            crate::db::now() - chrono::Duration::from_std(self.holder_silence()).unwrap_or(chrono::Duration::MAX);
        let reopened = self.db.reopen_lost_finalize(row.id, self.instance_id, silent_since).await?;
        if reopened {
            tracing::warn!(recording_id = %row.id, "its holder died while saving it, with its spool; reopened for the client to send again");
        }
        Ok(reopened)
    }

    /// A live take whose spool is not on this disk: held by an instance that
    /// died with its disk (no shared spool), or lost. Once its holder has
    /// been silent for a few heartbeats, the take starts over here with an
    /// empty spool: `resume-recording` answers `next_seq` 0 and the client
    /// sends the whole take again from its own copy.
    fn restart_lost_spool(&self, row: &RecordRow) -> RecordingResult<Spool> {
        let silent_for = crate::db::now() - row.last_seen_at;
        let holder_alive = row.owner_instance.is_some_and(|o| o != self.instance_id)
            && silent_for < chrono::Duration::from_std(self.holder_silence()).unwrap_or(chrono::Duration::MAX);
        if holder_alive {
            return Err(RecordingError::SpoolMissing(row.id));
        }
        tracing::warn!(recording_id = %row.id, "spool lost; the take starts over and the client re-sends it");
        spool::SpoolPaths::new(&self.spool_dir, row.id).remove();
        Ok(Spool::create(&self.spool_dir, row.id)?)
    }

    /// Appends chunk `seq` (or the next one, for clients without seq) and
    /// returns once its bytes are in the spool.
    pub async fn append(
        &self,
        user_id: Uuid,
        id: Uuid,
        seq: Option<u64>,
        data: Bytes,
        peaks: Option<Vec<u8>>,
    ) -> RecordingResult<Progress> {
        if data.len() > self.limits.max_chunk_bytes {
            return Err(RecordingError::ChunkTooLarge { got: data.len(), max: self.limits.max_chunk_bytes });
        }
        if !self.lease.is_fresh() {
            return Err(RecordingError::Unavailable);
        }
        let held = self.live_of(user_id, id).await?;
        let mut live = held.live.lock().await;
        if live.closed {
            return Err(RecordingError::AlreadySaved(id));
        }
        live.last_activity = Instant::now();
        let byte_budget = live.byte_budget;
        let lossless = live.mime_type == LOSSLESS_TYPE;
        let spool = self.open_spool(&mut live).await?;
        let expected = spool.chunks;
        let seq = seq.unwrap_or(expected);
        if seq < expected {
            // A retry of a chunk already stored: acknowledge it again, write nothing.
            return Ok(Progress { recording_id: id, seq, next_seq: expected, received_bytes: spool.bytes });
        }
        if seq > expected {
            return Err(RecordingError::Gap { got: seq, expected });
        }
        // A chunk is about a second: more than a few hundred peaks is not a waveform.
        let peaks = peaks.map(|mut p| {
            p.truncate(MAX_PEAKS_PER_CHUNK);
            p
        });
        // What the chunk costs on disk: its bytes, its peaks and its index
        // entry, so that tiny chunks with many peaks count for what they use.
        let cost = data.len() as u64 + peaks.as_ref().map_or(0, |p| p.len() as u64) + spool::INDEX_ENTRY_BYTES;
        if spool.disk_bytes().saturating_add(cost) > self.limits.max_recording_bytes {
            return Err(RecordingError::RecordingTooLarge { max: self.limits.max_recording_bytes, next_seq: expected });
        }
        if spool.bytes.saturating_add(data.len() as u64) > byte_budget {
            return Err(RecordingError::QuotaExceeded {
                max: self.limits.max_bytes_per_user,
                next_seq: Some(expected),
            });
        }
        if !self.disk.has_room_for(cost) {
            return Err(RecordingError::DiskFull);
        }
        if lossless {
            check_lossless_chunk(seq, &data)?;
        }
        let bytes = data.len() as u64;
        spool.append(data, peaks).await?;
        metrics::counter!(crate::telemetry::CHUNKS_RECEIVED).increment(1);
        metrics::counter!(crate::telemetry::BYTES_RECEIVED).increment(bytes);
        let progress = Progress { recording_id: id, seq, next_seq: spool.chunks, received_bytes: spool.bytes };
        live.received = progress.received_bytes;
        Ok(progress)
    }

    /// Where a take stands, so a reconnected client knows what to send next.
    pub async fn resume(&self, user_id: Uuid, id: Uuid) -> RecordingResult<Progress> {
        if !self.lease.is_fresh() {
            return Err(RecordingError::Unavailable);
        }
        let held = self.live_of(user_id, id).await?;
        let mut live = held.live.lock().await;
        if live.closed {
            return Err(RecordingError::AlreadySaved(id));
        }
        live.last_activity = Instant::now();
        let spool = self.open_spool(&mut live).await?;
        Ok(Progress { recording_id: id, seq: spool.chunks, next_seq: spool.chunks, received_bytes: spool.bytes })
    }

    /// A socket starts using a recording (it no longer counts as abandoned).
    pub async fn attach(&self, id: Uuid) {
        if let Some(held) = self.get_live(id) {
            let mut live = held.live.lock().await;
            live.attached += 1;
            live.last_activity = Instant::now();
        }
    }

    /// A socket went away: the take waits for a resume for the grace period.
    /// The spool is flushed to disk now, so a power cut during the wait
    /// loses nothing that was acknowledged; and when no socket of this
    /// instance uses the take any more, the spool is closed and its lock
    /// released, so the client can resume on another instance.
    pub async fn detach(&self, id: Uuid) {
        if let Some(held) = self.get_live(id) {
            let mut live = held.live.lock().await;
            live.attached = live.attached.saturating_sub(1);
            live.last_activity = Instant::now();
            if let Some(spool) = &live.spool
                && let Err(e) = spool.sync().await
            {
                tracing::warn!(recording_id = %id, error = %e, "spool sync failed");
            }
            if live.attached == 0 {
                live.spool = None;
            }
        }
    }

    /// Stops a take: checks that every chunk the client sent arrived, fixes
    /// the container, stores it and returns the saved record. Stopping a
    /// take that is already saved returns it again (a retried stop).
    pub async fn stop(
        &self,
        user_id: Uuid,
        id: Uuid,
        expected_chunks: Option<u64>,
        timeline: Option<finalize::Timeline>,
    ) -> RecordingResult<RecordRow> {
        let held = match self.live_of(user_id, id).await {
            Ok(held) => held,
            Err(RecordingError::AlreadySaved(_)) => {
                return self.db.record(id).await?.ok_or(RecordingError::NotFound(id));
            }
            Err(e) => return Err(e),
        };
        let mut guard = held.live.lock().await;
        if guard.closed {
            return Err(RecordingError::Busy(id));
        }
        let chunks = self.open_spool(&mut guard).await?.chunks;
        if let Some(expected) = expected_chunks
            && expected > chunks
        {
            return Err(RecordingError::MissingChunks { next_seq: chunks, expected });
        }
        if chunks == 0 {
            return Err(RecordingError::Empty);
        }
        if let Some(timeline) = timeline {
            timeline.write(&guard.paths.timeline)?;
        }
        self.close_and_finalize(user_id, &mut guard, StoredStatus::Ready).await
    }

    /// Finalizes a held take: only the task that wins the database claim does it.
    async fn close_and_finalize(
        &self,
        user_id: Uuid,
        live: &mut Live,
        outcome: StoredStatus,
    ) -> RecordingResult<RecordRow> {
        if !self.db.claim_for_finalize(live.id, self.instance_id, outcome).await? {
            // Taken over by another instance, or finalized elsewhere: this
            // copy is stale and must not write or finalize anything more.
            self.drop_stale(live);
            return Err(RecordingError::Busy(live.id));
        }
        live.closed = true;
        self.live.lock().expect("live map").remove(&live.id);
        // Kept open (locked) while it is saved: another instance's reaper
        // must not take it for an orphan while this one is slow at it.
        let lock = live.spool.take();
        let take =
            finalize::Take { id: live.id, user_id, mime_type: live.mime_type.clone(), paths: live.paths.clone() };
        let saved = self.finalize_claimed(&take, outcome, false).await;
        drop(lock);
        saved
    }

    /// Finalizes a take this instance claimed. A failure leaves it
    /// `finalizing` with a retry due (see [`reaper`]): the spool keeps the
    /// audio until a later attempt stores it.
    async fn finalize_claimed(
        &self,
        take: &finalize::Take,
        outcome: StoredStatus,
        as_received: bool,
    ) -> RecordingResult<RecordRow> {
        let Some(_guard) = self.start_finalizing(take.id) else {
            return Err(RecordingError::Busy(take.id));
        };
        match finalize::finalize(&self.db, &self.storage, take, outcome, as_received).await {
            Ok(row) => Ok(row),
            Err(e) => {
                metrics::counter!(crate::telemetry::FINALIZE_FAILURES).increment(1);
                tracing::error!(recording_id = %take.id, error = %e, "finalize failed; it will be retried");
                if let Err(db) = self.db.finalize_failed(take.id, &e.to_string()).await {
                    tracing::warn!(recording_id = %take.id, error = %db, "cannot schedule the finalize retry");
                }
                Err(RecordingError::SaveDelayed(take.id))
            }
        }
    }

    /// Forgets a take that another instance holds now.
    fn drop_stale(&self, live: &mut Live) {
        live.closed = true;
        self.live.lock().expect("live map").remove(&live.id);
        tracing::info!(recording_id = %live.id, "take is held elsewhere now; dropped here");
    }

    /// Forgets a live take as a restart would (tests of what survives one).
    #[doc(hidden)]
    pub async fn forget_for_tests(&self, id: Uuid) {
        let held = self.live.lock().expect("live map").remove(&id);
        if let Some(held) = held {
            held.live.lock().await.closed = true;
        }
    }

    /// Waits, at most `within`, for the takes being saved now (at shutdown,
    /// as ECS gives a task 30 s between SIGTERM and SIGKILL): a save cut
    /// off leaves its take for another instance's reaper, which is slower
    /// for the person waiting on it. Returns how many were still running.
    pub async fn finish_saves(&self, within: Duration) -> usize {
        let until = Instant::now() + within;
        loop {
            let running = self.finalizing.lock().expect("finalizing set").len();
            if running == 0 || Instant::now() >= until {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Flushes every live spool (at shutdown): the takes stay resumable after
    /// the restart, and are finalized as interrupted if nobody comes back.
    pub async fn sync_all(&self) {
        let all: Vec<_> = self.live.lock().expect("live map").values().cloned().collect();
        for held in all {
            let live = held.live.lock().await;
            if let Some(spool) = &live.spool
                && let Err(e) = spool.sync().await
            {
                tracing::warn!(recording_id = %live.id, error = %e, "spool sync failed at shutdown");
            }
        }
    }
}
