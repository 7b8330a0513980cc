//! One simulated recorder: onboard, connect, stream a take paced in real
//! time, optionally lose the connection mid-take and resume, stop, wait for
//! `recording-saved`, then fetch the link and check every byte. With
//! `--resilient` the recorder is [`crate::resilient`]'s instead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use audiobook_client::{Api, ConnectOptions, Socket};
use audiobook_wire::{
    AppendAck, AppendChunk, Record, RecordStatus, ResumeAck, ResumeRecording, StartRecording, StopAck, StopRecording,
};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;
use uuid::Uuid;

use crate::payload;
use crate::stats::{Phase, Phased};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The original protocol: no seq, no acks, `{"data": null, "final": true}`
    /// then `stop-recording` with `user_id`.
    Original,
    /// start-recording, seq on every chunk, acks awaited (pipelined), stop with `chunks`.
    Sequenced,
}

/// What every recorder shares.
pub struct Plan {
    pub url: String,
    pub api: Api,
    pub mode: Mode,
    pub chunk_bytes: usize,
    pub interval: Duration,
    pub chunks: u64,
    pub seed: u64,
    pub mime_type: String,
    pub ack_timeout: Duration,
    pub saved_timeout: Duration,
    pub reconnect_delay: Duration,
    /// Takes each recorder records one after the other (same user).
    pub takes: u64,
    /// Survive faults as a real client would (see `resilient`).
    pub resilient: bool,
    /// How long a take saved as `pending` may take to become `ready`.
    pub ready_timeout: Duration,
    pub progress: Progress,
}

/// Live counters for the progress line.
#[derive(Default)]
pub struct Progress {
    pub started: AtomicU64,
    pub streaming: AtomicU64,
    pub chunks_sent: AtomicU64,
    pub finished: AtomicU64,
    pub failed: AtomicU64,
    /// Connections made again after a loss (resilient recorders).
    pub reconnects: AtomicU64,
}

/// What one recorder did; filled in as it goes, so a timed-out recorder
/// still reports what it sent.
#[derive(Debug, Default)]
pub struct Outcome {
    pub bytes_sent: u64,
    pub bytes_resent: u64,
    pub bytes_verified: u64,
    pub mismatch: bool,
    pub dropped: bool,
    /// Ack latencies, by the phase in which the chunk was sent.
    pub acks: Phased,
    /// From the (first) stop to the saved record, by the phase of that stop.
    pub stop_to_saved: Phased,
    /// From the moment a chunk was due (recorded) to its ack, by the phase
    /// it was due in: what a fault costs the client, reconnects included.
    pub due_to_ack: Phased,
    pub stage: &'static str,
    /// Takes saved and verified.
    pub takes_completed: u64,
    /// Connections made again after the first (resilient recorders).
    pub reconnects: u64,
    /// Connection attempts that failed (refused, no server, timed out).
    pub connect_failures: u64,
    /// Takes the server saved as `pending` (upload not confirmed yet) ...
    pub pending_saved: u64,
    /// ... and of those, the ones seen `ready` later and verified again.
    pub pending_ready: u64,
    /// Resumes that answered a `next_seq` below the chunks already
    /// acknowledged: the server lost acknowledged bytes (its spool), and the
    /// recorder sent them again from its own copy.
    pub resumed_below_acked: u64,
    /// Bytes of `pending` takes verified once more from the bucket.
    pub bytes_reverified: u64,
    /// What interrupted the recorder and how often: refusals on the socket,
    /// lost connections, failed connects (numbers and ids left out).
    pub incidents: HashMap<String, u64>,
}

/// The payload stream of take `take` of recorder `index` (take 0 is the
/// recorder's own stream, as before takes were numbered).
pub fn stream_key(index: u64, take: u64) -> u64 {
    index | (take << 32)
}

pub struct Recorder {
    pub plan: Arc<Plan>,
    pub index: u64,
    /// Cut the connection just before sending this chunk.
    pub drop_at: Option<u64>,
}

type Fail = String;

fn err(stage: &str, e: impl std::fmt::Display) -> Fail {
    format!("{stage}: {e}")
}

impl Recorder {
    pub async fn run(&self, out: &mut Outcome) -> Result<(), Fail> {
        let plan = &*self.plan;
        if plan.resilient {
            return self.run_resilient(out).await;
        }
        out.stage = "onboard";
        let user = plan.api.onboard(&format!("lg{}", self.index)).await.map_err(|e| err("onboard", e))?;
        out.stage = "connect";
        let socket = self.connect(&user.token).await?;
        plan.progress.streaming.fetch_add(1, Ordering::Relaxed);
        let result = match plan.mode {
            Mode::Original => self.original(socket, user.user.id, out).await,
            Mode::Sequenced => self.sequenced(socket, user.user.id, &user.token, out).await,
        };
        plan.progress.streaming.fetch_sub(1, Ordering::Relaxed);
        let record = result?;
        out.stage = "verify";
        self.verify(&record, self.index, out).await?;
        out.takes_completed += 1;
        Ok(())
    }

