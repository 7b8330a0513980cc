//! Finalizing a take: fix the container (`crates/media`: WebM gets a
//! Duration, Cues and sized clusters; fragmented MP4 its durations, an index
//! and no duplicate boxes, and the paused spans cut when its recorder
//! ignored `pause()`), upload the file to storage, record the result, and
//! only then delete the spool. If the upload fails the record is `pending`
//! and the spool stays until a later retry succeeds.

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
    /// Peaks measured from the samples (lossless takes); otherwise the
    /// client's, from the spool.
    pub peaks: Option<Vec<u8>>,
    /// Set when the take cannot be stored as the type it declared (a
    /// lossless take that is not a valid WAV is stored as opaque bytes).
    pub mime_type: Option<String>,
}

impl Prepared {
    fn as_received(size_bytes: u64) -> Prepared {
        Prepared { fixed: false, duration_ms: 0, size_bytes, peaks: None, mime_type: None }
    }
}

/// The client's account of a take: where it paused and how long it really
/// recorded. Kept beside the spool from the stop on, so a retried finalize
/// cuts the same spans.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timeline {
    pub paused_ms: Vec<[u64; 2]>,
    pub recorded_ms: u64,
}

impl Timeline {
    /// The timeline of a stop, if it is plausible: spans in order, each
    /// non-empty, within a day, at most `MAX_PAUSES` of them.
    pub fn from_stop(paused_ms: Option<&[[u64; 2]]>, recorded_ms: Option<u64>) -> Option<Timeline> {
        const DAY_MS: u64 = 24 * 3600 * 1000;
        let (paused_ms, recorded_ms) = (paused_ms?, recorded_ms?);
        let ordered = paused_ms.windows(2).all(|w| w[0][1] <= w[1][0]);
        let sane = paused_ms.iter().all(|[a, b]| a < b && *b <= DAY_MS);
        (!paused_ms.is_empty()
            && paused_ms.len() <= audiobook_wire::MAX_PAUSES
            && ordered
            && sane
            && recorded_ms <= DAY_MS)
            .then(|| Timeline { paused_ms: paused_ms.to_vec(), recorded_ms })
    }

    fn paused_total(&self) -> u64 {
        self.paused_ms.iter().map(|[a, b]| b - a).sum()
    }

    /// Whether a file of `media_ms` kept the paused spans: it is then closer
    /// to the wall time (recorded plus paused) than to the time recorded.
    pub fn pause_was_ignored(&self, media_ms: u64) -> bool {
        let wall = self.recorded_ms + self.paused_total();
        media_ms.abs_diff(wall) < media_ms.abs_diff(self.recorded_ms)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, serde_json::to_vec(self).map_err(std::io::Error::other)?)
    }

    fn read(path: &Path) -> Option<Timeline> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

/// Fixes the container where we know how, on a blocking thread (it streams
/// the file twice). Audio we cannot parse is kept byte for byte.
pub async fn prepare(paths: &SpoolPaths, mime_type: &str) -> std::io::Result<Prepared> {
    let paths = paths.clone();
    let lossless = mime_type == super::LOSSLESS_TYPE;
    tokio::task::spawn_blocking(move || if lossless { prepare_wav(&paths) } else { prepare_blocking(&paths) })
        .await
        .map_err(std::io::Error::other)?
}

/// A lossless take: its WAV written with `hound` from the samples the spool
/// holds (every acknowledged one, whether the take was stopped, interrupted
/// or recovered after a crash), with exact sizes, duration and peaks. The
/// append checks make a failure here unlikely; if it happens anyway, the
/// bytes are kept as received but never served as `audio/wav`.
fn prepare_wav(paths: &SpoolPaths) -> std::io::Result<Prepared> {
    let _ = std::fs::remove_file(&paths.fixed);
    match audiobook_media::fix_wav_file(&paths.data, &paths.fixed) {
        Ok(r) => Ok(Prepared {
            fixed: true,
            duration_ms: r.duration_ms,
            size_bytes: r.output_bytes,
            peaks: (!r.peaks.is_empty()).then_some(r.peaks),
            mime_type: None,
        }),
        Err(audiobook_media::MediaError::Io(e)) => Err(e),
        Err(e) => {
            tracing::warn!(path = %paths.data.display(), error = %e, "lossless take is not a valid WAV; stored as opaque bytes");
            let _ = std::fs::remove_file(&paths.fixed);
            Ok(Prepared {
                mime_type: Some(crate::media_type::OPAQUE.to_string()),
                ..Prepared::as_received(std::fs::metadata(&paths.data)?.len())
            })
        }
    }
}

