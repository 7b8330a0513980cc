//! The recording pipeline, independent of any transport: open a recording,
//! append chunk `seq` (a repeat is acknowledged again and not written twice,
//! a gap is refused), resume, finalize, expire.
//!
//! A chunk travels: `realtime` handler → [`Recordings::append`] → the
//! recording's [`spool::Spool`] on disk → acknowledged. At stop,
//! [`finalize`] fixes the container and hands the file to `storage`.

pub mod finalize;
pub mod spool;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::config::Limits;
use crate::db::{Db, NewRecording, RecordRow, StoredStatus};
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
    TooManyLive { max: usize },
    #[error("Chunks {next_seq}..{expected} have not arrived yet; send them before stopping.")]
    MissingChunks { next_seq: u64, expected: u64 },
    #[error("Nothing was recorded yet.")]
    Empty,
    #[error("Recording {0} is already saved.")]
    AlreadySaved(Uuid),
    #[error("Recording {0} is being saved; try again in a moment.")]
    Busy(Uuid),
    #[error("The recording's data is not on this server; reconnect to try another one.")]
    SpoolMissing(Uuid),
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
            _ => None,
        }
    }
}

pub type RecordingResult<T> = Result<T, RecordingError>;

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
    spool: Spool,
    last_activity: Instant,
    /// Sockets currently using this recording.
    attached: u32,
    /// Set once finalizing started: later appends are refused.
    closed: bool,
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
    /// Serializes loading a recording from the spool, so two sockets resuming
    /// the same take at once get one `Live`.
    loading: Mutex<()>,
    /// Pending uploads: failed attempts and when to try next (exponential backoff).
    upload_backoff: SyncMutex<HashMap<Uuid, (u32, Instant)>>,
}

