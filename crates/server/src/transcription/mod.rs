//! Transcripts, made on this server: a worker process (`transcriber/`,
//! faster-whisper today) spoken to over a small protocol ([`protocol`]), so
//! another engine can replace it without touching the rest.
//!
//! A take that becomes `ready` gets a job in the database (a trigger, while
//! some instance with transcription on has said so). Each of
//! `TRANSCRIPTION_WORKERS` slots here keeps one worker process alive (at the
//! lowest CPU priority, restarted when it dies) and runs one job at a time
//! ([`jobs`]): claim it with a lease (one instance per job), hand the worker
//! a local copy of the audio, renew the lease while it works (a deleted
//! recording cancels the job), store the result, or retry with a backoff and
//! give up with a reason after a few attempts.

pub mod formats;
mod jobs;
pub mod protocol;
pub mod text;
pub mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::config::{Config, StorageConfig, TranscriptionConfig};
use crate::db::Db;
use crate::storage::Storage;
use worker::WorkerCommand;

/// What the transcription slots did since start (for tests and logs).
#[derive(Debug, Default)]
pub struct Stats {
    pub workers_started: AtomicU64,
    pub jobs_done: AtomicU64,
    /// Attempts that failed (each retried or given up).
    pub attempts_failed: AtomicU64,
    /// Jobs given up as `failed`.
    pub jobs_failed: AtomicU64,
    /// Jobs cancelled because their recording was deleted meanwhile.
    pub jobs_dropped: AtomicU64,
}

impl Stats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Counts `event` here and in the metrics (`GET /metrics`).
    fn add(counter: &AtomicU64, event: &'static str) {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(crate::telemetry::TRANSCRIPTION_EVENTS, "event" => event).increment(1);
    }
}

pub struct Transcription {
    db: Db,
    storage: Storage,
    storage_config: StorageConfig,
    config: TranscriptionConfig,
    instance_id: Uuid,
    command: WorkerCommand,
    pub stats: Stats,
    /// Each slot's worker process, while it has one.
    pids: Mutex<Vec<Option<u32>>>,
}

impl Transcription {
    /// The service, when this instance transcribes (`TRANSCRIPTION` on and a
    /// worker command set).
    pub fn new(config: &Config, db: Db, storage: Storage, instance_id: Uuid) -> Option<Arc<Transcription>> {
        let t = &config.transcription;
        let argv = t.command.clone().filter(|argv| !argv.is_empty() && t.enabled)?;
        Some(Arc::new(Transcription {
            db,
            storage,
            storage_config: config.storage.clone(),
            config: t.clone(),
            instance_id,
            command: WorkerCommand { argv, model: t.model.clone(), threads: t.threads },
            stats: Stats::default(),
            pids: Mutex::new(vec![None; t.workers]),
        }))
    }

    /// Runs the worker slots until `shutdown`; a running job is handed back
    /// (due at once, its attempt not counted) and the workers are stopped.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        tracing::info!(
            workers = self.config.workers, command = %self.command.argv.join(" "),
            model = self.config.model.as_deref().unwrap_or("bundled tiny.en"), "transcription on"
        );
        let slots: Vec<_> =
            (0..self.config.workers).map(|slot| tokio::spawn(self.clone().run_slot(slot, shutdown.clone()))).collect();
        for slot in slots {
            let _ = slot.await;
        }
    }

    /// The worker processes running now.
    pub fn worker_pids(&self) -> Vec<u32> {
        self.pids.lock().expect("pids").iter().flatten().copied().collect()
    }

    fn set_pid(&self, slot: usize, pid: Option<u32>) {
        self.pids.lock().expect("pids")[slot] = pid;
    }

    /// How long a worker may take to load its model (a model name may have
    /// to be downloaded first).
    fn start_timeout(&self) -> Duration {
        match &self.config.model {
            Some(m) if !std::path::Path::new(m).is_dir() => Duration::from_secs(1800),
            _ => Duration::from_secs(120),
        }
    }

    /// The wait before retry `attempt` (1, 2, ...): doubling, at most 10 minutes.
    fn backoff(&self, attempt: i32) -> Duration {
        (self.config.retry_after * 2u32.pow(attempt.clamp(1, 10) as u32 - 1)).min(Duration::from_secs(600))
    }

    /// How long a job on `duration_ms` of audio may run before it is killed.
    fn job_timeout(&self, duration_ms: u64) -> Duration {
        self.config.min_job_timeout + Duration::from_millis(duration_ms).mul_f64(self.config.timeout_factor)
    }
}
