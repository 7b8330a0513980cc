// Layouts, themes and accessibility in headless Chromium, on a phone
// (390×844, touch) and a desktop (1280×800): no horizontal scroll, the
// header on one row, touch targets of at least 44 px and no shortcuts button
// on touch, the docked player playing and seeking on the phone, the live
// waveform drawn while recording with its spoken alternative, focus on the
// heading after a navigation, and axe-core with 0 violations on every page
// (onboard, recorder idle and recording, records without and with a chosen
// recording, the full docked player, the share page, the help dialog) in
// both themes, each reached by the system's colour scheme and by the
// header's theme button. Screenshots of every page in both themes go to
// AUDIOBOOK_SCREENSHOTS_DIR (default: the e2e artifacts folder; README.md
// shows the copies in docs/screenshots/).

import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import {
  Server,
  artifactsDir,
  fetchRecords,
  launchBrowser,
  onboard,
  playerDuration,
  sleep,
  waitConnected,
  waitSaved,
  workspace,
} from "./harness.mjs";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");

const SIZES = {
  phone: { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true, deviceScaleFactor: 1 },
  desktop: { viewport: { width: 1280, height: 800 } },
};

/** Both themes, each by the system's preference and by the header's button. */
const THEMES = [
  { name: "light", system: "light", choice: "system", dark: false, shot: true },
  { name: "dark", system: "dark", choice: "system", dark: true, shot: true },
  { name: "dark chosen", system: "light", choice: "dark", dark: true },
  { name: "light chosen", system: "dark", choice: "light", dark: false },
];
/** The page background of each theme (style.css). */
const BACKGROUND = { light: "rgb(246, 245, 251)", dark: "rgb(18, 16, 25)" };

function screenshotsDir() {
  const dir = process.env.AUDIOBOOK_SCREENSHOTS_DIR
    ? path.resolve(process.env.AUDIOBOOK_SCREENSHOTS_DIR)
    : path.join(artifactsDir(), "screenshots");
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Sets the system's colour scheme and, where the page has the button, the theme chosen in the header. */
async function setTheme(page, theme) {
  await page.emulateMedia({ colorScheme: theme.system });
  const toggle = page.locator(".theme-toggle");
  if ((await toggle.count()) > 0) {
    for (let i = 0; i < 3; i++) {
      if ((await toggle.getAttribute("data-theme-choice")) === theme.choice) break;
      await toggle.click();
    }
    assert.equal(await toggle.getAttribute("data-theme-choice"), theme.choice);
    const stored = await page.evaluate(() => localStorage.getItem("audiobook.theme"));
    assert.equal(stored, theme.choice === "system" ? null : theme.choice, "the choice is kept in localStorage");
  }
}

/** Waits for the colour transitions a theme change starts (axe would read colours half-way). */
async function settled(page) {
  await page.evaluate(() =>
    Promise.all(
      document
        .getAnimations()
        .filter((a) => a.effect?.getTiming().iterations !== Infinity)
        .map((a) => a.finished.catch(() => {})),
    ),
  );
}

/** axe-core's violations on the page as it is now. */
async function axeViolations(page) {
  // Evaluated through the DevTools protocol, which the share page's CSP (no scripts) does not block.
  if (!(await page.evaluate(() => typeof window.axe !== "undefined"))) await page.evaluate(fs.readFileSync(AXE, "utf8"));
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 5).map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
    }));
  });
}

/** What the layout checks look at: scroll width, the header's items, small targets, the shortcuts button. */
async function layoutFacts(page) {
  return page.evaluate(() => {
    const shown = (el) => {
      const r = el.getBoundingClientRect();
      const s = getComputedStyle(el);
      return r.width > 1 && r.height > 1 && s.visibility !== "hidden" && s.display !== "none";
    };
    const box = (el) => {
      const r = el.getBoundingClientRect();
      return { what: el.outerHTML.slice(0, 90), top: r.top, bottom: r.bottom, w: r.width, h: r.height };
    };
    const de = document.documentElement;
    const header = [...document.querySelectorAll(".topbar .brand, .topbar .topnav > *")].filter(shown).map(box);
    const targets = [...document.querySelectorAll("button, a[href], input, select, [role=slider]")]
      .filter((el) => shown(el) && !el.classList.contains("skip-link"))
      .map(box);
    return {
      scrollWidth: de.scrollWidth,
      clientWidth: de.clientWidth,
      header,
      small: targets.filter((t) => t.w < 44 || t.h < 44),
      shortcuts: [...document.querySelectorAll(".shortcut-button")].filter(shown).length,
      touchOnly: matchMedia("(hover: none)").matches,
      coarse: matchMedia("(pointer: coarse)").matches,
    };
  });
}

