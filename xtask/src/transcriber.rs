//! The transcription worker's virtualenv (`target/tools/transcriber-venv`):
//! created from `transcriber/requirements.txt` (every package pinned, binary
//! wheels from PyPI only) the first time, and again only when that file
//! changes. `cargo xtask run` and `cargo xtask test` share it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::util::{Result, root, run};

pub fn venv_dir() -> PathBuf {
    root().join("target/tools/transcriber-venv")
}

/// The worker's command line (`TRANSCRIBER_COMMAND`), after making sure its
/// virtualenv is installed.
pub fn ensure() -> Result<String> {
    let venv = venv_dir();
    let requirements = root().join("transcriber/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = venv.join("installed-requirements.txt");
    let python = venv.join("bin/python");
    if !(python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)) {
        let started = Instant::now();
        eprintln!("xtask: installing the transcription worker into {} (once; about 550 MB)", venv.display());
        let _ = std::fs::remove_dir_all(&venv);
        let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).stdout(Stdio::null()).status();
        if !matches!(made, Ok(s) if s.success()) {
            let _ = std::fs::remove_dir_all(&venv);
            return Err("cannot create a Python virtualenv (python3 with its venv module is needed: \
                        apt-get install -y python3-venv)"
                .into());
        }
        let installed = run(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "--no-cache-dir", "--only-binary=:all:", "-r"])
            .arg(&requirements));
        if let Err(e) = installed {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(e);
        }
        std::fs::write(&stamp, &wanted).map_err(|e| e.to_string())?;
        eprintln!("xtask: transcription worker installed in {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(format!("{} {}", python.display(), root().join("transcriber/transcriber.py").display()))
}

/// What the transcription tests and benchmark speak with: espeak-ng (speech)
/// and ffmpeg (to WebM/Opus), installed when missing (Debian, as root).
pub fn ensure_speech_tools() -> Result {
    let missing = crate::util::missing_debian_packages(&["espeak-ng", "ffmpeg"]);
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    crate::util::apt_install(&missing)?;
    for tool in ["espeak-ng", "ffmpeg"] {
        if crate::util::which(tool).is_none() {
            return Err(format!("{tool} is needed by the transcription tests: apt-get install -y espeak-ng ffmpeg"));
        }
    }
    Ok(())
}
