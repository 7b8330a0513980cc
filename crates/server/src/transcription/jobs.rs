//! One transcription slot: a worker process kept alive, and jobs run on it
//! one at a time, from claim to stored transcript (or retry, or failure).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use audiobook_wire::Transcript;

use super::protocol::{JobOptions, Request};
use super::text::index_words;
use super::worker::{Collector, JobFailure, JobResult, Worker};
use super::{Stats, Transcription};
use crate::config::StorageConfig;
use crate::db::transcripts::{DueTranscript, StoredTranscript};

/// Jobs looked at per pass for a claim.
const DUE_BATCH: u32 = 8;
/// Longest wait between two attempts to start a worker that keeps failing.
const MAX_START_BACKOFF: Duration = Duration::from_secs(300);

/// How a job ended on this slot.
enum Ended {
    Done(JobResult),
    Failed(JobFailure),
    /// The worker died, overran or broke the protocol: it is killed.
    WorkerBroke(String),
    /// The job is gone (its recording was deleted) or no longer ours.
    Gone,
    ShuttingDown,
}

/// A local copy of the audio that is removed when dropped.
struct TempAudio(PathBuf);

impl Drop for TempAudio {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Transcription {
    pub(super) async fn run_slot(self: Arc<Self>, slot: usize, mut shutdown: watch::Receiver<bool>) {
        let mut worker: Option<Worker> = None;
        let mut start_backoff = Duration::from_secs(1);
        loop {
            let stopping = *shutdown.borrow();
            if stopping {
                break;
            }
            if worker.as_mut().is_some_and(|w| !w.is_alive()) {
                tracing::warn!(slot, "the transcription worker died while idle; restarting it");
                worker = None;
                self.set_pid(slot, None);
            }
            if worker.is_none() {
                match Worker::start(&self.command, self.start_timeout()).await {
                    Ok(w) => {
                        tracing::info!(slot, pid = w.pid(), model = %w.model, engine = %w.engine, "transcription worker ready");
                        Stats::add(&self.stats.workers_started, "worker_started");
                        self.set_pid(slot, w.pid());
                        worker = Some(w);
                        start_backoff = Duration::from_secs(1);
                    }
                    Err(e) => {
                        tracing::warn!(slot, error = %e, retry_in_secs = start_backoff.as_secs(), "cannot start the transcription worker");
                        if sleep_or_stop(start_backoff, &mut shutdown).await {
                            break;
                        }
                        start_backoff = (start_backoff * 2).min(MAX_START_BACKOFF);
                        continue;
                    }
                }
            }
            let Some(job) = self.claim_next().await else {
                if sleep_or_stop(self.config.poll, &mut shutdown).await {
                    break;
                }
                continue;
            };
            let w = worker.as_mut().expect("a worker is running");
            let claimed = std::time::Instant::now();
            let ended = self.run_job(w, &job, &mut shutdown).await;
            if matches!(ended, Ended::Done(_)) {
                crate::telemetry::observe(crate::telemetry::TRANSCRIBE_SECONDS, claimed.elapsed());
            }
            let model = w.model.clone();
            // A worker that broke, overran or was cancelled is stopped first,
            // so it works on nothing once the job is settled.
            if !matches!(ended, Ended::Done(_) | Ended::Failed(_))
                && let Some(w) = worker.take()
            {
                self.set_pid(slot, None);
                w.kill().await;
            }
            self.settle(&job, ended, model).await;
        }
        if let Some(w) = worker.take() {
            w.kill().await;
        }
        self.set_pid(slot, None);
    }