describe("layouts, themes and accessibility", { timeout: 600_000 }, () => {
  let ws;
  let server;
  const browsers = {};
  /** Every axe run: page, size, theme, violations. */
  const report = [];

  before(async () => {
    ws = workspace("layout");
    // A short grace period turns an abandoned take into an `interrupted` one quickly.
    server = await Server.start(ws.dir, { RECORDING_GRACE_SECS: "2" });
  });

  after(async () => {
    for (const b of Object.values(browsers)) {
      if (process.exitCode) console.error(`--- browser console\n${b.logs.join("\n")}`);
      await b.context.close().catch(() => {});
    }
    if (server) {
      if (process.exitCode) console.error(`--- server log\n${server.logTail(60)}`);
      await server.stop();
    }
    if (ws) fs.rmSync(ws.dir, { recursive: true, force: true });
    const runs = report.length;
    const failing = report.filter((r) => r.violations.length > 0).length;
    console.log(`axe-core: ${runs} page checks, ${failing} with violations`);
  });

  for (const [size, device] of Object.entries(SIZES)) {
    describe(`${size} (${device.viewport.width}×${device.viewport.height}${device.hasTouch ? ", touch" : ""})`, () => {
      let b;
      let page;
      const touch = Boolean(device.hasTouch);

      /** Layout checks, then axe and a screenshot in every theme. `open`/`close` wrap each theme's check (a dialog). */
      async function checkPage(name, { header = true, themes = THEMES, open, close } = {}) {
        const facts = await layoutFacts(page);
        assert.ok(facts.scrollWidth <= facts.clientWidth, `${name}: no horizontal scroll (${facts.scrollWidth} > ${facts.clientWidth})`);
        if (header) {
          assert.ok(facts.header.length >= 2, `${name}: a header`);
          const rowTop = Math.max(...facts.header.map((h) => h.top));
          const rowBottom = Math.min(...facts.header.map((h) => h.bottom));
          assert.ok(rowTop < rowBottom, `${name}: the header's items share one row: ${JSON.stringify(facts.header)}`);
        }
        if (touch) {
          assert.ok(facts.touchOnly && facts.coarse, `${name}: the phone is touch-only: ${JSON.stringify(facts)}`);
          assert.equal(facts.shortcuts, 0, `${name}: no shortcuts button on touch`);
          assert.deepEqual(facts.small, [], `${name}: touch targets of at least 44×44 px`);
        }
        for (const theme of themes) {
          await setTheme(page, theme);
          if (open) await open();
          await settled(page);
          const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
          if (header) assert.equal(bg, BACKGROUND[theme.dark ? "dark" : "light"], `${name}, ${theme.name}: the theme applies`);
          const violations = await axeViolations(page);
          report.push({ page: name, size, theme: theme.name, violations });
          if (theme.shot) {
            await page.screenshot({ path: path.join(screenshotsDir(), `${name}-${size}-${theme.dark ? "dark" : "light"}.png`) });
          }
          if (close) await close();
          assert.deepEqual(violations, [], `axe-core on ${name} (${size}, ${theme.name}):\n${JSON.stringify(violations, null, 2)}`);
        }
        await setTheme(page, THEMES[0]);
      }

      const step = (name, body) =>
        test(name, async () => {
          try {
            await body();
          } catch (e) {
            await page?.screenshot({ path: path.join(artifactsDir(), `failure-layout-${size}-${name.replace(/\W+/g, "-")}.png`) }).catch(() => {});
            console.error(`--- browser console (${name})\n${b?.logs.join("\n")}`);
            throw e;
          }
        });

      step("onboarding, and the theme chosen is kept after a reload", async () => {
        b = browsers[size] = await launchBrowser(ws.dir, ws.wav, { device });
        page = b.page;
        await page.goto(`${server.url}/onboard`);
        await page.getByLabel("Your name").waitFor();
        await checkPage("onboard");
        await setTheme(page, THEMES[2]);
        await page.reload();
        await page.getByLabel("Your name").waitFor();
        assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
        assert.equal(await page.evaluate(() => getComputedStyle(document.body).backgroundColor), BACKGROUND.dark);
        await setTheme(page, THEMES[0]);
      });

      step("the recorder, idle and recording, with the live waveform and its spoken alternative", async () => {
        await onboard(page, server.url, `Grace ${size}`);
        await waitConnected(page);
        await page.getByRole("heading", { name: "Recorder" }).waitFor();
        await checkPage("recorder");
        assert.equal(await page.locator(".key-hint").isVisible(), !touch, "the R hint only with a keyboard");

        await page.getByRole("button", { name: "Record" }).click();
        await page.getByText("Recording…").waitFor();
        await sleep(1_500);
        const wave = () =>
          page.locator(".live-wave canvas").evaluate((c) => {
            const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            let inked = 0;
            let sum = 0;
            for (let i = 3; i < data.length; i += 4) {
              if (data[i] > 0) inked++;
              sum = (sum + data[i] * (i % 9973)) % 1_000_000_007;
            }
            return { inked, sum, width: c.width, cssWidth: c.clientWidth };
          });
        const first = await wave();
        await sleep(500);
        const second = await wave();
        assert.ok(first.inked > 100, `bars are drawn: ${JSON.stringify(first)}`);
        assert.equal(first.width, first.cssWidth, "the canvas has one pixel per CSS pixel here (no blur, no stretch)");
        assert.notEqual(first.sum, second.sum, "the waveform scrolls");
        await checkPage("recorder-recording");
        const spoken = page.locator(".live-wave [aria-live=polite]");
        await page.waitForFunction(() => document.querySelector(".live-wave [aria-live]")?.textContent.length > 0, null, { timeout: 15_000 });
        assert.match(await spoken.textContent(), /^Recording, 10 seconds elapsed, level (silent|quiet|good|loud)$/);
        await page.getByRole("button", { name: "Stop" }).click();
        await waitSaved(page);
      });

      step("focus moves to the page heading after a navigation", async () => {
        await page.getByRole("link", { name: "My recordings", exact: true }).click();
        await page.waitForURL(/\/records$/);
        await page.locator("li.record").first().waitFor();
        await page.waitForFunction(() => document.activeElement?.tagName === "H1");
        assert.match(await page.evaluate(() => document.activeElement.textContent), /^Hi Grace/);
      });

      step("records, with an interrupted take, then with a recording chosen", async () => {
        // A take whose device vanished: after the grace period it is `interrupted`.
        const [saved] = await fetchRecords(page);
        // The app fetches the client once the list is drawn.
        await page.waitForFunction(() => typeof window.io === "function");
        await page.evaluate(async (link) => {
          const bytes = new Uint8Array(await (await fetch(link)).arrayBuffer());
          const s = JSON.parse(localStorage.getItem("audiobook.session"));
          const socket = window.io({ auth: { token: s.token }, transports: ["websocket"], forceNew: true });
          await new Promise((resolve, reject) => {
            socket.once("connect", resolve);
            socket.once("connect_error", reject);
          });
          const started = await socket.timeout(5000).emitWithAck("start-recording", { mime_type: "audio/webm", name: "Cut off" });
          await socket.timeout(5000).emitWithAck("append-recording", { data: bytes, seq: 0, recording_id: started.recording_id });
          socket.disconnect();
        }, saved.link);
        const deadline = Date.now() + 30_000;
        while (!(await fetchRecords(page)).some((r) => r.status === "interrupted")) {
          assert.ok(Date.now() < deadline, "the cut-off take becomes interrupted");
          await sleep(500);
        }
        await page.reload();
        await page.locator(".tag", { hasText: "interrupted" }).waitFor();
        await checkPage("records");

        await page.locator("li.record", { hasText: `${saved.name}` }).getByRole("button", { name: `Play ${saved.name}` }).click();
        await playerDuration(page);
        // The full player on a desktop; the mini player on a phone.
        await (touch ? page.locator(".player-expand") : page.getByRole("slider", { name: "Seek" })).waitFor();
        await checkPage("records-playing");
      });

      if (touch) {
        step("the docked player plays, pauses, expands and seeks, and the list stays in view", async () => {
          const player = page.locator(".player");
          const vh = device.viewport.height;
          const dock = await player.boundingBox();
          assert.ok(Math.abs(dock.y + dock.height - vh) < 1, `docked at the bottom: ${JSON.stringify(dock)}`);
          assert.ok(dock.height < 120, `a mini player: ${dock.height} px high`);
          const first = await page.locator("li.record").first().boundingBox();
          assert.ok(first.y + first.height <= dock.y, "the list stays in view above the player");
          assert.equal(await page.locator(".player .waveform").isVisible(), false, "the mini player has no waveform");
          assert.match(await page.locator(".player-title").textContent(), /\S/, "the mini player names the recording");
          const position = await page.locator(".player-time").evaluate((p) => {
            const [at, of] = p.querySelectorAll("span");
            return `${at.textContent}${getComputedStyle(of, "::before").content}${of.textContent}`;
          });
          assert.match(position, /^0:0\d"\/ "0:\d\d$/, "and shows the position");

          const audio = () => page.evaluate(() => {
            const a = document.querySelector("#player-audio");
            return { paused: a.paused, t: a.currentTime, d: a.duration };
          });
          await page.evaluate(() => document.querySelector("#player-audio").play());
          await page.waitForFunction(() => !document.querySelector("#player-audio").paused);
          await page.locator(".player").getByRole("button", { name: "Pause", exact: true }).tap();
          await page.waitForFunction(() => document.querySelector("#player-audio").paused);
          await page.locator(".player").getByRole("button", { name: "Play", exact: true }).tap();
          await page.waitForFunction(() => !document.querySelector("#player-audio").paused);
          await page.locator(".player").getByRole("button", { name: "Pause", exact: true }).tap();

          await page.getByRole("button", { name: "Show the full player" }).tap();
          const wave = page.locator(".player").getByRole("slider", { name: "Seek" });
          await wave.waitFor();
          const full = await player.boundingBox();
          assert.ok(Math.abs(full.y + full.height - vh) < 1 && full.height > dock.height, "the full player opens from the bottom");
          await checkPage("records-full-player", { header: true });
          const box = await wave.boundingBox();
          await page.touchscreen.tap(box.x + box.width * 0.5, box.y + box.height / 2);
          const { t, d } = await audio();
          assert.ok(Math.abs(t - d / 2) < 0.05 * d + 0.1, `a tap at the middle seeks to the middle: ${t} of ${d}`);
          await page.getByRole("button", { name: "Forward 10 seconds" }).tap();
          assert.ok(Math.abs((await audio()).t - d) < 0.1, "forward 10 s stops at the end of a short take");
          await page.getByLabel("Speed").selectOption("1.5");
          assert.equal(await page.evaluate(() => document.querySelector("#player-audio").playbackRate), 1.5);
          await page.getByRole("button", { name: "Show the mini player" }).tap();
          await page.locator(".player .waveform").waitFor({ state: "hidden" });
        });
      }

      step("the help dialog", async () => {
        const help = page.getByRole("dialog", { name: "Keyboard shortcuts" });
        // On touch there is no button for it; a keyboard attached still opens it with ?.
        const open = async () => {
          if (touch) {
            await page.locator("h1").click();
            await page.keyboard.press("?");
          } else {
            await page.getByRole("button", { name: "Shortcuts" }).click();
          }
          await help.waitFor();
        };
        const close = async () => {
          await page.keyboard.press("Escape");
          await help.waitFor({ state: "hidden" });
        };
        await checkPage("help", { open, close });
      });

      step("the share page", async () => {
        const [saved] = (await fetchRecords(page)).filter((r) => r.status === "ready");
        const row = page.locator("li.record", { hasText: saved.name });
        await row.getByRole("button", { name: `Share ${saved.name}` }).click();
        const url = await page.waitForFunction(() => document.querySelector("input.share-url")?.value || false).then((h) => h.jsonValue());
        const share = await b.context.newPage();
        try {
          await share.goto(url);
          await share.locator("audio").waitFor();
          const before = page;
          page = share;
          try {
            // Script-free by its CSP: it follows the system's colour scheme only.
            await checkPage("share", { header: false, themes: THEMES.filter((t) => t.choice === "system") });
          } finally {
            page = before;
          }
        } finally {
          await share.close();
        }
      });
    });
  }
});
