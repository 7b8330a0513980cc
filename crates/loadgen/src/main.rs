//! `loadgen`: N simulated live recorders against one AudioBook server on this
//! machine. Each onboards, connects over Socket.IO with its token, streams a
//! take of deterministic pseudo-random bytes paced in real time, stops, waits
//! for `recording-saved`, then fetches the link and checks every byte.
//!
//! With `--resilient` each recorder survives faults of the server side as
//! a real client would (see `resilient.rs`), optionally records several
//! takes in a row (`--takes`), and its latencies are kept apart by the
//! phase of a fault that a harness announces on standard input
//! (`--phases-from-stdin`: lines `phase during`, `phase after`).
//!
//! Prints a progress line every few seconds, a human summary, and one JSON
//! summary line last. Exits non-zero if any recorder failed or timed out or
//! any byte differed. Bounded in count and time, loopback only.

mod payload;
mod recorder;
mod resilient;
mod stats;

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use audiobook_client::Api;
use clap::Parser;
use serde_json::json;
use tokio::time::Instant;

use recorder::{Mode, Outcome, Plan, Progress, Recorder};
use stats::{Phase, Phased, ProcReading};

const MAX_RECORDERS: u64 = 20_000;
const MAX_TIMEOUT_SECS: u64 = 4 * 3600;

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Simulated live recorders against a local AudioBook server; every byte verified.")]
struct Args {
    /// Base URL of the server (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Number of simulated recorders.
    #[arg(long, default_value_t = 10)]
    recorders: u64,
    /// Recorders start evenly spread over this many seconds.
    #[arg(long, default_value_t = 10.0)]
    ramp_up_secs: f64,
    /// Length of each take, in seconds.
    #[arg(long, default_value_t = 30.0)]
    duration_secs: f64,
    /// Bytes per chunk.
    #[arg(long, default_value_t = 4096)]
    chunk_bytes: usize,
    /// Milliseconds between chunks.
    #[arg(long, default_value_t = 250)]
    interval_ms: u64,
    #[arg(long, value_enum, default_value_t = Mode::Sequenced)]
    mode: Mode,
    /// Fraction of recorders whose connection is cut mid-take (then they
    /// reconnect, resume-recording and re-send from next_seq). Sequenced mode only.
    #[arg(long, default_value_t = 0.0)]
    drop_fraction: f64,
    /// Pause between a cut and the reconnect, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    reconnect_delay_ms: u64,
    /// Server process to watch (RSS, peak RSS, CPU seconds from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Tokio worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
    /// Hard bound of the whole run; recorders still busy then count as timed out.
    /// Default: ramp-up + duration + 120 s.
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// How long an ack may take.
    #[arg(long, default_value_t = 10)]
    ack_timeout_secs: u64,
    /// How long recording-saved may take after stop.
    #[arg(long, default_value_t = 30)]
    saved_timeout_secs: u64,
    /// Seed of the payloads.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// mime_type of sequenced takes (the bytes are opaque either way).
    #[arg(long, default_value = "audio/webm")]
    mime_type: String,
    /// Seconds between progress lines (0: none).
    #[arg(long, default_value_t = 5)]
    progress_secs: u64,
    /// Survive any fault as a real client would: reconnect with backoff,
    /// resume, re-send from the server's next_seq (from 0 if the server lost
    /// the take), honour retry_after_ms, retry stop until saved. Sequenced mode.
    #[arg(long)]
    resilient: bool,
    /// Takes each recorder records one after the other (resilient mode).
    #[arg(long, default_value_t = 1)]
    takes: u64,
    /// Read `phase before|during|after` lines on standard input and report
    /// latencies per phase.
    #[arg(long)]
    phases_from_stdin: bool,
    /// How long a take saved as `pending` may stay so after a recorder's
    /// last take (resilient mode); also bounds retries of a playback link.
    #[arg(long, default_value_t = 300)]
    ready_timeout_secs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = check(&args) {
        eprintln!("loadgen: {e}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.worker_threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args))
}

fn check(args: &Args) -> Result<(), String> {
    let uri: http::Uri = args.url.parse().map_err(|e| format!("--url {:?}: {e}", args.url))?;
    let host = uri.host().ok_or_else(|| format!("--url {:?} has no host", args.url))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!("--url must be a loopback address (127.0.0.1, ::1, localhost), not {host:?}"));
    }
    if uri.scheme_str() != Some("http") {
        return Err("--url must be plain http://".into());
    }
    if args.recorders == 0 || args.recorders > MAX_RECORDERS {
        return Err(format!("--recorders must be 1..={MAX_RECORDERS}"));
    }
    if !(0.0..=1.0).contains(&args.drop_fraction) {
        return Err("--drop-fraction must be within 0..=1".into());
    }
    if args.resilient && (args.mode == Mode::Original || args.drop_fraction > 0.0) {
        return Err("--resilient needs --mode sequenced and no --drop-fraction (faults come from outside)".into());
    }
    if args.takes == 0 || args.takes > 1000 || (args.takes > 1 && !args.resilient) {
        return Err("--takes must be 1..=1000, and above 1 only with --resilient".into());
    }
    if args.drop_fraction > 0.0 && args.mode == Mode::Original {
        return Err("--drop-fraction needs --mode sequenced (the original protocol cannot resume)".into());
    }
    if args.chunk_bytes == 0 || args.chunk_bytes > 1 << 20 {
        return Err("--chunk-bytes must be 1..=1048576".into());
    }
    if args.interval_ms == 0
        || args.duration_secs.is_nan()
        || args.duration_secs <= 0.0
        || args.ramp_up_secs.is_nan()
        || args.ramp_up_secs < 0.0
    {
        return Err("--interval-ms and --duration-secs must be positive, --ramp-up-secs not negative".into());
    }
    if args.timeout_secs.is_some_and(|t| t == 0 || t > MAX_TIMEOUT_SECS) {
        return Err(format!("--timeout-secs must be 1..={MAX_TIMEOUT_SECS}"));
    }
    if args.ramp_up_secs + args.duration_secs * args.takes as f64 > MAX_TIMEOUT_SECS as f64 {
        return Err("ramp-up plus duration exceeds the 4-hour bound".into());
    }
    Ok(())
}