    async fn connect(&self, token: &str) -> Result<Socket, Fail> {
        let options = ConnectOptions { ack_timeout: self.plan.ack_timeout, ..Default::default() };
        Socket::connect_with_options(&self.plan.url, serde_json::json!({ "token": token }), options)
            .await
            .map_err(|e| err("connect", e))
    }

    fn chunk(&self, k: u64) -> bytes::Bytes {
        payload::chunk(self.plan.seed, self.index, k, self.plan.chunk_bytes)
    }

    async fn original(&self, socket: Socket, user_id: Uuid, out: &mut Outcome) -> Result<Record, Fail> {
        let plan = &*self.plan;
        out.stage = "stream";
        let t0 = Instant::now();
        for k in 0..plan.chunks {
            tokio::time::sleep_until(t0 + plan.interval * k as u32).await;
            let chunk = AppendChunk { data: Some(self.chunk(k)), ..Default::default() };
            socket.append_no_ack(&chunk).await.map_err(|e| err("append", e))?;
            out.bytes_sent += plan.chunk_bytes as u64;
            plan.progress.chunks_sent.fetch_add(1, Ordering::Relaxed);
        }
        let end = AppendChunk { data: None, is_final: true, ..Default::default() };
        socket.append_no_ack(&end).await.map_err(|e| err("final chunk", e))?;
        out.stage = "stop";
        let stopped_at = Instant::now();
        socket
            .stop_no_ack(&StopRecording { user_id: Some(user_id), ..Default::default() })
            .await
            .map_err(|e| err("stop", e))?;
        let record = socket.wait_for_saved(plan.saved_timeout).await.map_err(|e| err("recording-saved", e))?;
        out.stop_to_saved.push(Phase::current(), stopped_at.elapsed());
        socket.disconnect().await;
        Ok(record)
    }

    async fn sequenced(
        &self,
        mut socket: Socket,
        user_id: Uuid,
        token: &str,
        out: &mut Outcome,
    ) -> Result<Record, Fail> {
        let plan = &*self.plan;
        out.stage = "start";
        let name = format!("loadgen {}", self.index);
        let start = socket
            .start(&StartRecording { mime_type: plan.mime_type.clone(), name: Some(name) })
            .await
            .map_err(|e| err("start-recording", e))?;
        let rid = start.recording_id;
        out.stage = "stream";
        let t0 = Instant::now();
        let first_end = self.drop_at.unwrap_or(plan.chunks).min(plan.chunks);
        self.stream(&socket, rid, t0, 0, first_end, 0, self.drop_at.is_none(), out).await?;

        if self.drop_at.is_some() {
            // Network loss with acks in flight, then reconnect and resume.
            out.dropped = true;
            out.stage = "reconnect";
            socket.cut();
            tokio::time::sleep(plan.reconnect_delay).await;
            socket = self.connect(token).await?;
            out.stage = "resume";
            let next_seq = match socket.resume(&ResumeRecording { recording_id: rid }).await {
                Ok(ResumeAck::Ok(ok)) => ok.next_seq,
                Ok(ResumeAck::Err(f)) => return Err(err("resume-recording", f.error)),
                Err(e) => return Err(err("resume-recording", e)),
            };
            if next_seq > first_end {
                return Err(format!("resume-recording: next_seq {next_seq} is beyond the {first_end} chunks sent"));
            }
            out.stage = "stream after resume";
            self.stream(&socket, rid, t0, next_seq, plan.chunks, first_end, true, out).await?;
        }

        out.stage = "stop";
        let stop = StopRecording {
            user_id: Some(user_id),
            recording_id: Some(rid),
            chunks: Some(plan.chunks),
            ..Default::default()
        };
        let stopped_at = Instant::now();
        let phase = Phase::current();
        let saved = async {
            let r = socket.wait_for_saved(plan.saved_timeout).await;
            (r, stopped_at.elapsed())
        };
        let (ack, (saved, latency)) = tokio::join!(socket.stop(&stop), saved);
        match ack {
            Ok(StopAck::Ok(_)) => {}
            Ok(StopAck::Err(f)) => return Err(err("stop-recording", f.error)),
            Err(e) => return Err(err("stop-recording", e)),
        }
        let record = saved.map_err(|e| err("recording-saved", e))?;
        out.stop_to_saved.push(phase, latency);
        if record.id != rid {
            return Err(format!("recording-saved names {} instead of {rid}", record.id));
        }
        socket.disconnect().await;
        Ok(record)
    }

