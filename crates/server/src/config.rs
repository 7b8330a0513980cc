//! Configuration, read from the environment once at start-up. Nothing else in
//! the server reads environment variables.

use std::path::PathBuf;
use std::time::Duration;

/// Where recorded audio is kept once a take is finalized.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageConfig {
    /// A local folder (`STORAGE_DIR`).
    Local { dir: PathBuf },
    /// An S3 bucket; credentials come from the standard AWS environment
    /// variables or the ECS task role, never from this struct.
    S3 { bucket: String, region: String, endpoint: Option<String>, force_path_style: bool, allow_http: bool },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// `sqlite://...` (the embedded default) or `postgres://...`.
    pub database_url: String,
    /// Base of the absolute links the API hands out.
    pub public_url: String,
    /// Origins allowed by CORS besides `public_url` (the web app's origins).
    pub allowed_origins: Vec<String>,
    pub storage: StorageConfig,
    /// Live recordings are written here, chunk by chunk, before they are stored.
    pub spool_dir: PathBuf,
    /// The built web app to serve on the same port, if any.
    pub web_dist: Option<PathBuf>,
    /// Secret for signing playback links; `None`: a random one kept in the database.
    pub link_secret: Option<String>,
    /// Take the client's address from `X-Forwarded-For` (behind a load
    /// balancer that sets it); otherwise the peer address is used.
    pub trust_forwarded_for: bool,
    pub limits: Limits,
    pub transcription: TranscriptionConfig,
}

/// The transcription worker (see `transcription/`): which program, how many
/// at once, which model. Timings other than the environment's are fields so
/// that tests can shorten them.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionConfig {
    /// `TRANSCRIPTION`: `off` turns transcripts off (nothing is queued here).
    pub enabled: bool,
    /// `TRANSCRIBER_COMMAND`: the worker's command line (split on spaces);
    /// without one there are no transcripts.
    pub command: Option<Vec<String>>,
    /// `TRANSCRIPTION_WORKERS`: worker processes, each one job at a time
    /// (0: this instance queues jobs but leaves them to others).
    pub workers: usize,
    /// `TRANSCRIPTION_MODEL`: a faster-whisper model (a folder, or a name it
    /// downloads); `None`: the bundled Whisper tiny.en.
    pub model: Option<String>,
    /// `TRANSCRIPTION_THREADS`: CPU threads per worker.
    pub threads: usize,
    /// A job is killed after `min_job_timeout` plus this many times its
    /// audio's length of CPU time (or ten times that of wall-clock time).
    pub timeout_factor: f64,
    pub min_job_timeout: Duration,
    /// Attempts before a transcript is `failed`.
    pub max_attempts: i32,
    /// First wait before a retry; doubled each attempt, at most 10 minutes.
    pub retry_after: Duration,
    /// A running job's claim lasts this long unless renewed (a quarter of it
    /// is the renewal and cancellation check interval).
    pub lease: Duration,
    /// How often idle workers look for jobs.
    pub poll: Duration,
    /// Audio decoded and transcribed at once, in seconds (memory is flat in
    /// the recording's length).
    pub window_secs: u32,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        TranscriptionConfig {
            enabled: true,
            command: None,
            workers: 1,
            model: None,
            threads: 1,
            timeout_factor: 4.0,
            min_job_timeout: Duration::from_secs(120),
            max_attempts: 3,
            retry_after: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            window_secs: 120,
        }
    }
}

impl TranscriptionConfig {
    /// Whether this instance transcribes (or at least queues) at all.
    pub fn is_on(&self) -> bool {
        self.enabled && self.command.is_some()
    }
}

/// How spool writes are made (`SPOOL_IO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolIo {
    /// Inline on a local disk, through the blocking pool on a network file system.
    Auto,
    Inline,
    Blocking,
}