async fn run(args: Args) -> ExitCode {
    let chunks = ((args.duration_secs * 1000.0) / args.interval_ms as f64).round().max(1.0) as u64;
    let timeout = Duration::from_secs(
        args.timeout_secs.unwrap_or((args.ramp_up_secs + args.duration_secs * args.takes as f64).ceil() as u64 + 120),
    );
    if args.phases_from_stdin {
        read_phases_from_stdin();
    }
    if let Some(limit) = stats::open_files_limit() {
        let need = args.recorders * 2 + 64;
        if limit < need {
            eprintln!("loadgen: warning: open files limit {limit} < {need} needed; raise it with `ulimit -n {need}`");
        }
    }
    let server_pid = args.server_pid.map(|p| p.to_string());
    let server_start = server_pid.as_deref().and_then(stats::read_proc);
    if server_pid.is_some() && server_start.is_none() {
        eprintln!(
            "loadgen: warning: cannot read /proc/{} (server stats will be missing)",
            server_pid.as_deref().unwrap()
        );
    }
    let self_start = stats::read_proc("self");

    let plan = Arc::new(Plan {
        url: args.url.trim_end_matches('/').to_owned(),
        api: Api::new(&args.url),
        mode: args.mode,
        chunk_bytes: args.chunk_bytes,
        interval: Duration::from_millis(args.interval_ms),
        chunks,
        seed: args.seed,
        mime_type: args.mime_type.clone(),
        ack_timeout: Duration::from_secs(args.ack_timeout_secs),
        saved_timeout: Duration::from_secs(args.saved_timeout_secs),
        reconnect_delay: Duration::from_millis(args.reconnect_delay_ms),
        takes: args.takes,
        resilient: args.resilient,
        ready_timeout: Duration::from_secs(args.ready_timeout_secs),
        progress: Progress::default(),
    });
    println!(
        "loadgen: {} recorders ({:?}{}), {} x {} chunks of {} B every {} ms ({:.1} KB/s each, {:.0} s takes), ramp-up {} s, drop {:.0}%, timeout {} s",
        args.recorders,
        args.mode,
        if args.resilient { ", resilient" } else { "" },
        args.takes,
        chunks,
        args.chunk_bytes,
        args.interval_ms,
        args.chunk_bytes as f64 * 1000.0 / args.interval_ms as f64 / 1024.0,
        chunks as f64 * args.interval_ms as f64 / 1000.0,
        args.ramp_up_secs,
        args.drop_fraction * 100.0,
        timeout.as_secs()
    );

    let started = Instant::now();
    let deadline = started + timeout;
    let mut tasks = Vec::with_capacity(args.recorders as usize);
    for index in 0..args.recorders {
        let drop_at = drop_point(args.seed, index, args.drop_fraction, chunks);
        let recorder = Recorder { plan: plan.clone(), index, drop_at };
        let offset = Duration::from_secs_f64(args.ramp_up_secs * index as f64 / args.recorders as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(started + offset).await;
            recorder.plan.progress.started.fetch_add(1, Ordering::Relaxed);
            let mut out = Outcome::default();
            let result = match tokio::time::timeout_at(deadline, recorder.run(&mut out)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Some(e)),
                Err(_) => Err(None),
            };
            let counter =
                if result.is_ok() { &recorder.plan.progress.finished } else { &recorder.plan.progress.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            (index, result, out)
        }));
    }

    // Sample the server's RSS every second (VmHWM covers its whole life,
    // this covers the run) and print progress.
    let sampler = {
        let plan = plan.clone();
        let pid = server_pid.clone();
        let progress_every = args.progress_secs;
        tokio::spawn(async move {
            let mut peak_rss_kb = 0u64;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let reading = pid.as_deref().and_then(stats::read_proc);
                if let Some(r) = reading {
                    peak_rss_kb = peak_rss_kb.max(r.rss_kb);
                }
                n += 1;
                if progress_every > 0 && n.is_multiple_of(progress_every) {
                    let p = &plan.progress;
                    println!(
                        "[{:>5.0} s] started {} streaming {} done {} failed {} chunks {} reconnects {} ({}){}",
                        started.elapsed().as_secs_f64(),
                        p.started.load(Ordering::Relaxed),
                        p.streaming.load(Ordering::Relaxed),
                        p.finished.load(Ordering::Relaxed),
                        p.failed.load(Ordering::Relaxed),
                        p.chunks_sent.load(Ordering::Relaxed),
                        p.reconnects.load(Ordering::Relaxed),
                        Phase::current().name(),
                        reading
                            .map(|r| format!(
                                " | server RSS {:.0} MB, CPU {:.1} s",
                                r.rss_kb as f64 / 1024.0,
                                r.cpu_secs
                            ))
                            .unwrap_or_default()
                    );
                }
                // The loop ends when the task is aborted.
                PEAK_RSS_KB.fetch_max(peak_rss_kb, Ordering::Relaxed);
            }
        })
    };

    let mut completed = 0u64;
    let mut failed = 0u64;
    let mut timed_out = 0u64;
    let mut dropped = 0u64;
    let mut mismatched = 0u64;
    let mut bytes_sent = 0u64;
    let mut bytes_resent = 0u64;
    let mut bytes_verified = 0u64;
    let mut acks = Phased::default();
    let mut saved = Phased::default();
    let mut due_to_ack = Phased::default();
    let mut takes_completed = 0u64;
    let mut reconnects = 0u64;
    let mut connect_failures = 0u64;
    let mut pending_saved = 0u64;
    let mut pending_ready = 0u64;
    let mut resumed_below_acked = 0u64;
    let mut bytes_reverified = 0u64;
    let mut incidents: HashMap<String, u64> = HashMap::new();
    let mut reasons: HashMap<String, (u64, u64)> = HashMap::new();
    let mut stuck: HashMap<&'static str, u64> = HashMap::new();
    for task in tasks {
        let (index, result, out) = match task.await {
            Ok(r) => r,
            Err(e) => {
                failed += 1;
                *reasons.entry(format!("recorder task panicked: {e}")).or_default() = (1, 0);
                continue;
            }
        };
        bytes_sent += out.bytes_sent;
        bytes_resent += out.bytes_resent;
        bytes_verified += out.bytes_verified;
        mismatched += out.mismatch as u64;
        dropped += out.dropped as u64;
        acks.extend(out.acks);
        saved.extend(out.stop_to_saved);
        due_to_ack.extend(out.due_to_ack);
        takes_completed += out.takes_completed;
        reconnects += out.reconnects;
        connect_failures += out.connect_failures;
        pending_saved += out.pending_saved;
        pending_ready += out.pending_ready;
        resumed_below_acked += out.resumed_below_acked;
        bytes_reverified += out.bytes_reverified;
        for (what, n) in out.incidents {
            *incidents.entry(what).or_default() += n;
        }
        match result {
            Ok(()) => completed += 1,
            Err(Some(reason)) => {
                failed += 1;
                let entry = reasons.entry(generalize(&reason)).or_insert((0, index));
                entry.0 += 1;
            }
            Err(None) => {
                timed_out += 1;
                *stuck.entry(out.stage).or_default() += 1;
            }
        }
    }
    sampler.abort();
    let wall = started.elapsed().as_secs_f64();

    let server_end = server_pid.as_deref().and_then(stats::read_proc);
    let self_end = stats::read_proc("self");
    let run_peak_kb = PEAK_RSS_KB.load(Ordering::Relaxed).max(server_end.map_or(0, |r| r.rss_kb));
    let server_cpu = match (server_start, server_end) {
        (Some(a), Some(b)) => Some(b.cpu_secs - a.cpu_secs),
        _ => None,
    };
    let mb = |kb: u64| stats::round(kb as f64 / 1024.0);

    println!();
    println!("== loadgen summary ({wall:.1} s wall) ==");
    println!(
        "recorders: {} completed, {failed} failed, {timed_out} timed out (of {}); {dropped} cut mid-take and resumed",
        completed, args.recorders
    );
    println!(
        "bytes: {bytes_sent} sent ({bytes_resent} re-sent after resume), {bytes_verified} verified; {mismatched} takes with differing bytes"
    );
    println!("ack latency:    {}", acks.all().human());
    println!("stop -> saved:  {}", saved.all().human());
    if args.resilient {
        println!(
            "takes: {takes_completed} saved and verified (of {}); {reconnects} reconnects, {connect_failures} failed connects; {resumed_below_acked} resumes below the acknowledged chunks; {pending_saved} saved pending, {pending_ready} of them ready later ({bytes_reverified} bytes verified again from the bucket)",
            args.recorders * args.takes
        );
    }
    if args.phases_from_stdin {
        for phase in Phase::ALL {
            println!(
                "phase {:<6}  ack: {}; stop -> saved: {}",
                phase.name(),
                acks.phase(phase).human(),
                saved.phase(phase).human()
            );
            if args.resilient {
                println!("              chunk due -> acked: {}", due_to_ack.phase(phase).human());
            }
        }
    }
    let mut incident_list: Vec<_> = incidents.iter().collect();
    incident_list.sort_by_key(|(what, n)| (std::cmp::Reverse(**n), (*what).clone()));
    for (what, n) in incident_list.iter().take(12) {
        println!("incident x{n}: {what}");
    }
    if let Some(end) = server_end {
        println!(
            "server: peak RSS {:.0} MB during the run (VmHWM {:.0} MB), RSS at end {:.0} MB, CPU {:.1} s",
            mb(run_peak_kb),
            mb(end.hwm_kb),
            mb(end.rss_kb),
            server_cpu.unwrap_or(0.0)
        );
    }
    if let (Some(a), Some(b)) = (self_start, self_end) {
        println!("loadgen: peak RSS {:.0} MB, CPU {:.1} s", mb(b.hwm_kb), b.cpu_secs - a.cpu_secs);
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    for (reason, (count, example)) in reasons.iter().take(10) {
        println!("failure x{count} (e.g. recorder {example}): {reason}");
    }
    for (stage, count) in &stuck {
        println!("timed out x{count} during {stage}");
    }

    let summary = json!({
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "recorders": args.recorders,
        "chunk_bytes": args.chunk_bytes,
        "interval_ms": args.interval_ms,
        "chunks_per_take": chunks,
        "ramp_up_secs": args.ramp_up_secs,
        "drop_fraction": args.drop_fraction,
        "completed": completed,
        "failed": failed,
        "timed_out": timed_out,
        "dropped_and_resumed": dropped,
        "mismatched_takes": mismatched,
        "bytes_sent": bytes_sent,
        "bytes_resent": bytes_resent,
        "bytes_verified": bytes_verified,
        "ack_latency_ms": acks.all().json(),
        "stop_to_saved_ms": saved.all().json(),
        "resilient": args.resilient,
        "takes_per_recorder": args.takes,
        "takes_completed": takes_completed,
        "reconnects": reconnects,
        "connect_failures": connect_failures,
        "resumed_below_acked": resumed_below_acked,
        "pending_saved": pending_saved,
        "pending_ready": pending_ready,
        "bytes_reverified": bytes_reverified,
        "phases": Phase::ALL.iter().map(|&p| (p.name().to_string(), json!({
            "ack_ms": acks.phase(p).json(),
            "stop_to_saved_ms": saved.phase(p).json(),
            "due_to_ack_ms": due_to_ack.phase(p).json(),
        }))).collect::<serde_json::Map<String, serde_json::Value>>(),
        "incidents": incidents,
        "server": server_end.map(|end: ProcReading| json!({
            "pid": args.server_pid,
            "peak_rss_mb": mb(run_peak_kb),
            "vmhwm_mb": mb(end.hwm_kb),
            "rss_end_mb": mb(end.rss_kb),
            "cpu_secs": server_cpu.map(stats::round),
        })),
        "loadgen": self_end.map(|end| json!({
            "peak_rss_mb": mb(end.hwm_kb),
            "cpu_secs": self_start.map(|s| stats::round(end.cpu_secs - s.cpu_secs)),
            "worker_threads": args.worker_threads,
        })),
        "wall_secs": stats::round(wall),
    });
    println!("{summary}");

    if failed == 0 && timed_out == 0 && mismatched == 0 && completed == args.recorders {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

static PEAK_RSS_KB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A thread that sets the phase from `phase NAME` lines on standard input
/// (the harness that injects a fault writes them).
fn read_phases_from_stdin() {
    std::thread::spawn(|| {
        let started = std::time::Instant::now();
        for line in std::io::stdin().lines().map_while(Result::ok) {
            match line.trim().strip_prefix("phase ").and_then(|p| Phase::parse(p.trim())) {
                Some(phase) => {
                    phase.set();
                    println!("loadgen: phase {} at {:.1} s", phase.name(), started.elapsed().as_secs_f64());
                }
                None => eprintln!("loadgen: ignored on stdin: {line:?} (expected `phase before|during|after`)"),
            }
        }
    });
}

/// Which recorders lose their connection, and before which chunk: a
/// deterministic choice from the seed, cut between 25% and 75% of the take.
fn drop_point(seed: u64, index: u64, fraction: f64, chunks: u64) -> Option<u64> {
    if fraction <= 0.0 || chunks < 2 {
        return None;
    }
    let h = payload::chunk(seed ^ 0xD0D0, index, u64::MAX, 16);
    let pick = u64::from_le_bytes(h[0..8].try_into().unwrap()) as f64 / u64::MAX as f64;
    let at = u64::from_le_bytes(h[8..16].try_into().unwrap()) as f64 / u64::MAX as f64;
    (pick < fraction).then(|| ((chunks as f64 * (0.25 + 0.5 * at)) as u64).clamp(1, chunks - 1))
}

/// Failure messages grouped without their numbers and ids.
pub fn generalize(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_num = false;
    for c in reason.chars() {
        if c.is_ascii_hexdigit() && (c.is_ascii_digit() || in_num) {
            if !in_num {
                out.push('#');
            }
            in_num = true;
        } else if in_num && c == '-' {
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}
