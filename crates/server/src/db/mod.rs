//! The metadata store: one interface, PostgreSQL (production, compose) and
//! SQLite (the embedded default) behind it. Every query is written once; the
//! `on_pool!` macro runs it on whichever pool is in use, so the two backends
//! cannot drift apart.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

use audiobook_wire::{RecordStatus, User};

#[cfg(test)]
mod tests;

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePools),
    Postgres(PgPool),
}

/// SQLite has one writer at a time: writes go through one connection (a
/// queue, instead of writers sleeping in SQLite's busy handler), reads
/// through a pool of read-only connections that WAL lets run alongside.
///
/// Checkpoints (copying the WAL into the database file, with an fsync) run
/// from the reaper on a third connection, never inside a write: under a
/// busy disk an fsync takes seconds, and an automatic checkpoint would hold
/// every writer that long (measured: start-recording timing out at 4,000
/// recorders).
#[derive(Clone, Debug)]
pub struct SqlitePools {
    pub write: SqlitePool,
    pub read: SqlitePool,
    checkpoint: SqlitePool,
}

/// Runs the same expression on either backend's pool: the writer's.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite(pools) => {
                let $pool = &pools.write;
                $body
            }
            Db::Postgres($pool) => $body,
        }
    };
}

/// Like `on_pool!`, for queries that only read.
macro_rules! on_read_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite(pools) => {
                let $pool = &pools.read;
                $body
            }
            Db::Postgres($pool) => $body,
        }
    };
}
pub mod library;

/// Timestamps are kept to the microsecond, what PostgreSQL stores, so a value
/// read back equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> User {
        User { id: r.id, name: r.name, created_at: r.created_at, updated_at: r.updated_at }
    }
}

/// Where a record stands in the store (a superset of the wire status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStatus {
    Recording,
    Finalizing,
    Pending,
    Ready,
    Interrupted,
}

