//! `cargo xtask cluster`: three server instances behind HAProxy (configured
//! like the ALB of docs/deploy.md), one PostgreSQL, one S3-compatible server
//! (moto) behind a TCP proxy that can be taken down, and the load program's
//! resilient recorders connecting through the load balancer, under five
//! faults:
//!
//! 1. an instance SIGKILLed mid-take (and replaced);
//! 2. a rolling deployment: each instance drained, SIGTERMed, replaced;
//! 3. an instance killed with its spool (each instance has its own spool
//!    folder; the dead one's is deleted): the clients re-send;
//! 4. PostgreSQL restarted (down longer than the heartbeat lease);
//! 5. the bucket unreachable for 30 s.
//!
//! Each scenario starts from nothing (fresh database, bucket and spools) and
//! checks what the fault must not break, and that the fault really happened
//! (a check that cannot fail proves nothing). `cargo xtask test` runs a
//! smaller version ([`test_step`]).
//!
//! Std only: processes, threads and sockets.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::services::{self, Postgres, S3};
use crate::util::{self, Result, free_port, root};

const INSTANCES: usize = 3;
/// The load balancer's health check: every second, down after 3 failures,
/// up after 2 successes (the ALB's 15 s / 3 / 2, sped up for a test).
const CHECK_INTER_MS: u64 = 1000;
/// How long a drained instance keeps its connections before it gets
/// SIGTERM (the ALB's deregistration delay, shortened).
const DRAIN: Duration = Duration::from_secs(3);
/// A take must be saved within this long of its first stop, whatever the
/// fault: 4 times the longest legitimate wait (a stop during the database
/// outage). Longer means a take was stuck.
const MAX_STOP_TO_SAVED_MS: f64 = 120_000.0;
/// How long the database stays down: longer than the heartbeat lease
/// (3 x 5 s with the default grace period), so chunks are refused.
const DATABASE_DOWN: Duration = Duration::from_secs(25);
const BUCKET_DOWN: Duration = Duration::from_secs(30);
/// Three missed heartbeats of a holder (3 x 5 s with the default grace):
/// after that a take whose spool is lost starts over elsewhere.
const HOLDER_SILENCE: Duration = Duration::from_secs(15);
const STICKY_COOKIE: &str = "AWSALB";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Scenario {
    #[default]
    Kill = 1,
    Rolling = 2,
    LostSpool = 3,
    DatabaseRestart = 4,
    BucketOutage = 5,
}

impl Scenario {
    const ALL: [Scenario; 5] =
        [Scenario::Kill, Scenario::Rolling, Scenario::LostSpool, Scenario::DatabaseRestart, Scenario::BucketOutage];

    fn title(self) -> &'static str {
        match self {
            Scenario::Kill => "instance SIGKILLed mid-take",
            Scenario::Rolling => "rolling deployment (drain, SIGTERM, replace, each in turn)",
            Scenario::LostSpool => "instance killed with its spool (instance-local spools)",
            Scenario::DatabaseRestart => "PostgreSQL restarted",
            Scenario::BucketOutage => "S3 unreachable for 30 s",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Scenario::Kill => "1 kill",
            Scenario::Rolling => "2 rolling deploy",
            Scenario::LostSpool => "3 kill + spool lost",
            Scenario::DatabaseRestart => "4 PostgreSQL restart",
            Scenario::BucketOutage => "5 S3 down 30 s",
        }
    }
}

/// What a run is made of.
#[derive(Debug, Clone)]
pub struct Options {
    recorders: u64,
    /// Length of a take; recorders start spread over one take length.
    secs: u64,
    takes: u64,
    scenarios: Vec<Scenario>,
    release: bool,
    /// Instance-local spools in every scenario (scenario 3 always has them),
    /// lost with their instance: a replacement starts with an empty one, as
    /// a new Fargate task gets a new ephemeral disk.
    local_spools: bool,
}

const USAGE: &str =
    "usage: cargo xtask cluster [--recorders N] [--secs S] [--takes K] [--scenarios 1,2,3,4,5] [--local-spools] [--debug]
  N recorders (default 300) at 16 KB/s through HAProxy, each recording K takes (default 3) of S seconds
  (default 30) one after the other; --local-spools gives every instance its own spool folder, lost
  when the instance is replaced (scenario 3 always runs so); --debug uses debug binaries (cargo xtask
  test runs `--debug --recorders 30 --secs 20 --takes 2 --scenarios 1,2,3`)";

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options {
            recorders: 300,
            secs: 30,
            takes: 3,
            scenarios: Scenario::ALL.to_vec(),
            release: true,
            local_spools: false,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
            let number = |v: String, name: &str, max: u64| -> Result<u64> {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| format!("{name} must be 1..={max}, not {v:?}"))
            };
            match arg.as_str() {
                "--recorders" => o.recorders = number(value("--recorders")?, "--recorders", 5000)?,
                "--secs" => o.secs = number(value("--secs")?, "--secs", 3600)?,
                "--takes" => o.takes = number(value("--takes")?, "--takes", 100)?,
                "--local-spools" => o.local_spools = true,
                "--debug" => o.release = false,
                "--scenarios" => {
                    o.scenarios = value("--scenarios")?
                        .split(',')
                        .map(|n| {
                            Scenario::ALL
                                .into_iter()
                                .find(|s| s.to_string() == n.trim())
                                .ok_or_else(|| format!("no scenario {n:?} (1 to 5)"))
                        })
                        .collect::<Result<_>>()?;
                }
                "-h" | "--help" => return Err(USAGE.into()),
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        if o.secs < 10 {
            return Err("--secs must be at least 10: a fault needs a take to happen in".into());
        }
        Ok(o)
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", *self as u8)
    }
}

