// The core scenario and a smoke test of every page, once per browser
// (Chromium, Firefox ESR, WebKitGTK), written once against the driver
// interface in ./drivers: onboard → record with a pause → saved → listed →
// play → <audio>.duration finite and within 0.3 s of the time actually
// recorded → seek to the middle lands within 0.3 s and playback goes on →
// plays to the end; the share page plays; rename, reload, not-found page and
// log out work. A second take, lossless (Quality: Lossless, WAV from an
// AudioWorklet), is recorded with a pause, listed, played and seeked in the
// same browser session. Prints per browser the MIME type, recorded vs saved
// duration, <audio>.duration, the seek error and how long the suite took.
//
// AUDIOBOOK_E2E_BROWSERS=firefox,webkit picks browsers (default: all three).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { BROWSERS, by, launch } from "./drivers/index.mjs";
import { Server, sleep, workspace } from "./harness.mjs";
import { knownGaps } from "./known-gaps.mjs";

/** The most the saved, played and seeked times may be off (issue 12). */
const TOLERANCE_S = 0.3;

const chosen = (process.env.AUDIOBOOK_E2E_BROWSERS || BROWSERS.join(",")).split(",").map((b) => b.trim());
for (const b of chosen) {
  if (!BROWSERS.includes(b)) throw new Error(`AUDIOBOOK_E2E_BROWSERS: unknown browser ${b} (one of ${BROWSERS})`);
}

// ------------------------------------------------------------ in the page

/**
 * Wraps MediaRecorder's start/pause/resume/stop to note when the app called
 * them (the time actually recorded is start→pause plus resume→stop) and
 * which MIME type the recorder reports. Calls go through unchanged.
 */
function installRecorderProbe() {
  if (window.__e2eRecorder) return true;
  const probe = (window.__e2eRecorder = { calls: [], mimeType: null, blobs: [] });
  const proto = MediaRecorder.prototype;
  for (const name of ["start", "pause", "resume", "stop"]) {
    const original = proto[name];
    proto[name] = function (...args) {
      const result = original.apply(this, args);
      probe.calls.push({ call: name, at: performance.now(), state: this.state });
      if (name === "start") {
        probe.mimeType = this.mimeType;
        this.addEventListener("dataavailable", (e) => probe.blobs.push({ at: performance.now(), size: e.data.size }));
      }
      return result;
    };
  }
  return true;
}

/** The recorder calls noted by the probe, and the recorded time they add up to. */
function recorderTimeline() {
  const probe = window.__e2eRecorder;
  let recordedMs = 0;
  let runningSince = null;
  for (const { call, at } of probe.calls) {
    if ((call === "start" || call === "resume") && runningSince === null) runningSince = at;
    if ((call === "pause" || call === "stop") && runningSince !== null) {
      recordedMs += at - runningSince;
      runningSince = null;
    }
  }
  const start = probe.calls.find((c) => c.call === "start")?.at ?? 0;
  const stop = probe.calls.find((c) => c.call === "stop")?.at ?? start;
  return {
    mimeType: probe.mimeType,
    calls: probe.calls.map((c) => `${c.call}@${Math.round(c.at - start)}→${c.state}`),
    recordedMs,
    wallMs: stop - start,
    blobs: probe.blobs.length,
  };
}

/**
 * Notes when the lossless capture starts (its AudioWorkletNode is made) and
 * when the app tells the worklet to pause and resume, and when it reads the
 * audio context's clock, which it does exactly when the person stops (to cut
 * the take at that frame), so the time actually recorded is known as for
 * MediaRecorder. Calls go through unchanged.
 */
