//! The web app's build (`build-web`) and the browser end-to-end tests.
//!
//! `build_web` compiles `crates/web` to WebAssembly, runs the wasm-bindgen
//! CLI of exactly the Cargo.lock version (and, for a release build,
//! binaryen's `wasm-opt -Oz`), and copies `crates/web/static` beside it into
//! `target/web-dist/`, the folder the server serves (`WEB_DIST`) and
//! `Dockerfile.client` copies. It prints what the first load weighs;
//! `check_first_load_size` fails the test command when the wasm grew.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result};

const WASM_TARGET: &str = "wasm32-unknown-unknown";
const CHROMIUM: &str = "/usr/lib/chromium/chromium";
const FIREFOX: &str = "/usr/lib/firefox-esr/firefox-esr";

/// binaryen's `wasm-opt`, from npm (a Node build, no download at run time).
/// Debian's binaryen 108 silently breaks the module: never use it.
const BINARYEN_VERSION: &str = "132.0.0";

/// The WebAssembly features the Rust toolchain emits and every browser we
/// support runs (Chromium, Firefox ESR, WebKit); wasm-opt keeps to them.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// What a browser fetches to open the app, before any recording is loaded.
const FIRST_LOAD: &[&str] =
    &["index.html", "config.js", "web.js", "web_bg.wasm", "style.css", "vendor/socket.io.min.js", "favicon.svg"];

/// The most `web_bg.wasm` of the release build may weigh gzipped (gzip -9):
/// the figure reached plus 10 %, so that growth is a decision, not an
/// accident. 339 874 bytes when this check was added (Leptos with erased
/// views and wasm-opt -Oz); raised on purpose to 387 900 + 10 % when the
/// phone layout, the live waveform, lossless capture and the transcript view
/// landed together; lowered to 355 691 + 10 % when the standard library was
/// built for size. Issue 14's target (200 KB) is not reached. Lower it when
/// the wasm shrinks.
pub const MAX_WASM_GZIP_BYTES: u64 = 391_300;

