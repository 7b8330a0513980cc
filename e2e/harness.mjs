// Shared pieces of the browser end-to-end tests: a WAV for the fake
// microphone, the AudioBook server on a free port with a throwaway database
// and storage, and headless Chromium driven by playwright-core.
//
// Environment (set by `cargo xtask test`):
//   AUDIOBOOK_SERVER_BIN   the server binary
//   AUDIOBOOK_WEB_DIST     the built web app (target/web-dist)
//   CHROMIUM               the Chromium binary (default /usr/lib/chromium/chromium)
//   AUDIOBOOK_E2E_ARTIFACTS where screenshots go (default target/e2e-artifacts)

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the e2e tests through \`cargo xtask test\``);
  return path.resolve(root, value);
}

export const SAMPLE_RATE = 48_000;

/**
 * Writes a 16-bit mono PCM WAV by hand: `seconds` of 440 Hz tone bursts,
 * 0.5 s of tone then 0.5 s of silence, so the input level meter moves and
 * the length of the signal is known.
 */
export function writeToneBursts(file, seconds) {
  const frames = Math.round(seconds * SAMPLE_RATE);
  const data = Buffer.alloc(frames * 2);
  for (let i = 0; i < frames; i++) {
    const t = i / SAMPLE_RATE;
    const on = t % 1 < 0.5;
    const sample = on ? 0.5 * Math.sin(2 * Math.PI * 440 * t) : 0;
    data.writeInt16LE(Math.round(sample * 32767), i * 2);
  }
  const header = Buffer.alloc(44);
  header.write("RIFF", 0, "ascii");
  header.writeUInt32LE(36 + data.length, 4);
  header.write("WAVE", 8, "ascii");
  header.write("fmt ", 12, "ascii");
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(SAMPLE_RATE, 24);
  header.writeUInt32LE(SAMPLE_RATE * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write("data", 36, "ascii");
  header.writeUInt32LE(data.length, 40);
  fs.writeFileSync(file, Buffer.concat([header, data]));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The server on a free port with its own SQLite file, storage and spool. */
export class Server {
  /** `env`: more environment variables for the server (RECORDING_GRACE_SECS, ...). */
  static async start(dir, env = {}) {
    const port = await freePort();
    const server = new Server(dir, port, env);
    await server.spawn();
    return server;
  }

  constructor(dir, port, env = {}) {
    this.dir = dir;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.logFile = path.join(dir, "server.log");
    this.env = {
      ...process.env,
      PORT: String(port),
      HOST: "127.0.0.1",
      DATABASE_URL: `sqlite://${path.join(dir, "db.sqlite")}`,
      STORAGE_DIR: path.join(dir, "storage"),
      SPOOL_DIR: path.join(dir, "spool"),
      WEB_DIST: required("AUDIOBOOK_WEB_DIST"),
      PUBLIC_URL: `http://127.0.0.1:${port}`,
      AUDIOBOOK_URL: `http://127.0.0.1:${port}`,
      RUST_LOG: process.env.RUST_LOG ?? "info",
      ...env,
    };
  }

  async spawn() {
    const log = fs.openSync(this.logFile, "a");
    const bin = required("AUDIOBOOK_SERVER_BIN");
    this.child = spawn(bin, [], { env: this.env, stdio: ["ignore", log, log] });
    fs.closeSync(log);
    let failed = null;
    this.exited = new Promise((resolve) => {
      this.child.once("exit", resolve);
      this.child.once("error", (e) => {
        failed = e;
        resolve();
      });
    });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (failed) throw new Error(`cannot start the server ${bin}: ${failed.message}`);
      if (this.child.exitCode !== null) break;
      try {
        const res = await fetch(`${this.url}/health`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`the server did not answer /health on ${this.url}:\n${this.logTail()}`);
  }

  /** Kills the server without warning (the network drops mid-take). */
  async kill() {
    this.child.kill("SIGKILL");
    await this.exited;
  }

  async restart() {
    await this.spawn();
  }

  async stop() {
    if (this.child && this.child.exitCode === null) {
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
      await this.exited;
      clearTimeout(timer);
    }
  }

  logTail(lines = 40) {
    try {
      return fs.readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no server log)";
    }
  }
}

/**
 * Headless Chromium with a fake microphone fed from `wav`. With
 * `{ micAllowed: false }` the site has no microphone permission, so
 * getUserMedia is refused as if the user said no. `userDataDir` reuses a
 * profile (a browser started again after a crash); by default it is fresh.
 * `args`: more Chromium flags.
 * `device`: playwright context options for another screen (viewport,
 * hasTouch, isMobile, colorScheme).
 */
export async function launchBrowser(dir, wav, { micAllowed = true, userDataDir, inMemory = false, args = [], device = {} } = {}) {
  const options = {
    executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
    headless: true,
    viewport: { width: 1100, height: 760 },
    permissions: micAllowed ? ["microphone"] : [],
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-device-for-media-stream",
      ...(micAllowed ? ["--use-fake-ui-for-media-stream"] : []),
      `--use-file-for-fake-audio-capture=${wav}`,
      "--autoplay-policy=no-user-gesture-required",
      ...args,
    ],
    ...device,
  };
  let context;
  if (inMemory) {
    // A context without a profile on disk (like a private window): the
    // DevTools protocol's quota override is enforced only there.
    const { viewport, permissions, hasTouch, isMobile, colorScheme, deviceScaleFactor, ...launchOptions } = options;
    const browser = await chromium.launch(launchOptions);
    context = await browser.newContext({ viewport, permissions, hasTouch, isMobile, colorScheme, deviceScaleFactor });
    context.once("close", () => browser.close().catch(() => {}));
  } else {
    userDataDir ??= fs.mkdtempSync(path.join(dir, "chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, options);
  }
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  const logs = [];
  page.on("console", (m) => logs.push(`[console.${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => logs.push(`[pageerror] ${e.message}`));
  return { context, page, logs, userDataDir };
}

/**
 * A TCP link between the browser and the server that can be cut: while cut,
 * every connection through it is reset and new ones are refused, as when a
 * phone loses its network. The page is opened at `link.url`.
 */
export class Link {
  static async open(targetPort) {
    const link = new Link(await freePort(), targetPort);
    await link.restore();
    return link;
  }

  constructor(port, targetPort) {
    this.port = port;
    this.targetPort = targetPort;
    this.url = `http://127.0.0.1:${port}`;
    this.sockets = new Set();
    this.listener = null;
  }

  restore() {
    return new Promise((resolve, reject) => {
      const listener = net.createServer((client) => {
        const upstream = net.connect(this.targetPort, "127.0.0.1");
        for (const s of [client, upstream]) {
          this.sockets.add(s);
          s.on("close", () => this.sockets.delete(s));
          s.on("error", () => {});
        }
        client.pipe(upstream);
        upstream.pipe(client);
        client.on("close", () => upstream.destroy());
        upstream.on("close", () => client.destroy());
      });
      listener.once("error", reject);
      listener.listen(this.port, "127.0.0.1", () => {
        this.listener = listener;
        resolve();
      });
    });
  }

  async cut() {
    const listener = this.listener;
    this.listener = null;
    for (const s of this.sockets) s.resetAndDestroy ? s.resetAndDestroy() : s.destroy();
    this.sockets.clear();
    if (listener) await new Promise((resolve) => listener.close(resolve));
  }
}

export function artifactsDir() {
  const dir = process.env.AUDIOBOOK_E2E_ARTIFACTS
    ? path.resolve(root, process.env.AUDIOBOOK_E2E_ARTIFACTS)
    : path.join(root, "target", "e2e-artifacts");
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export async function screenshot(page, name) {
  await page.screenshot({ path: path.join(artifactsDir(), `${name}.png`), fullPage: true });
}

/** A fresh temp folder with the fake microphone's WAV in it. */
export function workspace(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `audiobook-e2e-${prefix}-`));
  const wav = path.join(dir, "mic.wav");
  writeToneBursts(wav, 30);
  return { dir, wav };
}

// ------------------------------------------------------------ page steps

/** Onboards `name` from `/` and lands on the recorder. */
export async function onboard(page, baseUrl, name) {
  await page.goto(`${baseUrl}/`);
  await page.waitForURL(/\/onboard$/);
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.waitForURL(/\/recorder$/);
}

/** Follows an in-app link to `href` (the router handles it without a reload). */
export async function followLink(page, href) {
  await page.evaluate((href) => {
    const a = document.createElement("a");
    a.href = href;
    document.body.append(a);
    a.click();
    a.remove();
  }, href);
}

export async function waitConnected(page, timeout = 20_000) {
  await page.locator('[data-conn="online"]').waitFor({ timeout });
}

/** The recorder's clock in seconds (m:ss). */
export async function clockSeconds(page) {
  const text = (await page.locator(".clock time").textContent()).trim();
  const parts = text.split(":").map(Number);
  return parts.reduce((acc, n) => acc * 60 + n, 0);
}

/** Waits until the page shows the take saved, and returns the status text. */
export async function waitSaved(page, timeout = 30_000) {
  const status = page.locator(".status-text");
  await page.locator(".status-success").waitFor({ timeout });
  return (await status.textContent()).trim();
}

/** The signed-in user's records straight from the API (with the page's token). */
export async function fetchRecords(page) {
  return page.evaluate(async () => {
    const s = JSON.parse(localStorage.getItem("audiobook.session"));
    const res = await fetch(`/records/${s.user_id}`, { headers: { Authorization: `Bearer ${s.token}` } });
    if (!res.ok) throw new Error(`GET /records answered ${res.status}: ${await res.text()}`);
    return res.json();
  });
}

/** Waits until the player's <audio> knows a finite duration, and returns it. */
export async function playerDuration(page, timeout = 15_000) {
  const handle = await page.waitForFunction(
    () => {
      const a = document.querySelector("#player-audio");
      return a && a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0 ? a.duration : false;
    },
    null,
    { timeout, polling: 100 },
  );
  return handle.jsonValue();
}

/** Seeks the player to `to` seconds, plays, and reports where it got after `ms`. */
export async function seekAndPlay(page, to, ms) {
  return page.evaluate(
    async ({ to, ms }) => {
      const a = document.querySelector("#player-audio");
      a.pause();
      const seeked = new Promise((r) => a.addEventListener("seeked", r, { once: true }));
      a.currentTime = to;
      await seeked;
      const afterSeek = a.currentTime;
      await a.play();
      await new Promise((r) => setTimeout(r, ms));
      const later = a.currentTime;
      a.pause();
      return { afterSeek, later, paused: a.paused, error: a.error && a.error.message };
    },
    { to, ms },
  );
}