function installPcmProbe() {
  if (window.__e2ePcm) return true;
  const probe = (window.__e2ePcm = { calls: [] });
  const Node = window.AudioWorkletNode;
  if (typeof Node !== "function") return "no AudioWorkletNode";
  window.AudioWorkletNode = function (...args) {
    const node = new Node(...args);
    probe.calls.push({ call: "start", at: performance.now() });
    return node;
  };
  window.AudioWorkletNode.prototype = Node.prototype;
  const post = MessagePort.prototype.postMessage;
  MessagePort.prototype.postMessage = function (message, ...rest) {
    if (message === "pause" || message === "resume") probe.calls.push({ call: message, at: performance.now() });
    return post.call(this, message, ...rest);
  };
  const clock = Object.getOwnPropertyDescriptor(BaseAudioContext.prototype, "currentTime");
  Object.defineProperty(BaseAudioContext.prototype, "currentTime", {
    configurable: true,
    get() {
      probe.calls.push({ call: "clock", at: performance.now() });
      return clock.get.call(this);
    },
  });
  return true;
}

/** The capture's start and button presses noted by the PCM probe, and the time recorded. */
function pcmTimeline() {
  const noted = window.__e2ePcm.calls;
  // The clock is read once, at the stop.
  const calls = noted.map(({ call, at }) => ({ call: call === "clock" ? "stop" : call, at }));
  let recordedMs = 0;
  let since = null;
  for (const { call, at } of calls) {
    if ((call === "start" || call === "resume") && since === null) since = at;
    if ((call === "pause" || call === "stop") && since !== null) {
      recordedMs += at - since;
      since = null;
    }
  }
  const start = calls[0]?.at ?? 0;
  return { calls: calls.map((c) => `${c.call}@${Math.round(c.at - start)}`), recordedMs };
}

async function apiRecords() {
  const s = JSON.parse(localStorage.getItem("audiobook.session"));
  const res = await fetch(`/records/${s.user_id}`, { headers: { Authorization: `Bearer ${s.token}` } });
  if (!res.ok) throw new Error(`GET /records answered ${res.status}: ${await res.text()}`);
  return res.json();
}

/** The <audio> element's state (`sel`: which one). */
function audioState(sel) {
  const a = document.querySelector(sel);
  if (!a) return null;
  return {
    src: a.currentSrc,
    readyState: a.readyState,
    networkState: a.networkState,
    duration: Number.isFinite(a.duration) ? a.duration : String(a.duration),
    currentTime: a.currentTime,
    paused: a.paused,
    ended: a.ended,
    error: a.error ? `${a.error.code} ${a.error.message}` : null,
  };
}

/** Pauses `sel`, seeks to `to` and waits for `seeked`; plays `ms` and reports where it got. */
async function seekAndPlay({ sel, to, ms }) {
  const a = document.querySelector(sel);
  a.pause();
  const seeked = new Promise((resolve) => a.addEventListener("seeked", resolve, { once: true }));
  a.currentTime = to;
  await Promise.race([seeked, new Promise((r) => setTimeout(r, 5_000))]);
  const afterSeek = a.currentTime;
  // Every wait is bounded: a media pipeline that stalls must fail the check, not hang it.
  const started = await Promise.race([a.play().then(() => true), new Promise((r) => setTimeout(() => r(false), 5_000))]);
  await new Promise((r) => setTimeout(r, ms));
  return { afterSeek, started, later: a.currentTime, error: a.error ? `${a.error.code} ${a.error.message}` : null };
}

/** Plays `sel` from where it is for `ms`, and reports where it got. */
async function playFor({ sel, ms }) {
  const a = document.querySelector(sel);
  const from = a.currentTime;
  const started = await Promise.race([a.play().then(() => true), new Promise((r) => setTimeout(() => r(false), 5_000))]);
  await new Promise((r) => setTimeout(r, ms));
  const error = a.error ? `${a.error.code} ${a.error.message}` : null;
  return { from, started, later: a.currentTime, paused: a.paused, error };
}

