//! What the library routes ask of the store: rename, delete, share links and
//! a paged, searchable list. Same rule as `db/mod.rs`: every query is
//! written once and runs on either pool through `on_pool!`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, RECORD_LIST_COLUMNS, RecordRow, now};

/// Statuses of records that are saved (shareable, deletable). Lists show
/// live takes too.
const SAVED: &str = "('pending', 'ready', 'interrupted')";

/// One page of `GET /records/:id`.
#[derive(Debug, Clone, Default)]
pub struct RecordQuery {
    /// Records strictly older than this position (newest-first order).
    pub before: Option<(DateTime<Utc>, Uuid)>,
    /// Case-insensitive substring of the name.
    pub name_contains: Option<String>,
    /// At most this many rows; `None` for all of them.
    pub limit: Option<u32>,
    /// Rows skipped first (pages of search results, which are ranked).
    pub offset: u32,
}

/// What `delete_saved_record` did.
#[derive(Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// The take is live (recording or finalizing): nothing was changed.
    Live,
    /// No such record (or deleted meanwhile).
    Missing,
}

/// `%`, `_` and the escape character itself lose their LIKE meaning.
pub fn like_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Db {
    /// Renames a record and bumps `updated_at`; the row as it is now.
    pub async fn rename_record(&self, id: Uuid, name: &str) -> Result<Option<RecordRow>, sqlx::Error> {
        let sql = "UPDATE records SET name = $2, updated_at = $3 WHERE id = $1";
        let n = on_pool!(self, p => sqlx::query(sql).bind(id).bind(name).bind(now()).execute(p).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            return Ok(None);
        }
        self.record(id).await
    }

    /// Deletes a saved record in one statement, so a take that is still live
    /// (or turns live meanwhile, which cannot happen today) is never deleted.
    pub async fn delete_saved_record(&self, id: Uuid) -> Result<DeleteOutcome, sqlx::Error> {
        let sql = format!("DELETE FROM records WHERE id = $1 AND status IN {SAVED}");
        let deleted = on_pool!(self, p => sqlx::query(&sql).bind(id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(match deleted {
            1.. => DeleteOutcome::Deleted,
            0 if self.record(id).await?.is_some() => DeleteOutcome::Live,
            0 => DeleteOutcome::Missing,
        })
    }

    /// The share token of a saved record: the one it has, or `token` if it
    /// had none (two concurrent calls agree on one). `None` when the record
    /// is missing or live.
    pub async fn share_record(&self, id: Uuid, token: &str) -> Result<Option<String>, sqlx::Error> {
        let set =
            format!("UPDATE records SET share_token = $2 WHERE id = $1 AND share_token IS NULL AND status IN {SAVED}");
        let get = format!("SELECT share_token FROM records WHERE id = $1 AND status IN {SAVED}");
        on_pool!(self, p => {
            sqlx::query(&set).bind(id).bind(token).execute(p).await?;
            sqlx::query_scalar::<_, Option<String>>(&get).bind(id).fetch_optional(p).await.map(Option::flatten)
        })
    }

    /// Revokes a record's share link (if it had one), and with it the
    /// transcript's.
    pub async fn unshare_record(&self, id: Uuid) -> Result<(), sqlx::Error> {
        let sql = "UPDATE records SET share_token = NULL, share_transcript = FALSE WHERE id = $1";
        on_pool!(self, p => sqlx::query(sql).bind(id).execute(p).await.map(|_| ()))
    }

    /// The saved record shared under `token`, if the link is still valid.
    pub async fn shared_record(&self, token: &str) -> Result<Option<RecordRow>, sqlx::Error> {
        let sql = format!("SELECT {RECORD_LIST_COLUMNS} FROM records WHERE share_token = $1 AND status IN {SAVED}");
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(token).fetch_optional(p).await)
    }

    /// A user's records (live takes included), newest first, filtered and paged by `q`.
    /// Case-insensitivity is `LOWER()`'s: full Unicode on PostgreSQL with a
    /// UTF-8 locale, ASCII letters only on SQLite. A query with words in it
    /// matches transcripts too, and its answers are ranked (see
    /// [`Db::search_records`]).
    pub async fn find_records(&self, user_id: Uuid, q: &RecordQuery) -> Result<Vec<RecordRow>, sqlx::Error> {
        if let Some(text) = q.name_contains.as_deref() {
            let terms = crate::transcription::text::search_terms(text);
            if !terms.is_empty() {
                return self.search_records(user_id, text, &terms, q).await;
            }
        }
        let mut sql = format!("SELECT {RECORD_LIST_COLUMNS} FROM records WHERE user_id = $1");
        let pattern = q.name_contains.as_deref().map(|t| format!("%{}%", like_escape(&t.to_lowercase())));
        let mut n = 1;
        if q.before.is_some() {
            sql.push_str(&format!(" AND (created_at < ${} OR (created_at = ${} AND id < ${}))", n + 1, n + 1, n + 2));
            n += 2;
        }
        if pattern.is_some() {
            sql.push_str(&format!(" AND LOWER(name) LIKE ${} ESCAPE '\\'", n + 1));
            n += 1;
        }
        sql.push_str(&format!(" ORDER BY created_at DESC, id DESC LIMIT ${} OFFSET ${}", n + 1, n + 2));
        let limit = q.limit.map(i64::from).unwrap_or(i64::MAX);
        on_read_pool!(self, p => {
            let mut query = sqlx::query_as(&sql).bind(user_id);
            if let Some((at, id)) = q.before {
                query = query.bind(at).bind(id);
            }
            if let Some(pattern) = &pattern {
                query = query.bind(pattern);
            }
            query.bind(limit).bind(i64::from(q.offset)).fetch_all(p).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_escape("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(like_escape("plain ñ"), "plain ñ");
    }
}
