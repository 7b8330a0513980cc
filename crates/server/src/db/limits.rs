//! Per-user limits that must hold across instances: open sockets. (Live
//! takes, recordings and bytes are checked when a take opens, in
//! `takes.rs`.) Same rule as `db/mod.rs`: every query runs on either pool.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Db, now};

impl Db {
    /// Registers socket `id` of `user_id` on `instance`, unless the user
    /// already has `max` sockets seen since `fresh_since` (on any instance).
    /// Counted and inserted in one transaction, like a take's start.
    pub async fn open_connection(
        &self,
        id: Uuid,
        user_id: Uuid,
        instance: Uuid,
        max: u64,
        fresh_since: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let lock = match self {
            Db::Postgres(_) => "SELECT id FROM users WHERE id = $1 FOR UPDATE",
            Db::Sqlite(_) => "SELECT id FROM users WHERE id = $1",
        };
        let count = "SELECT CAST(COUNT(*) AS BIGINT) FROM connections WHERE user_id = $1 AND last_seen_at >= $2";
        let insert = "INSERT INTO connections (id, user_id, instance_id, last_seen_at) VALUES ($1, $2, $3, $4)";
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query(lock).bind(user_id).execute(&mut *tx).await?;
            let open: i64 = sqlx::query_scalar(count).bind(user_id).bind(fresh_since).fetch_one(&mut *tx).await?;
            if open.max(0) as u64 >= max {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(insert).bind(id).bind(user_id).bind(instance).bind(now()).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    pub async fn close_connection(&self, id: Uuid) -> Result<(), sqlx::Error> {
        let sql = "DELETE FROM connections WHERE id = $1";
        on_pool!(self, p => sqlx::query(sql).bind(id).execute(p).await.map(|_| ()))
    }

    /// Forgets sockets of instances that stopped heartbeating.
    pub async fn forget_stale_connections(&self, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let sql = "DELETE FROM connections WHERE last_seen_at < $1";
        on_pool!(self, p => sqlx::query(sql).bind(before).execute(p).await.map(|r| r.rows_affected()))
    }
}