/// `cargo xtask cluster ...`: release build, then the scenarios asked for.
pub fn cluster_command(args: &[String]) -> Result {
    let options = Options::parse(args)?;
    run(&options)
}

/// The step of `cargo xtask test`: 30 recorders, two 20 s takes each,
/// scenarios 1-3, debug binaries. Each scenario counts as one test.
pub fn test_step() -> Result {
    let args: Vec<String> =
        "--debug --recorders 30 --secs 20 --takes 2 --scenarios 1,2,3".split(' ').map(String::from).collect();
    run(&Options::parse(&args)?)
}

fn run(options: &Options) -> Result {
    let started = Instant::now();
    let profile = if options.release { "release" } else { "debug" };
    let mut build = vec!["build", "-p", "audiobook-server", "-p", "audiobook-loadgen"];
    if options.release {
        build.push("--release");
    }
    util::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(&build).current_dir(root()),
    )?;
    let bins = Binaries {
        server: root().join("target").join(profile).join("audiobook-server"),
        loadgen: root().join("target").join(profile).join("loadgen"),
        haproxy: haproxy()?,
    };
    let work = root().join("target/cluster");
    let mut results = Vec::new();
    for &scenario in &options.scenarios {
        let dir = work.join(format!("scenario-{scenario}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        eprintln!("\n=== cluster scenario {scenario}: {} ===", scenario.title());
        let t = Instant::now();
        let result = run_scenario(scenario, options, &bins, &dir).unwrap_or_else(|e| ScenarioResult {
            scenario,
            problems: vec![format!("the harness failed: {e}")],
            ..ScenarioResult::default()
        });
        let counter = if result.problems.is_empty() { &util::PASSED } else { &util::FAILED };
        counter.fetch_add(1, Ordering::Relaxed);
        result.print(t.elapsed(), &dir);
        results.push(result);
    }
    print_table(options, &results, started.elapsed());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| format!("scenario {}: {}", r.scenario, r.problems.join("; ")))
        .collect();
    if failed.is_empty() { Ok(()) } else { Err(failed.join("\n")) }
}

struct Binaries {
    server: PathBuf,
    loadgen: PathBuf,
    haproxy: PathBuf,
}

fn haproxy() -> Result<PathBuf> {
    let find = || util::which("haproxy").or_else(|| Some(PathBuf::from("/usr/sbin/haproxy")).filter(|p| p.is_file()));
    if let Some(p) = find() {
        return Ok(p);
    }
    util::apt_install(&["haproxy"])?;
    find().ok_or_else(|| "haproxy was installed but is not on PATH nor in /usr/sbin".into())
}

// ------------------------------------------------------------ one scenario

#[derive(Debug, Default)]
struct ScenarioResult {
    scenario: Scenario,
    /// The load program's JSON summary.
    summary: Option<json::Value>,
    /// What happened when (fault steps, detection and recovery times).
    timeline: Vec<String>,
    /// Counters of the instances' /metrics at the end, summed.
    metrics: Vec<(String, f64)>,
    problems: Vec<String>,
}

/// Everything a scenario runs, stopped (killed) when dropped.
struct Cluster {
    /// Each instance has its own spool, lost with it.
    local_spools: bool,
    postgres: Postgres,
    s3: S3,
    bucket_proxy: TcpProxy,
    instances: Vec<Instance>,
    balancer: Haproxy,
    started: Instant,
}

fn run_scenario(scenario: Scenario, options: &Options, bins: &Binaries, dir: &Path) -> Result<ScenarioResult> {
    let mut result = ScenarioResult { scenario, ..ScenarioResult::default() };
    let postgres = Postgres::start(dir)?;
    let s3 = S3::start(dir)?;
    let bucket_proxy = TcpProxy::start(s3.port).map_err(|e| format!("bucket proxy: {e}"))?;
    let balancer_port = free_port();
    let local_spools = options.local_spools || scenario == Scenario::LostSpool;
    let instances: Vec<Instance> = (0..INSTANCES)
        .map(|i| {
            let spool = if local_spools { dir.join(format!("spool-{}", i + 1)) } else { dir.join("spool") };
            Instance::new(i, bins, dir, spool, &postgres, &s3, bucket_proxy.port, balancer_port)
        })
        .collect();
    let balancer = Haproxy::start(&bins.haproxy, dir, balancer_port, &instances)?;
    let mut cluster =
        Cluster { local_spools, postgres, s3, bucket_proxy, instances, balancer, started: Instant::now() };
    for instance in &mut cluster.instances {
        instance.start()?;
    }
    for instance in &cluster.instances {
        cluster.balancer.wait_for(&instance.name(), "UP", Duration::from_secs(30))?;
    }
    result.problems.extend(check_balancer(balancer_port));
    eprintln!(
        "xtask: {INSTANCES} instances (spool {}) behind HAProxy on port {balancer_port}; bucket {} via proxy port {}",
        if local_spools { "per instance" } else { "shared" },
        cluster.s3.endpoint,
        cluster.bucket_proxy.port
    );

    let mut loadgen = Loadgen::start(bins, options, balancer_port, dir)?;
    cluster.started = loadgen.started;
    // Every recorder streams from one take length on: the fault comes half a take later.
    let fault_at = Duration::from_secs(options.secs * 3 / 2);
    if !loadgen.sleep_until(fault_at) {
        result.problems.push("the load program ended before the fault".into());
    } else {
        loadgen.phase("during");
        let fault = cluster.inject(scenario, &mut result.timeline);
        loadgen.phase("after");
        if let Err(e) = fault {
            result.problems.push(format!("fault: {e}"));
        }
    }
    let (status, summary) = loadgen.finish(Duration::from_secs(options.secs * (options.takes + 1) + 900))?;
    result.metrics = cluster.metrics_totals();
    match summary {
        Some(s) => {
            result.problems.extend(check(scenario, options, local_spools, &s));
            result.summary = Some(s);
        }
        None => result.problems.push("the load program printed no JSON summary".into()),
    }
    if !status {
        result.problems.push("the load program exited with failure".into());
    }
    drop(cluster);
    Ok(result)
}