impl Recordings {
    pub fn new(db: Db, storage: Storage, limits: Limits, spool_dir: std::path::PathBuf) -> Recordings {
        Recordings {
            db,
            storage,
            limits,
            spool_dir,
            instance_id: Uuid::new_v4(),
            live: SyncMutex::new(HashMap::new()),
            loading: Mutex::new(()),
            upload_backoff: SyncMutex::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn get_live(&self, id: Uuid) -> Option<Arc<Held>> {
        self.live.lock().expect("live map").get(&id).cloned()
    }

    /// How many takes this instance holds open (for logs and the benchmark).
    pub fn live_count(&self) -> usize {
        self.live.lock().expect("live map").len()
    }

    /// Opens a new recording for `user_id`.
    pub async fn open(&self, user_id: Uuid, mime_type: &str, name: Option<&str>) -> RecordingResult<Uuid> {
        let max = self.limits.max_live_recordings_per_user;
        // Closed takes leave the map as they close, so this count is exact.
        let held = self.live.lock().expect("live map").values().filter(|h| h.user_id == user_id).count();
        if held >= max {
            return Err(RecordingError::TooManyLive { max });
        }
        let id = Uuid::new_v4();
        let name = match name.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => n.chars().take(audiobook_wire::MAX_RECORDING_NAME_CHARS).collect(),
            None => format!("Recording {}", self.db.count_records(user_id).await? + 1),
        };
        let mime_type = normalize_mime(mime_type);
        let spool = Spool::create(&self.spool_dir, id)?;
        self.db
            .insert_recording(&NewRecording {
                id,
                user_id,
                name,
                mime_type: mime_type.clone(),
                owner_instance: self.instance_id,
            })
            .await?;
        let live = Live { id, mime_type, spool, last_activity: Instant::now(), attached: 0, closed: false };
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
        let _guard = self.loading.lock().await;
        if let Some(held) = self.get_live(id) {
            // Loaded meanwhile by another socket: the owner check applies all the same.
            return held.owned_by(user_id, id);
        }
        let row = self.db.record(id).await?.ok_or(RecordingError::NotFound(id))?;
        if row.user_id != user_id {
            return Err(RecordingError::NotYours(id));
        }
        match row.status() {
            StoredStatus::Recording => {}
            StoredStatus::Finalizing => return Err(RecordingError::Busy(id)),
            _ => return Err(RecordingError::AlreadySaved(id)),
        }
        let spool = Spool::recover(&self.spool_dir, id).map_err(|e| {
            tracing::warn!(recording_id = %id, error = %e, "cannot reopen spool");
            RecordingError::SpoolMissing(id)
        })?;
        if !self.db.take_over(id, self.instance_id).await? {
            // Claimed for finalizing between our read and now.
            return Err(RecordingError::Busy(id));
        }
        tracing::info!(recording_id = %id, chunks = spool.chunks, bytes = spool.bytes, "recording taken over from spool");
        let live =
            Live { id, mime_type: row.mime_type, spool, last_activity: Instant::now(), attached: 0, closed: false };
        let held = Held::new(user_id, live);
        self.live.lock().expect("live map").insert(id, held.clone());
        Ok(held)
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
        let held = self.live_of(user_id, id).await?;
        let mut live = held.live.lock().await;
        if live.closed {
            return Err(RecordingError::AlreadySaved(id));
        }
        live.last_activity = Instant::now();
        let expected = live.spool.chunks;
        let seq = seq.unwrap_or(expected);
        if seq < expected {
            // A retry of a chunk already stored: acknowledge it again, write nothing.
            return Ok(Progress { recording_id: id, seq, next_seq: expected, received_bytes: live.spool.bytes });
        }
        if seq > expected {
            return Err(RecordingError::Gap { got: seq, expected });
        }
        if live.spool.bytes + data.len() as u64 > self.limits.max_recording_bytes {
            return Err(RecordingError::RecordingTooLarge { max: self.limits.max_recording_bytes, next_seq: expected });
        }
        // A chunk is about a second: more than a few hundred peaks is not a waveform.
        let peaks = peaks.map(|mut p| {
            p.truncate(MAX_PEAKS_PER_CHUNK);
            p
        });
        live.spool.append(data, peaks).await?;
        Ok(Progress { recording_id: id, seq, next_seq: live.spool.chunks, received_bytes: live.spool.bytes })
    }

    /// Where a take stands, so a reconnected client knows what to send next.
    pub async fn resume(&self, user_id: Uuid, id: Uuid) -> RecordingResult<Progress> {
        let held = self.live_of(user_id, id).await?;
        let mut live = held.live.lock().await;
        if live.closed {
            return Err(RecordingError::AlreadySaved(id));
        }
        live.last_activity = Instant::now();
        Ok(Progress {
            recording_id: id,
            seq: live.spool.chunks,
            next_seq: live.spool.chunks,
            received_bytes: live.spool.bytes,
        })
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
    /// loses nothing that was acknowledged.
    pub async fn detach(&self, id: Uuid) {
        if let Some(held) = self.get_live(id) {
            let mut live = held.live.lock().await;
            live.attached = live.attached.saturating_sub(1);
            live.last_activity = Instant::now();
            if let Err(e) = live.spool.sync().await {
                tracing::warn!(recording_id = %id, error = %e, "spool sync failed");
            }
        }
    }

    /// Stops a take: checks that every chunk the client sent arrived, fixes
    /// the container, stores it and returns the saved record. Stopping a
    /// take that is already saved returns it again (a retried stop).
    pub async fn stop(&self, user_id: Uuid, id: Uuid, expected_chunks: Option<u64>) -> RecordingResult<RecordRow> {
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
        if let Some(expected) = expected_chunks
            && expected > guard.spool.chunks
        {
            return Err(RecordingError::MissingChunks { next_seq: guard.spool.chunks, expected });
        }
        if guard.spool.chunks == 0 {
            return Err(RecordingError::Empty);
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
            live.closed = true;
            self.live.lock().expect("live map").remove(&live.id);
            tracing::info!(recording_id = %live.id, "take is held elsewhere now; dropped here");
            return Err(RecordingError::Busy(live.id));
        }
        live.closed = true;
        self.live.lock().expect("live map").remove(&live.id);
        let result = finalize::finalize(
            &self.db,
            &self.storage,
            &finalize::Take {
                id: live.id,
                user_id,
                mime_type: live.mime_type.clone(),
                paths: live.spool.paths.clone(),
            },
            outcome,
        )
        .await;
        if let Err(e) = &result {
            tracing::error!(recording_id = %live.id, error = %e, "finalize failed; the reaper will retry");
        }
        result
    }

    /// One pass of the reaper: keeps this instance's takes alive in the
    /// database, finalizes abandoned takes as `interrupted` (here, and those
    /// of instances that stopped answering), and retries pending uploads.
    pub async fn reap(&self) {
        if let Err(e) = self.db.heartbeat(self.instance_id).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        if let Err(e) = self.db.checkpoint().await {
            tracing::warn!(error = %e, "database checkpoint failed");
        }
        let now = Instant::now();
        let candidates: Vec<_> = self.live.lock().expect("live map").values().cloned().collect();
        for held in candidates {
            let Ok(mut live) = held.live.try_lock() else { continue };
            let idle = now.duration_since(live.last_activity);
            let expired = if live.attached == 0 {
                idle >= self.limits.recording_grace
            } else {
                idle >= self.limits.recording_idle_timeout
            };
            if expired && !live.closed {
                tracing::info!(recording_id = %live.id, idle_secs = idle.as_secs(), "finalizing an abandoned take as interrupted");
                if let Err(e) = self.close_and_finalize(held.user_id, &mut live, StoredStatus::Interrupted).await {
                    tracing::warn!(recording_id = %live.id, error = %e, "could not finalize abandoned take");
                }
            }
        }
        self.reap_orphans().await;
        self.retry_pending().await;
    }

    /// Takes whose holder went silent (killed, crashed, or this process
    /// before a restart) and nobody resumed within the grace period.
    async fn reap_orphans(&self) {
        let grace = chrono::Duration::from_std(self.limits.recording_grace).unwrap_or(chrono::Duration::MAX);
        let before = crate::db::now() - grace;
        let rows = match self.db.stale_recordings(before).await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!(error = %e, "cannot list stale recordings"),
        };
        for row in rows {
            if self.get_live(row.id).is_some() {
                continue;
            }
            let paths = spool::SpoolPaths::new(&self.spool_dir, row.id);
            if !paths.exists() {
                continue; // held on another machine's disk; that instance's reaper will see it
            }
            if !self.db.claim_orphan(row.id, self.instance_id, before).await.unwrap_or(false) {
                continue; // resumed, or claimed by another instance, meanwhile
            }
            // A stop that failed half-way keeps its intended outcome.
            let outcome = row.outcome.as_deref().map(StoredStatus::parse).unwrap_or(StoredStatus::Interrupted);
            // A crash between writing a chunk and its index entry leaves a torn tail: recover first.
            if let Err(e) = Spool::recover(&self.spool_dir, row.id) {
                tracing::warn!(recording_id = %row.id, error = %e, "cannot recover spool");
                continue;
            }
            tracing::info!(recording_id = %row.id, outcome = outcome.as_str(), "finalizing an orphaned take");
            let take = finalize::Take { id: row.id, user_id: row.user_id, mime_type: row.mime_type.clone(), paths };
            if let Err(e) = finalize::finalize(&self.db, &self.storage, &take, outcome).await {
                tracing::warn!(recording_id = %row.id, error = %e, "could not finalize orphaned take");
            }
        }
    }

    async fn retry_pending(&self) {
        let rows = match self.db.pending_uploads().await {
            Ok(rows) => rows,
            Err(e) => return tracing::warn!(error = %e, "cannot list pending uploads"),
        };
        let now = Instant::now();
        for row in rows {
            let due = self.upload_backoff.lock().expect("backoff map").get(&row.id).is_none_or(|(_, at)| *at <= now);
            if !due {
                continue;
            }
            let paths = spool::SpoolPaths::new(&self.spool_dir, row.id);
            match finalize::retry_upload(&self.db, &self.storage, &row, &paths).await {
                Ok(()) => {
                    self.upload_backoff.lock().expect("backoff map").remove(&row.id);
                }
                Err(e) => {
                    let mut backoff = self.upload_backoff.lock().expect("backoff map");
                    let attempts = backoff.get(&row.id).map_or(0, |(a, _)| *a) + 1;
                    // 1 s, 2 s, 4 s ... up to 5 minutes between attempts.
                    let delay = Duration::from_secs(1 << attempts.min(8)).min(Duration::from_secs(300));
                    backoff.insert(row.id, (attempts, now + delay));
                    tracing::warn!(recording_id = %row.id, attempts, retry_in_secs = delay.as_secs(), error = %e, "upload still failing");
                }
            }
        }
    }

    /// Runs the reaper until `shutdown` resolves.
    pub async fn run_reaper(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let tick = (self.limits.recording_grace / 5).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = interval.tick() => self.reap().await,
            }
        }
    }

    /// Flushes every live spool (at shutdown): the takes stay resumable after
    /// the restart, and are finalized as interrupted if nobody comes back.
    pub async fn sync_all(&self) {
        let all: Vec<_> = self.live.lock().expect("live map").values().cloned().collect();
        for held in all {
            let live = held.live.lock().await;
            if let Err(e) = live.spool.sync().await {
                tracing::warn!(recording_id = %live.id, error = %e, "spool sync failed at shutdown");
            }
        }
    }
}

/// Lower-cases a MIME type and keeps it printable; an empty one becomes
/// `application/octet-stream`.
fn normalize_mime(mime: &str) -> String {
    let m: String = mime.trim().chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(100).collect();
    if m.is_empty() { "application/octet-stream".into() } else { m.to_ascii_lowercase() }
}
