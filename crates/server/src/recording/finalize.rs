//! Finalizing a take: fix the container (WebM gets a Duration and Cues),
//! upload the file to storage, record the result, and only then delete the
//! spool. If the upload fails the record is `pending` and the spool stays
//! until a later retry succeeds.

use std::path::Path;
use std::time::Duration;

use uuid::Uuid;

use crate::db::{Db, FinishedRecording, RecordRow, StoredStatus};
use crate::storage::Storage;

use super::spool::SpoolPaths;
use super::{RecordingError, RecordingResult};

/// A take whose spool is closed and ready to be stored.
#[derive(Debug, Clone)]
pub struct Take {
    pub id: Uuid,
    pub user_id: Uuid,
    pub mime_type: String,
    pub paths: SpoolPaths,
}

/// What the container fix produced: the file to upload and what we learnt.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub fixed: bool,
    pub duration_ms: u64,
    pub size_bytes: u64,
}

/// Fixes the container where we know how, on a blocking thread (it streams
/// the file twice). Audio we cannot parse is kept byte for byte.
pub async fn prepare(paths: &SpoolPaths) -> std::io::Result<Prepared> {
    let paths = paths.clone();
    tokio::task::spawn_blocking(move || prepare_blocking(&paths)).await.map_err(std::io::Error::other)?
}

fn prepare_blocking(paths: &SpoolPaths) -> std::io::Result<Prepared> {
    let _ = std::fs::remove_file(&paths.fixed);
    match audiobook_media::fix_recording(&paths.data, &paths.fixed, &audiobook_media::FixOptions::default()) {
        Ok(outcome) => {
            Ok(Prepared { fixed: outcome.written, duration_ms: outcome.duration_ms, size_bytes: outcome.size_bytes })
        }
        Err(e) => {
            tracing::warn!(path = %paths.data.display(), error = %e, "recording not fixable; storing it as received");
            let _ = std::fs::remove_file(&paths.fixed);
            let duration_ms = audiobook_media::probe_duration_ms(&paths.data).unwrap_or(0);
            Ok(Prepared { fixed: false, duration_ms, size_bytes: std::fs::metadata(&paths.data)?.len() })
        }
    }
}

/// The storage key of a recording: by user, with an extension players like.
pub fn storage_key(user_id: Uuid, id: Uuid, mime_type: &str) -> String {
    format!("recordings/{user_id}/{id}.{}", extension_for(mime_type))
}

pub fn extension_for(mime_type: &str) -> &'static str {
    let base = mime_type.split(';').next().unwrap_or("").trim();
    match base {
        "audio/webm" | "video/webm" => "webm",
        "audio/mp4" | "audio/x-m4a" | "audio/aac" | "video/mp4" => "m4a",
        "audio/ogg" | "audio/opus" => "ogg",
        "audio/wav" | "audio/x-wav" | "audio/wave" => "wav",
        "audio/mpeg" => "mp3",
        _ => "bin",
    }
}

/// How long an upload may take before the attempt counts as failed: two
/// minutes plus the time at 2 MB/s (a stalled bucket must not hold a stop,
/// nor a retry slot, forever).
pub fn upload_timeout(bytes: u64) -> Duration {
    Duration::from_secs(120 + bytes / 2_000_000)
}

/// How long one database statement of a finalize may take.
const DB_TIMEOUT: Duration = Duration::from_secs(30);

async fn within<T, E: Into<RecordingError>>(
    limit: Duration,
    what: &str,
    step: impl std::future::Future<Output = Result<T, E>>,
) -> RecordingResult<T> {
    match tokio::time::timeout(limit, step).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what} took longer than {} s", limit.as_secs()),
        )
        .into()),
    }
}

