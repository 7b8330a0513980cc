// What Firefox and WebKitGTK need around them to record and play: a
// PulseAudio daemon with a null sink (audio output; without one Firefox's
// <audio> fails and WebKit stalls) and, for WebKitGTK, an X display (Xvfb).
// Each is started in a temp folder on a free socket/display and killed by
// `stop()`. The exact arguments are the ones that work here (see the notes
// on Firefox and WebKit in shared/NOTES.md).

import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

import { sleep } from "./harness.mjs";

/** Daemons still running: killed when this process exits without stopping them (a crash). */
const running = new Set();
process.on("exit", () => {
  for (const daemon of running) daemon.child.kill("SIGKILL");
});

/** A started child process with its log file, stopped with SIGTERM, then SIGKILL. */
class Daemon {
  constructor(name, child, logFile) {
    this.name = name;
    this.child = child;
    this.logFile = logFile;
    running.add(this);
    this.exited = new Promise((resolve) => {
      child.once("exit", resolve);
      child.once("error", (e) => {
        this.failed = e;
        resolve();
      });
    }).finally(() => running.delete(this));
  }

  running() {
    return !this.failed && this.child.exitCode === null && this.child.signalCode === null;
  }

  logTail(lines = 20) {
    if (this.failed) return `cannot start ${this.name}: ${this.failed.message}`;
    try {
      return fs.readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return `(no ${this.name} log)`;
    }
  }

  async stop() {
    if (!this.running()) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 3_000);
    await this.exited;
    clearTimeout(timer);
  }
}

function spawnLogged(name, bin, args, dir, env = process.env, extraStdio = []) {
  const logFile = path.join(dir, `${name}.log`);
  const log = fs.openSync(logFile, "a");
  const child = spawn(bin, args, { env, stdio: ["ignore", log, log, ...extraStdio] });
  fs.closeSync(log);
  return new Daemon(name, child, logFile);
}

/**
 * PulseAudio with only a null sink (48 kHz, no rewinds: a plain null sink
 * stalls playback after 0.125 s) and an anonymous unix socket in `dir`.
 * Browsers find it through `env.PULSE_SERVER`.
 */
export async function startPulseAudio(dir) {
  const home = fs.mkdtempSync(path.join(dir, "pulse-"));
  const runtime = path.join(home, "run");
  fs.mkdirSync(runtime, { mode: 0o700 });
  const socket = path.join(home, "native");
  const env = { ...process.env, HOME: home, XDG_RUNTIME_DIR: runtime };
  const daemon = spawnLogged(
    "pulseaudio",
    "pulseaudio",
    [
      "-n",
      "--daemonize=no",
      "--exit-idle-time=-1",
      "--disallow-exit",
      "--use-pid-file=no",
      "--log-target=stderr",
      "-L",
      "module-null-sink sink_name=nullsink rate=48000 norewinds=1",
      "-L",
      `module-native-protocol-unix auth-anonymous=1 socket=${socket}`,
    ],
    dir,
    env,
  );
  const deadline = Date.now() + 15_000;
  while (!fs.existsSync(socket)) {
    if (!daemon.running() || Date.now() > deadline) {
      await daemon.stop();
      throw new Error(`PulseAudio did not start:\n${daemon.logTail()}`);
    }
    await sleep(50);
  }
  daemon.env = { PULSE_SERVER: `unix:${socket}` };
  return daemon;
}

/** Xvfb on a display number it picks itself (-displayfd), 1280x900x24. */
export async function startXvfb(dir) {
  const daemon = spawnLogged(
    "xvfb",
    "Xvfb",
    ["-displayfd", "3", "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
    dir,
    process.env,
    ["pipe"],
  );
  const display = await new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => reject(new Error(`Xvfb gave no display number:\n${daemon.logTail()}`)), 15_000);
    daemon.child.stdio[3]?.on("data", (d) => {
      text += d;
      if (text.includes("\n")) {
        clearTimeout(timer);
        resolve(`:${text.trim()}`);
      }
    });
    daemon.exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`Xvfb exited:\n${daemon.logTail()}`));
    });
  }).catch(async (e) => {
    await daemon.stop();
    throw e;
  });
  daemon.env = { DISPLAY: display };
  return daemon;
}

/** Starts `bin` with a log in `dir` (for WebKitWebDriver). */
export function startDaemon(name, bin, args, dir, env) {
  return spawnLogged(name, bin, args, dir, env);
}
