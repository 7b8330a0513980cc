//! ffmpeg and mkvinfo on test results. Absent tools skip the check with a note, unless
//! AUDIOBOOK_REQUIRE_SERVICES is set (as `cargo xtask test` and CI do): then they are required.

use std::path::Path;
use std::process::Command;

fn available(tool: &str) -> bool {
    let found = Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success())
        || Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("AUDIOBOOK_REQUIRE_SERVICES").is_none(),
            "{tool} is required (apt-get install ffmpeg mkvtoolnix)"
        );
        println!("note: {tool} not found, its check is skipped");
    }
    found
}

/// What `ffmpeg -v warning -i FILE -f s16le -ac 1 -ar 48000 -` said and how long the decoded
/// audio is.
pub struct Decoded {
    pub warnings: Vec<String>,
    pub seconds: f64,
}

pub fn ffmpeg_decode(path: &Path) -> Option<Decoded> {
    if !available("ffmpeg") {
        return None;
    }
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-v", "warning", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let warnings = String::from_utf8_lossy(&out.stderr).lines().map(str::to_owned).collect();
    Some(Decoded { warnings, seconds: out.stdout.len() as f64 / 2.0 / 48_000.0 })
}

/// mkvinfo's complaints about a file: warning and error lines, and elements of unknown size.
pub fn mkvinfo_problems(path: &Path) -> Option<Vec<String>> {
    if !available("mkvinfo") {
        return None;
    }
    let out = Command::new("mkvinfo").args(["-v", "-v", "-z"]).arg(path).output().expect("mkvinfo runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let mut problems: Vec<String> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("warning") || l.contains("error") || l.contains("size is unknown")
        })
        .map(str::to_owned)
        .collect();
    if !out.status.success() {
        problems.push(format!("mkvinfo exit status {}", out.status));
    }
    Some(problems)
}
