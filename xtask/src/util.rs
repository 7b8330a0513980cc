//! Small process and file helpers shared by the xtask subcommands (std only,
//! so `cargo xtask` builds in seconds).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root (the folder above `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

/// Runs a command in the foreground, echoing it, and fails naming it.
pub fn run(cmd: &mut Command) -> Result {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd.status().map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    if status.success() { Ok(()) } else { Err(format!("`{}` failed ({status})", describe(cmd))) }
}

/// Runs a command and returns its standard output.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A TCP port that was free a moment ago on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind loopback")
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).map(|s| s.trim() == "0").unwrap_or(false)
}

/// Installs Debian packages when running as root, or fails naming them.
pub fn apt_install(packages: &[&str]) -> Result {
    if packages.is_empty() {
        return Ok(());
    }
    if !is_root() || which("apt-get").is_none() {
        return Err(format!("missing system packages; install them with: apt-get install -y {}", packages.join(" ")));
    }
    static UPDATED: std::sync::Once = std::sync::Once::new();
    let mut update_result = Ok(());
    UPDATED.call_once(|| update_result = run(Command::new("apt-get").args(["update", "-qq"])));
    update_result?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Those of `packages` that dpkg does not list as installed (none where
/// there is no dpkg: then the tests name what they cannot start).
pub fn missing_debian_packages(packages: &[&str]) -> Vec<String> {
    if which("dpkg-query").is_none() {
        return Vec::new();
    }
    packages
        .iter()
        .filter(|p| {
            let status = Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", p]).output();
            !matches!(status, Ok(out) if out.status.success() && out.stdout == b"installed")
        })
        .map(|p| p.to_string())
        .collect()
}

/// The version of a package in Cargo.lock (the first entry with that name).
pub fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let needle = format!("name = \"{package}\"\nversion = \"");
    let start = lock.find(&needle).ok_or_else(|| format!("{package} is not in Cargo.lock"))? + needle.len();
    Ok(lock[start..].split('"').next().unwrap_or_default().to_string())
}

/// Tests counted from the runners' own summary lines, across every runner.
pub static PASSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub static FAILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Like [`run`], echoing the command's standard output while counting the
/// passed and failed tests of `cargo test` and `node --test` summaries.
pub fn run_counting(cmd: &mut Command) -> Result {
    use std::io::BufRead;
    use std::sync::atomic::Ordering::Relaxed;
    eprintln!("xtask: $ {}", describe(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    let stdout = child.stdout.take().expect("piped");
    for line in std::io::BufReader::new(stdout).lines().map_while(std::result::Result::ok) {
        println!("{line}");
        let (passed, failed) = summary_counts(&line);
        PASSED.fetch_add(passed, Relaxed);
        FAILED.fetch_add(failed, Relaxed);
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("`{}` failed ({status})", describe(cmd))) }
}

/// `test result: ok. 24 passed; 1 failed; ...` (cargo) or `# pass 16` /
/// `# fail 0` (node's test runner).
fn summary_counts(line: &str) -> (u64, u64) {
    let number_before = |text: &str, word: &str| -> u64 {
        text.split(';')
            .find_map(|part| part.trim().strip_suffix(word).and_then(|n| n.trim().rsplit(' ').next()?.parse().ok()))
            .unwrap_or(0)
    };
    if let Some(rest) = line.strip_prefix("test result: ") {
        return (number_before(rest, "passed"), number_before(rest, "failed"));
    }
    let count = |prefix: &str| line.strip_prefix(prefix).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    (count("# pass "), count("# fail "))
}

#[cfg(test)]
mod tests {
    use super::summary_counts;

    #[test]
    fn counts_cargo_and_node_summaries() {
        assert_eq!(summary_counts("test result: ok. 24 passed; 0 failed; 0 ignored; 0 measured"), (24, 0));
        assert_eq!(summary_counts("test result: FAILED. 23 passed; 1 failed; 0 ignored"), (23, 1));
        assert_eq!(summary_counts("# pass 16"), (16, 0));
        assert_eq!(summary_counts("# fail 2"), (0, 2));
        assert_eq!(summary_counts("running 3 tests"), (0, 0));
    }
}
