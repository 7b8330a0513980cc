// The app is installable (issue 14), in Chromium against the real server:
//
//   manifest      /manifest.webmanifest is served as application/manifest+json
//                 and names the app, its colours, `display: standalone`, its
//                 start URL, scope and id, and icons in SVG and PNG at 192 and
//                 512 px, a maskable one included; every icon answers 200
//                 with an image type, each PNG is as large as it says
//   installable   Chromium's own check (the DevTools protocol's
//                 Page.getInstallabilityErrors) finds nothing missing, and
//                 its parsed manifest has no errors
//   offline       the service worker keeps the manifest and icons
//   install hint  Chromium's offer (beforeinstallprompt) shows the header's
//                 "Install app" button; pressing it opens Chromium's dialog
//                 (prompt() called: the offer is used up, the button goes)
//
// Prints the manifest's fields and the icons (`install figures {...}`).

import assert from "node:assert/strict";
import fs from "node:fs";
import { after, before, describe, test } from "node:test";

import { Server, launchBrowser, onboard, screenshot, workspace } from "./harness.mjs";

/** Width and height from a PNG's IHDR chunk. */
function pngSize(bytes) {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(bytes.subarray(0, 8).equals(signature), "a PNG signature");
  assert.equal(bytes.subarray(12, 16).toString("ascii"), "IHDR");
  return [bytes.readUInt32BE(16), bytes.readUInt32BE(20)];
}

describe("installable app", () => {
  let ws;
  let server;
  let browser;
  let manifest;

  before(async () => {
    ws = workspace("install");
    server = await Server.start(ws.dir);
    browser = await launchBrowser(ws.dir, ws.wav, {
      // Headless Chromium makes the install offer only to a site the user
      // has engaged with for a while; the flag skips that wait, not a check.
      args: ["--bypass-app-banner-engagement-checks"],
    });
  });

  after(async () => {
    await browser?.context.close().catch(() => {});
    await server?.stop();
    if (ws) fs.rmSync(ws.dir, { recursive: true, force: true });
  });

  test("the manifest is served with its type and names everything an install needs", async () => {
    const res = await fetch(`${server.url}/manifest.webmanifest`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^application\/manifest\+json/);
    manifest = await res.json();
    assert.equal(manifest.name, "AudioBook");
    assert.ok(manifest.short_name && manifest.short_name.length <= 12, "a short name that fits under an icon");
    assert.equal(manifest.display, "standalone");
    assert.equal(manifest.start_url, "/");
    assert.equal(manifest.scope, "/");
    assert.equal(manifest.id, "/");
    assert.match(manifest.theme_color, /^#[0-9a-f]{6}$/i);
    assert.match(manifest.background_color, /^#[0-9a-f]{6}$/i);

    const icons = [];
    for (const icon of manifest.icons) {
      const r = await fetch(new URL(icon.src, server.url));
      assert.equal(r.status, 200, `${icon.src} answers`);
      const type = r.headers.get("content-type");
      assert.match(type, /^image\//, `${icon.src} is an image`);
      assert.equal(type.split(";")[0], icon.type, `${icon.src} has the type the manifest says`);
      const bytes = Buffer.from(await r.arrayBuffer());
      if (icon.type === "image/png") {
        const [w, h] = pngSize(bytes);
        assert.equal(`${w}x${h}`, icon.sizes, `${icon.src} is as large as the manifest says`);
      } else {
        assert.match(bytes.toString("utf8"), /^<svg[\s>]/, `${icon.src} is an SVG`);
      }
      icons.push({ src: icon.src, sizes: icon.sizes, purpose: icon.purpose, type, bytes: bytes.length });
    }
    for (const purpose of ["any", "maskable"]) {
      for (const sizes of ["192x192", "512x512", "any"]) {
        assert.ok(
          manifest.icons.some((i) => i.purpose === purpose && i.sizes === sizes),
          `a ${purpose} icon at ${sizes}`,
        );
      }
    }
    console.log(`install figures ${JSON.stringify({ manifest: { ...manifest, icons: undefined }, icons })}`);
  });

  test("Chromium reports the app installable, and the service worker keeps the manifest and icons", async () => {
    assert.ok(manifest, "the manifest test ran first");
    const { page, context } = browser;
    await onboard(page, server.url, "Ada");
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));

    const cdp = await context.newCDPSession(page);
    const parsed = await cdp.send("Page.getAppManifest");
    assert.deepEqual(parsed.errors, [], "Chromium parsed the manifest without errors");
    assert.match(parsed.url, /\/manifest\.webmanifest$/);
    const { installabilityErrors } = await cdp.send("Page.getInstallabilityErrors");
    assert.deepEqual(installabilityErrors, [], "Chromium finds nothing missing for an install");

    const kept = await page.evaluate(async (paths) => {
      const cache = await caches.open((await caches.keys()).find((k) => k.startsWith("audiobook-shell")));
      const found = {};
      for (const p of paths) found[p] = Boolean(await cache.match(p, { ignoreVary: true }));
      return found;
    }, ["/manifest.webmanifest", ...manifest.icons.map((i) => i.src)]);
    for (const [p, present] of Object.entries(kept)) assert.ok(present, `the service worker keeps ${p}`);
  });

  test("Chromium's install offer shows the Install app button, which opens its dialog", async () => {
    const { page } = browser;
    const button = page.getByRole("button", { name: "Install app" });
    await button.waitFor({ timeout: 20_000 });
    await screenshot(page, "install-offered");
    // Counts the real prompt() calls; the call goes through to Chromium.
    await page.evaluate(() => {
      window.__prompts = 0;
      const real = BeforeInstallPromptEvent.prototype.prompt;
      BeforeInstallPromptEvent.prototype.prompt = function () {
        window.__prompts += 1;
        return real.call(this);
      };
    });
    await button.click();
    await page.waitForFunction(() => window.__prompts === 1);
    await button.waitFor({ state: "detached" });
    // Still a working app behind the dialog.
    assert.equal(await page.getByRole("heading", { level: 1 }).count(), 1);
  });
});