/** Plays `sel` from where it is until `ended` (or `limitMs`), and reports the end. */
async function playToEnd({ sel, limitMs }) {
  const a = document.querySelector(sel);
  const report = (finished, started) => ({
    finished,
    endedAt: a.currentTime,
    playedMs: performance.now() - started,
    duration: Number.isFinite(a.duration) ? a.duration : String(a.duration),
    error: a.error ? `${a.error.code} ${a.error.message}` : null,
  });
  const started = performance.now();
  // Already at the end: play() would start over.
  if (a.ended) return { ...report(true, started), from: a.currentTime, alreadyEnded: true };
  const from = a.currentTime;
  let playError = null;
  const ended = new Promise((resolve) => {
    a.addEventListener("ended", () => resolve(true), { once: true });
    a.addEventListener("error", () => resolve(false), { once: true });
    setTimeout(() => resolve(false), limitMs);
  });
  a.play().catch((e) => {
    playError = String(e);
  });
  return { ...report(await ended, started), from, playError };
}

/**
 * What the player shows (its times, its "Duration" line, the seek slider's
 * range) and whether that is the take's length: the browser's duration when
 * it is finite and at least the server's `duration_ms`, else the server's.
 */
function playerShows(serverSeconds) {
  const times = [...document.querySelectorAll(".player-time span")].map((s) => s.textContent.trim());
  const slider = document.querySelector('.player [role="slider"], .player input.seekbar');
  const a = document.querySelector("#player-audio");
  const browserKnows = Number.isFinite(a.duration) && a.duration >= serverSeconds;
  const expected = browserKnows ? a.duration : serverSeconds;
  const mss = (x) => `${Math.floor(x / 60)}:${String(Math.floor(x % 60)).padStart(2, "0")}`;
  const shown = {
    current: times[0] ?? null,
    total: times[1] ?? null,
    durationLine: document.querySelector(".player-duration")?.textContent.trim() ?? null,
    sliderMax: slider ? Number(slider.getAttribute("aria-valuemax") ?? slider.getAttribute("max")) : null,
    waveform: document.querySelector(".player .waveform[role=slider]") !== null,
    audioDuration: Number.isFinite(a.duration) ? a.duration : String(a.duration),
    currentTime: a.currentTime,
    expected,
  };
  shown.ok =
    shown.total === mss(expected) &&
    Math.abs(shown.sliderMax - expected) < 0.11 &&
    shown.durationLine === `Duration ${mss(expected)}`;
  return shown;
}

// ------------------------------------------------------------- in Node