fn prepare_blocking(paths: &SpoolPaths) -> std::io::Result<Prepared> {
    let _ = std::fs::remove_file(&paths.fixed);
    let fixed = audiobook_media::fix_recording(&paths.data, &paths.fixed, &audiobook_media::FixOptions::default());
    // A recorder that ignored pause(): fix again without the paused spans.
    let fixed = match (fixed, Timeline::read(&paths.timeline)) {
        (Ok(outcome), Some(timeline))
            if outcome.kind == audiobook_media::ContainerKind::Mp4
                && timeline.pause_was_ignored(outcome.duration_ms) =>
        {
            let cut_ms = timeline.paused_ms.iter().map(|[a, b]| *a..*b).collect();
            let _ = std::fs::remove_file(&paths.fixed);
            let cut =
                audiobook_media::fix_recording(&paths.data, &paths.fixed, &audiobook_media::FixOptions { cut_ms });
            if let Ok(c) = &cut {
                tracing::info!(
                    path = %paths.data.display(), removed_ms = c.removed_ms, duration_ms = c.duration_ms,
                    "the recorder ignored pause(); the paused spans were cut"
                );
            }
            cut
        }
        (fixed, _) => fixed,
    };
    match fixed {
        Ok(outcome) => Ok(Prepared {
            fixed: outcome.written,
            duration_ms: outcome.duration_ms,
            size_bytes: outcome.size_bytes,
            ..Prepared::as_received(0)
        }),
        Err(e) => {
            tracing::warn!(path = %paths.data.display(), error = %e, "recording not fixable; storing it as received");
            let _ = std::fs::remove_file(&paths.fixed);
            let duration_ms = audiobook_media::probe_duration_ms(&paths.data).unwrap_or(0);
            Ok(Prepared { duration_ms, ..Prepared::as_received(std::fs::metadata(&paths.data)?.len()) })
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
        let mut p = Prepared::as_received(tokio::fs::metadata(&take.paths.data).await?.len());
        if take.mime_type == super::LOSSLESS_TYPE {
            // Not rewritten: its header's sizes are placeholders, so it is not served as a WAV.
            p.mime_type = Some(crate::media_type::OPAQUE.to_string());
        }
        p
    } else {
        prepare(&take.paths, &take.mime_type).await?
    };
    let prepared_at = started.elapsed();
    let mime_type = prepared.mime_type.clone().unwrap_or_else(|| take.mime_type.clone());
    let key = storage_key(take.user_id, take.id, &mime_type);
    let source = if prepared.fixed { &take.paths.fixed } else { &take.paths.data };
    if prepared.fixed {
        flush(source).await?;
    }
    let upload = tokio::time::timeout(
        upload_timeout(prepared.size_bytes),
        storage.put_file(&key, source, &crate::media_type::safe_audio_type(&mime_type)),
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
        mime_type,
        size_bytes: prepared.size_bytes,
        duration_ms: prepared.duration_ms,
        peaks: prepared.peaks.clone().or_else(|| read_peaks(&take.paths.peaks)),
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

    #[test]
    fn timelines_are_checked_and_tell_an_ignored_pause() {
        assert!(Timeline::from_stop(Some(&[[10, 5]]), Some(1000)).is_none(), "a span backwards");
        assert!(Timeline::from_stop(Some(&[[0, 10], [5, 20]]), Some(1000)).is_none(), "overlapping spans");
        assert!(Timeline::from_stop(Some(&[[0, 10]]), None).is_none(), "no recorded time");
        assert!(Timeline::from_stop(Some(&[]), Some(1000)).is_none(), "nothing to cut");
        let many = vec![[0u64, 1]; audiobook_wire::MAX_PAUSES + 1];
        assert!(Timeline::from_stop(Some(&many), Some(1000)).is_none(), "too many spans");
        let t = Timeline::from_stop(Some(&[[2068, 3579]]), Some(4074)).unwrap();
        assert!(t.pause_was_ignored(5480), "WebKit: wall time in the file");
        assert!(!t.pause_was_ignored(4100), "the pause was honoured");
    }

    #[tokio::test]
    async fn unknown_audio_is_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SpoolPaths::new(dir.path(), Uuid::new_v4());
        std::fs::write(&paths.data, b"not a container at all").unwrap();
        let p = prepare(&paths, "audio/webm").await.unwrap();
        assert_eq!(p, Prepared::as_received(22));
    }

    #[tokio::test]
    async fn a_lossless_take_becomes_a_wav_with_exact_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SpoolPaths::new(dir.path(), Uuid::new_v4());
        let mut bytes = audiobook_wire::lossless::stream_header(44_100).to_vec();
        bytes.extend(std::iter::repeat_n([0x10, 0x20], 44_100 * 2).flatten());
        bytes.push(7); // half a sample: the end of an interrupted take
        std::fs::write(&paths.data, &bytes).unwrap();
        let p = prepare(&paths, "audio/wav").await.unwrap();
        assert!(p.fixed && p.mime_type.is_none());
        assert_eq!((p.duration_ms, p.size_bytes), (2000, 44 + 44_100 * 4));
        assert_eq!(p.peaks.as_ref().map(Vec::len), Some(20));
        let reader = hound::WavReader::open(&paths.fixed).unwrap();
        assert_eq!((reader.spec().sample_rate, reader.duration()), (44_100, 88_200));
    }

    #[tokio::test]
    async fn a_lossless_take_that_is_not_a_wav_is_not_served_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let paths = SpoolPaths::new(dir.path(), Uuid::new_v4());
        std::fs::write(&paths.data, b"<html><script>alert(1)</script></html>").unwrap();
        let p = prepare(&paths, "audio/wav").await.unwrap();
        assert_eq!(p.mime_type.as_deref(), Some(crate::media_type::OPAQUE));
        assert!(!p.fixed && !paths.fixed.exists());
    }
}
