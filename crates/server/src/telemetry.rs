//! Metrics for operators (`GET /metrics`, Prometheus text format) and the
//! names they go by. The recorder is process-wide (the `metrics` crate's
//! global), installed once; every instance in a process shares it.
//!
//! What an operator scales and alerts on (docs/deploy.md says how):
//! `audiobook_live_takes` and `audiobook_sockets` per instance, the rates of
//! `audiobook_chunks_received_total` / `audiobook_bytes_received_total`,
//! `audiobook_ack_seconds` (time from a chunk's arrival to its ack),
//! `audiobook_finalize_seconds`, `audiobook_pending_uploads`,
//! `audiobook_reaper_pass_seconds{task}`, and the error counters
//! `audiobook_db_errors_total`, `audiobook_storage_errors_total`,
//! `audiobook_refusals_total{reason}`, and transcription's
//! `audiobook_transcription_events_total{event}` and `audiobook_transcribe_seconds`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const LIVE_TAKES: &str = "audiobook_live_takes";
pub const SOCKETS: &str = "audiobook_sockets";
pub const HTTP_CONNECTIONS: &str = "audiobook_http_connections";
pub const CHUNKS_RECEIVED: &str = "audiobook_chunks_received_total";
pub const BYTES_RECEIVED: &str = "audiobook_bytes_received_total";
pub const ACK_SECONDS: &str = "audiobook_ack_seconds";
pub const FINALIZE_SECONDS: &str = "audiobook_finalize_seconds";
pub const FINALIZE_FAILURES: &str = "audiobook_finalize_failures_total";
pub const PENDING_UPLOADS: &str = "audiobook_pending_uploads";
pub const REAPER_PASS_SECONDS: &str = "audiobook_reaper_pass_seconds";
pub const DB_ERRORS: &str = "audiobook_db_errors_total";
pub const STORAGE_ERRORS: &str = "audiobook_storage_errors_total";
pub const REFUSALS: &str = "audiobook_refusals_total";
pub const TRANSCRIPTION_EVENTS: &str = "audiobook_transcription_events_total";
pub const TRANSCRIBE_SECONDS: &str = "audiobook_transcribe_seconds";

/// Seconds: from a millisecond (an ack) to a minute (a long finalize).
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. If another recorder was
/// installed first (a test harness, say), metrics are rendered empty.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed already; /metrics shows this process's own only");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(LIVE_TAKES, "Takes this instance holds open.");
    describe_gauge!(SOCKETS, "Socket.IO connections open on this instance.");
    describe_gauge!(HTTP_CONNECTIONS, "HTTP connections (WebSockets included) open on this instance.");
    describe_counter!(CHUNKS_RECEIVED, "Audio chunks written to the spool and acknowledged.");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Audio bytes written to the spool and acknowledged.");
    describe_histogram!(ACK_SECONDS, Unit::Seconds, "From a chunk's arrival to its acknowledgement.");
    describe_histogram!(FINALIZE_SECONDS, Unit::Seconds, "Container fix, upload and record of a take.");
    describe_counter!(FINALIZE_FAILURES, "Finalize attempts that failed (and are retried).");
    describe_gauge!(PENDING_UPLOADS, "Takes safe in the spool whose upload is not confirmed (all instances).");
    describe_histogram!(REAPER_PASS_SECONDS, Unit::Seconds, "One pass of a reaper task, by task.");
    describe_counter!(DB_ERRORS, "Database errors.");
    describe_counter!(STORAGE_ERRORS, "Storage (bucket or folder) errors.");
    describe_counter!(REFUSALS, "Requests refused by a limit, by reason.");
    describe_counter!(
        TRANSCRIPTION_EVENTS,
        "Transcription on this instance, by event: worker_started, done, attempt_failed, failed, dropped."
    );
    describe_histogram!(TRANSCRIBE_SECONDS, Unit::Seconds, "One successful transcription job, claim to stored.");
}

pub fn db_error() {
    metrics::counter!(DB_ERRORS).increment(1);
}

pub fn storage_error() {
    metrics::counter!(STORAGE_ERRORS).increment(1);
}

pub fn refused(reason: &'static str) {
    metrics::counter!(REFUSALS, "reason" => reason).increment(1);
}

pub fn observe(name: &'static str, took: Duration) {
    metrics::histogram!(name).record(took.as_secs_f64());
}

/// The text answer of `GET /metrics`.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}