/// Builds the web app into `target/web-dist/` and returns that folder.
pub fn build_web(release: bool) -> Result<PathBuf> {
    let root = util::root();
    ensure_wasm_target()?;
    let wasm_bindgen = ensure_wasm_bindgen()?;

    let profile = if release { "wasm-release" } else { "dev" };
    let mut build = Command::new(cargo());
    build.current_dir(&root).args(["build", "-p", "audiobook-web", "--target", WASM_TARGET, "--profile", profile]);
    // Leptos' type-erased views: one generic view body instead of one per
    // component tree (smaller wasm, faster build). Only the wasm target gets
    // the flags, so nothing else is rebuilt.
    let mut rustflags = String::from("--cfg erase_components");
    if release && ensure_rust_src() {
        // The standard library rebuilt for size, with panics that trap at
        // once: a wasm32 panic prints nothing anyway (no stderr), so its
        // formatting code and location strings were dead weight (-34 KB
        // gzip). Unstable flags on the stable toolchain, as for the fuzzers.
        build.args(["-Zbuild-std=std,panic_abort"]).env("RUSTC_BOOTSTRAP", "1");
        rustflags.push_str(" -Zunstable-options -Cpanic=immediate-abort -Zfmt-debug=none -Zlocation-detail=none");
    }
    util::run(build.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", rustflags))?;
    let profile_dir = if release { "wasm-release" } else { "debug" };
    let wasm = target_dir(&root).join(WASM_TARGET).join(profile_dir).join("audiobook-web.wasm");

    let dist = target_dir(&root).join("web-dist");
    if dist.exists() {
        std::fs::remove_dir_all(&dist).map_err(|e| format!("cannot clear {}: {e}", dist.display()))?;
    }
    std::fs::create_dir_all(&dist).map_err(|e| format!("cannot create {}: {e}", dist.display()))?;
    util::run(
        Command::new(&wasm_bindgen)
            .args(["--target", "web", "--no-typescript", "--remove-name-section", "--remove-producers-section"])
            .args(["--out-name", "web", "--out-dir"])
            .arg(&dist)
            .arg(&wasm),
    )?;
    if release {
        let wasm_opt = ensure_wasm_opt(&root)?;
        let file = dist.join("web_bg.wasm");
        let optimized = dist.join("web_bg.opt.wasm");
        util::run(Command::new(&wasm_opt).arg("-Oz").args(WASM_FEATURES).arg(&file).arg("-o").arg(&optimized))?;
        std::fs::rename(&optimized, &file).map_err(|e| format!("cannot replace {}: {e}", file.display()))?;
    }
    copy_dir(&root.join("crates/web/static"), &dist)?;
    precompress(&dist);
    print_first_load(&dist);
    Ok(dist)
}

/// Raw and gzip (-9, as `precompress` writes them) sizes of a file; none
/// where the file is missing.
fn sizes(file: &Path) -> Option<(u64, u64)> {
    let raw = std::fs::metadata(file).ok()?.len();
    let gz = Command::new("gzip").args(["-9", "-c"]).arg(file).output().ok().filter(|o| o.status.success())?;
    Some((raw, gz.stdout.len() as u64))
}

fn kb(bytes: u64) -> String {
    format!("{:.1} KB", bytes as f64 / 1000.0)
}

/// Prints the wasm's and the whole first load's sizes, raw and gzip.
fn print_first_load(dist: &Path) {
    let (mut raw, mut gz) = (0, 0);
    eprintln!("xtask: first load of the web app (raw / gzip -9):");
    for name in FIRST_LOAD {
        match sizes(&dist.join(name)) {
            Some((r, g)) => {
                eprintln!("xtask:   {name:<26} {:>10} / {:>10}", kb(r), kb(g));
                raw += r;
                gz += g;
            }
            None => eprintln!("xtask:   {name:<26} (missing, or no gzip to measure it)"),
        }
    }
    eprintln!("xtask:   {:<26} {:>10} / {:>10}", "total", kb(raw), kb(gz));
    eprintln!("xtask: web app in {}", dist.display());
}

/// Fails when the gzipped `web_bg.wasm` in `dist` (a release build) weighs
/// more than `MAX_WASM_GZIP_BYTES`.
pub fn check_first_load_size(dist: &Path) -> Result {
    let file = dist.join("web_bg.wasm");
    let (raw, gz) = sizes(&file).ok_or_else(|| format!("cannot measure {} (is gzip installed?)", file.display()))?;
    if gz > MAX_WASM_GZIP_BYTES {
        return Err(format!(
            "web_bg.wasm is {} gzip ({} raw), over the limit of {} (xtask/src/web.rs MAX_WASM_GZIP_BYTES): \
             trim what grew (twiggy top) or raise the limit on purpose",
            kb(gz),
            kb(raw),
            kb(MAX_WASM_GZIP_BYTES)
        ));
    }
    eprintln!("xtask: web_bg.wasm {} gzip, within the limit of {}", kb(gz), kb(MAX_WASM_GZIP_BYTES));
    Ok(())
}

/// `wasm-opt` of `BINARYEN_VERSION` under `target/tools/binaryen`, installed
/// from npm when missing or another version.
fn ensure_wasm_opt(root: &Path) -> Result<PathBuf> {
    let dir = target_dir(root).join("tools/binaryen");
    let bin = dir.join("node_modules/.bin/wasm-opt");
    let major = BINARYEN_VERSION.split('.').next().unwrap_or(BINARYEN_VERSION);
    let current = util::output(Command::new(&bin).arg("--version")).ok();
    if !current.as_deref().is_some_and(|v| v.contains(&format!("version {major} "))) {
        if util::which("npm").is_none() {
            util::apt_install(&["nodejs", "npm"])?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        util::run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--no-save", "--prefix"])
                .arg(&dir)
                .arg(format!("binaryen@{BINARYEN_VERSION}")),
        )?;
    }
    Ok(bin)
}

/// Debian packages of the browser end-to-end tests: Chromium; Firefox ESR;
/// WebKitGTK's WebDriver (it brings MiniBrowser) with an X server; a
/// PulseAudio daemon for audio output (Firefox's `<audio>` fails without a
/// sound device); GStreamer's plugins for WebKit's AAC recording and
/// playback and its PulseAudio sink.
const BROWSER_PACKAGES: &[&str] = &[
    "chromium",
    "chromium-driver",
    "firefox-esr",
    "webkit2gtk-driver",
    "xvfb",
    "pulseaudio",
    "pulseaudio-utils",
    "gstreamer1.0-pulseaudio",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-libav",
];

/// The npm packages the tests import (`e2e/package.json`).
const NODE_PACKAGES: &[&str] = &["playwright-core", "puppeteer-core", "axe-core"];

/// Runs the browser end-to-end tests (`e2e/`, `node --test`: the Chromium
/// feature tests and the cross-browser scenario in Chromium, Firefox and
/// WebKitGTK) against the server binary and a built web app; installs the
/// browsers and the npm packages when they are missing.
pub fn run_e2e(server_bin: &Path, web_dist: &Path) -> Result {
    let root = util::root();
    let missing = util::missing_debian_packages(BROWSER_PACKAGES);
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    util::apt_install(&missing)?;
    if util::which("node").is_none() || util::which("npm").is_none() {
        util::apt_install(&["nodejs", "npm"])?;
    }
    let e2e = root.join("e2e");
    if NODE_PACKAGES.iter().any(|p| !e2e.join("node_modules").join(p).join("package.json").is_file()) {
        let install = if e2e.join("package-lock.json").is_file() { "ci" } else { "install" };
        // puppeteer-core drives the Debian Firefox; it must never fetch a browser.
        util::run(
            Command::new("npm")
                .current_dir(&e2e)
                .args([install, "--no-audit", "--no-fund"])
                .env("PUPPETEER_SKIP_DOWNLOAD", "1"),
        )?;
    }
    // Fresh screenshots only: a failure picture from an earlier run misleads.
    let artifacts = target_dir(&root).join("e2e-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).map_err(|e| format!("cannot create {}: {e}", artifacts.display()))?;
    let mut node = Command::new("node");
    node.current_dir(&root)
        .args(["--test", "--test-concurrency=1", "e2e/"])
        .env("AUDIOBOOK_SERVER_BIN", absolute(server_bin))
        .env("AUDIOBOOK_WEB_DIST", absolute(web_dist))
        .env("AUDIOBOOK_E2E_ARTIFACTS", &artifacts)
        .env("CHROMIUM", CHROMIUM)
        .env("FIREFOX", FIREFOX);
    // e2e/transcript.test.mjs runs the real transcription worker (issue 16).
    node.env("AUDIOBOOK_TRANSCRIBER_COMMAND", crate::transcriber::ensure()?);
    if let Some(minibrowser) = minibrowser() {
        node.env("MINIBROWSER", minibrowser);
    }
    util::run_counting(&mut node)
}

/// WebKitGTK's MiniBrowser, under the multiarch library folder.
fn minibrowser() -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("webkit2gtk-4.1/MiniBrowser"))
        .find(|p| p.is_file())
}

