//! Test support shared by unit and integration tests: fresh databases on
//! both backends. PostgreSQL comes from `TEST_DATABASE_URL` (the test command
//! starts a real server); without it the PostgreSQL tests are skipped,
//! unless `AUDIOBOOK_REQUIRE_SERVICES=1` makes that a failure.

use uuid::Uuid;

use crate::db::Db;

pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile_dir::TempDir>,
    admin_url: Option<String>,
    name: Option<String>,
}

mod tempfile_dir {
    /// A temporary folder removed on drop (std only, to keep the library lean).
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> TempDir {
            let p = std::env::temp_dir().join(format!("audiobook-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestDb {
    /// A fresh SQLite database in a temporary folder.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile_dir::TempDir::new();
        let url = format!("sqlite://{}", dir.0.join("test.db").display());
        let db = Db::connect(&url).await.expect("sqlite connects");
        db.migrate().await.expect("sqlite migrates");
        TestDb { db, url, _dir: Some(dir), admin_url: None, name: None }
    }

    /// A fresh database on the test PostgreSQL server.
    pub async fn postgres(admin_url: &str) -> TestDb {
        let name = format!("ab_test_{}", Uuid::new_v4().simple());
        let admin = Db::connect(admin_url).await.expect("test PostgreSQL answers");
        if let Db::Postgres(p) = &admin {
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(p).await.expect("create test database");
        }
        admin.close().await;
        let url = replace_database(admin_url, &name);
        let db = Db::connect(&url).await.expect("test database connects");
        db.migrate().await.expect("postgres migrates");
        TestDb { db, url, _dir: None, admin_url: Some(admin_url.to_string()), name: Some(name) }
    }

    /// Drops a PostgreSQL test database (SQLite folders go with the value).
    pub async fn drop(self) {
        self.db.close().await;
        if let (Some(admin_url), Some(name)) = (&self.admin_url, &self.name)
            && let Ok(Db::Postgres(p)) = Db::connect(admin_url).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&p).await;
            p.close().await;
        }
    }
}

/// `postgres://u:p@h:port/db?x` with `db` replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map(|(b, q)| (b, Some(q))).unwrap_or((url, None));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end).unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A fresh PostgreSQL test database, or `None` (with a note) when no server
/// was provided and services are not required.
pub async fn postgres_or_skip() -> Option<TestDb> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(TestDb::postgres(&url).await),
        _ if required() => panic!("TEST_DATABASE_URL is not set; run the tests with `cargo xtask test`"),
        _ => {
            eprintln!("skipped: TEST_DATABASE_URL is not set (cargo xtask test starts PostgreSQL)");
            None
        }
    }
}

pub fn required() -> bool {
    std::env::var("AUDIOBOOK_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The S3-compatible server the test command starts (`TEST_S3_ENDPOINT`,
/// `TEST_S3_BUCKET`), or `None` (with a note) when it is not running.
pub fn s3_or_skip() -> Option<crate::config::StorageConfig> {
    match std::env::var("TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(s3_config(&endpoint)),
        _ if required() => panic!("TEST_S3_ENDPOINT is not set; run the tests with `cargo xtask test`"),
        _ => {
            eprintln!("skipped: TEST_S3_ENDPOINT is not set (cargo xtask test starts an S3-compatible server)");
            None
        }
    }
}

/// Path-style, plain-HTTP S3 settings for a test server at `endpoint`.
pub fn s3_config(endpoint: &str) -> crate::config::StorageConfig {
    crate::config::StorageConfig::S3 {
        bucket: std::env::var("TEST_S3_BUCKET").unwrap_or_else(|_| "audiobook-test".into()),
        region: "us-east-1".into(),
        allow_http: true,
        force_path_style: true,
        endpoint: Some(endpoint.to_string()),
    }
}

/// The transcription worker's command line the test command set up
/// (`TEST_TRANSCRIBER_COMMAND`: the worker's virtualenv Python and
/// `transcriber/transcriber.py`), or `None` (with a note) without one.
pub fn transcriber_or_skip() -> Option<Vec<String>> {
    match std::env::var("TEST_TRANSCRIBER_COMMAND") {
        Ok(c) if !c.trim().is_empty() => Some(c.split_whitespace().map(str::to_string).collect()),
        _ if required() => panic!("TEST_TRANSCRIBER_COMMAND is not set; run the tests with `cargo xtask test`"),
        _ => {
            eprintln!("skipped: TEST_TRANSCRIBER_COMMAND is not set (cargo xtask test installs the worker)");
            None
        }
    }
}