/** `m:ss` as the app writes it. */
const mss = (seconds) => {
  const s = Math.floor(Math.max(0, seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
};

/** Seconds from `m:ss`. */
const seconds = (text) => text.split(":").map(Number).reduce((acc, n) => acc * 60 + n, 0);

/** `ffmpeg -v warning` on the stored file (printed, not asserted: the container fixes are checked in crates/media). */
function ffmpegReport(file) {
  const run = spawnSync("ffmpeg", ["-nostdin", "-v", "warning", "-i", file, "-f", "null", "-"], { encoding: "utf8" });
  return run.error ? null : run.stderr;
}

for (const browser of chosen) {
  describe(`${browser}: every page works; record with a pause, play, seek, play to the end`, { timeout: 300_000 }, () => {
    let ws;
    let server;
    let driver;
    let suiteStarted;
    const figures = { browser };
    /** The saved take: its record, and the recorder's timeline. */
    let take;

    before(async () => {
      suiteStarted = Date.now();
      ws = workspace(browser);
      server = await Server.start(ws.dir);
      const launched = Date.now();
      driver = await launch(browser, ws);
      figures.launch_s = (Date.now() - launched) / 1000;
    });

    after(async () => {
      const closing = Date.now();
      if (driver) await driver.close();
      figures.close_s = (Date.now() - closing) / 1000;
      if (server) await server.stop();
      if (ws) fs.rmSync(ws.dir, { recursive: true, force: true });
      figures.suite_s = (Date.now() - suiteStarted) / 1000;
      console.log(`cross-browser figures ${JSON.stringify(figures)}`);
    });

    /** A test of this browser's suite; on failure a screenshot, the browser's console and the server log. */
    const step = (name, options, body) => {
      if (typeof options === "function") [options, body] = [{}, options];
      test(name, options, async () => {
        try {
          await body();
          if (options.todo) console.log(`KNOWN GAP ${options.todo} is set, but "${name}" passes in ${browser} now: remove the flag`);
        } catch (e) {
          if (options.todo) console.log(`KNOWN GAP ${options.todo}: "${name}" fails in ${browser}: ${e.message}`);
          if (driver) {
            await driver.screenshot(`failure-${name.replace(/\W+/g, "-").slice(0, 60)}`).catch(() => {});
            if (!options.todo) console.error(`--- ${browser} console\n${driver.logs()}`);
          }
          if (server && !options.todo) console.error(`--- server log\n${server.logTail(40)}`);
          throw e;
        }
      });
    };
    const needTake = () => {
      if (!take) throw new Error("no saved take: an earlier step failed");
      return take;
    };

    step("onboarding loads, checks the name and signs in", async () => {
      await driver.goto(`${server.url}/`);
      await driver.waitForUrl(/\/onboard$/);
      await driver.waitFor(by.role("button", "Continue"));
      await driver.click(by.role("button", "Continue"));
      await driver.waitFor(by.text("Please enter your name."));
      await driver.fill("Your name", "x".repeat(21));
      await driver.click(by.role("button", "Continue"));
      await driver.waitFor(by.text("at most 20"));
      await driver.screenshot("onboard");
      await driver.fill("Your name", `Ada in ${browser}`);
      await driver.click(by.role("button", "Continue"));
      await driver.waitForUrl(/\/recorder$/);
    });

    step("the recorder records with a pause, and the take is saved", async () => {
      await driver.waitFor(by.css('[data-conn="online"]'));
      assert.equal(await driver.evaluate(installRecorderProbe), true);
      await driver.click(by.role("button", "Record"));
      await driver.waitFor(by.text("Recording…"));
      await sleep(2_000);
      await driver.click(by.role("button", "Pause"));
      await driver.waitFor(by.text("Paused."));
      // The clock's last tick before the pause may still be drawn: read it
      // once it has settled.
      await sleep(300);
      const clockAtPause = await driver.text(by.css(".clock time"));
      await sleep(1_500);
      assert.equal(await driver.text(by.css(".clock time")), clockAtPause, "the clock stands still while paused");
      await driver.click(by.role("button", "Resume"));
      await driver.waitFor(by.text("Recording…"));
      await sleep(2_500);
      await driver.screenshot("recorder");
      await driver.click(by.role("button", "Stop"));
      await driver.waitFor(by.css(".status-success"), { timeout: 30_000 });
      const saved = await driver.text(by.css(".status-text"));
      assert.match(saved, /^Saved “.+” \(\d+:\d\d\)\.$/);
      const timeline = await driver.evaluate(recorderTimeline);
      const clock = await driver.text(by.css(".clock time"));
      const records = await driver.evaluate(apiRecords);
      assert.equal(records.length, 1, `one take: ${JSON.stringify(records)}`);
      const [record] = records;
      assert.equal(record.status, "ready");
      assert.ok(record.size_bytes > 5_000, `size ${record.size_bytes}`);
      take = { record, timeline, saved, clock };
      Object.assign(figures, {
        recorder_mime: timeline.mimeType,
        stored_mime: record.mime_type,
        recorder_calls: timeline.calls.join(" "),
        recorded_s: +(timeline.recordedMs / 1000).toFixed(3),
        wall_s: +(timeline.wallMs / 1000).toFixed(3),
        recorder_blobs: timeline.blobs,
        page_clock: clock,
        page_saved: saved,
        saved_duration_ms: record.duration_ms,
        size_bytes: record.size_bytes,
      });
      assert.ok(timeline.recordedMs > 3_500 && timeline.recordedMs < 6_000, `recorded ${timeline.recordedMs} ms`);
      await driver.screenshot("recorder-saved");

      const file = path.join(ws.dir, "stored");
      fs.writeFileSync(file, Buffer.from(await (await fetch(record.link)).arrayBuffer()));
      const report = ffmpegReport(file);
      const lines = report === null ? null : report.split("\n").filter(Boolean);
      figures.ffmpeg_warnings = lines === null ? "ffmpeg missing" : lines.length;
      if (lines?.length) figures.ffmpeg_first = [...new Set(lines.map((l) => l.replace(/0x[0-9a-f]+/g, "…")))].slice(0, 3);
    });

    step(
      "the saved duration is the time recorded (±0.3 s), and the page says so",
      { todo: knownGaps(browser, "webkitPauseIgnored", "webkitMp4Duration") },
      async () => {
        const { record, timeline, saved, clock } = needTake();
        assert.ok(
          Math.abs(record.duration_ms - timeline.recordedMs) / 1000 <= TOLERANCE_S,
          `duration_ms ${record.duration_ms} for ${Math.round(timeline.recordedMs)} ms recorded`,
        );
        // Both are m:ss on the page, so they may differ by the display's step.
        const savedSeconds = seconds(/\((\d+:\d\d)\)\.$/.exec(saved)[1]);
        assert.ok(Math.abs(savedSeconds - seconds(clock)) <= 1, `the page's clock ${clock} and "${saved}" agree`);
      },
    );

    step("the take is listed on /records and plays from the list", async () => {
      const { record } = needTake();
      await driver.click(by.role("link", "Listen in My recordings"));
      await driver.waitForUrl(/\/records$/);
      await driver.waitFor(by.role("heading", `Hi Ada in ${browser}`));
      await driver.waitFor(by.css("li.record"));
      assert.equal(await driver.evaluate(() => document.querySelectorAll("li.record").length), 1);
      assert.equal(await driver.text(by.css("li.record .record-name")), record.name);
      assert.equal(await driver.text(by.css("li.record .record-duration")), mss(record.duration_ms / 1000));
      await driver.click(by.role("button", `Play ${record.name}`));
      const playing = await driver.waitForFunction(
        (sel) => {
          const a = document.querySelector(sel);
          return a && !a.paused && a.currentTime > 0.3 ? { currentTime: a.currentTime } : false;
        },
        "#player-audio",
        { timeout: 15_000, what: "the player to play past 0.3 s" },
      );
      assert.ok(playing.currentTime > 0.3);
      // Paused near the start, so the seek below goes where nothing has played yet.
      await driver.evaluate((sel) => document.querySelector(sel).pause(), "#player-audio");
      await driver.screenshot("records");
    });

    step("the player shows the take's length: the server's when the browser's is unknown or shorter", async () => {
      const { record } = needTake();
      const server = record.duration_ms / 1000;
      // The browser's duration may change while loading: the page must follow.
      let shown;
      await driver.until(async () => (shown = await driver.evaluate(playerShows, server)).ok, {
        timeout: 10_000,
        what: () => `the player to show the take's length (duration_ms ${record.duration_ms}): ${JSON.stringify(shown)}`,
      });
      assert.ok(shown.waveform, "the take's waveform is drawn");
      figures.player_total = shown.total;
    });

    step(
      "<audio>.duration is finite and within 0.3 s of the time recorded",
      { todo: knownGaps(browser, "webkitMp4Duration", "webkitPauseIgnored") },
      async () => {
        const { timeline } = needTake();
        let state;
        await driver
          .until(async () => typeof (state = await driver.evaluate(audioState, "#player-audio")).duration === "number", {
            timeout: 10_000,
            what: () => `a finite <audio>.duration: ${JSON.stringify(state)}`,
          })
          .finally(() => (figures.audio_duration = state?.duration));
        assert.ok(
          Math.abs(state.duration - timeline.recordedMs / 1000) <= TOLERANCE_S,
          `<audio>.duration ${state.duration} s for ${(timeline.recordedMs / 1000).toFixed(3)} s recorded`,
        );
      },
    );

    step(
      "seeking to the middle lands within 0.3 s and playback goes on",
      { todo: knownGaps(browser, "webkitMp4Duration") },
      async () => {
        const { timeline } = needTake();
        const middle = timeline.recordedMs / 2000;
        const played = await driver.evaluate(seekAndPlay, { sel: "#player-audio", to: middle, ms: 1_000 });
        figures.seek_to = +middle.toFixed(3);
        figures.seek_landed = +played.afterSeek.toFixed(3);
        figures.seek_error_s = +Math.abs(played.afterSeek - middle).toFixed(3);
        assert.equal(played.error, null);
        assert.ok(Math.abs(played.afterSeek - middle) <= TOLERANCE_S, `seeked to ${played.afterSeek} s, asked ${middle} s`);
        assert.ok(played.later > played.afterSeek + 0.4, `playback went on from the middle: ${JSON.stringify(played)}`);
      },
    );

    step(
      "it plays to the end of the take",
      { todo: knownGaps(browser, "webkitMp4Duration", "webkitPauseIgnored") },
      async () => {
        const { timeline } = needTake();
        const recorded = timeline.recordedMs / 1000;
        const end = await driver.evaluate(playToEnd, { sel: "#player-audio", limitMs: (recorded + 10) * 1000 });
        figures.ended_at = typeof end.endedAt === "number" ? +end.endedAt.toFixed(3) : end.endedAt;
        assert.equal(end.error, null, `no media error: ${JSON.stringify(end)}`);
        assert.ok(end.finished, `ended: ${JSON.stringify(end)}`);
        assert.ok(Math.abs(end.endedAt - recorded) <= TOLERANCE_S, `ended at ${end.endedAt} s of ${recorded} s recorded`);
        const serverSeconds = needTake().record.duration_ms / 1000;
        let shown;
        const atEnd = async () => (shown = await driver.evaluate(playerShows, serverSeconds)).current === shown.total;
        await driver.until(atEnd, { timeout: 5_000, what: () => `the player to show the end: ${JSON.stringify(shown)}` });
        await driver.waitFor(by.role("button", "Play", ".player"));
      },
    );

    step("renaming works and the list survives a reload (deep link)", async () => {
      const { record } = needTake();
      await driver.click(by.role("button", `Rename ${record.name}`));
      await driver.fill("New name", `Take in ${browser}`);
      await driver.click(by.role("button", "Save", "li.record"));
      await driver.waitFor(by.text(`Renamed to “Take in ${browser}”`));
      await driver.goto(`${server.url}/records`);
      await driver.waitFor(by.css("li.record"));
      assert.equal(await driver.text(by.css("li.record .record-name")), `Take in ${browser}`);
      take.name = `Take in ${browser}`;
    });

    step("the share page loads and plays the take", async () => {
      const { record } = needTake();
      const name = take.name ?? record.name;
      await driver.click(by.role("button", `Share ${name}`));
      await driver.waitFor(by.css("input.share-url"));
      const url = await driver.waitForFunction(() => document.querySelector("input.share-url")?.value || false);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/s\/[\w-]{16,}$/);
      await driver.goto(url);
      await driver.waitFor(by.css("audio"));
      const html = await driver.evaluate(() => document.documentElement.outerHTML);
      assert.ok(html.includes(name), "the share page names the recording");
      assert.ok(!html.includes(`Ada in ${browser}`), "the share page does not name the owner");
      const played = await driver.evaluate(playFor, { sel: "audio", ms: 1_500 });
      assert.equal(played.error, null, `plays: ${JSON.stringify(played)}`);
      assert.ok(played.later > 0.5, `the shared audio plays: ${JSON.stringify(played)}`);
      figures.share_audio_duration = (await driver.evaluate(audioState, "audio")).duration;
      await driver.screenshot("share-page");
    });

    step(
      "the share page's <audio>.duration is within 0.3 s of the time recorded",
      { todo: knownGaps(browser, "webkitMp4Duration", "webkitPauseIgnored") },
      async () => {
        const { timeline } = needTake();
        const { duration } = await driver.evaluate(audioState, "audio");
        assert.equal(typeof duration, "number", `duration ${duration}`);
        assert.ok(Math.abs(duration - timeline.recordedMs / 1000) <= TOLERANCE_S, `duration ${duration}`);
      },
    );

    // ------------------------------------------------ a second take, lossless (WAV by an AudioWorklet)
    /** The lossless take: its record and the worklet's timeline. */
    let wav;
    const needWav = () => {
      if (!wav) throw new Error("no saved lossless take: an earlier step failed");
      return wav;
    };

    step("Lossless shows its data rate, is remembered, and records a take with a pause", async () => {
      await driver.goto(`${server.url}/recorder`);
      await driver.waitFor(by.css('[data-conn="online"]'));
      const rate = await driver.waitForFunction(() => {
        const el = document.querySelector(".quality-rate[data-sample-rate]");
        return el ? { rate: Number(el.dataset.sampleRate), text: el.textContent } : false;
      });
      const mbPerMinute = (rate.rate * 2 * 60) / 1e6;
      assert.ok(rate.text.includes(`${mbPerMinute.toFixed(1)} MB per minute`), `data rate shown: ${rate.text}`);
      figures.wav_device_rate = rate.rate;
      figures.wav_rate_text = rate.text;
      await driver.click(by.css('input[name="quality"][value="lossless"]'));
      // Remembered per browser: still picked after a reload.
      await driver.goto(`${server.url}/recorder`);
      await driver.waitFor(by.css('[data-conn="online"]'));
      await driver.waitForFunction(() => document.querySelector('input[name="quality"][value="lossless"]')?.checked);
      assert.equal(await driver.evaluate(installPcmProbe), true);
      await driver.click(by.role("button", "Record"));
      await driver.waitFor(by.text("Recording…"));
      await sleep(2_000);
      await driver.click(by.role("button", "Pause"));
      await driver.waitFor(by.text("Paused."));
      await sleep(1_500);
      await driver.click(by.role("button", "Resume"));
      await driver.waitFor(by.text("Recording…"));
      await sleep(2_500);
      await driver.click(by.role("button", "Stop"));
      await driver.waitFor(by.css(".status-success"), { timeout: 30_000 });
      const timeline = await driver.evaluate(pcmTimeline);
      const records = await driver.evaluate(apiRecords);
      assert.equal(records.length, 2, `two takes: ${JSON.stringify(records)}`);
      const record = records[0];
      wav = { record, timeline };
      Object.assign(figures, {
        wav_stored_mime: record.mime_type,
        wav_calls: timeline.calls.join(" "),
        wav_recorded_s: +(timeline.recordedMs / 1000).toFixed(3),
        wav_saved_duration_ms: record.duration_ms,
        wav_size_bytes: record.size_bytes,
      });
      assert.equal(record.status, "ready");
      assert.equal(record.mime_type, "audio/wav");
      assert.ok(
        Math.abs(record.duration_ms - timeline.recordedMs) / 1000 <= TOLERANCE_S,
        `duration_ms ${record.duration_ms} for ${Math.round(timeline.recordedMs)} ms recorded`,
      );
      // 44 bytes of header and 2 bytes a sample: the size says the duration.
      const samples = (record.size_bytes - 44) / 2;
      assert.ok(Math.abs((samples / rate.rate) * 1000 - record.duration_ms) <= 1, `size ${record.size_bytes}`);
      const file = path.join(ws.dir, "stored.wav");
      fs.writeFileSync(file, Buffer.from(await (await fetch(record.link)).arrayBuffer()));
      const report = ffmpegReport(file);
      figures.wav_ffmpeg_warnings = report === null ? "ffmpeg missing" : report.split("\n").filter(Boolean).length;
    });

    step("the lossless take is listed, plays, has its duration, and seeks to the middle", async () => {
      const { record, timeline } = needWav();
      await driver.click(by.role("link", "Listen in My recordings"));
      await driver.waitForUrl(/\/records$/);
      await driver.waitFor(by.css("li.record"));
      assert.equal(await driver.evaluate(() => document.querySelectorAll("li.record").length), 2);
      await driver.click(by.role("button", `Play ${record.name}`));
      await driver.waitForFunction(
        (sel) => {
          const a = document.querySelector(sel);
          return a && !a.paused && a.currentTime > 0.3;
        },
        "#player-audio",
        { timeout: 15_000, what: "the lossless take to play past 0.3 s" },
      );
      await driver.evaluate((sel) => document.querySelector(sel).pause(), "#player-audio");
      let state;
      await driver
        .until(async () => typeof (state = await driver.evaluate(audioState, "#player-audio")).duration === "number", {
          timeout: 10_000,
          what: () => `a finite <audio>.duration: ${JSON.stringify(state)}`,
        })
        .finally(() => (figures.wav_audio_duration = state?.duration));
      assert.ok(state.src.includes(record.id) || state.src.length > 0);
      assert.ok(
        Math.abs(state.duration - timeline.recordedMs / 1000) <= TOLERANCE_S,
        `<audio>.duration ${state.duration} s for ${(timeline.recordedMs / 1000).toFixed(3)} s recorded`,
      );
      const middle = timeline.recordedMs / 2000;
      const played = await driver.evaluate(seekAndPlay, { sel: "#player-audio", to: middle, ms: 1_000 });
      figures.wav_seek_error_s = +Math.abs(played.afterSeek - middle).toFixed(3);
      assert.equal(played.error, null);
      assert.ok(Math.abs(played.afterSeek - middle) <= TOLERANCE_S, `seeked to ${played.afterSeek} s, asked ${middle} s`);
      assert.ok(played.later > played.afterSeek + 0.4, `playback went on from the middle: ${JSON.stringify(played)}`);
      await driver.evaluate((sel) => document.querySelector(sel).pause(), "#player-audio");
      await driver.screenshot("records-lossless");
    });

    step("without MediaRecorder, Standard falls back to lossless and the take is a WAV", async () => {
      // The preference says Standard; MediaRecorder disappears (as in a
      // browser without one) and the app is entered again without a reload.
      const probed = await driver.evaluate(() => {
        localStorage.setItem("audiobook.quality", "standard");
        delete window.MediaRecorder;
        // The PCM probe of the lossless take is still installed: it notes this take anew.
        if (!window.__e2ePcm) return "no PCM probe";
        window.__e2ePcm.calls = [];
        return typeof window.MediaRecorder;
      });
      assert.equal(probed, "undefined");
      await driver.click(by.role("link", "New recording"));
      await driver.waitForUrl(/\/recorder$/);
      await driver.waitFor(by.css('[data-conn="online"]'));
      await driver.waitFor(by.text("This browser has no compressed recorder here, so it records lossless."));
      assert.equal(
        await driver.evaluate(() => document.querySelector('input[name="quality"][value="standard"]').disabled),
        true,
      );
      await driver.click(by.role("button", "Record"));
      await driver.waitFor(by.text("Recording…"));
      await sleep(1_500);
      await driver.click(by.role("button", "Stop"));
      await driver.waitFor(by.css(".status-success"), { timeout: 30_000 });
      const timeline = await driver.evaluate(pcmTimeline);
      const [record] = await driver.evaluate(apiRecords);
      Object.assign(figures, {
        fallback_mime: record.mime_type,
        fallback_recorded_s: +(timeline.recordedMs / 1000).toFixed(3),
        fallback_duration_ms: record.duration_ms,
      });
      assert.equal(record.mime_type, "audio/wav");
      assert.ok(
        Math.abs(record.duration_ms - timeline.recordedMs) / 1000 <= TOLERANCE_S,
        `duration_ms ${record.duration_ms} for ${Math.round(timeline.recordedMs)} ms recorded`,
      );
    });

    step("an unknown address shows the not-found page, and logging out returns to onboarding", async () => {
      await driver.goto(`${server.url}/no/such/page`);
      await driver.waitFor(by.role("heading", "Page not found"));
      await driver.click(by.role("link", "Go to AudioBook"));
      await driver.waitForUrl(/\/recorder$/);
      await driver.click(by.role("link", "My recordings"));
      await driver.waitForUrl(/\/records$/);
      await driver.click(by.role("button", "Log out"));
      await driver.waitForUrl(/\/onboard$/);
      await driver.waitFor(by.label("Your name"));
    });
  });
}
