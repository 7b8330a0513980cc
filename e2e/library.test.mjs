// The recordings library end to end, in headless Chromium with a fake
// microphone: waveform peaks recorded and drawn (click-to-seek), speed and
// skip, keyboard shortcuts and their help, rename, search, download, share
// (opened in a fresh browser with no session) and revoke, delete with its
// undo window, and paging.

import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, test } from "node:test";

import {
  Server,
  fetchRecords,
  launchBrowser,
  onboard,
  playerDuration,
  screenshot,
  sleep,
  waitConnected,
  waitSaved,
  workspace,
} from "./harness.mjs";

const OWNER = "Ada Lovelace";

/** `GET /recordings/:id/waveform` with the page's token. */
async function fetchWaveform(page, id) {
  return page.evaluate(async (id) => {
    const s = JSON.parse(localStorage.getItem("audiobook.session"));
    const res = await fetch(`/recordings/${id}/waveform`, { headers: { Authorization: `Bearer ${s.token}` } });
    if (!res.ok) throw new Error(`GET waveform answered ${res.status}`);
    return res.json();
  }, id);
}

/** The list item of the recording named `name`. */
const item = (page, name) => page.locator("li.record", { has: page.locator(".record-name", { hasText: name }) });

/** Names in the list, top to bottom. */
async function listedNames(page) {
  return (await page.locator("li.record .record-name").allTextContents()).map((t) => t.trim());
}

async function audioState(page) {
  return page.evaluate(() => {
    const a = document.querySelector("#player-audio");
    return { currentTime: a.currentTime, duration: a.duration, paused: a.paused, playbackRate: a.playbackRate };
  });
}

async function pause(page) {
  await page.evaluate(() => document.querySelector("#player-audio").pause());
}

