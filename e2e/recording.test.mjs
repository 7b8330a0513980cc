// The web app end to end, in headless Chromium with a fake microphone:
// onboard → record with a pause → stop → saved → listed → plays and seeks;
// and a take that survives the server dying mid-recording.

import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, test } from "node:test";

import {
  Server,
  followLink,
  clockSeconds,
  fetchRecords,
  launchBrowser,
  onboard,
  playerDuration,
  screenshot,
  seekAndPlay,
  sleep,
  waitConnected,
  waitSaved,
  workspace,
} from "./harness.mjs";

/** Runs `body` with a server and a browser, printing their logs on failure. */
function withSetup(name, body, options = {}) {
  return async () => {
    const { dir, wav } = workspace(name);
    const server = await Server.start(dir);
    const browser = await launchBrowser(dir, wav, options);
    try {
      await body({ server, ...browser });
    } catch (e) {
      await screenshot(browser.page, `failure-${name}`).catch(() => {});
      console.error(`--- browser console (${name})\n${browser.logs.join("\n")}`);
      console.error(`--- server log (${name})\n${server.logTail(60)}`);
      throw e;
    } finally {
      await browser.context.close().catch(() => {});
      await server.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
}

describe("web app", { timeout: 180_000 }, () => {
  test(
    "every page of the app opens from a deep link or a reload",
    withSetup("deeplink", async ({ server, page }) => {
      for (const route of ["/", "/onboard", "/recorder", "/records"]) {
        const res = await fetch(`${server.url}${route}`, { headers: { Accept: "text/html" } });
        assert.equal(res.status, 200, `GET ${route} answers ${res.status}: ${(await res.text()).slice(0, 200)}`);
        assert.match(res.headers.get("content-type") ?? "", /text\/html/, `GET ${route}`);
      }
      await page.goto(`${server.url}/records`);
      await page.waitForURL(/\/onboard$/);
      await page.reload();
      await page.getByLabel("Your name").waitFor();
    }),
  );

  test(
    "onboard, record with pause and resume, stop, list, play and seek",
    withSetup("record", async ({ server, page }) => {
      // Onboarding validates before sending.
      await page.goto(`${server.url}/`);
      await page.waitForURL(/\/onboard$/);
      await screenshot(page, "onboard");
      await page.getByRole("button", { name: "Continue" }).click();
      await page.getByText("Please enter your name.").waitFor();
      await page.getByLabel("Your name").fill("x".repeat(21));
      await page.getByRole("button", { name: "Continue" }).click();
      await page.getByText("at most 20").waitFor();
      await page.getByLabel("Your name").fill("Ada Lovelace");
      await page.getByRole("button", { name: "Continue" }).click();
      await page.waitForURL(/\/recorder$/);

      // Already onboarded: `/onboard` goes straight on (an in-app link here;
      // the deep link is checked in its own test).
      await followLink(page, "/onboard");
      await page.waitForURL(/\/recorder$/);
      await waitConnected(page);

      await page.getByRole("button", { name: "Record" }).click();
      await page.getByText("Recording…").waitFor();
      await sleep(2_000);
      await page.getByRole("button", { name: "Pause" }).click();
      await page.getByText("Paused.").waitFor();
      const atPause = await clockSeconds(page);
      await sleep(1_500);
      assert.equal(await clockSeconds(page), atPause, "the clock stands still while paused");
      await page.getByRole("button", { name: "Resume" }).click();
      await sleep(3_000);
      await screenshot(page, "recorder");
      await page.getByRole("button", { name: "Stop" }).click();
      const saved = await waitSaved(page);
      assert.match(saved, /^Saved “.+”/);
      const takeSeconds = await clockSeconds(page);
      assert.ok(takeSeconds >= 4 && takeSeconds <= 6, `take of about 5 s, the clock shows ${takeSeconds} s`);
      await screenshot(page, "recorder-saved");

      const records = await fetchRecords(page);
      assert.equal(records.length, 1);
      const [record] = records;
      assert.equal(record.status, "ready");
      assert.ok(record.size_bytes > 10_000, `size ${record.size_bytes}`);
      assert.ok(Math.abs(record.duration_ms / 1000 - 5) < 1.2, `duration_ms ${record.duration_ms} for a take of about 5 s`);

      await page.getByRole("link", { name: "Listen in My recordings" }).click();
      await page.waitForURL(/\/records$/);
      await page.getByRole("heading", { name: "Hi Ada Lovelace" }).waitFor();
      const items = page.locator("li.record");
      await items.first().waitFor();
      assert.equal(await items.count(), 1);
      assert.match(await items.first().locator(".record-name").textContent(), /.+/);
      assert.match(await items.first().locator(".record-duration").textContent(), /^0:0[4-6]$/);

      await items.first().getByRole("button", { name: /^Play / }).click();
      const duration = await playerDuration(page);
      assert.ok(Math.abs(duration - record.duration_ms / 1000) < 0.5,
        `<audio> duration ${duration} s vs duration_ms ${record.duration_ms}`);
      assert.ok(Math.abs(duration - 5) < 1.2, `<audio> duration ${duration} s for a take of about 5 s`);
      await page.locator(".player-duration", { hasText: "Duration" }).waitFor();
      await screenshot(page, "records");

      const middle = duration / 2;
      const played = await seekAndPlay(page, middle, 1_000);
      assert.equal(played.error, null);
      assert.ok(Math.abs(played.afterSeek - middle) < 0.25, `seeked to ${played.afterSeek}, wanted ${middle}`);
      assert.ok(played.later > middle + 0.3, `playback went on from the middle: ${JSON.stringify(played)}`);
      assert.ok(played.later < duration, `still inside the take: ${JSON.stringify(played)}`);

      // The same page on a phone.
      await page.setViewportSize({ width: 390, height: 844 });
      await screenshot(page, "records-phone");
      await page.setViewportSize({ width: 1100, height: 760 });

      // Logging out forgets the session.
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForURL(/\/onboard$/);
    }),
  );

  test(
    "a take survives the server dying mid-recording",
    withSetup("reconnect", async ({ server, page }) => {
      await onboard(page, server.url, "Grace Hopper");
      await waitConnected(page);

      await page.getByRole("button", { name: "Record" }).click();
      await page.getByText("Recording…").waitFor();
      await sleep(2_500);
      await server.kill();
      await page.locator('[data-conn="offline"]').waitFor({ timeout: 10_000 });
      await sleep(2_000);
      // Audio recorded meanwhile waits in the browser for the server.
      const transfer = await page.locator(".transfer").textContent();
      const waiting = /waiting ([\d.]+) KB/.exec(transfer);
      assert.ok(waiting && Number(waiting[1]) > 20, `audio waits while offline: ${transfer}`);
      await server.restart();
      await waitConnected(page, 30_000);
      await sleep(2_500);
      await page.getByRole("button", { name: "Stop" }).click();
      await waitSaved(page, 45_000);
      const takeSeconds = await clockSeconds(page);
      assert.ok(takeSeconds >= 6, `the take lasted ${takeSeconds} s`);

      const records = await fetchRecords(page);
      const ready = records.filter((r) => r.status === "ready");
      assert.equal(ready.length, 1, `one saved take: ${JSON.stringify(records)}`);
      const [record] = ready;
      assert.ok(Math.abs(record.duration_ms / 1000 - takeSeconds) < 1.5,
        `saved ${record.duration_ms} ms of a take of about ${takeSeconds} s`);

      await page.getByRole("link", { name: "Listen in My recordings" }).click();
      await page.locator("li.record").first().getByRole("button", { name: /^Play / }).click();
      const duration = await playerDuration(page);
      assert.ok(Math.abs(duration - takeSeconds) < 1.5, `<audio> duration ${duration} s for a take of ${takeSeconds} s`);
    }),
  );

  test(
    "a refused microphone is explained, can be retried, and leaving mid-take warns",
    withSetup(
      "microphone",
      async ({ context, page, server }) => {
        await onboard(page, server.url, "Alan Turing");
        // No recordings yet: the list says so and offers the recorder.
        await page.getByRole("link", { name: "My recordings" }).click();
        await page.getByText("No recordings yet").waitFor();
        await page.getByRole("link", { name: "Record your first" }).click();
        await page.waitForURL(/\/recorder$/);
        await waitConnected(page);
        await page.getByRole("button", { name: "Record" }).click();
        await page.getByText("Microphone access was refused").waitFor();
        await screenshot(page, "recorder-mic-refused");

        await context.grantPermissions(["microphone"], { origin: server.url });
        await page.getByRole("button", { name: "Try again" }).click();
        await page.getByText("Recording…").waitFor();
        await sleep(1_500);

        // Closing the tab with a take under way asks first.
        const dialog = new Promise((resolve) => page.once("dialog", resolve));
        await page.close({ runBeforeUnload: true });
        const shown = await dialog;
        assert.equal(shown.type(), "beforeunload");
        await shown.dismiss();
        assert.equal(page.isClosed(), false, "dismissing the warning keeps the page");
        await page.getByRole("button", { name: "Stop" }).click();
        await waitSaved(page);
      },
      { micAllowed: false },
    ),
  );

  test(
    "leaving mid-take asks first; leaving stops the take and saves it",
    withSetup("leave", async ({ page, server }) => {
      // Straight from onboarding, as most people arrive at the recorder.
      await onboard(page, server.url, "Grace Hopper");
      await waitConnected(page);
      await page.getByRole("button", { name: "Record" }).click();
      await page.getByText("Recording…").waitFor();
      await sleep(2_000);
      const asked = [];
      const answer = (accept) => page.once("dialog", (d) => { asked.push(d.message()); accept ? d.accept() : d.dismiss(); });
      answer(false);
      await page.getByRole("link", { name: "My recordings", exact: true }).click();
      await sleep(500);
      assert.match(asked[0] ?? "", /Leaving stops the recording/, "leaving asks first");
      assert.match(page.url(), /\/recorder$/, "and staying stays");
      await page.getByText("Recording…").waitFor();

      answer(true);
      await page.getByRole("link", { name: "My recordings", exact: true }).click();
      await page.waitForURL(/\/records$/);
      const left = Date.now();
      let records = await fetchRecords(page);
      while (!(records.length === 1 && records[0].status === "ready")) {
        assert.ok(Date.now() - left < 30_000, `the take left behind is saved: ${JSON.stringify(records)}`);
        await sleep(250);
        records = await fetchRecords(page);
      }
      console.log(`left mid-take: saved ${records[0].duration_ms} ms of audio ${Date.now() - left} ms after leaving`);
      assert.ok(records[0].duration_ms >= 2_000, `what was recorded is kept: ${records[0].duration_ms} ms`);
      // It stopped when the person left: it does not grow afterwards.
      await sleep(2_000);
      const [later] = await fetchRecords(page);
      assert.equal(later.duration_ms, records[0].duration_ms, "the take stopped when the person left");
      // The recorder's keys are gone with it: R on the list starts nothing.
      await page.locator("h1").click();
      await page.keyboard.press("r");
      await sleep(1_000);
      assert.equal((await fetchRecords(page)).length, 1, "R on the records page starts no hidden take");
    }),
  );
});
