//! Transcripts in the store: the job (queued by a trigger when a take becomes
//! `ready`, claimed by one instance at a time with a lease, retried with a
//! backoff kept in the row, failed with a reason) and its result, searched
//! with full-text indexes (SQLite FTS5, PostgreSQL `tsvector` + GIN). Same
//! rule as `db/mod.rs`: every query runs on either pool.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::library::{RecordQuery, like_escape};
use super::{Db, RECORD_LIST_COLUMNS, RecordRow, now};

/// A transcript's row, without its (large) content.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TranscriptRow {
    pub record_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub attempts: i32,
    pub due_at: Option<DateTime<Utc>>,
    pub claimed_by: Option<Uuid>,
    pub progress: Option<f64>,
    pub last_error: Option<String>,
    pub model: Option<String>,
    pub language: Option<String>,
}

/// A job that is due (queued and due, or running with a lapsed lease), with
/// what a worker needs to know of its recording.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueTranscript {
    pub record_id: Uuid,
    pub user_id: Uuid,
    pub status: String,
    pub attempts: i32,
    pub storage_key: Option<String>,
    pub mime_type: String,
    pub duration_ms: i64,
    pub size_bytes: i64,
}

/// A finished transcript as it is stored.
#[derive(Debug, Clone)]
pub struct StoredTranscript {
    pub model: String,
    pub language: Option<String>,
    /// JSON of `audiobook_wire::Transcript`.
    pub segments_json: String,
    /// The words, space-separated, and each one's start (see `transcription::text`).
    pub text: String,
    pub word_ms: Vec<u8>,
}

/// What search needs of a transcript to say where it matched.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TranscriptText {
    pub record_id: Uuid,
    pub text: String,
    pub word_ms: Vec<u8>,
}

/// What `queue_transcript` did.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueOutcome {
    Queued,
    /// Queued or running already.
    Busy,
    Ready,
    /// No saved, ready recording with this id.
    NotReady,
}

const COLUMNS: &str = "record_id, user_id, status, attempts, due_at, claimed_by, progress, last_error, model, language";

/// Errors kept in a row are bounded.
fn truncate(error: &str) -> String {
    error.chars().take(500).collect()
}

fn at(after: Duration) -> DateTime<Utc> {
    now() + chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX)
}

/// What PostgreSQL's index is made from: the text's terms, space-separated,
/// at most a million characters (a tsvector must stay under 1 MB).
fn search_text(text: &str) -> String {
    let mut out = String::new();
    for term in crate::transcription::text::terms(text) {
        if out.len() + term.len() + 1 > 1_000_000 {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&term);
    }
    out
}

/// The owner token of SQLite's full-text index (see the migration).
fn owner_token(user_id: Uuid) -> String {
    format!("u{}", user_id.simple())
}

impl Db {
    /// Whether takes that become ready get a transcript job (the trigger
    /// reads this): `true` from an instance that transcribes, `false` from
    /// one with `TRANSCRIPTION=off`.
    pub async fn set_transcripts_queued(&self, on: bool) -> Result<(), sqlx::Error> {
        let sql = "INSERT INTO settings (key, value) VALUES ('transcription', $1) \
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value";
        let value = if on { "on" } else { "off" };
        on_pool!(self, p => sqlx::query(sql).bind(value).execute(p).await.map(|_| ()))
    }