/// The load balancer does what the ALB does: sticky sessions for
/// Socket.IO's long-polling handshake, and no public `/metrics`.
fn check_balancer(port: u16) -> Vec<String> {
    let mut problems = Vec::new();
    let polls = |cookie: Option<&str>, sid: &str| -> usize {
        (0..6)
            .filter(|_| {
                let mut headers = vec![("", "3")];
                let c;
                if let Some(v) = cookie {
                    c = format!("{STICKY_COOKIE}={v}");
                    headers.push(("Cookie", c.as_str()));
                }
                let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
                services::http(port, "POST", &path, &headers).is_ok_and(|r| r.status == 200)
            })
            .count()
    };
    match services::http(port, "GET", "/socket.io/?EIO=4&transport=polling", &[]) {
        Ok(open) => {
            let sid = open.body.split("\"sid\":\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
            let cookie = open
                .header("set-cookie")
                .and_then(|c| c.strip_prefix(&format!("{STICKY_COOKIE}=")))
                .and_then(|c| c.split(';').next());
            match cookie {
                None => problems.push(format!("the balancer set no {STICKY_COOKIE} cookie on the handshake")),
                Some(cookie) => {
                    let (with, without) = (polls(Some(cookie), sid), polls(None, sid));
                    eprintln!("xtask: long-polling session: {with}/6 polls known with the cookie, {without}/6 without");
                    if with != 6 {
                        problems.push(format!("sticky sessions: only {with}/6 polls reached the session's instance"));
                    }
                    if without == 6 {
                        problems.push("without the cookie every poll still reached one instance: the stickiness check proves nothing".into());
                    }
                }
            }
        }
        Err(e) => problems.push(format!("Socket.IO handshake through the balancer: {e}")),
    }
    match services::http(port, "GET", "/metrics", &[]) {
        Ok(r) if r.status == 404 => {}
        Ok(r) => problems.push(format!("/metrics through the balancer answered {} (must not be public)", r.status)),
        Err(e) => problems.push(format!("/metrics through the balancer: {e}")),
    }
    problems
}

/// What the scenario must show: nothing lost, and the fault really hit.
fn check(scenario: Scenario, options: &Options, local_spools: bool, s: &json::Value) -> Vec<String> {
    let n = |key: &str| s.get(key).and_then(json::Value::num).unwrap_or(-1.0);
    let mut problems = Vec::new();
    let takes = (options.recorders * options.takes) as f64;
    if n("completed") != options.recorders as f64 || n("failed") != 0.0 || n("timed_out") != 0.0 {
        problems.push(format!(
            "recorders: {} completed, {} failed, {} timed out of {}",
            n("completed"),
            n("failed"),
            n("timed_out"),
            options.recorders
        ));
    }
    if n("takes_completed") != takes || n("mismatched_takes") != 0.0 {
        problems.push(format!(
            "takes: {} verified of {takes}, {} with differing bytes",
            n("takes_completed"),
            n("mismatched_takes")
        ));
    }
    let slowest_save = s.path(&["stop_to_saved_ms", "max"]).and_then(json::Value::num).unwrap_or(0.0);
    if slowest_save > MAX_STOP_TO_SAVED_MS {
        problems.push(format!(
            "a take was saved {:.1} s after its first stop (more than {} s: stuck)",
            slowest_save / 1000.0,
            MAX_STOP_TO_SAVED_MS / 1000.0
        ));
    }
    let lost_acked = n("resumed_below_acked");
    let reconnects = n("reconnects");
    match scenario {
        Scenario::Kill | Scenario::Rolling => {
            if reconnects <= 0.0 {
                problems.push("no recorder reconnected: the fault hit nobody".into());
            }
            // A lost local spool loses acknowledged chunks: the clients re-send them.
            if !local_spools && lost_acked != 0.0 {
                problems
                    .push(format!("{lost_acked} resumes below the acknowledged chunks: acknowledged bytes were lost"));
            }
        }
        Scenario::LostSpool => {
            if lost_acked <= 0.0 || n("bytes_resent") <= 0.0 {
                problems.push("no take started over from 0: the spool loss hit nobody".into());
            }
        }
        Scenario::DatabaseRestart => {
            let refused = incidents(s, "database");
            if refused == 0 {
                problems.push("no chunk was refused for the database: the outage was not seen".into());
            }
            if lost_acked != 0.0 {
                problems
                    .push(format!("{lost_acked} resumes below the acknowledged chunks: acknowledged bytes were lost"));
            }
        }
        Scenario::BucketOutage => {
            if n("pending_saved") <= 0.0 {
                problems.push("no take was saved pending: the bucket outage hit nobody".into());
            }
            if n("pending_ready") != n("pending_saved") {
                problems.push(format!(
                    "{} takes saved pending, only {} ready later",
                    n("pending_saved"),
                    n("pending_ready")
                ));
            }
        }
    }
    problems
}

/// Incidents of the load program whose message contains `word`.
fn incidents(s: &json::Value, word: &str) -> u64 {
    match s.get("incidents") {
        Some(json::Value::Obj(map)) => map
            .iter()
            .filter(|(k, _)| k.to_lowercase().contains(word))
            .map(|(_, v)| v.num().unwrap_or(0.0) as u64)
            .sum(),
        _ => 0,
    }
}

impl Cluster {
    fn at(&self) -> String {
        format!("{:.1} s", self.started.elapsed().as_secs_f64())
    }

    fn note(&self, timeline: &mut Vec<String>, what: String) {
        let line = format!("[{}] {what}", self.at());
        eprintln!("xtask: {line}");
        timeline.push(line);
    }

    fn inject(&mut self, scenario: Scenario, timeline: &mut Vec<String>) -> Result {
        match scenario {
            Scenario::Kill | Scenario::LostSpool => self.kill_and_replace(timeline),
            Scenario::Rolling => {
                for i in 0..self.instances.len() {
                    self.replace_gracefully(i, timeline)?;
                }
                Ok(())
            }
            Scenario::DatabaseRestart => {
                self.postgres.stop()?;
                self.note(
                    timeline,
                    format!("PostgreSQL stopped (fast shutdown); restarting in {} s", DATABASE_DOWN.as_secs()),
                );
                std::thread::sleep(DATABASE_DOWN);
                self.postgres.start_again()?;
                self.note(timeline, "PostgreSQL started again".into());
                let back = Instant::now();
                for instance in &self.instances {
                    self.balancer.wait_for(&instance.name(), "UP", Duration::from_secs(60))?;
                }
                self.note(
                    timeline,
                    format!("every instance healthy in the balancer {:.1} s later", back.elapsed().as_secs_f64()),
                );
                Ok(())
            }
            Scenario::BucketOutage => {
                self.bucket_proxy.set_up(false);
                self.note(
                    timeline,
                    format!("bucket unreachable (proxy closed, its connections cut) for {} s", BUCKET_DOWN.as_secs()),
                );
                std::thread::sleep(BUCKET_DOWN);
                self.bucket_proxy.set_up(true);
                self.note(timeline, "bucket reachable again".into());
                Ok(())
            }
        }
    }

    /// The instance with the most sockets (from its /metrics).
    fn busiest(&self) -> (usize, f64) {
        self.instances
            .iter()
            .enumerate()
            .map(|(i, inst)| (i, metric(&inst.metrics(), "audiobook_sockets").unwrap_or(0.0)))
            .fold((0, -1.0), |best, x| if x.1 > best.1 { x } else { best })
    }

    /// With instance-local spools, the instance's spool goes with it.
    fn lose_spool(&self, i: usize, timeline: &mut Vec<String>) -> Result {
        if self.local_spools {
            let spool = &self.instances[i].spool;
            let files = std::fs::read_dir(spool).map(|d| d.count()).unwrap_or(0);
            std::fs::remove_dir_all(spool).map_err(|e| format!("{}: {e}", spool.display()))?;
            self.note(timeline, format!("its spool folder deleted ({files} files)"));
        }
        Ok(())
    }

    fn kill_and_replace(&mut self, timeline: &mut Vec<String>) -> Result {
        let (i, sockets) = self.busiest();
        let killed_at = Instant::now();
        self.instances[i].kill();
        self.note(timeline, format!("{} SIGKILLed with {sockets} sockets", self.instances[i].name()));
        self.lose_spool(i, timeline)?;
        let name = self.instances[i].name();
        self.balancer.wait_for(&name, "DOWN", Duration::from_secs(30))?;
        self.note(
            timeline,
            format!("balancer marked it DOWN {:.1} s after the kill", killed_at.elapsed().as_secs_f64()),
        );
        self.instances[i].start()?;
        self.balancer.wait_for(&name, "UP", Duration::from_secs(30))?;
        self.note(
            timeline,
            format!("replacement UP in the balancer {:.1} s after the kill", killed_at.elapsed().as_secs_f64()),
        );
        if self.local_spools {
            // The lost takes start over once their holder missed three heartbeats.
            let wait = (HOLDER_SILENCE + Duration::from_secs(5)).saturating_sub(killed_at.elapsed());
            std::thread::sleep(wait);
            self.note(timeline, "holder-silence window (3 heartbeats) over".into());
        }
        Ok(())
    }

    /// What ECS does to a task on a deployment: deregister it (drain), wait
    /// the deregistration delay, SIGTERM, and a new task takes its place.
    fn replace_gracefully(&mut self, i: usize, timeline: &mut Vec<String>) -> Result {
        let name = self.instances[i].name();
        let sockets = metric(&self.instances[i].metrics(), "audiobook_sockets").unwrap_or(0.0);
        self.balancer.command(&format!("set server instances/{name} state maint"))?;
        self.note(timeline, format!("{name} draining (maint) with {sockets} sockets"));
        std::thread::sleep(DRAIN);
        let t = Instant::now();
        let exit = self.instances[i].terminate(Duration::from_secs(60))?;
        self.note(timeline, format!("{name} SIGTERMed: exited in {:.1} s ({exit})", t.elapsed().as_secs_f64()));
        self.lose_spool(i, timeline)?;
        self.instances[i].start()?;
        self.balancer.command(&format!("set server instances/{name} state ready"))?;
        self.balancer.wait_for(&name, "UP", Duration::from_secs(30))?;
        self.note(
            timeline,
            format!("{name} replaced, UP in the balancer {:.1} s after the SIGTERM", t.elapsed().as_secs_f64()),
        );
        Ok(())
    }

    /// Counters of interest, summed over the instances running now (since
    /// each one's start).
    fn metrics_totals(&self) -> Vec<(String, f64)> {
        let mut totals: HashMap<String, f64> = HashMap::new();
        for instance in &self.instances {
            for (name, value) in instance.metrics() {
                let keep = ["audiobook_refusals_total", "audiobook_db_errors_total", "audiobook_storage_errors_total"]
                    .iter()
                    .any(|p| name.starts_with(p))
                    || name == "audiobook_finalize_failures_total"
                    || name == "audiobook_chunks_received_total";
                if keep {
                    *totals.entry(name).or_default() += value;
                }
            }
        }
        let mut v: Vec<_> = totals.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The balancer first, so nobody reaches a half-stopped instance.
        self.balancer.stop();
        for instance in &mut self.instances {
            instance.kill();
        }
    }
}

fn metric(metrics: &[(String, f64)], name: &str) -> Option<f64> {
    metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// Parses Prometheus text: `name{labels} value` lines.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

// ------------------------------------------------------------ processes

/// One `audiobook-server` process slot: a port, a spool folder, a log.
struct Instance {
    index: usize,
    port: u16,
    spool: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    program: PathBuf,
    child: Option<Child>,
}

impl Instance {
    #[allow(clippy::too_many_arguments)]
    fn new(
        index: usize,
        bins: &Binaries,
        dir: &Path,
        spool: PathBuf,
        postgres: &Postgres,
        s3: &S3,
        bucket_port: u16,
        balancer_port: u16,
    ) -> Instance {
        let port = free_port();
        let env = [
            ("PORT", port.to_string()),
            ("HOST", "127.0.0.1".into()),
            ("DATABASE_URL", postgres.url.clone()),
            ("STORAGE", "s3".into()),
            ("S3_BUCKET", s3.bucket.clone()),
            ("S3_ENDPOINT", format!("http://127.0.0.1:{bucket_port}")),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("SPOOL_DIR", spool.display().to_string()),
            // Links point at the load balancer, as behind the ALB.
            ("PUBLIC_URL", format!("http://127.0.0.1:{balancer_port}")),
            ("TRUST_X_FORWARDED_FOR", "true".into()),
            // Every recorder onboards from 127.0.0.1.
            ("ONBOARD_PER_MINUTE", "0".into()),
            ("NO_COLOR", "1".into()),
            (
                "RUST_LOG",
                std::env::var("CLUSTER_RUST_LOG")
                    .unwrap_or_else(|_| "info,socketioxide=warn,engineioxide=warn,sqlx=warn".into()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Instance {
            index,
            port,
            spool,
            log: dir.join(format!("instance-{}.log", index + 1)),
            env,
            program: bins.server.clone(),
            child: None,
        }
    }

    fn name(&self) -> String {
        format!("i{}", self.index + 1)
    }

    /// Starts a new process (a new instance id) and waits for its /health.
    fn start(&mut self) -> Result {
        std::fs::create_dir_all(&self.spool).map_err(|e| format!("{}: {e}", self.spool.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(&self.program)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if services::http(self.port, "GET", "/health", &[]).is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(format!("{} exited at start ({status}); see {}", self.name(), self.log.display()));
            }
            if Instant::now() > deadline {
                return Err(format!("{} not healthy after 60 s; see {}", self.name(), self.log.display()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `limit` (ECS's stopTimeout) before SIGKILL.
    fn terminate(&mut self, limit: Duration) -> Result<String> {
        let Some(mut child) = self.child.take() else { return Ok("not running".into()) };
        util::run(Command::new("kill").args(["-TERM", &child.id().to_string()]))?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status.to_string());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} did not exit within {} s of SIGTERM", self.name(), limit.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// This instance's /metrics, read directly (not through the balancer).
    fn metrics(&self) -> Vec<(String, f64)> {
        if self.child.is_none() {
            return Vec::new();
        }
        services::http(self.port, "GET", "/metrics", &[]).map(|r| parse_metrics(&r.body)).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// HAProxy configured like the ALB of docs/deploy.md.
struct Haproxy {
    child: Option<Child>,
    socket: PathBuf,
}

impl Haproxy {
    fn start(program: &Path, dir: &Path, port: u16, instances: &[Instance]) -> Result<Haproxy> {
        let socket = dir.join("haproxy.sock");
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(port, &socket, instances)).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("haproxy.log")).map_err(|e| e.to_string())?;
        let child = Command::new(program)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let haproxy = Haproxy { child: Some(child), socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while haproxy.command("show info").is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "HAProxy did not open its stats socket; see {}",
                    dir.join("haproxy.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(haproxy)
    }

    /// One command on the runtime API (stats socket, admin level).
    fn command(&self, command: &str) -> Result<String> {
        let mut s = UnixStream::connect(&self.socket).map_err(|e| format!("stats socket: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        s.write_all(format!("{command}\n").as_bytes()).map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// A server's status in the backend: `UP`, `DOWN`, `MAINT`, `UP 1/2`...
    fn status(&self, server: &str) -> Result<String> {
        let csv = self.command("show stat")?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().trim_start_matches("# ").split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, st) = (col("pxname"), col("svname"), col("status"));
        let (Some(px), Some(sv), Some(st)) = (px, sv, st) else {
            return Err(format!("unexpected `show stat` output: {csv:.200}"));
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.get(px) == Some(&"instances") && f.get(sv) == Some(&server))
            .and_then(|f| f.get(st).map(|s| s.to_string()))
            .ok_or_else(|| format!("no server {server} in the backend"))
    }

    fn wait_for(&self, server: &str, status: &str, limit: Duration) -> Result {
        let deadline = Instant::now() + limit;
        loop {
            let now = self.status(server)?;
            if now == status {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{server} still {now} in the balancer after {} s (waited for {status})",
                    limit.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The ALB's settings (docs/deploy.md) in HAProxy's words: WebSocket
/// upgrade (HAProxy tunnels an upgraded connection by itself; `timeout
/// tunnel` is the idle timeout), a load-balancer cookie for stickiness,
/// health checks on /health, draining through the runtime API, a retry on
/// another instance when one refuses the connection, X-Forwarded-For
/// appended, and /metrics answered 404 (the ALB's listener rule).
fn haproxy_config(port: u16, socket: &Path, instances: &[Instance]) -> String {
    let servers: String = instances
        .iter()
        .map(|i| format!("    server {0} 127.0.0.1:{1} check cookie {0}\n", i.name(), i.port))
        .collect();
    format!(
        "global
    maxconn 8000
    stats socket {socket} mode 600 level admin
    stats timeout 10s

defaults
    mode http
    option forwardfor
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 300s
    timeout server 300s
    timeout tunnel 300s
    timeout http-request 10s
    timeout queue 10s

frontend audiobook
    bind 127.0.0.1:{port}
    http-request deny deny_status 404 if {{ path /metrics }} || {{ path_beg /metrics/ }}
    default_backend instances

backend instances
    balance roundrobin
    cookie {STICKY_COOKIE} insert indirect nocache httponly maxlife 24h
    option httpchk GET /health
    http-check expect status 200
    default-server inter {CHECK_INTER_MS}ms fall 3 rise 2
{servers}",
        socket = socket.display()
    )
}

/// A TCP proxy in front of the bucket, that can be taken down: its
/// listener closes (connections are refused) and every open connection is
/// cut, then it listens again on the same port.
struct TcpProxy {
    port: u16,
    shared: Arc<ProxyShared>,
    thread: Option<JoinHandle<()>>,
}

struct ProxyShared {
    target: u16,
    up: AtomicBool,
    stop: AtomicBool,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl TcpProxy {
    fn start(target: u16) -> std::io::Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(ProxyShared {
            target,
            up: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || accept_loop(listener, port, shared))
        };
        Ok(TcpProxy { port, shared, thread: Some(thread) })
    }

    fn set_up(&self, up: bool) {
        self.shared.up.store(up, Ordering::SeqCst);
        if !up {
            for (a, b) in self.shared.conns.lock().unwrap().values() {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.set_up(false);
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, port: u16, shared: Arc<ProxyShared>) {
    let _ = listener.set_nonblocking(true);
    let mut listener = Some(listener);
    while !shared.stop.load(Ordering::SeqCst) {
        if !shared.up.load(Ordering::SeqCst) {
            listener = None;
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            // std sets SO_REUSEADDR: the port can be bound again at once.
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => {
                    let _ = l.set_nonblocking(true);
                    listener = Some(l);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
            continue;
        };
        match l.accept() {
            Ok((client, _)) => pipe(client, &shared),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn pipe(client: TcpStream, shared: &Arc<ProxyShared>) {
    let _ = client.set_nonblocking(false);
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", shared.target)) else { return };
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) =
        (client.try_clone(), upstream.try_clone(), client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    shared.conns.lock().unwrap().insert(id, (c3, u3));
    for (mut from, mut to) in [(client, u2), (upstream, c2)] {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
            let _ = from.shutdown(Shutdown::Read);
            shared.conns.lock().unwrap().remove(&id);
        });
    }
}

/// The load program, its standard input for the phases, its output echoed.
struct Loadgen {
    child: Child,
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<Option<String>>>,
    started: Instant,
}

impl Loadgen {
    fn start(bins: &Binaries, options: &Options, balancer_port: u16, dir: &Path) -> Result<Loadgen> {
        let secs = options.secs.to_string();
        // Slack for reconnects, retries and pending uploads (about a minute after the
        // bucket is back); a take stuck longer times out and fails the scenario.
        let timeout = (options.secs * (options.takes + 1) + 240).to_string();
        let mut cmd = Command::new(&bins.loadgen);
        cmd.args(["--url", &format!("http://127.0.0.1:{balancer_port}")])
            .args(["--recorders", &options.recorders.to_string()])
            .args(["--duration-secs", &secs, "--ramp-up-secs", &secs])
            .args(["--chunk-bytes", "4096", "--interval-ms", "250"])
            .args(["--takes", &options.takes.to_string()])
            .args(["--resilient", "--phases-from-stdin"])
            .args(["--timeout-secs", &timeout, "--ready-timeout-secs", "300"])
            .args(["--progress-secs", "10"]);
        eprintln!("xtask: $ {}", util::describe(&cmd));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bins.loadgen.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let log_path = dir.join("loadgen.log");
        let reader = std::thread::spawn(move || {
            let mut log = std::fs::File::create(log_path).ok();
            let mut summary = None;
            for line in std::io::BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
                if line.starts_with('{') {
                    summary = Some(line);
                } else {
                    println!("  loadgen | {line}");
                }
            }
            summary
        });
        Ok(Loadgen { child, stdin, reader: Some(reader), started: Instant::now() })
    }

    /// Sleeps until `at` after the start; `false` if the program ended first.
    fn sleep_until(&mut self, at: Duration) -> bool {
        while self.started.elapsed() < at {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    fn phase(&mut self, phase: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "phase {phase}");
            let _ = stdin.flush();
        }
    }

    /// Waits for the end (killing it after `limit`); success and summary.
    fn finish(&mut self, limit: Duration) -> Result<(bool, Option<json::Value>)> {
        self.stdin.take();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().map_err(|e| e.to_string())?;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let line = self.reader.take().and_then(|r| r.join().ok()).flatten();
        let summary = match line {
            Some(l) => Some(json::parse(&l).map_err(|e| format!("the load program's summary: {e}"))?),
            None => None,
        };
        Ok((status.success(), summary))
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ reporting

fn p99(s: &json::Value, phase: &str, what: &str) -> String {
    stat(s, phase, what, "p99")
}

fn stat(s: &json::Value, phase: &str, what: &str, which: &str) -> String {
    match s.path(&["phases", phase, what, which]).and_then(json::Value::num) {
        Some(ms) if ms >= 1000.0 => format!("{:.1} s", ms / 1000.0),
        Some(ms) => format!("{ms:.0} ms"),
        None => "-".into(),
    }
}

fn mb(bytes: f64) -> String {
    format!("{:.2} MB", bytes / 1e6)
}

impl ScenarioResult {
    fn print(&self, took: Duration, dir: &Path) {
        println!("\n--- scenario {}: {} ({:.0} s) ---", self.scenario, self.scenario.title(), took.as_secs_f64());
        for line in &self.timeline {
            println!("  {line}");
        }
        if let Some(s) = &self.summary {
            let n = |k: &str| s.get(k).and_then(json::Value::num).unwrap_or(0.0);
            println!(
                "  recorders {} completed / {} failed / {} timed out; takes {} verified; bytes verified {}, re-sent {}; reconnects {}; resumes below acknowledged {}; pending {} -> ready {}",
                n("completed"),
                n("failed"),
                n("timed_out"),
                n("takes_completed"),
                mb(n("bytes_verified")),
                mb(n("bytes_resent")),
                n("reconnects"),
                n("resumed_below_acked"),
                n("pending_saved"),
                n("pending_ready")
            );
            for phase in ["before", "during", "after"] {
                println!(
                    "  {phase:<6}  ack p99 {:>8}   stop->saved p99 {:>8}   chunk due->acked p99 {:>8}, max {:>8}",
                    p99(s, phase, "ack_ms"),
                    p99(s, phase, "stop_to_saved_ms"),
                    p99(s, phase, "due_to_ack_ms"),
                    stat(s, phase, "due_to_ack_ms", "max")
                );
            }
        }
        for (name, value) in &self.metrics {
            println!("  metrics (instances running at the end): {name} {value}");
        }
        if self.problems.is_empty() {
            println!("  PASSED");
        } else {
            for p in &self.problems {
                println!("  FAILED: {p}");
            }
            println!("  logs: {}", dir.display());
        }
    }
}

fn print_table(options: &Options, results: &[ScenarioResult], took: Duration) {
    println!(
        "\n=== cluster: {} recorders x {} takes of {} s at 16 KB/s, {INSTANCES} instances behind HAProxy ({:.0} s) ===",
        options.recorders,
        options.takes,
        options.secs,
        took.as_secs_f64()
    );
    println!(
        "| scenario | recorders completed / failed | bytes verified | bytes re-sent | reconnects | ack p99 before / during / after | stop→saved p99 before / during / after | longest due→ack during | result |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let Some(s) = &r.summary else {
            println!("| {} | - | - | - | - | - | - | - | FAILED |", r.scenario.short());
            continue;
        };
        let n = |k: &str| s.get(k).and_then(json::Value::num).unwrap_or(0.0);
        let phases =
            |what: &str| ["before", "during", "after"].iter().map(|p| p99(s, p, what)).collect::<Vec<_>>().join(" / ");
        println!(
            "| {} | {} / {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario.short(),
            n("completed"),
            n("failed") + n("timed_out"),
            mb(n("bytes_verified")),
            mb(n("bytes_resent")),
            n("reconnects"),
            phases("ack_ms"),
            phases("stop_to_saved_ms"),
            stat(s, "during", "due_to_ack_ms", "max"),
            if r.problems.is_empty() { "passed" } else { "FAILED" }
        );
    }
}

// ------------------------------------------------------------ JSON

/// Just enough JSON to read the load program's summary line (xtask has no
/// dependencies).
mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Value::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        pub fn path(&self, keys: &[&str]) -> Option<&Value> {
            keys.iter().try_fold(self, |v, k| v.get(k))
        }

        pub fn num(&self) -> Option<f64> {
            match self {
                Value::Num(n) => Some(*n),
                _ => None,
            }
        }
    }

    pub fn parse(text: &str) -> Result<Value, String> {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing characters at {}", p.i));
        }
        Ok(v)
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Result<(), String> {
            self.ws();
            if self.s.get(self.i) == Some(&c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", c as char, self.i))
            }
        }

        fn literal(&mut self, word: &str, v: Value) -> Result<Value, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.i))
            }
        }

        fn value(&mut self) -> Result<Value, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'{') => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Value::Obj(fields));
                    }
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.eat(b':')?;
                        fields.push((key, self.value()?));
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(Value::Obj(fields));
                            }
                            _ => return Err(format!("expected , or }} at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Value::Arr(items));
                    }
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(Value::Arr(items));
                            }
                            _ => return Err(format!("expected , or ] at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(Value::Str(self.string()?)),
                Some(b't') => self.literal("true", Value::Bool(true)),
                Some(b'f') => self.literal("false", Value::Bool(false)),
                Some(b'n') => self.literal("null", Value::Null),
                Some(_) => {
                    let start = self.i;
                    while self.s.get(self.i).is_some_and(|c| b"+-.eE0123456789".contains(c)) {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i])
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .map(Value::Num)
                        .ok_or_else(|| format!("bad number at {start}"))
                }
                None => Err("unexpected end".into()),
            }
        }

        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out = Vec::new();
            loop {
                match self.s.get(self.i) {
                    None => return Err("unterminated string".into()),
                    Some(b'"') => {
                        self.i += 1;
                        return String::from_utf8(out).map_err(|e| e.to_string());
                    }
                    Some(b'\\') => {
                        let c = *self.s.get(self.i + 1).ok_or("unterminated escape")?;
                        self.i += 2;
                        let ch = match c {
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'u' => {
                                let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
                                self.i += 4;
                                let code =
                                    u32::from_str_radix(std::str::from_utf8(hex).map_err(|e| e.to_string())?, 16)
                                        .map_err(|e| e.to_string())?;
                                char::from_u32(code).unwrap_or('\u{fffd}')
                            }
                            other => other as char,
                        };
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    Some(&c) => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_a_loadgen_summary() {
            let v = parse(r#"{"a": 1.5, "b": {"c": [1, -2e3, null, true]}, "s": "x\"y\u00e9", "e": {}}"#).unwrap();
            assert_eq!(v.get("a").and_then(Value::num), Some(1.5));
            assert_eq!(
                v.path(&["b", "c"]),
                Some(&Value::Arr(vec![Value::Num(1.0), Value::Num(-2000.0), Value::Null, Value::Bool(true)]))
            );
            assert_eq!(v.get("s"), Some(&Value::Str("x\"yé".into())));
            assert_eq!(v.get("e"), Some(&Value::Obj(vec![])));
            assert!(parse("{\"a\": }").is_err());
            assert!(parse("[1, 2").is_err());
            assert!(parse("{} x").is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_nonsense() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Options::parse(&args("--recorders 30 --secs 20 --scenarios 1,3")).unwrap();
        assert_eq!((o.recorders, o.secs, o.takes), (30, 20, 3));
        assert_eq!(o.scenarios, vec![Scenario::Kill, Scenario::LostSpool]);
        assert_eq!(Options::parse(&[]).unwrap().scenarios.len(), 5);
        assert!(Options::parse(&args("--scenarios 6")).is_err());
        assert!(Options::parse(&args("--recorders 0")).is_err());
        assert!(Options::parse(&args("--secs 5")).is_err());
        assert!(Options::parse(&args("--bogus")).is_err());
    }

    #[test]
    fn verdicts_catch_losses_stuck_takes_and_faults_that_hit_nobody() {
        let o = Options::parse(&["--recorders".into(), "2".into(), "--takes".into(), "1".into()]).unwrap();
        let summary = |lost: u64, reconnects: u64, slowest_ms: u64, failed: u64| {
            json::parse(&format!(
                r#"{{"completed": {}, "failed": {failed}, "timed_out": 0, "takes_completed": {}, "mismatched_takes": 0,
                   "resumed_below_acked": {lost}, "reconnects": {reconnects}, "bytes_resent": 4096,
                   "pending_saved": 0, "pending_ready": 0, "stop_to_saved_ms": {{"max": {slowest_ms}}},
                   "incidents": {{"refused: append-recording: The server cannot reach its database right now": 3}}}}"#,
                2 - failed,
                2 - failed
            ))
            .unwrap()
        };
        assert!(check(Scenario::Kill, &o, false, &summary(0, 1, 50, 0)).is_empty());
        assert_eq!(check(Scenario::Kill, &o, false, &summary(1, 1, 50, 0)).len(), 1, "acknowledged bytes lost");
        assert_eq!(check(Scenario::Kill, &o, false, &summary(0, 0, 50, 0)).len(), 1, "the kill hit nobody");
        assert_eq!(check(Scenario::Kill, &o, false, &summary(0, 1, 602_000, 0)).len(), 1, "a stuck take");
        assert_eq!(check(Scenario::Rolling, &o, false, &summary(0, 1, 50, 1)).len(), 2, "a failed recorder");
        assert!(check(Scenario::Rolling, &o, true, &summary(3, 1, 50, 0)).is_empty(), "local spools lose acked chunks");
        assert!(check(Scenario::LostSpool, &o, true, &summary(3, 1, 50, 0)).is_empty());
        assert_eq!(check(Scenario::LostSpool, &o, true, &summary(0, 1, 50, 0)).len(), 1, "no spool lost");
        assert!(check(Scenario::DatabaseRestart, &o, false, &summary(0, 0, 50, 0)).is_empty());
        assert_eq!(check(Scenario::BucketOutage, &o, false, &summary(0, 0, 50, 0)).len(), 1, "nothing pending");
    }

    #[test]
    fn prometheus_text_is_read() {
        let m =
            parse_metrics("# HELP x y\naudiobook_sockets 12\naudiobook_refusals_total{reason=\"no_heartbeat\"} 3\n\n");
        assert_eq!(metric(&m, "audiobook_sockets"), Some(12.0));
        assert_eq!(metric(&m, "audiobook_refusals_total{reason=\"no_heartbeat\"}"), Some(3.0));
    }

    #[test]
    fn the_balancer_config_has_what_the_alb_has() {
        let cfg = haproxy_config(8080, Path::new("/tmp/s.sock"), &[]);
        for needle in [
            "cookie AWSALB insert",
            "option httpchk GET /health",
            "option redispatch",
            "timeout tunnel",
            "level admin",
            "deny_status 404",
        ] {
            assert!(cfg.contains(needle), "{needle} missing in\n{cfg}");
        }
    }

    #[test]
    fn the_bucket_proxy_goes_down_and_up_on_its_port() {
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = upstream.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in upstream.incoming().map_while(std::result::Result::ok) {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 5];
                    if s.read_exact(&mut buf).is_ok() {
                        let _ = s.write_all(&buf);
                    }
                });
            }
        });
        let proxy = TcpProxy::start(target).unwrap();
        let echo = || -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect(("127.0.0.1", proxy.port))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.write_all(b"hello")?;
            let mut buf = vec![0u8; 5];
            s.read_exact(&mut buf)?;
            Ok(buf)
        };
        assert_eq!(echo().unwrap(), b"hello");
        // A connection open when the bucket goes away is cut.
        let mut open = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        proxy.set_up(false);
        std::thread::sleep(Duration::from_millis(100));
        open.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 1];
        assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)), "an open connection survived the outage");
        assert!(echo().is_err(), "the proxy still answered while down");
        proxy.set_up(true);
        let deadline = Instant::now() + Duration::from_secs(5);
        while echo().is_err() {
            assert!(Instant::now() < deadline, "the proxy did not come back on its port");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