/// Limits that protect the server; each refusal carries a clear error.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_chunk_bytes: usize,
    pub max_recording_bytes: u64,
    pub max_live_recordings_per_user: usize,
    /// A recording without a client is finalized as `interrupted` after this.
    pub recording_grace: Duration,
    /// A recording whose socket is connected but silent is finalized after this.
    pub recording_idle_timeout: Duration,
    /// How long a playback link stays valid.
    pub link_ttl: Duration,
    pub max_body_bytes: usize,
    /// Open Socket.IO connections per user, across instances.
    pub max_sockets_per_user: u64,
    /// Saved and live recordings per user.
    pub max_recordings_per_user: u64,
    /// Bytes of audio per user, saved and live; 0: no limit.
    pub max_bytes_per_user: u64,
    /// `POST /onboard` per client address per minute (per instance); 0: no limit.
    pub onboard_per_minute: u32,
    /// New takes and chunks are refused while the spool's disk has less free.
    pub min_free_spool_bytes: u64,
    /// Audio one user may send per second, sustained (per instance), after a
    /// burst of 16 seconds' worth.
    pub upload_bytes_per_sec: u64,
    /// A client must send its request headers within this time (slowloris);
    /// also how long an idle keep-alive connection stays open.
    pub http_header_timeout: Duration,
    /// Open HTTP connections (WebSockets included) per instance.
    pub max_http_connections: usize,
    pub spool_io: SpoolIo,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_chunk_bytes: 1024 * 1024,
            max_recording_bytes: 2 * 1024 * 1024 * 1024,
            max_live_recordings_per_user: 4,
            recording_grace: Duration::from_secs(600),
            recording_idle_timeout: Duration::from_secs(3600),
            link_ttl: Duration::from_secs(24 * 3600),
            max_body_bytes: 64 * 1024,
            max_sockets_per_user: 8,
            max_recordings_per_user: 10_000,
            max_bytes_per_user: 10 * 1024 * 1024 * 1024,
            onboard_per_minute: 10,
            min_free_spool_bytes: 512 * 1024 * 1024,
            upload_bytes_per_sec: 1024 * 1024,
            http_header_timeout: Duration::from_secs(10),
            max_http_connections: 10_000,
            spool_io: SpoolIo::Auto,
        }
    }
}