/// Fixes, uploads and records a take as `outcome` (ready or interrupted);
/// `pending` with the spool kept if the storage does not confirm the upload.
/// `as_received` skips the container fix (the fallback after failed attempts).
///
/// The order makes a crash at any point safe: the spool is flushed first, the
/// stored file is complete and flushed (with its folder entry) before the row
/// says so, and the spool is removed only after the row is committed.
pub async fn finalize(
    db: &Db,
    storage: &Storage,
    take: &Take,
    outcome: StoredStatus,
    as_received: bool,
) -> RecordingResult<RecordRow> {
    let started = std::time::Instant::now();
    flush(&take.paths.data).await?;
    let prepared = if as_received {
        Prepared { fixed: false, duration_ms: 0, size_bytes: tokio::fs::metadata(&take.paths.data).await?.len() }
    } else {
        prepare(&take.paths).await?
    };
    let prepared_at = started.elapsed();
    let key = storage_key(take.user_id, take.id, &take.mime_type);
    let source = if prepared.fixed { &take.paths.fixed } else { &take.paths.data };
    if prepared.fixed {
        flush(source).await?;
    }
    let upload = tokio::time::timeout(
        upload_timeout(prepared.size_bytes),
        storage.put_file(&key, source, &crate::media_type::safe_audio_type(&take.mime_type)),
    )
    .await;
    let uploaded_at = started.elapsed();
    let (status, outcome_col) = match upload {
        Ok(Ok(_)) => (outcome, None),
        Ok(Err(e)) => {
            crate::telemetry::storage_error();
            tracing::warn!(recording_id = %take.id, error = %e, "upload failed; the record stays pending and is retried");
            (StoredStatus::Pending, Some(outcome))
        }
        Err(_) => {
            crate::telemetry::storage_error();
            tracing::warn!(recording_id = %take.id, "upload timed out; the record stays pending and is retried");
            (StoredStatus::Pending, Some(outcome))
        }
    };
    let finished = FinishedRecording {
        status,
        outcome: outcome_col,
        storage_key: key,
        mime_type: take.mime_type.clone(),
        size_bytes: prepared.size_bytes,
        duration_ms: prepared.duration_ms,
        peaks: read_peaks(&take.paths.peaks),
    };
    let row = within(DB_TIMEOUT, "saving the record", db.finish_recording(take.id, &finished))
        .await?
        .ok_or(RecordingError::NotFound(take.id))?;
    if status != StoredStatus::Pending {
        take.paths.remove();
    }
    crate::telemetry::observe(crate::telemetry::FINALIZE_SECONDS, started.elapsed());
    tracing::info!(
        recording_id = %take.id, user_id = %take.user_id, status = status.as_str(),
        bytes = prepared.size_bytes, duration_ms = prepared.duration_ms, fixed = prepared.fixed, as_received,
        prepare_ms = prepared_at.as_millis() as u64,
        upload_ms = (uploaded_at - prepared_at).as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "recording finalized"
    );
    Ok(row)
}

/// Flushes a spool file to the disk itself.
async fn flush(path: &Path) -> std::io::Result<()> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(path)?.sync_data()).await.map_err(std::io::Error::other)?
}

/// The take's waveform peaks (bounded: about 2 hours at 10 peaks a second).
fn read_peaks(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut peaks = Vec::new();
    std::fs::File::open(path).ok()?.take(100_000).read_to_end(&mut peaks).ok()?;
    (!peaks.is_empty()).then_some(peaks)
}

/// Retries the upload of a pending record from its spool.
pub async fn retry_upload(db: &Db, storage: &Storage, row: &RecordRow, paths: &SpoolPaths) -> RecordingResult<()> {
    let source = if paths.fixed.exists() { &paths.fixed } else { &paths.data };
    if !source.exists() {
        return Err(RecordingError::SpoolMissing(row.id));
    }
    let key = row.storage_key.clone().unwrap_or_else(|| storage_key(row.user_id, row.id, &row.mime_type));
    let size = tokio::fs::metadata(source).await?.len();
    within(upload_timeout(size), "the upload", async {
        storage
            .put_file(&key, source, &crate::media_type::safe_audio_type(&row.mime_type))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
    })
    .await?;
    let outcome = row.outcome.as_deref().map(StoredStatus::parse).unwrap_or(StoredStatus::Ready);
    let finished = FinishedRecording {
        status: outcome,
        outcome: None,
        storage_key: key,
        mime_type: row.mime_type.clone(),
        size_bytes: row.size_bytes as u64,
        duration_ms: row.duration_ms as u64,
        peaks: None,
    };
    within(DB_TIMEOUT, "saving the record", db.finish_recording(row.id, &finished)).await?;
    paths.remove();
    tracing::info!(recording_id = %row.id, "pending upload confirmed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_extensions() {
        assert_eq!(extension_for("audio/webm;codecs=opus"), "webm");
        assert_eq!(extension_for("audio/mp4"), "m4a");
        assert_eq!(extension_for("application/octet-stream"), "bin");
        let (u, r) = (Uuid::nil(), Uuid::max());
        assert_eq!(storage_key(u, r, "audio/webm"), format!("recordings/{u}/{r}.webm"));
    }

    #[tokio::test]
    async fn unknown_audio_is_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SpoolPaths::new(dir.path(), Uuid::new_v4());
        std::fs::write(&paths.data, b"not a container at all").unwrap();
        let p = prepare(&paths).await.unwrap();
        assert_eq!(p, Prepared { fixed: false, duration_ms: 0, size_bytes: 22 });
    }
}