describe("recordings library", { timeout: 300_000 }, () => {
  let ws;
  let server;
  let browser;
  let page;
  let first; // the record of the first take (made with the buttons)
  let second; // the record of the second take (made with the keyboard)

  before(async () => {
    ws = workspace("library");
    server = await Server.start(ws.dir);
    browser = await launchBrowser(ws.dir, ws.wav);
    page = browser.page;
    await onboard(page, server.url, OWNER);
    await waitConnected(page);
    await page.getByRole("button", { name: "Record" }).click();
    await page.getByText("Recording…").waitFor();
    await sleep(4_000);
    await page.getByRole("button", { name: "Stop" }).click();
    await waitSaved(page);
    [first] = await fetchRecords(page);
  });

  after(async () => {
    if (browser) {
      if (process.exitCode) console.error(`--- browser console\n${browser.logs.join("\n")}`);
      await browser.context.close().catch(() => {});
    }
    if (server) {
      if (process.exitCode) console.error(`--- server log\n${server.logTail(60)}`);
      await server.stop();
    }
    if (ws) fs.rmSync(ws.dir, { recursive: true, force: true });
  });

  /** On failure: a screenshot, the browser console and the server log. */
  const step = (name, body) =>
    test(name, async () => {
      try {
        await body();
      } catch (e) {
        await screenshot(page, `failure-library-${name.replace(/\W+/g, "-")}`).catch(() => {});
        console.error(`--- browser console (${name})\n${browser.logs.join("\n")}`);
        console.error(`--- server log (${name})\n${server.logTail(40)}`);
        throw e;
      }
    });

  step("the recorder's keyboard shortcuts record and stop, and ? lists them", async () => {
    await page.getByRole("button", { name: "Record another" }).waitFor();
    await page.keyboard.press("?");
    const help = page.getByRole("dialog", { name: "Keyboard shortcuts" });
    await help.waitFor();
    assert.match(await help.textContent(), /Stop and save/);
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.closest("dialog") !== null), true, "focus stays in the help");
    await page.keyboard.press("Escape");
    await help.waitFor({ state: "hidden" });

    await page.locator("body").click({ position: { x: 5, y: 5 } });
    await page.keyboard.press("r");
    await page.getByText("Recording…").waitFor();
    await sleep(3_000);
    await page.keyboard.press("s");
    await waitSaved(page);
    const records = await fetchRecords(page);
    assert.equal(records.length, 2);
    second = records[0];
    assert.ok(second.duration_ms > 2_000, `a take of about 3 s: ${second.duration_ms} ms`);
  });

  step("the recorder sends level peaks with its chunks (about 10 a second)", async () => {
    for (const r of [first, second]) {
      const { peaks } = await fetchWaveform(page, r.id);
      const perSecond = peaks.length / (r.duration_ms / 1000);
      assert.ok(peaks.length > 0, `peaks for ${r.name}`);
      assert.ok(perSecond > 5 && perSecond < 15, `${peaks.length} peaks for ${r.duration_ms} ms`);
      assert.ok(Math.max(...peaks) > 100 && Math.min(...peaks) < 50, `tone bursts and silence show: ${peaks}`);
    }
  });

  step("the waveform is drawn and a click at 75% seeks to 75% of the take", async () => {
    await page.getByRole("link", { name: "Listen in My recordings" }).click();
    await page.waitForURL(/\/records$/);
    await item(page, first.name).getByRole("button", { name: `Play ${first.name}` }).click();
    const duration = await playerDuration(page);
    const wave = page.getByRole("slider", { name: "Seek" });
    await wave.waitFor();
    const drawn = await page.locator(".waveform path").evaluateAll((paths) =>
      paths.reduce((n, p) => n + (p.getAttribute("d").match(/M/g) ?? []).length, 0));
    assert.ok(drawn > 20, `${drawn} bars drawn`);

    await pause(page);
    const box = await wave.boundingBox();
    await page.mouse.click(box.x + box.width * 0.75, box.y + box.height / 2);
    const { currentTime } = await audioState(page);
    assert.ok(Math.abs(currentTime - 0.75 * duration) < 0.05 * duration + 0.1,
      `currentTime ${currentTime} for 75% of ${duration}`);
    await page.waitForFunction(() => Number(document.querySelector(".waveform").getAttribute("aria-valuenow")) > 1);

    // The slider is keyboard-operable too.
    await wave.focus();
    await page.keyboard.press("Home");
    assert.ok((await audioState(page)).currentTime < 0.1, "Home goes to the start");
    await page.keyboard.press("End");
    await page.keyboard.press("ArrowLeft");
    const back = (await audioState(page)).currentTime;
    assert.ok(Math.abs(back - Math.max(0, duration - 5)) < 0.2, `End then ← is 5 s before the end: ${back}`);

    await page.mouse.click(box.x + box.width * 0.6, box.y + box.height / 2);
    await page.evaluate(() => document.activeElement?.blur());
    await page.setViewportSize({ width: 960, height: 600 });
    await screenshot(page, "records-waveform");
    await page.setViewportSize({ width: 1100, height: 760 });
  });

  step("speed and 10 s skips change the player", async () => {
    await page.getByLabel("Speed").selectOption("1.5");
    assert.equal((await audioState(page)).playbackRate, 1.5);
    await page.getByLabel("Speed").selectOption("0.75");
    assert.equal((await audioState(page)).playbackRate, 0.75);
    await page.getByLabel("Speed").selectOption("1");
    await pause(page);
    await page.getByRole("button", { name: "Back 10 seconds" }).click();
    assert.equal((await audioState(page)).currentTime, 0);
    await page.getByRole("button", { name: "Forward 10 seconds" }).click();
    const s = await audioState(page);
    assert.ok(Math.abs(s.currentTime - s.duration) < 0.1, `forward stops at the end of a short take: ${JSON.stringify(s)}`);
  });

  step("the records page's keyboard shortcuts and ? help", async () => {
    await page.locator("h1").click();
    await page.keyboard.press("?");
    const help = page.getByRole("dialog", { name: "Keyboard shortcuts" });
    await help.waitFor();
    assert.match(await help.textContent(), /Play or pause/);
    await page.keyboard.press("Escape");
    await help.waitFor({ state: "hidden" });

    await page.evaluate(() => { document.querySelector("#player-audio").currentTime = 0; });
    await page.keyboard.press("ArrowRight");
    const ahead = await audioState(page);
    const active = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
    assert.ok(Math.abs(ahead.currentTime - Math.min(5, ahead.duration)) < 0.1,
      `→ seeks 5 s: ${JSON.stringify(ahead)}, focus on ${active}`);
    await page.keyboard.press("j");
    assert.ok((await audioState(page)).currentTime < 0.1, "J goes back 10 s");
    await page.keyboard.press(" ");
    await page.waitForFunction(() => !document.querySelector("#player-audio").paused);
    await page.keyboard.press("k");
    await page.waitForFunction(() => document.querySelector("#player-audio").paused);
  });

  step("rename inline: checked before sending, Escape cancels, Enter saves, kept after reload", async () => {
    await item(page, first.name).getByRole("button", { name: `Rename ${first.name}` }).click();
    const input = page.getByLabel("New name");
    await input.fill("x".repeat(51));
    await input.press("Enter");
    await page.getByText("at most 50").waitFor();
    await input.press("Escape");
    await input.waitFor({ state: "hidden" });
    assert.ok((await listedNames(page)).includes(first.name));

    await page.locator(".record-name", { hasText: first.name }).click();
    await page.getByLabel("New name").fill("Interview with Ada");
    await page.getByLabel("New name").press("Enter");
    await item(page, "Interview with Ada").waitFor();
    await page.getByText("Renamed to “Interview with Ada”").waitFor();
    assert.equal(await page.locator("#player-title").textContent(), "Interview with Ada", "the player follows the rename");

    await item(page, second.name).getByRole("button", { name: `Rename ${second.name}` }).click();
    await page.getByLabel("New name").fill("Shopping list");
    await page.getByLabel("New name").press("Enter");
    await item(page, "Shopping list").waitFor();

    await page.reload();
    await page.locator("li.record").first().waitFor();
    assert.deepEqual(await listedNames(page), ["Shopping list", "Interview with Ada"]);
  });

  step("search filters the list by name", async () => {
    await page.getByLabel("Search recordings by name").fill("inter");
    await page.waitForFunction(() => document.querySelectorAll("li.record").length === 1);
    assert.deepEqual(await listedNames(page), ["Interview with Ada"]);
    await page.getByText("1 recording match “inter”").waitFor();
    await page.getByLabel("Search recordings by name").fill("nothing like this");
    await page.getByText("No recordings match").waitFor();
    await page.getByLabel("Search recordings by name").fill("");
    await page.waitForFunction(() => document.querySelectorAll("li.record").length === 2);
  });

  step("download saves the recording's exact bytes under its name", async () => {
    const [record] = (await fetchRecords(page)).filter((r) => r.name === "Interview with Ada");
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      item(page, "Interview with Ada").getByRole("link", { name: "Download Interview with Ada" }).click(),
    ]);
    assert.equal(download.suggestedFilename(), "Interview with Ada.webm");
    const saved = fs.readFileSync(await download.path());
    const served = Buffer.from(await (await fetch(record.link)).arrayBuffer());
    assert.ok(saved.length > 10_000, `${saved.length} bytes`);
    assert.ok(saved.equals(served), `downloaded ${saved.length} bytes equal the link's ${served.length}`);
  });

  step("a share link plays in a fresh browser without the owner's name, and revoking ends it", async () => {
    const row = item(page, "Interview with Ada");
    await row.getByRole("button", { name: "Share Interview with Ada" }).click();
    const urlBox = row.getByLabel("Public link", { exact: true }).and(page.locator("input"));
    await urlBox.waitFor();
    const url = await urlBox.inputValue();
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/s\/[\w-]{16,}$/);
    await row.getByRole("button", { name: "Copy" }).click();
    await page.getByText(/Link copied|copy it/).waitFor();
    await screenshot(page, "records-share");

    const stranger = await launchBrowser(ws.dir, ws.wav);
    try {
      await stranger.page.goto(url);
      assert.equal(await stranger.page.evaluate(() => localStorage.length), 0, "a fresh browser: no session");
      const duration = await stranger.page.waitForFunction(() => {
        const a = document.querySelector("audio");
        return a && Number.isFinite(a.duration) && a.duration > 0 ? a.duration : false;
      }, null, { timeout: 15_000 }).then((h) => h.jsonValue());
      assert.ok(Math.abs(duration - first.duration_ms / 1000) < 0.5, `shared audio plays: duration ${duration}`);
      const html = await stranger.page.content();
      assert.ok(html.includes("Interview with Ada"), "the share page names the recording");
      assert.ok(!html.includes(OWNER), "the share page does not name the owner");
      assert.ok(!html.includes(first.user_id), "nor show the owner's id");
      await screenshot(stranger.page, "share-page");
    } finally {
      await stranger.context.close().catch(() => {});
    }

    await row.getByRole("button", { name: "Revoke" }).click();
    await page.getByText("Share link revoked").waitFor();
    assert.equal((await fetch(url)).status, 404, "a revoked share link answers 404");
  });

  step("delete asks first, and Undo within the window keeps the recording", async () => {
    await item(page, "Shopping list").getByRole("button", { name: "Delete Shopping list" }).click();
    await page.getByText("Delete “Shopping list”?").waitFor();
    await page.getByRole("alertdialog").getByRole("button", { name: "Cancel" }).click();
    assert.deepEqual(await listedNames(page), ["Shopping list", "Interview with Ada"]);

    await item(page, "Shopping list").getByRole("button", { name: "Delete Shopping list" }).click();
    await page.getByRole("alertdialog").getByRole("button", { name: "Delete" }).click();
    await page.getByText("Deleted “Shopping list”").waitFor();
    assert.deepEqual(await listedNames(page), ["Interview with Ada"], "hidden at once");
    await page.getByRole("button", { name: "Undo" }).click();
    await item(page, "Shopping list").waitFor();
    await sleep(6_000);
    assert.equal((await fetchRecords(page)).length, 2, "nothing was deleted");
  });

  step("delete goes through after the undo window and the old link answers 404", async () => {
    const [record] = (await fetchRecords(page)).filter((r) => r.name === "Shopping list");
    assert.equal((await fetch(record.link)).status, 200);
    await item(page, "Shopping list").getByRole("button", { name: "Delete Shopping list" }).click();
    await page.getByRole("alertdialog").getByRole("button", { name: "Delete" }).click();
    await page.getByText("Deleted “Shopping list”").waitFor();
    assert.equal((await fetchRecords(page)).length, 2, "the server is asked only after the window");
    await page.waitForFunction(() => !document.querySelector(".toast-undo"), null, { timeout: 10_000 });
    await sleep(500);
    const left = await fetchRecords(page);
    assert.deepEqual(left.map((r) => r.name), ["Interview with Ada"]);
    assert.equal((await fetch(record.link)).status, 404, "a deleted recording's link answers 404");
    await page.reload();
    await page.locator("li.record").first().waitFor();
    assert.deepEqual(await listedNames(page), ["Interview with Ada"]);
  });

  step("long lists page with Load more; takes without peaks get a plain seek bar", async () => {
    // 21 tiny takes from an original-style client (no peaks), through the
    // page's own Socket.IO client.
    // The app fetches the client once the list is drawn.
    await page.waitForFunction(() => typeof window.io === "function");
    await page.evaluate(async () => {
      const s = JSON.parse(localStorage.getItem("audiobook.session"));
      const socket = window.io({ auth: { token: s.token }, transports: ["websocket"] });
      await new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", reject);
      });
      for (let i = 0; i < 21; i++) {
        const started = await socket.timeout(5000).emitWithAck("start-recording", { mime_type: "audio/webm", name: `Note ${i + 1}` });
        const data = new Uint8Array(2000).fill(i);
        await socket.timeout(5000).emitWithAck("append-recording", { data, final: true, seq: 0, recording_id: started.recording_id });
        const stopped = await socket.timeout(5000).emitWithAck("stop-recording", { recording_id: started.recording_id, chunks: 1 });
        if (!stopped.ok) throw new Error(JSON.stringify(stopped));
      }
      socket.disconnect();
    });
    await page.reload();
    await page.locator("li.record").first().waitFor();
    assert.equal(await page.locator("li.record").count(), 20, "the first page holds 20");
    await page.getByText("20 recordings so far").waitFor();
    await page.getByRole("button", { name: "Load more" }).click();
    await page.waitForFunction(() => document.querySelectorAll("li.record").length === 22);
    await page.getByRole("button", { name: "Load more" }).waitFor({ state: "detached" });
    const names = await listedNames(page);
    assert.equal(names.at(-1), "Interview with Ada");
    assert.equal(new Set(names).size, 22, "no recording listed twice");

    await item(page, "Note 21").getByRole("button", { name: "Play Note 21" }).click();
    await page.locator("input.seekbar").waitFor();
    assert.equal(await page.locator(".waveform").count(), 0, "no waveform without peaks");
  });

  step("a page whose module cannot be fetched says so, and Try again opens it", async () => {
    // A first visit whose network fails on the records page's module: no
    // service worker (it would have kept the module), the module refused.
    const visitor = await launchBrowser(ws.dir, ws.wav, { device: { serviceWorkers: "block" } });
    try {
      let refuse = true;
      const asked = [];
      await visitor.page.route(/\/split_records_page\.wasm$/, (route) => {
        asked.push(refuse ? "refused" : "sent");
        return refuse ? route.abort("internetdisconnected") : route.continue();
      });
      await onboard(visitor.page, server.url, "First visit");
      await visitor.page.goto(`${server.url}/records`);
      const alert = visitor.page.getByRole("alert").filter({ hasText: "could not fetch this page" });
      await alert.waitFor();
      assert.equal(
        await visitor.page.getByRole("heading", { level: 1 }).textContent(),
        "This page could not be loaded",
      );
      refuse = false;
      await visitor.page.getByRole("button", { name: "Try again" }).click();
      await visitor.page.getByRole("heading", { name: "Hi First visit" }).waitFor();
      await visitor.page.getByText("No recordings yet").waitFor();
      assert.deepEqual(asked, ["refused", "sent"]);
    } finally {
      await visitor.context.close().catch(() => {});
    }
  });
});