fn ensure_wasm_target() -> Result {
    let installed = util::output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == WASM_TARGET) {
        util::run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

/// The standard library's source, which the release build compiles for size;
/// without it (rustup cannot fetch it) the build goes on with the prebuilt
/// standard library, about 34 KB gzip heavier, and says so.
fn ensure_rust_src() -> bool {
    let installed = util::output(Command::new("rustup").args(["component", "list", "--installed"]))
        .is_ok_and(|list| list.lines().any(|l| l.trim().starts_with("rust-src")));
    if installed || util::run(Command::new("rustup").args(["component", "add", "rust-src"])).is_ok() {
        return true;
    }
    eprintln!("xtask: rust-src is not installed (rustup component add rust-src): building with the prebuilt std");
    false
}

/// The wasm-bindgen CLI must match the `wasm-bindgen` crate exactly.
fn ensure_wasm_bindgen() -> Result<PathBuf> {
    let wanted = util::locked_version("wasm-bindgen")?;
    let current = util::which("wasm-bindgen")
        .and_then(|bin| util::output(Command::new(bin).arg("--version")).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string));
    if current.as_deref() != Some(wanted.as_str()) {
        eprintln!(
            "xtask: installing wasm-bindgen-cli {wanted} (found {}); this takes a few minutes",
            current.as_deref().unwrap_or("none")
        );
        // Without --locked: its lockfile pins a crate version the registry
        // does not serve. --force: cargo skips a version it believes is
        // installed even when the binary is gone.
        util::run(Command::new(cargo()).args(["install", "--force", "wasm-bindgen-cli", "--version", &wanted]))?;
    }
    // cargo installs into $CARGO_HOME/bin, which may not be on PATH.
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin/wasm-bindgen"));
    util::which("wasm-bindgen")
        .or(cargo_bin.filter(|p| p.is_file()))
        .ok_or_else(|| "wasm-bindgen was installed but is not on PATH nor in $CARGO_HOME/bin".to_string())
}

/// Writes `name.gz` beside the large assets (the server sends them to
/// browsers that accept gzip: the .wasm shrinks to about 40%). Skipped
/// quietly where `gzip` is missing; the plain files still work.
fn precompress(dist: &Path) {
    if util::which("gzip").is_none() {
        return;
    }
    for name in ["web_bg.wasm", "web.js", "style.css", "vendor/socket.io.min.js"] {
        let file = dist.join(name);
        if file.is_file() {
            let _ = Command::new("gzip").args(["-k", "-f", "-9"]).arg(&file).status();
        }
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"))
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { util::root().join(path) }
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    let entries = std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        // Notes for whoever edits the files (icons/README.md), not for the site.
        if entry.file_name() == "README.md" {
            continue;
        }
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .map_err(|e| format!("cannot copy {} to {}: {e}", entry.path().display(), target.display()))?;
        }
    }
    Ok(())
}