    /// Claims the first due job another instance or slot did not take first.
    async fn claim_next(&self) -> Option<DueTranscript> {
        let due = match self.db.due_transcripts(DUE_BATCH).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list due transcripts");
                return None;
            }
        };
        for job in due {
            if job.status == "running" && job.attempts >= self.config.max_attempts {
                // Its instance died with it that often: do not try again.
                let why =
                    format!("transcribing was interrupted {} times (the server or its worker died)", job.attempts);
                if self.db.give_up_transcript(&job, &why).await.unwrap_or(false) {
                    tracing::warn!(recording_id = %job.record_id, attempts = job.attempts, "transcript failed: {why}");
                    Stats::add(&self.stats.jobs_failed, "failed");
                }
                continue;
            }
            match self.db.claim_transcript(&job, self.instance_id, self.config.lease).await {
                Ok(true) => return Some(job),
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(recording_id = %job.record_id, error = %e, "cannot claim a transcript");
                    return None;
                }
            }
        }
        None
    }

    /// Runs a claimed job on `worker` until it ends one way or another.
    async fn run_job(&self, worker: &mut Worker, job: &DueTranscript, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let started = tokio::time::Instant::now();
        let attempt = job.attempts + 1;
        tracing::info!(recording_id = %job.record_id, attempt, "transcribing");
        let audio = match self.audio_file(job).await {
            Ok(audio) => audio,
            Err(failure) => return Ended::Failed(failure),
        };
        let id = format!("{}:{attempt}", job.record_id);
        let request = Request::Transcribe {
            id: id.clone(),
            audio: audio.path.clone(),
            options: JobOptions { language: None, window_seconds: Some(self.config.window_secs) },
        };
        if let Err(e) = worker.send(&request).await {
            return Ended::WorkerBroke(e.to_string());
        }
        // Until the worker says how long the audio is: the record's duration,
        // or its size at 16 kbit/s (an overestimate for browser recordings).
        let known_ms = if job.duration_ms > 0 { job.duration_ms as u64 } else { job.size_bytes.max(0) as u64 / 2 };
        let mut collector = Collector::new(&id);
        let mut renew = tokio::time::interval((self.config.lease / 4).max(Duration::from_millis(100)));
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        // The worker only gets CPU that nothing else wants, so its budget is
        // counted in CPU time (a busy machine slows it without failing it);
        // the wall clock only catches a worker that hangs without working.
        let mut check = tokio::time::interval(Duration::from_secs(1));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let cpu_at_start = worker.cpu_secs();
        loop {
            let duration_ms = if collector.duration_ms() > 0 { collector.duration_ms() } else { known_ms };
            let budget = self.job_timeout(duration_ms);
            let wall_limit = if cpu_at_start.is_some() { budget * 10 } else { budget };
            tokio::select! {
                message = worker.next() => match message.and_then(|m| collector.feed(m)) {
                    Ok(None) => {}
                    Ok(Some(Ok(result))) => return Ended::Done(result),
                    Ok(Some(Err(failure))) => return Ended::Failed(failure),
                    Err(e) => return Ended::WorkerBroke(e.to_string()),
                },
                _ = renew.tick() => {
                    let progress = (duration_ms > 0).then(|| (collector.reached_ms() as f64 / duration_ms as f64).min(0.99));
                    match self.db.renew_transcript(job.record_id, self.instance_id, self.config.lease, progress).await {
                        Ok(true) => {}
                        Ok(false) => return Ended::Gone,
                        // The lease may lapse; another instance then takes the job over.
                        Err(e) => tracing::warn!(recording_id = %job.record_id, error = %e, "cannot renew a transcript's claim"),
                    }
                }
                _ = check.tick() => {
                    let used = worker.cpu_secs().zip(cpu_at_start).map(|(now, start)| now - start);
                    if used.is_some_and(|used| used > budget.as_secs_f64()) {
                        return Ended::WorkerBroke(format!(
                            "transcribing ran longer than {} CPU seconds for {} s of audio",
                            budget.as_secs_f64().ceil(), duration_ms / 1000
                        ));
                    }
                }
                _ = tokio::time::sleep_until(started + wall_limit) => {
                    return Ended::WorkerBroke(format!(
                        "transcribing took longer than {} s for {} s of audio",
                        wall_limit.as_secs_f64().ceil(), duration_ms / 1000
                    ));
                }
                _ = stopped(shutdown) => return Ended::ShuttingDown,
            }
        }
    }

    /// Records how a job ended.
    async fn settle(&self, job: &DueTranscript, ended: Ended, model: String) {
        let attempt = job.attempts + 1;
        let id = job.record_id;
        let (error, retry) = match ended {
            Ended::Done(result) => {
                let words: usize = result.segments.iter().map(|s| s.words.len()).sum();
                let (text, word_ms) = index_words(&result.segments);
                let transcript = Transcript {
                    recording_id: id,
                    language: result.language.clone(),
                    model: model.clone(),
                    segments: result.segments,
                };
                let stored = StoredTranscript {
                    model,
                    language: result.language,
                    segments_json: serde_json::to_string(&transcript).expect("transcripts serialize"),
                    text,
                    word_ms,
                };
                match self.db.finish_transcript(id, self.instance_id, &stored).await {
                    Ok(true) => {
                        Stats::add(&self.stats.jobs_done, "done");
                        tracing::info!(recording_id = %id, attempt, segments = transcript.segments.len(), words, "transcript ready");
                    }
                    Ok(false) => {
                        Stats::add(&self.stats.jobs_dropped, "dropped");
                        tracing::info!(recording_id = %id, "transcript dropped: its recording was deleted meanwhile");
                    }
                    Err(e) => {
                        tracing::warn!(recording_id = %id, error = %e, "cannot store a transcript; its claim lapses and it runs again")
                    }
                }
                return;
            }
            Ended::Gone => {
                Stats::add(&self.stats.jobs_dropped, "dropped");
                tracing::info!(recording_id = %id, "transcription cancelled: the recording was deleted (or the job taken over)");
                return;
            }
            Ended::ShuttingDown => {
                let _ = self.db.release_transcript(id, self.instance_id).await;
                tracing::info!(recording_id = %id, "transcription handed back at shutdown");
                return;
            }
            Ended::Failed(failure) => (failure.error, failure.retry),
            Ended::WorkerBroke(error) => (error, true),
        };
        Stats::add(&self.stats.attempts_failed, "attempt_failed");
        let give_up = !retry || attempt >= self.config.max_attempts;
        let retry_after = (!give_up).then(|| self.backoff(attempt));
        match self.db.transcript_attempt_failed(id, self.instance_id, &error, retry_after).await {
            Ok(true) if give_up => {
                Stats::add(&self.stats.jobs_failed, "failed");
                tracing::warn!(recording_id = %id, attempt, %error, "transcript failed");
            }
            Ok(true) => tracing::warn!(
                recording_id = %id, attempt, %error, retry_in_secs = retry_after.unwrap_or_default().as_secs(),
                "transcription attempt failed; retrying later"
            ),
            Ok(false) => Stats::add(&self.stats.jobs_dropped, "dropped"),
            Err(e) => tracing::warn!(recording_id = %id, error = %e, "cannot record a failed transcription"),
        }
    }

    /// The recording's audio as a local file: the stored file itself with a
    /// local folder, a temporary download with S3.
    async fn audio_file(&self, job: &DueTranscript) -> Result<AudioFile, JobFailure> {
        let missing = |why: &str| JobFailure { error: why.to_string(), retry: false };
        let key = job.storage_key.as_deref().ok_or_else(|| missing("the recording has no stored audio"))?;
        let safe = !key.is_empty() && !key.starts_with('/') && key.split('/').all(|part| part != ".." && part != ".");
        if !safe {
            return Err(missing("the recording's storage key is not a plain relative path"));
        }
        match &self.storage_config {
            StorageConfig::Local { dir } => {
                let path = dir.join(key);
                if !path.is_file() {
                    return Err(missing("the recording's audio file is missing from STORAGE_DIR"));
                }
                Ok(AudioFile { path, _temp: None })
            }
            StorageConfig::S3 { .. } => {
                let ext = Path::new(key).extension().and_then(|e| e.to_str()).unwrap_or("bin");
                let path = std::env::temp_dir().join(format!("audiobook-transcribe-{}.{ext}", uuid::Uuid::new_v4()));
                let temp = TempAudio(path.clone());
                let limit = crate::recording::finalize::upload_timeout(job.size_bytes.max(0) as u64);
                match tokio::time::timeout(limit, self.download(key, &path)).await {
                    Ok(Ok(())) => Ok(AudioFile { path, _temp: Some(temp) }),
                    Ok(Err(e)) => Err(JobFailure { error: format!("cannot download the audio: {e}"), retry: true }),
                    Err(_) => Err(JobFailure { error: "downloading the audio timed out".into(), retry: true }),
                }
            }
        }
    }

    async fn download(&self, key: &str, path: &Path) -> Result<(), String> {
        let read = self.storage.get(key, None).await.map_err(|e| e.to_string())?;
        let mut file = tokio::fs::File::create(path).await.map_err(|e| e.to_string())?;
        let mut stream = read.stream;
        while let Some(bytes) = stream.next().await {
            file.write_all(&bytes.map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
        }
        file.flush().await.map_err(|e| e.to_string())
    }
}

/// The audio's path, and the temporary copy to remove afterwards if it is one.
struct AudioFile {
    path: PathBuf,
    _temp: Option<TempAudio>,
}

/// Resolves once the server is stopping.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Sleeps for `wait`; `true` if the server is stopping.
async fn sleep_or_stop(wait: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stopped(shutdown) => {}
    }
    *shutdown.borrow()
}