    /// Sends chunks `from..to` paced at `t0 + k * interval` (late chunks go at
    /// once), acks pipelined; chunks below `resend_below` were sent before.
    #[allow(clippy::too_many_arguments)]
    async fn stream(
        &self,
        socket: &Socket,
        rid: Uuid,
        t0: Instant,
        from: u64,
        to: u64,
        resend_below: u64,
        wait_acks: bool,
        out: &mut Outcome,
    ) -> Result<(), Fail> {
        let plan = &*self.plan;
        let mut inflight = FuturesUnordered::new();
        let mut k = from;
        loop {
            let due = t0 + plan.interval * k as u32;
            let sleep = tokio::time::sleep_until(due);
            tokio::pin!(sleep);
            tokio::select! {
                _ = &mut sleep, if k < to => {
                    let chunk = AppendChunk {
                        data: Some(self.chunk(k)),
                        seq: Some(k),
                        recording_id: Some(rid),
                        ..Default::default()
                    };
                    let seq = k;
                    let phase = Phase::current();
                    inflight.push(async move {
                        let sent = Instant::now();
                        let r = socket.append(&chunk).await;
                        (seq, r, sent.elapsed(), phase)
                    });
                    if k < resend_below {
                        out.bytes_resent += plan.chunk_bytes as u64;
                    } else {
                        out.bytes_sent += plan.chunk_bytes as u64;
                    }
                    plan.progress.chunks_sent.fetch_add(1, Ordering::Relaxed);
                    k += 1;
                }
                Some((seq, r, latency, phase)) = inflight.next(), if !inflight.is_empty() => {
                    match r {
                        Ok(AppendAck::Ok(ok)) if ok.seq == seq => out.acks.push(phase, latency),
                        Ok(AppendAck::Ok(ok)) => return Err(format!("append {seq}: ack for seq {}", ok.seq)),
                        Ok(AppendAck::Err(e)) => {
                            return Err(format!("append {seq}: refused: {} (next_seq {:?})", e.error, e.next_seq));
                        }
                        Err(e) => return Err(err(&format!("append {seq}"), e)),
                    }
                }
                else => break,
            }
            if k >= to && (!wait_acks || inflight.is_empty()) {
                break;
            }
        }
        Ok(())
    }

    /// Fetches the record's link and compares every byte with stream `key`.
    pub async fn verify(&self, record: &Record, key: u64, out: &mut Outcome) -> Result<(), Fail> {
        let plan = &*self.plan;
        let expected = plan.chunks * plan.chunk_bytes as u64;
        if record.status == RecordStatus::Interrupted {
            return Err(format!("recording {} saved as interrupted", record.id));
        }
        let body = self.fetch(&record.link).await?;
        if let Some(at) = payload::first_mismatch(&body, plan.seed, key, plan.chunks, plan.chunk_bytes) {
            out.mismatch = true;
            out.bytes_verified += at as u64;
            return Err(format!(
                "verify: {} bytes served, {expected} sent; first difference at byte {at} (recording {})",
                body.len(),
                record.id
            ));
        }
        out.bytes_verified += body.len() as u64;
        if record.size_bytes != expected {
            return Err(format!("verify: size_bytes {} in the record, {expected} sent", record.size_bytes));
        }
        Ok(())
    }
}

impl Recorder {
    /// GETs a link. A resilient recorder tries again while the answer is a
    /// transport error or a 5xx (a load balancer without a healthy
    /// instance, a bucket that is down), as a player would when the user
    /// presses play again; anything else is final.
    async fn fetch(&self, link: &str) -> Result<bytes::Bytes, Fail> {
        let plan = &*self.plan;
        let mut backoff = crate::resilient::Backoff::new(self.index);
        let give_up = Instant::now() + plan.ready_timeout;
        loop {
            let outcome = match plan.api.get_bytes(link, None).await {
                Ok((200, _, body)) => return Ok(body),
                Ok((status, _, body)) if status < 500 => {
                    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                    return Err(format!("fetch link: HTTP {status} for {link}: {text}"));
                }
                Ok((status, _, _)) => format!("HTTP {status}"),
                Err(e) => e.to_string(),
            };
            if !plan.resilient || Instant::now() >= give_up {
                return Err(format!("fetch link: {outcome} for {link}"));
            }
            tokio::time::sleep(backoff.next()).await;
        }
    }
}
