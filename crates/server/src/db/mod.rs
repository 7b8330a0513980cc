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
pub mod limits;
pub mod takes;
pub mod transcripts;

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

    /// What the API shows: a take being saved is `pending`.
    pub fn to_wire(self) -> RecordStatus {
        match self {
            StoredStatus::Recording => RecordStatus::Recording,
            StoredStatus::Ready => RecordStatus::Ready,
            StoredStatus::Interrupted => RecordStatus::Interrupted,
            StoredStatus::Finalizing | StoredStatus::Pending => RecordStatus::Pending,
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
    /// Failed finalize or upload attempts so far.
    pub attempts: i32,
    /// For a live take: whether a client is connected to it (last reported).
    pub client_connected: Option<bool>,
    /// Its transcript's status and progress (0–1), where the query asked
    /// for them (see `RECORD_LIST_COLUMNS`).
    #[sqlx(default)]
    pub transcript_status: Option<String>,
    #[sqlx(default)]
    pub transcript_progress: Option<f64>,
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
     owner_instance, last_seen_at, created_at, updated_at, attempts, client_connected";

/// [`RECORD_COLUMNS`] and the transcript's status, for what the API shows
/// (`FROM records` unaliased).
const RECORD_LIST_COLUMNS: &str = "id, user_id, name, storage_key, mime_type, size_bytes, duration_ms, status, \
     outcome, owner_instance, last_seen_at, created_at, updated_at, attempts, client_connected, \
     (SELECT t.status FROM transcripts t WHERE t.record_id = records.id) AS transcript_status, \
     (SELECT t.progress FROM transcripts t WHERE t.record_id = records.id) AS transcript_progress";

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
                // FULL: a commit is on the disk before it returns, so a row
                // that says `ready` survives a power cut (and the spool,
                // removed after the commit, is never needed again).
                .synchronous(SqliteSynchronous::Full)
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

    pub async fn record(&self, id: Uuid) -> Result<Option<RecordRow>, sqlx::Error> {
        let sql = format!("SELECT {RECORD_LIST_COLUMNS} FROM records WHERE id = $1");
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await)
    }

    /// A user's records, live takes included, newest first.
    pub async fn records_of(&self, user_id: Uuid) -> Result<Vec<RecordRow>, sqlx::Error> {
        let sql =
            format!("SELECT {RECORD_LIST_COLUMNS} FROM records WHERE user_id = $1 ORDER BY created_at DESC, id DESC");
        on_read_pool!(self, p => sqlx::query_as(&sql).bind(user_id).fetch_all(p).await)
    }

    /// How many records a user has, live ones included (for default names).
    pub async fn count_records(&self, user_id: Uuid) -> Result<i64, sqlx::Error> {
        let sql = "SELECT COUNT(*) FROM records WHERE user_id = $1";
        on_read_pool!(self, p => sqlx::query_scalar(sql).bind(user_id).fetch_one(p).await)
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