/// Bounds of `MAX_CHUNK_BYTES`: a socket may queue a few chunks, and that
/// must stay a small, representable amount of memory.
pub const MIN_CHUNK_LIMIT: usize = 1024;
pub const MAX_CHUNK_LIMIT: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let port: u16 = parse(&get, "PORT", 3000)?;
        let public_url =
            get("PUBLIC_URL").unwrap_or_else(|| format!("http://localhost:{port}")).trim_end_matches('/').to_string();
        let storage = match get("STORAGE").as_deref().unwrap_or("local") {
            "local" => StorageConfig::Local { dir: get("STORAGE_DIR").unwrap_or_else(|| "./public".into()).into() },
            "s3" => {
                let endpoint = get("S3_ENDPOINT");
                StorageConfig::S3 {
                    bucket: get("S3_BUCKET").ok_or_else(|| ConfigError("STORAGE=s3 needs S3_BUCKET".into()))?,
                    region: get("S3_REGION").or_else(|| get("AWS_REGION")).unwrap_or_else(|| "us-east-1".into()),
                    allow_http: endpoint.as_deref().is_some_and(|e| e.starts_with("http://")),
                    endpoint,
                    force_path_style: parse(&get, "S3_FORCE_PATH_STYLE", false)?,
                }
            }
            other => return Err(ConfigError(format!("STORAGE must be `local` or `s3`, not `{other}`"))),
        };
        let defaults = Limits::default();
        let secs = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            let value: f64 = parse(&get, name, default.as_secs_f64())?;
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| *d <= Duration::from_secs(100 * 365 * 24 * 3600))
                .ok_or_else(|| ConfigError(format!("{name}={value} must be a number of seconds from 0 to 100 years")))
        };
        let limits = Limits {
            max_chunk_bytes: parse(&get, "MAX_CHUNK_BYTES", defaults.max_chunk_bytes)?,
            max_recording_bytes: parse(&get, "MAX_RECORDING_BYTES", defaults.max_recording_bytes)?,
            max_live_recordings_per_user: parse(
                &get,
                "MAX_LIVE_RECORDINGS_PER_USER",
                defaults.max_live_recordings_per_user,
            )?,
            recording_grace: secs("RECORDING_GRACE_SECS", defaults.recording_grace)?,
            recording_idle_timeout: secs("RECORDING_IDLE_TIMEOUT_SECS", defaults.recording_idle_timeout)?,
            link_ttl: secs("LINK_TTL_SECS", defaults.link_ttl)?,
            max_body_bytes: defaults.max_body_bytes,
            max_sockets_per_user: parse(&get, "MAX_SOCKETS_PER_USER", defaults.max_sockets_per_user)?,
            max_recordings_per_user: parse(&get, "MAX_RECORDINGS_PER_USER", defaults.max_recordings_per_user)?,
            max_bytes_per_user: parse(&get, "MAX_BYTES_PER_USER", defaults.max_bytes_per_user)?,
            onboard_per_minute: parse(&get, "ONBOARD_PER_MINUTE", defaults.onboard_per_minute)?,
            min_free_spool_bytes: parse(&get, "MIN_FREE_SPOOL_BYTES", defaults.min_free_spool_bytes)?,
            upload_bytes_per_sec: parse(&get, "UPLOAD_BYTES_PER_SEC", defaults.upload_bytes_per_sec)?,
            http_header_timeout: secs("HTTP_HEADER_TIMEOUT_SECS", defaults.http_header_timeout)?,
            max_http_connections: parse(&get, "MAX_HTTP_CONNECTIONS", defaults.max_http_connections)?,
            spool_io: match get("SPOOL_IO").as_deref().map(str::trim) {
                None | Some("auto") => SpoolIo::Auto,
                Some("inline") => SpoolIo::Inline,
                Some("blocking") => SpoolIo::Blocking,
                Some(other) => {
                    return Err(ConfigError(format!("SPOOL_IO must be auto, inline or blocking, not `{other}`")));
                }
            },
        };
        if !(MIN_CHUNK_LIMIT..=MAX_CHUNK_LIMIT).contains(&limits.max_chunk_bytes) {
            return Err(ConfigError(format!(
                "MAX_CHUNK_BYTES={} must be from {MIN_CHUNK_LIMIT} to {MAX_CHUNK_LIMIT}",
                limits.max_chunk_bytes
            )));
        }
        if limits.max_live_recordings_per_user == 0 || limits.max_sockets_per_user == 0 {
            return Err(ConfigError("MAX_LIVE_RECORDINGS_PER_USER and MAX_SOCKETS_PER_USER must be at least 1".into()));
        }
        if limits.http_header_timeout.is_zero() || limits.max_http_connections == 0 || limits.upload_bytes_per_sec == 0
        {
            return Err(ConfigError(
                "HTTP_HEADER_TIMEOUT_SECS, MAX_HTTP_CONNECTIONS and UPLOAD_BYTES_PER_SEC must be above 0".into(),
            ));
        }
        let transcription = TranscriptionConfig {
            enabled: match get("TRANSCRIPTION").as_deref().map(str::trim) {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => return Err(ConfigError(format!("TRANSCRIPTION must be `on` or `off`, not `{other}`"))),
            },
            command: get("TRANSCRIBER_COMMAND").map(|c| c.split_whitespace().map(str::to_string).collect()),
            workers: parse(&get, "TRANSCRIPTION_WORKERS", 1)?,
            model: get("TRANSCRIPTION_MODEL").map(|m| m.trim().to_string()),
            threads: parse(&get, "TRANSCRIPTION_THREADS", 1)?,
            ..TranscriptionConfig::default()
        };
        if transcription.workers > 64 || !(1..=64).contains(&transcription.threads) {
            return Err(ConfigError(
                "TRANSCRIPTION_WORKERS must be from 0 to 64 and TRANSCRIPTION_THREADS from 1 to 64".into(),
            ));
        }
        Ok(Config {
            host: get("HOST").unwrap_or_else(|| "0.0.0.0".into()),
            port,
            database_url: get("DATABASE_URL").unwrap_or_else(|| "sqlite://data/audiobook.db".into()),
            allowed_origins: get("AUDIOBOOK_URL")
                .map(|v| {
                    v.split(',').map(|o| o.trim().trim_end_matches('/').to_string()).filter(|o| !o.is_empty()).collect()
                })
                .unwrap_or_default(),
            public_url,
            storage,
            spool_dir: get("SPOOL_DIR").unwrap_or_else(|| "./data/spool".into()).into(),
            web_dist: get("WEB_DIST").map(PathBuf::from),
            link_secret: get("LINK_SECRET"),
            trust_forwarded_for: parse(&get, "TRUST_X_FORWARDED_FOR", false)?,
            limits,
            transcription,
        })
    }
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: T,
) -> Result<T, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError(format!("{name}={v:?} is not a valid value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_environment() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.public_url, "http://localhost:3000");
        assert_eq!(c.database_url, "sqlite://data/audiobook.db");
        assert_eq!(c.storage, StorageConfig::Local { dir: "./public".into() });
        assert_eq!(c.limits.max_chunk_bytes, 1024 * 1024);
        assert_eq!(c.limits.recording_grace, Duration::from_secs(600));
        assert_eq!(c.transcription, TranscriptionConfig::default());
        assert!(!c.transcription.is_on(), "no worker command: no transcripts");
    }

    #[test]
    fn transcription_settings() {
        let c = config(&[
            ("TRANSCRIBER_COMMAND", " /venv/bin/python  /app/transcriber.py "),
            ("TRANSCRIPTION_WORKERS", "2"),
            ("TRANSCRIPTION_MODEL", "/models/small"),
        ])
        .unwrap();
        let t = c.transcription;
        assert_eq!(t.command, Some(vec!["/venv/bin/python".to_string(), "/app/transcriber.py".to_string()]));
        assert_eq!((t.workers, t.model.as_deref(), t.threads), (2, Some("/models/small"), 1));
        assert!(t.is_on());
        let off = config(&[("TRANSCRIBER_COMMAND", "w"), ("TRANSCRIPTION", "off")]).unwrap();
        assert!(!off.transcription.is_on());
        for (name, value) in [
            ("TRANSCRIPTION", "maybe"),
            ("TRANSCRIPTION_WORKERS", "-1"),
            ("TRANSCRIPTION_WORKERS", "65"),
            ("TRANSCRIPTION_THREADS", "0"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert!(e.to_string().contains(name), "{name}={value}: {e}");
        }
    }

    #[test]
    fn reads_every_setting() {
        let c = config(&[
            ("PORT", "8080"),
            ("PUBLIC_URL", "https://rec.example/"),
            ("AUDIOBOOK_URL", "https://a.example, https://b.example/"),
            ("STORAGE", "s3"),
            ("S3_BUCKET", "bucket"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("RECORDING_GRACE_SECS", "2.5"),
        ])
        .unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.public_url, "https://rec.example");
        assert_eq!(c.allowed_origins, vec!["https://a.example", "https://b.example"]);
        assert!(matches!(c.storage, StorageConfig::S3 { force_path_style: true, allow_http: true, .. }));
        assert_eq!(c.limits.recording_grace, Duration::from_millis(2500));
    }

    #[test]
    fn bad_values_are_named() {
        let e = config(&[("PORT", "eighty")]).unwrap_err();
        assert!(e.to_string().contains("PORT"), "{e}");
        assert!(config(&[("STORAGE", "s3")]).unwrap_err().to_string().contains("S3_BUCKET"));
        assert!(config(&[("STORAGE", "ftp")]).is_err());
    }

    #[test]
    fn hostile_numbers_are_refused_not_panicked_on() {
        for (name, value) in [
            ("RECORDING_GRACE_SECS", "-1"),
            ("RECORDING_GRACE_SECS", "inf"),
            ("RECORDING_GRACE_SECS", "NaN"),
            ("LINK_TTL_SECS", "1e300"),
            ("MAX_CHUNK_BYTES", "18446744073709551615"),
            ("MAX_CHUNK_BYTES", "0"),
            ("MAX_SOCKETS_PER_USER", "0"),
            ("HTTP_HEADER_TIMEOUT_SECS", "0"),
            ("TRUST_X_FORWARDED_FOR", "maybe"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert!(e.to_string().contains(name), "{name}={value}: {e}");
        }
        let c = config(&[("MAX_BYTES_PER_USER", "0"), ("ONBOARD_PER_MINUTE", "0"), ("TRUST_X_FORWARDED_FOR", "true")])
            .unwrap();
        assert_eq!((c.limits.max_bytes_per_user, c.limits.onboard_per_minute), (0, 0));
        assert!(c.trust_forwarded_for);
    }
}