    pub async fn transcript(&self, record_id: Uuid) -> Result<Option<TranscriptRow>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM transcripts WHERE record_id = $1");
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(record_id).fetch_optional(p).await)
    }

    /// The stored JSON of a ready transcript.
    pub async fn transcript_json(&self, record_id: Uuid) -> Result<Option<String>, sqlx::Error> {
        let sql = "SELECT segments FROM transcripts WHERE record_id = $1 AND status = 'ready'";
        let json: Option<Option<String>> =
            on_read_pool!(self, p => sqlx::query_scalar(sql).bind(record_id).fetch_optional(p).await)?;
        Ok(json.flatten())
    }

    /// Queues a transcript for a ready recording that has none or whose
    /// last one failed (the owner asking again); attempts start over.
    pub async fn queue_transcript(&self, record_id: Uuid) -> Result<QueueOutcome, sqlx::Error> {
        let at = now();
        let insert = match self {
            Db::Sqlite(_) => {
                "INSERT OR IGNORE INTO transcripts (record_id, user_id, owner, status, created_at, updated_at) \
                 SELECT id, user_id, 'u' || lower(hex(user_id)), 'queued', $2, $2 FROM records \
                 WHERE id = $1 AND status = 'ready'"
            }
            Db::Postgres(_) => {
                "INSERT INTO transcripts (record_id, user_id, status, created_at, updated_at) \
                 SELECT id, user_id, 'queued', $2, $2 FROM records WHERE id = $1 AND status = 'ready' \
                 ON CONFLICT (record_id) DO NOTHING"
            }
        };
        let again = "UPDATE transcripts SET status = 'queued', attempts = 0, due_at = NULL, claimed_by = NULL, \
                     last_error = NULL, progress = NULL, updated_at = $2 WHERE record_id = $1 AND status = 'failed'";
        let inserted = on_pool!(self, p => sqlx::query(insert).bind(record_id).bind(at).execute(p).await.map(|r| r.rows_affected()))?;
        if inserted == 1 {
            return Ok(QueueOutcome::Queued);
        }
        let requeued = on_pool!(self, p => sqlx::query(again).bind(record_id).bind(at).execute(p).await.map(|r| r.rows_affected()))?;
        if requeued == 1 {
            return Ok(QueueOutcome::Queued);
        }
        Ok(match self.transcript(record_id).await?.map(|t| t.status) {
            Some(s) if s == "ready" => QueueOutcome::Ready,
            Some(_) => QueueOutcome::Busy,
            None => QueueOutcome::NotReady,
        })
    }

    /// Jobs that are due, the longest-waiting first: queued ones past their
    /// due time, and running ones whose instance stopped renewing the claim.
    pub async fn due_transcripts(&self, limit: u32) -> Result<Vec<DueTranscript>, sqlx::Error> {
        let sql = "SELECT t.record_id, t.user_id, t.status, t.attempts, r.storage_key, r.mime_type, r.duration_ms, \
                   r.size_bytes FROM transcripts t JOIN records r ON r.id = t.record_id \
                   WHERE (t.status = 'queued' AND (t.due_at IS NULL OR t.due_at <= $1)) \
                   OR (t.status = 'running' AND t.due_at <= $1) \
                   ORDER BY COALESCE(t.due_at, t.created_at) LIMIT $2";
        on_read_pool!(self, p => sqlx::query_as(sql).bind(now()).bind(i64::from(limit)).fetch_all(p).await)
    }

    /// Claims a due job for `instance` until `lease` from now, counting an
    /// attempt. Only one claimer's update lands (the row must still be as
    /// `job` saw it).
    pub async fn claim_transcript(
        &self,
        job: &DueTranscript,
        instance: Uuid,
        lease: Duration,
    ) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE transcripts SET status = 'running', claimed_by = $2, due_at = $3, attempts = attempts + 1, \
                   progress = NULL, updated_at = $4 WHERE record_id = $1 AND attempts = $5 \
                   AND ((status = 'queued' AND (due_at IS NULL OR due_at <= $4)) OR (status = 'running' AND due_at <= $4))";
        let n = on_pool!(self, p => sqlx::query(sql).bind(job.record_id).bind(instance).bind(at(lease)).bind(now())
            .bind(job.attempts).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Renews this instance's claim and stores the progress; `false` when the
    /// job is gone (its recording was deleted) or no longer this instance's.
    pub async fn renew_transcript(
        &self,
        record_id: Uuid,
        instance: Uuid,
        lease: Duration,
        progress: Option<f64>,
    ) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE transcripts SET due_at = $3, progress = COALESCE($4, progress), updated_at = $5 \
                   WHERE record_id = $1 AND claimed_by = $2 AND status = 'running'";
        let n = on_pool!(self, p => sqlx::query(sql).bind(record_id).bind(instance).bind(at(lease)).bind(progress)
            .bind(now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Stores a finished transcript; `false` when the job is gone meanwhile.
    pub async fn finish_transcript(
        &self,
        record_id: Uuid,
        instance: Uuid,
        t: &StoredTranscript,
    ) -> Result<bool, sqlx::Error> {
        let sql = match self {
            // SQLite's index follows `text` (triggers).
            Db::Sqlite(_) => {
                "UPDATE transcripts SET status = 'ready', due_at = NULL, claimed_by = NULL, progress = NULL, \
                 last_error = NULL, model = $3, language = $4, segments = $5, text = $6, word_ms = $7, updated_at = $8 \
                 WHERE record_id = $1 AND claimed_by = $2 AND status = 'running'"
            }
            Db::Postgres(_) => {
                "UPDATE transcripts SET status = 'ready', due_at = NULL, claimed_by = NULL, progress = NULL, \
                 last_error = NULL, model = $3, language = $4, segments = $5, text = $6, word_ms = $7, updated_at = $8, \
                 search = to_tsvector('simple', $9) WHERE record_id = $1 AND claimed_by = $2 AND status = 'running'"
            }
        };
        let terms = search_text(&t.text);
        let postgres = matches!(self, Db::Postgres(_));
        let n = on_pool!(self, p => {
            let mut q = sqlx::query(sql).bind(record_id).bind(instance).bind(&t.model).bind(&t.language)
                .bind(&t.segments_json).bind(&t.text).bind(&t.word_ms).bind(now());
            if postgres {
                q = q.bind(&terms);
            }
            q.execute(p).await.map(|r| r.rows_affected())
        })?;
        Ok(n == 1)
    }

    /// An attempt failed: queued again after `retry_after`, or `failed` for
    /// good when `None`. Only this instance's claim is changed.
    pub async fn transcript_attempt_failed(
        &self,
        record_id: Uuid,
        instance: Uuid,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE transcripts SET status = $3, due_at = $4, claimed_by = NULL, progress = NULL, \
                   last_error = $5, updated_at = $6 WHERE record_id = $1 AND claimed_by = $2 AND status = 'running'";
        let (status, due) = match retry_after {
            Some(after) => ("queued", Some(at(after))),
            None => ("failed", None),
        };
        let n = on_pool!(self, p => sqlx::query(sql).bind(record_id).bind(instance).bind(status).bind(due)
            .bind(truncate(error)).bind(now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// A job whose claims lapsed too often (its instance died each time) is
    /// failed without another try, if it is still as `job` saw it.
    pub async fn give_up_transcript(&self, job: &DueTranscript, error: &str) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE transcripts SET status = 'failed', due_at = NULL, claimed_by = NULL, progress = NULL, \
                   last_error = $3, updated_at = $4 WHERE record_id = $1 AND attempts = $2 \
                   AND status = 'running' AND due_at <= $4";
        let n = on_pool!(self, p => sqlx::query(sql).bind(job.record_id).bind(job.attempts).bind(truncate(error))
            .bind(now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Hands a running job back without counting the attempt (this instance
    /// is shutting down): due again at once, for any instance.
    pub async fn release_transcript(&self, record_id: Uuid, instance: Uuid) -> Result<(), sqlx::Error> {
        let sql = "UPDATE transcripts SET status = 'queued', due_at = NULL, claimed_by = NULL, progress = NULL, \
                   attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, updated_at = $3 \
                   WHERE record_id = $1 AND claimed_by = $2 AND status = 'running'";
        on_pool!(self, p => sqlx::query(sql).bind(record_id).bind(instance).bind(now()).execute(p).await.map(|_| ()))
    }

    /// Whether the share link of `id` shows its transcript.
    pub async fn set_share_transcript(&self, id: Uuid, on: bool) -> Result<(), sqlx::Error> {
        let sql = "UPDATE records SET share_transcript = $2 WHERE id = $1";
        on_pool!(self, p => sqlx::query(sql).bind(id).bind(on).execute(p).await.map(|_| ()))
    }

    pub async fn shares_transcript(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let sql = "SELECT share_transcript FROM records WHERE id = $1";
        let on: Option<bool> = on_read_pool!(self, p => sqlx::query_scalar(sql).bind(id).fetch_optional(p).await)?;
        Ok(on.unwrap_or(false))
    }

    /// A user's records matching `terms` in their transcript (ranked) or
    /// `name_like` in their name (first), then newest first; paged by
    /// `q.offset` and `q.limit`. Only `user_id`'s transcripts are read.
    pub async fn search_records(
        &self,
        user_id: Uuid,
        name_like: &str,
        terms: &[String],
        q: &RecordQuery,
    ) -> Result<Vec<RecordRow>, sqlx::Error> {
        let hits = match self {
            Db::Sqlite(_) => {
                "SELECT t.record_id AS hit_id, -bm25(transcripts_fts, 1.0, 0.0) AS score FROM transcripts_fts \
                 JOIN transcripts t ON t.id = transcripts_fts.rowid WHERE transcripts_fts MATCH $2"
            }
            Db::Postgres(_) => {
                "SELECT t.record_id AS hit_id, ts_rank_cd(t.search, query, 1) AS score \
                 FROM transcripts t, to_tsquery('simple', $2) query WHERE t.user_id = $1 AND t.search @@ query"
            }
        };
        let matcher = match self {
            Db::Sqlite(_) => crate::transcription::text::fts5_query(&owner_token(user_id), terms),
            Db::Postgres(_) => crate::transcription::text::tsquery(terms),
        };
        let name_hit = "LOWER(records.name) LIKE $3 ESCAPE '\\'";
        let mut sql = format!(
            "SELECT {RECORD_LIST_COLUMNS} FROM records LEFT JOIN ({hits}) hits ON hits.hit_id = records.id \
             WHERE records.user_id = $1 AND ({name_hit} OR hits.hit_id IS NOT NULL)"
        );
        if q.before.is_some() {
            sql.push_str(" AND (records.created_at < $4 OR (records.created_at = $4 AND records.id < $5))");
        }
        let n = if q.before.is_some() { 5 } else { 3 };
        sql.push_str(&format!(
            " ORDER BY {name_hit} DESC, COALESCE(hits.score, 0) DESC, records.created_at DESC, records.id DESC \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ));
        let pattern = format!("%{}%", like_escape(&name_like.to_lowercase()));
        let limit = q.limit.map(i64::from).unwrap_or(i64::MAX);
        on_read_pool!(self, p => {
            let mut query = sqlx::query_as(&sql).bind(user_id).bind(&matcher).bind(&pattern);
            if let Some((at, id)) = q.before {
                query = query.bind(at).bind(id);
            }
            query.bind(limit).bind(i64::from(q.offset)).fetch_all(p).await
        })
    }

    /// The searchable text of those of `ids` that have a ready transcript
    /// and belong to `user_id`.
    pub async fn transcript_texts(&self, user_id: Uuid, ids: &[Uuid]) -> Result<Vec<TranscriptText>, sqlx::Error> {
        let mut out = Vec::new();
        for batch in ids.chunks(100) {
            let marks: Vec<String> = (0..batch.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT record_id, text, word_ms FROM transcripts WHERE user_id = $1 AND status = 'ready' \
                 AND text IS NOT NULL AND word_ms IS NOT NULL AND record_id IN ({})",
                marks.join(", ")
            );
            let rows: Vec<TranscriptText> = on_read_pool!(self, p => {
                let mut q = sqlx::query_as(&sql).bind(user_id);
                for id in batch {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await
            })?;
            out.extend(rows);
        }
        Ok(out)
    }
}
