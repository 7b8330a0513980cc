//! `cargo xtask fuzz [SECS]`: the media crate's cargo-fuzz targets (crates/media/fuzz), each
//! for SECS seconds (default 300); `cargo xtask test` runs each for [`SECS_IN_TEST`].
//!
//! The targets are built once (cargo-fuzz, installed when missing, with `RUSTC_BOOTSTRAP=1` so
//! its nightly flags work on the stable toolchain; no sanitizer: the crate has no unsafe code,
//! and overflow checks and debug assertions stay on). Each run starts from the committed
//! inputs (tests/data and tests/corpus) plus what earlier local runs found
//! (target/fuzz/corpus). A crash, a timeout or an out-of-memory input fails the run and is
//! written to target/fuzz/artifacts: commit it to crates/media/tests/corpus, where
//! `cargo test` keeps checking it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result, root};

pub const SECS_IN_TEST: u64 = 20;
pub const DEFAULT_SECS: u64 = 300;
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Target, and the committed corpus folder its extra seeds come from.
const TARGETS: [(&str, &str); 5] =
    [("webm_fix", "webm"), ("webm_blocks", "webm"), ("mp4_read", "mp4"), ("mp4_fix", "mp4"), ("wav_fix", "wav")];
/// libFuzzer options: inputs up to 128 KB (the fixtures are cut there), 10 s per input at
/// most (the code is linear: anything slower is a bug), memory well under the limits the
/// crate promises.
const OPTIONS: [&str; 5] =
    ["-max_len=131072", "-timeout=10", "-rss_limit_mb=1024", "-malloc_limit_mb=256", "-print_final_stats=1"];

pub fn fuzz(secs: u64) -> Result {
    let fuzz_dir = root().join("crates/media/fuzz");
    let work = target_dir().join("fuzz");
    ensure_cargo_fuzz()?;
    util::run(
        Command::new(cargo())
            .current_dir(root())
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "build", "--fuzz-dir"])
            .arg(&fuzz_dir)
            .args(["--sanitizer", "none", "--target-dir"])
            .arg(&work),
    )?;
    let host = util::output(Command::new("rustc").arg("-vV"))?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .ok_or("rustc -vV names no host")?;
    let bin_dir = work.join(host).join("release");
    let media = root().join("crates/media");
    let mut failures = Vec::new();
    for (target, kind) in TARGETS {
        let corpus = work.join("corpus").join(target);
        seed(&corpus, &[&media.join("tests/data"), &media.join(format!("tests/corpus/{kind}"))])?;
        let artifacts = work.join("artifacts");
        std::fs::create_dir_all(&artifacts).map_err(|e| e.to_string())?;
        let log = work.join(format!("{target}.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(bin_dir.join(target));
        cmd.arg(&corpus)
            .arg(format!("-max_total_time={secs}"))
            .arg(format!("-dict={}", fuzz_dir.join(format!("dict/{kind}.dict")).display()))
            .arg(format!("-artifact_prefix={}/{target}-", artifacts.display()))
            .args(OPTIONS)
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file);
        eprintln!("xtask: fuzzing {target} for {secs} s (log: {})", log.display());
        let status = cmd.status().map_err(|e| format!("cannot start {target}: {e}"))?;
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let stat =
            |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok()).unwrap_or(0);
        let found: Vec<&str> = text.lines().filter_map(|l| l.split("Test unit written to ").nth(1)).collect();
        eprintln!(
            "xtask: fuzz {target}: {} executions, {} new inputs, peak RSS {} MB, {}",
            stat("stat::number_of_executed_units:"),
            stat("stat::new_units_added:"),
            stat("stat::peak_rss_mb:"),
            if status.success() && found.is_empty() { "nothing found".to_string() } else { format!("FOUND {found:?}") }
        );
        if !status.success() || !found.is_empty() {
            failures.push(format!(
                "{target} failed ({status}); input: {found:?}; log: {}; commit the input to crates/media/tests/corpus/{kind}/",
                log.display()
            ));
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("\n")) }
}

/// Copies the media files of `from` into `corpus` (README and JSON sidecars are not inputs).
fn seed(corpus: &Path, from: &[&Path]) -> Result {
    std::fs::create_dir_all(corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    for dir in from {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            let is_input = path.is_file() && !matches!(path.extension().and_then(|e| e.to_str()), Some("md" | "json"));
            let dest = corpus.join(path.file_name().unwrap_or_default());
            if is_input && !dest.exists() {
                std::fs::copy(&path, &dest).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result {
    let version = util::output(Command::new(cargo()).args(["fuzz", "--version"])).unwrap_or_default();
    if !version.contains(CARGO_FUZZ_VERSION) {
        eprintln!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (found {:?}); about 2 minutes", version.trim());
        util::run(Command::new(cargo()).args(["install", "--force", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION]))?;
    }
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}
