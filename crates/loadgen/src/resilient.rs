//! The resilient recorder (`--resilient`): a client that survives any fault
//! of the server side as a real one must. It
//! - keeps every chunk of a take until the take is saved (the chunks are
//!   regenerated from the seed, so keeping them costs nothing here);
//! - reconnects through the URL it was given, with backoff, when the
//!   connection breaks or an ack does not come;
//! - resumes and re-sends from the server's `next_seq`, also from 0 when the
//!   server lost its copy of the take;
//! - waits `retry_after_ms` after every temporary refusal, then resumes;
//! - retries `stop-recording` until the take is saved;
//! - verifies every byte through the link, and a take saved `pending` once
//!   more when it is `ready` (then from the bucket).
//!
//! A refusal that is neither temporary (`retry_after_ms`) nor says where to
//! go on (`next_seq`) ends the recorder with its message: it is what a
//! person would be shown, and a fault must never cause one.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use audiobook_client::{ClientError, ConnectOptions, Socket};
use audiobook_wire::{
    AppendAck, AppendChunk, Failure, Onboarded, Record, RecordStatus, ResumeAck, ResumeRecording, StartRecording,
    StopAck, StopRecording, events,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use uuid::Uuid;

use crate::payload;
use crate::recorder::{Outcome, Recorder, stream_key};
use crate::stats::Phase;

/// Chunks in flight at once while catching up after a reconnect: well
/// within the server's per-socket queue (64 events) and event rate.
const WINDOW: usize = 8;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Exponential backoff with a jitter of up to half the step, different for
/// each recorder, so that the recorders of a dead instance do not all come
/// back in the same millisecond.
pub struct Backoff {
    seed: u64,
    attempt: u32,
}

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        Backoff { seed, attempt: 0 }
    }

    pub fn next(&mut self) -> Duration {
        let step = BACKOFF_MIN.saturating_mul(1 << self.attempt.min(10)).min(BACKOFF_MAX);
        let mix = (self.seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (self.attempt as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9))
            >> 11;
        let jitter = (mix as f64 / (1u64 << 53) as f64) * 0.5;
        self.attempt += 1;
        step.mul_f64(0.5 + jitter)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Why a session on one connection ended without the take saved.
enum Broken {
    /// The connection is gone or stuck: connect again and resume.
    Reconnect(String),
    /// A refusal no retry can change (or a server answer that is wrong).
    Fatal(String),
}

fn lost(stage: &str, e: ClientError) -> Broken {
    match e {
        ClientError::Protocol(_) => Broken::Fatal(format!("{stage}: {e}")),
        _ => Broken::Reconnect(format!("{stage}: {e}")),
    }
}

/// What a refusal asks the client to do.
enum Refusal {
    /// Temporary: send again after this long.
    Retry(Duration),
    /// Go on from `next_seq` (a gap, chunks missing at stop).
    Rewind,
    /// Final: the message is for the person recording.
    Final(String),
}

fn classify(f: &Failure) -> Refusal {
    if let Some(ms) = f.retry_after_ms {
        Refusal::Retry(Duration::from_millis(ms.min(60_000)))
    } else if f.next_seq.is_some() {
        Refusal::Rewind
    } else {
        Refusal::Final(f.error.clone())
    }
}

/// One take of a recorder, as the client knows it.
struct Take {
    key: u64,
    id: Option<Uuid>,
    /// When chunk 0 was due: chunk `k` is due `k` intervals later (the
    /// microphone goes on while the connection is down).
    t0: Instant,
    /// Chunks sent at least once (sending one below is a re-send).
    sent_high: u64,
    /// Chunks acknowledged (the server said they are safe).
    acked_high: u64,
    /// The first stop, and the phase it was sent in.
    first_stop: Option<(Instant, Phase)>,
}

fn incident(out: &mut Outcome, what: &str) {
    *out.incidents.entry(crate::generalize(what)).or_default() += 1;
}

impl Recorder {
    pub async fn run_resilient(&self, out: &mut Outcome) -> Result<(), String> {
        let plan = &*self.plan;
        let mut backoff = Backoff::new(self.index);
        out.stage = "onboard";
        let user = self.onboard_retrying(&mut backoff, out).await?;
        backoff.reset();
        plan.progress.streaming.fetch_add(1, Ordering::Relaxed);
        let mut socket = None;
        let result = self.takes(&user, &mut socket, &mut backoff, out).await;
        plan.progress.streaming.fetch_sub(1, Ordering::Relaxed);
        if let Some(socket) = socket {
            socket.disconnect().await;
        }
        result
    }

    async fn takes(
        &self,
        user: &Onboarded,
        socket: &mut Option<Socket>,
        backoff: &mut Backoff,
        out: &mut Outcome,
    ) -> Result<(), String> {
        let plan = &*self.plan;
        let mut pending = Vec::new();
        let mut connected_before = false;
        for number in 0..plan.takes {
            let mut take = Take {
                key: stream_key(self.index, number),
                id: None,
                t0: Instant::now(),
                sent_high: 0,
                acked_high: 0,
                first_stop: None,
            };
            let record = loop {
                let s = match socket {
                    Some(s) => s,
                    None => {
                        out.stage = "connect";
                        let s = self.connect_retrying(&user.token, backoff, out).await;
                        if connected_before {
                            out.reconnects += 1;
                            plan.progress.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        connected_before = true;
                        socket.insert(s)
                    }
                };
                out.stage = "take";
                match self.session(s, &mut take, backoff, out).await {
                    Ok(record) => break record,
                    Err(Broken::Reconnect(why)) => {
                        incident(out, &format!("connection lost: {why}"));
                        if let Some(s) = socket.take() {
                            s.cut();
                        }
                        tokio::time::sleep(backoff.next()).await;
                    }
                    Err(Broken::Fatal(why)) => return Err(why),
                }
            };
            backoff.reset();
            if let Some((at, phase)) = take.first_stop {
                out.stop_to_saved.push(phase, at.elapsed());
            }
            if let Some(s) = socket.as_ref() {
                // recording-saved and recording-error events: the acks said it all.
                while s.next_event(Duration::ZERO).await.is_ok() {}
            }
            out.stage = "verify";
            self.verify(&record, take.key, out).await?;
            if record.status == RecordStatus::Pending {
                out.pending_saved += 1;
                pending.push((record.id, take.key));
            }
            out.takes_completed += 1;
        }
        if !pending.is_empty() {
            out.stage = "await ready";
            self.await_ready(user, pending, out).await?;
        }
        Ok(())
    }

    async fn onboard_retrying(&self, backoff: &mut Backoff, out: &mut Outcome) -> Result<Onboarded, String> {
        let plan = &*self.plan;
        loop {
            match plan.api.onboard(&format!("lg{}", self.index)).await {
                Ok(user) => return Ok(user),
                Err(e @ (ClientError::Transport(_) | ClientError::Timeout)) => incident(out, &format!("onboard: {e}")),
                Err(ClientError::Http { status, error }) if status == 429 || status >= 500 => {
                    incident(out, &format!("onboard: HTTP {status}: {error}"))
                }
                Err(e) => return Err(format!("onboard: {e}")),
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }

    /// Connects through the URL the recorder was given until it works
    /// (the run's deadline bounds it).
    async fn connect_retrying(&self, token: &str, backoff: &mut Backoff, out: &mut Outcome) -> Socket {
        let plan = &*self.plan;
        let options = ConnectOptions { ack_timeout: plan.ack_timeout, ..Default::default() };
        loop {
            match Socket::connect_with_options(&plan.url, serde_json::json!({ "token": token }), options).await {
                Ok(socket) => return socket,
                Err(e) => {
                    out.connect_failures += 1;
                    incident(out, &format!("connect failed: {e}"));
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }

    /// Drives the take on one connection until it is saved.
    async fn session(
        &self,
        socket: &mut Socket,
        take: &mut Take,
        backoff: &mut Backoff,
        out: &mut Outcome,
    ) -> Result<Record, Broken> {
        let chunks = self.plan.chunks;
        loop {
            let next = match take.id {
                None => {
                    let id = self.start_take(socket, out).await?;
                    take.id = Some(id);
                    take.t0 = Instant::now();
                    0
                }
                Some(id) => match self.resume_take(socket, id, take, out).await? {
                    Some(next) => next,
                    // Saved meanwhile (a stop whose ack was lost): the stop returns it.
                    None => chunks,
                },
            };
            // Working again: the next loss starts its backoff afresh.
            backoff.reset();
            if next < chunks && !self.stream_take(socket, take, next, out).await? {
                continue;
            }
            if let Some(record) = self.stop_take(socket, take, out).await? {
                return Ok(record);
            }
        }
    }

    async fn start_take(&self, socket: &Socket, out: &mut Outcome) -> Result<Uuid, Broken> {
        let plan = &*self.plan;
        let req = StartRecording { mime_type: plan.mime_type.clone(), name: Some(format!("loadgen {}", self.index)) };
        let payload = serde_json::to_value(&req).expect("a StartRecording serializes");
        loop {
            let ack = socket
                .emit_raw(events::START_RECORDING, payload.clone(), Vec::new(), true)
                .await
                .map_err(|e| lost("start-recording", e))?
                .unwrap_or_default();
            if ack.get("ok") == Some(&serde_json::Value::Bool(true)) {
                return ack
                    .get("recording_id")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| Broken::Fatal(format!("start-recording: ack without a recording_id: {ack}")));
            }
            let failure: Failure = serde_json::from_value(ack.clone())
                .map_err(|e| Broken::Fatal(format!("start-recording: unexpected ack ({e}): {ack}")))?;
            incident(out, &format!("refused: start-recording: {}", failure.error));
            match classify(&failure) {
                Refusal::Retry(wait) => tokio::time::sleep(wait).await,
                Refusal::Rewind | Refusal::Final(_) => {
                    return Err(Broken::Fatal(format!("start-recording refused: {}", failure.error)));
                }
            }
        }
    }

    /// Where the server says the take stands: `None` if it is saved already.
    async fn resume_take(
        &self,
        socket: &Socket,
        id: Uuid,
        take: &mut Take,
        out: &mut Outcome,
    ) -> Result<Option<u64>, Broken> {
        loop {
            match socket.resume(&ResumeRecording { recording_id: id }).await.map_err(|e| lost("resume-recording", e))? {
                ResumeAck::Ok(ok) => {
                    let next = ok.next_seq;
                    if next > take.sent_high {
                        return Err(Broken::Fatal(format!(
                            "resume-recording: next_seq {next} is beyond the {} chunks sent (recording {id})",
                            take.sent_high
                        )));
                    }
                    if next < take.acked_high {
                        // Acknowledged chunks are gone on the server (its
                        // spool was lost): send them again from our copy.
                        out.resumed_below_acked += 1;
                        take.acked_high = next;
                    }
                    return Ok(Some(next));
                }
                ResumeAck::Err(failure) => {
                    incident(out, &format!("refused: resume-recording: {}", failure.error));
                    match classify(&failure) {
                        Refusal::Retry(wait) => tokio::time::sleep(wait).await,
                        Refusal::Rewind => {
                            return Err(Broken::Fatal(format!(
                                "resume-recording refused with next_seq: {}",
                                failure.error
                            )));
                        }
                        // After a stop, "already saved" is the answer to expect.
                        Refusal::Final(_) if take.first_stop.is_some() => return Ok(None),
                        Refusal::Final(error) => {
                            return Err(Broken::Fatal(format!("resume-recording refused: {error} (recording {id})")));
                        }
                    }
                }
            }
        }
    }

    /// Sends chunks `from..` paced in real time, at most [`WINDOW`] in
    /// flight. `true` once every chunk is acknowledged; `false` after a
    /// refusal (in-flight acks drained, `retry_after_ms` waited): resume.
    async fn stream_take(
        &self,
        socket: &Socket,
        take: &mut Take,
        from: u64,
        out: &mut Outcome,
    ) -> Result<bool, Broken> {
        let plan = &*self.plan;
        let id = take.id.expect("started");
        let mut inflight = FuturesUnordered::new();
        let mut k = from;
        let mut refused: Option<Duration> = None;
        loop {
            let can_send = refused.is_none() && k < plan.chunks && inflight.len() < WINDOW;
            let due = take.t0 + plan.interval * k as u32;
            tokio::select! {
                _ = tokio::time::sleep_until(due), if can_send => {
                    let chunk = AppendChunk {
                        data: Some(payload::chunk(plan.seed, take.key, k, plan.chunk_bytes)),
                        seq: Some(k),
                        recording_id: Some(id),
                        ..Default::default()
                    };
                    let (seq, phase) = (k, Phase::current());
                    inflight.push(async move {
                        let sent = Instant::now();
                        let r = socket.append(&chunk).await;
                        (seq, r, sent.elapsed(), phase)
                    });
                    if k < take.sent_high {
                        out.bytes_resent += plan.chunk_bytes as u64;
                    } else {
                        out.bytes_sent += plan.chunk_bytes as u64;
                        take.sent_high = k + 1;
                    }
                    plan.progress.chunks_sent.fetch_add(1, Ordering::Relaxed);
                    k += 1;
                }
                Some((seq, r, latency, phase)) = inflight.next(), if !inflight.is_empty() => {
                    match r.map_err(|e| lost(&format!("append {seq}"), e))? {
                        AppendAck::Ok(ok) if ok.seq == seq => {
                            out.acks.push(phase, latency);
                            let due = take.t0 + plan.interval * seq as u32;
                            out.due_to_ack.push(Phase::at(due.into_std()), due.elapsed());
                            take.acked_high = take.acked_high.max(seq + 1);
                        }
                        AppendAck::Ok(ok) => {
                            return Err(Broken::Fatal(format!("append {seq}: ack for seq {}", ok.seq)));
                        }
                        AppendAck::Err(failure) => {
                            incident(out, &format!("refused: append-recording: {}", failure.error));
                            let wait = match classify(&failure) {
                                Refusal::Retry(wait) => wait,
                                Refusal::Rewind => Duration::ZERO,
                                Refusal::Final(error) => {
                                    return Err(Broken::Fatal(format!("append {seq} refused: {error} (recording {id})")));
                                }
                            };
                            refused = Some(refused.unwrap_or_default().max(wait));
                        }
                    }
                }
                else => break,
            }
            if inflight.is_empty() && (refused.is_some() || k >= plan.chunks) {
                break;
            }
        }
        match refused {
            Some(wait) => {
                tokio::time::sleep(wait).await;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// `stop-recording` until it answers the saved record; `None` if chunks
    /// are missing (resume, send them, stop again).
    async fn stop_take(
        &self,
        socket: &mut Socket,
        take: &mut Take,
        out: &mut Outcome,
    ) -> Result<Option<Record>, Broken> {
        let plan = &*self.plan;
        let id = take.id.expect("started");
        take.first_stop.get_or_insert((Instant::now(), Phase::current()));
        let req =
            StopRecording { user_id: None, recording_id: Some(id), chunks: Some(plan.chunks), ..Default::default() };
        loop {
            // Saving includes the upload: give it the saved timeout.
            socket.set_ack_timeout(plan.saved_timeout);
            let reply = socket.stop(&req).await;
            socket.set_ack_timeout(plan.ack_timeout);
            match reply.map_err(|e| lost("stop-recording", e))? {
                StopAck::Ok(ok) if ok.record.id == id => return Ok(Some(ok.record)),
                StopAck::Ok(ok) => {
                    return Err(Broken::Fatal(format!("stop-recording of {id} answered record {}", ok.record.id)));
                }
                StopAck::Err(failure) => {
                    incident(out, &format!("refused: stop-recording: {}", failure.error));
                    match classify(&failure) {
                        Refusal::Retry(wait) => tokio::time::sleep(wait).await,
                        Refusal::Rewind => return Ok(None),
                        Refusal::Final(error) => {
                            return Err(Broken::Fatal(format!("stop-recording refused: {error} (recording {id})")));
                        }
                    }
                }
            }
        }
    }

    /// Waits until every take saved `pending` is listed `ready`, then
    /// verifies each once more through its new link (the bucket's copy).
    async fn await_ready(
        &self,
        user: &Onboarded,
        mut pending: Vec<(Uuid, u64)>,
        out: &mut Outcome,
    ) -> Result<(), String> {
        let plan = &*self.plan;
        let give_up = Instant::now() + plan.ready_timeout;
        loop {
            if let Ok(records) = plan.api.records(user.user.id, &user.token).await {
                let by_id: HashMap<Uuid, &Record> = records.iter().map(|r| (r.id, r)).collect();
                let mut still = Vec::new();
                for (id, key) in pending {
                    match by_id.get(&id) {
                        Some(r) if r.status == RecordStatus::Ready => {
                            let verified = out.bytes_verified;
                            self.verify(r, key, out).await?;
                            out.bytes_reverified += out.bytes_verified - verified;
                            out.bytes_verified = verified;
                            out.pending_ready += 1;
                        }
                        Some(r) if r.status == RecordStatus::Pending => still.push((id, key)),
                        Some(r) => return Err(format!("recording {id} went from pending to {:?}", r.status)),
                        None => return Err(format!("recording {id} is no longer listed")),
                    }
                }
                pending = still;
            }
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= give_up {
                return Err(format!(
                    "{} takes still pending {} s after the last take (e.g. recording {})",
                    pending.len(),
                    plan.ready_timeout.as_secs(),
                    pending[0].0
                ));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::new(7);
        let steps: Vec<Duration> = (0..12).map(|_| b.next()).collect();
        assert!(steps[0] >= BACKOFF_MIN / 2 && steps[0] <= BACKOFF_MIN, "{steps:?}");
        assert!(steps[3] > steps[0], "{steps:?}");
        assert!(steps.iter().all(|s| *s <= BACKOFF_MAX), "{steps:?}");
        assert!(steps[11] >= BACKOFF_MAX / 2, "{steps:?}");
        b.reset();
        assert!(b.next() <= BACKOFF_MIN);
        // Two recorders do not back off in lockstep.
        assert_ne!(Backoff::new(1).next(), Backoff::new(2).next());
    }

    #[test]
    fn refusals_are_classified_by_what_they_ask() {
        let retry = Failure { retry_after_ms: Some(2000), next_seq: Some(3), ..Failure::new("db down") };
        assert!(matches!(classify(&retry), Refusal::Retry(d) if d == Duration::from_secs(2)));
        let gap = Failure { next_seq: Some(3), ..Failure::new("gap") };
        assert!(matches!(classify(&gap), Refusal::Rewind));
        assert!(matches!(classify(&Failure::new("not yours")), Refusal::Final(e) if e == "not yours"));
    }
}