impl StoredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredStatus::Recording => "recording",
            StoredStatus::Finalizing => "finalizing",
            StoredStatus::Pending => "pending",
            StoredStatus::Ready => "ready",
            StoredStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> StoredStatus {
        match s {
            "recording" => StoredStatus::Recording,
            "finalizing" => StoredStatus::Finalizing,
            "pending" => StoredStatus::Pending,
            "ready" => StoredStatus::Ready,
            _ => StoredStatus::Interrupted,
        }
    }

    /// What the API shows: anything not stored yet is `pending`.
    pub fn to_wire(self) -> RecordStatus {
        match self {
            StoredStatus::Ready => RecordStatus::Ready,
            StoredStatus::Interrupted => RecordStatus::Interrupted,
            _ => RecordStatus::Pending,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub storage_key: Option<String>,
    pub mime_type: String,
    pub size_bytes: i64,
    pub duration_ms: i64,
    pub status: String,
    pub outcome: Option<String>,
    pub owner_instance: Option<Uuid>,
    pub last_seen_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl RecordRow {
    pub fn status(&self) -> StoredStatus {
        StoredStatus::parse(&self.status)
    }
}

/// A live recording as it is first written.
#[derive(Debug, Clone)]
pub struct NewRecording {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub mime_type: String,
    pub owner_instance: Uuid,
}

/// How a finalized recording is stored.
#[derive(Debug, Clone)]
pub struct FinishedRecording {
    pub status: StoredStatus,
    /// For `Pending`: what it becomes once uploaded.
    pub outcome: Option<StoredStatus>,
    pub storage_key: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub duration_ms: u64,
    /// Waveform peaks; `None` keeps what is stored.
    pub peaks: Option<Vec<u8>>,
}

const RECORD_COLUMNS: &str = "id, user_id, name, storage_key, mime_type, size_bytes, duration_ms, status, outcome, \
     owner_instance, last_seen_at, created_at, updated_at";

impl Db {
    /// Connects to `sqlite://...` or `postgres://...` and applies the migrations.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::Postgres(
                PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(10)).connect(url).await?,
            )
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            if let Some(parent) = options.get_filename().parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(sqlx::Error::Io)?;
            }
            let single = || SqlitePoolOptions::new().max_connections(1);
            let write = single().connect_with(options.clone().pragma("wal_autocheckpoint", "0")).await?;
            let checkpoint = single().connect_with(options.clone()).await?;
            let read = SqlitePoolOptions::new().max_connections(4).connect_with(options.read_only(true)).await?;
            Db::Sqlite(SqlitePools { write, read, checkpoint })
        } else {
            return Err(sqlx::Error::Configuration(
                format!("DATABASE_URL must start with sqlite: or postgres://, got {url:?}").into(),
            ));
        };
        Ok(db)
    }

    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Sqlite(p) => SQLITE_MIGRATOR.run(&p.write).await,
            Db::Postgres(p) => PG_MIGRATOR.run(p).await,
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => {
                p.read.close().await;
                p.write.close().await;
                p.checkpoint.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }

    /// Copies SQLite's write-ahead log into the database file without
    /// blocking writers (PostgreSQL does this by itself).
    pub async fn checkpoint(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(p) => sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&p.checkpoint).await.map(|_| ()),
            Db::Postgres(_) => Ok(()),
        }
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        on_read_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))
    }

    // ------------------------------------------------------------ users

    pub async fn create_user(&self, name: &str, token_hash: &[u8]) -> Result<UserRow, sqlx::Error> {
        let (id, at) = (Uuid::new_v4(), now());
        let sql = "INSERT INTO users (id, name, token_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)";
        on_pool!(self, p => sqlx::query(sql).bind(id).bind(name).bind(token_hash).bind(at).execute(p).await.map(|_| ()))?;
        Ok(UserRow { id, name: name.to_string(), created_at: at, updated_at: at })
    }

    pub async fn user(&self, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
        let sql = "SELECT id, name, created_at, updated_at FROM users WHERE id = $1";
        on_read_pool!(self, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)
    }

    /// The user whose token hashes to `token_hash`, with the stored hash.
    pub async fn user_by_token_hash(&self, token_hash: &[u8]) -> Result<Option<(UserRow, Vec<u8>)>, sqlx::Error> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            token_hash: Vec<u8>,
        }
        let sql = "SELECT id, name, created_at, updated_at, token_hash FROM users WHERE token_hash = $1";
        let row: Option<Row> = on_read_pool!(self, p => sqlx::query_as(sql).bind(token_hash).fetch_optional(p).await)?;
        Ok(row.map(|r| (r.user, r.token_hash)))
    }

    // ------------------------------------------------------------ records

    pub async fn insert_recording(&self, r: &NewRecording) -> Result<RecordRow, sqlx::Error> {
        let at = now();
        let sql = "INSERT INTO records (id, user_id, name, mime_type, status, owner_instance, last_seen_at, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, 'recording', $5, $6, $6, $6)";
        on_pool!(self, p => sqlx::query(sql)
            .bind(r.id).bind(r.user_id).bind(&r.name).bind(&r.mime_type).bind(r.owner_instance).bind(at)
            .execute(p).await.map(|_| ()))?;
        Ok(RecordRow {
            id: r.id,
            user_id: r.user_id,
            name: r.name.clone(),
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
        })
    }

    pub async fn record(&self, id: Uuid) -> Result<Option<RecordRow>, sqlx::Error> {
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records WHERE id = $1");
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)
    }

    /// A user's saved records (live takes excluded), newest first.
    pub async fn records_of(&self, user_id: Uuid) -> Result<Vec<RecordRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE user_id = $1 AND status IN ('pending', 'ready', 'interrupted') \
             ORDER BY created_at DESC, id DESC"
        );
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await)
    }

    /// How many records a user has, live ones included (for default names).
    pub async fn count_records(&self, user_id: Uuid) -> Result<i64, sqlx::Error> {
        let sql = "SELECT COUNT(*) FROM records WHERE user_id = $1";
        on_read_pool!(self, p => sqlx::query_scalar(sql).bind(user_id).fetch_one(p).await)
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
        let sql = "UPDATE records SET status = 'finalizing', outcome = $3, last_seen_at = $4, updated_at = $4 \
                   WHERE id = $1 AND status = 'recording' AND owner_instance = $2";
        let done = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(outcome.as_str()).bind(now())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Claims a take whose holder went silent (live, or killed mid-finalize)
    /// for `instance`, only if it is still stale: a take resumed or being
    /// finalized elsewhere meanwhile is left alone.
    pub async fn claim_orphan(
        &self,
        id: Uuid,
        instance: Uuid,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE records SET status = 'finalizing', outcome = COALESCE(outcome, 'interrupted'), \
                   owner_instance = $2, last_seen_at = $4, updated_at = $4 \
                   WHERE id = $1 AND status IN ('recording', 'finalizing') AND last_seen_at < $3";
        let done = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(stale_before).bind(now())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    pub async fn finish_recording(&self, id: Uuid, f: &FinishedRecording) -> Result<Option<RecordRow>, sqlx::Error> {
        let sql = "UPDATE records SET status = $2, outcome = $3, storage_key = $4, mime_type = $5, size_bytes = $6, \
                   duration_ms = $7, owner_instance = NULL, updated_at = $8, peaks = COALESCE($9, peaks) WHERE id = $1 \
                   RETURNING id, user_id, name, storage_key, mime_type, size_bytes, duration_ms, status, outcome, \
                   owner_instance, last_seen_at, created_at, updated_at";
        on_pool!(self, p => sqlx::query_as(sql)
            .bind(id)
            .bind(f.status.as_str())
            .bind(f.outcome.map(StoredStatus::as_str))
            .bind(&f.storage_key)
            .bind(&f.mime_type)
            .bind(f.size_bytes as i64)
            .bind(f.duration_ms as i64)
            .bind(now())
            .bind(f.peaks.as_deref())
            .fetch_optional(p).await)
    }

    /// Marks this instance as the holder of a live take (on open or resume).
    pub async fn take_over(&self, id: Uuid, instance: Uuid) -> Result<bool, sqlx::Error> {
        let sql = "UPDATE records SET owner_instance = $2, last_seen_at = $3 WHERE id = $1 AND status = 'recording'";
        let n = on_pool!(self, p => sqlx::query(sql).bind(id).bind(instance).bind(now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Says that this instance still holds its live takes and the ones it is
    /// finalizing; one statement per tick.
    pub async fn heartbeat(&self, instance: Uuid) -> Result<u64, sqlx::Error> {
        let sql =
            "UPDATE records SET last_seen_at = $2 WHERE owner_instance = $1 AND status IN ('recording', 'finalizing')";
        on_pool!(self, p => sqlx::query(sql).bind(instance).bind(now()).execute(p).await.map(|r| r.rows_affected()))
    }

    /// Live takes whose holder has not been heard of since `before`
    /// (a crashed or killed instance, this one before a restart).
    pub async fn stale_recordings(&self, before: DateTime<Utc>) -> Result<Vec<RecordRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE status IN ('recording', 'finalizing') AND last_seen_at < $1 \
             ORDER BY last_seen_at LIMIT 100"
        );
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(before).fetch_all(p).await)
    }

    /// Records whose audio waits in the spool for an upload.
    pub async fn pending_uploads(&self) -> Result<Vec<RecordRow>, sqlx::Error> {
        let sql =
            format!("SELECT {RECORD_COLUMNS} FROM records WHERE status = 'pending' ORDER BY updated_at LIMIT 100");
        on_read_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)
    }

    /// A record's waveform peaks (empty when its client sent none).
    pub async fn record_peaks(&self, id: Uuid) -> Result<Vec<u8>, sqlx::Error> {
        let sql = "SELECT peaks FROM records WHERE id = $1";
        let peaks: Option<Option<Vec<u8>>> =
            on_read_pool!(self, p => sqlx::query_scalar(sql).bind(id).fetch_optional(p).await)?;
        Ok(peaks.flatten().unwrap_or_default())
    }

    // ------------------------------------------------------------ settings

    /// The value of `key`, set to `default` first if it has none; every
    /// instance sharing the database gets the same value.
    pub async fn setting_or_insert(&self, key: &str, default: &str) -> Result<String, sqlx::Error> {
        let insert = "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
        let select = "SELECT value FROM settings WHERE key = $1";
        on_pool!(self, p => {
            sqlx::query(insert).bind(key).bind(default).execute(p).await?;
            sqlx::query_scalar(select).bind(key).fetch_one(p).await
        })
    }
}
