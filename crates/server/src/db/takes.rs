//! A take's life in the store: opened within its user's limits, held by one
//! instance at a time (heartbeat, take-over), claimed once for finalizing,
//! finished, and retried with a backoff kept in the row when finalizing or
//! uploading fails. Same rule as `db/mod.rs`: every query is written once and
//! runs on either pool.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, FinishedRecording, NewRecording, RECORD_COLUMNS, RecordRow, StoredStatus, now};

/// What one user may hold; checked when a take opens, in one transaction
/// with the insert, so concurrent starts (on any instance) cannot all pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimits {
    pub max_live: u64,
    pub max_records: u64,
    /// Bytes of saved and live takes together; 0: no limit.
    pub max_bytes: u64,
}

/// Why a take could not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenRefused {
    TooManyLive { max: u64 },
    TooManyRecordings { max: u64 },
    StorageFull { max: u64 },
}

/// A claimed save is retried after this long unless it lands first (the
/// retry skips a save still running in its instance): a save that fails
/// while the database is down cannot schedule its own retry.
pub const UNLESS_SAVED_RETRY_AFTER: Duration = Duration::from_secs(30);

/// When a take's holder counts as gone: a live take waits the grace
/// period for its client to resume it; a take its holder was saving (the
/// client has stopped, nobody resumes it) only the holder's lease.
#[derive(Debug, Clone, Copy)]
pub struct Stale {
    pub recording_before: DateTime<Utc>,
    pub finalizing_before: DateTime<Utc>,
}

impl Stale {
    /// Both kinds stale before `before` (tests, and one-off sweeps).
    pub fn before(before: DateTime<Utc>) -> Stale {
        Stale { recording_before: before, finalizing_before: before }
    }
}

/// A take opened, with how many bytes its user may still add.
#[derive(Debug, Clone)]
pub struct Opened {
    pub row: RecordRow,
    /// `u64::MAX` without a byte limit.
    pub bytes_left: u64,
}

/// 1 s, 2 s, 4 s ... up to 5 minutes after `attempts` failures.
pub fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1u64 << attempts.clamp(0, 9)).min(Duration::from_secs(300))
}

fn at(after: Duration) -> DateTime<Utc> {
    now() + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX)
}

impl Db {
    /// Opens a live take for `r.user_id` unless that would break `limits`.
    /// A take without a name is called "Recording N".
    pub async fn open_recording(
        &self,
        r: &NewRecording,
        limits: &UserLimits,
    ) -> Result<Result<Opened, OpenRefused>, sqlx::Error> {
        // The user's row is locked for the transaction (PostgreSQL), so two
        // starts of one user are counted one after the other; SQLite has a
        // single writer connection, which serializes them already.
        let lock = match self {
            Db::Postgres(_) => "SELECT id FROM users WHERE id = $1 FOR UPDATE",
            Db::Sqlite(_) => "SELECT id FROM users WHERE id = $1",
        };
        let usage = "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'recording' THEN 1 ELSE 0 END), 0) AS BIGINT), \
                     CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) \
                     FROM records WHERE user_id = $1";
        let insert = "INSERT INTO records (id, user_id, name, mime_type, status, owner_instance, last_seen_at, \
                      created_at, updated_at) VALUES ($1, $2, $3, $4, 'recording', $5, $6, $6, $6)";
        let at = now();
        let outcome = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(lock).bind(r.user_id).execute(&mut *tx).await?;
            let (live, count, bytes): (i64, i64, i64) = sqlx::query_as(usage).bind(r.user_id).fetch_one(&mut *tx).await?;
            let (live, count, bytes) = (live.max(0) as u64, count.max(0) as u64, bytes.max(0) as u64);
            let refused = if live >= limits.max_live {
                Some(OpenRefused::TooManyLive { max: limits.max_live })
            } else if count >= limits.max_records {
                Some(OpenRefused::TooManyRecordings { max: limits.max_records })
            } else if limits.max_bytes > 0 && bytes >= limits.max_bytes {
                Some(OpenRefused::StorageFull { max: limits.max_bytes })
            } else {
                None
            };
            match refused {
                Some(refused) => {
                    tx.rollback().await?;
                    Err(refused)
                }
                None => {
                    let name = if r.name.is_empty() { format!("Recording {}", count + 1) } else { r.name.clone() };
                    sqlx::query(insert).bind(r.id).bind(r.user_id).bind(&name).bind(&r.mime_type)
                        .bind(r.owner_instance).bind(at).execute(&mut *tx).await?;
                    tx.commit().await?;
                    let bytes_left = if limits.max_bytes == 0 { u64::MAX } else { limits.max_bytes - bytes };
                    Ok((name, bytes_left))
                }
            }
        });
        Ok(outcome.map(|(name, bytes_left)| Opened {
            row: RecordRow {
                id: r.id,
                user_id: r.user_id,
                name,
                storage_key: None,
                mime_type: r.mime_type.clone(),
                size_bytes: 0,
                duration_ms: 0,
                status: "recording".into(),
                outcome: None,
                owner_instance: Some(r.owner_instance),
                last_seen_at: at,
                created_at: at,
                updated_at: at,
                attempts: 0,
                client_connected: None,
                transcript_status: None,
                transcript_progress: None,
            },
            bytes_left,
        }))
    }

    /// Removes a live take that never got a spool (nothing was recorded).
    pub async fn discard_empty_take(&self, id: Uuid) -> Result<(), sqlx::Error> {
        let sql = "DELETE FROM records WHERE id = $1 AND status = 'recording'";
        on_pool!(self, p => sqlx::query(sql).bind(id).execute(p).await.map(|_| ()))
    }

    /// Inserts a live take without any limit (tests and tools).
    pub async fn insert_recording(&self, r: &NewRecording) -> Result<RecordRow, sqlx::Error> {
        let unlimited = UserLimits { max_live: u64::MAX, max_records: u64::MAX, max_bytes: 0 };
        Ok(self.open_recording(r, &unlimited).await?.expect("no limit to refuse").row)
    }

    /// How many bytes `user_id` may still add to its stored and live takes
    /// (`u64::MAX` without a limit); for a take resumed on this instance.
    pub async fn bytes_left(&self, user_id: Uuid, max_bytes: u64) -> Result<u64, sqlx::Error> {
        if max_bytes == 0 {
            return Ok(u64::MAX);
        }
        let sql = "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM records WHERE user_id = $1";
        let used: i64 = on_read_pool!(self, p => sqlx::query_scalar(sql).bind(user_id).fetch_one(p).await)?;
        Ok(max_bytes.saturating_sub(used.max(0) as u64))
    }

    /// Moves a live take held by `instance` to `finalizing`, recording the
    /// intended outcome, unless another task or instance got there first or
    /// took the take over: only the caller that gets `true` finalizes it.
    pub async fn claim_for_finalize(
        &self,
        id: Uuid,
        instance: Uuid,
        outcome: StoredStatus,
    ) -> Result<bool, sqlx::Error> {
        // A retry is due a while from now unless the save lands first: if it
        // fails while the database is down, no later update can schedule one.
        let sql = "UPDATE records SET status = 'finalizing', outcome = $3, last_seen_at = $4, updated_at = $4, \
                   next_attempt_at = $5 WHERE id = $1 AND status = 'recording' AND owner_instance = $2";
        let done = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(outcome.as_str()).bind(now())
            .bind(at(UNLESS_SAVED_RETRY_AFTER)).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Claims a take whose holder went silent (live, or killed mid-finalize)
    /// for `instance`, only if it is still stale: a take resumed or being
    /// finalized elsewhere meanwhile is left alone.
    pub async fn claim_orphan(&self, id: Uuid, instance: Uuid, stale: Stale) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE records SET status = 'finalizing', outcome = COALESCE(outcome, 'interrupted'), \
                   owner_instance = $2, last_seen_at = $5, updated_at = $5, next_attempt_at = $6 \
                   WHERE id = $1 AND ((status = 'recording' AND last_seen_at < $3) \
                                      OR (status = 'finalizing' AND last_seen_at < $4))";
        let done = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(stale.recording_before)
            .bind(stale.finalizing_before).bind(now()).bind(at(UNLESS_SAVED_RETRY_AFTER))
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Records a finalized (or pending) take; clears any retry state. A
    /// pending one is due for its first upload retry a second from now.
    pub async fn finish_recording(&self, id: Uuid, f: &FinishedRecording) -> Result<Option<RecordRow>, sqlx::Error> {
        let sql = format!(
            "UPDATE records SET status = $2, outcome = $3, storage_key = $4, mime_type = $5, size_bytes = $6, \
             duration_ms = $7, owner_instance = NULL, updated_at = $8, peaks = COALESCE($9, peaks), attempts = 0, \
             next_attempt_at = $10, last_error = NULL \
             WHERE id = $1 RETURNING {RECORD_COLUMNS}"
        );
        let retry_at = (f.status == StoredStatus::Pending).then(|| at(Duration::from_secs(1)));
        on_pool!(self, p => sqlx::query_as(&sql)
            .bind(id)
            .bind(f.status.as_str())
            .bind(f.outcome.map(StoredStatus::as_str))
            .bind(&f.storage_key)
            .bind(&f.mime_type)
            .bind(f.size_bytes as i64)
            .bind(f.duration_ms as i64)
            .bind(now())
            .bind(f.peaks.as_deref())
            .bind(retry_at)
            .fetch_optional(p).await)
    }

    /// A finalize of `id` failed: it stays `finalizing` (with this instance
    /// as holder, so the heartbeat keeps it from being taken as an orphan)
    /// and is due again after a backoff.
    pub async fn finalize_failed(&self, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
        let sql = "UPDATE records SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 \
                   WHERE id = $1 AND status = 'finalizing'";
        let attempts = self.record(id).await?.map_or(0, |r| r.attempts);
        on_pool!(self, p => sqlx::query(sql).bind(id).bind(at(backoff(attempts))).bind(truncate(error))
            .execute(p).await.map(|_| ()))
    }

    /// Takes one retry of `row` (a failed finalize of `instance`, or a pending
    /// upload) by moving its due time on: the instance whose update lands
    /// does the attempt, and if it dies meanwhile the row is due again after
    /// the backoff.
    pub async fn claim_attempt(&self, row: &RecordRow, instance: Uuid) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE records SET attempts = attempts + 1, next_attempt_at = $3 \
                   WHERE id = $1 AND attempts = $2 AND next_attempt_at <= $4 \
                   AND (status = 'pending' OR (status = 'finalizing' AND owner_instance = $5))";
        let n = on_pool!(self, p => sqlx::query(sql).bind(row.id).bind(row.attempts)
            .bind(at(backoff(row.attempts + 1))).bind(now()).bind(instance)
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Why the latest attempt failed (kept for operators; the next one is
    /// already scheduled by the claim).
    pub async fn attempt_failed(&self, id: Uuid, error: &str) -> Result<(), sqlx::Error> {
        let sql = "UPDATE records SET last_error = $2 WHERE id = $1";
        on_pool!(self, p => sqlx::query(sql).bind(id).bind(truncate(error)).execute(p).await.map(|_| ()))
    }

    /// Retries that are due: this instance's failed finalizes and every
    /// pending upload, the longest-waiting first. Rows that keep failing move
    /// back in the order with each attempt, so they never starve the others.
    pub async fn due_retries(&self, instance: Uuid) -> Result<Vec<RecordRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE next_attempt_at <= $2 \
             AND (status = 'pending' OR (status = 'finalizing' AND owner_instance = $1)) \
             ORDER BY next_attempt_at LIMIT 100"
        );
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(instance).bind(now()).fetch_all(p).await)
    }

    /// Opens again a take whose holder went silent while finalizing it (see
    /// `Recordings::reopen_lost_finalize`), held by `instance` now.
    pub async fn reopen_lost_finalize(
        &self,
        id: Uuid,
        instance: Uuid,
        silent_since: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE records SET status = 'recording', outcome = NULL, owner_instance = $2, last_seen_at = $4, \
                   next_attempt_at = NULL, size_bytes = 0 \
                   WHERE id = $1 AND status = 'finalizing' AND last_seen_at < $3";
        let n = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(silent_since).bind(now())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Marks this instance as the holder of a live take (on open or resume).
    pub async fn take_over(&self, id: Uuid, instance: Uuid) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE records SET owner_instance = $2, last_seen_at = $3 WHERE id = $1 AND status = 'recording'";
        let n = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Says that this instance still holds its live takes, the ones it is
    /// finalizing and its sockets; one statement per table per tick.
    pub async fn heartbeat(&self, instance: Uuid) -> Result<u64, sqlx::Error> {
        let records =
            "UPDATE records SET last_seen_at = $2 WHERE owner_instance = $1 AND status IN ('recording', 'finalizing')";
        let connections = "UPDATE connections SET last_seen_at = $2 WHERE instance_id = $1";
        let at = now();
        on_pool!(self, p => {
            sqlx::query(connections).bind(instance).bind(at).execute(p).await?;
            sqlx::query(records).bind(instance).bind(at).execute(p).await.map(|r| r.rows_affected())
        })
    }

    /// The live takes `instance` holds according to the store (to drop, after
    /// a lapse of the heartbeat, any that another instance took meanwhile).
    pub async fn held_by(&self, instance: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
        let sql = "SELECT id FROM records WHERE owner_instance = $1 AND status = 'recording'";
        on_pool!(self, p => sqlx::query_scalar(sql).bind(instance).fetch_all(p).await)
    }

    /// Bytes received so far by live takes, and whether a client is
    /// connected to each, so that lists (on any instance) and the per-user
    /// byte limit see them; one statement per 500 takes.
    pub async fn record_progress(&self, progress: &[(Uuid, u64, bool)]) -> Result<(), sqlx::Error> {
        for batch in progress.chunks(500) {
            let values: Vec<String> =
                (0..batch.len()).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
            let sql = format!(
                "WITH progress (id, bytes, connected) AS (VALUES {}) UPDATE records SET \
                 size_bytes = (SELECT bytes FROM progress WHERE progress.id = records.id), \
                 client_connected = (SELECT connected FROM progress WHERE progress.id = records.id) \
                 WHERE status = 'recording' AND id IN (SELECT id FROM progress)",
                values.join(", ")
            );
            on_pool!(self, p => {
                let mut q = sqlx::query(&sql);
                for (id, bytes, connected) in batch {
                    q = q.bind(*id).bind(i64::try_from(*bytes).unwrap_or(i64::MAX)).bind(*connected);
                }
                q.execute(p).await.map(|_| ())
            })?;
        }
        Ok(())
    }

    /// Live takes whose holder has not been heard of since `before` (a
    /// crashed or killed instance, this one before a restart), except those
    /// deferred (see [`Db::defer`]), the longest-silent first.
    pub async fn stale_recordings(&self, stale: Stale) -> Result<Vec<RecordRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE ((status = 'recording' AND last_seen_at < $1) \
             OR (status = 'finalizing' AND last_seen_at < $3)) \
             AND (next_attempt_at IS NULL OR next_attempt_at <= $2) ORDER BY last_seen_at LIMIT 100"
        );
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(stale.recording_before).bind(now())
            .bind(stale.finalizing_before).fetch_all(p).await)
    }

    /// Leaves a stale take alone for `for_` (its spool is on another
    /// instance's disk, say), so it does not fill every pass of the reaper.
    pub async fn defer(&self, id: Uuid, for_: Duration) -> Result<(), sqlx::Error> {
        let sql = "UPDATE records SET next_attempt_at = $2 WHERE id = $1";
        on_pool!(self, p => sqlx::query(sql).bind(id).bind(at(for_)).execute(p).await.map(|_| ()))
    }

    /// How many records wait for an upload (for the metrics).
    pub async fn count_pending_uploads(&self) -> Result<i64, sqlx::Error> {
        let sql = "SELECT COUNT(*) FROM records WHERE status = 'pending'";
        on_read_pool!(self, p => sqlx::query_scalar(sql).fetch_one(p).await)
    }

    /// Records whose audio waits in the spool for an upload.
    pub async fn pending_uploads(&self) -> Result<Vec<RecordRow>, sqlx::Error> {
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM records WHERE status = 'pending' ORDER BY updated_at LIMIT 100");
        on_read_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)
    }
}

/// Error texts kept in a row are bounded.
fn truncate(error: &str) -> String {
    error.chars().take(500).collect()
}
